"""How learnable is the synthetic GTSRB? Train the product's trainer on it and report accuracy.

For each configuration: synthesise (timed), load through the C loader, split by track, train
with :func:`neonsign.train.fit` and measure accuracy on the held-out tracks and on the synthetic
test split. Prints a table and writes JSON. Needs PyTorch.

    python benchmarks/synth_learnability.py --configs 60x6 120x10 --epochs 10 --out synth_learn.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def run(per_class: int, per_track: int, epochs: int, seed: int, workdir: Path) -> dict:
    import torch

    from neonsign.data import load_split, track_split
    from neonsign.model import TrafficSignNet
    from neonsign.preprocess import normalize
    from neonsign.synth import synthesize
    from neonsign.train import TrainConfig, fit

    root = workdir / f"synth_{per_class}x{per_track}"
    t0 = time.perf_counter()
    c0 = time.process_time()
    synthesize(root, n_per_class=per_class, images_per_track=per_track, seed=seed)
    synth_wall, synth_cpu = time.perf_counter() - t0, time.process_time() - c0
    cfg = TrainConfig(epochs=epochs, seed=seed)
    images, labels, meta = load_split(root, "train", dtype="uint8", roi=cfg.roi)
    test_u8, test_labels, _ = load_split(root, "test", dtype="uint8", roi=cfg.roi)
    train_idx, val_idx = track_split(meta, val_fraction=cfg.val_fraction, seed=seed)
    result = fit(images, labels, train_idx, val_idx, cfg, progress=False)
    model = TrafficSignNet()
    model.load_state_dict(result.state_dict)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(test_u8, cfg.mean, cfg.std)))
    test_acc = float((logits.argmax(1).numpy() == test_labels).mean())
    return {
        "per_class": per_class,
        "per_track": per_track,
        "epochs": epochs,
        "seed": seed,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(test_labels)),
        "synth_seconds_wall": round(synth_wall, 2),
        "synth_seconds_cpu": round(synth_cpu, 2),
        "train_seconds": round(result.seconds, 1),
        "val_accuracy_by_track": result.val_accuracy,
        "test_accuracy": test_acc,
        "chance": 1 / 43,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["60x6", "120x10"],
        help="PERCLASSxPERTRACK, e.g. 60x6 (the main job's) 120x10",
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="synth_learnability.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs:
            per_class, per_track = (int(v) for v in spec.lower().split("x"))
            rows.append(run(per_class, per_track, args.epochs, args.seed, Path(tmp)))
            r = rows[-1]
            print(
                f"{per_class:>4} x {per_track:<3} train {r['n_train']:>5}  val(by track) "
                f"{r['val_accuracy_by_track']:.3f}  test {r['test_accuracy']:.3f}  "
                f"(chance {r['chance']:.3f}; synth {r['synth_seconds_cpu']} s CPU, "
                f"train {r['train_seconds']} s)",
                flush=True,
            )
    Path(args.out).write_text(json.dumps({"results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
