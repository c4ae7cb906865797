"""HTTP serving of TrafficSignNet on the native engine (FastAPI + uvicorn, no PyTorch).

Endpoints (``create_app(model)`` builds the ASGI app; ``neonsign serve MODEL`` runs it)::

    POST /predict         multipart field ``file`` (PNG, JPEG or PPM) -> top-1 + top-5 (also /predict/)
    POST /predict/batch   multipart field ``files`` (several images)  -> {"predictions": [...]}
    GET  /healthz         the process answers
    GET  /readyz          a model is loaded and warmed (503 before)
    GET  /model           the model card of the model being served
    GET  /metrics         Prometheus metrics (latency, predictions per class, errors, input drift)
    POST /admin/reload    load the model source again and swap it in atomically (also SIGHUP)
    GET  /                a self-contained upload page;  GET /docs: self-contained API reference

Models come from a *source*: a model directory (``model.safetensors`` + ``model_card.json``,
whose ``weights_sha256`` is checked) or any scheme registered with
:func:`register_model_loader` (the MLflow registry plugs in there). Preprocessing follows the
card's ``preprocessing`` section (size, mean, std), as in training. Uploaded images carry no
ROI annotation, so the whole image is resized.

Concurrency: decoding, preprocessing and inference run in a thread pool (the C engine and
Pillow release the GIL), so the event loop never blocks. A reload builds and warms the new
engine first, then replaces one reference: requests already running finish on the old engine.

Importing this module does not import FastAPI, uvicorn or prometheus-client; they are imported
when an app is created (``pip install 'neonsign[serve]'``).
"""

# No "from __future__ import annotations": FastAPI evaluates the endpoints' annotations.
import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import preprocess
from .data import CLASS_NAMES
from .errors import (
    ConfigError,
    DecodeError,
    ModelError,
    NeonsignError,
    NeonsignValueError,
    ResourceLimitError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fastapi import FastAPI

    from .engine import Engine

__all__ = [
    "ServeConfig",
    "LoadedModel",
    "ModelHolder",
    "register_model_loader",
    "load_model_source",
    "decode_image",
    "create_app",
    "app_from_env",
]

log = logging.getLogger("neonsign.serve")

_STATIC = Path(__file__).resolve().parent / "static"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_ENV_PREFIX = "NEONSIGN_"


# ---------------------------------------------------------------------------------------------
# Configuration


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(_ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {_ENV_PREFIX}{name} must be an int, got {raw!r}"
        ) from None


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server can be configured with.

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
            then name another source; if unset it reloads the configured source only.
    """

    model: str
    threads: int | None = None
    engine_threads: int | None = 1
    kernel: str | None = None
    max_upload_bytes: int = 16 << 20
    max_pixels: int = 4096 * 4096
    max_batch: int = 64
    admin_token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise NeonsignValueError(f"model must be a non-empty source string, got {self.model!r}")
        for name in ("threads", "engine_threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise NeonsignValueError(f"{name} must be a positive int or None, got {v!r}")
        for name in ("max_upload_bytes", "max_pixels", "max_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NeonsignValueError(f"{name} must be a positive int, got {v!r}")

    @classmethod
    def from_env(cls, **overrides: Any) -> "ServeConfig":
        """Build from ``NEONSIGN_MODEL``, ``NEONSIGN_THREADS``, ``NEONSIGN_ENGINE_THREADS``,
        ``NEONSIGN_KERNEL``, ``NEONSIGN_MAX_UPLOAD_BYTES``, ``NEONSIGN_MAX_PIXELS``,
        ``NEONSIGN_MAX_BATCH``, ``NEONSIGN_ADMIN_TOKEN``; ``overrides`` win."""
        model = os.environ.get(_ENV_PREFIX + "MODEL", "")
        if not model and "model" not in overrides:
            raise NeonsignValueError(
                "no model to serve: set NEONSIGN_MODEL to a model directory (or pass one)"
            )
        engine_threads = _env_int("ENGINE_THREADS", 1)
        values: dict[str, Any] = {
            "model": model,
            "threads": _env_int("THREADS", None),
            "engine_threads": engine_threads if engine_threads else None,
            "kernel": os.environ.get(_ENV_PREFIX + "KERNEL") or None,
            "max_upload_bytes": _env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            "max_pixels": _env_int("MAX_PIXELS", cls.max_pixels),
            "max_batch": _env_int("MAX_BATCH", cls.max_batch),
            "admin_token": os.environ.get(_ENV_PREFIX + "ADMIN_TOKEN") or None,
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
        }
        return {_ENV_PREFIX + k: v for k, v in env.items()}


# ---------------------------------------------------------------------------------------------
# Model sources

#: ``loader(source) -> (state_dict of float32 arrays, model card)``.
ModelLoader = Callable[[str], "tuple[Mapping[str, np.ndarray], dict[str, Any]]"]
_LOADERS: dict[str, ModelLoader] = {}


def register_model_loader(scheme: str, loader: ModelLoader) -> None:
    """Serve models from sources written ``<scheme>:<rest>`` (e.g. ``models:/gtsrb/3`` for a
    registry). ``loader(source)`` returns ``(state_dict, card)`` and must verify integrity."""
    if not scheme.isidentifier() or len(scheme) < 2:
        raise NeonsignValueError(f"scheme must be an identifier of 2+ characters, got {scheme!r}")
    _LOADERS[scheme] = loader


def _load_model_dir(source: str) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """A model directory, read by :func:`neonsign.artifacts.load_model` (which checks the
    weights' sha256 against the card and the tensors against TrafficSignNet)."""
    from .artifacts import load_model

    return load_model(source)


def load_model_source(source: str) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """Resolve a model source to ``(state_dict, card)``: ``scheme:rest`` goes to the loader
    registered for ``scheme``, anything else (a path, or ``file:PATH``) is a model directory."""
    scheme, sep, rest = source.partition(":")
    if sep and scheme in _LOADERS:
        return _LOADERS[scheme](source)
    if sep and scheme in ("models", "registry"):  # the model registry, resolved at each (re)load
        from .registry import load_from_registry

        return load_from_registry(source)
    if sep and scheme == "file":
        return _load_model_dir(rest[2:] if rest.startswith("//") else rest)
    return _load_model_dir(source)


@dataclass(frozen=True)
class LoadedModel:
    """An engine ready to serve, with what it was built from.

    Attributes:
        engine: the warmed native engine.
        card: the model card (JSON object).
        source: where it came from.
        version: ``weights_sha256`` from the card (identifies the weights).
        size: ``(height, width)`` the images are resized to.
        mean, std: per-channel normalisation.
        loaded_at: UNIX time it finished loading.
    """

    engine: "Engine"
    card: dict[str, Any]
    source: str
    version: str
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(
        cls, source: str, kernel: str | None = None, threads: int | None = None
    ) -> "LoadedModel":
        """Load ``source``, build the engine, and warm it with one forward pass.

        Raises:
            ModelError: bad weights, card or preprocessing; FileNotFoundError: no such source.
        """
        from .engine import INPUT_SHAPE, Engine

        state_dict, card = load_model_source(source)
        prep = card.get("preprocessing") or {}
        try:
            size = prep.get("size", 32)
            h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
            mean = tuple(float(v) for v in prep.get("mean", (0.5, 0.5, 0.5)))
            std = tuple(float(v) for v in prep.get("std", (0.5, 0.5, 0.5)))
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelError(
                f"{source}: bad preprocessing section in the model card: {exc}"
            ) from exc
        if (3, h, w) != INPUT_SHAPE:
            raise ModelError(
                f"{source}: the engine takes {INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} images, card says {h}x{w}"
            )
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise ModelError(
                f"{source}: preprocessing mean/std need 3 values, std non-zero: {prep}"
            )
        engine = Engine.from_state_dict(state_dict, kernel=kernel, threads=threads)
        engine.predict(np.zeros((1, *INPUT_SHAPE), np.float32))  # warm: packs caches, pages in
        return cls(
            engine,
            dict(card),
            source,
            str(card.get("weights_sha256", "unknown")),
            (h, w),
            mean,
            std,
        )  # type: ignore[arg-type]


class ModelHolder:
    """The model being served. ``current`` is one reference read once per request; ``reload``
    builds the new model completely before replacing it, so in-flight requests keep theirs."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time

    def reload(self, source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``source`` (default: the configured one) and swap it in; return (old, new).
        On error the old model stays and the exception propagates."""
        with self._lock:
            new = LoadedModel.load(
                source or self.config.model, self.config.kernel, self.config.engine_threads
            )
            old, self.current = self.current, new
            return old, new


# ---------------------------------------------------------------------------------------------
# Images


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, str]:
    """Decode PNG, JPEG (Pillow) or PPM (neonsign's C decoder) bytes to ``uint8 (H, W, 3)`` RGB.

    The pixel count is checked from the header before decoding (decompression bombs).

    Returns:
        (image, format name ``"PNG"``, ``"JPEG"`` or ``"PPM"``).
    Raises:
        UnsupportedError: not a PNG, JPEG or PPM.
        DecodeError: corrupt or truncated.
        ResourceLimitError: more than ``max_pixels`` pixels.
    """
    from .errors import UnsupportedError

    if data[:2] in (b"P6", b"P3"):
        return preprocess.decode_ppm(data, max_pixels=max_pixels), "PPM"
    if not data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise UnsupportedError(
            f"unsupported image format (first bytes {data[:8]!r}); send PNG, JPEG or PPM (P6/P3)"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
            fmt = str(im.format)
            w, h = im.size
            if w * h > max_pixels:
                raise ResourceLimitError(
                    f"{fmt} image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
                )
            rgb = im.convert("RGB")  # loads: truncated or corrupt data raises here
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(
            f"image rejected by Pillow as a decompression bomb: {exc}"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, NeonsignError):
            raise
        raise DecodeError(f"corrupt or truncated image: {exc}") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise DecodeError(f"decoded image has an unusable shape {arr.shape}")
    return np.ascontiguousarray(arr), fmt


@dataclass
class _Prepared:
    """One decoded and preprocessed upload."""

    x: np.ndarray  # float32 (3, H, W)
    fmt: str
    width: int
    height: int
    brightness: float  # mean of the resized image, 0..1


def _prepare(data: bytes, model: LoadedModel, max_pixels: int) -> _Prepared:
    image, fmt = decode_image(data, max_pixels)
    small = preprocess.resize(image, model.size)
    x = preprocess.normalize(small, model.mean, model.std)
    return _Prepared(x, fmt, image.shape[1], image.shape[0], float(small.mean()) / 255.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, written like :meth:`Engine.classify` (same top-1 value)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=1, keepdims=True)


def _prediction(probs: np.ndarray, version: str) -> dict[str, Any]:
    order = np.argsort(-probs, kind="stable")[:5]
    top5 = [
        {"class_id": int(c), "label": CLASS_NAMES[int(c)], "probability": float(probs[c])}
        for c in order
    ]
    return {
        "predicted_class": top5[0]["class_id"],
        "label": top5[0]["label"],
        "probability": top5[0]["probability"],
        "top5": top5,
        "model_version": version,
    }


# ---------------------------------------------------------------------------------------------
# The app


class _ApiError(Exception):
    """An error answered with ``{"error": kind, "detail": message}`` and ``status``."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


def _api_error(exc: BaseException) -> _ApiError:
    from .errors import UnsupportedError

    if isinstance(exc, _ApiError):
        return exc
    if isinstance(exc, ResourceLimitError):
        return _ApiError(413, "too_many_pixels", str(exc))
    if isinstance(exc, UnsupportedError):
        return _ApiError(415, "unsupported_media_type", str(exc))
    if isinstance(exc, (DecodeError, NeonsignValueError)):
        return _ApiError(400, "decode_error", str(exc))
    return _ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


class _Metrics:
    """The Prometheus metrics of one app (its own registry, so several apps can coexist)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        lat = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.requests = Counter(
            "neonsign_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "neonsign_http_request_duration_seconds",
            "Request latency, first byte in to response sent",
            ["route"],
            buckets=lat,
            registry=r,
        )
        self.inference_latency = Histogram(
            "neonsign_inference_duration_seconds",
            "Engine forward time per call",
            buckets=lat,
            registry=r,
        )
        self.batch_images = Histogram(
            "neonsign_inference_batch_images",
            "Images per engine call (requests coalesced under load)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.preprocess_latency = Histogram(
            "neonsign_preprocess_duration_seconds",
            "Decode + resize + normalise time per image",
            buckets=lat,
            registry=r,
        )
        self.predictions = Counter(
            "neonsign_predictions", "Predictions by class", ["class_id", "label"], registry=r
        )
        self.confidence = Histogram(
            "neonsign_prediction_probability",
            "Top-1 probability",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=r,
        )
        self.errors = Counter("neonsign_errors", "Errors by kind", ["kind"], registry=r)
        self.image_pixels = Histogram(
            "neonsign_input_image_pixels",
            "Width x height of inputs",
            buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
            registry=r,
        )
        self.image_bytes = Histogram(
            "neonsign_input_image_bytes",
            "Size of uploaded files",
            buckets=(1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6),
            registry=r,
        )
        self.brightness = Histogram(
            "neonsign_input_brightness",
            "Mean pixel value (0..1) after resizing",
            buckets=tuple(i / 10 for i in range(1, 11)),
            registry=r,
        )
        self.formats = Counter(
            "neonsign_input_images", "Decoded inputs by format", ["format"], registry=r
        )
        self.reloads = Counter(
            "neonsign_model_reloads", "Model loads by result", ["result"], registry=r
        )
        self.model_info = Gauge(
            "neonsign_model_info",
            "The model being served (value 1)",
            ["version", "source"],
            registry=r,
        )
        self.ready = Gauge("neonsign_ready", "1 when a warmed model is loaded", registry=r)

    def set_model(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            with contextlib.suppress(KeyError):
                self.model_info.remove(old.version, old.source)
        self.model_info.labels(new.version, new.source).set(1)
        self.ready.set(1)


class _Coalescer:
    """Micro-batching without a waiting window: a request starts work at once if fewer than
    ``max_running`` jobs run; otherwise it queues, and the next job takes everything queued
    (up to ``max_items``) in one executor call. Under load this turns many thread hand-offs
    (each a GIL round trip for the event loop) and engine calls into one; when idle it adds
    no latency. ``work(items) -> results`` runs in ``executor``; a result that is an
    exception is raised to its own caller only."""

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        work: Callable[[list], list],
        max_items: int,
        max_running: int,
    ) -> None:
        self.executor, self.work = executor, work
        self.max_items, self.max_running = max_items, max_running
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.running = 0

    async def submit(self, item: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        self._start()
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending and self.running < self.max_running:
            batch, self.pending = self.pending[: self.max_items], self.pending[self.max_items :]
            self.running += 1
            job = loop.run_in_executor(self.executor, self.work, [item for item, _ in batch])
            job.add_done_callback(lambda j, batch=batch: self._finish(j, batch))

    def _finish(self, job: asyncio.Future, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.running -= 1
        try:
            results = job.result()
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            results = [exc] * len(batch)
        for (_, fut), res in zip(batch, results, strict=False):
            if not fut.done():  # the caller may have gone (client disconnected)
                fut.set_result(res)
        if self.pending:
            self._start()


class _Guard:
    """Pure ASGI middleware: request size limit (413, from Content-Length and while streaming),
    request counts and latency by route template (bounded label values).

    ``too_large`` is the exception class raised when the body exceeds ``limit`` (an HTTP
    exception, so that FastAPI passes it through its body parsing to the app's handler)."""

    def __init__(self, app: Any, limit: int, metrics: _Metrics, too_large: type[Exception]) -> None:
        self.app, self.limit, self.metrics, self.too_large = app, limit, metrics, too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 500, "started": False, "received": 0}
        m = self.metrics

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        async def receive_wrapper() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    raise self.too_large()
            return message

        try:
            length = dict(scope.get("headers") or ()).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                raise self.too_large()
            await self.app(scope, receive_wrapper, send_wrapper)
        except self.too_large as exc:  # raised before or outside the app's handlers
            m.errors.labels("too_large").inc()
            if not state["started"]:
                body = json.dumps(
                    {"error": "too_large", "detail": getattr(exc, "detail", str(exc))}
                ).encode()
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            m.requests.labels(scope.get("method", ""), name, str(state["status"])).inc()
            m.request_latency.labels(name).observe(time.perf_counter() - start)


def create_app(model: str | ServeConfig, **options: Any) -> "FastAPI":
    """Build the ASGI app serving ``model`` (a source string, or a full :class:`ServeConfig`).

    ``options`` are :class:`ServeConfig` fields. The model is loaded and warmed at startup
    (the lifespan); a source that cannot be loaded stops the server from starting.
    """
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException

    config = model if isinstance(model, ServeConfig) else ServeConfig(model=model, **options)
    if isinstance(model, ServeConfig) and options:
        raise NeonsignValueError("pass either a ServeConfig or keyword options, not both")
    holder = ModelHolder(config)
    metrics = _Metrics()
    executor = ThreadPoolExecutor(
        max_workers=config.threads or os.cpu_count() or 1, thread_name_prefix="neonsign-serve"
    )

    async def reload_model(source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        loop = asyncio.get_running_loop()
        try:
            old, new = await loop.run_in_executor(None, holder.reload, source)
        except Exception:
            metrics.reloads.labels("error").inc()
            raise
        metrics.reloads.labels("ok").inc()
        metrics.set_model(old, new)
        log.info("serving model %s from %s", new.version, new.source)
        return old, new

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        await reload_model()
        loop = asyncio.get_running_loop()
        hup = False
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):

            def on_hup() -> None:
                task = loop.create_task(reload_model())
                task.add_done_callback(
                    lambda t: (
                        t.exception()
                        and log.error(
                            "SIGHUP reload failed, still serving the previous model: %s",
                            t.exception(),
                        )
                    )
                )

            try:
                loop.add_signal_handler(signal.SIGHUP, on_hup)
                hup = True
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            metrics.ready.set(0)
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="neonsign",
        version=_version(),
        lifespan=lifespan,
        description="Traffic-sign recognition (GTSRB, 43 classes) on neonsign's native engine.",
        docs_url=None,
        redoc_url=None,  # they load their JavaScript from a CDN; see /docs
    )
    app.state.holder, app.state.metrics, app.state.config = holder, metrics, config

    class BodyTooLarge(HTTPException):
        def __init__(self) -> None:
            super().__init__(413, f"request body exceeds {config.max_upload_bytes} bytes")

    app.add_middleware(
        _Guard, limit=config.max_upload_bytes, metrics=metrics, too_large=BodyTooLarge
    )

    def error_response(err: _ApiError) -> JSONResponse:
        metrics.errors.labels(err.kind).inc()
        return JSONResponse({"error": err.kind, "detail": err.detail}, status_code=err.status)

    @app.exception_handler(_ApiError)
    async def _on_api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def _on_too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(_ApiError(413, "too_large", str(exc.detail)))

    @app.exception_handler(HTTPException)
    async def _on_http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        kind = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        metrics.errors.labels(kind).inc()
        return JSONResponse(
            {"error": kind, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("validation_error").inc()
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def _on_crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(_ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}"))

    def serving() -> LoadedModel:
        current = holder.current
        if current is None:
            raise _ApiError(503, "not_ready", "no model loaded yet")
        return current

    def prepare(data: bytes, model: LoadedModel) -> _Prepared:
        """Worker thread: decode + preprocess one upload; errors become :class:`_ApiError`."""
        t0 = time.perf_counter()
        metrics.image_bytes.observe(len(data))
        try:
            p = _prepare(data, model, config.max_pixels)
        except Exception as exc:  # noqa: BLE001 - mapped to an HTTP error
            raise _api_error(exc) from exc
        metrics.preprocess_latency.observe(time.perf_counter() - t0)
        metrics.formats.labels(p.fmt).inc()
        metrics.image_pixels.observe(p.width * p.height)
        metrics.brightness.observe(p.brightness)
        return p

    def classify(prepared: list[_Prepared], model: LoadedModel) -> list[dict[str, Any]]:
        """Worker thread: one engine call for the prepared images, then their predictions."""
        x = np.stack([p.x for p in prepared])
        t0 = time.perf_counter()
        logits = model.engine.predict(x)
        metrics.inference_latency.observe(time.perf_counter() - t0)
        metrics.batch_images.observe(len(prepared))
        out = []
        for row in _softmax(logits):
            pred = _prediction(row, model.version)
            metrics.predictions.labels(str(pred["predicted_class"]), pred["label"]).inc()
            metrics.confidence.observe(pred["probability"])
            out.append(pred)
        return out

    def run_batch(blobs: list[bytes], model: LoadedModel) -> list[dict[str, Any]]:
        """Worker thread: a /predict/batch request (any bad image fails the request)."""
        return classify([prepare(data, model) for data in blobs], model)

    def run_coalesced(items: list[tuple[bytes, LoadedModel]]) -> list[Any]:
        """Worker thread: independent single-image requests that queued up together. Each gets
        its prediction or its own error; one engine call per model among them."""
        results: list[Any] = [None] * len(items)
        groups: dict[int, list[tuple[int, _Prepared]]] = {}
        for i, (data, model) in enumerate(items):
            try:
                prepared = prepare(data, model)
            except _ApiError as exc:
                results[i] = exc
                continue
            groups.setdefault(id(model), []).append((i, prepared))
        for group in groups.values():
            model = items[group[0][0]][1]
            try:
                preds: list[Any] = classify([p for _, p in group], model)
            except Exception as exc:  # noqa: BLE001 - every request of the group gets it
                preds = [_api_error(exc)] * len(group)
            for (i, _), pred in zip(group, preds, strict=False):
                results[i] = pred
        return results

    batcher = _Coalescer(
        executor,
        run_coalesced,
        max_items=config.max_batch,
        max_running=config.threads or os.cpu_count() or 1,
    )

    async def infer(blobs: list[bytes]) -> list[dict[str, Any]]:
        model = serving()  # this request's model, whatever reloads happen meanwhile
        if len(blobs) == 1:
            return [await batcher.submit((blobs[0], model))]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, run_batch, blobs, model)

    responses = {
        400: {"description": "corrupt image"},
        413: {"description": "too large"},
        415: {"description": "unsupported image format"},
        422: {"description": "missing or misnamed form field"},
        503: {"description": "no model loaded"},
    }

    async def predict(
        file: UploadFile = File(..., description="PNG, JPEG or PPM image"),
    ) -> dict[str, Any]:
        """Classify one image: ``predicted_class`` (0..42), its ``label``, ``probability``
        (softmax), ``top5`` and the ``model_version`` (weights sha256)."""
        return (await infer([await file.read()]))[0]

    app.post("/predict", responses=responses, summary="Classify one image")(predict)
    app.post("/predict/", include_in_schema=False)(predict)  # the learning path's route

    @app.post("/predict/batch", responses=responses, summary="Classify several images")
    async def predict_batch(
        files: list[UploadFile] = File(..., description="images"),
    ) -> dict[str, Any]:
        """Classify several images in one engine call: ``{"predictions": [...]}`` in order."""
        if len(files) > config.max_batch:
            raise _ApiError(
                413, "too_many_files", f"{len(files)} files; at most {config.max_batch} per batch"
            )
        blobs = [await f.read() for f in files]
        return {"predictions": await infer(blobs)}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """Always ``{"status": "ok"}`` while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness", responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """200 once a model is loaded and warmed, 503 before."""
        current = holder.current
        if current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {"status": "ready", "model_version": current.version, "kernel": current.engine.kernel}
        )

    @app.get("/model", summary="Model card")
    async def model_card() -> dict[str, Any]:
        """The card of the model being served, with its source, version and engine kernel."""
        current = serving()
        return {
            "source": current.source,
            "version": current.version,
            "kernel": current.engine.kernel,
            "loaded_at": current.loaded_at,
            "card": current.card,
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prom_metrics() -> Response:
        """Prometheus text format (this worker's metrics)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        summary="Load the model again and swap it in",
        responses={401: {"description": "bad token"}, 422: {"description": "bad model"}},
    )
    async def admin_reload(request: Request) -> dict[str, Any]:
        """Reload the configured source (or, with an admin token, ``{"source": ...}``).
        Requests already running finish on the previous model."""
        source = None
        if config.admin_token is not None:
            if request.headers.get("authorization") != f"Bearer {config.admin_token}":
                raise _ApiError(401, "unauthorized", "missing or wrong admin bearer token")
            body = await request.body()
            if body:
                try:
                    source = json.loads(body).get("source")
                except (ValueError, AttributeError):
                    raise _ApiError(
                        400, "bad_request", 'body must be JSON {"source": "..."}'
                    ) from None
        try:
            old, new = await reload_model(source)
        except (ModelError, FileNotFoundError, OSError) as exc:
            current = holder.current
            raise _ApiError(
                422,
                "reload_failed",
                f"{exc}; still serving {current.version if current else 'nothing'}",
            ) from exc
        return {
            "status": "reloaded",
            "previous_version": old.version if old else None,
            "version": new.version,
            "source": new.source,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((_STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse((_STATIC / "docs.html").read_text(encoding="utf-8"))

    return app


def _version() -> str:
    from . import __version__

    return __version__


def app_from_env() -> "FastAPI":
    """uvicorn factory: ``uvicorn --factory neonsign.serve:app_from_env`` (config from
    ``NEONSIGN_*`` environment variables, see :meth:`ServeConfig.from_env`)."""
    return create_app(ServeConfig.from_env())


def __getattr__(name: str) -> Any:
    # ``uvicorn neonsign.serve:app``: the app is built from the environment on first access.
    if name == "app":
        globals()["app"] = value = app_from_env()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
