"""``neonsign serve``: serve a model over HTTP (FastAPI + uvicorn on the native engine).

Every option defaults to its ``NEONSIGN_*`` environment variable (the container sets them).
The variables are read when the command runs, not when the parser is built, so a bad value
(``NEONSIGN_PORT=abc``) is a one-line ConfigError of this command only.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, require
from ..serve import LoadedModel, ServeConfig, _env_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a model directory over HTTP. Every option defaults to its NEONSIGN_* "
        "environment variable (the container sets them)."
    )
    # Defaults are None: run() resolves them from the environment (see _Server.resolve).
    parser.add_argument(
        "model",
        nargs="?",
        default=None,
        help="model directory (model.safetensors + model_card.json) or registered "
        "source; default $NEONSIGN_MODEL",
    )
    parser.add_argument("--host", help="address to bind (default $NEONSIGN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $NEONSIGN_PORT or 8000)")
    parser.add_argument(
        "--workers", type=int, help="worker processes (default $NEONSIGN_WORKERS or 1)"
    )
    parser.add_argument(
        "--threads", type=int, help="inference threads per worker (default: CPU count)"
    )
    parser.add_argument(
        "--engine-threads",
        type=int,
        help="threads per engine call (default 1; 0: the whole shared pool)",
    )
    parser.add_argument("--kernel", help="ref, neon, avx2, avx512")
    parser.add_argument("--max-upload-bytes", type=int)
    parser.add_argument("--max-pixels", type=int)
    parser.add_argument("--max-batch", type=int)
    parser.add_argument(
        "--limit-concurrency",
        type=int,
        help="answer 503 beyond this many concurrent connections (uvicorn)",
    )
    parser.add_argument("--log-level")


@dataclass(frozen=True)
class _Server:
    """uvicorn's settings: an option, else its NEONSIGN_* variable, else the default."""

    host: str
    port: int
    workers: int
    limit_concurrency: int | None
    log_level: str

    @classmethod
    def resolve(cls, args: argparse.Namespace) -> _Server:
        def pick(value: Any, name: str, default: Any) -> Any:
            return value if value is not None else _env_int(name, default)

        port = pick(args.port, "PORT", 8000)
        if port is None or not 0 <= port <= 65535:
            raise ConfigError(f"port (--port, NEONSIGN_PORT) must be 0..65535, got {port}")
        workers = pick(args.workers, "WORKERS", 1)
        if workers is None or workers < 1:
            raise ConfigError(f"workers (--workers, NEONSIGN_WORKERS) must be >= 1, got {workers}")
        return cls(
            host=args.host or os.environ.get("NEONSIGN_HOST", "127.0.0.1"),
            port=port,
            workers=workers,
            limit_concurrency=pick(args.limit_concurrency, "LIMIT_CONCURRENCY", None),
            log_level=args.log_level or os.environ.get("NEONSIGN_LOG_LEVEL", "info"),
        )


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """The app's settings: options override the NEONSIGN_* variables (ServeConfig.from_env)."""
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("model", "threads", "kernel", "max_upload_bytes", "max_pixels", "max_batch")
        if getattr(args, name) is not None
    }
    if args.engine_threads is not None:  # 0: the whole shared pool
        overrides["engine_threads"] = args.engine_threads or None
    return ServeConfig.from_env(**overrides)


def run(args: argparse.Namespace) -> int:
    uvicorn = require("uvicorn", "serve", "neonsign serve")
    server = _Server.resolve(args)
    config = _serve_config(args)
    LoadedModel.load(config.model, config.kernel, config.engine_threads)  # fail before binding
    os.environ.update(config.to_env())  # the factory (and every worker) reads it back
    uvicorn.run(
        "neonsign.serve:app_from_env",
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        log_level=server.log_level,
        limit_concurrency=server.limit_concurrency,
        timeout_graceful_shutdown=10,
    )
    return 0
