"""neonsign's exception hierarchy.

Every error neonsign raises on bad input derives from :class:`NeonsignError` and also from the
built-in class a user would catch for it (``ValueError``, ``FileNotFoundError``, ``OSError``), so
``except ValueError`` keeps working. Messages name the file or field and say why.
"""

from __future__ import annotations

__all__ = [
    "NeonsignError",
    "NeonsignValueError",
    "DecodeError",
    "AnnotationError",
    "ResourceLimitError",
    "UnsupportedError",
    "DatasetNotFoundError",
    "DownloadError",
    "ChecksumError",
    "ModelError",
]


class NeonsignError(Exception):
    """Base class of every neonsign error."""


class NeonsignValueError(NeonsignError, ValueError):
    """An argument has a bad value, shape or dtype."""


class DecodeError(NeonsignError, ValueError):
    """An image file or buffer is malformed (bad magic, dimensions, maxval, truncated data)."""


class AnnotationError(NeonsignError, ValueError):
    """A GTSRB annotation CSV is malformed (header, field count, numbers, ROI outside the image)."""


class ResourceLimitError(NeonsignError, ValueError):
    """An input would need more memory or pixels than the configured limit allows."""


class UnsupportedError(NeonsignError, ValueError):
    """A requested feature is not available here (e.g. an ISA kernel this CPU lacks)."""


class DatasetNotFoundError(NeonsignError, FileNotFoundError):
    """No GTSRB split was found where the user pointed; the message lists where we looked."""


class DownloadError(NeonsignError, OSError):
    """A download failed (network, HTTP status, incomplete transfer)."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum does not match the expected one."""


class ModelError(NeonsignError, ValueError):
    """Model weights or a model directory are missing, malformed or of the wrong shape."""
