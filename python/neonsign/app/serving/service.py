"""One app's serving state: its configuration, the model holder, the metrics and the inference
service, and the reload that ties them together. :func:`create_app` builds one and keeps it
in ``app.state.service``; the routes reach it through a FastAPI dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from ...errors import NeonsignError
from .config import ServeConfig
from .inference import Inference
from .metrics import Metrics
from .models import LoadedModel, ModelHolder

__all__ = ["ReloadTimeout", "Service"]

log = logging.getLogger("neonsign.serve")

T = TypeVar("T")
R = TypeVar("R")


class ReloadTimeout(NeonsignError, TimeoutError):
    """A reload did not finish within ``reload_timeout`` seconds; it was abandoned."""


def _in_daemon_thread(fn: Callable[[T], R], arg: T) -> asyncio.Future[R]:
    """``fn(arg)`` in a new daemon thread, as a future of the running loop. Not the loop's
    executor: a load stuck in the kernel (a hung mount) would hold one of its threads forever
    and keep the process from exiting; a daemon thread does neither."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[R] = loop.create_future()

    def settle(result: R | None, error: BaseException | None) -> None:
        if fut.done():  # abandoned (timed out, cancelled)
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(cast(R, result))

    def work() -> None:
        outcome: tuple[R | None, BaseException | None]
        try:
            outcome = (fn(arg), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (None, exc)
        # a closed loop (RuntimeError): the server stopped while this load hung
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name="neonsign-reload", daemon=True).start()
    return fut


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
            inline_pixels=config.inline_pixels,
            max_queue=config.max_queue,
            batch_queue=config.batch_queue,
            max_batch_pixels=config.max_batch_pixels,
            reduce_above=config.reduce_jpeg_above,
        )
        return cls(config, ModelHolder(config), metrics, inference)

    async def reload(self, source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``source`` (default: the configured one) off the event loop, swap it in and
        return ``(old, new)``. On error the old model keeps serving and the error propagates;
        either way ``neonsign_model_reloads_total{result}`` counts it.

        A load that takes longer than ``config.reload_timeout`` raises :class:`ReloadTimeout`;
        its thread is left to finish on its own and its model, if it ever comes, is dropped.
        No lock is held while loading, so an abandoned load never blocks the next reload."""
        timeout = self.config.reload_timeout
        try:
            try:
                new = await asyncio.wait_for(_in_daemon_thread(self.holder.load, source), timeout)
            except asyncio.TimeoutError:
                raise ReloadTimeout(
                    f"loading {source or self.config.model} did not finish within {timeout} s; "
                    "abandoned"
                ) from None
        except Exception:
            self.metrics.reloads.labels("error").inc()
            raise
        old = self.holder.swap(new)
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
