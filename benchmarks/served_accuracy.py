"""Served accuracy on the whole by-track validation split (issue 13): a real ``neonsign serve``
(uvicorn, in a child process) gets every held-out image of a model's validation split uploaded
as the learning path's client sends it (multipart PNG and JPEG, whole and with the ROI form
field), and its answers are scored against ``neonsign test`` and ``neonsign predict`` on the same
images -- ``check_served_path`` of tests/test_served_path.py, which also asserts the equalities.

Usage: python benchmarks/served_accuracy.py --model DIR --data GTSRB_ROOT --work NEW_DIR
       [--val-fraction 0.2] [--seed 0] [--out FILE]
The split is the one ``neonsign train`` held out (``track_split`` with the card's defaults);
NEW_DIR receives a root of symbolic links to those images and the uploads. Prints the figures
and writes JSON (default benchmarks/results/served_accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from neonsign import data  # noqa: E402
from test_served_path import EvalSet, check_served_path, subset_root  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path, help="a new directory for the uploads")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/served_accuracy.json")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=False)
    _, _, meta = data.load_split(args.data, "train", dtype="uint8")
    _, val_idx = data.track_split(meta, args.val_fraction, seed=args.seed)
    ev = EvalSet.load(subset_root(meta, val_idx, args.work / "val"), "train")
    t0 = time.perf_counter()
    figures: dict[str, object] = dict(check_served_path(args.model, ev, args.work / "work"))
    figures.update(model=str(args.model), n_images=len(ev.paths), seconds=time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
