"""Comparing against Pillow's BILINEAR resize (importable: pytest puts tests/ on sys.path).

neonsign reproduces Pillow >= 13 exactly, which runs the vertical pass first when the height
shrinks by more than twice as many pixels as the width. Older Pillow (e.g. Debian's 9.4 in the
AArch64 test root) always runs the horizontal pass first; there the contract is 1/255.
"""

from __future__ import annotations

import numpy as np
import PIL

PILLOW_EXACT = int(PIL.__version__.split(".")[0]) >= 13


def max_diff(ours: np.ndarray, ref: np.ndarray) -> int:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max(initial=0))


def assert_matches_pillow(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal to Pillow >= 13; within 1 (of 255) of older Pillow."""
    diff = max_diff(ours, ref)
    assert diff <= (0 if PILLOW_EXACT else 1), (
        f"max difference {diff} from Pillow {PIL.__version__}"
    )
