"""Image preprocessing on neonsign's C core: PPM decoding, GTSRB annotations, Pillow-exact
bilinear resizing, normalisation and whole-split loading.

Everything here runs on NumPy and ``neonsign._native`` alone (no PyTorch). The heavy calls
release the GIL; :func:`load_images` spreads the work over the shared thread pool
(:func:`neonsign.set_threads`).

Conventions:

* images are ``uint8`` arrays of shape ``(H, W, 3)`` (RGB, C-contiguous), as Pillow gives them;
* a ROI is ``(x1, y1, x2, y2)`` with *inclusive* corners, as in GTSRB's CSV files; cropping to
  it and resizing equals Pillow's ``img.crop((x1, y1, x2 + 1, y2 + 1)).resize(size, BILINEAR)``;
* sizes are ``(height, width)`` (an int means a square);
* ``float32`` output is ``(v / 255 - mean[c]) / std[c]`` in channel-first order, bit-identical to
  torchvision's ``ToTensor()`` followed by ``Normalize(mean, std)``.

Resource limits (:func:`set_limits`) cap the pixels of a decoded image and the bytes of a file
read; inputs beyond them raise :class:`~neonsign.errors.ResourceLimitError` before anything
large is allocated.

Errors: every failure a caller can cause is a :class:`~neonsign.errors.NeonsignError`. A file
that cannot be read raises the matching :class:`~neonsign.errors.NeonsignOSError` subclass
(``NeonsignFileNotFoundError`` is also a ``FileNotFoundError``) with a message naming the file.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple, Protocol, Union, cast, overload

import numpy as np
from numpy.typing import NDArray

from . import _native
from .errors import (
    AnnotationError,
    NeonsignError,
    NeonsignTypeError,
    NeonsignValueError,
    ResourceLimitError,
    file_errors,
    os_error_class,
)

__all__ = [
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "Annotation",
    "LoadResult",
    "decode_ppm",
    "read_ppm",
    "parse_annotations",
    "read_annotations",
    "AnnotationTable",
    "read_annotation_table",
    "resize",
    "normalize",
    "preprocess_image",
    "load_images",
    "load_images_and_uint8",
    "load_images_and_digest",
    "get_limits",
    "set_limits",
]

PathLike = Union[str, "os.PathLike[str]"]  # noqa: UP007 (a runtime alias with a forward reference)
Size = int | tuple[int, int]
Roi = tuple[int, int, int, int]
Stats = tuple[float, float, float]
ImageU8 = NDArray[np.uint8]
"""An RGB image ``uint8 (H, W, 3)``, or a batch of them ``uint8 (N, H, W, 3)``."""
ImageF32 = NDArray[np.float32]
"""Normalised channel-first images: ``float32 (3, H, W)`` or ``float32 (N, 3, H, W)``."""

DEFAULT_MEAN: Stats = (0.5, 0.5, 0.5)
"""Per-channel mean of the learning path's ``Normalize(0.5, 0.5)``; the default everywhere
(:data:`neonsign.artifacts.DEFAULT_PREPROCESSING` records it in model cards)."""
DEFAULT_STD: Stats = (0.5, 0.5, 0.5)
"""Per-channel standard deviation of the learning path's ``Normalize(0.5, 0.5)``."""

_DEFAULT_MAX_PIXELS = 1 << 26
_DEFAULT_MAX_FILE_BYTES = 1 << 30
# Annotation files are small (GTSRB's largest is ~150 kB); this only stops runaway reads.
_MAX_CSV_BYTES = 1 << 28

_limits = {"max_pixels": _DEFAULT_MAX_PIXELS, "max_file_bytes": _DEFAULT_MAX_FILE_BYTES}

_CsvRow = tuple[str, int, int, Roi, int | None]


class _PreprocessCore(Protocol):
    """The part of the C extension this module calls, with the types it returns (the binding
    checks every argument again; this only types the calls)."""

    LAYOUT_F32_NCHW: int
    LAYOUT_U8_NHWC: int

    def ppm_decode(self, data: bytes | bytearray | memoryview, max_pixels: int, /) -> ImageU8: ...

    def ppm_read(self, path: str, max_pixels: int, max_file_bytes: int, /) -> ImageU8: ...

    def csv_parse(
        self, data: bytes | bytearray | memoryview, source: str, /
    ) -> tuple[list[_CsvRow], bool]: ...

    def csv_columns(
        self, data: bytes | bytearray | memoryview, source: str, prefix: str, /
    ) -> tuple[list[str], NDArray[np.int64], bool]: ...

    def resize(self, image: ImageU8, height: int, width: int, roi: Roi | None, /) -> ImageU8: ...

    def normalize(self, images: ImageU8, mean: Stats, std: Stats, /) -> ImageF32: ...

    def load_images(
        self,
        paths: list[str | bytes],
        rois: NDArray[np.int64] | None,
        height: int,
        width: int,
        layout: int,
        mean: Stats,
        std: Stats,
        max_pixels: int,
        max_file_bytes: int,
        skip_bad: bool,
        threads: int | None,
        keep_uint8: bool,
        /,
        *,
        out: ImageF32 | ImageU8 | None,
        out_uint8: ImageU8 | None,
        digest_prefix: bytes | None = None,
        digest_suffix: bytes | None = None,
    ) -> tuple[
        ImageF32 | ImageU8, NDArray[np.bool_], list[tuple[int, str]], ImageU8 | None, bytes | None
    ]: ...

    def sha256_accelerated(self) -> bool: ...


# The extension has no stub yet (mypy sees an untyped module): the cast gives its calls the
# types above. Once ``_native.pyi`` exists, ``_core: _PreprocessCore = _native`` lets mypy check
# the stub against this Protocol.
_core = cast(_PreprocessCore, _native)


@contextmanager
def _core_errors() -> Iterator[None]:
    """Re-raise the C core's built-in exceptions as neonsign errors with the same message.

    The binding raises ``OSError(errno, "PATH: cannot open: REASON")`` for I/O (the message
    already names the file) and plain ``ValueError``/``TypeError`` for some argument checks;
    the caller gets the matching :class:`~neonsign.errors.NeonsignOSError` subclass (still a
    ``FileNotFoundError`` etc.), :class:`NeonsignValueError` or :class:`NeonsignTypeError`.
    """
    try:
        yield
    except NeonsignError:
        raise
    except OSError as exc:
        message = exc.strerror or str(exc)
        raise os_error_class(exc.errno)(message, exc.errno, exc.filename) from exc
    except TypeError as exc:
        raise NeonsignTypeError(str(exc)) from exc
    except ValueError as exc:
        raise NeonsignValueError(str(exc)) from exc


def get_limits() -> dict[str, int]:
    """Return the current resource limits: ``{"max_pixels": int, "max_file_bytes": int}``."""
    return dict(_limits)


def set_limits(
    *, max_pixels: int | None = None, max_file_bytes: int | None = None
) -> dict[str, int]:
    """Set the resource limits used by every decode and load call; return the previous ones.

    Args:
        max_pixels: largest ``width * height`` of an image to decode (default ``2**26``).
        max_file_bytes: largest image file to read (default ``2**30``).
    """
    previous = get_limits()
    for name, value in (("max_pixels", max_pixels), ("max_file_bytes", max_file_bytes)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NeonsignValueError(f"{name} must be a positive int, got {value!r}")
        _limits[name] = value
    return previous


class Annotation(NamedTuple):
    """One row of a GTSRB annotation CSV.

    ``roi`` is ``(x1, y1, x2, y2)`` with inclusive corners, inside ``width x height``;
    ``class_id`` is ``None`` for the unlabelled test CSV (``GT-final_test.test.csv``).
    """

    filename: str
    width: int
    height: int
    roi: tuple[int, int, int, int]
    class_id: int | None


class LoadResult(NamedTuple):
    """What :func:`load_images` returns.

    * ``images``: ``float32 (N, 3, H, W)`` normalised, or ``uint8 (N, H, W, 3)``;
    * ``ok``: ``bool (N,)``, False for images that failed (their rows are zero);
    * ``errors``: ``(index, path, message)`` for every failed image (empty without skip_bad).
    """

    images: ImageF32 | ImageU8
    ok: NDArray[np.bool_]
    errors: list[tuple[int, str, str]]


# ---------------------------------------------------------------------------------------------
# PPM


def decode_ppm(data: bytes | bytearray | memoryview, *, max_pixels: int | None = None) -> ImageU8:
    """Decode a PPM image (P6 or P3, maxval 1..65535) held in memory.

    Args:
        data: the file's bytes.
        max_pixels: pixel cap for this call (None: ``get_limits()["max_pixels"]``); lets a
            server apply its own cap without changing the process-wide limits.

    Returns:
        ``uint8`` array of shape ``(H, W, 3)``; samples of maxval != 255 are scaled to 8 bits
        with rounding.

    Raises:
        DecodeError: malformed data (bad magic, dimensions, maxval, truncated, bad samples).
        ResourceLimitError: more pixels than the cap.
    """
    if max_pixels is None:
        max_pixels = _limits["max_pixels"]
    elif isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise NeonsignValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    with _core_errors():
        return _core.ppm_decode(data, max_pixels)


def read_ppm(path: PathLike) -> ImageU8:
    """Read and decode the PPM file at ``path``: ``uint8 (H, W, 3)``.

    Errors name the path: NeonsignFileNotFoundError (a FileNotFoundError) and the other
    NeonsignOSError subclasses for I/O, DecodeError for bad contents, ResourceLimitError beyond
    :func:`get_limits`.
    """
    with _core_errors():
        return _core.ppm_read(os.fspath(path), _limits["max_pixels"], _limits["max_file_bytes"])


# ---------------------------------------------------------------------------------------------
# Annotations


def parse_annotations(
    data: bytes | bytearray | memoryview, source: str = "<annotations>"
) -> list[Annotation]:
    """Parse the bytes of a GTSRB annotation CSV.

    Accepts the training header ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``
    and the test header without ``ClassId``; LF or CRLF; a UTF-8 BOM; trailing empty lines.

    Raises:
        AnnotationError: naming ``source``, the line number and the field.
        NeonsignTypeError: ``data`` is not bytes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NeonsignTypeError(f"data must be bytes, got {type(data).__name__}")
    with _core_errors():
        rows, _has_class = _core.csv_parse(data, str(source))
    return [Annotation(*row) for row in rows]


def read_annotations(path: PathLike) -> list[Annotation]:
    """Read and parse the GTSRB annotation CSV at ``path`` (see :func:`parse_annotations`).

    Raises the NeonsignOSError subclass of the failure (NeonsignFileNotFoundError,
    NeonsignIsADirectoryError, ...) naming the file when it cannot be read.
    """
    path = os.fspath(path)
    return parse_annotations(_read_csv_bytes(path), path)


def _read_csv_bytes(path: str) -> bytes:
    with file_errors("read the annotation file", path), open(path, "rb") as f:
        data = f.read(_MAX_CSV_BYTES + 1)
    if len(data) > _MAX_CSV_BYTES:
        raise AnnotationError(f"{path}: larger than {_MAX_CSV_BYTES} bytes; not an annotation file")
    return data


class AnnotationTable(NamedTuple):
    """A GTSRB annotation CSV by column (what :func:`read_annotation_table` returns).

    * ``paths``: ``prefix + Filename`` of each row (``str``);
    * ``widths``, ``heights``: ``int64 (N,)``;
    * ``rois``: ``int64 (N, 4)`` inclusive ``(x1, y1, x2, y2)``;
    * ``class_ids``: ``int64 (N,)``, or None when the file has no ClassId column.
    """

    paths: list[str]
    widths: NDArray[np.int64]
    heights: NDArray[np.int64]
    rois: NDArray[np.int64]
    class_ids: NDArray[np.int64] | None


def read_annotation_table(path: PathLike, prefix: str = "") -> AnnotationTable:
    """:func:`read_annotations` by column: the same rows and checks, but NumPy arrays and one
    ``str`` per row (``prefix`` + its file name, e.g. the image folder and a separator) instead
    of an :class:`Annotation` per row -- a whole split's listing then costs a fraction of a
    microsecond per image instead of a few.

    Raises as :func:`read_annotations`; NeonsignTypeError if ``prefix`` is not a str.
    """
    path = os.fspath(path)
    with _core_errors():
        paths, numbers, has_class = _core.csv_columns(_read_csv_bytes(path), path, prefix)
    return AnnotationTable(
        paths=paths,
        widths=numbers[:, 0],
        heights=numbers[:, 1],
        rois=numbers[:, 2:6],
        class_ids=numbers[:, 6] if has_class else None,
    )


# ---------------------------------------------------------------------------------------------
# Resize and normalise


def _size_hw(size: Size) -> tuple[int, int]:
    if isinstance(size, bool):
        raise NeonsignValueError(f"size must be an int or (height, width), got {size!r}")
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise NeonsignValueError(
                f"size must be an int or (height, width), got {size!r}"
            ) from None
    if h < 1 or w < 1:
        raise NeonsignValueError(f"size must be positive, got {size!r}")
    return h, w


def _check_output_pixels(h: int, w: int) -> None:
    """Refuse output images above the pixel limit before anything is allocated."""
    if h * w > _limits["max_pixels"]:
        raise ResourceLimitError(
            f"output size {h}x{w} exceeds the limit of {_limits['max_pixels']} pixels (set_limits)"
        )


def _as_rgb(image: ImageU8, name: str = "image") -> ImageU8:
    if not isinstance(image, np.ndarray):
        raise NeonsignTypeError(f"{name} must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise NeonsignValueError(
            f"{name} must be uint8 with shape (H, W, 3), got {image.dtype} {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise NeonsignValueError(f"{name} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def _roi_tuple(roi: Sequence[int] | None) -> Roi | None:
    if roi is None:
        return None
    try:
        values = tuple(int(v) for v in roi)
    except (TypeError, ValueError):
        raise NeonsignValueError(f"roi must be (x1, y1, x2, y2) ints, got {roi!r}") from None
    if len(values) != 4:
        raise NeonsignValueError(f"roi must be (x1, y1, x2, y2), got {roi!r}")
    x1, y1, x2, y2 = values
    return (x1, y1, x2, y2)


def resize(image: ImageU8, size: Size, *, roi: Sequence[int] | None = None) -> ImageU8:
    """Resize ``image`` (``uint8 (H, W, 3)``) to ``size`` with Pillow's BILINEAR semantics.

    Args:
        image: RGB image, ``uint8 (H, W, 3)``.
        size: output ``(height, width)``, or an int for a square.
        roi: optional ``(x1, y1, x2, y2)`` inclusive crop applied first.

    Returns:
        ``uint8 (height, width, 3)``, equal to ``Image.fromarray(image).crop(...).resize((width,
        height), Image.BILINEAR)``.

    Raises:
        NeonsignValueError / NeonsignTypeError: a bad image, size or ROI (one that does not fit
            the image included).
        ResourceLimitError: the output would exceed the pixel limit.
    """
    h, w = _size_hw(size)
    _check_output_pixels(h, w)
    image = _as_rgb(image)
    roi_tuple = _roi_tuple(roi)
    with _core_errors():
        return _core.resize(image, h, w, roi_tuple)


def _triple(values: Sequence[float], name: str) -> Stats:
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise NeonsignValueError(f"{name} must be 3 numbers, got {values!r}") from None
    if len(floats) != 3:
        raise NeonsignValueError(f"{name} must be 3 numbers, got {values!r}")
    return (floats[0], floats[1], floats[2])


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[Stats, Stats]:
    m, s = _triple(mean, "mean"), _triple(std, "std")
    if any(v == 0.0 or math.isnan(v) for v in s):
        raise NeonsignValueError(f"std values must be non-zero numbers, got {std!r}")
    return m, s


def normalize(
    images: ImageU8, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD
) -> ImageF32:
    """Convert ``uint8 (N, H, W, 3)`` (or one ``(H, W, 3)`` image) to normalised float32.

    Returns ``float32 (N, 3, H, W)`` (or ``(3, H, W)``) with ``(v / 255 - mean[c]) / std[c]``,
    the same bits as torchvision's ``ToTensor`` + ``Normalize``.
    """
    if not isinstance(images, np.ndarray):
        raise NeonsignTypeError(f"images must be a numpy.ndarray, got {type(images).__name__}")
    m, s = _check_stats(mean, std)
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise NeonsignValueError(
            f"images must be uint8 (N, H, W, 3) or (H, W, 3), got {images.dtype} {images.shape}"
        )
    with _core_errors():
        out = _core.normalize(np.ascontiguousarray(batch), m, s)
    if single:
        first: ImageF32 = out[0]
        return first
    return out


_DTYPES = {"float32": _core.LAYOUT_F32_NCHW, "uint8": _core.LAYOUT_U8_NHWC}
DTypeName = Literal["float32", "uint8"]


def _layout(dtype: str) -> int:
    """The loader's layout constant for ``dtype`` (also accepts ``np.float32``/``np.uint8``
    and their dtypes, which name the same thing)."""
    try:
        key = np.dtype(dtype).name
    except TypeError:
        key = str(dtype)
    if key not in _DTYPES:
        raise NeonsignValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    return _DTYPES[key]


@overload
def preprocess_image(
    image: ImageU8 | bytes | bytearray | memoryview,
    *,
    size: Size = ...,
    roi: Sequence[int] | None = ...,
    dtype: Literal["float32"] = ...,
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
) -> ImageF32: ...
@overload
def preprocess_image(
    image: ImageU8 | bytes | bytearray | memoryview,
    *,
    size: Size = ...,
    roi: Sequence[int] | None = ...,
    dtype: Literal["uint8"],
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
) -> ImageU8: ...
@overload
def preprocess_image(
    image: ImageU8 | bytes | bytearray | memoryview,
    *,
    size: Size = ...,
    roi: Sequence[int] | None = ...,
    dtype: str,
    mean: Sequence[float] = ...,
    std: Sequence[float] = ...,
) -> ImageF32 | ImageU8: ...
def preprocess_image(
    image: ImageU8 | bytes | bytearray | memoryview,
    *,
    size: Size = 32,
    roi: Sequence[int] | None = None,
    dtype: str = "float32",
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
) -> ImageF32 | ImageU8:
    """Preprocess one image: decode (if PPM bytes), crop to ``roi``, resize, normalise.

    Args:
        image: ``uint8 (H, W, 3)`` array (e.g. ``np.asarray(PIL.Image.open(f).convert("RGB"))``)
            or the bytes of a PPM file.
        size: output ``(height, width)`` or an int.
        roi: optional inclusive ``(x1, y1, x2, y2)``.
        dtype: ``"float32"`` -> ``(3, H, W)`` normalised; ``"uint8"`` -> ``(H, W, 3)``.

    Returns:
        The same values :func:`load_images` produces for the same pixels.
    """
    layout = _layout(dtype)
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = decode_ppm(image)
    small = resize(image, size, roi=roi)
    if layout == _core.LAYOUT_U8_NHWC:
        return small
    return normalize(small, mean, std)


# ---------------------------------------------------------------------------------------------
# Whole splits


def _path_list(paths: Sequence[PathLike | bytes]) -> list[str | bytes]:
    """``os.fspath`` of every path, refusing non-paths and NUL bytes with the row's index."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise NeonsignTypeError("paths must be a sequence of paths, not a single path")
    if isinstance(paths, (list, tuple)):  # the common case, all str: one C-level pass
        try:
            joined = "".join(paths)  # TypeError unless all are str
        except TypeError:
            pass
        else:
            if "\0" not in joined:
                return list(paths)  # all str, checked above
    out: list[str | bytes] = []
    for i, path in enumerate(paths):
        try:
            p = os.fspath(path)
        except TypeError:
            raise NeonsignTypeError(
                f"paths[{i}] must be a str, bytes or os.PathLike, got {type(path).__name__}"
            ) from None
        if (isinstance(p, str) and "\0" in p) or (isinstance(p, bytes) and b"\0" in p):
            raise NeonsignValueError(f"paths[{i}] {p!r} contains a null byte")
        out.append(p)
    return out


def load_images(
    paths: Sequence[PathLike | bytes],
    *,
    rois: NDArray[np.integer[Any]] | None = None,
    size: Size = 32,
    dtype: str = "float32",
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    threads: int | None = None,
    skip_bad: bool = False,
    out: ImageF32 | ImageU8 | None = None,
) -> LoadResult:
    """Load PPM files into one array: read, decode, crop, resize and normalise in C.

    One C pass per image on the shared thread pool with the GIL released: open (without
    blocking), ``fstat`` (anything but a regular file -- a FIFO, ``/dev/zero`` behind a symlink,
    a directory -- and files over :func:`get_limits` are refused before reading), read, decode,
    crop, resize, normalise straight into the output array. The result is identical for any
    thread count.

    Args:
        paths: N PPM files.
        rois: optional ``(N, 4)`` integer array of inclusive ``(x1, y1, x2, y2)`` per image; a
            row of ``-1`` means the whole image.
        size: output ``(height, width)`` or an int.
        dtype: ``"float32"`` -> images ``(N, 3, H, W)`` normalised with ``mean``/``std``;
            ``"uint8"`` -> ``(N, H, W, 3)``.
        threads: threads to use, at most the pool's size (``None``: the whole pool, see
            :func:`neonsign.set_threads`; 1: no threads, all work on the calling thread).
        skip_bad: if False, the first bad file (lowest index) raises; if True, failed images are
            zero rows, ``ok`` is False for them and ``errors`` lists them.
        out: an array to write the images into instead of a new one (exactly the dtype and
            shape described above, C-contiguous, writeable; e.g. a slice of a larger array);
            it is ``images`` of the result.

    Raises:
        NeonsignFileNotFoundError (a FileNotFoundError) / other NeonsignOSError subclasses: a
            file is missing, unreadable or not a regular file (the message names it).
        DecodeError: a file is not a valid PPM or its ROI does not fit (message names it).
        ResourceLimitError: a file exceeds :func:`get_limits`.
        NeonsignValueError / NeonsignTypeError: a bad argument.
    """
    result, _, _ = _load(
        paths, rois, size, dtype, mean, std, threads, skip_bad, keep_uint8=False, out=out
    )
    return result


def load_images_and_uint8(
    paths: Sequence[PathLike | bytes],
    *,
    rois: NDArray[np.integer[Any]] | None = None,
    size: Size = 32,
    dtype: str = "float32",
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    threads: int | None = None,
    skip_bad: bool = False,
    out: ImageF32 | ImageU8 | None = None,
    out_uint8: ImageU8 | None = None,
) -> tuple[LoadResult, ImageU8]:
    """:func:`load_images`, plus the ``uint8 (N, H, W, 3)`` resizes the images come from.

    For ``dtype="float32"`` the same C pass that normalises each image also leaves its uint8
    resize in a second array (the float32 images are exactly :func:`normalize` of it), so a
    caller that needs both -- e.g. a checksum over the decode beside float32 training input --
    pays for no second decode and no NumPy pass. For ``dtype="uint8"`` it is ``result.images``.
    Failed rows are zero in both. Arguments and errors as :func:`load_images`; ``out_uint8``
    (float32 only): an array for the resizes, like ``out`` (it must not overlap ``out``).
    """
    result, u8, _ = _load(
        paths,
        rois,
        size,
        dtype,
        mean,
        std,
        threads,
        skip_bad,
        keep_uint8=True,
        out=out,
        out_uint8=out_uint8,
    )
    return result, _uint8_rows(result, u8)


_HARDWARE_SHA256 = _core.sha256_accelerated()
"""Whether the loader's own sha256 uses SHA instructions (x86-64 SHA-NI, AArch64 SHA2); without
them OpenSSL (hashlib) hashes faster than the portable C, so :func:`load_images_and_digest` uses
it."""


def load_images_and_digest(
    paths: Sequence[PathLike | bytes],
    *,
    prefix: bytes,
    suffix: bytes = b"",
    rois: NDArray[np.integer[Any]] | None = None,
    size: Size = 32,
    dtype: str = "float32",
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    threads: int | None = None,
    skip_bad: bool = False,
) -> tuple[LoadResult, ImageU8, str]:
    """:func:`load_images_and_uint8`, plus the sha256 hex digest of ``prefix``, the uint8
    ``(N, H, W, 3)`` resizes in row order (failed rows as zeros) and ``suffix``.

    With SHA instructions the loader's worker threads hash the rows as they complete, in row
    order, while the next images load: the digest costs no serial pass over the images after
    the load. Elsewhere ``hashlib`` hashes the uint8 array after the load. The value is the
    same either way (plain sha256 of those bytes), for any thread count.
    """
    if not isinstance(prefix, bytes) or not isinstance(suffix, bytes):
        raise NeonsignTypeError("prefix and suffix must be bytes")
    result, side, digest = _load(
        paths,
        rois,
        size,
        dtype,
        mean,
        std,
        threads,
        skip_bad,
        keep_uint8=True,
        digest=(prefix, suffix) if _HARDWARE_SHA256 else None,
    )
    u8 = _uint8_rows(result, side)
    if digest is None:  # no SHA instructions: OpenSSL after the load beats the portable C
        h = hashlib.sha256(prefix)
        h.update(np.ascontiguousarray(u8).data)
        h.update(suffix)
        return result, u8, h.hexdigest()
    return result, u8, digest.hex()


def _uint8_rows(result: LoadResult, side: ImageU8 | None) -> ImageU8:
    """The uint8 resizes of a load with ``keep_uint8``: the side array of a float32 load, else
    the images themselves (the uint8 layout)."""
    return cast(ImageU8, result.images) if side is None else side


def _load(
    paths: Sequence[PathLike | bytes],
    rois: NDArray[np.integer[Any]] | None,
    size: Size,
    dtype: str,
    mean: Sequence[float],
    std: Sequence[float],
    threads: int | None,
    skip_bad: bool,
    *,
    keep_uint8: bool,
    out: ImageF32 | ImageU8 | None = None,
    out_uint8: ImageU8 | None = None,
    digest: tuple[bytes, bytes] | None = None,
) -> tuple[LoadResult, ImageU8 | None, bytes | None]:
    """Validate the arguments of :func:`load_images` and run the C loader; ``digest``:
    (prefix, suffix) of the sha256 the loader computes over the uint8 rows."""
    h, w = _size_hw(size)
    _check_output_pixels(h, w)
    layout = _layout(dtype)
    m, s = _check_stats(mean, std)
    path_list = _path_list(paths)  # the binding encodes each with os.fsencode
    roi_arr = None
    if rois is not None:
        given = np.asarray(rois)
        if given.shape != (len(path_list), 4) or not np.issubdtype(given.dtype, np.integer):
            raise NeonsignValueError(
                f"rois must be an integer array of shape ({len(path_list)}, 4), "
                f"got {given.dtype} {given.shape}"
            )
        roi_arr = np.ascontiguousarray(given, dtype=np.int64)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise NeonsignValueError(f"threads must be a positive int or None, got {threads!r}")
    with _core_errors():
        images, ok, errs, u8, hashed = _core.load_images(
            path_list,
            roi_arr,
            h,
            w,
            layout,
            m,
            s,
            _limits["max_pixels"],
            _limits["max_file_bytes"],
            bool(skip_bad),
            threads,
            keep_uint8,
            out=out,
            out_uint8=out_uint8,
            digest_prefix=None if digest is None else digest[0],
            digest_suffix=None if digest is None else digest[1],
        )
    errors = [(i, os.fsdecode(path_list[i]), msg) for i, msg in errs]
    return LoadResult(images, ok, errors), u8, hashed
