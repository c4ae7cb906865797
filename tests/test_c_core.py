"""Builds and runs the C-level tests in tests/c/ against the C core sources (no Python.h).

Each tests/c/test_*.c names the core files it needs in a comment line ``sources: a.c b.c``
(paths relative to csrc/core); it is compiled with them by the host C compiler under ASan and
UBSan, run, and must print "<name>: ok" and exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import needs_subprocess

REPO = Path(__file__).resolve().parents[1]
C_TESTS = sorted((REPO / "tests" / "c").glob("test_*.c"))
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@needs_subprocess
@pytest.mark.skipif(CC is None, reason="no C compiler on PATH")
@pytest.mark.parametrize("source", C_TESTS, ids=[p.stem for p in C_TESTS])
def test_c_program(source: Path, tmp_path: Path) -> None:
    match = re.search(r"^\s*\*?\s*sources:(.*)$", source.read_text(), re.MULTILINE)
    assert match, f"{source.name} must name its core sources in a 'sources:' comment line"
    core = [str(REPO / "csrc" / "core" / name) for name in match.group(1).split()]
    exe = tmp_path / source.stem
    cmd = [
        CC,
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
        str(source),
        *core,
        "-o",
        str(exe),
        "-pthread",
        "-lm",
    ]
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
