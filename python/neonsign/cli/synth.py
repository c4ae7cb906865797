"""``neonsign synth``: write a synthetic GTSRB-format data set (:func:`neonsign.synth.synthesize`).

The data set is written whole or not at all: it is generated into a temporary directory and
then renamed into place, so a full disk or an interrupt leaves the previous data set (or none),
never a partial one that a later command would read as a complete data set.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from .._fileio import atomic_dir, check_dir_writable, move_entries
from ..errors import NeonsignValueError, file_errors
from ..synth import MARKER, synthesize

#: What :func:`synthesize` writes directly under its root.
_ENTRIES = ("Final_Training", "Final_Test", "GT-final_test.csv", MARKER)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="folder to write (official layout, GTSRB/ level entered)")
    parser.add_argument("--per-class", type=int, default=60, help="training images per class (60)")
    parser.add_argument(
        "--per-track", type=int, default=10, help="images per track (10; GTSRB has 30)"
    )
    parser.add_argument("--test", type=int, default=860, help="test images, 0 for none (860)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true")


def _others(root: Path) -> list[str]:
    """What ``root`` holds besides an earlier synthetic data set (refused: a data set that
    :func:`synthesize` did not write). Checked before any image is drawn."""
    with file_errors("inspect", root):
        if not root.is_dir():
            return []
        names = sorted(p.name for p in root.iterdir())
        foreign = any(n in names for n in _ENTRIES[:2]) and MARKER not in names
    if foreign:
        raise NeonsignValueError(
            f"{root} already holds a data set that synthesize() did not write; pick another folder"
        )
    return [n for n in names if n not in _ENTRIES]


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    check_dir_writable(root, "write the data set")  # in the first second, before drawing
    others = _others(root)

    def fill(staging: Path) -> None:
        synthesize(
            staging,
            n_per_class=args.per_class,
            seed=args.seed,
            with_test=args.test > 0,
            n_test=args.test,
            images_per_track=args.per_track,
            progress=not args.quiet,
        )

    if not others:  # nothing else in root: the whole folder is replaced in one rename
        atomic_dir(root, fill, replace=True, last=(MARKER,), action="write the data set")
    else:  # other files beside it: the data set's entries are moved in, the marker last
        with file_errors("write the data set", root):
            staging = Path(tempfile.mkdtemp(prefix=".synth-", suffix=".tmp", dir=root))
            try:
                fill(staging)
                move_entries(staging, root, names=_ENTRIES, last=(MARKER,))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    if not args.quiet:
        print(f"synthetic GTSRB written to {root}")
    return 0
