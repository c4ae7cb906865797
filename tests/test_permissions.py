"""Model directories anyone can deploy (issue 13, part 6): what neonsign writes gets the
umask's permissions (0644 under umask 022, 0600 under 077), atomically, registry copies
included; and the Dockerfile's serving command, run as the image's non-root uid 10001, serves a
model directory written by another user (root)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from container_helpers import interpreter_for, stages
from neonsign import _fileio
from neonsign.artifacts import make_card, save_model
from serve_helpers import (
    encode,
    free_port,
    make_model_dir,
    random_state_dict,
    sign_like_images,
    wait_ready,
)
from support import needs_subprocess

#: The runtime image's user (Dockerfile: useradd --uid 10001, USER 10001:10001).
CONTAINER_UID = 10001


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """Mode bits of every file and directory under ``root`` (relative names)."""
    return {str(p.relative_to(root)): mode(p) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize(("mask", "file", "folder"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_save_model_follows_the_umask(tmp_path: Path, mask: int, file: int, folder: int) -> None:
    with umask(mask):
        assert _fileio.umask() == mask and _fileio.file_mode() == file
        model = save_model(tmp_path / "m", random_state_dict(1), make_card())
        found = modes(model)
        save_model(model, random_state_dict(2), make_card(), overwrite=True)  # replaced: same
        assert modes(model) == found
    assert found == {".": folder, "model.safetensors": file, "model_card.json": file}
    assert sorted(p.name for p in model.iterdir()) == ["model.safetensors", "model_card.json"]


def test_umask_read_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc is missing the umask is read with os.umask(x)/os.umask(old): same value,
    and the process's umask is left as it was."""

    def no_proc(*args: object, **kwargs: object) -> None:
        raise OSError("no /proc here")

    monkeypatch.setattr(_fileio, "open", no_proc, raising=False)
    with umask(0o027):
        assert _fileio.umask() == 0o027
        assert _fileio.umask() == 0o027 and os.umask(0o027) == 0o027


def test_atomic_write_through_links_and_into_devices(tmp_path: Path) -> None:
    """A symlink is written through (the link stays); a device is written in place, never
    renamed over (``--json /dev/full`` must fail with a full disk, not replace /dev/full)."""
    from neonsign.errors import DiskFullError

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert _fileio.atomic_write_text(link, "new") == link
    assert link.is_symlink() and real.read_text() == "new"
    if Path("/dev/full").exists():
        with pytest.raises(DiskFullError, match="/dev/full"):
            _fileio.atomic_write_text("/dev/full", "x" * 10000)
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    if Path("/dev/null").exists():
        _fileio.atomic_write_text("/dev/null", "x")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_other_outputs_follow_the_umask(tmp_path: Path) -> None:
    """The other files written through a temporary name: test results, profile reports, the
    pipeline's JSON, a .pth export."""
    from neonsign.app.pipeline.runner import write_json
    from neonsign.evaluate import save_result
    from neonsign.profile_report import write_text

    with umask(0o022):
        outs = [
            save_result({"accuracy": 1.0}, tmp_path / "result.json"),  # type: ignore[typeddict-item]
            write_text(tmp_path / "report.md", "# report\n", "write the report"),
        ]
        write_json(tmp_path / "lineage.json", {"a": 1})
        outs.append(tmp_path / "lineage.json")
        if _has_torch():
            from neonsign.artifacts import export_pth

            model = save_model(tmp_path / "m", random_state_dict(1), make_card())
            outs.append(export_pth(model, tmp_path / "m.pth"))
    assert {p.name: mode(p) for p in outs} == {p.name: 0o644 for p in outs}
    assert json.loads((tmp_path / "lineage.json").read_text()) == {"a": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_registry_copies_follow_the_umask(tmp_path: Path) -> None:
    """A model directory written 0600 (as neonsign did before) is registered: the registry's
    copy and a downloaded copy get the umask's modes."""
    pytest.importorskip("mlflow")
    from neonsign.app.registry import Registry

    model = make_model_dir(tmp_path / "private", seed=1)
    for p in model.iterdir():
        p.chmod(0o600)
    model.chmod(0o700)
    with umask(0o022):
        reg = Registry(f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}", name="neonsign")
        mv = reg.register(model)
        stored = reg.download(mv.version)
        copy = reg.download(mv.version, tmp_path / "copy")
    for where in (stored, copy):
        got = {name: m for name, m in modes(where).items() if name != "."}
        assert got == {"model.safetensors": 0o644, "model_card.json": 0o644}, where
    assert mode(stored) == 0o755


# ---------------------------------------------------------------------------------------------
# The container deploy, as the image's user


def _dockerfile_cmd_env() -> tuple[list[str], dict[str, str]]:
    """(CMD, ENV) of the Dockerfile's runtime stage."""
    runtime = stages()[-1]
    return runtime.exec_form("CMD"), runtime.env()


def _site_for_container(root: Path) -> Path:
    """The installed package as the image has it -- a plain copy of ``neonsign`` with its
    compiled extension -- in a directory uid 10001 can read (the development install is an
    editable build that rebuilds itself on import and writes into the worktree)."""
    import neonsign
    from neonsign import _native

    site = root / "site"
    pkg = Path(neonsign.__file__).parent
    shutil.copytree(pkg, site / "neonsign", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(_native.__file__, site / "neonsign" / Path(_native.__file__).name)
    _fileio.publish_tree(site)
    return site


@needs_subprocess
@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX users needed")
def test_container_command_as_uid_10001_serves_a_root_written_model() -> None:
    """The documented deploy: the model directory is written by root (umask 022) and mounted
    read-only into the image, which runs ``neonsign serve`` as uid 10001. The serving command
    (the Dockerfile's CMD with its ENV) is run as uid 10001 here, outside Docker."""
    if os.getuid() != 0:
        pytest.skip("needs root: the model is written as root and served as uid 10001")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    cmd, env = _dockerfile_cmd_env()
    assert cmd[0] == "neonsign" and env["NEONSIGN_MODEL"] == "/models/current"
    python = interpreter_for(CONTAINER_UID)
    with umask(0o022):
        root = Path(tempfile.mkdtemp(prefix="neonsign-deploy-"))
        try:
            root.chmod(0o755)  # mkdtemp's own folder is 0700; everything below is ours
            model = make_model_dir(root / "models" / "current", seed=1)
            site = _site_for_container(root)
            _serve_as_container_user(python, cmd, env, model, site, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _serve_as_container_user(
    python: str,
    cmd: list[str],
    env: dict[str, str],
    model: Path,
    site: Path,
    root: Path,
) -> None:
    import httpx as _httpx

    assert modes(model) == {".": 0o755, "model.safetensors": 0o644, "model_card.json": 0o644}
    deps = Path(_httpx.__file__).parents[1]  # the venv's site-packages (fastapi, numpy, ...)
    port = free_port()
    env = {
        **env,
        "NEONSIGN_MODEL": str(model),
        "NEONSIGN_PORT": str(port),
        "NEONSIGN_HOST": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([str(site), str(deps)]),
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
    }
    # the console script `neonsign` (pyproject: neonsign.cli:main) with the CMD's arguments
    launcher = (
        "import sys; from neonsign.cli import main; sys.argv[0] = 'neonsign'; sys.exit(main())"
    )
    log = root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [python, "-c", launcher, *cmd[1:]],
            env=env,
            cwd="/",
            stdout=out,
            stderr=subprocess.STDOUT,
            user=CONTAINER_UID,  # the image's user and group, no other groups
            group=CONTAINER_UID,
            extra_groups=[],
        )
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_ready(base, proc)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n{log.read_text(errors='replace')}") from None
            ready = _httpx.get(base + "/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            png = encode(sign_like_images(1, seed=3)[0], "PNG")
            r = _httpx.post(base + "/predict/", files={"file": ("a.png", png, "image/png")})
            assert r.status_code == 200, r.text
            card = json.loads((model / "model_card.json").read_text())
            assert r.json()["model_version"] == card["weights_sha256"]
            assert 0.0 <= r.json()["probability"] <= 1.0
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
