"""``neonsign serve``: the command-line entry of :mod:`neonsign.app.serving`.

The server itself lives in :mod:`neonsign.app.serving`; this module only registers the command
(it moves to the ``neonsign.cli`` package).
"""

import os
from typing import TYPE_CHECKING

from .app.serving import (
    LoadedModel,
    ServeConfig,
    app_from_env,  # uvicorn runs "neonsign.serve:app_from_env"
)
from .app.serving.config import env_int as _env_int
from .errors import NeonsignError, NeonsignValueError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import argparse

__all__ = ["register_cli", "app_from_env"]


def register_cli(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``neonsign serve``."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (FastAPI + uvicorn on the native engine)",
        description="Serve a model directory over HTTP. Every option defaults to its NEONSIGN_* "
        "environment variable (the container sets them).",
    )
    env = os.environ.get
    p.add_argument(
        "model",
        nargs="?",
        default=env("NEONSIGN_MODEL"),
        help="model directory (model.safetensors + model_card.json) or registered "
        "source; default $NEONSIGN_MODEL",
    )
    p.add_argument(
        "--host",
        default=env("NEONSIGN_HOST", "127.0.0.1"),
        help="address to bind (default $NEONSIGN_HOST or 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("NEONSIGN_PORT", "8000")),
        help="port (default $NEONSIGN_PORT or 8000)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(env("NEONSIGN_WORKERS", "1")),
        help="worker processes (default $NEONSIGN_WORKERS or 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=_env_int("THREADS", None),
        help="inference threads per worker (default: CPU count)",
    )
    p.add_argument(
        "--engine-threads",
        type=int,
        default=_env_int("ENGINE_THREADS", 1),
        help="threads per engine call (default 1; 0: the whole shared pool)",
    )
    p.add_argument("--kernel", default=env("NEONSIGN_KERNEL"), help="ref, neon, avx2, avx512")
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=_env_int("MAX_UPLOAD_BYTES", ServeConfig.max_upload_bytes),
    )
    p.add_argument("--max-pixels", type=int, default=_env_int("MAX_PIXELS", ServeConfig.max_pixels))
    p.add_argument("--max-batch", type=int, default=_env_int("MAX_BATCH", ServeConfig.max_batch))
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=_env_int("LIMIT_CONCURRENCY", None),
        help="answer 503 beyond this many concurrent connections (uvicorn)",
    )
    p.add_argument("--log-level", default=env("NEONSIGN_LOG_LEVEL", "info"))
    p.set_defaults(handler=_cli_serve)


def _cli_serve(args: "argparse.Namespace") -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise NeonsignError(
            "neonsign serve needs the serve extra: pip install 'neonsign[serve]'"
        ) from exc
    if not args.model:
        raise NeonsignValueError("no model given: pass a model directory or set NEONSIGN_MODEL")
    config = ServeConfig(
        model=str(args.model),
        threads=args.threads,
        engine_threads=args.engine_threads or None,
        kernel=args.kernel,
        max_upload_bytes=args.max_upload_bytes,
        max_pixels=args.max_pixels,
        max_batch=args.max_batch,
        admin_token=os.environ.get("NEONSIGN_ADMIN_TOKEN") or None,
    )
    LoadedModel.load(config.model, config.kernel, config.engine_threads)  # fail before binding
    os.environ.update(config.to_env())  # the factory (and every worker) reads it back
    uvicorn.run(
        "neonsign.serve:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        limit_concurrency=args.limit_concurrency,
        timeout_graceful_shutdown=10,
    )
    return 0
