"""The ASGI app: :func:`create_app` assembles the service, the middleware, the error handlers
and the routes; :func:`app_from_env` is uvicorn's factory; :func:`run_server` is
``neonsign serve``.

The model is loaded and warmed in the app's lifespan (a source that cannot be loaded stops the
server from starting); SIGHUP reloads it. ``uvicorn neonsign.app.serving.app:app`` serves the
app built from the ``NEONSIGN_*`` variables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from ...errors import ConfigError, require
from .config import ServeConfig, ServerOptions
from .models import LoadedModel

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fastapi import FastAPI

    from .service import Service

__all__ = ["create_app", "app_from_env", "run_server", "FACTORY"]

#: The uvicorn factory that :func:`run_server` hands to every worker process.
FACTORY = "neonsign.app.serving.app:app_from_env"


def create_app(model: str | ServeConfig, **options: Any) -> FastAPI:
    """Build the ASGI app serving ``model`` (a source string, or a full :class:`ServeConfig`).

    ``options`` are :class:`ServeConfig` fields. The model is loaded and warmed at startup
    (the lifespan); a source that cannot be loaded stops the server from starting.

    Raises:
        ConfigError: a bad option, or both a ServeConfig and options.
        MissingDependencyError: the ``serve`` extra is not installed.
    """
    if isinstance(model, ServeConfig) and options:
        raise ConfigError("pass either a ServeConfig or keyword options, not both")
    config = model if isinstance(model, ServeConfig) else ServeConfig(model=model, **options)
    require("fastapi", "serve", "serving")
    require("prometheus_client", "serve", "serving metrics")
    from .errors import install_error_handlers
    from .fastpath import PredictFastPath, ServingAPI
    from .guard import RequestGuard
    from .routes import router
    from .service import Service

    service = Service.build(config)
    app = ServingAPI(
        title="neonsign",
        version=_version(),
        lifespan=_lifespan,
        description="Traffic-sign recognition (GTSRB, 43 classes) on neonsign's native engine.",
        docs_url=None,
        redoc_url=None,  # they load their JavaScript from a CDN; see /docs
    )
    app.state.service = service
    app.state.holder, app.state.metrics, app.state.config = service.holder, service.metrics, config
    app.add_middleware(RequestGuard, limit=config.max_upload_bytes, metrics=service.metrics)
    install_error_handlers(app)
    app.include_router(router)
    app.fast_path = PredictFastPath(app.full_stack, service)  # in front of all of the above
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model before the first request, reload on SIGHUP, stop the workers at exit."""
    service = cast("Service", app.state.service)
    await service.reload()
    loop = asyncio.get_running_loop()
    hup = _reload_on_sighup(loop, service)
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        service.close()


def _reload_on_sighup(loop: asyncio.AbstractEventLoop, service: Service) -> bool:
    """Make SIGHUP reload the model (main thread only: signal handlers live there)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return False
    try:
        loop.add_signal_handler(signal.SIGHUP, service.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _version() -> str:
    from ... import __version__

    return str(__version__)


def app_from_env() -> FastAPI:
    """uvicorn factory: ``uvicorn --factory neonsign.app.serving:app_from_env`` (config from
    ``NEONSIGN_*`` environment variables, see :meth:`ServeConfig.from_env`)."""
    return create_app(ServeConfig.from_env())


def run_server(
    config: ServeConfig, options: ServerOptions | None = None, *, lean_supervisor: bool = False
) -> None:
    """Serve ``config`` with uvicorn until stopped (``neonsign serve``).

    The model is loaded once first, so a bad source fails here, before the port is bound.
    The config reaches uvicorn's worker processes through the environment (each runs
    :func:`app_from_env`).

    ``lean_supervisor`` (what ``neonsign serve`` passes): with several workers, this process
    then *becomes* uvicorn's supervisor by re-executing the interpreter on a one-line
    bootstrap that imports uvicorn alone (``os.execv``; same PID, same signals, same settings),
    instead of supervising while holding NumPy, the extension and the model it loaded to check
    the source: about 30 MiB less per server. Only for a process that has nothing else to do
    (the call never returns, and no ``finally`` or ``atexit`` of the caller runs).

    Raises:
        ModelError, FileNotFoundError: the model cannot be loaded.
        MissingDependencyError: the ``serve`` extra is not installed.
    """
    options = options or ServerOptions()
    uvicorn = require("uvicorn", "serve", "neonsign serve")
    config = dataclasses.replace(config, host=options.host)  # the admin endpoint's policy
    LoadedModel.load(config.model, config.kernel, config.engine_threads)  # fail before binding
    os.environ.update(config.to_env())  # the factory (and every worker) reads it back
    os.environ.update(options.timeouts_env())  # the protocol (in every worker) reads them
    settings = uvicorn_settings(options)
    if lean_supervisor and options.workers > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-c", _SUPERVISOR, json.dumps(settings)])
    uvicorn.run(**settings)


#: The whole of a lean supervisor (see :func:`run_server`): uvicorn.run with JSON settings.
_SUPERVISOR = "import json, sys, uvicorn; uvicorn.run(**json.loads(sys.argv[1]))"


def uvicorn_settings(options: ServerOptions) -> dict[str, Any]:
    """``uvicorn.run`` keyword arguments for ``options`` (JSON-serialisable: the app and the
    HTTP protocol are import strings, resolved in each worker)."""
    from .protocol import PROTOCOL

    return {
        "app": FACTORY,
        "factory": True,
        "host": options.host,
        "port": options.port,
        "workers": options.workers,
        "log_level": options.log_level.lower(),
        "limit_concurrency": options.limit_concurrency,
        "timeout_keep_alive": options.keep_alive,
        "http": PROTOCOL,
        "timeout_graceful_shutdown": 10,
    }


def __getattr__(name: str) -> Any:
    # ``uvicorn neonsign.app.serving.app:app``: the app is built from the environment on first
    # access.
    if name == "app":
        globals()["app"] = value = app_from_env()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
