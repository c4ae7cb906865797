"""Builds and runs the C-level tests in tests/c/ against the C core sources (no Python.h).

Each tests/c/test_*.c names the core files it needs in a comment line ``sources: a.c b.c``
(paths relative to csrc/core); it is compiled with them by the host C compiler under ASan and
UBSan, run, and must print "<name>: ok" and exit 0. A test with a line ``simd: kernels`` is also
built with the host's SIMD kernel sources, each with its ISA flags (as meson.build does; under
ASan only), and the NS_HAVE_* defines that let dispatch.c offer them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import needs_subprocess

REPO = Path(__file__).resolve().parents[1]
C_TESTS = sorted((REPO / "tests" / "c").glob("test_*.c"))
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")

# Per host architecture: the SIMD kernel sources with their ISA flags, and the defines that
# compile dispatch in. Keep in step with meson.build.
SIMD_KERNELS: dict[str, tuple[dict[str, list[str]], list[str]]] = {
    "x86_64": (
        {
            "kernels/avx2.c": ["-mavx2", "-mfma"],
            "kernels/avx512.c": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma"],
            "kernels/int8_avx512vnni.c": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"],
            "kernels/int8_avxvnni.c": ["-mavx2", "-mfma", "-mavxvnni"],
        },
        ["-DNS_HAVE_AVX2", "-DNS_HAVE_AVX512", "-DNS_HAVE_AVX512VNNI", "-DNS_HAVE_AVXVNNI"],
    ),
    "aarch64": (
        {
            "kernels/neon.c": [],
            "kernels/int8_dotprod.c": ["-march=armv8.2-a+dotprod"],
            "kernels/int8_i8mm.c": ["-march=armv8.2-a+dotprod+i8mm"],
        },
        ["-DNS_HAVE_NEON", "-DNS_HAVE_DOTPROD", "-DNS_HAVE_I8MM"],
    ),
}
FLAGS = [
    "-std=c11",
    "-O1",
    "-g",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    f"-I{REPO / 'csrc'}",
    f"-I{REPO / 'csrc' / 'core'}",
]


def simd_objects(cc: str, out: Path) -> tuple[list[str], list[str]]:
    """Compile this host's SIMD kernels into out/ (in parallel); return (objects, defines)."""
    sources, defines = SIMD_KERNELS.get(platform.machine(), ({}, []))
    jobs = []
    for name, isa_flags in sources.items():
        obj = out / (Path(name).stem + ".o")
        src = REPO / "csrc" / "core" / name
        # ASan (over-reads, stray stores) but not UBSan: its checks on every index of the fully
        # unrolled register tiles make the AVX-512 file compile 2.5x slower (14 s vs 7 s here)
        flags = [f for f in FLAGS if not f.startswith("-fsanitize=")] + ["-fsanitize=address"]
        cmd = [cc, *flags, *defines, *isa_flags, "-c", str(src), "-o", str(obj)]
        jobs.append((obj, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)))
    for _, job in jobs:
        _, err = job.communicate()
        assert job.returncode == 0, err
    return [str(obj) for obj, _ in jobs], defines


@needs_subprocess
@pytest.mark.skipif(CC is None, reason="no C compiler on PATH")
@pytest.mark.parametrize("source", C_TESTS, ids=[p.stem for p in C_TESTS])
def test_c_program(source: Path, tmp_path: Path) -> None:
    assert CC is not None
    match = re.search(r"^\s*\*?\s*sources:(.*)$", source.read_text(), re.MULTILINE)
    assert match, f"{source.name} must name its core sources in a 'sources:' comment line"
    core = [str(REPO / "csrc" / "core" / name) for name in match.group(1).split()]
    objects: list[str] = []
    defines: list[str] = []
    if re.search(r"^\s*\*?\s*simd:\s*kernels\s*$", source.read_text(), re.MULTILINE):
        objects, defines = simd_objects(CC, tmp_path)
    exe = tmp_path / source.stem
    cmd = [CC, *FLAGS, *defines, str(source), *core, *objects, "-o", str(exe), "-pthread", "-lm"]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{source.stem}: ok" in run.stdout


def test_only_the_binding_includes_python() -> None:
    """csrc/core is pure C (tests/c, the fuzzers and the extension share it); Python.h and NumPy
    are included only under csrc/binding/."""
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "csrc").rglob("*.[ch]"))
        if re.search(r"#\s*include\s*[<\"](Python\.h|numpy/)", path.read_text())
        and path.parent != REPO / "csrc" / "binding"
    ]
    assert offenders == []
    assert (REPO / "csrc" / "binding" / "binding.h").is_file()
