"""Replays the fuzz targets' inputs without libFuzzer: every committed crash input under
tests/fuzz/regressions/<target>/ and the generated seed corpus (tests/fuzz/make_seeds.py).

Each tests/fuzz/fuzz_*.c is compiled with tests/fuzz/driver.c (a plain main()) and the core
sources named in its ``sources:`` line by the host C compiler under ASan and UBSan, as
tests/test_c_core.py does; any sanitizer report or abort() fails the test. The fuzzing itself
(libFuzzer, clang) is tools/fuzz.sh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import needs_subprocess

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "tests" / "fuzz"
TARGETS = sorted(FUZZ.glob("fuzz_*.c"))
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds")
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(out)], check=True)
    return out


@needs_subprocess
@pytest.mark.skipif(CC is None, reason="no C compiler on PATH")
@pytest.mark.parametrize("source", TARGETS, ids=[p.stem for p in TARGETS])
def test_replay(source: Path, seeds: Path, tmp_path: Path) -> None:
    match = re.search(r"^ \* sources:([^(\n]*)", source.read_text(), re.MULTILINE)
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
        "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer",
        f"-I{REPO / 'csrc'}",
        f"-I{REPO / 'csrc' / 'core'}",
        str(FUZZ / "driver.c"),
        str(source),
        *core,
        "-o",
        str(exe),
        "-pthread",
        "-lm",
    ]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    inputs = sorted((seeds / source.stem).iterdir())
    regressions = FUZZ / "regressions" / source.stem
    if regressions.is_dir():
        inputs += sorted(p for p in regressions.iterdir() if p.is_file())
    assert inputs, f"no inputs for {source.stem}"
    env = dict(os.environ, UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run(
        [str(exe), *map(str, inputs)], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"replayed {len(inputs)} inputs: ok" in run.stdout
