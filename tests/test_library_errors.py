"""The library's error boundary for preprocess, data, synth, download and artifacts.

Every error a user can cause reaches the caller as a :class:`neonsign.errors.NeonsignError`
subclass; file errors are also the matching built-in (``FileNotFoundError``, ``PermissionError``,
``NotADirectoryError``, ...) so ``except FileNotFoundError`` keeps working, a full disk is a
:class:`~neonsign.errors.DiskFullError`, and the message names the file.

Permission tests: the suite runs as root, where ``chmod`` does not stop reads or writes, so
each permission case has a test that injects ``PermissionError`` where the OS would raise it,
and a real ``chmod`` test that runs only when not root. A full disk is real: writes are sent to
``/dev/full``, which fails every write with ENOSPC.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from neonsign import artifacts, data, download, synth
from neonsign import preprocess as pp
from neonsign.errors import (
    DiskFullError,
    ModelError,
    ModelNotFoundError,
    NeonsignError,
    NeonsignFileNotFoundError,
    NeonsignIsADirectoryError,
    NeonsignNotADirectoryError,
    NeonsignPermissionError,
    NeonsignTypeError,
    NeonsignValueError,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_dev_full = pytest.mark.skipif(
    not os.path.exists("/dev/full"), reason="needs /dev/full for a real ENOSPC"
)
not_root = pytest.mark.skipif(IS_ROOT, reason="root ignores chmod; the injected test covers it")


def assert_file_error(exc: BaseException, cls: type[NeonsignError], path: object) -> None:
    """``exc`` is ``cls`` (a NeonsignError that is also a built-in OSError subclass) and its
    message names ``path``."""
    assert isinstance(exc, cls) and isinstance(exc, NeonsignError), type(exc).__mro__
    assert str(path) in str(exc), str(exc)


def _permission_denied(path: object) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)


def _open_to_dev_full(real_open: Callable[..., IO[Any]]) -> Callable[..., IO[Any]]:
    """An ``open`` that sends every write to /dev/full (ENOSPC on flush) and reads as usual."""

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        if any(m in mode for m in "wax+"):
            return real_open("/dev/full", mode.replace("x", "w").replace("a", "w"), *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    return fake_open


# --------------------------------------------------------------------------------------------
# preprocess


def _ppm(path: Path, h: int = 6, w: int = 5) -> Path:
    pixels = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    path.write_bytes(b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes())
    return path


def test_read_ppm_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ppm"
    with pytest.raises(FileNotFoundError) as info:
        pp.read_ppm(missing)
    assert_file_error(info.value, NeonsignFileNotFoundError, missing)
    with pytest.raises(IsADirectoryError) as info:
        pp.read_ppm(tmp_path)
    assert_file_error(info.value, NeonsignIsADirectoryError, tmp_path)
    under_file = _ppm(tmp_path / "a.ppm") / "b.ppm"
    with pytest.raises(NotADirectoryError) as info:
        pp.read_ppm(under_file)
    assert_file_error(info.value, NeonsignNotADirectoryError, under_file)


@pytest.mark.parametrize("threads", [1, 2])
def test_load_images_with_one_image_missing(tmp_path: Path, threads: int) -> None:
    paths = [_ppm(tmp_path / f"{i}.ppm") for i in range(4)]
    gone = tmp_path / "gone.ppm"
    with pytest.raises(FileNotFoundError) as info:
        pp.load_images([*paths[:2], gone, paths[2]], threads=threads)
    assert_file_error(info.value, NeonsignFileNotFoundError, gone)
    assert info.value.errno == errno.ENOENT


def test_load_images_bad_arguments_are_neonsign_errors(tmp_path: Path) -> None:
    path = _ppm(tmp_path / "a.ppm")
    with pytest.raises(NeonsignTypeError, match=r"paths\[1\]"):
        pp.load_images([path, 42])  # type: ignore[list-item]
    with pytest.raises(NeonsignTypeError, match="single path"):
        pp.load_images(str(path))
    with pytest.raises(NeonsignValueError, match="null"):
        pp.load_images(["a\0b.ppm"])
    with pytest.raises(NeonsignValueError, match="threads"):
        pp.load_images([path], threads=1 << 20)  # beyond the pool's limit: the C check
    with pytest.raises(NeonsignValueError, match="mean"):
        pp.load_images([path], mean=("a", "b", "c"))  # type: ignore[arg-type]


def test_read_annotations_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "GT-00000.csv"
    with pytest.raises(FileNotFoundError) as info:
        pp.read_annotations(missing)
    assert_file_error(info.value, NeonsignFileNotFoundError, missing)
    assert "annotation file" in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        pp.read_annotations(tmp_path)
    assert_file_error(info.value, NeonsignIsADirectoryError, tmp_path)


def test_array_argument_errors_are_neonsign_errors() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(NeonsignValueError, match="does not fit"):
        pp.resize(image, 2, roi=(0, 0, 4, 3))  # checked in C
    with pytest.raises(NeonsignTypeError):
        pp.resize([[1, 2, 3]], 2)  # type: ignore[arg-type]
    with pytest.raises(NeonsignTypeError):
        pp.normalize([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(NeonsignTypeError):
        pp.parse_annotations("Filename;Width", "x")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# data


def _small_train_copy(synth_root: Path, dest: Path, classes: int = 3) -> Path:
    """A copy of the session's synthetic training split holding only its first classes."""
    images = dest / "Final_Training" / "Images"
    for class_id in range(classes):
        name = f"{class_id:05d}"
        shutil.copytree(synth_root / "Final_Training" / "Images" / name, images / name)
    return dest


def test_load_split_with_one_image_missing(synth_root: Path, tmp_path: Path) -> None:
    root = _small_train_copy(synth_root, tmp_path / "r")
    gone = root / "Final_Training" / "Images" / "00001" / "00001_00002.ppm"
    gone.unlink()  # still listed in GT-00001.csv
    with pytest.raises(FileNotFoundError) as info:
        data.load_split(root, "train", dtype="uint8")
    assert_file_error(info.value, NeonsignFileNotFoundError, gone)


def test_unreadable_class_folder_injected(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _small_train_copy(synth_root, tmp_path / "r")
    locked = root / "Final_Training" / "Images" / "00002"
    real_listdir = os.listdir  # the class folders are listed by name (no Path per file)

    def listdir(path: str | os.PathLike[str] = ".") -> list[str]:
        if Path(path) == locked:
            raise _permission_denied(locked)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(PermissionError) as info:
        data.load_split(root, "train")
    assert_file_error(info.value, NeonsignPermissionError, locked)
    assert "class folder" in str(info.value)


@not_root
def test_unreadable_class_folder(synth_root: Path, tmp_path: Path) -> None:
    root = _small_train_copy(synth_root, tmp_path / "r")
    locked = root / "Final_Training" / "Images" / "00002"
    locked.chmod(0o000)
    try:
        with pytest.raises(PermissionError) as info:
            data.load_split(root, "train")
    finally:
        locked.chmod(0o755)
    assert_file_error(info.value, NeonsignPermissionError, locked)


def test_unreadable_data_root_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == tmp_path:
            raise _permission_denied(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(PermissionError) as info:
        data.find_split(tmp_path, "train")
    assert_file_error(info.value, NeonsignPermissionError, tmp_path)


def test_data_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "gtsrb.zip"
    root.write_bytes(b"PK")
    with pytest.raises(NotADirectoryError) as info:
        data.load_split(root, "train")
    assert_file_error(info.value, NeonsignNotADirectoryError, root)


# --------------------------------------------------------------------------------------------
# synth

_SMALL: dict[str, Any] = dict(n_per_class=1, images_per_track=1, with_test=False)


def test_synth_into_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as info:
        synth.synthesize(blocker / "gtsrb", **_SMALL)
    assert_file_error(info.value, NeonsignNotADirectoryError, blocker / "gtsrb")


@needs_dev_full
def test_synth_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "open", _open_to_dev_full(builtins.open), raising=False)
    with pytest.raises(DiskFullError) as info:
        synth.synthesize(tmp_path / "gtsrb", **_SMALL)
    first = tmp_path / "gtsrb" / "Final_Training" / "Images" / "00000" / "00000_00000.ppm"
    assert_file_error(info.value, DiskFullError, first)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC


def test_synth_into_a_read_only_folder_injected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        raise _permission_denied(self)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(PermissionError) as info:
        synth.synthesize(tmp_path / "gtsrb", **_SMALL)
    assert_file_error(info.value, NeonsignPermissionError, tmp_path / "gtsrb")


@not_root
def test_synth_into_a_read_only_folder(tmp_path: Path) -> None:
    with _read_only(tmp_path), pytest.raises(PermissionError) as info:
        synth.synthesize(tmp_path / "gtsrb", **_SMALL)
    assert_file_error(info.value, NeonsignPermissionError, tmp_path / "gtsrb")


# --------------------------------------------------------------------------------------------
# download (from file:// URLs: no network)


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A folder served as file:// holding a tiny training archive, and its md5 override."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("GTSRB/Training/00000/00000_00000.ppm", b"P6\n1 1\n255\n\0\0\0")
    name = download.ARCHIVES["train"].filename
    (folder / name).write_bytes(buf.getvalue())
    md5 = hashlib.md5(buf.getvalue(), usedforsecurity=False).hexdigest()
    return folder.as_uri() + "/", {name: md5}


def test_download_into_a_file(tmp_path: Path, mirror: tuple[str, dict[str, str]]) -> None:
    url, sums = mirror
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as info:
        download.download(blocker / "gtsrb", "train", base_url=url, checksums=sums, progress=False)
    assert_file_error(info.value, NeonsignNotADirectoryError, blocker / "gtsrb")


def test_download_works_from_the_file_mirror(
    tmp_path: Path, mirror: tuple[str, dict[str, str]]
) -> None:
    url, sums = mirror
    root = download.download(
        tmp_path / "gtsrb", "train", base_url=url, checksums=sums, progress=False
    )
    assert (root / "GTSRB" / "Training" / "00000" / "00000_00000.ppm").is_file()


@needs_dev_full
def test_download_on_a_full_disk(
    tmp_path: Path, mirror: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sums = mirror
    monkeypatch.setattr(download, "open", _open_to_dev_full(builtins.open), raising=False)
    with pytest.raises(DiskFullError) as info:
        download.download(tmp_path / "gtsrb", "train", base_url=url, checksums=sums, progress=False)
    part = tmp_path / "gtsrb" / (download.ARCHIVES["train"].filename + ".part")
    assert_file_error(info.value, DiskFullError, part)


def test_download_into_a_read_only_folder_injected(
    tmp_path: Path, mirror: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sums = mirror

    def mkdtemp(*args: Any, dir: Any = None, **kwargs: Any) -> str:  # noqa: A002 (tempfile's name)
        raise _permission_denied(dir)

    monkeypatch.setattr(download.tempfile, "mkdtemp", mkdtemp)
    root = tmp_path / "gtsrb"
    with pytest.raises(PermissionError) as info:
        download.download(root, "train", base_url=url, checksums=sums, progress=False)
    assert_file_error(info.value, NeonsignPermissionError, root)


@not_root
def test_download_into_a_read_only_folder(
    tmp_path: Path, mirror: tuple[str, dict[str, str]]
) -> None:
    url, sums = mirror
    root = tmp_path / "gtsrb"
    root.mkdir()
    with _read_only(root), pytest.raises(PermissionError) as info:
        download.download(root, "train", base_url=url, checksums=sums, progress=False)
    assert_file_error(info.value, NeonsignPermissionError, root)


# --------------------------------------------------------------------------------------------
# artifacts (model directories)


def _state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in artifacts.STATE_DICT_SHAPES.items()
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return artifacts.save_model(tmp_path / "model", _state_dict(), artifacts.make_card(seed=0))


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        artifacts.load_model(missing)
    assert_file_error(info.value, ModelNotFoundError, missing)
    assert isinstance(info.value, ModelError)  # what callers caught before


def test_missing_card_and_weights(model_dir: Path) -> None:
    weights = model_dir / artifacts.WEIGHTS_FILE
    moved = weights.with_name("elsewhere")
    weights.rename(moved)
    with pytest.raises(FileNotFoundError) as info:
        artifacts.load_model(model_dir)
    assert_file_error(info.value, ModelNotFoundError, weights)
    moved.rename(weights)
    card = model_dir / artifacts.CARD_FILE
    card.unlink()
    with pytest.raises(FileNotFoundError) as info:
        artifacts.load_model(model_dir)
    assert_file_error(info.value, ModelNotFoundError, card)
    card.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        artifacts.load_model(model_dir)
    assert_file_error(info.value, NeonsignIsADirectoryError, card)


def test_missing_weights_files(tmp_path: Path) -> None:
    for name in ("w.safetensors", "w.pth"):
        with pytest.raises(FileNotFoundError) as info:
            artifacts.load_weights_file(tmp_path / name)
        assert_file_error(info.value, ModelNotFoundError, tmp_path / name)
    with pytest.raises(FileNotFoundError) as info:
        artifacts.sha256_file(tmp_path / "x")
    assert_file_error(info.value, NeonsignFileNotFoundError, tmp_path / "x")


def test_save_model_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as info:
        artifacts.save_model(blocker / "m", _state_dict(), artifacts.make_card())
    assert_file_error(info.value, NeonsignNotADirectoryError, blocker / "m")


@needs_dev_full
def test_save_model_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.numpy

    def save_file(tensors: object, filename: str, metadata: object = None) -> None:
        with open("/dev/full", "wb") as f:  # what a full disk does to the weights' bytes
            f.write(b"\0" * 4096)

    monkeypatch.setattr(safetensors.numpy, "save_file", save_file)
    target = tmp_path / "m"
    with pytest.raises(DiskFullError) as info:
        artifacts.save_model(target, _state_dict(), artifacts.make_card())
    assert_file_error(info.value, DiskFullError, target / artifacts.WEIGHTS_FILE)
    assert list(tmp_path.iterdir()) == []  # whole or absent: no directory, no temporary left


def test_save_model_into_a_read_only_folder_injected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the model directory is written into a temporary sibling (tempfile.mkdtemp), then renamed
    def mkdtemp(*args: Any, dir: Any = None, **kwargs: Any) -> str:  # noqa: A002
        raise _permission_denied(dir)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    target = tmp_path / "m"
    with pytest.raises(PermissionError) as info:
        artifacts.save_model(target, _state_dict(), artifacts.make_card())
    assert_file_error(info.value, NeonsignPermissionError, target)
    assert not target.exists()


@not_root
def test_save_model_into_a_read_only_folder(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    with _read_only(target), pytest.raises(PermissionError) as info:
        artifacts.save_model(target, _state_dict(), artifacts.make_card())
    assert_file_error(info.value, NeonsignPermissionError, target)


def test_bad_cards_are_refused_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "m"
    with pytest.raises(NeonsignValueError, match="JSON"):
        artifacts.save_model(target, _state_dict(), artifacts.make_card(metrics={"acc": np.nan}))
    with pytest.raises(NeonsignTypeError, match="object"):
        artifacts.save_model(target, _state_dict(), artifacts.make_card(note=object()))
    with pytest.raises(NeonsignTypeError, match="mapping"):
        artifacts.save_model(target, _state_dict(), ["not", "a", "card"])  # type: ignore[arg-type]
    assert not target.exists()


# --------------------------------------------------------------------------------------------
# other bad arguments


def test_bad_seeds_and_download_settings(tmp_path: Path, synth_root: Path) -> None:
    _, _, meta = data.load_split(synth_root, "train", dtype="uint8", limit=50)
    with pytest.raises(NeonsignValueError, match="seed"):
        data.track_split(meta, seed=-1)
    with pytest.raises(NeonsignValueError, match="seed"):
        synth.synthesize(tmp_path / "s", seed="x", **_SMALL)  # type: ignore[arg-type]
    with pytest.raises(NeonsignValueError, match="size_range"):
        synth.synthesize(tmp_path / "s", size_range=("a", "b"), **_SMALL)  # type: ignore[arg-type]
    with pytest.raises(NeonsignValueError, match="retries"):
        download.fetch("file:///nowhere", tmp_path / "x.zip", None, retries=-1)
    with pytest.raises(NeonsignValueError, match="timeout"):
        download.fetch("file:///nowhere", tmp_path / "x.zip", None, timeout=0)
