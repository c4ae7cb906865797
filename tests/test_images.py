"""The one image-preparation path (neonsign.images): every PNG/JPEG/PPM mode decodes to the
picture a user sees, and preparation equals Pillow's convert + our resize + normalise, the
server's path included."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from neonsign import images, preprocess
from neonsign.artifacts import DEFAULT_PREPROCESSING
from neonsign.errors import DecodeError, ModelError, ResourceLimitError, UnsupportedError
from serve_helpers import encode, make_model_dir, sign_like_images


def _png(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return sign_like_images(1, seed=7)[0]


@pytest.mark.parametrize("fmt", ["PNG", "PPM"])
def test_lossless_formats_decode_exactly(rgb: np.ndarray, fmt: str) -> None:
    got = images.decode(encode(rgb, fmt))
    assert got.format == fmt and np.array_equal(got.image, rgb)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1", "CMYK", "YCbCr"])
def test_modes_without_alpha_match_pillow_convert(rgb: np.ndarray, mode: str) -> None:
    """Modes without transparency decode as Pillow's convert("RGB") (JPEG for CMYK/YCbCr)."""
    im = Image.fromarray(rgb).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    data = buf.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(images.decode_image(data), expected)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_grey_scales_to_its_eight_bit_version(rgb: np.ndarray, mode: str) -> None:
    grey8 = np.asarray(Image.fromarray(rgb).convert("L"))
    wide = grey8.astype(np.uint16) * 257  # the same picture on 16 bits
    expected = np.repeat(grey8[..., None], 3, axis=2)
    if mode == "I":  # how older Pillow opens 16-bit PNGs; Pillow cannot write it as PNG
        im = Image.fromarray(wide.astype(np.int32))
        assert im.mode == "I" and np.array_equal(images._pil_rgb(im), expected)
        return
    raw = wide.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    data = _png(Image.frombytes(mode, grey8.shape[::-1], raw))
    decoded = images.decode_image(data)
    assert np.array_equal(decoded, expected)
    assert np.array_equal(decoded, images.decode_image(_png(Image.fromarray(grey8))))
    # Pillow's own conversion clips these to white: the bug this replaces
    assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).min() == 255


def test_alpha_is_composited_on_white(rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2 :] = 255
    alpha[0, 0] = 128
    rgba = np.dstack([rgb, alpha])
    got = images.decode_image(_png(Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(got[:, w // 2 :], rgb[:, w // 2 :])  # opaque: unchanged
    assert (got[1:, : w // 2] == 255).all()  # transparent: white
    expected = (rgb[0, 0].astype(np.uint32) * 128 + 255 * 127 + 127) // 255
    assert np.array_equal(got[0, 0], expected)
    la = Image.fromarray(rgba, "RGBA").convert("LA")
    assert (images.decode_image(_png(la))[1:, : w // 2] == 255).all()


def test_palette_and_grey_transparency_is_white(rgb: np.ndarray) -> None:
    p = Image.fromarray(rgb).convert("P")
    index = int(np.asarray(p)[0, 0])
    got = images.decode_image(_png(p, transparency=index))
    assert (got[np.asarray(p) == index] == 255).all()
    grey = Image.fromarray(rgb).convert("L")
    level = int(np.asarray(grey)[0, 0])
    got = images.decode_image(_png(grey, transparency=level))
    assert (got[np.asarray(grey) == level] == 255).all()


def test_bad_inputs_are_named() -> None:
    png = encode(sign_like_images(1)[0], "PNG")
    with pytest.raises(UnsupportedError, match="x.gif: unsupported"):
        images.decode(b"GIF89a....", source="x.gif")
    with pytest.raises(DecodeError, match="half.png"):
        images.decode(png[: len(png) // 2], source="half.png")
    with pytest.raises(DecodeError, match="bad.ppm"):
        images.decode(b"P6\n4 4\n255\n" + b"\0" * 10, source="bad.ppm")
    with pytest.raises(ResourceLimitError, match="pixels"):
        images.decode(png, max_pixels=100)
    with pytest.raises(ModelError, match="preprocessing"):
        images.prepare(png, {"size": 32})


def test_read_image_names_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        images.read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("roi", [None, (3, 2, 15, 17)])
def test_prepare_equals_pillow_convert_and_our_resize(roi) -> None:
    """prepare(bytes) == normalise(resize(Pillow's RGB)), and the ROI crops like Pillow's."""
    rgb = sign_like_images(1, seed=11)[0]
    for fmt in ("PNG", "JPEG", "PPM"):
        data = encode(rgb, fmt)
        pil = Image.open(io.BytesIO(data)).convert("RGB")
        if roi is not None:
            x1, y1, x2, y2 = roi
            pil = pil.crop((x1, y1, x2 + 1, y2 + 1))
        small = np.asarray(pil.resize((32, 32), Image.BILINEAR))
        expected = preprocess.normalize(
            small, DEFAULT_PREPROCESSING["mean"], DEFAULT_PREPROCESSING["std"]
        )
        got = images.prepare(data, DEFAULT_PREPROCESSING, roi)
        assert got.dtype == np.float32 and got.shape == (3, 32, 32)
        assert np.array_equal(got, expected), fmt


def test_prepare_same_for_bytes_and_array() -> None:
    rgb = sign_like_images(1, seed=5)[0]
    a = images.prepare(encode(rgb, "PNG"), DEFAULT_PREPROCESSING)
    b = images.prepare(rgb, DEFAULT_PREPROCESSING)
    assert np.array_equal(a, b)
    prep = images.prepare_image(rgb, DEFAULT_PREPROCESSING)
    assert (prep.width, prep.height, prep.format) == (rgb.shape[1], rgb.shape[0], "array")


def test_server_prepare_is_the_library_path(tmp_path) -> None:
    from neonsign.app.serving import LoadedModel
    from neonsign.app.serving.inference import prepare

    model = LoadedModel.load(str(make_model_dir(tmp_path / "m", seed=3)))
    data = encode(sign_like_images(1, seed=9)[0], "JPEG")
    served = prepare(data, model, 10**6)
    assert np.array_equal(served.x, images.prepare(data, model.card["preprocessing"]))
    assert served.fmt == "JPEG"


def test_sixteen_bit_png_upload_classifies_as_its_eight_bit_version(tmp_path) -> None:
    """The issue's bug: a 16-bit greyscale PNG was decoded as solid white by the server."""
    from neonsign.app.serving import Inference, LoadedModel
    from neonsign.engine import Engine

    model_dir = make_model_dir(tmp_path / "m", seed=2)
    grey8 = np.asarray(Image.fromarray(sign_like_images(1, seed=4)[0]).convert("L"))
    png8 = _png(Image.fromarray(grey8))
    wide = (grey8.astype(np.uint16) * 257).astype("<u2")
    png16 = _png(Image.frombytes("I;16", grey8.shape[::-1], wide.tobytes()))
    engine = Engine.from_file(model_dir)
    lib = [engine.predict(images.prepare(d, DEFAULT_PREPROCESSING)) for d in (png8, png16)]
    assert np.array_equal(lib[0], lib[1])
    inference = Inference(max_pixels=10**6, max_batch=4, threads=1)
    try:
        model = LoadedModel.load(str(model_dir))
        a, b = inference.run_batch([png8, png16], model)
    finally:
        inference.close()
    assert a["predicted_class"] == b["predicted_class"] == int(np.argmax(lib[0]))
    assert a["top5"] == b["top5"]
