"""neonsign's exception hierarchy: the one error boundary of the library.

Every error a user can cause -- a bad argument, a bad or missing file, a permission, a full
disk, a bad environment value, a missing optional dependency -- reaches the caller as a
:class:`NeonsignError` subclass that also derives from the built-in class a user would catch for
it (``ValueError``, ``TypeError``, ``FileNotFoundError``, ``PermissionError``, ``OSError``,
``ImportError``), so ``except FileNotFoundError`` keeps working. Messages name the file or field
and say why. The command line turns a NeonsignError into ``neonsign COMMAND: error: ...`` with
exit status 2.

Library code converts :class:`OSError` at the point where it knows what it was doing with which
file: ``with file_errors("read the model card", path): ...`` or ``raise os_error(exc, "...")``.
"""

from __future__ import annotations

import errno as _errno
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = [
    "NeonsignError",
    "NeonsignValueError",
    "NeonsignTypeError",
    "NeonsignOverflowError",
    "ConfigError",
    "DecodeError",
    "AnnotationError",
    "ResourceLimitError",
    "UnsupportedError",
    "ModelError",
    "NeonsignOSError",
    "NeonsignFileNotFoundError",
    "NeonsignFileExistsError",
    "NeonsignPermissionError",
    "NeonsignIsADirectoryError",
    "NeonsignNotADirectoryError",
    "DiskFullError",
    "DatasetNotFoundError",
    "ModelNotFoundError",
    "DownloadError",
    "ChecksumError",
    "MissingDependencyError",
    "os_error",
    "file_errors",
    "require",
]


class NeonsignError(Exception):
    """Base class of every neonsign error."""


class NeonsignValueError(NeonsignError, ValueError):
    """An argument has a bad value, shape or dtype."""


class NeonsignTypeError(NeonsignError, TypeError):
    """An argument has the wrong type."""


class NeonsignOverflowError(NeonsignValueError, OverflowError):
    """An integer argument does not fit the C type it feeds (negative where a count or a time is
    needed, too large for 64 bits)."""


class ConfigError(NeonsignValueError):
    """A setting (an environment variable such as ``NEONSIGN_PORT``, or a configuration field)
    has a bad value; the message names the setting."""


class DecodeError(NeonsignError, ValueError):
    """An image file or buffer is malformed (bad magic, dimensions, maxval, truncated data)."""


class AnnotationError(NeonsignError, ValueError):
    """A GTSRB annotation CSV is malformed (header, field count, numbers, ROI outside the image)."""


class ResourceLimitError(NeonsignError, ValueError):
    """An input would need more memory or pixels than the configured limit allows."""


class UnsupportedError(NeonsignError, ValueError):
    """A requested feature is not available here (e.g. an ISA kernel this CPU lacks)."""


class ModelError(NeonsignError, ValueError):
    """Model weights or a model directory are missing, malformed or of the wrong shape."""


class NeonsignOSError(NeonsignError, OSError):
    """A file or directory could not be read or written. ``errno`` and ``filename`` are set as
    on the OSError it replaces; ``str()`` is the message alone (it already names the file)."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        if errno is None:
            OSError.__init__(self, message)
        else:
            OSError.__init__(self, errno, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[NeonsignOSError], tuple[str, int | None, str | None]]:
        return (type(self), (self.message, self.errno, self.filename))


class NeonsignFileNotFoundError(NeonsignOSError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class NeonsignFileExistsError(NeonsignOSError, FileExistsError):
    """A destination exists and neonsign will not overwrite it without being asked."""


class NeonsignPermissionError(NeonsignOSError, PermissionError):
    """A file or directory cannot be read or written with the current permissions."""


class NeonsignIsADirectoryError(NeonsignOSError, IsADirectoryError):
    """A file was expected where there is a directory."""


class NeonsignNotADirectoryError(NeonsignOSError, NotADirectoryError):
    """A directory was expected where there is a file."""


class DiskFullError(NeonsignOSError):
    """No space left on the device (or the quota is exhausted) while writing."""


class DatasetNotFoundError(NeonsignFileNotFoundError):
    """No GTSRB split was found where the user pointed; the message lists where we looked."""

    def __init__(
        self, message: str, errno: int | None = _errno.ENOENT, filename: str | None = None
    ):
        super().__init__(message, errno, filename)


class ModelNotFoundError(ModelError, NeonsignFileNotFoundError):
    """A model directory, model card or weights file does not exist: a ModelError (like every
    problem with a model) that is also a FileNotFoundError."""

    def __init__(
        self, message: str, errno: int | None = _errno.ENOENT, filename: str | None = None
    ):
        super().__init__(message, errno, filename)


class DownloadError(NeonsignOSError):
    """A download failed (network, HTTP status, incomplete transfer)."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum does not match the expected one."""


class MissingDependencyError(NeonsignError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


_BY_ERRNO: dict[int, type[NeonsignOSError]] = {
    _errno.ENOENT: NeonsignFileNotFoundError,
    _errno.EEXIST: NeonsignFileExistsError,
    _errno.EACCES: NeonsignPermissionError,
    _errno.EPERM: NeonsignPermissionError,
    _errno.EROFS: NeonsignPermissionError,
    _errno.EISDIR: NeonsignIsADirectoryError,
    _errno.ENOTDIR: NeonsignNotADirectoryError,
    _errno.ENOSPC: DiskFullError,
    _errno.EDQUOT: DiskFullError,
    _errno.EFBIG: DiskFullError,
}


def os_error_class(code: int | None) -> type[NeonsignOSError]:
    """The NeonsignOSError subclass for an errno value (the C binding uses it too)."""
    return _BY_ERRNO.get(code or 0, NeonsignOSError)


def os_error(
    exc: OSError, action: str, path: str | os.PathLike[str] | None = None
) -> NeonsignOSError:
    """Convert ``exc`` into the matching NeonsignOSError: "cannot ACTION PATH: REASON".

    ``action`` says what neonsign was doing ("read the model card", "write the report");
    ``path`` defaults to the exception's filename. A NeonsignOSError is returned unchanged.
    """
    if isinstance(exc, NeonsignOSError):
        return exc
    name = os.fspath(path) if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" {name}" if name is not None else ""
    cls = os_error_class(exc.errno)
    err = cls(f"cannot {action}{where}: {reason}", exc.errno, None if name is None else str(name))
    err.__cause__ = exc
    return err


@contextmanager
def file_errors(action: str, path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Re-raise any OSError of the block as :func:`os_error` ``(exc, action, path)``."""
    try:
        yield
    except NeonsignError:
        raise
    except OSError as exc:
        raise os_error(exc, action, path) from exc


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency or raise MissingDependencyError naming the extra:
    ``torch = require("torch", "torch", "training")``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", maxsplit=1)[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module exists but one of its own imports is broken: a real bug
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{top} is not installed{why}; install it with: pip install 'neonsign[{extra}]'",
            name=top,
        ) from exc
