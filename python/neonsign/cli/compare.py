"""``neonsign compare``: compare two profile reports, or two backends of one or two reports
(:func:`neonsign.profile_report.compare`), and gate on regressions: exit 1 with
``--fail-if-slower`` when the total or a ``--layers`` layer got slower by more than PCT. ``--plot``
draws the per-layer changes (:func:`neonsign.plots.compare_figure`; matplotlib, the ``plots``
extra)."""

from __future__ import annotations

import argparse
import sys

from .._fileio import check_file_writable
from ..errors import NeonsignValueError
from ..plots import compare_figure, require_matplotlib, save_png
from ..profile_report import Comparison, append_step_summary, compare, compare_backends


def percent(text: str) -> float:
    """argparse type: a percentage >= 0, with or without a trailing ``%``."""
    try:
        v = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got '{text}'") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a percentage >= 0, got '{text}'")
    return v


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print per-layer and total changes between two `neonsign profile --json` "
        "reports, or between two backends of one report; exit 1 with "
        "--fail-if-slower when the total or a --layers layer regressed beyond PCT."
    )
    parser.add_argument("base", help="baseline report (JSON)")
    parser.add_argument(
        "new", nargs="?", help="new report (JSON); omit to compare backends of BASE"
    )
    parser.add_argument(
        "--backend", help="comma-separated backends to compare (default: common ones)"
    )
    parser.add_argument("--base-backend", help="backend on the base side (e.g. torch-onednn-off)")
    parser.add_argument("--new-backend", help="backend on the new side (e.g. torch)")
    parser.add_argument(
        "--fail-if-slower",
        type=percent,
        metavar="PCT",
        help="exit 1 if the total (or a --layers layer) got slower by more than PCT%%",
    )
    parser.add_argument(
        "--layers", help="comma-separated layers the gate also checks (e.g. conv2,fc1)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="also fail when machine or settings differ"
    )
    parser.add_argument("--json", help="write the comparison as JSON here")
    parser.add_argument("--markdown", help="write the comparison as Markdown here")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw base and new per-layer times with their changes here (needs matplotlib)",
    )


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _backend_pair(args: argparse.Namespace, layers: list[str] | None) -> Comparison:
    """``--base-backend`` of BASE against ``--new-backend`` of NEW (or of BASE again)."""
    if not (args.base_backend and args.new_backend):
        raise NeonsignValueError("--base-backend and --new-backend go together")
    return compare_backends(
        args.base,
        args.base_backend,
        args.new_backend,
        new_report=args.new,
        fail_if_slower=args.fail_if_slower,
        layers=layers,
        strict=args.strict,
    )


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_file_writable(args.plot, "write the plot")
        require_matplotlib("--plot")
    layers = _split(args.layers)
    if args.base_backend or args.new_backend:
        cmp = _backend_pair(args, layers)
    else:
        if args.new is None:
            raise NeonsignValueError(
                "give two reports, or one report with --base-backend and --new-backend"
            )
        cmp = compare(
            args.base,
            args.new,
            backends=_split(args.backend),
            fail_if_slower=args.fail_if_slower,
            layers=layers,
            strict=args.strict,
        )
    print(cmp.text())
    if args.json:
        cmp.save_json(args.json)
    if args.markdown:
        cmp.save_markdown(args.markdown)
    if args.plot:
        save_png(compare_figure(cmp), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    append_step_summary(cmp.markdown())
    if cmp.failed:
        print("neonsign compare: gate failed", file=sys.stderr)
        return 1
    return 0
