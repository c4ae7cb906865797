"""``neonsign serve``: serve a model over HTTP (FastAPI + uvicorn on the native engine).

Every option defaults to its ``NEONSIGN_*`` environment variable (the container sets them).
The variables are read when the command runs, not when the parser is built, so a bad value
(``NEONSIGN_PORT=abc``) is a one-line ConfigError of this command only.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app.serving import ServeConfig, ServerOptions


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a model directory over HTTP. Every option defaults to its NEONSIGN_* "
        "environment variable (the container sets them)."
    )
    # Defaults are None: run() resolves them through the serving config (NEONSIGN_* variables).
    parser.add_argument(
        "model",
        nargs="?",
        default=None,
        help="model directory (model.safetensors + model_card.json), learning-path .pth or "
        "registered source; default $NEONSIGN_MODEL",
    )
    parser.add_argument("--host", help="address to bind (default $NEONSIGN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port (default $NEONSIGN_PORT or 8000)")
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
    parser.add_argument(
        "--header-timeout",
        type=int,
        help="seconds a connection may take to send a request's headers (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=int,
        help="seconds a request may take to send its body after its headers (default 60)",
    )
    parser.add_argument(
        "--keep-alive", type=int, help="seconds an idle keep-alive connection stays open (5)"
    )


def _port(text: str) -> int:
    """A TCP port, 1..65535 (uvicorn would wrap 84043 to 18507 silently)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


_SERVER_OPTIONS = (
    "host",
    "port",
    "workers",
    "limit_concurrency",
    "log_level",
    "header_timeout",
    "body_timeout",
    "keep_alive",
)
_APP_OPTIONS = ("model", "threads", "kernel", "max_upload_bytes", "max_pixels", "max_batch")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options given on the command line (they override the NEONSIGN_* variables)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def settings(args: argparse.Namespace) -> tuple[ServeConfig, ServerOptions]:
    """The app's and uvicorn's settings: an option, else its NEONSIGN_* variable, else the
    default (read here, when the command runs; a bad value is a ConfigError)."""
    from ..app.serving import ServeConfig, ServerOptions

    app_options = _given(args, _APP_OPTIONS)
    if args.engine_threads is not None:  # 0: the whole shared pool
        app_options["engine_threads"] = args.engine_threads or None
    return ServeConfig.from_env(**app_options), ServerOptions.from_env(
        **_given(args, _SERVER_OPTIONS)
    )


def run(args: argparse.Namespace) -> int:
    from ..app.serving import run_server

    run_server(*settings(args), lean_supervisor=True)
    return 0
