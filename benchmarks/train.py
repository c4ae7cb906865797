"""Training benchmark: epoch time of neonsign's preloaded-array training vs the learning path's loop.

Reference (Arm's learning path, ``train_model.py``): a Dataset that per item opens the file with
Pillow, ``Resize((32, 32))`` (bilinear), ``ToTensor`` and ``Normalize(0.5, 0.5)`` (torchvision's
semantics, written out here because torchvision is not a neonsign dependency), a shuffling
DataLoader of batch 64 (``--workers``, default 0 as in the learning path), Adam lr 1e-3,
cross-entropy, float32, ReLU before pooling as written there. neonsign: the same files loaded
once by the C loader (uint8, timed separately) as many views as the default framing recipe
trains on, then the training loop (:func:`neonsign._trainer.fit`) for one epoch (batch
augmentation in torch, AdamW + one-cycle, the precision measured for this CPU), no validation.
Same files, same model, same batch size, same thread count.

Every step is split into phases (:class:`neonsign._trainer.PhaseClock`: batch gather,
augmentation, forward + loss, backward, optimizer, bookkeeping) for each pipeline. The
first-run precision calibration is timed on its own (an empty cache) and included in a
12-epoch whole-run ratio (``whole_run_12``).

Two file sets, built by ``benchmarks/preprocess.py``'s ``make_sets`` (the learning path reads the
ORIGINAL GTSRB files, 15..250 px): ``real-size`` -- the shared 32x32 training files upsampled to
their original Width x Height from ``original-annotations`` (a seeded subset across all classes),
the default and headline figure; ``32x32`` -- the shared files themselves.

The reference runs in a process of its own (spawned once per file set, fed one epoch at a
time), as the learning path's script does: neonsign's training loop tunes the process's
allocator (:func:`neonsign._trainer.keep_freed_memory`), and a reference sharing that process
would run under neonsign's setting instead of the defaults its users get. ``--reference-tuned``
adds a row with the reference under the same setting, to show what it is worth there.

Epochs are interleaved (reference, neonsign variants, reference, ...) so machine noise hits all
alike; the figures are medians over ``--rounds`` (the minimum is reported too); "paired" is the
median over rounds of each round's reference / neonsign ratio.

Usage: python benchmarks/train.py [--n N] [--rounds R] [--threads T] [--sets real-size,32x32] [--out FILE]
($GTSRB_ROOT selects the data, else ../shared/gtsrb). Writes JSON (default
benchmarks/results/train.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import neonsign
from neonsign import preprocess as pp
from neonsign._precision import choose_precision
from neonsign._trainer import PHASES, Framing, PhaseClock, keep_freed_memory, resolve_precision
from neonsign._trainer import fit as _fit
from neonsign.model import TrafficSignNet
from neonsign.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess import machine_info, make_sets  # noqa: E402  (shared benchmark helpers)

BATCH = 64


class LearningPathDataset(Dataset):
    """Per item: Pillow open -> Resize((32, 32)) -> ToTensor -> Normalize(0.5, 0.5)."""

    def __init__(self, paths: list[Path], labels: np.ndarray) -> None:
        self.paths = paths
        self.labels = labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.open(self.paths[i]).convert("RGB").resize((32, 32), Image.BILINEAR)
        t = (
            torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
            .permute(2, 0, 1)
            .float()
            .div(255)
        )
        mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)  # Normalize makes these per call
        std = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
        return (t - mean) / std, int(self.labels[i])


class LearningPathNet(TrafficSignNet):
    """TrafficSignNet with the learning path's own forward order (ReLU, then pool).

    neonsign's forward pools first (same outputs and gradients bit for bit, faster); the
    reference runs the learning path's code as written.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def reference_epoch(loader: DataLoader, seed: int, clock: PhaseClock | None = None) -> float:
    """One epoch of the learning path's loop; returns seconds. ``clock`` gets the per-phase
    split: gather = the DataLoader's next batch (Pillow decode, resize, ToTensor, Normalize,
    collate), forward + loss, backward, optimizer (zero_grad + Adam step); no augmentation."""
    torch.manual_seed(seed)
    model = LearningPathNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    model.train()
    lap = clock.lap if clock is not None else (lambda phase: None)
    t0 = time.perf_counter()
    if clock is not None:
        clock.start()
    for images, labels in loader:
        lap("gather")
        loss = crit(model(images), labels)
        lap("forward")
        loss.backward()
        lap("backward")
        opt.step()
        opt.zero_grad()
        lap("optimizer")
        lap("other")
    return time.perf_counter() - t0


def _reference_worker(conn, paths: list[Path], labels: np.ndarray, args: dict) -> None:
    """The reference's own process: builds the learning path's DataLoader, warms up, then runs
    one epoch per round number received and sends back (seconds, per-phase seconds, steps);
    None ends it. ``args["tuned"]`` applies neonsign's allocator setting first."""
    torch.set_num_threads(args["threads"])
    if args["tuned"]:
        keep_freed_memory()
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(
        LearningPathDataset(paths, labels),
        batch_size=BATCH,
        shuffle=True,
        num_workers=args["workers"],
        generator=gen,
    )
    reference_epoch(DataLoader(LearningPathDataset(paths[:256], labels[:256]), batch_size=BATCH), 0)
    conn.send("ready")
    while (r := conn.recv()) is not None:
        clock = PhaseClock()
        seconds = reference_epoch(loader, r, clock)
        conn.send((seconds, clock.seconds, clock.steps))
    conn.close()


class ReferenceProcess:
    """A spawned process running the learning path's epochs on request (see the module notes)."""

    def __init__(
        self, paths: list[Path], labels: np.ndarray, args: argparse.Namespace, tuned: bool
    ):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        opts = {"threads": args.threads, "workers": args.workers, "tuned": tuned}
        self.proc = ctx.Process(target=_reference_worker, args=(child, paths, labels, opts))
        self.proc.start()
        child.close()
        if self.conn.recv() != "ready":
            raise RuntimeError("the reference process did not start")

    def epoch(self, r: int, clock: PhaseClock) -> float:
        """Run epoch ``r`` there; its phases are added to ``clock``."""
        self.conn.send(r)
        seconds, phases, steps = self.conn.recv()
        for k, v in phases.items():
            clock.seconds[k] += v
        clock.steps += steps
        return seconds

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(timeout=60)


def neonsign_epoch(
    views: np.ndarray, labels: np.ndarray, cfg: TrainConfig, clock: PhaseClock | None = None
) -> float:
    """One epoch of neonsign's training loop on preloaded views (V, N, H, W, 3), every view
    trained on as the default framing recipe does, no validation; returns seconds (including
    the run's set-up and its precision choice, cached after the first run)."""
    framing = Framing(train_views=views.shape[0])
    t0 = time.perf_counter()
    _fit(
        views,
        labels,
        np.arange(len(labels)),
        np.empty(0, np.int64),
        cfg,
        framing=framing,
        progress=False,
        clock=clock,
    )
    return time.perf_counter() - t0


def calibration_s(threads: int) -> float:
    """Seconds a first run on this machine spends choosing its precision (the measurement
    behind ``bf16=None``, with an empty cache; later runs read the cached answer)."""
    old = os.environ.get("NEONSIGN_CACHE_DIR")
    keep_freed_memory()  # as fit() does before it measures
    with tempfile.TemporaryDirectory(prefix="neonsign-precision-") as tmp:
        os.environ["NEONSIGN_CACHE_DIR"] = tmp
        try:
            t0 = time.perf_counter()
            choose_precision(None, BATCH, threads)
            return time.perf_counter() - t0
        finally:
            if old is None:
                del os.environ["NEONSIGN_CACHE_DIR"]
            else:
                os.environ["NEONSIGN_CACHE_DIR"] = old


def labels_of(small: list[Path], seed: int) -> np.ndarray:
    """Class ids from the shared layout (``.../Images/000NN/file``); seeded ids for synthetic sets."""
    try:
        return np.array([int(p.parent.name) for p in small], dtype=np.int64)
    except ValueError:
        return np.random.default_rng(seed).integers(0, 43, len(small)).astype(np.int64)


def stats(xs: list[float], n: int) -> dict:
    return {
        "median_s": statistics.median(xs),
        "min_s": min(xs),
        "runs_s": xs,
        "images_per_s": n / statistics.median(xs),
    }


def variants_of(threads: int) -> dict[str, TrainConfig]:
    """The neonsign pipelines timed: the defaults a user gets, float32, and no augmentation."""
    common = dict(epochs=1, batch_size=BATCH, threads=threads, val_fraction=0.0, roi=False)
    return {
        "neonsign": TrainConfig(**common),  # the defaults: augmentation, precision by measurement
        "neonsign_float32": TrainConfig(**common, bf16=False),
        "neonsign_no_augment": TrainConfig(**common, augment=False),
    }


def split_of(clock: PhaseClock) -> dict:
    """Mean milliseconds per step in each phase, and the total."""
    ms = clock.per_step_ms()
    return {"steps": clock.steps, "per_step_ms": ms, "step_ms": sum(ms.values())}


def bench_set(name: str, paths: list[Path], labels: np.ndarray, args: argparse.Namespace) -> dict:
    """Interleaved epochs of the reference and neonsign's variants on one file set."""
    n = len(paths)
    t0 = time.perf_counter()
    images = pp.load_images(paths, size=32, dtype="uint8", threads=args.threads).images
    load_s = time.perf_counter() - t0
    # the default recipe trains on the ROI crop, the whole image and framing_views random boxes
    # of every image (neonsign.framing): the same number of views here (copies: the files have
    # no ROI), so the batch gather indexes (view, image) as a real run does
    n_views = 2 + TrainConfig().framing_views
    views = np.ascontiguousarray(np.broadcast_to(images, (n_views, *images.shape)))
    sizes = [Image.open(p).size for p in paths[:2000]]
    variants = variants_of(args.threads)
    # the reference in its own process(es), warmed up there; neonsign warmed up on a slice
    # (page cache, allocator, oneDNN primitives)
    refs = {"reference": ReferenceProcess(paths, labels, args, tuned=False)}
    if args.reference_tuned:
        refs["reference_tuned"] = ReferenceProcess(paths, labels, args, tuned=True)
    for cfg in variants.values():
        neonsign_epoch(views[:, :256], labels[:256], cfg)

    times: dict[str, list[float]] = {**{k: [] for k in refs}, **{k: [] for k in variants}}
    clocks = {k: PhaseClock() for k in times}
    try:
        for r in range(args.rounds):
            for key, ref_proc in refs.items():
                times[key].append(ref_proc.epoch(r, clocks[key]))
            for key, cfg in variants.items():
                times[key].append(neonsign_epoch(views, labels, cfg, clocks[key]))
            print(
                f"  {name} round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                flush=True,
            )
    finally:
        for ref_proc in refs.values():
            ref_proc.close()
    res = {
        "n_images": n,
        "neonsign_views": n_views,
        "mean_size_wh": [
            float(np.mean([w for w, _ in sizes])),
            float(np.mean([h for _, h in sizes])),
        ],
        "neonsign_load_s": load_s,
        **{k: stats(v, n) | {"split": split_of(clocks[k])} for k, v in times.items()},
    }
    ref = res["reference"]
    for key in [*variants, *(["reference_tuned"] if "reference_tuned" in refs else [])]:
        res[f"speedup_{key}_median"] = ref["median_s"] / res[key]["median_s"]
        res[f"speedup_{key}_min"] = ref["min_s"] / res[key]["min_s"]
        # each round's reference epoch against the neighbouring neonsign epoch: robust to load drift
        res[f"speedup_{key}_paired_median"] = statistics.median(
            a / b for a, b in zip(times["reference"], times[key], strict=False)
        )
    res["speedup_neonsign_incl_load"] = ref["median_s"] / (res["neonsign"]["median_s"] + load_s)
    res["load_average_end"] = os.getloadavg()[0]
    return res


def whole_run(sets: dict, first_run_s: float, epochs: int = 12) -> dict:
    """The whole-run figure per set: ``epochs`` reference epochs against neonsign's one-off
    first-run cost (precision calibration; no compilation) plus ``epochs`` default epochs."""
    out = {}
    for name, r in sets.items():
        ref = epochs * r["reference"]["median_s"]
        ours = first_run_s + epochs * r["neonsign"]["median_s"]
        out[name] = {
            "epochs": epochs,
            "reference_s": ref,
            "neonsign_s": ours,
            "speedup": ref / ours,
        }
    return out


def print_set(name: str, r: dict, res: dict, args: argparse.Namespace) -> None:
    """The epoch table and the per-step split of one file set."""
    rows = [
        ("learning path (Pillow per item, DataLoader, fp32)", "reference"),
        ("neonsign (defaults: augmentation, measured precision)", "neonsign"),
        ("neonsign (augmentation, float32)", "neonsign_float32"),
        ("neonsign (no augmentation, defaults)", "neonsign_no_augment"),
    ]
    if "reference_tuned" in r:
        rows.insert(1, ("learning path under neonsign's allocator setting", "reference_tuned"))
    w, h = r["mean_size_wh"]
    print(
        f"\n{name} set: epoch time, {r['n_images']} images (mean {w:.0f}x{h:.0f} px), batch {BATCH}, "
        f"{args.threads} thread(s), median of {args.rounds} interleaved rounds; "
        f"neonsign precision default: {res['neonsign_precision_default']}"
    )
    print(
        f"{'pipeline':<54} {'median s':>9} {'min s':>8} {'img/s':>8} {'speedup':>8} {'paired':>7}"
    )
    for label, key in rows:
        s = r[key]
        sp = "" if key == "reference" else f"{r[f'speedup_{key}_median']:.2f}x"
        pr = "" if key == "reference" else f"{r[f'speedup_{key}_paired_median']:.2f}x"
        print(
            f"{label:<54} {s['median_s']:>9.2f} {s['min_s']:>8.2f} {s['images_per_s']:>8.0f} {sp:>8} {pr:>7}"
        )
    print(f"per step (ms, mean over {args.rounds} rounds): " + " ".join(f"{p:>9}" for p in PHASES))
    for _, key in rows:
        ms = r[key]["split"]["per_step_ms"]
        print(f"  {key:<22}" + " ".join(f"{ms[p]:>9.2f}" for p in PHASES))
    wr = res["whole_run_12"][name]
    print(
        f"neonsign one-off C load of the files: {r['neonsign_load_s']:.2f} s; speedup including it "
        f"{r['speedup_neonsign_incl_load']:.2f}x; target 3x. 12-epoch run (first-run precision "
        f"calibration {res['first_run_s']:.2f} s included): {wr['reference_s']:.1f} s vs "
        f"{wr['neonsign_s']:.1f} s = {wr['speedup']:.2f}x (target 2.5x)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8000, help="images per set (default 8000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    ap.add_argument(
        "--reference-tuned",
        action="store_true",
        help="also time the reference under neonsign's allocator setting (its own process)",
    )
    ap.add_argument("--sets", default="real-size,32x32", help="comma list of real-size, 32x32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "train.json")
    )
    args = ap.parse_args()
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in wanted:
        if s not in ("real-size", "32x32"):
            ap.error(f"--sets: unknown set {s!r} (choose from real-size, 32x32)")

    torch.set_num_threads(args.threads)
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="neonsign-trainbench-")
        workdir = Path(tmp)
    try:
        real, small, source = make_sets(args.n, args.seed, workdir)
        labels = labels_of(small, args.seed)
        print(f"data: {source}; {len(real)} files per set", flush=True)
        files = {"real-size": real, "32x32": small}
        first_run_s = calibration_s(args.threads)
        sets = {s: bench_set(s, files[s], labels, args) for s in wanted}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    res = {
        "benchmark": "train_epoch",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": {
            "neonsign": neonsign.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "data": source,
        "batch_size": BATCH,
        "threads": args.threads,
        "reference_workers": args.workers,
        "rounds": args.rounds,
        "neonsign_precision_default": resolve_precision(None),
        "first_run_s": first_run_s,
        "sets": sets,
        "whole_run_12": whole_run(sets, first_run_s),
        "target_speedup": 3.0,
        "target_whole_run_speedup": 2.5,
    }
    for name, r in sets.items():
        print_set(name, r, res, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
