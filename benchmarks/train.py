"""Training benchmark: epoch time of neonsign's preloaded-array training vs the learning path's loop.

Reference (Arm's learning path, ``train_model.py``): a Dataset that per item opens the file with
Pillow, ``Resize((32, 32))`` (bilinear), ``ToTensor`` and ``Normalize(0.5, 0.5)`` (torchvision's
semantics, written out here because torchvision is not a neonsign dependency), a shuffling
DataLoader of batch 64 (``--workers``, default 0 as in the learning path), Adam lr 1e-3,
cross-entropy. neonsign: the split loaded once by the C loader (uint8, timed separately), then
:func:`neonsign.train.fit` for one epoch (batch augmentation in torch, AdamW + one-cycle), no
validation. Same files, same model, same batch size, same thread count.

Epochs of the two are interleaved (reference, neonsign, reference, ...) so machine noise hits
both alike; the figures are medians over ``--rounds`` (and the minimum is reported too).

Usage: python benchmarks/train.py [--data ROOT] [--limit N] [--rounds R] [--threads T] [--out FILE]
Writes JSON (default benchmarks/results/train.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import neonsign
from neonsign.data import load_split
from neonsign.model import TrafficSignNet
from neonsign.train import TrainConfig, fit

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
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
        mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)  # Normalize makes these per call
        std = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
        return (t - mean) / std, int(self.labels[i])


def reference_epoch(loader: DataLoader, seed: int) -> float:
    """One epoch of the learning path's loop; returns seconds."""
    torch.manual_seed(seed)
    model = TrafficSignNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    for images, labels in loader:
        opt.zero_grad()
        loss = crit(model(images), labels)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def neonsign_epoch(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig) -> float:
    """One epoch of neonsign's training on preloaded arrays (no validation); returns seconds."""
    t0 = time.perf_counter()
    fit(images, labels, np.arange(len(labels)), np.empty(0, np.int64), cfg, progress=False)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_root = os.environ.get("GTSRB_ROOT") or str(Path(__file__).resolve().parents[1].parent / "shared" / "gtsrb")
    ap.add_argument("--data", default=default_root)
    ap.add_argument("--limit", type=int, default=8000, help="images (default 8000; 0 = all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "train.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    images, labels, meta = load_split(args.data, "train", dtype="uint8", roi=False,
                                      threads=args.threads, limit=args.limit or None)
    load_s = time.perf_counter() - t0
    n = len(labels)
    paths = [Path(p) for p in meta.paths]
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(LearningPathDataset(paths, labels), batch_size=BATCH, shuffle=True,
                        num_workers=args.workers, generator=gen)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, threads=args.threads, val_fraction=0.0, roi=False)
    cfg_noaug = TrainConfig(epochs=1, batch_size=BATCH, threads=args.threads, val_fraction=0.0,
                            roi=False, augment=False)

    # warm-up (page cache, allocator, oneDNN primitives) on a slice
    reference_epoch(DataLoader(LearningPathDataset(paths[:256], labels[:256]), batch_size=BATCH), 0)
    neonsign_epoch(images[:256], labels[:256], cfg)

    ref, neo, neo_noaug = [], [], []
    for r in range(args.rounds):
        ref.append(reference_epoch(loader, r))
        neo.append(neonsign_epoch(images, labels, cfg))
        neo_noaug.append(neonsign_epoch(images, labels, cfg_noaug))
        print(f"round {r + 1}/{args.rounds}: reference {ref[-1]:.2f} s, neonsign {neo[-1]:.2f} s "
              f"(no augmentation {neo_noaug[-1]:.2f} s)", flush=True)

    def stats(xs: list[float]) -> dict[str, float]:
        return {"median_s": statistics.median(xs), "min_s": min(xs), "runs_s": xs,
                "images_per_s": n / statistics.median(xs)}

    res = {
        "benchmark": "train_epoch",
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "versions": {"neonsign": neonsign.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "data": args.data, "n_images": n, "batch_size": BATCH, "threads": args.threads,
        "reference_workers": args.workers, "rounds": args.rounds,
        "neonsign_load_s": load_s,
        "reference": stats(ref),
        "neonsign": stats(neo),
        "neonsign_no_augment": stats(neo_noaug),
    }
    res["speedup_median"] = res["reference"]["median_s"] / res["neonsign"]["median_s"]
    res["speedup_min"] = res["reference"]["min_s"] / res["neonsign"]["min_s"]
    res["speedup_incl_load"] = res["reference"]["median_s"] / (res["neonsign"]["median_s"] + load_s)
    res["target_speedup"] = 3.0

    rows = [("learning path (Pillow per item, DataLoader)", res["reference"]),
            ("neonsign (preloaded arrays, augmentation)", res["neonsign"]),
            ("neonsign (preloaded arrays, no augmentation)", res["neonsign_no_augment"])]
    print(f"\nepoch time, {n} images, batch {BATCH}, {args.threads} thread(s), median of {args.rounds}")
    print(f"{'pipeline':<46} {'median s':>9} {'min s':>8} {'img/s':>8}")
    for name, s in rows:
        print(f"{name:<46} {s['median_s']:>9.2f} {s['min_s']:>8.2f} {s['images_per_s']:>8.0f}")
    print(f"speedup (median) {res['speedup_median']:.2f}x, (min) {res['speedup_min']:.2f}x, "
          f"including neonsign's one-off load ({load_s:.2f} s) {res['speedup_incl_load']:.2f}x; target 3x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
