"""``neonsign profile``: per-layer timing of every backend in one process
(:func:`neonsign.profiler.profile`), printed as torch.profiler-style tables, written as JSON
and Markdown (and appended to ``$GITHUB_STEP_SUMMARY`` when set), drawn as a PNG with ``--plot``
(:func:`neonsign.plots.profile_figure`; needs matplotlib, the ``plots`` extra)."""

from __future__ import annotations

import argparse
import sys

from .._fileio import check_file_writable
from ..plots import profile_figure, require_matplotlib, save_png
from ..profile_report import append_step_summary
from ..profiler import profile
from .backends import print_backends


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Profile TrafficSignNet per layer on the native engine and libtorch backends, "
        "timed by one clock; print torch.profiler-style tables, write JSON/Markdown."
    )
    parser.add_argument(
        "--model", help="model directory, .safetensors or .pth (default: random weights)"
    )
    parser.add_argument("--data", help="GTSRB root (default: random inputs)")
    parser.add_argument("--split", default="test", help="split read from --data (default: test)")
    parser.add_argument("--backends", help="comma-separated backends (default: all available)")
    parser.add_argument("--baseline", help="backend speedups are relative to (default: torch)")
    parser.add_argument(
        "--batch", type=positive_int, default=64, help="images per forward (default 64)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="threads (default: CPUs)"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=10, help="timed passes (default 10)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first (default 3)")
    parser.add_argument(
        "--order",
        choices=("interleaved", "sequential"),
        default="interleaved",
        help="run backends pass by pass in turn (default) or one after another",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights/inputs")
    parser.add_argument(
        "--no-aten", action="store_true", help="skip the torch.profiler kernel pass"
    )
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--markdown", help="write the report as Markdown here")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw per-layer stacked bars per backend with speedups here (needs matplotlib)",
    )
    parser.add_argument("--quiet", action="store_true", help="no tables or progress bar")
    parser.add_argument("--list-backends", action="store_true", help="list backends and exit")


def run(args: argparse.Namespace) -> int:
    if args.list_backends:
        return print_backends()
    for path in (args.json, args.markdown, args.plot):  # before the backends are timed
        if path:
            check_file_writable(path, "write the profile report")
    if args.plot:
        require_matplotlib("--plot")  # fail now, not after minutes of timing
    report = profile(
        model=args.model,
        data=args.data,
        backends=args.backends,
        batch=args.batch,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        baseline=args.baseline,
        split=args.split,
        seed=args.seed,
        aten=not args.no_aten,
        order=args.order,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(report.text())
    if args.json:
        report.save_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    md = report.markdown()
    if args.markdown:
        report.save_markdown(args.markdown)
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.plot:
        save_png(profile_figure(report, args.baseline), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    append_step_summary(md)
    return 0
