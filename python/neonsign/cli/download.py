"""``neonsign download``: download and extract the official GTSRB archives
(:func:`neonsign.download.download`)."""

from __future__ import annotations

import argparse

from ..download import DEFAULT_BASE_URL, download


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="folder to extract into")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all")
    parser.add_argument("--base-url", default=None, help="mirror to download from")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing extracted data set"
    )
    parser.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    root = download(
        args.root,
        args.split,
        base_url=args.base_url or DEFAULT_BASE_URL,
        progress=not args.quiet,
        force=args.force,
    )
    if not args.quiet:
        print(f"GTSRB {args.split} ready in {root}")
    return 0
