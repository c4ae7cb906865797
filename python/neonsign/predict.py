"""Classifying image files: ``neonsign predict``'s work, usable from Python.

:func:`find_images` turns files, folders and glob patterns into a list of image files;
:func:`predict_files` reads each with the one image path (:func:`neonsign.images.prepare`:
any PNG/JPEG/PPM mode, optional ROI, the model card's preprocessing), classifies them in
batches on the native engine and returns one :class:`PredictionRow` per image, in input order.
A file that cannot be read or decoded is reported to ``on_error`` and skipped, or raised, as the
caller chooses.

Probabilities are the softmax of the engine's logits computed as the server computes them
(:func:`neonsign._math.softmax`), and the top-k order breaks ties by the lower class id, so a
row equals the server's ``/predict`` answer for the same image.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._math import softmax
from .data import CLASS_NAMES
from .errors import NeonsignError, NeonsignFileNotFoundError, NeonsignValueError
from .images import IMAGE_SUFFIXES, prepare, read_image

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .engine import Engine

__all__ = ["DEFAULT_BATCH", "TopClass", "PredictionRow", "find_images", "predict_files", "rows"]

#: Images per engine call.
DEFAULT_BATCH = 64

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class TopClass:
    """One of the ``k`` most probable classes of an image."""

    class_id: int
    label: str
    probability: float


@dataclass(frozen=True)
class PredictionRow:
    """The prediction for one image file: its top-1 class and the top-k (top-1 first)."""

    path: str
    class_id: int
    label: str
    probability: float
    top: tuple[TopClass, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``path``, ``class_id``, ``label``, ``probability``, ``top_k`` (a list of
        ``{class_id, label, probability}``)."""
        return {
            "path": self.path,
            "class_id": self.class_id,
            "label": self.label,
            "probability": self.probability,
            "top_k": [
                {"class_id": t.class_id, "label": t.label, "probability": t.probability}
                for t in self.top
            ],
        }


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(inputs: Sequence[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """The image files named by ``inputs``, in order, each once.

    An input is a file (taken whatever its name), a folder (its ``.png``, ``.jpg``, ``.jpeg`` and
    ``.ppm`` files, sorted; its sub-folders too with ``recursive``) or a glob pattern (``*``,
    ``?``, ``[...]``; ``**`` spans folders with ``recursive``), whose matching folders are
    expanded like folders.

    Raises:
        NeonsignFileNotFoundError: an input that does not exist, a pattern that matches
            nothing (the message names it), or no image at all.
    """
    out: dict[Path, None] = {}
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            out.update(dict.fromkeys(_folder_images(p, recursive)))
        elif p.exists():
            out[p] = None
        elif _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=recursive))]
            if not matches:
                raise NeonsignFileNotFoundError(f"no file matches the pattern {text}", None, text)
            for m in matches:
                out.update(dict.fromkeys(_folder_images(m, recursive) if m.is_dir() else [m]))
        else:
            raise NeonsignFileNotFoundError(f"{text}: no such file or directory", 2, text)
    if not out:
        names = ", ".join(os.fspath(i) for i in inputs)
        hint = "" if recursive else " (sub-folders are searched with recursive=True, -r)"
        raise NeonsignFileNotFoundError(f"no PNG, JPEG or PPM images in {names}{hint}", 2)
    return list(out)


def rows(paths: Sequence[str], logits: NDArray[np.float32], top_k: int = 5) -> list[PredictionRow]:
    """One :class:`PredictionRow` per path from the engine's logits ``(N, 43)``."""
    out = []
    for path, probs in zip(paths, softmax(np.atleast_2d(logits)), strict=True):
        order = np.argsort(-probs, kind="stable")[:top_k]
        top = tuple(TopClass(int(c), CLASS_NAMES[int(c)], float(probs[c])) for c in order)
        out.append(PredictionRow(path, top[0].class_id, top[0].label, top[0].probability, top))
    return out


def predict_files(
    engine: Engine,
    paths: Sequence[str | os.PathLike[str]],
    preprocessing: Mapping[str, Any],
    roi: Sequence[int] | None = None,
    *,
    batch: int = DEFAULT_BATCH,
    top_k: int = 5,
    skip_bad: bool = True,
    on_error: Callable[[str, NeonsignError], None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[PredictionRow]:
    """Classify the image files ``paths`` with ``engine``: one row per readable image, in order.

    Args:
        engine: the native engine holding the model.
        preprocessing: the model card's ``preprocessing`` section (size, mean, std).
        roi: inclusive ``(x1, y1, x2, y2)`` crop applied to every image (None: whole images).
        batch: images per engine call.
        top_k: classes listed per image (1..43).
        skip_bad: a file that cannot be read, decoded or cropped is passed to ``on_error``
            and skipped; False raises its error (which names the file).
        progress: called with 1 after each image (``tqdm.update``).

    Raises:
        NeonsignValueError: a bad ``batch`` or ``top_k``.
        The error of the first bad file (a NeonsignError naming it) when ``skip_bad`` is False.
    """
    if batch < 1:
        raise NeonsignValueError(f"batch must be >= 1, got {batch}")
    if not 1 <= top_k <= len(CLASS_NAMES):
        raise NeonsignValueError(f"top_k must be from 1 to {len(CLASS_NAMES)}, got {top_k}")
    out: list[PredictionRow] = []
    names: list[str] = []
    inputs: list[NDArray[np.float32]] = []
    for i, path in enumerate(paths):
        name = os.fspath(path)
        try:
            inputs.append(_prepare_file(name, preprocessing, roi))
            names.append(name)
        except NeonsignError as exc:
            if not skip_bad:
                raise
            if on_error is not None:
                on_error(name, exc)
        if len(inputs) == batch or (i == len(paths) - 1 and inputs):
            out.extend(rows(names, engine.predict(np.stack(inputs)), top_k))
            names, inputs = [], []
        if progress is not None:
            progress(1)
    return out


def _prepare_file(
    path: str, preprocessing: Mapping[str, Any], roi: Sequence[int] | None
) -> NDArray[np.float32]:
    """The engine's input for the image file ``path`` (errors name the file)."""
    image = read_image(path).image
    return prepare(image, preprocessing, roi, source=path)
