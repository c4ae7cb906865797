"""The fast PNG decoder (``neonsign.images._decode_png_fast``: zlib + the C row reconstruction)
against the Pillow path it short-cuts: same pixels for every PNG it takes, and for everything
else the Pillow path's answer (its pixels or its error), because it declines rather than
guesses.

PNGs are built here byte by byte, so every filter type (None, Sub, Up, Average, Paeth) and every
chunk layout is exercised, not just what Pillow's encoder happens to choose.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from neonsign import _native, images
from neonsign.errors import DecodeError, NeonsignValueError, ResourceLimitError

MAGIC = b"\x89PNG\r\n\x1a\n"
COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind)) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def ihdr(w: int, h: int, colour: int, depth: int = 8, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace))


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filtered(pixels: np.ndarray, filters: list[int]) -> bytes:
    """The PNG scanlines of ``pixels`` (H, W, C uint8), row y filtered with ``filters[y]``
    (the encoder side of the PNG specification's section 9, written out plainly)."""
    h, w, c = pixels.shape
    rows = pixels.reshape(h, w * c).astype(np.int64)
    out = bytearray()
    for y in range(h):
        cur = rows[y]
        prev = rows[y - 1] if y else np.zeros_like(cur)
        left = np.concatenate([np.zeros(c, np.int64), cur[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int64), prev[:-c]])
        kind = filters[y]
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            pred = np.array([paeth(*v) for v in zip(left, prev, upleft, strict=True)])
        out.append(kind)
        out += ((cur - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def make_png(
    pixels: np.ndarray,
    filters: list[int] | None = None,
    idat_parts: int = 1,
    extra: bytes = b"",
    rows: bytes | None = None,
) -> bytes:
    h, w, c = pixels.shape
    filters = filters if filters is not None else [y % 5 for y in range(h)]
    data = zlib.compress(rows if rows is not None else filtered(pixels, filters), 6)
    cuts = np.linspace(0, len(data), idat_parts + 1).astype(int)
    idats = b"".join(chunk(b"IDAT", data[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    return MAGIC + ihdr(w, h, COLOUR[c]) + extra + idats + chunk(b"IEND", b"")


def pillow(data: bytes) -> images.Decoded:
    return images._decode_pillow(data, 1 << 30, "test")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (32, 32), (3, 67)])
def test_every_filter_and_mode_matches_pillow(channels: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(channels * 100 + shape[0])
    pixels = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    if channels in (2, 4):  # opaque, transparent and everything between
        pixels[..., -1].flat[:3] = [0, 255, 128][: pixels[..., -1].size]
    for filters in ([y % 5 for y in range(shape[0])], [4] * shape[0], [3] * shape[0]):
        data = make_png(pixels, filters)
        fast = images._decode_png_fast(data, 1 << 30, "test")
        assert fast is not None
        assert fast.format == "PNG"
        np.testing.assert_array_equal(fast.image, pillow(data).image)
        np.testing.assert_array_equal(images.decode(data).image, fast.image)


def test_pillow_encoded_pngs_and_ancillary_chunks() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for mode in ("RGB", "RGBA", "L", "LA"):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, "PNG", optimize=True)
        fast = images._decode_png_fast(buf.getvalue(), 1 << 30, "test")
        assert fast is not None, mode
        np.testing.assert_array_equal(fast.image, pillow(buf.getvalue()).image)
    # gAMA / tEXt before the data, split IDAT, and data after IEND
    extra = chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"tEXt", b"k\x00v")
    data = make_png(rgb, idat_parts=4, extra=extra) + b"trailing bytes"
    fast = images._decode_png_fast(data, 1 << 30, "test")
    assert fast is not None
    np.testing.assert_array_equal(fast.image, pillow(data).image)


def test_declines_what_it_does_not_read() -> None:
    """Palette, tRNS, 16-bit, interlaced, bad CRCs, short or long streams: None, and
    :func:`images.decode` then answers as Pillow does."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    good = make_png(rgb)
    cases = {}
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(buf, "PNG")
    cases["P"] = buf.getvalue()
    buf = io.BytesIO()  # 16-bit grey (from an array: Pillow 9 cannot convert RGB to I;16)
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(buf, "PNG")
    cases["I;16"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", transparency=(1, 2, 3))
    cases["tRNS"] = buf.getvalue()
    idat = chunk(b"IDAT", zlib.compress(filtered(rgb, [0] * 8)))
    cases["interlaced"] = MAGIC + ihdr(8, 8, 2, interlace=1) + idat + chunk(b"IEND", b"")
    cases["16-bit RGB"] = MAGIC + ihdr(4, 8, 2, depth=16) + idat + chunk(b"IEND", b"")
    head = len(MAGIC) + 25
    cases["bad IDAT CRC"] = good[: head + 8] + bytes([good[head + 8] ^ 1]) + good[head + 9 :]
    cases["overlong"] = make_png(rgb, rows=filtered(rgb, [0] * 8) + b"\x00" * 25)
    cases["bad filter type"] = make_png(rgb, rows=b"\x07" + filtered(rgb, [0] * 8)[1:])
    for name, data in cases.items():
        assert images._decode_png_fast(data, 1 << 30, "test") is None, name
        try:
            expected = pillow(data).image
        except DecodeError as exc:
            with pytest.raises(DecodeError, match="corrupt or truncated") as got:
                images.decode(data)
            assert str(got.value) == str(exc).replace("test:", "<upload>:"), name
        else:
            np.testing.assert_array_equal(images.decode(data).image, expected, err_msg=name)


def test_truncated_and_corrupt_streams_are_decode_errors() -> None:
    rng = np.random.default_rng(3)
    data = make_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for cut in (len(MAGIC) + 10, len(MAGIC) + 40, len(data) - 30):  # in IHDR, in IDAT
        with pytest.raises(DecodeError):
            images.decode(data[:cut])
    # without its IEND chunk: Pillow still decodes it, and so does decode() (through Pillow)
    assert images._decode_png_fast(data[:-12], 1 << 30, "test") is None
    np.testing.assert_array_equal(images.decode(data[:-12]).image, images.decode(data).image)
    garbage = MAGIC + ihdr(16, 16, 2) + chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b"")
    with pytest.raises(DecodeError):
        images.decode(garbage)


def test_pixel_limit_is_checked_before_inflating() -> None:
    """A tiny PNG that declares 30000x30000 is refused from its header (nothing inflated)."""
    bomb = MAGIC + ihdr(30000, 30000, 2) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(ResourceLimitError, match="30000x30000"):
        images.decode(bomb, max_pixels=1 << 20)
    small = make_png(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ResourceLimitError, match="20x20 = 400 pixels exceeds the limit of 399"):
        images.decode(small, max_pixels=399)


def test_native_row_reconstruction_rejects_bad_arguments() -> None:
    with pytest.raises(NeonsignValueError):
        _native.png_unfilter(b"\x00" * 10, 3, 3, 1)  # 12 bytes expected
    with pytest.raises(NeonsignValueError):
        _native.png_unfilter(b"", 1, 1, 5)
    with pytest.raises(DecodeError, match="row 1 has filter type 9"):
        _native.png_unfilter(b"\x00\x01\x09\x02", 1, 2, 1)
