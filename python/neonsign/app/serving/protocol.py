"""uvicorn's HTTP protocol with header and body deadlines.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but not one that never sends a complete request: a connection
opened and left silent, or one trickling its headers or body a byte at a time, is held open
forever. With ``--limit-concurrency N``, N such connections make the server answer every
request, probes included, with 503. :class:`DeadlineMixin` adds the two missing deadlines:

* **headers**: a request's headers must be complete ``header_timeout`` seconds after the
  connection opened or the previous response was sent;
* **body**: its body must be complete ``body_timeout`` seconds after its headers.

A connection past a deadline is closed (the request, if one started, sees a disconnect). Time
spent by the server itself, between the end of a body and the response, is never counted.
The deadlines come from ``NEONSIGN_HEADER_TIMEOUT`` / ``NEONSIGN_BODY_TIMEOUT`` (written by
``neonsign serve`` from its options, so every worker process reads the same values).

:func:`protocol_class` is the class handed to ``uvicorn.run(http=...)``: httptools' protocol
(the C parser, installed with the ``serve`` extra) with the deadlines, else h11's.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServerOptions, env_int

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HAVE_HTTPTOOLS = True
except ImportError:  # httptools is not installed
    HAVE_HTTPTOOLS = False

__all__ = ["DeadlineMixin", "H11DeadlineProtocol", "protocol_class", "deadlines"]


@functools.cache
def deadlines() -> tuple[float, float]:
    """``(header_timeout, body_timeout)`` in seconds, read once per process."""
    return (
        float(env_int("HEADER_TIMEOUT", ServerOptions.header_timeout) or 1),
        float(env_int("BODY_TIMEOUT", ServerOptions.body_timeout) or 1),
    )


class DeadlineMixin:
    """Header and body deadlines for a uvicorn HTTP protocol (httptools' or h11's): both keep
    the request being read in ``self.cycle`` (a new object once a request's headers are in,
    with ``more_body`` False once its body is) and call ``on_response_complete`` after each
    response."""

    cycle: Any
    transport: asyncio.Transport
    _timer: asyncio.TimerHandle | None = None
    _watched: Any = None
    _phase: str | None = None
    _due: float = 0.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle
        if cycle is None:
            return
        if cycle is not self._watched:  # a new request's headers are in
            if cycle.more_body and not cycle.response_complete:
                self._arm("body")
            else:
                self._cancel(cycle)
        elif not cycle.more_body and self._phase is not None:
            self._cancel(cycle)  # its body is complete

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        cycle = self.cycle
        if not self.transport.is_closing() and (cycle is None or cycle.response_complete):
            self._arm("headers")  # the next request's headers (a pipelined one is already in)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self, phase: str) -> None:
        """Set the deadline of ``phase`` for the current request. One timer per connection,
        moved rather than replaced: a keep-alive connection re-arms it after every response,
        and creating and cancelling a timer each time is a measurable cost per request."""
        header_timeout, body_timeout = deadlines()
        loop = asyncio.get_running_loop()
        self._phase, self._watched = phase, self.cycle
        self._due = loop.time() + (header_timeout if phase == "headers" else body_timeout)
        if self._timer is not None and self._timer.when() > self._due:
            self._timer.cancel()  # the new deadline is earlier than the timer
            self._timer = None
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._expired)

    def _cancel(self, watched: object) -> None:
        """No deadline for now (the timer, if any, finds nothing to do when it fires)."""
        self._phase, self._watched = None, watched

    def _expired(self) -> None:
        """Close the connection if it is still where it was when the deadline was set."""
        self._timer = None
        if self._phase is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._due:  # moved later since the timer was set
            self._timer = loop.call_at(self._due, self._expired)
            return
        cycle = self._watched
        if self.cycle is not cycle:
            return
        if self._phase == "headers" or (cycle.more_body and not cycle.response_complete):
            self.transport.close()


class H11DeadlineProtocol(DeadlineMixin, H11Protocol):
    """h11's protocol (pure Python) with the deadlines."""


if HAVE_HTTPTOOLS:

    class HttpToolsDeadlineProtocol(DeadlineMixin, HttpToolsProtocol):
        """httptools' protocol (the C parser) with the deadlines."""


def protocol_class() -> type[asyncio.Protocol]:
    """The class for ``uvicorn.run(http=...)``: httptools' protocol with the deadlines, or
    h11's if httptools is not installed (module-level classes, so uvicorn can hand them to
    its worker processes)."""
    if HAVE_HTTPTOOLS:
        return HttpToolsDeadlineProtocol
    return H11DeadlineProtocol
