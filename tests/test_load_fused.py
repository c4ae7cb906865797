"""load_split's fused C pass (issue 15, part 3) and files that are not regular files.

* the fused pass: float32 and uint8, whole image and ROI, equal Pillow per image; the float32
  images are exactly ``normalize`` of the uint8 side output; the checksum keeps its definition
  (sha256 of the uint8 decode, as :func:`neonsign.data.split_checksum` computes it);
* a FIFO named ``.ppm`` in a split is refused with an error naming it, never waited on: the
  test cannot hang (a watchdog thread opens the FIFO's write end as soon as anything waits on
  its read end, so a blocking loader would get an empty file and fail the assertion instead);
* a symlink to ``/dev/zero`` named ``.ppm`` is refused before reading: the process's peak RSS
  does not grow by the size limit it would otherwise read;
* ``skip_bad`` turns both into zero rows listed in ``meta.errors``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import resource
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from neonsign import _native, data
from neonsign import preprocess as pp
from neonsign.errors import (
    NeonsignIsADirectoryError,
    NeonsignOSError,
    NeonsignTypeError,
    NeonsignValueError,
)
from pillow_ref import assert_matches_pillow

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")


def _pillow(meta: data.SplitMeta, size: int, roi: bool) -> np.ndarray:
    out = []
    for i, path in enumerate(meta.paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if roi:
                x1, y1, x2, y2 = (int(v) for v in meta.rois[i])
                im = im.crop((x1, y1, x2 + 1, y2 + 1))
            out.append(np.asarray(im.resize((size, size), Image.BILINEAR)))
    return np.stack(out)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("roi", [False, True])
def test_fused_pass_matches_pillow_for_both_dtypes(synth_root: Path, split: str, roi: bool) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    u8, labels, meta8 = data.load_split(synth_root, split, dtype="uint8", roi=roi, size=24)
    f32, labels32, meta32 = data.load_split(
        synth_root, split, roi=roi, size=24, mean=mean, std=std, threads=2
    )
    assert_matches_pillow(u8, _pillow(meta8, 24, roi))
    assert f32.dtype == np.float32 and f32.shape == (len(u8), 3, 24, 24) and f32.flags.c_contiguous
    # the float32 pass is exactly the loader's normalisation of the uint8 decode (torchvision's
    # ToTensor + Normalize arithmetic, see test_loader)...
    np.testing.assert_array_equal(f32, pp.normalize(u8, mean, std))
    # ...and the checksum keeps its definition: sha256 over the uint8 decode and the labels
    expected = data.split_checksum(u8, labels, size=24, roi=roi)
    assert meta8.checksum == meta32.checksum == expected
    np.testing.assert_array_equal(labels, labels32)


def test_load_images_and_uint8_is_both_loads_in_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        h, w = (int(v) for v in rng.integers(10, 90, 2))
        p = tmp_path / f"{i}.ppm"
        p.write_bytes(
            b"P6\n%d %d\n255\n" % (w, h) + rng.integers(0, 256, h * w * 3, np.uint8).tobytes()
        )
        paths.append(p)
    paths[5].write_bytes(b"P6\n9 9\n255\n\x00")  # truncated: a zero row in both outputs
    rois = np.array([[-1, -1, -1, -1] if i % 2 else [1, 2, 8, 9] for i in range(12)], np.int64)
    res, u8 = pp.load_images_and_uint8(paths, rois=rois, size=(20, 16), skip_bad=True)
    ref8 = pp.load_images(paths, rois=rois, size=(20, 16), dtype="uint8", skip_bad=True)
    ref32 = pp.load_images(paths, rois=rois, size=(20, 16), skip_bad=True)
    np.testing.assert_array_equal(u8, ref8.images)
    np.testing.assert_array_equal(res.images, ref32.images)
    assert [i for i, _, _ in res.errors] == [5] and not res.ok[5]
    assert not u8[5].any() and not res.images[5].any() and u8[4].any()
    same, u8_too = pp.load_images_and_uint8(paths[:3], dtype="uint8")
    assert u8_too is same.images


def _random_ppms(folder: Path, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(6, 70, 2))
        p = folder / f"{i:04d}.ppm"
        p.write_bytes(
            b"P6\n%d %d\n255\n" % (w, h) + rng.integers(0, 256, h * w * 3, np.uint8).tobytes()
        )
        paths.append(p)
    return paths


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_digest_hashed_by_the_workers_equals_hashlib(
    tmp_path: Path, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_images_and_digest (the split checksum, hashed in row order by the loader's threads
    as rows complete) is plain sha256(prefix + uint8 rows + suffix) -- hashlib's value -- for
    any thread count (4 threads on 2 cores: rows complete far out of order), with failed rows
    (zeros) in the middle, and equal to its hashlib fallback for CPUs without SHA instructions."""
    import neonsign

    paths = _random_ppms(tmp_path, 400, seed=11)
    for bad in (0, 57, 58, 399):
        paths[bad].write_bytes(b"P6\n9 9\n255\n\x00")  # truncated: a zero row
    prefix, suffix = b"tag;n=400;", np.arange(400, dtype="<i8").tobytes()
    kwargs: dict[str, Any] = dict(prefix=prefix, suffix=suffix, size=12, dtype=dtype, skip_bad=True)
    before = neonsign.get_threads()
    digests = []
    try:
        neonsign.set_threads(4)
        for threads in (1, 2, 4):
            res, u8, digest = pp.load_images_and_digest(paths, threads=threads, **kwargs)
            assert [i for i, _, _ in res.errors] == [0, 57, 58, 399] and not u8[57].any()
            assert digest == hashlib.sha256(prefix + u8.tobytes() + suffix).hexdigest()
            digests.append(digest)
    finally:
        neonsign.set_threads(before)
    monkeypatch.setattr(pp, "_HARDWARE_SHA256", False)
    _, _, fallback = pp.load_images_and_digest(paths, **kwargs)
    assert digests == [fallback] * 3
    with pytest.raises(NeonsignTypeError, match="bytes"):
        pp.load_images_and_digest(paths, prefix="tag")  # type: ignore[arg-type]


def test_hardware_sha256_wherever_the_cpu_has_sha_instructions() -> None:
    """load_images_and_digest hashes in the loader's threads (the C block function, not hashlib
    after the load) wherever the CPU has SHA instructions: SHA-NI on x86-64, SHA2 on AArch64.
    tools/arm/test.sh names the block function qemu's CPU model must get
    (NEONSIGN_EXPECT_SHA256, as tests/c/test_sha256.c reads it); elsewhere /proc/cpuinfo says."""
    want = os.environ.get("NEONSIGN_EXPECT_SHA256")
    if not want:
        flag = {"x86_64": ("flags", "sha_ni", "shani"), "aarch64": ("Features", "sha2", "armv8")}
        if platform.machine() not in flag or not os.path.exists("/proc/cpuinfo"):
            pytest.skip("no expectation for this CPU (set NEONSIGN_EXPECT_SHA256)")
        field, name, kernel = flag[platform.machine()]
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.split(":")[0].strip() == field), ":")
        want = kernel if name in line.split(":", 1)[1].split() else "scalar"
    assert _native.sha256_accelerated() is (want != "scalar")
    assert pp._HARDWARE_SHA256 is (want != "scalar")


# ---------------------------------------------------------------------------------------------
# Files that are not regular files


@pytest.fixture
def watchdog() -> Iterator[list[str]]:
    """Names FIFOs to guard: while the test runs, a thread keeps trying to open each one's write
    end without blocking; that succeeds only while some reader holds the read end, and closing it
    at once gives that reader end-of-file. So a loader that blocked opening or reading a FIFO is
    released within milliseconds (and then fails the test's assertions) instead of hanging."""
    fifos: list[str] = []
    stop = threading.Event()

    def guard() -> None:
        while not stop.wait(0.005):
            for fifo in list(fifos):
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:  # ENXIO: nobody reading, as it should be
                    assert exc.errno in (errno.ENXIO, errno.ENOENT), exc
                else:
                    os.close(fd)

    thread = threading.Thread(target=guard, daemon=True)
    thread.start()
    yield fifos
    stop.set()
    thread.join()


def _train_copy(synth_root: Path, dst: Path) -> Path:
    shutil.copytree(synth_root / "Final_Training", dst / "Final_Training")
    return dst


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@needs_fifo
def test_fifo_is_refused_naming_it(tmp_path: Path, watchdog: list[str]) -> None:
    fifo = tmp_path / "00000.ppm"
    os.mkfifo(fifo)
    watchdog.append(str(fifo))
    for call in (lambda: pp.read_ppm(fifo), lambda: pp.load_images([fifo], threads=1)):
        with pytest.raises(NeonsignOSError) as info:
            call()
        assert str(fifo) in str(info.value) and "is a FIFO, not a regular file" in str(info.value)
        assert isinstance(info.value, OSError) and info.value.errno == errno.EINVAL


@needs_dev_zero
def test_dev_zero_symlink_is_refused_before_reading(tmp_path: Path) -> None:
    link = tmp_path / "00000.ppm"
    link.symlink_to("/dev/zero")
    limit = 1 << 30
    assert pp.get_limits()["max_file_bytes"] == limit  # the default: 1 GiB would be read
    before = _peak_rss_bytes()
    for call in (lambda: pp.read_ppm(link), lambda: pp.load_images([link, link], threads=2)):
        with pytest.raises(NeonsignOSError) as info:
            call()
        assert str(link) in str(info.value) and "character device" in str(info.value)
    # bounded work, not wall clock: nothing near the limit was ever buffered
    assert _peak_rss_bytes() - before < limit // 8


@needs_fifo
@needs_dev_zero
def test_split_with_fifo_and_dev_zero(
    synth_root: Path, tmp_path: Path, watchdog: list[str]
) -> None:
    root = _train_copy(synth_root, tmp_path / "r")
    images_dir = root / "Final_Training" / "Images"
    fifo = images_dir / "00003" / "00000_00001.ppm"  # listed in GT-00003.csv
    fifo.unlink()
    os.mkfifo(fifo)
    watchdog.append(str(fifo))
    zero = images_dir / "00009" / "00001_00003.ppm"
    zero.unlink()
    zero.symlink_to("/dev/zero")
    folder = images_dir / "00011" / "00099_00000.ppm"  # not in the CSV: found by listing
    folder.mkdir()
    for dtype in ("float32", "uint8"):
        with pytest.raises(NeonsignOSError) as info:
            data.load_split(root, "train", dtype=dtype)
        assert str(fifo) in str(info.value) and "FIFO" in str(info.value)  # the lowest row

    before = _peak_rss_bytes()
    images, labels, meta = data.load_split(root, "train", skip_bad=True, threads=2)
    assert _peak_rss_bytes() - before < pp.get_limits()["max_file_bytes"] // 8
    bad = {Path(p): (row, msg) for row, p, msg in meta.errors}
    assert set(bad) == {fifo, zero, folder}
    assert "FIFO" in bad[fifo][1] and "character device" in bad[zero][1]
    assert "Is a directory" in bad[folder][1]
    for row, _ in bad.values():
        assert not images[row].any()
    good = np.ones(len(images), bool)
    good[[row for row, _ in bad.values()]] = False
    assert all(images[i].any() for i in np.flatnonzero(good))
    _, _, meta8 = data.load_split(root, "train", dtype="uint8", skip_bad=True, threads=1)
    assert meta8.checksum == meta.checksum and meta8.errors == meta.errors


def test_directory_named_like_an_image_is_an_is_a_directory_error(tmp_path: Path) -> None:
    folder = tmp_path / "00000.ppm"
    folder.mkdir()
    with pytest.raises(NeonsignIsADirectoryError) as info:
        pp.load_images([folder])
    assert str(folder) in str(info.value)


def test_split_paths_is_a_sequence_of_paths(synth_root: Path) -> None:
    _, _, meta = data.load_split(synth_root, "test", dtype="uint8", limit=10)
    paths = meta.paths
    assert isinstance(paths, data.SplitPaths) and len(paths) == 10
    assert all(isinstance(p, Path) and p.is_file() for p in paths)
    assert paths == tuple(paths) and paths == list(paths) and paths[2:4] == (paths[2], paths[3])
    assert paths.index(paths[7]) == 7 and paths[7] in paths
    assert paths.strings()[0] == str(paths[0]) and paths != tuple(paths)[:9]


def test_out_arrays_are_filled_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.ppm"
        p.write_bytes(b"P6\n40 30\n255\n" + rng.integers(0, 256, 40 * 30 * 3, np.uint8).tobytes())
        paths.append(p)
    big = np.full((10, 3, 8, 8), 7.0, np.float32)  # rows 2..7 are the output, the rest untouched
    side = np.full((10, 8, 8, 3), 9, np.uint8)
    res, u8 = pp.load_images_and_uint8(paths, size=8, out=big[2:8], out_uint8=side[2:8])
    ref, ref8 = pp.load_images_and_uint8(paths, size=8)
    np.testing.assert_array_equal(big[2:8], ref.images)
    np.testing.assert_array_equal(side[2:8], ref8)
    assert np.shares_memory(res.images, big) and np.shares_memory(u8, side)
    assert (big[[0, 1, 8, 9]] == 7).all() and (side[[0, 1, 8, 9]] == 9).all()
    plain = np.zeros((6, 8, 8, 3), np.uint8)
    assert pp.load_images(paths, size=8, dtype="uint8", out=plain).images is plain
    np.testing.assert_array_equal(plain, ref8)
    flat = big[2:8].reshape(-1).view(np.uint8)[: 6 * 8 * 8 * 3].reshape(6, 8, 8, 3)
    bad_outs: list[dict[str, Any]] = [
        dict(out=big[2:7]),  # wrong length
        dict(out=big[2:8].transpose(0, 1, 3, 2)),  # not C-contiguous
        dict(out=big[2:8].astype(np.float64)),  # wrong dtype
        dict(out=np.asfortranarray(big[2:8])),
        dict(out=big[2:8], out_uint8=flat),  # overlaps out
    ]
    readonly = big[2:8].copy()
    readonly.flags.writeable = False
    bad_outs.append(dict(out=readonly))
    for kwargs in bad_outs:
        with pytest.raises(NeonsignValueError):
            pp.load_images_and_uint8(paths, size=8, **kwargs)
