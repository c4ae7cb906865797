"""Files neonsign writes for its users: atomically, with the permissions the user's umask gives.

Why this module exists: :func:`tempfile.mkstemp` creates its file mode ``0600`` whatever the
umask, so a file written "temp name, then rename" stays private to the writer. A model
directory written that way cannot be read by anyone else -- not by the container image's
non-root user (uid 10001) that mounts it read-only, not by a colleague on a shared disk.
Here every such file is made ``0o666 & ~umask`` (``0644`` under the usual umask 022, ``0600``
under 077: the user decides, as for any file ``open()`` creates) and every directory copied in
``0o777 & ~umask``.

Reading the umask: POSIX has no call that reads it without setting it. On Linux it is read
from the ``Umask:`` field of ``/proc/self/status`` (no side effect, safe in threads). Elsewhere
it is read with ``os.umask(0)`` / ``os.umask(old)`` under a module lock: the lock keeps two
of our readers from seeing each other's 0, but a file created by another thread in that
instant gets umask 0 -- a small window, and only where ``/proc`` is missing. It is read at
every write, not cached at import, so a process that changes its umask is obeyed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import (
    NeonsignFileExistsError,
    NeonsignFileNotFoundError,
    NeonsignIsADirectoryError,
    NeonsignNotADirectoryError,
    NeonsignPermissionError,
    file_errors,
)

__all__ = [
    "umask",
    "file_mode",
    "dir_mode",
    "atomic_write",
    "atomic_write_text",
    "atomic_dir",
    "move_entries",
    "check_dir_writable",
    "check_file_writable",
    "nearest_existing",
    "publish_tree",
]

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's current umask (see the module docstring for how it is read)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o077)  # the most private value for the instant it is in force
        os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a new regular file: ``0o666 & ~umask`` (what ``open()`` would give)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new directory: ``0o777 & ~umask`` (what ``mkdir`` would give)."""
    return 0o777 & ~umask()


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: some file systems refuse it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], action: str = "write"
) -> Path:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file beside it, then rename.

    The temporary file is flushed to disk (fsync) and given :func:`file_mode` before the
    rename, so a reader sees the old file or the whole new one, readable as the umask allows.
    A symlink is written through (its target is replaced, the link stays). A path that exists
    and is not a regular file -- a device or a pipe (``/dev/stdout``, ``/dev/full``) -- cannot
    be renamed over: it is written in place. An OSError becomes the matching NeonsignOSError
    subclass ("cannot ACTION PATH: ..."); the temporary file is removed on any failure.
    """
    with file_errors(action, path):
        target = Path(os.path.realpath(path))
        if target.exists() and not target.is_file():
            write(os.fspath(target))
            return Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, file_mode())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, action: str = "write") -> Path:
    """:func:`atomic_write` of UTF-8 ``text``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), action)


def _sync_tree(top: Path) -> None:
    """fsync every file of a freshly written tree (then its directory), so the rename that
    publishes it cannot expose files whose data is not on disk yet."""
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists, else its closest existing ancestor (a file, if one is in the way)."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        if candidate.exists():
            return candidate
    return Path(p.anchor)


def check_dir_writable(
    path: str | os.PathLike[str], action: str = "write", name: str | os.PathLike[str] | None = None
) -> None:
    """Check, before any work, that the directory ``path`` can be created or written: it is a
    directory if it exists, else its nearest existing ancestor is one, and that directory is
    writable (``os.access``; a read-only file system included). Messages name ``name``
    (default ``path``): "cannot ACTION NAME: ...".

    Raises:
        NeonsignNotADirectoryError: ``path`` or the ancestor is a file.
        NeonsignPermissionError: that directory cannot be written.
    """
    shown = os.fspath(path if name is None else name)
    base = nearest_existing(path)
    if not base.is_dir():
        raise NeonsignNotADirectoryError(
            f"cannot {action} {shown}: {base} is not a directory", errno.ENOTDIR, shown
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise NeonsignPermissionError(
            f"cannot {action} {shown}: {base} is not writable", errno.EACCES, shown
        )


def check_file_writable(path: str | os.PathLike[str], action: str = "write") -> None:
    """Check, before any work, that the file ``path`` can be written whole: a regular file or
    nothing there (a device or a pipe such as ``/dev/stdout`` is accepted as it is, it is
    written in place), and its directory exists and is writable (the file is written through a
    temporary name in that directory, :func:`atomic_write`).

    Raises:
        NeonsignIsADirectoryError: ``path`` is a directory.
        NeonsignFileNotFoundError: its directory does not exist.
        NeonsignNotADirectoryError / NeonsignPermissionError: as :func:`check_dir_writable`.
    """
    name = os.fspath(path)
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise NeonsignIsADirectoryError(
            f"cannot {action} {name}: it is a directory", errno.EISDIR, name
        )
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise NeonsignPermissionError(
                f"cannot {action} {name}: not writable", errno.EACCES, name
            )
        return
    if not target.parent.exists():
        raise NeonsignFileNotFoundError(
            f"cannot {action} {name}: the folder {target.parent} does not exist",
            errno.ENOENT,
            name,
        )
    check_dir_writable(target.parent, action, name)


def _swap_in(staging: Path, target: Path, replace: bool) -> None:
    """Rename ``staging`` to ``target``. ``target`` absent or an empty directory: one rename
    (rename(2) replaces an empty directory, and fails if another writer filled it meanwhile).
    Otherwise, with ``replace``: the old directory is renamed aside, the new one renamed in
    (the old one is put back if that fails), then the old one deleted."""
    try:
        os.rename(staging, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not replace:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise NeonsignFileExistsError(
                    f"{target} already exists and is not empty; refusing to replace it",
                    errno.EEXIST,
                    str(target),
                ) from None
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old / target.name, target)
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)


def move_entries(
    staging: Path,
    target: Path,
    *,
    names: Iterable[str] | None = None,
    last: Iterable[str] = (),
) -> None:
    """Move the entries of ``staging`` into the directory ``target`` (same file system), for
    when ``target`` itself cannot be renamed (a mount point) or holds other files to keep.

    The entries of ``target`` named in ``names`` (default: those ``staging`` brings) are moved
    aside first and deleted at the end; entries named in ``last`` (a model's card, a data set's
    marker) leave first and arrive last, so that a reader that trusts them only ever finds them
    beside a complete set. Other entries of ``target`` are left alone."""
    arriving = os.listdir(staging)
    replaced = set(arriving if names is None else names)
    final = set(last)
    trash = Path(tempfile.mkdtemp(prefix=".old-", suffix=".tmp", dir=target))
    try:
        for name in sorted(replaced, key=lambda n: n not in final):
            if os.path.lexists(target / name):
                os.rename(target / name, trash / name)
        for name in sorted(arriving, key=lambda n: n in final):
            os.rename(staging / name, target / name)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def atomic_dir(
    path: str | os.PathLike[str],
    fill: Callable[[Path], object],
    *,
    replace: bool = False,
    last: Iterable[str] = (),
    action: str = "write",
) -> Path:
    """Write the directory ``path`` whole or not at all: ``fill(staging)`` writes its content
    into a new temporary sibling directory, which is then renamed to ``path``.

    Readers see the old directory (or none) until the rename, then the complete new one. With
    ``replace`` an existing non-empty ``path`` is renamed aside, the new one renamed in, and the
    old one deleted: a crash in between leaves the new or the old directory under ``path`` and
    a ``.NAME.old-*`` sibling to delete. Files are fsynced before the rename and the tree gets
    the umask's modes (:func:`publish_tree`). On any failure -- a full disk in ``fill``, an
    interrupt -- the staging directory is removed and ``path`` is as it was. The parent
    directories of ``path`` are created if needed.

    A mount point (a volume mounted at ``path``) cannot be renamed: there the staging directory
    is made inside ``path`` and its entries are moved in (:func:`move_entries`, the ``last``
    names last).

    Raises:
        NeonsignFileExistsError: ``path`` is a non-empty directory and ``replace`` is false.
        NeonsignNotADirectoryError: ``path`` exists and is not a directory.
        NeonsignOSError subclasses: "cannot ACTION PATH: ..." (DiskFullError, permissions).
    """
    target = Path(os.path.realpath(path))
    with file_errors(action, path):
        check_dir_writable(path, action)
        if not replace and target.is_dir() and any(target.iterdir()):
            raise NeonsignFileExistsError(
                f"cannot {action} {os.fspath(path)}: it exists and is not empty",
                errno.EEXIST,
                os.fspath(path),
            )
        in_place = target.is_dir() and os.path.ismount(target)
        home = target if in_place else target.parent
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=home))
        try:
            fill(staging)
            publish_tree(staging)
            _sync_tree(staging)
            if in_place:
                move_entries(staging, target, last=last)
                staging.rmdir()
            else:
                _swap_in(staging, target, replace)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(home)
    return Path(path)


def publish_tree(root: str | os.PathLike[str]) -> None:
    """Give a directory tree copied by someone else's code (MLflow copies keep the source's
    mode bits) the umask's modes: :func:`dir_mode` for directories, :func:`file_mode` for
    files (plus the execute bits the umask allows where the file had them). Symlinks are left
    alone."""
    top = Path(root)
    fmode, dmode = file_mode(), dir_mode()
    with file_errors("set the permissions of", top):
        if top.is_file():
            os.chmod(top, fmode)
            return
        os.chmod(top, dmode)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, dmode)
            for name in filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    execs = os.stat(p).st_mode & 0o111 and dmode & 0o111
                    os.chmod(p, fmode | execs)
