"""Property tests (Hypothesis) of the C core through the public API.

* any bytes given to the PPM and CSV entry points either decode or raise one of neonsign's
  errors (DecodeError / AnnotationError / ResourceLimitError), never anything else;
* generated valid PPMs (P6/P3, maxval 255) decode to the same pixels as Pillow;
* resize of random images and ROIs equals Pillow's crop + resize(BILINEAR) (exactly on
  Pillow >= 13, within 1 otherwise, as tests/test_resize.py establishes);
* the engine is bit-identical for any thread count (documented in csrc/core/net.h) and
  invariant to batch splitting within 1e-5 (the documented last-bits difference across batch
  sizes);
* load_images gives identical arrays for any thread count.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import neonsign
from engine_reference import random_state_dict
from neonsign import errors
from neonsign import preprocess as pp
from neonsign.engine import Engine, available_kernels
from pillow_ref import assert_matches_pillow

# Fewer examples under the sanitizer build (tools/sanitize.sh), which runs ~10x slower.
SCALE = 0.2 if os.environ.get("NEONSIGN_SANITIZE") else 1.0


def examples(n: int) -> int:
    return max(10, int(n * SCALE))


NEONSIGN_ERRORS = (errors.DecodeError, errors.AnnotationError, errors.ResourceLimitError)

# ---------------------------------------------------------------------------------------------
# Any bytes -> result or a neonsign error


@st.composite
def ppm_like(draw: st.DrawFn) -> bytes:
    """Bytes near the PPM grammar: a valid-looking header with random fields, then noise."""
    magic = draw(st.sampled_from([b"P6", b"P3", b"P5", b"P", b""]))
    sep = draw(st.sampled_from([b" ", b"\n", b"\r\n", b"\t", b" # c\n", b""]))
    fields = draw(
        st.lists(
            st.one_of(
                st.integers(0, 70000).map(lambda v: str(v).encode()),
                st.sampled_from([b"-1", b"99999999999999999999", b"0x10", b"+3"]),
            ),
            min_size=0,
            max_size=3,
        )
    )
    tail = draw(st.binary(max_size=300))
    return magic + sep + sep.join(fields) + draw(st.sampled_from([b"\n", b" ", b""])) + tail


@settings(max_examples=examples(500), deadline=None)
@given(st.one_of(st.binary(max_size=400), ppm_like()))
def test_ppm_any_bytes_decode_or_neonsign_error(data: bytes) -> None:
    try:
        out = pp.decode_ppm(data)
    except NEONSIGN_ERRORS as e:
        assert str(e)  # a message saying why
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous


@st.composite
def csv_like(draw: st.DrawFn) -> bytes:
    head = draw(
        st.sampled_from(
            [
                "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId",
                "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2",
                "\ufeffFilename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId",
                "",
            ]
        )
    )
    cell = st.one_of(
        st.integers(-3, 70).map(str),
        st.sampled_from(["a.ppm", "", "x/y.ppm", "1e3", " 5"]),
        st.text(max_size=5),
    )
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=9).map(";".join), max_size=5))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (eol.join([head, *rows]) + draw(st.sampled_from(["", eol, eol * 2]))).encode(
        "utf-8", "surrogatepass"
    )


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), csv_like()))
def test_csv_any_bytes_parse_or_neonsign_error(data: bytes) -> None:
    try:
        rows = pp.parse_annotations(data, "prop.csv")
    except NEONSIGN_ERRORS as e:
        assert "prop.csv" in str(e)  # names the source
        return
    for r in rows:
        x1, y1, x2, y2 = r.roi
        assert 0 <= x1 <= x2 < r.width and 0 <= y1 <= y2 < r.height
        assert r.filename and "/" not in r.filename


@settings(max_examples=examples(300), deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"P6\n", b"P3 "]).flatmap(
            lambda head: st.binary(max_size=300).map(lambda tail: head + tail)
        ),
    )
)
def test_upload_decoder_any_bytes(data: bytes) -> None:
    """The server's upload decoder (PNG/JPEG via Pillow, PPM via the C core)."""
    serve = pytest.importorskip("neonsign.app.serving")
    try:
        img, fmt = serve.decode_image(data, 1 << 16)
    except (*NEONSIGN_ERRORS, errors.UnsupportedError) as e:
        assert str(e)
        return
    assert fmt in ("PNG", "JPEG", "PPM") and img.dtype == np.uint8 and img.shape[2] == 3


# ---------------------------------------------------------------------------------------------
# Valid PPMs decode like Pillow


@settings(max_examples=examples(150), deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.booleans(), st.data())
def test_valid_ppm_matches_pillow(w: int, h: int, plain: bool, data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if plain:
        body = " ".join(map(str, img.ravel().tolist())).encode()
        raw = b"P3\n%d %d\n255\n" % (w, h) + body + b"\n"
    else:
        raw = b"P6\n%d %d\n255\n" % (w, h) + img.tobytes()
    ours = pp.decode_ppm(raw)
    ref = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(ours, img)


# ---------------------------------------------------------------------------------------------
# Resize vs Pillow


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(1, 120),
    st.integers(1, 120),
    st.integers(1, 120),
    st.integers(1, 120),
    st.booleans(),
    st.data(),
)
def test_resize_matches_pillow(
    h: int, w: int, oh: int, ow: int, crop: bool, data: st.DataObject
) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    roi = None
    im = Image.fromarray(img)
    if crop:
        x1 = data.draw(st.integers(0, w - 1))
        x2 = data.draw(st.integers(x1, w - 1))
        y1 = data.draw(st.integers(0, h - 1))
        y2 = data.draw(st.integers(y1, h - 1))
        roi = (x1, y1, x2, y2)
        im = im.crop((x1, y1, x2 + 1, y2 + 1))
    ref = np.asarray(im.resize((ow, oh), Image.BILINEAR))
    ours = pp.resize(img, (oh, ow), roi=roi)
    assert_matches_pillow(ours, ref)


# ---------------------------------------------------------------------------------------------
# Engine invariances


@pytest.fixture(scope="module", autouse=True)
def pool_of_six():
    """A pool larger than the machine's core count, so that thread counts up to 6 really run."""
    before = neonsign.get_threads()
    neonsign.set_threads(6)
    yield
    neonsign.set_threads(before)


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    sd = random_state_dict(3)
    return {k: Engine(sd, kernel=k) for k in available_kernels()}


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.data())
def test_engine_thread_count_and_batch_split(
    engines: dict[str, Engine], n: int, seed: int, data: st.DataObject
) -> None:
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)
    k = data.draw(st.integers(1, n)) if n > 1 else 1
    for name, eng in engines.items():
        eng.threads = 1
        one = eng.predict(x)
        eng.threads = data.draw(st.integers(2, 6), label=f"threads {name}")
        many = eng.predict(x)
        eng.threads = None
        # bit-identical for any thread count (csrc/core/net.h)
        np.testing.assert_array_equal(
            one, many, err_msg=f"kernel {name}: thread count changed bits"
        )
        split = (
            np.concatenate([eng.predict(x[:k]), eng.predict(x[k:])]) if k < n else eng.predict(x)
        )
        np.testing.assert_allclose(
            split, one, rtol=0, atol=1e-5, err_msg=f"kernel {name}: split at {k}"
        )


# ---------------------------------------------------------------------------------------------
# load_images thread invariance


@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uint8", "float32"]),
    st.integers(2, 6),
    st.booleans(),
)
def test_load_images_thread_invariant(
    tmp_path_factory: pytest.TempPathFactory,
    shapes: list,
    seed: int,
    dtype: str,
    threads: int,
    corrupt: bool,
) -> None:
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(seed)
    paths, rois = [], []
    for i, (h, w) in enumerate(shapes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = d / f"{i}.ppm"
        raw = b"P6\n%d %d\n255\n" % (w, h) + img.tobytes()
        if corrupt and i == len(shapes) - 1:
            raw = raw[: len(raw) // 2]  # truncated: must fail the same way on any thread count
        p.write_bytes(raw)
        paths.append(p)
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        rois.append([x1, y1, int(rng.integers(x1, w)), int(rng.integers(y1, h))])
    rois_arr = np.array(rois, dtype=np.int64)
    a = pp.load_images(paths, rois=rois_arr, size=(17, 23), dtype=dtype, threads=1, skip_bad=True)
    b = pp.load_images(
        paths, rois=rois_arr, size=(17, 23), dtype=dtype, threads=threads, skip_bad=True
    )
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.ok, b.ok)
    assert a.errors == b.errors
    assert bool(a.ok[-1]) != corrupt
