"""Training framings: views of every image between its annotated ROI and the whole picture.

A model trained only on ROI crops sees signs that fill the frame; uploaded photos (the server
cannot know a ROI) show the sign with a margin of background, and such a model loses many points
on them. The framing-robust recipe (``TrainConfig.framing = "roi-to-whole"``, the default)
trains on several views of each image, all decoded and resized by neonsign's C loader -- the
same Pillow-exact antialiased resize the server and ``neonsign test`` use, so the network never
sees a resampling it will not meet when served:

* view 0: the ROI crop (what ``neonsign test --roi`` measures),
* view 1: the whole image (what the server sees),
* views 2..: a random box per image containing the ROI, each side pushed out towards the
  image border by an independent uniform fraction of the room there (fixed for the run,
  drawn from the seed).

Every training sample draws one of these views per batch (on top of the affine and colour
augmentation); validation measures the ROI and the whole-image views separately.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .errors import NeonsignValueError

if TYPE_CHECKING:
    from .data import SplitMeta

__all__ = ["FRAMING_KINDS", "ROI_VIEW", "WHOLE_VIEW", "Views", "random_boxes", "load_views"]

#: ``TrainConfig.framing`` values: ``roi-to-whole`` trains on views from the ROI crop to the
#: whole image; ``fixed`` trains on the loaded framing only (the ROI crop by default: the
#: recipe before issue 13).
FRAMING_KINDS = ("roi-to-whole", "fixed")
ROI_VIEW = 0  # index of the ROI-crop view
WHOLE_VIEW = 1  # index of the whole-image view


class Views:
    """Views of a split: uint8 ``images`` (V, N, H, W, 3), view 0 the ROI crop, view 1 the
    whole image, views 2.. random in-between boxes; ``boxes`` the random boxes (V - 2, N, 4)."""

    def __init__(self, images: npt.NDArray[np.uint8], boxes: npt.NDArray[np.int64]) -> None:
        self.images = images
        self.boxes = boxes

    @property
    def count(self) -> int:
        """The number of views V."""
        return int(self.images.shape[0])


def random_boxes(
    rois: npt.NDArray[np.integer[Any]],
    widths: npt.NDArray[np.integer[Any]],
    heights: npt.NDArray[np.integer[Any]],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """One random box per image containing its ROI: int64 (N, 4) inclusive (x1, y1, x2, y2).

    Each side moves from the ROI's edge towards the image border by an independent uniform
    fraction in [0, 1] of the room there, so the boxes span the range from the ROI crop (0) to
    the whole image (1) with every in-between margin, centred or not. Rows whose ROI is unknown
    (``-1``) or whose size is unknown (0) stay ``-1`` (the whole image, the loader's convention).
    """
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    w = np.asarray(widths, dtype=np.int64)
    h = np.asarray(heights, dtype=np.int64)
    if w.shape != (rois.shape[0],) or h.shape != (rois.shape[0],):
        raise NeonsignValueError(
            f"widths {w.shape} and heights {h.shape} must have one entry per ROI ({rois.shape[0]})"
        )
    u = rng.random((rois.shape[0], 4))
    x1 = np.clip(rois[:, 0], 0, None)
    y1 = np.clip(rois[:, 1], 0, None)
    x2 = np.minimum(rois[:, 2], w - 1)
    y2 = np.minimum(rois[:, 3], h - 1)
    boxes = np.stack(
        [
            np.rint(x1 - u[:, 0] * x1),
            np.rint(y1 - u[:, 1] * y1),
            np.rint(x2 + u[:, 2] * (w - 1 - x2)),
            np.rint(y2 + u[:, 3] * (h - 1 - y2)),
        ],
        axis=1,
    ).astype(np.int64)
    unknown = (rois < 0).any(axis=1) | (w <= 0) | (h <= 0) | (x2 < x1) | (y2 < y1)
    boxes[unknown] = -1
    return boxes


def load_views(
    meta: SplitMeta,
    images: npt.NDArray[np.uint8],
    *,
    random_views: int,
    seed: int,
    threads: int | None = None,
) -> Views:
    """The ROI, whole-image and ``random_views`` random views of the split described by ``meta``.

    ``images`` is the split as already loaded (the ROI crops when ``meta.roi``, else the whole
    images) and is reused as that view; the other views are decoded again from ``meta.paths``
    by the C loader at ``meta.size``. The random boxes come from ``seed`` alone.
    """
    from . import preprocess

    if random_views < 0:
        raise NeonsignValueError(f"random_views must be >= 0, got {random_views}")
    n = len(meta)
    if images.shape[0] != n:
        raise NeonsignValueError(f"images has {images.shape[0]} rows, the split {n}")
    rng = np.random.default_rng([seed, 0x5F3A])
    boxes = (
        np.stack(
            [random_boxes(meta.rois, meta.widths, meta.heights, rng) for _ in range(random_views)]
        )
        if random_views
        else np.empty((0, n, 4), np.int64)
    )
    out = np.empty((2 + random_views, *images.shape), dtype=np.uint8)
    loaded = ROI_VIEW if meta.roi else WHOLE_VIEW
    out[loaded] = images
    other: list[tuple[int, npt.NDArray[np.int64] | None]] = [
        (WHOLE_VIEW if meta.roi else ROI_VIEW, None if meta.roi else meta.rois),
        *((2 + i, boxes[i]) for i in range(random_views)),
    ]
    for view, rois in other:
        res = preprocess.load_images(
            list(meta.paths), rois=rois, size=meta.size, dtype="uint8", threads=threads
        )
        out[view] = np.asarray(res.images, dtype=np.uint8)
    return Views(out, boxes)
