"""One image-preparation path: bytes or a file of any supported kind -> the engine's input.

``neonsign test``'s uploads-as-a-client-sends-them checks, ``neonsign predict`` and the server
all turn an image into the engine's input here, so a picture gets the same answer whichever
way it arrives.

:func:`decode` accepts PNG and JPEG (through Pillow) and PPM (P6/P3, through neonsign's C
decoder) in any mode, and always returns ``uint8 (H, W, 3)`` RGB (the common PNGs -- 8-bit grey,
grey + alpha, RGB or RGBA, not interlaced -- skip Pillow: zlib inflates them and neonsign's C
core reconstructs the rows, to the same pixels at a fraction of the cost per small image):

* palette, greyscale (``L``), 1-bit, CMYK and YCbCr images are converted as Pillow converts
  them to RGB;
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, and ``I`` as Pillow opens 16-bit PNGs) is
  scaled to 8 bits with rounding, ``round(v * 255 / 65535)`` -- the PPM decoder's rule for
  maxval 65535 -- so a 16-bit image decodes to the same pixels as its 8-bit version (Pillow's
  own ``convert("RGB")`` clips such images to white);
* transparency (an alpha channel, or a PNG ``tRNS`` colour) is composited **on white**:
  ``round((c * a + 255 * (255 - a)) / 255)``, what an image viewer shows on a white page. Pillow's
  ``convert("RGB")`` instead drops the alpha and keeps whatever colour the transparent pixels
  happen to store (often black), which is not the picture the user sees.

:func:`prepare` then crops to an optional ROI, resizes with Pillow's BILINEAR semantics and
normalises as a model card's ``preprocessing`` section says, with the C core of
:mod:`neonsign.preprocess` (the same calls ``neonsign test``'s loader makes).

The pixel count is checked from the header before anything is decoded (decompression bombs):
:class:`~neonsign.errors.ResourceLimitError` beyond ``max_pixels``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _native, preprocess
from .errors import (
    DecodeError,
    ModelError,
    NeonsignError,
    NeonsignTypeError,
    NeonsignValueError,
    ResourceLimitError,
    UnsupportedError,
    file_errors,
)
from .preprocess import ImageF32, ImageU8, Roi

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image as PILImage

__all__ = [
    "IMAGE_SUFFIXES",
    "RoiError",
    "check_roi",
    "parse_roi",
    "roi_from_values",
    "Decoded",
    "PreparedImage",
    "decode",
    "decode_image",
    "probe",
    "read_image",
    "preprocessing_params",
    "prepare_image",
    "prepare",
]

#: File name suffixes of the images :func:`read_image` is meant for (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

Stats = tuple[float, float, float]


class Decoded(NamedTuple):
    """A decoded image: ``uint8 (H, W, 3)`` RGB and the format it came in (``"PNG"``,
    ``"JPEG"`` or ``"PPM"``)."""

    image: ImageU8
    format: str


class PreparedImage(NamedTuple):
    """An image ready for the engine, with what it was made from.

    Attributes:
        x: float32 ``(3, H, W)``, normalised for the model.
        small: uint8 ``(H, W, 3)``, the cropped and resized image before normalisation.
        width, height: of the decoded image, before cropping and resizing.
        format: ``"PNG"``, ``"JPEG"``, ``"PPM"``, or ``"array"`` for an image given decoded.
    """

    x: ImageF32
    small: ImageU8
    width: int
    height: int
    format: str


# ---------------------------------------------------------------------------------------------
# Decoding


def _max_pixels(max_pixels: int | None) -> int:
    return preprocess.get_limits()["max_pixels"] if max_pixels is None else max_pixels


def _to_8bit(values: NDArray[Any]) -> NDArray[np.uint8]:
    """16-bit samples (0..65535) -> 8 bits, ``round(v * 255 / 65535)`` (the PPM rule)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _on_white(rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Composite ``rgb (H, W, 3)`` with ``alpha (H, W)`` on white, rounding to nearest."""
    a = alpha.astype(np.uint32)[..., None]
    out = (rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _sixteen_bit_rgb(im: PILImage) -> NDArray[np.uint8]:
    """A 16-bit greyscale image as 8-bit RGB; a ``tRNS`` grey level becomes white."""
    raw = np.asarray(im)
    grey = _to_8bit(raw)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    transparent = im.info.get("transparency")
    if isinstance(transparent, int):
        rgb[raw == transparent] = 255
    return rgb


def _pil_rgb(im: PILImage) -> NDArray[np.uint8]:
    """Any Pillow image mode as ``uint8 (H, W, 3)`` RGB (see the module doc for the rules)."""
    if im.mode in _SIXTEEN_BIT:
        return _sixteen_bit_rgb(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return _on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _draft(im: PILImage, reduce_above: int | None) -> None:
    """Ask Pillow to decode a JPEG of more than ``reduce_above`` pixels at the smallest DCT
    scale (1/2, 1/4 or 1/8) that still keeps at least ``reduce_above`` pixels: libjpeg then
    skips most of the work. Other formats, and smaller JPEGs, decode at full size."""
    w, h = im.size
    if reduce_above is None or im.format != "JPEG" or w * h <= reduce_above:
        return
    for scale in (8, 4, 2):
        if (w // scale) * (h // scale) >= reduce_above:
            im.draft("RGB", (w // scale, h // scale))
            return


#: Samples per pixel of the PNG colour types the fast decoder reads (8-bit samples only).
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
#: Largest image the fast PNG decoder takes; bigger ones (where its per-call saving is
#: negligible) go to Pillow, whose decompression-bomb policy then applies as before.
_PNG_FAST_MAX_PIXELS = 1 << 24


def _too_many_pixels(fmt: str, w: int, h: int, max_pixels: int, source: str) -> None:
    if w * h > max_pixels:
        raise ResourceLimitError(
            f"{source}: {fmt} image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
        )


def _png_chunks(data: bytes) -> tuple[bytes, list[memoryview]] | None:
    """``(IHDR payload, IDAT payloads)`` of a PNG whose chunks the fast decoder reads: every
    CRC right, IHDR first, IEND last, no palette, ``tRNS`` or unknown critical chunk. None
    otherwise."""
    view = memoryview(data)
    pos, n = len(_PNG_MAGIC), len(data)
    ihdr: bytes | None = None
    idat: list[memoryview] = []
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            return None
        payload = view[pos + 8 : end - 4]
        if zlib.crc32(payload, zlib.crc32(kind)) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if (kind == b"IHDR") != (ihdr is None):  # IHDR first, and once
            return None
        if kind == b"IHDR":
            ihdr = bytes(payload)
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            return (ihdr, idat) if ihdr is not None and idat else None
        elif kind in (b"PLTE", b"tRNS") or not kind[0] & 0x20:  # palette, transparency, critical
            return None
        pos = end
    return None


def _png_layout(ihdr: bytes) -> tuple[int, int, int] | None:
    """``(width, height, channels)`` of an IHDR the fast decoder reads, else None."""
    if len(ihdr) != 13:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr
    )
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or depth != 8 or compression or filtering or interlace:
        return None
    return width, height, channels


def _inflate(idat: list[memoryview], size: int) -> bytes | None:
    """The zlib stream split over ``idat``, if it inflates to exactly ``size`` bytes and ends
    there (never more than ``size + 1`` bytes are produced: no zlib bomb); else None."""
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(b"".join(idat), size + 1)
    except zlib.error:
        return None
    return rows if len(rows) == size and inflater.eof else None


def _decode_png_fast(data: bytes, max_pixels: int, source: str) -> Decoded | None:
    """Decode the common PNGs without Pillow: 8-bit grey, grey + alpha, RGB or RGBA, not
    interlaced, without ``tRNS`` (zlib inflates, :func:`neonsign._native.png_unfilter`
    reconstructs the rows and composites alpha on white). The pixels equal the Pillow path's
    (``tests/test_png_fast.py``). None for any other PNG and for anything unusual (a bad CRC,
    a short or overlong stream, a bad filter type): :func:`_decode_pillow` then decides,
    errors included.

    Raises:
        ResourceLimitError: more than ``max_pixels`` pixels (checked before inflating).
    """
    chunks = _png_chunks(data)
    layout = _png_layout(chunks[0]) if chunks is not None else None
    if chunks is None or layout is None:
        return None
    width, height, channels = layout
    _too_many_pixels("PNG", width, height, max_pixels, source)
    if not 0 < width * height <= _PNG_FAST_MAX_PIXELS:
        return None
    rows = _inflate(chunks[1], height * (1 + width * channels))
    if rows is None:
        return None
    try:
        return Decoded(_native.png_unfilter(rows, width, height, channels), "PNG")
    except NeonsignError:  # a bad filter type: Pillow names the problem
        return None


def _decode_pillow(
    data: bytes, max_pixels: int, source: str, reduce_above: int | None = None
) -> Decoded:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
            fmt = str(im.format)
            w, h = im.size
            _too_many_pixels(fmt, w, h, max_pixels, source)
            _draft(im, reduce_above)
            im.load()  # truncated or corrupt data raises here
            arr = _pil_rgb(im)
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(
            f"{source}: image rejected by Pillow as a decompression bomb: {exc}"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, NeonsignError):
            raise
        raise DecodeError(f"{source}: corrupt or truncated image: {exc}") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise DecodeError(f"{source}: decoded image has an unusable shape {arr.shape}")
    return Decoded(np.ascontiguousarray(arr), fmt)


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_pixels: int | None = None,
    source: str = "<upload>",
    reduce_above: int | None = None,
) -> Decoded:
    """Decode PNG, JPEG or PPM bytes of any mode to ``uint8 (H, W, 3)`` RGB (module doc).

    Args:
        data: the encoded image.
        max_pixels: largest ``width * height`` decoded (None: :func:`neonsign.preprocess.get_limits`).
        source: names the image in error messages (a file name, ``"<upload>"``).
        reduce_above: a JPEG of more pixels than this is decoded at a reduced DCT scale
            (libjpeg's 1/2, 1/4 or 1/8, keeping at least this many pixels): far less work for a
            camera-size photo, but other pixels than a full decode. None (the default): every
            image at full size.

    Raises:
        UnsupportedError: not a PNG, JPEG or PPM.
        DecodeError: corrupt or truncated.
        ResourceLimitError: more than ``max_pixels`` pixels.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NeonsignTypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    limit = _max_pixels(max_pixels)
    if data[:2] in (b"P6", b"P3"):
        try:
            return Decoded(preprocess.decode_ppm(data, max_pixels=limit), "PPM")
        except (DecodeError, ResourceLimitError) as exc:
            raise type(exc)(f"{source}: {exc}") from exc
    if not data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise UnsupportedError(
            f"{source}: unsupported image format (first bytes {data[:8]!r}); "
            "send PNG, JPEG or PPM (P6/P3)"
        )
    if data.startswith(_PNG_MAGIC):
        fast = _decode_png_fast(data, limit, source)
        if fast is not None:
            return fast
    return _decode_pillow(data, limit, source, reduce_above)


_PPM_HEADER = re.compile(rb"P[36](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def probe(
    data: bytes | bytearray | memoryview, *, source: str = "<upload>"
) -> tuple[str, int, int]:
    """``(format, width, height)`` of an encoded image, read from its header without decoding
    it (a PNG's IHDR, a JPEG's frame header through Pillow, a PPM's text header): what a pixel
    budget is checked against before any decoding work is spent.

    Raises:
        UnsupportedError: not a PNG, JPEG or PPM.
        DecodeError: the header is corrupt or truncated.
    """
    head = bytes(data[:64])
    if head[:2] in (b"P6", b"P3"):
        match = _PPM_HEADER.match(bytes(data))
        if match is None:
            raise DecodeError(f"{source}: corrupt or truncated PPM header")
        return "PPM", int(match.group(1)), int(match.group(2))
    if head.startswith(_PNG_MAGIC) and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", int(width), int(height)
    if not head.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise UnsupportedError(
            f"{source}: unsupported image format (first bytes {head[:8]!r}); "
            "send PNG, JPEG or PPM (P6/P3)"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(data)), formats=("PNG", "JPEG")) as im:
            return str(im.format), int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"{source}: corrupt or truncated image header: {exc}") from exc


def decode_image(
    data: bytes | bytearray | memoryview, *, max_pixels: int | None = None, source: str = "<upload>"
) -> ImageU8:
    """The pixels of :func:`decode`: ``uint8 (H, W, 3)`` RGB."""
    return decode(data, max_pixels=max_pixels, source=source).image


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Decoded:
    """Read and :func:`decode` the image file at ``path`` (errors name it). Files larger than
    ``get_limits()["max_file_bytes"]`` raise ResourceLimitError before they are read whole."""
    p = Path(path)
    limit = preprocess.get_limits()["max_file_bytes"]
    with file_errors("read the image", p), open(p, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ResourceLimitError(f"{p}: larger than the file limit of {limit} bytes")
    return decode(data, max_pixels=max_pixels, source=os.fspath(p))


# ---------------------------------------------------------------------------------------------
# Preparation


def preprocessing_params(
    preprocessing: Mapping[str, Any], source: str = "model card"
) -> tuple[tuple[int, int], Stats, Stats]:
    """``(size (h, w), mean, std)`` of a card's ``preprocessing`` section (``size`` an int or
    ``[h, w]``); ModelError naming ``source`` when they are malformed."""
    try:
        size = preprocessing["size"]
        h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mean = tuple(float(v) for v in preprocessing["mean"])
        std = tuple(float(v) for v in preprocessing["std"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{source}: bad preprocessing section: {exc!r}") from None
    if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std) or h < 1 or w < 1:
        raise ModelError(
            f"{source}: preprocessing needs a positive size and 3 mean/std values, std "
            f"non-zero: {dict(preprocessing)}"
        )
    return (h, w), (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


def prepare_image(
    image: ImageU8 | bytes | bytearray | memoryview,
    preprocessing: Mapping[str, Any],
    roi: Sequence[int] | None = None,
    *,
    max_pixels: int | None = None,
    source: str = "<upload>",
) -> PreparedImage:
    """:func:`prepare`, keeping the intermediate steps (resized pixels, original size, format)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        image, fmt = decode(image, max_pixels=max_pixels, source=source)
    else:
        fmt = "array"
    size, mean, std = preprocessing_params(preprocessing)
    try:
        small = preprocess.resize(image, size, roi=roi)
    except NeonsignError as exc:  # a ROI outside the image, a bad array
        raise type(exc)(f"{source}: {exc}") from exc
    x = preprocess.normalize(small, mean, std)
    return PreparedImage(x, small, int(image.shape[1]), int(image.shape[0]), fmt)


def prepare(
    image: ImageU8 | bytes | bytearray | memoryview,
    preprocessing: Mapping[str, Any],
    roi: Sequence[int] | None = None,
    *,
    max_pixels: int | None = None,
    source: str = "<upload>",
) -> ImageF32:
    """The engine's input for one image: float32 ``(3, H, W)``.

    Args:
        image: encoded bytes (PNG, JPEG, PPM; decoded with :func:`decode`) or an RGB
            ``uint8 (H, W, 3)`` array.
        preprocessing: a model card's ``preprocessing`` section (``size``, ``mean``, ``std``;
            :data:`neonsign.artifacts.DEFAULT_PREPROCESSING` is the learning path's).
        roi: optional inclusive ``(x1, y1, x2, y2)`` crop, applied before resizing; None
            resizes the whole image.

    Equal to ``preprocess.normalize(preprocess.resize(decode_image(data), size, roi=roi),
    mean, std)``: Pillow's BILINEAR resize and torchvision's ``ToTensor`` + ``Normalize``.
    """
    return prepare_image(image, preprocessing, roi, max_pixels=max_pixels, source=source).x


# ---------------------------------------------------------------------------------------------
# Regions of interest given as text (the server's ``roi`` field, ``neonsign predict --roi``)


class RoiError(NeonsignValueError):
    """A ROI given with an image is malformed or does not fit it (the server answers 422
    ``invalid_roi``; ``neonsign predict --roi`` reports it as an argument error)."""


def roi_from_values(values: Sequence[int], field: str) -> Roi:
    """``values`` as a ROI, or RoiError unless ``0 <= x1 <= x2`` and ``0 <= y1 <= y2``."""
    x1, y1, x2, y2 = values
    if min(x1, y1) < 0 or x2 < x1 or y2 < y1:
        raise RoiError(
            f"{field}: expected 0 <= x1 <= x2 and 0 <= y1 <= y2, got {x1},{y1},{x2},{y2}"
        )
    return (x1, y1, x2, y2)


def parse_roi(text: str | None, field: str = "roi") -> Roi | None:
    """The ROI form field of ``/predict``: ``x1,y1,x2,y2``, four integers, inclusive corners in
    the uploaded image's pixels (as in GTSRB's CSV files and ``neonsign predict --roi``).
    None for an absent or blank field: the whole image is used.

    Raises:
        RoiError: not four integers, negative, or ``x2 < x1`` / ``y2 < y1``.
    """
    if text is None or not text.strip():
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise RoiError(f"{field}: expected x1,y1,x2,y2 (four integers), got {text[:100]!r}")
    return roi_from_values(values, field)


def check_roi(roi: Roi, width: int, height: int) -> None:
    """RoiError unless ``roi`` (inclusive corners) lies inside a ``width x height`` image."""
    x1, y1, x2, y2 = roi
    if x2 >= width or y2 >= height:
        raise RoiError(
            f"roi {x1},{y1},{x2},{y2} does not fit the {width}x{height} image (corners are "
            f"inclusive: need x2 < {width} and y2 < {height})"
        )
