"""``neonsign data info``: decode every image of a split and report counts, sizes, checksum.

Bad files are listed on stderr (``[split] bad file (row N): PATH: why``) and make it an error
(exit status 2, the first bad file on the last line); the report still covers the good ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._fileio import atomic_write_text
from ..data import CLASS_NAMES, SPLITS, SplitMeta, find_split, load_split
from ..errors import DatasetNotFoundError, NeonsignValueError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    q = sub.add_parser("info", help="decode every image of a split; counts, sizes, checksum")
    q.add_argument("root")
    q.add_argument("--split", choices=("train", "test", "all"), default="all")
    q.add_argument("--roi", action="store_true", help="crop to the ROI before resizing")
    q.add_argument("--size", type=int, default=32)
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    q.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    # `data` has one subcommand today; argparse requires it, so this is `data info`
    return _info(args)


def _info(args: argparse.Namespace) -> int:
    root = Path(args.root)
    splits = SPLITS if args.split == "all" else (args.split,)
    reports: dict[str, Any] = {}
    bad: list[tuple[str, int, str, str]] = []  # (split, row, path, why)
    for split in splits:
        try:
            find_split(root, split)
        except DatasetNotFoundError as exc:
            if args.split != "all":
                raise
            if not args.quiet:
                print(f"[{split}] not found: {exc}")
            continue
        _, _, meta = load_split(
            root,
            split,
            size=args.size,
            roi=args.roi,
            dtype="uint8",
            threads=args.threads,
            skip_bad=True,
        )
        info = meta.to_dict()
        info["images_per_second"] = round(len(meta) / meta.seconds, 1) if meta.seconds > 0 else None
        reports[split] = info
        bad.extend((split, row, path, message) for row, path, message in meta.errors)
        if not args.quiet:
            _print_info(meta, info)
        for row, path, message in meta.errors:
            print(f"[{split}] bad file (row {row}): {path}: {message}", file=sys.stderr)
    if not reports:
        raise DatasetNotFoundError(f"no GTSRB split under {root} (see the places listed above)")
    if args.json:
        atomic_write_text(args.json, json.dumps(reports, indent=2) + "\n", "write the JSON report")
    if bad:  # the report covers the good files; the exit status says the split is damaged
        split, row, path, message = bad[0]
        raise NeonsignValueError(
            f"{len(bad)} bad file(s) under {root} (listed above); the first, [{split}] row "
            f"{row}: {path}: {message}"
        )
    return 0


def _print_info(meta: SplitMeta, info: dict[str, Any]) -> None:
    print(
        f"[{meta.split}] layout {meta.layout}: {len(meta)} images, "
        f"{int((meta.class_counts > 0).sum())} classes, {info['tracks']} tracks"
    )
    print(
        f"  width  min/median/max {info['width']['min']}/{info['width']['median']:g}/{info['width']['max']}"
    )
    print(
        f"  height min/median/max {info['height']['min']}/{info['height']['median']:g}/{info['height']['max']}"
    )
    print(
        f"  decoded at {meta.size}x{meta.size}{' (ROI crop)' if meta.roi else ''} in "
        f"{meta.seconds:.2f} s ({info['images_per_second']} images/s)"
    )
    print(f"  checksum sha256:{meta.checksum}")
    print(f"  {'id':>3}  {'images':>6}  name")
    for cid, count in enumerate(meta.class_counts.tolist()):
        print(f"  {cid:>3}  {count:>6}  {CLASS_NAMES[cid]}")
    if meta.errors:
        print(f"  {len(meta.errors)} bad file(s)")
