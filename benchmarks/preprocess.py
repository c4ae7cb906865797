"""Preprocessing benchmark: neonsign's C loader against the learning path's Pillow pipeline.

Same files, warm page cache, medians of repeated runs, every method producing float32
(N, 3, 32, 32) normalised with mean = std = 0.5:

* ``neonsign``: ``neonsign.preprocess.load_images(paths)`` (the shared pool's threads, and 1);
* ``reference-1proc``: the learning path's pipeline rebuilt without torchvision -- per item
  ``PIL.Image.open -> convert("RGB") -> resize((32, 32), BILINEAR) -> ToTensor -> Normalize`` with
  the mean/std tensors made per call, batched by a torch DataLoader (batch 64), in one process;
* ``reference-2workers``: the same with ``num_workers=2``;
* ``lean-loop``: Pillow + NumPy into a preallocated uint8 array, one vectorised normalisation;
* ``read-bytes``: only reading each file's bytes in Python (a floor for any file-based loader).

Two file sets: (1) GTSRB's real sizes -- the shared 32x32 training files upsampled (Pillow
bilinear) to the original Width x Height of ``original-annotations`` (a seeded subset across all
classes, ``--n``); if the shared data is absent, synthetic PPMs with sides drawn from 15..250;
(2) the 32x32 shared files themselves (or synthetic 32x32 files).

Split section (issue 15: loading at the I/O floor): a GTSRB *test split* of ``--split-n``
(default 12,630, the official count) real-size PPMs with ``GT-final_test.csv``, written to a
temporary folder -- sizes and ROIs drawn from the original annotations of the shared training
split (mean about 51x51, like the official test split), pixels the shared 32x32 files upsampled
to those sizes (synthetic images from :mod:`neonsign.synth` when the shared data is absent).
Timed side by side: the first three in interleaved rounds so load drift on a shared machine hits
them alike, the two references in rounds of their own afterwards (see ``bench_split``):

* ``open-read``: one Python thread that opens and reads every file (the I/O floor);
* ``load_split-1thread`` / ``load_split-2threads``: ``neonsign.data.load_split(root, "test")``
  (float32, the whole call: listing, C pass, checksum);
* ``torchvision-style``: the learning path's per-item pipeline (``reference-1proc`` above);
* ``pillow-numpy``: the lean Pillow + NumPy loop.

and printed as ratios to ``open-read`` (goal: ``load_split-2threads`` >= 1.0x).

Prints a table and writes JSON (machine, CPU flags, threads, versions, every figure) to
benchmarks/results/preprocess-<host>.json (or ``--json``).

    python benchmarks/preprocess.py --n 5000
    python benchmarks/preprocess.py --split-only       # only the split section (about a minute)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

import neonsign
from neonsign import preprocess as pp
from neonsign.backends import openmp_wait_policy, prefer_passive_openmp


def _shared_root() -> Path:
    """$GTSRB_ROOT, else the first shared/gtsrb beside the repository or one of its parents."""
    env = os.environ.get("GTSRB_ROOT")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared" / "gtsrb").is_dir():
            return parent / "shared" / "gtsrb"
    return Path("shared") / "gtsrb"


SHARED = _shared_root()
SIZE = 32


# ---------------------------------------------------------------------------------------------
# Data


def write_ppm(path: Path, img: np.ndarray) -> None:
    h, w, _ = img.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(img).tobytes())


def pick_shared(n: int, seed: int) -> list[tuple[Path, int, int]]:
    """(path of the 32x32 file, original width, original height) for n images across classes."""
    per_class: list[list[tuple[Path, int, int]]] = []
    ann_root = SHARED / "original-annotations" / "Final_Training" / "Images"
    for class_dir in sorted(ann_root.iterdir()):
        csvs = list(class_dir.glob("GT-*.csv"))
        if not csvs:
            continue
        rows = []
        with open(csvs[0], newline="") as f:
            for rec in csv.DictReader(f, delimiter=";"):
                p = SHARED / "Final_Training" / "Images" / class_dir.name / rec["Filename"]
                rows.append((p, int(rec["Width"]), int(rec["Height"])))
        per_class.append(rows)
    rng = random.Random(seed)
    for rows in per_class:
        rng.shuffle(rows)
    picked: list[tuple[Path, int, int]] = []
    i = 0
    while len(picked) < n and any(i < len(r) for r in per_class):
        for rows in per_class:
            if i < len(rows) and len(picked) < n:
                picked.append(rows[i])
        i += 1
    return picked


def make_sets(n: int, seed: int, workdir: Path) -> tuple[list[Path], list[Path], str]:
    """Write the real-size set into workdir; return (real-size paths, 32x32 paths, source)."""
    real_dir = workdir / "real"
    real_dir.mkdir(parents=True, exist_ok=True)
    real: list[Path] = []
    small: list[Path] = []
    if (SHARED / "original-annotations").is_dir():
        picked = pick_shared(n, seed)
        for i, (p, w, h) in enumerate(picked):
            img = Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR)
            out = real_dir / f"{i:05d}.ppm"
            write_ppm(out, np.asarray(img))
            real.append(out)
            small.append(p)
        return real, small, f"shared GTSRB ({SHARED}) upsampled to original sizes"
    rng = np.random.default_rng(seed)
    small_dir = workdir / "small"
    small_dir.mkdir(exist_ok=True)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(15, 251, 2))
        base = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
        write_ppm(real_dir / f"{i:05d}.ppm", img)
        real.append(real_dir / f"{i:05d}.ppm")
        write_ppm(small_dir / f"{i:05d}.ppm", np.asarray(Image.fromarray(img).resize((32, 32))))
        small.append(small_dir / f"{i:05d}.ppm")
    return real, small, "synthetic PPMs (sides 15..250): shared GTSRB data not found"


# ---------------------------------------------------------------------------------------------
# Methods


def run_neonsign(paths: Sequence[Path], threads: int | None) -> np.ndarray:
    return pp.load_images(paths, size=SIZE, threads=threads).images


def run_lean(paths: Sequence[Path]) -> np.ndarray:
    out = np.empty((len(paths), SIZE, SIZE, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    x = out.transpose(0, 3, 1, 2).astype(np.float32)
    x *= np.float32(1 / 255)
    x -= np.float32(0.5)
    x /= np.float32(0.5)
    return x


def reference_loader(paths: Sequence[Path], workers: int):
    """The learning path's per-item pipeline in a torch DataLoader (batch 64)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class ReferenceDataset(Dataset):
        def __init__(self, files: Sequence[Path]):
            self.files = list(files)

        def __len__(self) -> int:
            return len(self.files)

        def __getitem__(self, i: int):
            img = Image.open(self.files[i]).convert("RGB")
            img = img.resize((SIZE, SIZE), Image.BILINEAR)
            # ToTensor
            t = (
                torch.from_numpy(np.asarray(img).copy())
                .permute(2, 0, 1)
                .contiguous()
                .float()
                .div(255)
            )
            # Normalize(0.5, 0.5) with its tensors made per call, as torchvision does
            mean = torch.as_tensor((0.5, 0.5, 0.5), dtype=t.dtype)
            std = torch.as_tensor((0.5, 0.5, 0.5), dtype=t.dtype)
            t = t.sub_(mean[:, None, None]).div_(std[:, None, None])
            return t, 0

    def run() -> np.ndarray:
        loader = DataLoader(
            ReferenceDataset(paths), batch_size=64, shuffle=False, num_workers=workers
        )
        return torch.cat([x for x, _ in loader]).numpy()

    return run


def _annotation_rows() -> list[tuple[Path, int, int, tuple[int, int, int, int], int]]:
    """(32x32 file, original width, height, ROI, class) of every shared training image."""
    rows = []
    ann_root = SHARED / "original-annotations" / "Final_Training" / "Images"
    for class_dir in sorted(ann_root.iterdir()):
        for csv_path in sorted(class_dir.glob("GT-*.csv")):
            with open(csv_path, newline="") as f:
                for rec in csv.DictReader(f, delimiter=";"):
                    p = SHARED / "Final_Training" / "Images" / class_dir.name / rec["Filename"]
                    roi = tuple(int(rec[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
                    rows.append(
                        (p, int(rec["Width"]), int(rec["Height"]), roi, int(rec["ClassId"]))
                    )
    return rows  # type: ignore[return-value]


def make_test_split(root: Path, n: int, seed: int) -> str:
    """Write a GTSRB test split of n real-size PPMs under root (official layout); its source."""
    images = root / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    if not (SHARED / "original-annotations").is_dir():
        from neonsign.synth import synthesize

        synthesize(root / "synth", n_per_class=1, with_test=True, n_test=n, seed=seed)
        return f"synthetic (neonsign.synth), {n} test images: shared GTSRB data not found"
    rows = _annotation_rows()
    rng = random.Random(seed)
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(n):
        p, w, h, roi, cls = rows[rng.randrange(len(rows))]
        img = Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR)
        name = f"{i:05d}.ppm"
        write_ppm(images / name, np.asarray(img))
        lines.append(f"{name};{w};{h};{roi[0]};{roi[1]};{roi[2]};{roi[3]};{cls}")
    (root / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    return (
        f"{n} real-size PPMs: sizes/ROIs drawn from {SHARED}/original-annotations, "
        "pixels the shared 32x32 files upsampled (Pillow bilinear)"
    )


def bench_split(args: argparse.Namespace, workdir: Path, have_torch: bool) -> dict:
    """The split section: load_split against the open+read floor, side by side."""
    from neonsign import data

    t0 = time.perf_counter()
    root = workdir / "split"
    source = make_test_split(root, args.split_n, args.seed)
    if (root / "synth").is_dir():
        root = root / "synth"
    spec = data.find_split(root, "test")
    paths = sorted(spec.images_dir.glob("*.ppm"))
    sizes = np.array([Image.open(p).size for p in paths[:: max(1, len(paths) // 2000)]])
    n = len(paths)
    print(
        f"\nsplit: {source}; {n} files, mean {sizes[:, 0].mean():.1f}x{sizes[:, 1].mean():.1f} "
        f"(made in {time.perf_counter() - t0:.1f} s)"
    )
    fast: dict[str, Callable[[], object]] = {
        "open-read": lambda: run_read_bytes(paths),
        "load_split-1thread": lambda: data.load_split(root, "test", threads=1),
        "load_split-2threads": lambda: data.load_split(root, "test", threads=2),
    }
    slow: dict[str, Callable[[], object]] = {"pillow-numpy": lambda: run_lean(paths)}
    if have_torch:
        slow["torchvision-style"] = reference_loader(paths, 0)
    times: dict[str, list[float]] = {k: [] for k in (*fast, *slow)}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    # load_split's own split of its wall time: the loader call (C pass with the checksum
    # hashed by its threads: meta.seconds) and everything else (finding and listing the
    # split, argument checks, building the metadata), which runs on one thread
    loader: dict[str, list[float]] = {k: [] for k in fast if k.startswith("load_split")}

    def timed_once(name: str, fn: Callable[[], object]) -> None:
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        times[name].append(time.perf_counter() - t)
        cpu[name].append(time.process_time() - c)
        if name in loader:
            loader[name].append(out[2].seconds)  # type: ignore[index]

    for fn in fast.values():
        fn()  # warm-up: page cache, pool threads, imports
    load_before = os.getloadavg()[0]
    # The goal's methods in interleaved rounds, so drift hits them alike; the slow references
    # in rounds of their own afterwards: run between them, they slowed whatever came next
    # that allocates much (measured: load_split right after them at 1.5-2.5x its usual time,
    # most likely the kernel finding huge pages for its fresh output after their hundreds of
    # MB of short-lived allocations), while open-read, which allocates little, was untouched.
    for _ in range(args.split_repeats):
        for name, fn in fast.items():
            timed_once(name, fn)
    for fn in slow.values():
        fn()  # warm-up
    for _ in range(args.ref_repeats):
        for name, fn in slow.items():
            timed_once(name, fn)
    figures = {
        k: {
            "median_s": statistics.median(v),
            "times_s": v,
            "images_per_s": n / statistics.median(v),
            # CPU time of this process (all its threads): what the method costs, whatever the
            # other load on the machine lets the wall clock show
            "cpu_us_per_image": statistics.median(cpu[k]) / n * 1e6,
        }
        for k, v in times.items()
    }
    for k, v in loader.items():
        figures[k]["loader_call_ms"] = statistics.median(v) * 1e3
        figures[k]["rest_ms"] = (
            statistics.median(t - s for t, s in zip(times[k], v, strict=True)) * 1e3
        )
    load_avg = (load_before, os.getloadavg()[0])
    floor = figures["open-read"]["images_per_s"]
    ratios = {f"{k}_vs_open-read": f["images_per_s"] / floor for k, f in figures.items()}
    for k in ("torchvision-style", "pillow-numpy"):
        if k in figures:
            ratios[f"load_split-2threads_vs_{k}"] = (
                figures["load_split-2threads"]["images_per_s"] / figures[k]["images_per_s"]
            )
    for k, f in figures.items():
        phases = (
            f"   (loader call {f['loader_call_ms']:.1f} ms + rest {f['rest_ms']:.1f} ms)"
            if k in loader
            else ""
        )
        print(
            f"  split {k:22s} {f['images_per_s']:12,.0f} img/s   "
            f"{ratios[f'{k}_vs_open-read']:5.2f}x open-read   {f['cpu_us_per_image']:7.2f} CPU us/img"
            + phases
        )
    print(
        "  goal: load_split-2threads >= 1.0x open-read "
        f"(got {ratios['load_split-2threads_vs_open-read']:.2f}x; 1-min load average "
        f"{load_avg[0]:.2f} -> {load_avg[1]:.2f} on {os.cpu_count()} CPUs)"
    )
    return {
        "source": source,
        "n": n,
        "figures": figures,
        "ratios": ratios,
        "goal": 1.0,
        "load_average_1min": load_avg,
    }


def run_read_bytes(paths: Sequence[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            f.read()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], float, object]:
    """(median wall seconds, all wall times, median CPU seconds of this process, result)."""
    result = fn()  # warm-up (page cache, imports, pool threads)
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu), result


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    info = {
        "node": platform.node(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "CPU part", "CPU implementer") and key not in info:
                info[key] = value.strip()
            if key in ("flags", "Features") and "cpu_flags" not in info:
                flags = value.split()
                info["cpu_flags"] = [
                    f
                    for f in flags
                    if f.startswith(("avx", "sse4", "fma", "asimd", "neon", "sve", "fp"))
                ]
    except OSError:
        pass
    return info


def versions() -> dict:
    import PIL

    v = {"neonsign": neonsign.__version__, "numpy": np.__version__, "pillow": PIL.__version__}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:
        v["torch"] = None
    v["native"] = neonsign._native.build_info()
    v["resize_simd"] = neonsign._native.resize_simd()
    return v


def _torch_threads(threads: int) -> bool:
    """Give libtorch the benchmark's thread count; False when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return False
    torch.set_num_threads(threads)
    return True


def write_report(args: argparse.Namespace, threads: int, sections: dict) -> None:
    """JSON of a ``--split-only`` run (the full run writes its own, with more sections)."""
    report = {
        "benchmark": "preprocess",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions(),
        "threads": threads,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "openmp_wait_policy": openmp_wait_policy(),
        **sections,
    }
    out = (
        args.json
        or Path(__file__).resolve().parent / "results" / f"preprocess-split-{platform.node()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="images per set (default 5000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the fast methods")
    ap.add_argument(
        "--ref-repeats", type=int, default=3, help="timed runs of the reference methods"
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="neonsign threads (default: the pool's)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    ap.add_argument("--no-torch", action="store_true", help="skip the DataLoader references")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--quick", action="store_true", help="CI smoke run: 200 images, one timed run each"
    )
    ap.add_argument("--split-n", type=int, default=12630, help="test-split files (12,630)")
    ap.add_argument("--split-repeats", type=int, default=7, help="interleaved split rounds")
    ap.add_argument("--split-only", action="store_true", help="only the split section")
    args = ap.parse_args(argv)
    # libtorch's idle OpenMP workers (the torchvision-style reference) would otherwise spin
    # after each reference run, taking the second core -- and counting as this process's CPU
    # time -- during the next round's load_split
    prefer_passive_openmp()
    if args.quick:
        args.n, args.repeats, args.ref_repeats = 200, 1, 1
        args.split_n, args.split_repeats = 300, 1

    if args.threads is not None:
        neonsign.set_threads(args.threads)
    threads = neonsign.get_threads()
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="neonsign-bench-")
        workdir = Path(tmp)
    try:
        if args.split_only:
            have_torch = not args.no_torch and _torch_threads(threads)
            write_report(args, threads, {"split": bench_split(args, workdir, have_torch)})
            return 0
        t0 = time.perf_counter()
        real, small, source = make_sets(args.n, args.seed, workdir)
        setup_s = time.perf_counter() - t0
        sizes = [Image.open(p).size for p in real[:2000]]
        print(f"data: {source}; {len(real)} files per set (made in {setup_s:.1f} s)")
        print(
            f"real sizes: mean {np.mean([w for w, _ in sizes]):.0f}x{np.mean([h for _, h in sizes]):.0f}, "
            f"max {max(w for w, _ in sizes)}x{max(h for _, h in sizes)}"
        )
        have_torch = not args.no_torch and _torch_threads(threads)

        results: dict[str, dict] = {}
        for set_name, paths in (("real-size", real), ("32x32", small)):
            n = len(paths)
            figures: dict[str, dict] = {}

            def record(name: str, fn: Callable[[], object], repeats: int) -> object:
                med, times, cpu, out = timed(fn, repeats)
                # CPU time of this process only: DataLoader workers are not included
                cpu_us = None if name == "reference-2workers" else cpu / n * 1e6
                figures[name] = {
                    "median_s": med,
                    "times_s": times,
                    "images_per_s": n / med,
                    "cpu_us_per_image": cpu_us,
                }
                cpu_txt = (
                    f"{cpu_us:7.1f} CPU us/img"
                    if cpu_us is not None
                    else "   (workers' CPU not counted)"
                )
                print(
                    f"  {set_name:9s} {name:22s} {n / med:12,.0f} img/s   (median {med * 1e3:8.1f} ms, {cpu_txt})"
                )
                sys.stdout.flush()
                return out

            ours = record("neonsign", lambda: run_neonsign(paths, None), args.repeats)
            record("neonsign-1thread", lambda: run_neonsign(paths, 1), args.repeats)
            lean = record("lean-loop", lambda: run_lean(paths), args.ref_repeats)
            record("read-bytes", lambda: run_read_bytes(paths), args.repeats)
            ref = None
            if have_torch:
                ref = record("reference-1proc", reference_loader(paths, 0), args.ref_repeats)
                record("reference-2workers", reference_loader(paths, 2), args.ref_repeats)
            # correctness beside speed: within 1/255 before normalisation = 2/255 after
            check = {"max_abs_diff_vs_lean": float(np.abs(ours - lean).max())}
            if ref is not None:
                check["max_abs_diff_vs_reference"] = float(np.abs(ours - ref).max())
            ratios = {}
            for other in ("reference-1proc", "reference-2workers", "lean-loop", "read-bytes"):
                if other in figures:
                    ratios[f"neonsign_vs_{other}"] = (
                        figures["neonsign"]["images_per_s"] / figures[other]["images_per_s"]
                    )
            results[set_name] = {"n": n, "figures": figures, "ratios": ratios, "check": check}

        # The resampler alone, in memory: Pillow's resize against neonsign's (one call per image,
        # Python overhead included on both sides), on the decoded real-size images.
        arrays = [pp.read_ppm(p) for p in real[:2000]]
        pil_images = [Image.fromarray(a) for a in arrays]
        _, _, pil_cpu, _ = timed(
            lambda: [im.resize((SIZE, SIZE), Image.BILINEAR) for im in pil_images], args.repeats
        )
        _, _, ns_cpu, _ = timed(lambda: [pp.resize(a, SIZE) for a in arrays], args.repeats)
        resize_only = {
            "n": len(arrays),
            "pillow_cpu_us_per_image": pil_cpu / len(arrays) * 1e6,
            "neonsign_cpu_us_per_image": ns_cpu / len(arrays) * 1e6,
            "speedup": pil_cpu / ns_cpu,
        }
        print(
            f"  resize only (in memory, real sizes -> 32x32, CPU time): "
            f"Pillow {resize_only['pillow_cpu_us_per_image']:.1f} us, "
            f"neonsign {resize_only['neonsign_cpu_us_per_image']:.1f} us per image ({resize_only['speedup']:.1f}x)"
        )

        print()
        print(
            f"{'set':10s} {'vs reference-1proc':>20s} {'vs reference-2workers':>22s} {'vs lean-loop':>14s}   max|diff|"
        )
        for set_name, r in results.items():
            ra = r["ratios"]
            cells = [
                f"{ra.get(k, float('nan')):.1f}x"
                for k in (
                    "neonsign_vs_reference-1proc",
                    "neonsign_vs_reference-2workers",
                    "neonsign_vs_lean-loop",
                )
            ]
            diff = max(r["check"].values())
            print(f"{set_name:10s} {cells[0]:>20s} {cells[1]:>22s} {cells[2]:>14s}   {diff:.5f}")
        print(
            "targets at real sizes: >= 30x reference-1proc, >= 15x reference-2workers, >= 10x lean-loop"
        )
        for set_name, r in results.items():
            f = r["figures"]
            base = f["neonsign-1thread"]["cpu_us_per_image"]
            parts = [
                f"{k} {f[k]['cpu_us_per_image'] / base:.1f}x"
                for k in ("reference-1proc", "lean-loop")
                if k in f and f[k]["cpu_us_per_image"]
            ]
            r["cpu_ratios_vs_neonsign_1thread"] = {
                k: f[k]["cpu_us_per_image"] / base
                for k in ("reference-1proc", "lean-loop")
                if k in f
            }
            print(
                f"CPU per image, {set_name}: neonsign (1 thread) {base:.1f} us; others cost "
                + ", ".join(parts)
            )
        split = bench_split(args, workdir, have_torch)
        if hasattr(os, "getloadavg"):
            print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        report = {
            "benchmark": "preprocess",
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine_info(),
            "versions": versions(),
            "threads": threads,
            "data": {"source": source, "n": args.n, "seed": args.seed, "output": [3, SIZE, SIZE]},
            "repeats": {"fast": args.repeats, "reference": args.ref_repeats},
            "results": results,
            "resize_only": resize_only,
            "split": split,
            "targets": {
                "neonsign_vs_reference-1proc": 30,
                "neonsign_vs_reference-2workers": 15,
                "neonsign_vs_lean-loop": 10,
            },
        }
        out = (
            args.json
            or Path(__file__).resolve().parent / "results" / f"preprocess-{platform.node()}.json"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
