"""The serving image built and called without a Docker engine (issue 14).

The Dockerfile's two stages are reproduced in virtual environments:

- builder: the files its ``COPY`` lines name (and nothing else) are staged in a directory and
  its ``RUN pip wheel ...`` is run there with its ``ENV`` (the pinned, isolated build);
- runtime: a fresh venv of a Python the image's user can run gets the wheel with the extras its
  ``RUN pip install ... [serve]`` names, under the same pin file.

Then the image's ``CMD`` (``neonsign serve``, the venv's console script) is started with the
runtime stage's ``ENV`` as the image's ``USER`` (uid 10001, no other groups) on a model
directory written by root, and called exactly as the workflows call the real container
(.github/scripts/smoke_check.py): /healthz, /readyz, a multipart ``POST /predict/`` of a PNG
that must equal ``neonsign predict`` (run as the same user) and carry the model's hash. The
image's ``HEALTHCHECK`` command runs too. A server that serves another model fails the check.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_helpers import REPO_ROOT, Stage, interpreter_for, stages
from serve_helpers import encode, free_port, make_model_dir, sign_like_images
from support import needs_subprocess

SMOKE_CHECK = REPO_ROOT / ".github" / "scripts" / "smoke_check.py"

pytestmark = [
    needs_subprocess,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX users needed"),
]


def test_dockerfile_stages_parse() -> None:
    """What the reproduction relies on: a builder that COPYs sources and runs ``pip wheel``,
    a runtime that installs the wheel with an extra, a non-root USER and exec-form CMD."""
    builder, runtime = stages()[0], stages()[-1]
    assert builder.name == "builder" and builder.all("COPY") and builder.all("WORKDIR")
    assert any(re.search(r"\bpip wheel\b", r) for r in builder.all("RUN"))
    assert any(re.search(r"neonsign-\*\.whl'\)\[\w+\]", r) for r in runtime.all("RUN"))
    assert runtime.user()[0] != 0
    assert runtime.exec_form("CMD")[0] == "neonsign"
    assert runtime.exec_form("HEALTHCHECK")[0] == "python"


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{shlex.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def build_wheel(builder: Stage, root: Path) -> Path:
    """The builder stage: stage the COPY'd files under WORKDIR, run its ``pip wheel`` there."""
    workdir = builder.all("WORKDIR")[-1]
    src, wheels = root / "src", root / "wheels"
    for arg in builder.all("COPY"):
        *sources, dest = shlex.split(arg)
        target = src / dest.replace(workdir, "").lstrip("./")
        for name in sources:
            origin = REPO_ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, target / name if dest.endswith("/") else target)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    env = {k: v.replace(workdir, str(src)) for k, v in builder.env().items()}
    (run,) = [r for r in builder.all("RUN") if re.search(r"\bpip wheel\b", r)]
    args = shlex.split(run)
    args = args[args.index("wheel") :]
    args = [str(wheels) if a == "/wheels" else str(src) if a == "." else a for a in args]
    _run([sys.executable, "-m", "pip", *args], env={**os.environ, **env}, cwd=src)
    (wheel,) = wheels.glob("neonsign-*.whl")
    return wheel


def install_runtime(runtime: Stage, python: str, wheel: Path, root: Path) -> Path:
    """The runtime stage: a venv of ``python`` with the wheel and the extra the stage names."""
    (run,) = [r for r in runtime.all("RUN") if "neonsign-*.whl" in r]
    extra = re.search(r"neonsign-\*\.whl'\)\[(\w+)\]", run).group(1)  # type: ignore[union-attr]
    venv = root / "runtime"
    _run([python, "-m", "venv", str(venv)])
    pins = REPO_ROOT / "constraints.txt"
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(pins),
          f"{wheel}[{extra}]"])  # fmt: skip
    return venv


@pytest.fixture(scope="module")
def image_root() -> Iterator[tuple[Path, Path, Stage]]:
    """(root, runtime venv, runtime stage): both stages reproduced once for the module, in a
    0755 directory the image's user can read, with a model directory written by root."""
    if os.getuid() != 0:
        pytest.skip("needs root: the model is written as root and served as uid 10001")
    builder, runtime = stages()[0], stages()[-1]
    python = interpreter_for(runtime.user()[0])
    old = os.umask(0o022)
    root = Path(tempfile.mkdtemp(prefix="neonsign-image-"))
    try:
        root.chmod(0o755)
        wheel = build_wheel(builder, root)
        venv = install_runtime(runtime, python, wheel, root)
        make_model_dir(root / "models" / "current", seed=1)
        make_model_dir(root / "models" / "other", seed=2)
        (root / "in").mkdir()
        (root / "in" / "img.png").write_bytes(encode(sign_like_images(1, seed=7)[0], "PNG"))
        yield root, venv, runtime
    finally:
        os.umask(old)
        shutil.rmtree(root, ignore_errors=True)


def as_image_user(runtime: Stage, env: dict[str, str]) -> dict[str, object]:
    """``subprocess`` keyword arguments: the image's user and group (no other groups), ``/`` as
    the working directory, ``env`` as the whole environment."""
    uid, gid = runtime.user()
    return {"user": uid, "group": gid, "extra_groups": [], "cwd": "/", "env": env}


def test_image_command_serves_as_its_user(image_root: tuple[Path, Path, Stage]) -> None:
    root, venv, runtime = image_root
    model = root / "models" / "current"
    port = free_port()
    env = {
        **runtime.env(),
        "NEONSIGN_MODEL": str(model),  # the image's /models/current
        "NEONSIGN_PORT": str(port),
        "NEONSIGN_HOST": "127.0.0.1",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",  # the image's python and console scripts
        "HOME": str(root),
    }
    cmd = runtime.exec_form("CMD")
    predict = subprocess.run(
        [str(venv / "bin" / cmd[0]), "predict", "--model", str(model), str(root / "in" / "img.png"),
         "--format", "json", "--top-k", "1", "--quiet"],
        capture_output=True, text=True, timeout=300,
        **as_image_user(runtime, env),  # type: ignore[arg-type]
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr
    expected = root / "expected.json"
    expected.write_text(predict.stdout)
    log = root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / cmd[0]), *cmd[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            **as_image_user(runtime, env),  # type: ignore[arg-type]
        )
        try:
            _smoke_and_health(root, runtime, env, port, expected, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _smoke(root: Path, port: int, card: Path, expected: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SMOKE_CHECK), "--url", f"http://127.0.0.1:{port}",
            "--image", str(root / "in" / "img.png"), "--card", str(card),
            "--expect", str(expected), "--timeout", "120"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=200)


def _smoke_and_health(
    root: Path, runtime: Stage, env: dict[str, str], port: int, expected: Path, log: Path
) -> None:
    ok = _smoke(root, port, root / "models" / "current" / "model_card.json", expected)
    assert ok.returncode == 0, f"{ok.stdout}\n{ok.stderr}\n{log.read_text(errors='replace')}"
    assert "`POST /predict/`" in ok.stdout and "same as `neonsign predict`" in ok.stdout
    # The smoke test fails when another model is serving than the one it was given.
    wrong = _smoke(root, port, root / "models" / "other" / "model_card.json", expected)
    assert wrong.returncode == 1 and "model_version" in wrong.stderr, wrong.stderr
    # The image's HEALTHCHECK command, as the image's user with the image's python.
    health = runtime.exec_form("HEALTHCHECK")
    r = subprocess.run(
        [str(root / "runtime" / "bin" / health[0]), *health[1:]],
        capture_output=True, text=True, timeout=60,
        **as_image_user(runtime, env),  # type: ignore[arg-type]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
