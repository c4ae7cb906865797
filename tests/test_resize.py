"""Resize: equal to Pillow's Image.resize(BILINEAR) (and crop-then-resize for ROIs)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from neonsign import errors
from neonsign import preprocess as pp
from pillow_ref import PILLOW_EXACT, assert_matches_pillow
from support import needs_subprocess

rng = np.random.default_rng(42)


def pillow_resize(img: np.ndarray, h: int, w: int, roi=None) -> np.ndarray:
    im = Image.fromarray(img)
    if roi is not None:
        x1, y1, x2, y2 = roi
        im = im.crop((x1, y1, x2 + 1, y2 + 1))
    return np.asarray(im.resize((w, h), Image.BILINEAR))


def check(img, h, w, roi=None):
    ours = pp.resize(img, (h, w), roi=roi)
    ref = pillow_resize(img, h, w, roi)
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - ref.astype(int)).max()
    # Pillow >= 13 is matched exactly; the contract allows 1/255.
    assert diff <= 1, (img.shape, h, w, roi, diff)
    return diff


SIZES = [1, 2, 3, 5, 15, 31, 32, 33, 64, 100, 250, 300]


@pytest.mark.parametrize("src", [1, 2, 15, 32, 49, 250, 300])
def test_square_sizes_up_and_down(src):
    img = rng.integers(0, 256, (src, src, 3), dtype=np.uint8)
    diffs = [check(img, d, d) for d in SIZES]
    assert max(diffs) == 0 or not PILLOW_EXACT


def test_random_shapes_and_aspect_ratios():
    exact = 0
    n = 300
    for _ in range(n):
        h, w = rng.integers(1, 301, 2)
        oh, ow = rng.integers(1, 301, 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        exact += check(img, int(oh), int(ow)) == 0
    assert exact == n or not PILLOW_EXACT


def test_extreme_aspect_ratios():
    for shape, out in [
        ((1, 300), (32, 32)),
        ((300, 1), (7, 90)),
        ((3, 250), (250, 3)),
        ((2, 2), (1, 300)),
    ]:
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        assert check(img, *out) == 0 or not PILLOW_EXACT


def test_smooth_image_natural_content():
    y, x = np.mgrid[0:97, 0:131]
    img = np.stack([(x * 2) % 256, (y * 3) % 256, (x + y) % 256], -1).astype(np.uint8)
    for out in [(32, 32), (200, 40), (13, 260)]:
        assert check(img, *out) == 0 or not PILLOW_EXACT


def test_roi_matches_crop_then_resize():
    for _ in range(150):
        h, w = rng.integers(1, 120, 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x1, x2 = sorted(rng.integers(0, w, 2))
        y1, y2 = sorted(rng.integers(0, h, 2))
        oh, ow = rng.integers(1, 70, 2)
        assert (
            check(img, int(oh), int(ow), (int(x1), int(y1), int(x2), int(y2))) == 0
            or not PILLOW_EXACT
        )


def test_identity_and_int_size():
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.resize(img, 32), img)
    assert_matches_pillow(pp.resize(img, (16, 16)), pillow_resize(img, 16, 16))


def test_non_contiguous_input_is_accepted():
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = img[::2, 1::3]
    assert_matches_pillow(pp.resize(view, (9, 7)), pillow_resize(np.ascontiguousarray(view), 9, 7))


@pytest.mark.parametrize(
    "image,size,roi,exc",
    [
        (np.zeros((4, 4, 3), np.float32), 2, None, errors.NeonsignValueError),
        (np.zeros((4, 4), np.uint8), 2, None, errors.NeonsignValueError),
        (np.zeros((4, 4, 4), np.uint8), 2, None, errors.NeonsignValueError),
        (np.zeros((0, 4, 3), np.uint8), 2, None, errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), 0, None, errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), (2, -1), None, errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), "big", None, errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), 2, (0, 0, 4, 3), errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), 2, (2, 0, 1, 3), errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), 2, (-1, 0, 1, 3), errors.NeonsignValueError),
        (np.zeros((4, 4, 3), np.uint8), 2, (0, 0, 1), errors.NeonsignValueError),
        ([[1, 2, 3]], 2, None, errors.NeonsignTypeError),
    ],
)
def test_bad_arguments(image, size, roi, exc):
    with pytest.raises(exc):
        pp.resize(image, size, roi=roi)


def test_huge_output_refused_before_allocating():
    with pytest.raises(errors.ResourceLimitError, match="output size"):
        pp.resize(np.zeros((2, 2, 3), np.uint8), (1 << 25, 1 << 25))
    with pytest.raises(errors.ResourceLimitError, match="output size"):
        pp.load_images([], size=1 << 14)


def test_normalize_matches_torchvision_arithmetic():
    imgs = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = pp.normalize(imgs, mean, std)
    # ToTensor: float32(v) / 255; Normalize: (x - mean) / std, all in float32
    x = imgs.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    ref = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[
        :, None, None
    ]
    assert out.dtype == np.float32 and out.shape == (3, 3, 5, 7)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(pp.normalize(imgs[0], mean, std), ref[0])


def test_normalize_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    imgs = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    t = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255)
    m = torch.tensor([0.5, 0.5, 0.5])[:, None, None]
    s = torch.tensor([0.5, 0.5, 0.5])[:, None, None]
    ref = t.sub(m).div(s).numpy()
    np.testing.assert_array_equal(pp.normalize(imgs), ref)


def test_normalize_bad_arguments():
    imgs = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(errors.NeonsignValueError):
        pp.normalize(imgs, std=(0.5, 0.0, 0.5))
    with pytest.raises(errors.NeonsignValueError):
        pp.normalize(imgs, mean=(0.5, 0.5))
    with pytest.raises(errors.NeonsignValueError):
        pp.normalize(imgs.astype(np.float32))


def test_preprocess_image_array_and_bytes():
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    ppm = b"P6\n50 40\n255\n" + img.tobytes()
    roi = (3, 4, 45, 37)
    ref8 = pillow_resize(img, 32, 32, roi)
    for src in (img, ppm):
        ours8 = pp.preprocess_image(src, roi=roi, dtype="uint8")
        assert_matches_pillow(ours8, ref8)
        out = pp.preprocess_image(src, roi=roi)
        assert out.shape == (3, 32, 32) and out.dtype == np.float32
        np.testing.assert_array_equal(out, pp.normalize(ours8))
    with pytest.raises(errors.NeonsignValueError):
        pp.preprocess_image(img, dtype="float64")
    with pytest.raises(errors.DecodeError):
        pp.preprocess_image(b"not a ppm")


def test_large_downscale_matches_pillow_and_extreme_is_refused():
    img = rng.integers(0, 256, (3, 5000, 3), dtype=np.uint8)
    assert check(img, 1, 1) == 0 or not PILLOW_EXACT
    assert check(img, 2, 3) == 0 or not PILLOW_EXACT
    with pytest.raises(errors.ResourceLimitError, match="downscale"):
        pp.resize(np.zeros((1, 20000, 3), np.uint8), (1, 1))


@needs_subprocess
def test_portable_transpose_gives_identical_results():
    """NEONSIGN_KERNEL=ref switches the SIMD transposes off: the output must not change."""
    code = (
        "import numpy as np, hashlib, neonsign._native as n\n"
        "from neonsign import preprocess as pp\n"
        "rng = np.random.default_rng(5); h = hashlib.sha256()\n"
        "for _ in range(200):\n"
        "    a = rng.integers(0, 256, tuple(rng.integers(1, 90, 2)) + (3,), dtype=np.uint8)\n"
        "    h.update(pp.resize(a, tuple(int(v) for v in rng.integers(1, 90, 2))).tobytes())\n"
        "print(n.resize_simd(), h.hexdigest())\n"
    )
    env = dict(os.environ)
    env.pop("NEONSIGN_KERNEL", None)
    fast = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    env["NEONSIGN_KERNEL"] = "ref"
    ref = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert ref.stdout.split()[0] == "none"
    assert fast.stdout.split()[1] == ref.stdout.split()[1]


def test_concurrent_resizes_from_python_threads():
    """Single-image resizes share one warm scratch behind a try-lock; results must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for _ in range(64):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        size = tuple(int(v) for v in rng.integers(1, 64, 2))
        jobs.append((rng.integers(0, 256, (h, w, 3), dtype=np.uint8), size))
    expected = [pp.resize(img, size) for img, size in jobs]
    with ThreadPoolExecutor(4) as ex:
        for _ in range(3):
            got = list(ex.map(lambda job: pp.resize(*job), jobs))
            for e, g in zip(expected, got, strict=False):
                np.testing.assert_array_equal(e, g)
