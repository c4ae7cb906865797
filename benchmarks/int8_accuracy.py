"""int8 accuracy benchmark (issue 16): FP32 vs int8 top-1 accuracy of one trained model on the
by-track validation split of its card (both framings: ROI crops and whole images), for each
calibration method of neonsign.quantize, calibrated on the same training images.

Usage: python benchmarks/int8_accuracy.py --model DIR --data GTSRB_ROOT [--images 2000]
       [--methods minmax,percentile:99.9,percentile:99.99,percentile:99.999,mse] [--out FILE]
Prints a table and writes JSON (default benchmarks/results/int8_accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import neonsign
from neonsign import quantize
from neonsign.artifacts import load_any
from neonsign.engine import Engine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=quantize.DEFAULT_IMAGES)
    ap.add_argument(
        "--methods", default="minmax,percentile:99.9,percentile:99.99,percentile:99.999,mse"
    )
    ap.add_argument("--out", default="benchmarks/results/int8_accuracy.json")
    args = ap.parse_args(argv)
    sd, card = load_any(args.model)
    calib, info = quantize.calibration_images(args.data, card, args.images, seed=0)
    acts = quantize.activations(sd, calib)
    framings = {
        name: quantize.validation_split(args.data, card, roi)
        for name, roi in (("roi", True), ("whole", False))
    }
    fp32 = Engine(sd)
    p32 = {name: fp32.predict(x).argmax(1) for name, (x, _) in framings.items()}
    rows = []
    for name, (_, y) in framings.items():
        rows.append(
            {
                "method": "fp32",
                "framing": name,
                "images": len(y),
                "accuracy": float((p32[name] == y).mean()),
            }
        )
    for spec in args.methods.split(","):
        method, _, pct = spec.partition(":")
        percentile = float(pct) if pct else quantize.DEFAULT_PERCENTILE
        scales = quantize.calibrate(acts, method, percentile)
        section = {
            "scheme": quantize.SCHEME,
            "activation_scales": scales,
        }
        eng = Engine(sd, quantization=section)
        for name, (x, y) in framings.items():
            p8 = eng.predict(x).argmax(1)
            a32 = float((p32[name] == y).mean())
            a8 = float((p8 == y).mean())
            rows.append(
                {
                    "method": spec,
                    "framing": name,
                    "images": len(y),
                    "accuracy": a8,
                    "delta_points": 100 * (a8 - a32),
                    "top1_agreement_fp32": float((p8 == p32[name]).mean()),
                    "kernel": eng.kernel,
                    "scales": scales,
                }
            )
    print(
        f"model {args.model}, calibration: {len(calib)} training images (sha256 {info['sha256'][:12]})"
    )
    print(f"{'method':<18} {'framing':<6} {'images':>6} {'top-1':>7} {'vs fp32':>8} {'agree':>7}")
    for r in rows:
        d = f"{r['delta_points']:+.2f}" if "delta_points" in r else ""
        ag = f"{100 * r['top1_agreement_fp32']:.2f}%" if "top1_agreement_fp32" in r else ""
        print(
            f"{r['method']:<18} {r['framing']:<6} {r['images']:>6} {100 * r['accuracy']:>6.2f}% {d:>8} {ag:>7}"
        )
    doc = {
        "benchmark": "int8_accuracy",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": str(args.model),
        "weights_sha256": card.get("weights_sha256"),
        "calibration": {"images": len(calib), **info},
        "neonsign": neonsign.__version__,
        "numpy": np.__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
