"""Serving settings: :class:`ServeConfig` (what the app serves and its limits) and
:class:`ServerOptions` (how uvicorn runs it).

This module is the only reader of the ``NEONSIGN_*`` serve settings. Every value read from the
environment is checked here, so a bad one (``NEONSIGN_PORT=abc``, ``NEONSIGN_WORKERS=-1``)
fails with a :class:`~neonsign.errors.ConfigError` that names the variable, the value and the
valid range, before anything is loaded or bound.

Settings reach uvicorn's worker processes through the environment: ``neonsign serve`` writes
:meth:`ServeConfig.to_env` into it and each worker reads it back with
:meth:`ServeConfig.from_env`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "LOG_LEVELS",
    "ServeConfig",
    "ServerOptions",
    "env_int",
    "env_str",
    "is_loopback",
]

ENV_PREFIX = "NEONSIGN_"

#: uvicorn's log levels.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

#: The integer settings and their valid ranges (inclusive; None: no upper bound).
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "PORT": (1, 65535),
    "WORKERS": (1, None),
    "THREADS": (1, None),
    "ENGINE_THREADS": (0, None),  # 0: the engine's whole shared pool
    "MAX_UPLOAD_BYTES": (1, None),
    "MAX_PIXELS": (1, None),
    "MAX_BATCH": (1, None),
    "LIMIT_CONCURRENCY": (1, None),
    "RELOAD_TIMEOUT": (1, None),
    "MAX_BATCH_PIXELS": (1, None),
    "BATCH_QUEUE": (1, None),
    "MAX_QUEUE": (1, None),
    "INLINE_PIXELS": (0, None),
    "REDUCE_JPEG_ABOVE": (1, None),
    "HEADER_TIMEOUT": (1, None),
    "BODY_TIMEOUT": (1, None),
    "KEEP_ALIVE": (1, None),
}


def _range_text(low: int, high: int | None) -> str:
    return f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"


def env_str(name: str, default: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``NEONSIGN_<name>`` (``default`` when unset or empty)."""
    raw = (os.environ if environ is None else environ).get(ENV_PREFIX + name, "")
    return raw if raw else default


def env_int(name: str, default: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """``NEONSIGN_<name>`` as an integer inside its valid range (``default`` when unset or
    empty).

    Raises:
        ConfigError: not an integer, or outside the range; the message names the variable,
            the value and the range.
    """
    raw = env_str(name, None, environ)
    if raw is None:
        return default
    low, high = _INT_RANGES[name]
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise ConfigError(
            f"environment variable {ENV_PREFIX}{name}={raw!r} is not valid: "
            f"expected {_range_text(low, high)}"
        )
    return value


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """A field set in Python (not from the environment): an int in [low, high]."""
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    )
    if in_range:
        return
    want = "a positive int" if (low, high) == (1, None) else _range_text(low, high)
    raise ConfigError(f"{name} must be {want}, got {value!r}")


@dataclass(frozen=True)
class ServeConfig:
    """What the app serves and the limits it enforces.

    Each field can also come from an environment variable ``NEONSIGN_<FIELD>`` (upper case,
    see :meth:`from_env`): that is how ``neonsign serve`` hands the settings to uvicorn's
    worker processes and how the container is configured.

    Attributes:
        model: model source: a model directory, or ``scheme:...`` of a registered loader.
        threads: threads that decode, preprocess and run inference (None: CPU count).
        engine_threads: threads per engine call (None: the shared pool; 1 suits batch 1).
        kernel: engine kernel (None: ``NEONSIGN_KERNEL`` or the best available).
        max_upload_bytes: largest request body; larger ones get 413 before they are read.
        max_pixels: largest ``width * height`` decoded; checked from the header (413).
        max_batch: most images in one ``/predict/batch`` request (413 beyond).
        admin_token: if set, ``/admin/reload`` needs ``Authorization: Bearer <token>`` and may
            then name another source; if unset it reloads the configured source only, and only
            on a loopback address (see ``host``): elsewhere it is disabled (403).
        host: the address the server is bound to, when known (``neonsign serve`` sets it from
            ``--host`` / ``NEONSIGN_HOST``). Bound to a non-loopback address (the container's
            ``0.0.0.0``), the admin endpoint needs ``admin_token``: the deployment opts in by
            setting ``NEONSIGN_ADMIN_TOKEN``. None: in-process use (tests, an embedding app);
            each request's local address is checked instead.
        reload_timeout: seconds a reload may take (read the source, build, warm) before it is
            abandoned (504 ``reload_timeout``; the previous model keeps serving and later
            reloads are not blocked by the abandoned one).
        max_batch_pixels: declared pixels of one ``/predict/batch`` request, all its images
            together, checked from the headers before decoding (413 ``too_many_pixels``).
        batch_queue: batch requests processed at once per worker (one thread decodes them);
            more are answered 503 ``busy`` and ``/readyz`` reports the saturation.
        max_queue: single-image requests waiting per lane; more are answered 503 ``busy``.
        inline_pixels: single images declaring at most this many pixels are prepared on the
            event loop, without a thread hand-off (0: never).
        reduce_jpeg_above: a whole JPEG of more pixels is decoded at a reduced DCT scale (keeping
            at least this many pixels): a camera photo costs a fraction of a full decode.
    """

    model: str
    threads: int | None = None
    engine_threads: int | None = 1
    kernel: str | None = None
    max_upload_bytes: int = 16 << 20
    max_pixels: int = 4096 * 4096
    max_batch: int = 64
    admin_token: str | None = None
    host: str | None = None
    reload_timeout: int = 120
    max_batch_pixels: int = 4096 * 4096
    batch_queue: int = 2
    max_queue: int = 256
    inline_pixels: int = 128 * 128
    reduce_jpeg_above: int = 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a non-empty source string, got {self.model!r}")
        for name in ("threads", "engine_threads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "max_batch",
            "reload_timeout",
            "max_batch_pixels",
            "batch_queue",
            "max_queue",
            "reduce_jpeg_above",
        ):
            _check_int(name, getattr(self, name), 1)
        _check_int("inline_pixels", self.inline_pixels, 0)
        if self.admin_token is not None and (
            not isinstance(self.admin_token, str) or not self.admin_token.isprintable()
        ):
            raise ConfigError("admin_token must be a string of printable characters")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServeConfig:
        """Build from ``NEONSIGN_MODEL``, ``NEONSIGN_THREADS``, ``NEONSIGN_ENGINE_THREADS``
        (0: the shared pool), ``NEONSIGN_KERNEL``, ``NEONSIGN_MAX_UPLOAD_BYTES``,
        ``NEONSIGN_MAX_PIXELS``, ``NEONSIGN_MAX_BATCH``, ``NEONSIGN_ADMIN_TOKEN`` (``environ``:
        default ``os.environ``); ``overrides`` (field values) win.

        Raises:
            ConfigError: a variable has a bad value, or no model is given.
        """
        model = env_str("MODEL", None, environ)
        if model is None and "model" not in overrides:
            raise ConfigError(
                "no model to serve: set NEONSIGN_MODEL to a model directory (or pass one)"
            )
        values: dict[str, Any] = {
            "model": model,
            "threads": env_int("THREADS", None, environ),
            "engine_threads": env_int("ENGINE_THREADS", 1, environ) or None,
            "kernel": env_str("KERNEL", None, environ),
            "max_upload_bytes": env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes, environ),
            "max_pixels": env_int("MAX_PIXELS", cls.max_pixels, environ),
            "max_batch": env_int("MAX_BATCH", cls.max_batch, environ),
            "admin_token": env_str("ADMIN_TOKEN", None, environ),
            "host": env_str("HOST", None, environ),
            "reload_timeout": env_int("RELOAD_TIMEOUT", cls.reload_timeout, environ),
            "max_batch_pixels": env_int("MAX_BATCH_PIXELS", cls.max_batch_pixels, environ),
            "batch_queue": env_int("BATCH_QUEUE", cls.batch_queue, environ),
            "max_queue": env_int("MAX_QUEUE", cls.max_queue, environ),
            "inline_pixels": env_int("INLINE_PIXELS", cls.inline_pixels, environ),
            "reduce_jpeg_above": env_int("REDUCE_JPEG_ABOVE", cls.reduce_jpeg_above, environ),
        }
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables :meth:`from_env` reads back into this config."""
        env = {
            "MODEL": self.model,
            "THREADS": "" if self.threads is None else str(self.threads),
            "ENGINE_THREADS": "0" if self.engine_threads is None else str(self.engine_threads),
            "KERNEL": self.kernel or "",
            "MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "MAX_PIXELS": str(self.max_pixels),
            "MAX_BATCH": str(self.max_batch),
            "ADMIN_TOKEN": self.admin_token or "",
            "HOST": self.host or "",
            "RELOAD_TIMEOUT": str(self.reload_timeout),
            "MAX_BATCH_PIXELS": str(self.max_batch_pixels),
            "BATCH_QUEUE": str(self.batch_queue),
            "MAX_QUEUE": str(self.max_queue),
            "INLINE_PIXELS": str(self.inline_pixels),
            "REDUCE_JPEG_ABOVE": str(self.reduce_jpeg_above),
        }
        return {ENV_PREFIX + k: v for k, v in env.items()}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1): a server bound
    there is reachable from this machine only. Any other address, ``0.0.0.0`` and ``::``
    included, is reachable from elsewhere."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@dataclass(frozen=True)
class ServerOptions:
    """How uvicorn runs the app (``neonsign serve``); not needed by :func:`create_app`.

    Attributes:
        host: address to bind.
        port: TCP port, 1..65535.
        workers: worker processes, each with its own app, model and metrics.
        limit_concurrency: answer 503 beyond this many concurrent connections (None: no cap).
        log_level: one of :data:`LOG_LEVELS`.
        header_timeout: seconds a connection may take to send a request's headers (from its
            opening, or from the previous response); then it is closed.
        body_timeout: seconds a request may take to send its body once its headers are in.
        keep_alive: seconds an idle keep-alive connection stays open (uvicorn's
            ``timeout_keep_alive``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    limit_concurrency: int | None = None
    log_level: str = "info"
    header_timeout: int = 10
    body_timeout: int = 60
    keep_alive: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host must be a non-empty address, got {self.host!r}")
        _check_int("port", self.port, *_INT_RANGES["PORT"])
        _check_int("workers", self.workers, 1)
        if self.limit_concurrency is not None:
            _check_int("limit_concurrency", self.limit_concurrency, 1)
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            _check_int(name, getattr(self, name), 1)
        if not isinstance(self.log_level, str) or self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )

    def timeouts_env(self) -> dict[str, str]:
        """The connection timeouts as ``NEONSIGN_*`` variables: how they reach the HTTP
        protocol of every uvicorn worker process (:mod:`neonsign.app.serving.protocol`)."""
        return {
            ENV_PREFIX + "HEADER_TIMEOUT": str(self.header_timeout),
            ENV_PREFIX + "BODY_TIMEOUT": str(self.body_timeout),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerOptions:
        """Build from ``NEONSIGN_HOST``, ``NEONSIGN_PORT``, ``NEONSIGN_WORKERS``,
        ``NEONSIGN_LIMIT_CONCURRENCY``, ``NEONSIGN_LOG_LEVEL``, ``NEONSIGN_HEADER_TIMEOUT``,
        ``NEONSIGN_BODY_TIMEOUT`` and ``NEONSIGN_KEEP_ALIVE``; ``overrides`` win.

        Raises:
            ConfigError: a variable has a bad value.
        """
        level = env_str("LOG_LEVEL", cls.log_level, environ) or cls.log_level
        if level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"environment variable {ENV_PREFIX}LOG_LEVEL={level!r} is not valid: "
                f"expected one of {', '.join(LOG_LEVELS)}"
            )
        values: dict[str, Any] = {
            "host": env_str("HOST", cls.host, environ),
            "port": env_int("PORT", cls.port, environ),
            "workers": env_int("WORKERS", cls.workers, environ),
            "limit_concurrency": env_int("LIMIT_CONCURRENCY", None, environ),
            "log_level": level,
            "header_timeout": env_int("HEADER_TIMEOUT", cls.header_timeout, environ),
            "body_timeout": env_int("BODY_TIMEOUT", cls.body_timeout, environ),
            "keep_alive": env_int("KEEP_ALIVE", cls.keep_alive, environ),
        }
        values.update(overrides)
        return cls(**values)
