"""``neonsign quantize``: post-training int8 quantization of a model directory
(:func:`neonsign.quantize.quantize_model`), optionally with the FP32-vs-int8 accuracy on the
by-track validation split (:func:`neonsign.quantize.validation_accuracy`)."""

from __future__ import annotations

import argparse
import json

from ..quantize import DEFAULT_IMAGES, DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Quantize a model to int8: per-output-channel int8 weights, per-tensor activation scales "
        "calibrated on training images, int32 biases, fixed-point requantization. Writes a model "
        "directory every command accepts; the engine runs it in int8."
    )
    parser.add_argument("--model", required=True, help="the FP32 model directory (or weights file)")
    parser.add_argument(
        "--data", required=True, help="GTSRB root: calibration images come from its training split"
    )
    parser.add_argument("--out", required=True, help="the quantized model directory to write")
    parser.add_argument(
        "--method", default=DEFAULT_METHOD, choices=METHODS, help="calibration statistic"
    )
    parser.add_argument(
        "--percentile", type=float, default=DEFAULT_PERCENTILE, help="for --method percentile"
    )
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="calibration images")
    parser.add_argument("--seed", type=int, default=0, help="which calibration images are drawn")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also print FP32 vs int8 accuracy on the by-track validation split (both framings)",
    )


def run(args: argparse.Namespace) -> int:
    from ..quantize import quantize_model, validation_accuracy

    out = quantize_model(
        args.model,
        args.data,
        args.out,
        method=args.method,
        percentile=args.percentile,
        images=args.images,
        seed=args.seed,
        overwrite=args.force,
    )
    print(f"wrote {out} (int8, {args.method})")
    if args.compare:
        print(json.dumps(validation_accuracy(args.model, out, args.data), indent=2))
    return 0
