"""One app's serving state: its configuration, the model holder, the metrics and the inference
service, and the reload that ties them together. :func:`create_app` builds one and keeps it
in ``app.state.service``; the routes reach it through a FastAPI dependency.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .config import ServeConfig
from .inference import Inference
from .metrics import Metrics
from .models import LoadedModel, ModelHolder

__all__ = ["Service"]

log = logging.getLogger("neonsign.serve")


@dataclass
class Service:
    """What the routes work with.

    Attributes:
        config: the app's configuration.
        holder: the model being served (``holder.current``, swapped by :meth:`reload`).
        metrics: the app's Prometheus metrics.
        inference: decode / prepare / classify, with request coalescing.
    """

    config: ServeConfig
    holder: ModelHolder
    metrics: Metrics
    inference: Inference
    _background: set[asyncio.Task[object]] = field(default_factory=set, repr=False)

    @classmethod
    def build(cls, config: ServeConfig) -> Service:
        """A service for ``config``, with no model loaded yet (see :meth:`reload`)."""
        metrics = Metrics()
        inference = Inference(
            max_pixels=config.max_pixels,
            max_batch=config.max_batch,
            threads=config.threads,
            observer=metrics,
        )
        return cls(config, ModelHolder(config), metrics, inference)

    async def reload(self, source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``source`` (default: the configured one) off the event loop, swap it in and
        return ``(old, new)``. On error the old model keeps serving and the error propagates;
        either way ``neonsign_model_reloads_total{result}`` counts it."""
        loop = asyncio.get_running_loop()
        try:
            old, new = await loop.run_in_executor(None, self.holder.reload, source)
        except Exception:
            self.metrics.reloads.labels("error").inc()
            raise
        self.metrics.reloads.labels("ok").inc()
        self.metrics.set_model(old, new)
        log.info("serving model %s from %s", new.version, new.source)
        return old, new

    def reload_in_background(self) -> None:
        """Start :meth:`reload` as a task (the SIGHUP handler); a failure is logged and the
        previous model keeps serving."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "SIGHUP reload failed, still serving the previous model: %s", task.exception()
            )

    def close(self) -> None:
        """The app stops: not ready any more, worker threads stopped."""
        self.metrics.ready.set(0)
        self.inference.close()
