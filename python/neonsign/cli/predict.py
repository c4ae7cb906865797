"""``neonsign predict``: classify image files (PNG, JPEG, PPM) from the command line.

Files, folders and glob patterns in (:func:`neonsign.predict.find_images`), one row per image
out (path, class id, label, probability, top-k) as a table, CSV or JSON, on stdout or written
atomically to ``--output``. The work is :func:`neonsign.predict.predict_files`; this module
parses and prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence

from .._fileio import atomic_write_text, check_file_writable
from ..errors import NeonsignError
from ..images import RoiError, parse_roi
from ..predict import DEFAULT_BATCH, PredictionRow

#: More images than this show a progress bar (unless --quiet).
_BAR_FROM = 100


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Classify PNG, JPEG and PPM images: files, folders and glob patterns in, one row per "
        "image out (path, class id, label, probability, top-k)."
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="image file, folder or glob")
    parser.add_argument(
        "--model",
        required=True,
        help="model directory, .safetensors or learning-path .pth (needs PyTorch)",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="also the images in sub-folders (and **)"
    )
    parser.add_argument(
        "--roi",
        type=_roi,
        default=None,
        metavar="X1,Y1,X2,Y2",
        help="crop every image to this inclusive box first (default: the whole image)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per image (1..43)")
    parser.add_argument(
        "--format", default="table", choices=("table", "csv", "json"), help="output format"
    )
    parser.add_argument("-o", "--output", default=None, help="write the rows to this file")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per engine call")
    parser.add_argument("--threads", type=int, default=None, help="engine threads per call")
    parser.add_argument("--kernel", default=None, help="ref, neon, avx2, avx512 (default: best)")
    bad = parser.add_mutually_exclusive_group()
    bad.add_argument(
        "--skip-bad",
        dest="strict",
        action="store_false",
        help="report unreadable images on stderr and go on (default)",
    )
    bad.add_argument(
        "--strict", dest="strict", action="store_true", help="an unreadable image is an error"
    )
    parser.set_defaults(strict=False)  # --skip-bad (store_false) alone would default to True
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _roi(text: str) -> tuple[int, int, int, int]:
    """``x1,y1,x2,y2``: four integers, inclusive corners (:func:`neonsign.images.parse_roi`,
    the parser of the server's ``roi`` field)."""
    try:
        roi = parse_roi(text, "--roi")
    except RoiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if roi is None:
        raise argparse.ArgumentTypeError("expected X1,Y1,X2,Y2 (four integers), got ''")
    return roi


def _table(rows: Sequence[PredictionRow]) -> str:
    """Aligned columns: path, class, label, probability, then the other top-k classes."""
    header = ("path", "class", "label", "probability", "top-k")
    body = [
        (
            r.path,
            str(r.class_id),
            r.label,
            f"{r.probability:.4f}",
            " ".join(f"{t.class_id}:{t.probability:.3f}" for t in r.top),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        + "\n"
        for line in [header, *body]
    )


def _csv(rows: Sequence[PredictionRow]) -> str:
    """One line per image; the top-k as ``top{i}_class`` / ``top{i}_probability`` columns."""
    buf = io.StringIO()
    k = max((len(r.top) for r in rows), default=0)
    writer = csv.writer(buf, lineterminator="\n")
    head = ["path", "class_id", "label", "probability"]
    for i in range(1, k + 1):
        head += [f"top{i}_class", f"top{i}_probability"]
    writer.writerow(head)
    for r in rows:
        line: list[object] = [r.path, r.class_id, r.label, f"{r.probability:.6f}"]
        for t in r.top:
            line += [t.class_id, f"{t.probability:.6f}"]
        writer.writerow(line)
    return buf.getvalue()


def render(rows: Sequence[PredictionRow], fmt: str) -> str:
    """The rows as ``table``, ``csv`` or ``json`` text."""
    if fmt == "json":
        return json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    return _csv(rows) if fmt == "csv" else _table(rows)


def _write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, with the umask's permissions (a device
    such as ``/dev/stdout`` is written in place: :func:`neonsign._fileio.atomic_write_text`)."""
    atomic_write_text(path, text, "write the predictions")


def _report(path: str, exc: NeonsignError) -> None:
    print(f"neonsign predict: skipped {path}: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_any
    from ..engine import Engine
    from ..predict import find_images, predict_files

    if args.output is not None:  # before the model is loaded and the images classified
        check_file_writable(args.output, "write the predictions")
    state_dict, card = load_any(args.model)
    paths = find_images(args.inputs, recursive=args.recursive)
    engine = Engine.from_state_dict(
        state_dict, kernel=args.kernel, threads=args.threads, quantization=card.get("quantization")
    )
    bar = None
    if not args.quiet and len(paths) >= _BAR_FROM:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="predict", dynamic_ncols=True)
    try:
        rows = predict_files(
            engine,
            paths,
            card["preprocessing"],
            args.roi,
            batch=args.batch,
            top_k=args.top_k,
            skip_bad=not args.strict,
            on_error=_report,
            progress=None if bar is None else bar.update,
        )
    finally:
        if bar is not None:
            bar.close()
    text = render(rows, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write(args.output, text)
    if not args.quiet and len(rows) < len(paths):
        print(f"{len(paths) - len(rows)} of {len(paths)} images skipped", file=sys.stderr)
    return 0
