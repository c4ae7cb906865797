"""``neonsign synth``: write a synthetic GTSRB-format data set (:func:`neonsign.synth.synthesize`)."""

from __future__ import annotations

import argparse

from ..synth import synthesize


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="folder to write (official layout, GTSRB/ level entered)")
    parser.add_argument("--per-class", type=int, default=60, help="training images per class (60)")
    parser.add_argument(
        "--per-track", type=int, default=10, help="images per track (10; GTSRB has 30)"
    )
    parser.add_argument("--test", type=int, default=860, help="test images, 0 for none (860)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    root = synthesize(
        args.root,
        n_per_class=args.per_class,
        seed=args.seed,
        with_test=args.test > 0,
        n_test=args.test,
        images_per_track=args.per_track,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(f"synthetic GTSRB written to {root}")
    return 0
