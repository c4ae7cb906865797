"""PPM decoding: P6/P3, 8/16-bit, comments, against Pillow's decoder, and every bad-input class."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from neonsign import errors
from neonsign import preprocess as pp


def p6(img: np.ndarray, maxval: int = 255, header_extra: bytes = b"") -> bytes:
    h, w, _ = img.shape
    if maxval > 255:
        body = img.astype(">u2").tobytes()
    else:
        body = img.astype(np.uint8).tobytes()
    return b"P6" + header_extra + b"\n%d %d\n%d\n" % (w, h, maxval) + body


def p3(img: np.ndarray, maxval: int = 255) -> bytes:
    h, w, _ = img.shape
    body = "\n".join(" ".join(str(int(v)) for v in row.ravel()) for row in img)
    return b"P3\n%d %d\n%d\n" % (w, h, maxval) + body.encode() + b"\n"


def pillow_decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


rng = np.random.default_rng(1234)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (15, 17), (64, 48)])
def test_p6_8bit_matches_pillow(shape):
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = p6(img)
    out = pp.decode_ppm(data)
    assert out.dtype == np.uint8 and out.shape == (*shape, 3)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(out, pillow_decode(data))


def test_p3_matches_pillow():
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    data = p3(img)
    np.testing.assert_array_equal(pp.decode_ppm(data), img)
    np.testing.assert_array_equal(pp.decode_ppm(data), pillow_decode(data))


@pytest.mark.parametrize("maxval", [1, 2, 6, 15, 100, 254, 256, 1000, 4095, 65535])
def test_maxval_scaling(maxval):
    img = rng.integers(0, maxval + 1, (6, 8, 3)).astype(np.int64)
    expected = (img * 510 + maxval) // (2 * maxval)  # round(v * 255 / maxval), halves up
    for data in (p6(img, maxval), p3(img, maxval)):
        out = pp.decode_ppm(data)
        np.testing.assert_array_equal(out, expected)
    # Pillow rounds halves to even (and in floating point): within 1 of ours.
    ref = pillow_decode(p6(img, maxval)).astype(int)
    assert np.abs(ref - pp.decode_ppm(p6(img, maxval))).max() <= 1


def test_16bit_full_range_endpoints():
    img = np.array([[[0, 65535, 32768]]])
    np.testing.assert_array_equal(pp.decode_ppm(p6(img, 65535)), [[[0, 255, 128]]])


def test_comments_everywhere_in_header():
    img = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    data = b"P6\n# comment 1\n4 #c2\n #c3\n3\n# comment 4\n255\n" + img.tobytes()
    np.testing.assert_array_equal(pp.decode_ppm(data), img)
    np.testing.assert_array_equal(pillow_decode(data), img)
    # netpbm also allows a comment right after a token
    data = b"P6#c0\n4#c1\n3#c2\n255\n" + img.tobytes()
    np.testing.assert_array_equal(pp.decode_ppm(data), img)


def test_p3_comments_in_data_and_crlf():
    data = b"P3\r\n2 1\r\n255\r\n1 2 3 # first pixel\r\n4 5\r\n6\r\n"
    np.testing.assert_array_equal(pp.decode_ppm(data), [[[1, 2, 3], [4, 5, 6]]])


def test_p6_exactly_one_whitespace_after_maxval():
    # the raster starts with a byte that looks like whitespace: it must be read as data
    img = np.full((1, 2, 3), 10, dtype=np.uint8)
    data = b"P6 2 1 255\n" + img.tobytes()
    np.testing.assert_array_equal(pp.decode_ppm(data), img)
    data = b"P6 1 1 255 \n\n\n"
    np.testing.assert_array_equal(pp.decode_ppm(data), [[[10, 10, 10]]])


def test_trailing_bytes_ignored():
    img = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.decode_ppm(p6(img) + b"extra"), img)


def test_accepts_bytearray_and_memoryview():
    img = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    data = p6(img)
    np.testing.assert_array_equal(pp.decode_ppm(bytearray(data)), img)
    np.testing.assert_array_equal(pp.decode_ppm(memoryview(data)), img)


BAD = {
    "empty": (b"", "empty"),
    "bad magic": (b"P5\n1 1\n255\n\0", "magic"),
    "png": (b"\x89PNG\r\n\x1a\n", "magic"),
    "magic only": (b"P6", "missing width"),
    "magic glued": (b"P61 1 255\n\0\0\0", "whitespace"),
    "zero width": (b"P6\n0 5\n255\n", "zero"),
    "zero height": (b"P6\n5 0\n255\n", "zero"),
    "negative": (b"P6\n-1 5\n255\n", "width"),
    "huge dim": (b"P6\n99999999999999999999 1\n255\n", "too large"),
    "non-digit width": (b"P6\n1x 1\n255\n", "width"),
    "non-digit height": (b"P6\n1 abc\n255\n", "height"),
    "maxval zero": (b"P6\n1 1\n0\n\0\0\0", "maxval"),
    "maxval big": (b"P6\n1 1\n65536\n\0\0\0", "maxval"),
    "maxval missing": (b"P6\n1 1\n", "maxval"),
    "no data": (b"P6\n1 1\n255", "no pixel data"),
    "truncated p6": (b"P6\n2 2\n255\n" + b"\0" * 11, "truncated"),
    "truncated p6 16": (b"P6\n1 1\n65535\n" + b"\0" * 5, "truncated"),
    "truncated p3": (b"P3\n2 1\n255\n1 2 3 4 5\n", "truncated"),
    "p3 over maxval": (b"P3\n1 1\n100\n1 2 101\n", "exceeds maxval"),
    "p3 garbage": (b"P3\n1 1\n255\n1 x 3\n", "sample"),
    "p6 over maxval": (b"P6\n1 1\n100\n" + bytes([1, 2, 200]), "exceeds maxval"),
    "p6 16 over maxval": (b"P6\n1 1\n300\n" + bytes([0, 1, 0, 2, 1, 45]), "exceeds maxval"),
    "garbage": (bytes(range(256)), "magic"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_raise_decode_error(name):
    data, fragment = BAD[name]
    with pytest.raises(errors.DecodeError) as info:
        pp.decode_ppm(data)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_pixel_limit_is_a_resource_error_before_allocating():
    data = b"P6\n100000 100000\n255\n"  # 30 GB if it were allocated
    with pytest.raises(errors.ResourceLimitError, match="limit"):
        pp.decode_ppm(data)
    previous = pp.set_limits(max_pixels=15)
    try:
        with pytest.raises(errors.ResourceLimitError):
            pp.decode_ppm(p6(np.zeros((4, 4, 3), np.uint8)))
        pp.decode_ppm(p6(np.zeros((3, 5, 3), np.uint8)))
    finally:
        pp.set_limits(**previous)


def test_set_limits_rejects_bad_values():
    with pytest.raises(errors.NeonsignValueError):
        pp.set_limits(max_pixels=0)
    with pytest.raises(errors.NeonsignValueError):
        pp.set_limits(max_file_bytes=-3)


def test_read_ppm_names_the_path(tmp_path):
    good = tmp_path / "good.ppm"
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    good.write_bytes(p6(img))
    np.testing.assert_array_equal(pp.read_ppm(good), img)
    np.testing.assert_array_equal(pp.read_ppm(str(good)), img)
    bad = tmp_path / "bad.ppm"
    bad.write_bytes(b"P6\n5 5\n255\n\0")
    with pytest.raises(errors.DecodeError, match="bad.ppm.*truncated"):
        pp.read_ppm(bad)
    with pytest.raises(FileNotFoundError, match="missing.ppm") as info:
        pp.read_ppm(tmp_path / "missing.ppm")
    assert isinstance(info.value, errors.NeonsignFileNotFoundError)
    with pytest.raises(IsADirectoryError) as info:
        pp.read_ppm(tmp_path)
    assert isinstance(info.value, errors.NeonsignIsADirectoryError)


def test_read_ppm_file_size_limit(tmp_path):
    f = tmp_path / "big.ppm"
    f.write_bytes(p6(np.zeros((10, 10, 3), np.uint8)))
    previous = pp.set_limits(max_file_bytes=100)
    try:
        with pytest.raises(errors.ResourceLimitError, match="big.ppm"):
            pp.read_ppm(f)
    finally:
        pp.set_limits(**previous)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise(data):
    try:
        out = pp.decode_ppm(data)
    except errors.DecodeError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"P6 ", b"P3 ", b"P6\n2 2\n", b"P3\n2 1\n255\n", b"P6\n1 1\n65535\n"]),
    st.binary(max_size=60),
)
def test_random_tails_decode_or_raise(head, tail):
    try:
        out = pp.decode_ppm(head + tail)
    except (errors.DecodeError, errors.ResourceLimitError):
        return
    assert out.dtype == np.uint8 and out.shape[2] == 3
