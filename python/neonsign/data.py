"""GTSRB data sets: class names, layout detection, whole-split loading, track-wise validation.

The folder a user points at is searched for every layout GTSRB is found in (see
:func:`find_split`); decoding, ROI cropping, resizing and normalising happen in the C loader
(:func:`neonsign.preprocess.load_images`), one call per split.

Order and labels follow torchvision's ``GTSRB`` data set, so indices are interchangeable with it:

* ``train``: class folders ``000NN`` in sorted order, the ``.ppm`` files of each folder sorted by
  name, the label taken from the folder name;
* ``test``: the rows of ``GT-final_test.csv`` in file order, the label from its ``ClassId``.

Example::

    images, labels, meta = load_split("/data/gtsrb", "train", size=32, roi=True)
    train_idx, val_idx = track_split(meta, val_fraction=0.2, seed=0)
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast, overload

import numpy as np
from numpy.typing import NDArray

from . import _native, preprocess
from .errors import (
    AnnotationError,
    DatasetNotFoundError,
    NeonsignNotADirectoryError,
    NeonsignValueError,
    file_errors,
)
from .preprocess import DEFAULT_MEAN, DEFAULT_STD, ImageF32, ImageU8

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "SPLITS",
    "SplitSpec",
    "SplitMeta",
    "SplitPaths",
    "class_name",
    "find_split",
    "load_split",
    "reframe",
    "split_checksum",
    "track_split",
]

CLASS_NAMES: tuple[str, ...] = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
"""The 43 GTSRB class names; ``CLASS_NAMES[class_id]``."""

#: Number of classes (from the C engine, like every model fact; CLASS_NAMES has one name each).
NUM_CLASSES: int = _native.NUM_CLASSES
SPLITS = ("train", "test")
TEST_LABELS_CSV = "GT-final_test.csv"

_NO_ROI = (-1, -1, -1, -1)  # the loader's "whole image" row
_CLASS_DIR_RE = re.compile(r"^\d{5}$")
_TRAIN_FILE_RE = re.compile(r"^(\d{5})_(\d{5})\.ppm$", re.IGNORECASE)

# Where each split may live, relative to the folder the user points at, in search order:
# (relative path, layout name).
_TRAIN_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("GTSRB/Final_Training/Images", "official"),
    ("GTSRB/Training", "official-fixed"),
    ("Final_Training/Images", "official-entered"),
    ("Training", "official-fixed-entered"),
    ("gtsrb/GTSRB/Training", "torchvision"),
    ("gtsrb/GTSRB/Final_Training/Images", "torchvision-official"),
    ("Images", "class-folders"),  # the user pointed at Final_Training/
    (".", "class-folders"),  # the user pointed at the folder of 000NN class folders
)
_TEST_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("GTSRB/Final_Test/Images", "official"),
    ("Final_Test/Images", "official-entered"),
    ("gtsrb/GTSRB/Final_Test/Images", "torchvision"),
    ("Images", "test-folder"),  # the user pointed at Final_Test/
)


def class_name(class_id: int) -> str:
    """Return the GTSRB name of ``class_id`` (0..42); raises NeonsignValueError otherwise."""
    if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
        raise NeonsignValueError(f"class_id must be an int, got {type(class_id).__name__}")
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise NeonsignValueError(f"class_id {class_id} is outside 0..{NUM_CLASSES - 1}")
    return CLASS_NAMES[int(class_id)]


@dataclass(frozen=True)
class SplitSpec:
    """Where one split of a GTSRB data set lives on disk.

    Attributes:
        split: ``"train"`` or ``"test"``.
        layout: which layout matched, e.g. ``"official"``, ``"official-fixed"`` (from
            ``GTSRB-Training_fixed.zip``), ``"official-entered"`` (the ``GTSRB/`` level already
            entered) or ``"torchvision"``.
        images_dir: train: the folder holding the ``000NN`` class folders; test: the folder of
            ``NNNNN.ppm`` test images.
        class_dirs: train only: the class folders, sorted by name.
        labels_csv: test only: the ``GT-final_test.csv`` that labels the test images.
    """

    split: str
    layout: str
    images_dir: Path
    class_dirs: tuple[Path, ...] = ()
    labels_csv: Path | None = None


class SizeStats(TypedDict):
    """min / median / mean / max of the original image widths or heights."""

    min: float
    median: float
    mean: float
    max: float


class SplitPaths(Sequence[Path]):
    """The image file of each row of a split: a read-only sequence of :class:`~pathlib.Path`.

    Holds the paths as strings (what the C loader reads) and makes a ``Path`` only when one is
    asked for: a split has tens of thousands of rows, and building that many ``Path`` objects
    up front would cost more than loading the images. Compares equal to any sequence of the
    same paths (tuple, list, another SplitPaths).
    """

    __slots__ = ("_paths",)

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths: tuple[str, ...] = tuple(paths)

    def strings(self) -> tuple[str, ...]:
        """The paths as ``str``, in row order (no ``Path`` objects made)."""
        return self._paths

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, index: int) -> Path: ...
    @overload
    def __getitem__(self, index: slice) -> SplitPaths: ...
    def __getitem__(self, index: int | slice) -> Path | SplitPaths:
        if isinstance(index, slice):
            return SplitPaths(self._paths[index])
        return Path(self._paths[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SplitPaths):
            return self._paths == other._paths
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(
                Path(a) == b for a, b in zip(self._paths, other, strict=True)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-style equality, like a list

    def __repr__(self) -> str:
        return f"SplitPaths({len(self)} paths)"


@dataclass
class SplitMeta:
    """Everything :func:`load_split` knows about the images it returned, row for row.

    Attributes:
        split, layout: as in :class:`SplitSpec`.
        root: the folder the user pointed at.
        paths: the image file of each row (a :class:`SplitPaths`: ``Path`` per row on access).
        labels: int64 (N,) class ids.
        track_ids: train: the track (physical sign) of each row from its ``TTTTT_IIIII.ppm`` name,
            or None when the name does not follow that pattern; test: all None.
        widths, heights: int64 (N,) the original image sizes (from the CSV, or the PPM header
            when a class folder has no CSV; 0 when that header is unreadable).
        rois: int64 (N, 4) inclusive ROI corners (x1, y1, x2, y2) in original pixels;
            ``(-1, -1, -1, -1)`` for files without an annotation (the whole image is used, the
            loader's convention).
        size: the side length the images were resized to.
        roi: whether images were cropped to their ROI before resizing.
        checksum: sha256 hex digest identifying the data version (see :func:`load_split`).
        class_counts: int64 (43,) images per class.
        errors: ``(row, path, message)`` of each file that failed to load (only with
            ``skip_bad=True``; those rows are all zeros).
        seconds: wall time of the C loader call (read, decode, crop, resize, normalise, and the
            checksum its threads hash alongside), for throughput.
    """

    split: str
    layout: str
    root: Path
    paths: Sequence[Path]
    labels: NDArray[np.int64]
    track_ids: tuple[int | None, ...]
    widths: NDArray[np.int64]
    heights: NDArray[np.int64]
    rois: NDArray[np.int64]
    size: int
    roi: bool
    checksum: str
    class_counts: NDArray[np.int64]
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.paths)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no per-image arrays). A plain dict: callers add their
        own keys to it (``data info`` adds ``images_per_second``)."""
        return {
            "split": self.split,
            "layout": self.layout,
            "root": str(self.root),
            "images": len(self),
            "size": self.size,
            "roi": self.roi,
            "checksum": self.checksum,
            "class_counts": [int(c) for c in self.class_counts],
            "tracks": len(
                {
                    (int(lab), t)
                    for lab, t in zip(self.labels, self.track_ids, strict=False)
                    if t is not None
                }
            ),
            "width": _stats(self.widths),
            "height": _stats(self.heights),
            "errors": [{"row": i, "path": p, "message": m} for i, p, m in self.errors],
            "seconds": self.seconds,
        }


def _stats(values: NDArray[np.int64]) -> SizeStats:
    if values.size == 0:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": int(values.min()),
        "median": float(np.median(values)),
        "mean": round(float(values.mean()), 2),
        "max": int(values.max()),
    }


# --------------------------------------------------------------------------------------------
# Layout detection


def _class_dirs(folder: Path) -> list[Path]:
    with file_errors("list the folder", folder):
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_dir() and _CLASS_DIR_RE.match(p.name))


def _has_ppm(folder: Path) -> bool:
    with file_errors("list the folder", folder):
        if not folder.is_dir():
            return False
        with os.scandir(folder) as entries:  # stops at the first image, unlike a full listing
            return any(e.name[-4:].lower() == ".ppm" for e in entries)


def _find_test_labels(images_dir: Path, root: Path) -> tuple[Path | None, list[Path]]:
    """Look for GT-final_test.csv from the images folder up to (and including) ``root``."""
    looked: list[Path] = []
    folder = images_dir
    root = root.resolve()
    while True:
        candidate = folder / TEST_LABELS_CSV
        looked.append(candidate)
        with file_errors("look for the labels file", candidate):
            found = candidate.is_file()
        if found:
            return candidate, looked
        if folder.resolve() == root or folder.parent == folder:
            return None, looked
        folder = folder.parent


def find_split(root: str | Path, split: str = "train") -> SplitSpec:
    """Find ``split`` (``"train"`` or ``"test"``) of a GTSRB data set under ``root``.

    Accepted layouts (``root`` is the folder the user points at):

    * the official archives extracted into ``root``: ``GTSRB/Final_Training/Images/000NN/`` or
      ``GTSRB/Training/000NN/`` (``GTSRB-Training_fixed.zip``), ``GTSRB/Final_Test/Images/*.ppm``,
      ``GT-final_test.csv`` beside ``GTSRB/``;
    * the same with ``GTSRB/`` already entered: ``Final_Training/Images/000NN/`` or
      ``Training/000NN/``, ``Final_Test/Images/*.ppm``;
    * torchvision's: ``gtsrb/GTSRB/Training/000NN/``, ``gtsrb/GTSRB/Final_Test/Images/*.ppm``,
      ``gtsrb/GT-final_test.csv``;
    * ``root`` being the ``Final_Training`` / ``Images`` / ``Final_Test`` folder itself.

    ``GT-final_test.csv`` is looked for in the test images folder and each parent up to ``root``.

    Raises:
        NeonsignValueError: ``split`` is not ``"train"`` or ``"test"``.
        DatasetNotFoundError: nothing matched; the message lists every place looked.
        NeonsignNotADirectoryError: ``root`` is a file.
        NeonsignOSError subclasses (e.g. NeonsignPermissionError): a folder cannot be listed;
            the message names it.
    """
    if split not in SPLITS:
        raise NeonsignValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    with file_errors("open the GTSRB root", root):
        is_dir, exists = root.is_dir(), root.exists()
    if exists and not is_dir:
        raise NeonsignNotADirectoryError(
            f"GTSRB root {str(root)!r} is not a directory", errno.ENOTDIR, str(root)
        )
    if not is_dir:
        raise DatasetNotFoundError(f"GTSRB root {str(root)!r} is not a directory")
    looked: list[str] = []
    if split == "train":
        for rel, layout in _TRAIN_CANDIDATES:
            folder = root / rel if rel != "." else root
            looked.append(f"{folder}/000NN/")
            dirs = _class_dirs(folder)
            if dirs:
                return SplitSpec("train", layout, folder, class_dirs=tuple(dirs))
    else:
        for rel, layout in _TEST_CANDIDATES:
            folder = root / rel
            looked.append(f"{folder}/*.ppm")
            if _has_ppm(folder):
                csv_path, csv_looked = _find_test_labels(folder, root)
                if csv_path is None:
                    places = ", ".join(str(p) for p in csv_looked)
                    raise DatasetNotFoundError(
                        f"GTSRB test images found in {folder} but no labels file "
                        f"{TEST_LABELS_CSV} (looked at: {places}); it comes from "
                        "GTSRB_Final_Test_GT.zip (neonsign download ROOT --split test)"
                    )
                return SplitSpec("test", layout, folder, labels_csv=csv_path)
    raise DatasetNotFoundError(
        f"no GTSRB {split} split under {root}; looked for: " + "; ".join(looked)
    )


# --------------------------------------------------------------------------------------------
# Listing the images of a split


@dataclass
class _Listing:
    """The rows of a split column by column: paths as ``str`` (what the C loader reads), the
    numbers as int64 arrays (``rois`` (N, 4), ``_NO_ROI`` rows for files without one)."""

    paths: list[str]
    labels: NDArray[np.int64]
    tracks: list[int | None]
    widths: NDArray[np.int64]
    heights: NDArray[np.int64]
    rois: NDArray[np.int64]


@dataclass
class _RowBuilder:
    """A :class:`_Listing` built row by row (the training split's per-folder walk): plain
    lists while adding, about a microsecond per image, arrays once at the end."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    tracks: list[int | None] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    rois: list[tuple[int, int, int, int]] = field(default_factory=list)

    def add(
        self,
        path: str,
        label: int,
        track: int | None,
        w: int,
        h: int,
        roi: tuple[int, int, int, int] | None,
    ) -> None:
        self.paths.append(path)
        self.labels.append(label)
        self.tracks.append(track)
        self.widths.append(w)
        self.heights.append(h)
        self.rois.append(_NO_ROI if roi is None else roi)

    def listing(self) -> _Listing:
        return _Listing(
            paths=self.paths,
            labels=np.array(self.labels, dtype=np.int64),
            tracks=self.tracks,
            widths=np.array(self.widths, dtype=np.int64),
            heights=np.array(self.heights, dtype=np.int64),
            rois=np.array(self.rois, dtype=np.int64).reshape(-1, 4),
        )


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding its pixels; (0, 0) when
    the header is unreadable (the loader names the file when it tries to decode it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            return int(width), int(height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return (0, 0)


def _list_train(spec: SplitSpec) -> _Listing:
    """Every class folder's rows (see :func:`_list_class`), class by class."""
    parts = [_list_class(class_dir) for class_dir in spec.class_dirs]
    if not parts:
        return _RowBuilder().listing()
    return _Listing(
        paths=[p for part in parts for p in part.paths],
        labels=np.concatenate([part.labels for part in parts]),
        tracks=[t for part in parts for t in part.tracks],
        widths=np.concatenate([part.widths for part in parts]),
        heights=np.concatenate([part.heights for part in parts]),
        rois=np.concatenate([part.rois for part in parts]),
    )


def _list_class(class_dir: Path) -> _Listing:
    """One training class folder's rows, in file-name order: every ``.ppm`` in it and every
    file its CSV names (a listed file that is missing is reported by the loader, naming it).

    In the usual case -- the CSV lists every image of the folder once, in order -- the rows are
    the CSV's columns as they are (no Python object per row but its path and track); otherwise
    row by row, files without a CSV row sized from their header.
    """
    label = int(class_dir.name)
    if label >= NUM_CLASSES:
        raise DatasetNotFoundError(
            f"{class_dir}: class folder {class_dir.name} is outside 00000..{NUM_CLASSES - 1:05d}"
        )
    csv_path = class_dir / f"GT-{class_dir.name}.csv"
    with file_errors("look for the annotation file", csv_path):
        has_csv = csv_path.is_file()
    folder = str(class_dir) + os.sep
    table = preprocess.read_annotation_table(csv_path, folder) if has_csv else None
    listed = [p[len(folder) :] for p in table.paths] if table is not None else []
    if table is not None and table.class_ids is not None:
        wrong = np.flatnonzero(table.class_ids != label)
        if wrong.size:
            row = int(wrong[0])
            raise AnnotationError(
                f"{csv_path}: {listed[row]} has ClassId {table.class_ids[row]} but lies in class "
                f"folder {class_dir.name}"
            )
    with file_errors("list the class folder", class_dir):
        on_disk = [n for n in os.listdir(class_dir) if n[-4:].lower() == ".ppm"]
    names = sorted(set(on_disk).union(listed))
    tracks = _track_ids(names)
    if table is not None and names == listed:
        return _Listing(
            paths=table.paths,
            labels=np.full(len(names), label, dtype=np.int64),
            tracks=tracks,
            widths=np.ascontiguousarray(table.widths),
            heights=np.ascontiguousarray(table.heights),
            rois=np.ascontiguousarray(table.rois),
        )
    out = _RowBuilder()
    row_of = {name: i for i, name in enumerate(listed)}  # a name listed twice: its last row
    for name, track in zip(names, tracks, strict=True):
        path = folder + name
        i = row_of.get(name)
        if table is not None and i is not None:
            x1, y1, x2, y2 = (int(v) for v in table.rois[i])
            out.add(
                path, label, track, int(table.widths[i]), int(table.heights[i]), (x1, y1, x2, y2)
            )
        else:
            w, h = _header_size(path)
            out.add(path, label, track, w, h, None)
    return out.listing()


_ALL_TRAIN_NAMES_RE = re.compile(r"(?:\d{5}_\d{5}\.ppm\n)*", re.IGNORECASE)


def _track_ids(names: list[str]) -> list[int | None]:
    """``TTTTT`` of each ``TTTTT_IIIII.ppm`` name, None for other names. When every name has
    that form (GTSRB's folders) one regex pass over all of them checks it and NumPy reads the
    digits: a twentieth of the cost of a match per name."""
    joined = "\n".join(names) + "\n"
    if not _ALL_TRAIN_NAMES_RE.fullmatch(joined):
        return [int(m.group(1)) if (m := _TRAIN_FILE_RE.match(n)) else None for n in names]
    digits = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(-1, 16)[:, :5] - ord("0")
    return (digits.astype(np.int64) @ np.array([10000, 1000, 100, 10, 1])).tolist()  # type: ignore[no-any-return]


def _list_test(spec: SplitSpec) -> _Listing:
    csv_path = spec.labels_csv
    assert csv_path is not None  # find_split guarantees it for the test split
    # by column, checked with NumPy: no Python object per row but its path (the C parser has
    # already refused names with path separators, '.', '..' and bad numbers)
    table = preprocess.read_annotation_table(csv_path, str(spec.images_dir) + os.sep)
    if table.class_ids is None:
        if table.paths:
            raise AnnotationError(f"{csv_path}: has no ClassId column (an unlabelled test list?)")
        return _RowBuilder().listing()
    bad = np.flatnonzero((table.class_ids < 0) | (table.class_ids >= NUM_CLASSES))
    if bad.size:
        row = int(bad[0])
        raise AnnotationError(
            f"{csv_path}: row {row + 1} ({os.path.basename(table.paths[row])}) ClassId "
            f"{table.class_ids[row]} is outside 0..{NUM_CLASSES - 1}"
        )
    return _Listing(
        paths=table.paths,
        labels=np.ascontiguousarray(table.class_ids),
        tracks=[None] * len(table.paths),
        widths=np.ascontiguousarray(table.widths),
        heights=np.ascontiguousarray(table.heights),
        rois=np.ascontiguousarray(table.rois),
    )


# --------------------------------------------------------------------------------------------
# Loading


def _subset(n: int, limit: int | None) -> NDArray[np.int64] | None:
    if limit is None or limit >= n:
        return None
    return np.unique(np.linspace(0, n - 1, num=limit).round().astype(np.int64))


def split_checksum(
    images_u8: ImageU8, labels: NDArray[np.integer[Any]], *, size: int, roi: bool
) -> str:
    """sha256 hex digest of a decoded split: the data version later stages record.

    Covers, in this order: a version tag with the image size and the roi flag, the number of
    images, the uint8 (N, H, W, 3) pixels in C order after decoding/cropping/resizing, and the
    int64 little-endian labels. It does not cover file names, the original files' bytes, or the
    float normalisation (mean/std), and it changes with row order. :func:`load_split` gets
    the same digest from its loader threads, which hash the rows as they load them.
    """
    if images_u8.dtype != np.uint8 or images_u8.ndim != 4:
        raise NeonsignValueError(
            f"checksum needs uint8 (N,H,W,3) images, got {images_u8.dtype} {images_u8.shape}"
        )
    h = hashlib.sha256(_checksum_tag(size, roi, images_u8.shape[0]))
    h.update(np.ascontiguousarray(images_u8).data)
    h.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return h.hexdigest()


def _checksum_tag(size: int, roi: bool, n: int) -> bytes:
    """The version tag :func:`split_checksum` starts with."""
    return f"neonsign-split-v1;size={size};roi={int(roi)};n={n};".encode()


@overload
def load_split(
    root: str | Path,
    split: str = ...,
    *,
    size: int = ...,
    roi: bool = ...,
    dtype: Literal["float32"] = ...,
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
    threads: int | None = ...,
    skip_bad: bool = ...,
    limit: int | None = ...,
) -> tuple[ImageF32, NDArray[np.int64], SplitMeta]: ...
@overload
def load_split(
    root: str | Path,
    split: str = ...,
    *,
    size: int = ...,
    roi: bool = ...,
    dtype: Literal["uint8"],
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
    threads: int | None = ...,
    skip_bad: bool = ...,
    limit: int | None = ...,
) -> tuple[ImageU8, NDArray[np.int64], SplitMeta]: ...
@overload
def load_split(
    root: str | Path,
    split: str = ...,
    *,
    size: int = ...,
    roi: bool = ...,
    dtype: str,
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
    threads: int | None = ...,
    skip_bad: bool = ...,
    limit: int | None = ...,
) -> tuple[ImageF32 | ImageU8, NDArray[np.int64], SplitMeta]: ...
def load_split(
    root: str | Path,
    split: str = "train",
    *,
    size: int = 32,
    roi: bool = False,
    dtype: str = "float32",
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    threads: int | None = None,
    skip_bad: bool = False,
    limit: int | None = None,
) -> tuple[ImageF32 | ImageU8, NDArray[np.int64], SplitMeta]:
    """Load a whole GTSRB split found under ``root`` (any layout :func:`find_split` accepts).

    Args:
        root: the folder the data set is in.
        split: ``"train"`` or ``"test"``.
        size: side of the square output images (Pillow-compatible antialiased bilinear resize).
        roi: crop each image to its annotated ROI before resizing (whole image otherwise, as
            torchvision's ``Resize((32, 32))`` does).
        dtype: ``"float32"`` -> (N, 3, size, size) normalised ``(x/255 - mean) / std``;
            ``"uint8"`` -> (N, size, size, 3) RGB.
        mean, std: per-channel normalisation for float32.
        threads: loader threads (None: the pool's size; 1: no threads).
        skip_bad: keep going past unreadable files (their rows are zero, listed in
            ``meta.errors``) instead of raising on the first one.
        limit: load at most this many images, evenly spaced over the sorted list so that every
            class stays represented (for quick runs).

    Returns:
        ``(images, labels, meta)``: the array described above, int64 (N,) labels and a
        :class:`SplitMeta`. ``meta.checksum`` (see :func:`split_checksum`) is computed from the
        uint8 decode at ``size``/``roi`` and the labels, so it does not depend on ``dtype``,
        ``mean``/``std`` or the thread count.

    Every image goes through one C pass (:func:`neonsign.preprocess.load_images_and_digest`:
    open, fstat, read, decode, crop, resize, normalise into the output array) with the GIL
    released; for float32 the same pass leaves the uint8 resize the checksum covers in a side
    array, and the loader's threads hash those rows in row order as they complete, so nothing
    is decoded twice, no NumPy pass runs over the images and no hashing pass follows. A FIFO, a
    device (e.g. a symlink to ``/dev/zero``) or a directory named like an image is refused
    before anything is read from it (an error naming it, or a skipped row with ``skip_bad``).

    Raises:
        DatasetNotFoundError: no such split under ``root``.
        AnnotationError: a CSV is malformed.
        DecodeError / NeonsignFileNotFoundError (a FileNotFoundError): a bad or missing image
            (without ``skip_bad``), naming it.
        NeonsignOSError subclasses (e.g. NeonsignPermissionError): a folder or file that cannot
            be read, naming it.
        NeonsignValueError: a bad argument.
    """
    if dtype not in ("float32", "uint8"):
        raise NeonsignValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise NeonsignValueError(f"size must be a positive int, got {size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise NeonsignValueError(f"limit must be a positive int or None, got {limit!r}")

    spec = find_split(root, split)
    listing = _list_train(spec) if split == "train" else _list_test(spec)
    if not listing.paths:
        raise DatasetNotFoundError(f"the GTSRB {split} split at {spec.images_dir} holds no images")

    paths, tracks = listing.paths, listing.tracks
    labels, widths, heights, rois = listing.labels, listing.widths, listing.heights, listing.rois
    keep = _subset(len(paths), limit)
    if keep is not None:
        paths = [paths[i] for i in keep]
        tracks = [tracks[i] for i in keep]
        labels, widths, heights, rois = labels[keep], widths[keep], heights[keep], rois[keep]

    t0 = time.perf_counter()
    # the checksum is hashed by the loader's threads as rows complete (see split_checksum for
    # what it covers; load_images_and_digest for how): no serial pass after the load
    result, _, checksum = preprocess.load_images_and_digest(
        paths,
        prefix=_checksum_tag(size, roi, len(paths)),
        suffix=np.ascontiguousarray(labels, dtype="<i8").tobytes(),
        rois=rois if roi else None,
        size=size,
        dtype=dtype,
        mean=mean,
        std=std,
        threads=threads,
        skip_bad=skip_bad,
    )
    seconds = time.perf_counter() - t0
    images = result.images

    meta = SplitMeta(
        split=split,
        layout=spec.layout,
        root=Path(root),
        paths=SplitPaths(paths),
        labels=labels,
        track_ids=tuple(tracks),
        widths=widths,
        heights=heights,
        rois=rois,
        size=size,
        roi=roi,
        checksum=checksum,
        class_counts=np.bincount(labels, minlength=NUM_CLASSES).astype(np.int64),
        errors=[(int(i), str(p), str(m)) for i, p, m in result.errors],
        seconds=seconds,
    )
    return images, labels, meta


def reframe(
    meta: SplitMeta,
    rows: NDArray[np.integer[Any]] | None = None,
    *,
    roi: bool,
    threads: int | None = None,
) -> ImageU8:
    """The images of ``rows`` (default: all) of the split ``meta`` describes, decoded again by
    the C loader as uint8 (N, size, size, 3) in the framing ``roi`` names (ROI crop or whole).

    ``load_split`` loads one framing; this gives the other one of the same rows -- e.g. the
    whole images of a by-track validation part that was loaded as ROI crops -- through the same
    decode and resize, so both framings of the same images can be measured.
    """
    idx = np.arange(len(meta)) if rows is None else np.asarray(rows, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(meta)):
        raise NeonsignValueError(
            f"rows must lie in [0, {len(meta)}), got [{idx.min()}, {idx.max()}]"
        )
    strings = meta.paths.strings() if isinstance(meta.paths, SplitPaths) else meta.paths
    result = preprocess.load_images(
        [strings[i] for i in idx],
        rois=meta.rois[idx] if roi else None,
        size=meta.size,
        dtype="uint8",
        threads=threads,
    )
    return cast(ImageU8, result.images)


# --------------------------------------------------------------------------------------------
# Validation split by track


def track_split(
    meta: SplitMeta, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into training and validation by whole tracks, stratified per class.

    A track (``TTTTT`` in ``TTTTT_IIIII.ppm``) is one physical sign seen ~30 times; splitting
    images at random would put the same sign on both sides. For each class, ``round(val_fraction
    * tracks)`` of its tracks (at least one when the class has two or more tracks and
    ``val_fraction > 0``) are drawn with ``numpy.random.default_rng(seed)`` and all their images
    go to validation. Rows without a track id (file names not following the pattern) each count
    as a track of their own.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 row indices, disjoint, together covering every row.

    Raises:
        NeonsignValueError: ``val_fraction`` outside [0, 1), a bad ``seed``, or ``meta`` has no
            track ids (the test split).
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
        raise NeonsignValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n = len(meta.labels)
    if n and all(t is None for t in meta.track_ids):
        raise NeonsignValueError(
            f"the {meta.split} split has no track ids (only training files named TTTTT_IIIII.ppm do)"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NeonsignValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(seed)
    # Key each row by (class, track); rows without a track get a unique negative key.
    groups: dict[int, dict[int, list[int]]] = {}
    for row, (label, track) in enumerate(zip(meta.labels.tolist(), meta.track_ids, strict=False)):
        key = track if track is not None else -1 - row
        groups.setdefault(label, {}).setdefault(key, []).append(row)
    val_rows: list[int] = []
    for label in sorted(groups):
        keys = sorted(groups[label])
        n_val = int(round(val_fraction * len(keys)))
        if n_val == 0 and val_fraction > 0 and len(keys) >= 2:
            n_val = 1
        n_val = min(n_val, len(keys) - 1) if len(keys) >= 2 else 0
        chosen = rng.permutation(len(keys))[:n_val]
        for k in chosen:
            val_rows.extend(groups[label][keys[k]])
    is_val = np.zeros(n, dtype=bool)
    is_val[np.asarray(val_rows, dtype=np.int64)] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
