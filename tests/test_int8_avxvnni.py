"""The AVX-VNNI int8 kernel on CPUs without AVX-VNNI (issue 16, part 2).

AVX-VNNI is the VEX encoding of vpdpbusd (Alder Lake, Zen 5); this machine and qemu 7.2 lack it,
so dispatch never picks the kernel here. Its code is the int8 template with 8-lane vectors, its
requantization and stores: this test compiles it with the EVEX encoding of the same instruction
(AVX512VL + AVX512_VNNI, ``NS_AVXVNNI_AS_EVEX``) and runs the int8 micro-kernel tester on it, so
everything but the instruction encoding is checked bit for bit against the reference."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from support import needs_subprocess

REPO = Path(__file__).resolve().parents[1]
CC = shutil.which("cc") or shutil.which("gcc")


def _has_avx512_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags and " avx512vl" in flags


@needs_subprocess
@pytest.mark.skipif(platform.machine() != "x86_64" or CC is None, reason="x86-64 C compiler")
@pytest.mark.skipif(
    not _has_avx512_vnni(), reason="needs AVX512VL + AVX512_VNNI to run the EVEX form"
)
def test_avxvnni_kernel_bit_exact_via_evex(tmp_path: Path) -> None:
    core = REPO / "csrc" / "core"
    flags = ["-std=c11", "-O2", "-pthread", f"-I{REPO / 'csrc'}", f"-I{core}", "-DNS_HAVE_AVXVNNI"]
    obj = tmp_path / "avxvnni.o"
    isa = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512vnni", "-DNS_AVXVNNI_AS_EVEX"]
    subprocess.run(
        [CC, *flags, *isa, "-c", str(core / "kernels" / "int8_avxvnni.c"), "-o", str(obj)],
        check=True,
    )
    exe = tmp_path / "t"
    sources = [
        core / "common.c",
        core / "kernels" / "int8_ref.c",
        core / "kernels" / "int8_dispatch.c",
    ]
    build = subprocess.run(
        [
            CC,
            *flags,
            "-DNS_AVXVNNI_AS_EVEX",
            f"-I{REPO / 'tests' / 'c'}",
            str(REPO / "tests" / "c" / "test_int8_microkernels.c"),
            *map(str, sources),
            str(obj),
            "-lm",
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout
    assert (
        "avxvnni (ns_qgemm_avxvnni_6x16" in run.stdout
        and "test_int8_microkernels: ok" in run.stdout
    )
