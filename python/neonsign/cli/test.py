"""``neonsign test``: test a model on a split (:func:`neonsign.evaluate.evaluate`): accuracy,
per-class accuracy, confusion matrix (JSON and PNG), timing and the torch.profiler table."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from .._fileio import check_file_writable
from ..backends import BACKEND_NAMES
from ..evaluate import evaluate, format_summary, save_result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Testing a model: ``neonsign test`` and :func:`evaluate`."
    parser.add_argument(
        "--model",
        required=True,
        help="model directory (model.safetensors + model_card.json) or learning-path .pth",
    )
    parser.add_argument("--data", required=True, help="GTSRB root (any supported layout)")
    parser.add_argument(
        "--split", default="test", choices=("train", "test"), help="split to test (default test)"
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=BACKEND_NAMES,
        help="inference backend (default: the fastest available, native if built)",
    )
    parser.add_argument(
        "--framing",
        default=None,
        choices=("roi", "whole"),
        help="the framing the top-level accuracy is for: roi (ROI crops) or whole (whole images, "
        "as the server sees uploads); default: the model card's. Both are always measured "
        "and reported under 'framings'",
    )
    parser.add_argument("--json", default=None, help="write the results as JSON to this file")
    parser.add_argument(
        "--plot", default=None, help="confusion matrix PNG (default: the JSON path with .png)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="test at most this many images")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or profiler table")


def run(args: argparse.Namespace) -> int:
    for path in (args.json, args.plot):  # before the model and the data are loaded
        if path is not None:
            check_file_writable(path, "write the test results")
    plot = args.plot
    if plot is None and args.json is not None:
        if importlib.util.find_spec("matplotlib") is None:
            print(
                "notice: matplotlib is not installed, so no confusion matrix PNG is written "
                "(pip install 'neonsign[notebooks]'); the JSON has the matrix",
                file=sys.stderr,
            )
        else:
            plot = Path(args.json).with_suffix(".png")
    result = evaluate(
        args.model,
        args.data,
        split=args.split,
        backend=args.backend,
        batch_size=args.batch_size,
        threads=args.threads,
        limit=args.limit,
        profile=not args.no_profile,
        plot=plot,
        quiet=args.quiet,
        roi=None if args.framing is None else args.framing == "roi",
    )
    if result["profile_table"] and not args.quiet:
        print(result["profile_table"])
    print(format_summary(result))
    if args.json is not None:
        save_result(result, args.json)
        print(
            f"results written to {args.json}" + (f", confusion matrix plot {plot}" if plot else "")
        )
    return 0
