"""``neonsign convert SRC DST``: a learning-path ``.pth`` to a model directory, or back
(:func:`neonsign.artifacts.convert`)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert a learning-path .pth state_dict into a model directory (model.safetensors + "
        "model_card.json with the learning path's preprocessing), or a model directory into a "
        ".pth. Needs PyTorch for .pth files."
    )
    parser.add_argument("src", help="a .pth (or .safetensors) file, or a model directory")
    parser.add_argument("dst", help="the model directory to write, or a file ending in .pth")
    parser.add_argument("--force", action="store_true", help="replace an existing destination")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import convert

    out = convert(args.src, args.dst, overwrite=args.force)
    print(f"wrote {out}")
    return 0
