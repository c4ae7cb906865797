"""Whole-split loading: against Pillow per image, thread-count invariance, bad files, GIL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neonsign
from conftest import real_gtsrb_root
from neonsign import errors
from neonsign import preprocess as pp
from pillow_ref import assert_matches_pillow

rng = np.random.default_rng(7)


def write_ppm(path: Path, img: np.ndarray) -> None:
    h, w, _ = img.shape
    path.write_bytes(b"P6\n%d %d\n255\n" % (w, h) + img.tobytes())


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """60 PPM files of GTSRB-like sizes with ROIs; a few are P3 or 16-bit."""
    d = tmp_path_factory.mktemp("split")
    paths, rois, images = [], [], []
    for i in range(60):
        h, w = (int(v) for v in rng.integers(15, 130, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # smooth content so resampling differences would show
        img = ((img.astype(np.uint16) + np.roll(img, 1, 0) + np.roll(img, 1, 1)) // 3).astype(
            np.uint8
        )
        p = d / f"{i:05d}.ppm"
        if i % 10 == 3:  # plain P3
            body = " ".join(str(int(v)) for v in img.ravel())
            p.write_bytes(b"P3\n# plain\n%d %d\n255\n" % (w, h) + body.encode())
        elif i % 10 == 7:  # 16-bit exactly representable: v * 257
            p.write_bytes(b"P6\n%d %d\n65535\n" % (w, h) + (img.astype(">u2") * 257).tobytes())
        else:
            write_ppm(p, img)
        x1, y1 = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        x2, y2 = int(rng.integers(3 * w // 4, w)), int(rng.integers(3 * h // 4, h))
        paths.append(p)
        rois.append((x1, y1, x2, y2))
        images.append(img)
    return paths, np.array(rois, np.int64), images


def pillow_ref(images, rois, size=32):
    out = []
    for img, roi in zip(images, rois if rois is not None else [None] * len(images), strict=False):
        im = Image.fromarray(img)
        if roi is not None:
            x1, y1, x2, y2 = (int(v) for v in roi)
            im = im.crop((x1, y1, x2 + 1, y2 + 1))
        out.append(np.asarray(im.resize((size, size), Image.BILINEAR)))
    return np.stack(out)


def test_uint8_matches_pillow(split):
    paths, rois, images = split
    res = pp.load_images(paths, dtype="uint8")
    assert res.images.shape == (60, 32, 32, 3) and res.images.dtype == np.uint8
    assert res.ok.dtype == np.bool_ and res.ok.all() and res.errors == []
    assert_matches_pillow(res.images, pillow_ref(images, None))


def test_roi_and_float32_match_pillow_then_torchvision_arithmetic(split):
    paths, rois, images = split
    res = pp.load_images(paths, rois=rois, mean=(0.1, 0.2, 0.3), std=(0.3, 0.4, 0.5))
    res8 = pp.load_images(paths, rois=rois, dtype="uint8")
    assert_matches_pillow(res8.images, pillow_ref(images, rois))
    assert res.images.shape == (60, 3, 32, 32) and res.images.dtype == np.float32
    np.testing.assert_array_equal(
        res.images, pp.normalize(res8.images, (0.1, 0.2, 0.3), (0.3, 0.4, 0.5))
    )


def test_roi_minus_one_means_whole_image(split):
    paths, rois, images = split
    rois = rois.copy()
    rois[::2] = -1
    res = pp.load_images(paths, rois=rois, dtype="uint8", size=(20, 24))
    assert res.images.shape == (60, 20, 24, 3)
    for i, (img, roi) in enumerate(zip(images, rois, strict=False)):
        im = Image.fromarray(img)
        if i % 2:
            im = im.crop((roi[0], roi[1], roi[2] + 1, roi[3] + 1))
        assert_matches_pillow(res.images[i], np.asarray(im.resize((24, 20), Image.BILINEAR)))


def test_single_image_path_equals_load_images(split):
    paths, rois, _ = split
    res = pp.load_images(paths[:5], rois=rois[:5])
    for i in range(5):
        np.testing.assert_array_equal(
            pp.preprocess_image(pp.read_ppm(paths[i]), roi=rois[i]), res.images[i]
        )
        np.testing.assert_array_equal(
            pp.preprocess_image(paths[i].read_bytes(), roi=rois[i]), res.images[i]
        )


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_thread_count_invariance(split, dtype):
    paths, rois, _ = split
    outs = [pp.load_images(paths, rois=rois, dtype=dtype, threads=t).images for t in (1, 2, 3)]
    before = neonsign.get_threads()
    try:
        neonsign.set_threads(3)
        outs.append(pp.load_images(paths, rois=rois, dtype=dtype).images)
    finally:
        neonsign.set_threads(before)
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()


@pytest.fixture()
def dir_with_corrupt(tmp_path):
    paths = []
    for i in range(12):
        p = tmp_path / f"img{i:02d}.ppm"
        write_ppm(p, rng.integers(0, 256, (20 + i, 25, 3), dtype=np.uint8))
        paths.append(p)
    paths[5].write_bytes(b"P6\n20 20\n255\n" + b"\0" * 100)  # truncated
    paths[9].write_bytes(b"GIF89a not a ppm")
    return paths


def test_first_bad_file_raises_naming_it(dir_with_corrupt):
    for threads in (1, 2, 3):
        with pytest.raises(errors.DecodeError) as info:
            pp.load_images(dir_with_corrupt, threads=threads)
        assert "img05.ppm" in str(info.value) and "truncated" in str(info.value)


def test_missing_file_raises_file_not_found(dir_with_corrupt):
    paths = dir_with_corrupt[:3] + [dir_with_corrupt[0].parent / "gone.ppm"]
    with pytest.raises(FileNotFoundError, match="gone.ppm") as info:
        pp.load_images(paths)
    assert isinstance(info.value, errors.NeonsignFileNotFoundError)


def test_skip_bad_lists_failures(dir_with_corrupt):
    paths = list(dir_with_corrupt) + [dir_with_corrupt[0].parent / "gone.ppm"]
    res = pp.load_images(paths, skip_bad=True, threads=2)
    assert res.ok.tolist() == [i not in (5, 9, 12) for i in range(13)]
    assert [e[0] for e in res.errors] == [5, 9, 12]
    assert res.errors[0][1] == str(paths[5]) and "truncated" in res.errors[0][2]
    assert "magic" in res.errors[1][2]
    assert "gone.ppm" in res.errors[2][2]
    assert not res.images[[5, 9, 12]].any()
    good = pp.load_images([p for i, p in enumerate(paths) if i not in (5, 9, 12)])
    np.testing.assert_array_equal(res.images[res.ok], good.images)


def test_roi_outside_actual_image_is_an_error(dir_with_corrupt):
    paths = dir_with_corrupt[:2]
    rois = np.array([[0, 0, 10, 10], [0, 0, 25, 10]])  # image 1 is 25 wide: x2=25 is outside
    with pytest.raises(errors.DecodeError, match="img01.ppm.*ROI"):
        pp.load_images(paths, rois=rois)
    res = pp.load_images(paths, rois=rois, skip_bad=True)
    assert res.ok.tolist() == [True, False]


def test_limits_apply_per_file(dir_with_corrupt):
    previous = pp.set_limits(max_pixels=499)  # the smallest is 20x25
    try:
        res = pp.load_images(dir_with_corrupt[:3], size=16, skip_bad=True)
        assert not res.ok.any()
        assert all("limit" in e[2] for e in res.errors)
        with pytest.raises(errors.ResourceLimitError, match="img00.ppm"):
            pp.load_images(dir_with_corrupt[:3], size=16)
    finally:
        pp.set_limits(**previous)


def test_empty_list_and_bad_arguments(split):
    paths, rois, _ = split
    res = pp.load_images([])
    assert res.images.shape == (0, 3, 32, 32) and res.ok.shape == (0,)
    with pytest.raises(errors.NeonsignValueError):
        pp.load_images(paths, rois=rois[:3])
    with pytest.raises(errors.NeonsignValueError):
        pp.load_images(paths, rois=rois.astype(float))
    with pytest.raises(errors.NeonsignValueError):
        pp.load_images(paths, dtype="float16")
    with pytest.raises(errors.NeonsignValueError):
        pp.load_images(paths, threads=0)
    with pytest.raises(errors.NeonsignValueError):
        pp.load_images(paths, size=0)
    with pytest.raises(errors.NeonsignTypeError):
        pp.load_images(str(paths[0]))
    with pytest.raises(errors.NeonsignValueError, match="null"):
        pp.load_images(["a\0b.ppm"])
    with pytest.raises(errors.NeonsignTypeError):
        pp.load_images([paths[0], 42])  # type: ignore[list-item]


def test_str_bytes_and_pathlike_paths(split):
    paths, _, _ = split
    mixed = [str(paths[0]), bytes(paths[1]), paths[2]]
    res = pp.load_images(mixed, dtype="uint8")
    np.testing.assert_array_equal(res.images, pp.load_images(paths[:3], dtype="uint8").images)


def test_gil_released_during_load(tmp_path):
    img = rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)
    p = tmp_path / "big.ppm"
    write_ppm(p, img)
    paths = [p] * 400
    ticks = 0
    stop = threading.Event()

    def counter():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0)

    t = threading.Thread(target=counter)
    t.start()
    try:
        start = time.perf_counter()
        pp.load_images(paths, threads=1)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        t.join()
    # with the GIL held the counter could not run at all during the call
    assert ticks > 10, (ticks, elapsed)


def test_shared_gtsrb_if_present():
    base = real_gtsrb_root()
    root = base / "Final_Training" / "Images" / "00014" if base else None
    if root is None or not root.is_dir():
        pytest.skip(
            "real GTSRB not found: set GTSRB_ROOT or provide ../shared/gtsrb beside the repository"
        )
    ann = pp.read_annotations(root / "GT-00014.csv")[:100]
    paths = [root / a.filename for a in ann]
    rois = np.array([a.roi for a in ann])
    res = pp.load_images(paths, rois=rois, dtype="uint8")
    ref = []
    for p, (x1, y1, x2, y2) in zip(paths, rois, strict=False):
        im = Image.open(p).crop((x1, y1, x2 + 1, y2 + 1))
        ref.append(np.asarray(im.resize((32, 32), Image.BILINEAR)))
    assert_matches_pillow(res.images, np.stack(ref))
