"""Test-only stand-in for ``neonsign.preprocess`` built on Pillow.

``tests/conftest.py`` installs it as ``neonsign.preprocess`` ONLY when the real module (the C
loader, branch ``preproc``) is not importable, so the data-layer tests can run on a branch where
it has not landed yet. It implements the agreed contract with Pillow's PPM decoder and BILINEAR
resize (the semantics the C core matches); it is not shipped in the package.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from neonsign.errors import AnnotationError, DecodeError

STANDIN = True

_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"]


class Annotation(NamedTuple):
    filename: str
    width: int
    height: int
    roi: tuple[int, int, int, int]
    class_id: int | None


class LoadResult(NamedTuple):
    images: np.ndarray
    ok: np.ndarray
    errors: list[tuple[int, str, str]]


def read_annotations(path: str | Path) -> list[Annotation]:
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if not rows or rows[0][:7] != _HEADER:
        raise AnnotationError(f"{path}: bad header")
    has_class = len(rows[0]) > 7 and rows[0][7] == "ClassId"
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            w, h, x1, y1, x2, y2 = (int(v) for v in row[1:7])
            cid = int(row[7]) if has_class else None
        except (ValueError, IndexError) as exc:
            raise AnnotationError(f"{path}: line {n}: {exc}") from None
        out.append(Annotation(row[0], w, h, (x1, y1, x2, y2), cid))
    return out


def read_ppm(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format != "PPM" or im.mode != "RGB":
                raise DecodeError(f"{path}: not an RGB PPM")
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"{path}: {exc}") from None


def load_images(paths: Sequence[str | Path], *, rois=None, size=32, dtype="float32",
                mean=(0.5,) * 3, std=(0.5,) * 3, threads=None, skip_bad=False) -> LoadResult:
    n = len(paths)
    u8 = np.zeros((n, size, size, 3), np.uint8)
    ok = np.zeros(n, bool)
    errors = []
    for i, p in enumerate(paths):
        try:
            a = read_ppm(p)
            im = Image.fromarray(a)
            if rois is not None and int(rois[i][0]) != -1:
                x1, y1, x2, y2 = (int(v) for v in rois[i])
                im = im.crop((x1, y1, x2 + 1, y2 + 1))
            u8[i] = np.asarray(im.resize((size, size), Image.BILINEAR))
            ok[i] = True
        except (DecodeError, FileNotFoundError) as exc:
            if not skip_bad:
                raise
            errors.append((i, str(p), str(exc)))
    if dtype == "uint8":
        return LoadResult(u8, ok, errors)
    f = normalize(u8, mean, std)
    f[~ok] = 0
    return LoadResult(f, ok, errors)


def normalize(images, mean=(0.5,) * 3, std=(0.5,) * 3) -> np.ndarray:
    f = (images.astype(np.float32) / np.float32(255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(f.transpose(0, 3, 1, 2))
