"""bf16 vs float32 training: by-track validation accuracy and time on the same data, same epochs.

Loads a seeded subset of the GTSRB training split with the C loader (ROI crop, as ``neonsign
train``), splits it by track (20 % of tracks held out), then trains TrafficSignNet with
``TrainConfig(bf16=False)`` and ``TrainConfig(bf16=True)`` (same seed, threads, epochs) and reports
the best by-track validation accuracy, per-epoch seconds and total seconds of each.

Usage: python benchmarks/train_bf16_accuracy.py [--data ROOT] [--limit N] [--epochs E] [--threads T]
Writes JSON (default benchmarks/results/train_bf16_accuracy.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from neonsign.data import load_split, track_split
from neonsign.train import TrainConfig, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess import SHARED  # noqa: E402  (the shared GTSRB root, $GTSRB_ROOT first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--limit", type=int, default=12000, help="images loaded (0 = all)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results" / "train_bf16_accuracy.json"),
    )
    args = ap.parse_args()

    images, labels, meta = load_split(
        args.data, "train", dtype="uint8", roi=True, threads=args.threads, limit=args.limit or None
    )
    train_idx, val_idx = track_split(meta, val_fraction=0.2, seed=0)
    res: dict = {
        "data": args.data,
        "n_images": int(len(labels)),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "epochs": args.epochs,
        "threads": args.threads,
        "load_average_start": os.getloadavg()[0],
        "runs": {},
    }
    for bf16 in (False, True):
        cfg = TrainConfig(epochs=args.epochs, threads=args.threads, bf16=bf16)
        r = fit(images, labels, train_idx, val_idx, cfg, progress=False)
        name = r.precision
        res["runs"][name] = {
            "best_val_accuracy": r.val_accuracy,
            "best_epoch": r.best_epoch,
            "seconds": r.seconds,
            "val_accuracy_per_epoch": [h["val_accuracy"] for h in r.history],
            "epoch_seconds": [h["seconds"] for h in r.history],
        }
        print(
            f"{name:9s} best by-track val accuracy {r.val_accuracy:.4f} (epoch {r.best_epoch}/"
            f"{args.epochs}), {r.seconds:.1f} s",
            flush=True,
        )
    res["load_average_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
