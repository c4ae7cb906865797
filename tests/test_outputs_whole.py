"""Outputs that are whole or absent (issue 17, part 4).

Every command that writes checks its destination before working -- a read-only folder fails in
the first step, not after training -- and writes through a temporary name plus rename, so a
failure leaves the old state or the complete new one. The read-only cases run the commands as
a non-root user (uid 10001; root ignores permissions); the disk-full cases write to a real tiny
tmpfs sized so that the disk fills exactly between a model's weights and its card. Both need
root (to switch user, to mount) and skip with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from container_helpers import interpreter_for
from neonsign import _fileio, artifacts
from neonsign.cli import main
from neonsign.synth import MARKER
from serve_helpers import encode, make_model_dir, random_state_dict, sign_like_images
from support import needs_subprocess
from test_permissions import CONTAINER_UID, _site_for_container

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: to run as uid 10001 / to mount")
PAGE = 4096

_LAUNCHER = "import sys; from neonsign.cli import main; sys.argv[0] = 'neonsign'; sys.exit(main())"


# ---------------------------------------------------------------------------------------------
# read-only destinations, as a non-root user


class _AsUser:
    """Runs ``neonsign`` commands as uid 10001 over a copy of the package it can read, with a
    model, a data set and an image it can read, a read-only folder and a writable one."""

    def __init__(self, root: Path, synth_root: Path) -> None:
        self.root = root
        self.python = interpreter_for(CONTAINER_UID)
        self.site = _site_for_container(root)
        self.model = make_model_dir(root / "model", seed=1)
        self.data = Path(shutil.copytree(synth_root, root / "data"))
        self.image = root / "sign.png"
        self.image.write_bytes(encode(sign_like_images(1, seed=2)[0], "PNG"))
        self.read_only = root / "ro"  # root's, 0755: uid 10001 may read it, not write it
        self.read_only.mkdir()
        self.writable = root / "rw"
        self.writable.mkdir()
        _fileio.publish_tree(root)
        os.chown(self.writable, CONTAINER_UID, CONTAINER_UID)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        import httpx

        deps = Path(httpx.__file__).parents[1]  # the venv's site-packages (numpy, torch...)
        env = {
            "PYTHONPATH": os.pathsep.join([str(self.site), str(deps)]),
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.writable),
            "NEONSIGN_REGISTRY": str(self.writable / "registry"),
        }
        return subprocess.run(
            [self.python, "-c", _LAUNCHER, *args],
            env=env,
            cwd=self.writable,
            capture_output=True,
            text=True,
            timeout=600,
            user=CONTAINER_UID,
            group=CONTAINER_UID,
            extra_groups=[],
        )


@pytest.fixture(scope="module")
def as_user(synth_root: Path) -> Iterator[_AsUser]:
    if not IS_ROOT:
        pytest.skip("needs root: the commands run as uid 10001 (root ignores permissions)")
    pytest.importorskip("httpx")
    root = Path(tempfile.mkdtemp(prefix="neonsign-outputs-"))
    try:
        root.chmod(0o755)
        yield _AsUser(root, synth_root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


#: (command, arguments with {ro} for the read-only folder): every command that writes a file or
#: a folder the user names.
READ_ONLY_CASES = {
    "train": ["train", "--data", "{data}", "--out", "{ro}/m", "--epochs", "1"],  # with MLflow
    "test": ["test", "--model", "{model}", "--data", "{data}", "--json", "{ro}/r.json"],
    "gate": ["gate", "--candidate", "{model}", "--data", "{data}", "--out", "{ro}/v.json"],
    "profile": ["profile", "--repeats", "1", "--warmup", "0", "--json", "{ro}/p.json"],
    "synth": ["synth", "{ro}/gtsrb", "--per-class", "2", "--test", "0", "-q"],
    "predict": ["predict", "{image}", "--model", "{model}", "-o", "{ro}/p.csv"],
    "convert-dir": ["convert", "{model}/model.safetensors", "{ro}/converted"],
    "convert-pth": ["convert", "{model}", "{ro}/model.pth"],
}


@needs_subprocess
@needs_root
@pytest.mark.parametrize("case", sorted(READ_ONLY_CASES))
def test_read_only_destination_fails_first(as_user: _AsUser, case: str) -> None:
    """The command refuses at once (exit 2, one line naming the destination and why), before
    training, testing or profiling anything; the folder stays empty."""
    if case == "convert-pth":
        pytest.importorskip("torch")
    args = [
        a.format(ro=as_user.read_only, data=as_user.data, model=as_user.model, image=as_user.image)
        for a in READ_ONLY_CASES[case]
    ]
    r = as_user.run(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"neonsign {args[0]}: error: cannot write"), r.stderr
    assert f"{as_user.read_only} is not writable" in last, last
    assert r.stdout == "", r.stdout  # no work was reported (no accuracy, no profile tables)
    assert list(as_user.read_only.iterdir()) == []
    assert not (as_user.writable / "registry").exists()  # no MLflow run was started either


@needs_subprocess
@needs_root
def test_the_same_commands_write_where_the_user_may(as_user: _AsUser) -> None:
    """The control of the read-only cases: uid 10001 runs them fine in a folder it owns."""
    out = as_user.writable / "p.csv"
    r = as_user.run("predict", str(as_user.image), "--model", str(as_user.model), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines()[0].split()[:2] == ["path", "class"]
    r = as_user.run("convert", str(as_user.model / "model.safetensors"), str(out.with_suffix("")))
    assert r.returncode == 0, r.stderr
    artifacts.load_model(out.with_suffix(""))


# ---------------------------------------------------------------------------------------------
# full disks: a real tmpfs of a few hundred kilobytes


@contextmanager
def _tmpfs(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted on ``where`` (skips when mounting is not permitted)."""
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a real full disk (a tiny tmpfs)")
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _pages(nbytes: int) -> int:
    return -(-nbytes // PAGE)


@pytest.fixture(scope="module")
def weights_pages(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Pages a model's weights file takes (the card takes one more)."""
    d = artifacts.save_model(
        tmp_path_factory.mktemp("size") / "m", random_state_dict(1), artifacts.make_card()
    )
    return _pages((d / artifacts.WEIGHTS_FILE).stat().st_size)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``neonsign ARGS`` in this process: (exit status, last line of stderr)."""
    status = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    return status, err[-1] if err else ""


def _model_file(tmp_path: Path, seed: int) -> Path:
    model = make_model_dir(tmp_path / f"src{seed}", seed=seed)
    return model / artifacts.WEIGHTS_FILE


def test_disk_full_between_weights_and_card_leaves_no_directory(
    tmp_path: Path, weights_pages: int, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _model_file(tmp_path, 1)
    with _tmpfs(tmp_path / "fs", weights_pages * PAGE) as fs:  # room for the weights only
        status, err = _cli(capsys, "convert", str(src), str(fs / "m"))
        assert status == 2 and "neonsign convert: error:" in err, err
        assert "No space left on device" in err and "model_card.json" in err, err
        assert os.listdir(fs) == []  # no half directory, no temporary one


def test_disk_full_during_force_keeps_the_old_model(
    tmp_path: Path, weights_pages: int, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _model_file(tmp_path, 1), _model_file(tmp_path, 2)
    # room for the old model (weights + card) and the new weights, not the new card
    with _tmpfs(tmp_path / "fs", (2 * weights_pages + 1) * PAGE) as fs:
        assert _cli(capsys, "convert", str(old), str(fs / "m"))[0] == 0
        status, err = _cli(capsys, "convert", str(new), str(fs / "m"), "--force")
        assert status == 2 and "No space left on device" in err, err
        assert os.listdir(fs) == ["m"]
        tensors, _ = artifacts.load_model(fs / "m")  # the old model, whole and verified
        np.testing.assert_array_equal(tensors["fc2.bias"], random_state_dict(1)["fc2.bias"])
    # with room, --force replaces it whole
    with _tmpfs(tmp_path / "fs2", (3 * weights_pages + 3) * PAGE) as fs:
        assert _cli(capsys, "convert", str(old), str(fs / "m"))[0] == 0
        assert _cli(capsys, "convert", str(new), str(fs / "m"), "--force")[0] == 0
        tensors, _ = artifacts.load_model(fs / "m")
        np.testing.assert_array_equal(tensors["fc2.bias"], random_state_dict(2)["fc2.bias"])
        assert os.listdir(fs) == ["m"]  # the old one deleted, nothing temporary left


def test_train_on_a_full_disk_leaves_no_half_model(
    tmp_path: Path, synth_root: Path, weights_pages: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: a disk that fills between weights and card after a whole training
    run used to leave weights without a card, which ``serve`` cannot read and ``train``
    refuses to overwrite."""
    pytest.importorskip("torch")
    with _tmpfs(tmp_path / "fs", weights_pages * PAGE) as fs:
        args = ["train", "--data", str(synth_root), "--out", str(fs / "m"), "--epochs", "1"]
        status, err = _cli(capsys, *args, "--limit", "200", "--no-mlflow", "--quiet")
        assert status == 2 and "No space left on device" in err, err
        assert os.listdir(fs) == []
        # and the destination is free for the next run (nothing for --force to fight)
        assert not (fs / "m").exists()


def test_full_disk_keeps_the_previous_file_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``predict -o`` / ``test --json`` / ``gate --out`` / ``profile --json`` write through a
    temporary name: on a full disk the previous output stays as it was."""
    model = make_model_dir(tmp_path / "model", seed=1)
    image = tmp_path / "sign.png"
    image.write_bytes(encode(sign_like_images(1, seed=2)[0], "PNG"))
    with _tmpfs(tmp_path / "fs", 4 * PAGE) as fs:
        out = fs / "p.json"
        out.write_text('"the previous predictions"\n')
        (fs / "filler").write_bytes(b"\0" * (3 * PAGE))  # the disk is now full
        status, err = _cli(
            capsys, "predict", str(image), "--model", str(model), "-o", str(out), "--format", "json"
        )
        assert status == 2 and "No space left on device" in err, err
        assert json.loads(out.read_text()) == "the previous predictions"
        assert sorted(os.listdir(fs)) == ["filler", "p.json"]


def test_synth_on_a_full_disk_keeps_the_previous_data_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--per-class", "1", "--test", "0", "-q"]
    assert _cli(capsys, "synth", str(tmp_path / "measure"), *small)[0] == 0
    pages = sum(_pages(p.stat().st_size) for p in (tmp_path / "measure").rglob("*") if p.is_file())
    # room for the small set twice (the old one and a new one), not for a larger one
    with _tmpfs(tmp_path / "fs", (2 * pages + 8) * PAGE) as fs:
        root = fs / "gtsrb"
        assert _cli(capsys, "synth", str(root), *small)[0] == 0
        before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        status, err = _cli(capsys, "synth", str(root), "--per-class", "30", "--test", "0", "-q")
        assert status == 2 and "No space left on device" in err, err
        after = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        assert after == before and (root / MARKER).is_file()  # the previous set, whole
        assert os.listdir(fs) == ["gtsrb"]  # no staging directory left
    with _tmpfs(tmp_path / "fs2", pages * PAGE) as fs:
        status, err = _cli(capsys, "synth", str(fs / "new"), "--per-class", "30", "--test", "0")
        assert status == 2 and os.listdir(fs) == [], (err, os.listdir(fs))


def test_outputs_are_checked_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without switching users: destinations under a file or in a missing folder, and an
    existing model directory without --force, are refused before any model or data is read
    (the model and data named here do not even exist)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    missing = tmp_path / "nope"
    cases = {
        (
            "test",
            "--model",
            str(missing),
            "--data",
            str(missing),
            "--json",
            f"{blocker}/r.json",
        ): f"{blocker} is not a directory",
        (
            "gate",
            "--candidate",
            str(missing),
            "--data",
            str(missing),
            "--out",
            f"{missing}/v",
        ): f"the folder {missing} does not exist",
        (
            "predict",
            str(missing),
            "--model",
            str(missing),
            "-o",
            str(tmp_path),
        ): "it is a directory",
        (
            "profile",
            "--model",
            str(missing),
            "--json",
            f"{blocker}/p.json",
        ): f"{blocker} is not a directory",
        ("synth", f"{blocker}/gtsrb"): f"{blocker} is not a directory",
    }
    for args, why in cases.items():
        status, err = _cli(capsys, *args)
        assert status == 2 and f"neonsign {args[0]}: error: cannot write" in err, (args, err)
        assert why in err, (args, err)
    existing = make_model_dir(tmp_path / "existing", seed=1)
    status, err = _cli(capsys, "convert", str(missing / "x.safetensors"), str(existing))
    assert status == 2 and "already exists and is not empty" in err, err
    if sys.platform.startswith("linux"):
        train = ("train", "--data", str(missing), "--out", str(existing), "--no-mlflow")
        status, err = _cli(capsys, *train)
        assert status == 2 and "already exists and is not empty" in err, err


def test_a_mount_point_is_written_in_place_card_last(
    tmp_path: Path, weights_pages: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A volume mounted at the destination (``docker run -v host:/out``) cannot be renamed
    over: the model is staged inside it and moved in, the card last; ``--force`` replaces the
    model's files and leaves the volume's other files alone."""
    old, new = _model_file(tmp_path, 1), _model_file(tmp_path, 2)
    with _tmpfs(tmp_path / "fs", (3 * weights_pages + 8) * PAGE) as fs:
        assert _cli(capsys, "convert", str(old), str(fs)) == (0, "")
        np.testing.assert_array_equal(
            artifacts.load_model(fs)[0]["fc2.bias"], random_state_dict(1)["fc2.bias"]
        )
        (fs / "README").write_text("the volume's own file\n")
        assert _cli(capsys, "convert", str(new), str(fs), "--force") == (0, "")
        np.testing.assert_array_equal(
            artifacts.load_model(fs)[0]["fc2.bias"], random_state_dict(2)["fc2.bias"]
        )
        assert sorted(os.listdir(fs)) == ["README", "model.safetensors", "model_card.json"]


def test_synth_replaces_its_own_entries_and_keeps_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "gtsrb"
    root.mkdir()
    (root / "README").write_text("mine\n")
    assert _cli(capsys, "synth", str(root), "--per-class", "1", "--test", "5", "-q")[0] == 0
    assert (root / "Final_Test").is_dir() and (root / MARKER).is_file()
    assert _cli(capsys, "synth", str(root), "--per-class", "2", "--test", "0", "-q")[0] == 0
    assert sorted(os.listdir(root)) == ["Final_Training", "README", MARKER]  # no stale test set
    assert json.loads((root / MARKER).read_text())["n_per_class"] == 2
    assert (root / "README").read_text() == "mine\n"
