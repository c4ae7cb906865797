"""Resource limits: inputs that declare more than they hold, or more than the configured caps,
are refused quickly and before the large allocation is made.

The "before allocating" tests run in a child process whose address space is capped
(RLIMIT_AS, 1 GiB above what the interpreter already uses): an attempt to allocate what the
header declares (10.8 GB for 60000x60000) would raise MemoryError there instead of the
expected neonsign error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from neonsign import errors
from neonsign import preprocess as pp
from support import needs_subprocess

HUGE_P6 = b"P6\n60000 60000\n255\n0123456789"
HUGE_P3 = b"P3\n60000 60000\n255\n1 2 3 4 5\n"
HUGE_P6_16 = b"P6\n60000 60000\n65535\n0123456789"


@pytest.fixture()
def no_pixel_limit():
    previous = pp.set_limits(max_pixels=1 << 40)
    yield
    pp.set_limits(**previous)


@pytest.mark.parametrize("data", [HUGE_P6, HUGE_P3, HUGE_P6_16], ids=["p6", "p3", "p6-16bit"])
def test_huge_header_default_limit_is_resource_error(data):
    t0 = time.perf_counter()
    with pytest.raises(errors.ResourceLimitError, match="60000x60000"):
        pp.decode_ppm(data)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("data", [HUGE_P6, HUGE_P3, HUGE_P6_16], ids=["p6", "p3", "p6-16bit"])
def test_huge_header_within_limit_is_truncated_not_allocated(data, no_pixel_limit):
    t0 = time.perf_counter()
    with pytest.raises(errors.DecodeError, match="truncated"):
        pp.decode_ppm(data)
    assert time.perf_counter() - t0 < 0.5


def test_per_call_pixel_cap_leaves_global_limits_alone():
    before = pp.get_limits()
    data = b"P6\n4 4\n255\n" + bytes(48)
    with pytest.raises(errors.ResourceLimitError, match="limit of 15"):
        pp.decode_ppm(data, max_pixels=15)
    assert pp.decode_ppm(data, max_pixels=16).shape == (4, 4, 3)
    assert pp.get_limits() == before
    with pytest.raises(errors.NeonsignValueError):
        pp.decode_ppm(data, max_pixels=0)


def test_p3_needs_two_bytes_per_sample(no_pixel_limit):
    # "1 2 3" is 5 bytes for 3 samples: the least a 1x1 P3 can be; one byte less is truncated
    assert pp.decode_ppm(b"P3 1 1 255 1 2 3").tolist() == [[[1, 2, 3]]]
    assert pp.decode_ppm(b"P3 1 1 255\n1 2 3").tolist() == [[[1, 2, 3]]]
    with pytest.raises(errors.DecodeError, match="truncated"):
        pp.decode_ppm(b"P3 2 1 255\n1 2 3 4 5")


def test_huge_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "sparse.ppm"
    with open(big, "wb") as f:  # sparse: 8 GiB declared, nothing on disk
        f.write(HUGE_P6)
        f.truncate(8 << 30)
    t0 = time.perf_counter()
    with pytest.raises(errors.ResourceLimitError, match="sparse.ppm"):
        pp.read_ppm(big)
    res = pp.load_images([big], size=8, skip_bad=True)
    assert not res.ok[0] and "limit" in res.errors[0][2]
    assert time.perf_counter() - t0 < 1.0


def test_output_size_limit():
    previous = pp.set_limits(max_pixels=100)
    try:
        with pytest.raises(errors.ResourceLimitError, match="limit"):
            pp.resize(np.zeros((4, 4, 3), np.uint8), (11, 10))
        with pytest.raises(errors.ResourceLimitError):
            pp.load_images([], size=(11, 10))
    finally:
        pp.set_limits(**previous)


def test_get_set_limits_roundtrip():
    previous = pp.set_limits(max_pixels=1234, max_file_bytes=5678)
    try:
        assert pp.get_limits() == {"max_pixels": 1234, "max_file_bytes": 5678}
    finally:
        assert pp.set_limits(**previous) == {"max_pixels": 1234, "max_file_bytes": 5678}
    assert pp.get_limits() == previous
    with pytest.raises(errors.NeonsignValueError):
        pp.set_limits(max_pixels=True)


CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from neonsign import errors, preprocess as pp
    # the cap: what is mapped now plus 1 GiB
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    cap = mapped + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    pp.set_limits(max_pixels=1 << 40, max_file_bytes=1 << 40)
    for name, data in [("p6", {p6!r}), ("p3", {p3!r}), ("p6-16", {p616!r})]:
        try:
            pp.decode_ppm(data)
        except errors.DecodeError as e:
            print(name, "DecodeError")
        except MemoryError as e:
            print(name, "MemoryError", e)
    path = sys.argv[1]
    for name, data in [("file-p6", {p6!r}), ("file-p3", {p3!r})]:
        with open(path, "wb") as f:
            f.write(data)
        try:
            pp.read_ppm(path)
        except errors.DecodeError:
            print(name, "DecodeError")
        except MemoryError as e:
            print(name, "MemoryError", e)
        res = pp.load_images([path], size=8, skip_bad=True)
        print(name, "loader", "ok" if res.ok[0] else res.errors[0][2].split(":")[1].strip())
    """
).format(p6=HUGE_P6, p3=HUGE_P3, p616=HUGE_P6_16)


@needs_subprocess
@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and RLIMIT_AS")
@pytest.mark.skipif(
    "LD_PRELOAD" in os.environ and "asan" in os.environ["LD_PRELOAD"],
    reason="ASan reserves terabytes of shadow memory: RLIMIT_AS cannot apply",
)
def test_huge_declared_sizes_never_allocated(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "x.ppm")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split("\n")
    assert "MemoryError" not in run.stdout, run.stdout
    for name in ["p6", "p3", "p6-16", "file-p6", "file-p3"]:
        assert f"{name} DecodeError" in lines, run.stdout
    for name in ["file-p6", "file-p3"]:
        assert f"{name} loader truncated PPM" in lines, run.stdout
