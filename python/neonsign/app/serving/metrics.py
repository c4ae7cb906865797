"""The server's Prometheus metrics (``GET /metrics``): requests, latency, predictions per
class, errors, and input-drift histograms (size, file size, brightness).

Each :class:`Metrics` has its own registry, so several apps can live in one process (tests).
The names are part of the server's interface: dashboards and ``neonsign retrain-check`` read
them (``neonsign_input_brightness``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .inference import Prediction, Prepared
    from .models import LoadedModel

__all__ = ["Metrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The Prometheus metrics of one app. Implements
    :class:`~neonsign.app.serving.inference.InferenceObserver`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
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
            buckets=_LATENCY,
            registry=r,
        )
        self._inference_metrics(r)
        self.errors = Counter("neonsign_errors", "Errors by kind", ["kind"], registry=r)
        self._input_metrics(r)
        self._model_metrics(r)
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: prometheus-client validates the values and
        takes a lock on every ``labels`` call, a visible cost per request. Only for metrics
        whose samples are never removed, with bounded label values (routes, statuses, formats,
        classes)."""
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered: ``neonsign_http_requests`` and its latency by route
        (the request guard and the predict fast path both count here)."""
        self.child(self.requests, method, route, str(status)).inc()
        self.child(self.request_latency, route).observe(seconds)

    def _inference_metrics(self, r: CollectorRegistry) -> None:
        self.inference_latency = Histogram(
            "neonsign_inference_duration_seconds",
            "Engine forward time per call",
            buckets=_LATENCY,
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
            buckets=_LATENCY,
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

    def _input_metrics(self, r: CollectorRegistry) -> None:
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

    def _model_metrics(self, r: CollectorRegistry) -> None:
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

    # ---- the model ------------------------------------------------------------------------
    def set_model(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """``new`` replaced ``old``: move the ``neonsign_model_info`` sample, set ready."""
        if old is not None:
            with contextlib.suppress(KeyError):
                self.model_info.remove(old.version, old.source)
        self.model_info.labels(new.version, new.source).set(1)
        self.ready.set(1)

    # ---- InferenceObserver ----------------------------------------------------------------
    def upload(self, nbytes: int) -> None:
        self.image_bytes.observe(nbytes)

    def prepared(self, image: Prepared, seconds: float) -> None:
        self.preprocess_latency.observe(seconds)
        self.child(self.formats, image.fmt).inc()
        self.image_pixels.observe(image.width * image.height)
        self.brightness.observe(image.brightness)

    def engine_call(self, images: int, seconds: float) -> None:
        self.inference_latency.observe(seconds)
        self.batch_images.observe(images)

    def predicted(self, prediction: Prediction) -> None:
        self.child(self.predictions, str(prediction["predicted_class"]), prediction["label"]).inc()
        self.confidence.observe(prediction["probability"])

    # ---- exposition -----------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """``(body, content type)`` of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
