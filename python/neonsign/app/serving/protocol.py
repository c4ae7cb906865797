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

The protocol also corks its writes (:class:`CorkedTransport`): a response leaves in one
``send`` instead of two (status line and headers, then body), which spares the client a
wake-up per response.

:func:`protocol_class` (:data:`PROTOCOL`, by import string) is the class handed to
``uvicorn.run(http=...)``: httptools' protocol (the C parser, installed with the ``serve``
extra) with the deadlines and corked writes, else h11's.
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

__all__ = [
    "PROTOCOL",
    "CorkedTransport",
    "DeadlineMixin",
    "DeadlineProtocol",
    "H11DeadlineProtocol",
    "protocol_class",
    "deadlines",
]


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


class CorkedTransport:
    """A transport that gathers the writes made in one event-loop step into one write.

    uvicorn writes a response's status line and headers as soon as the app sends
    ``http.response.start``, and its body with the next message: two ``send`` calls, two TCP
    segments, and a client woken twice per response, the first time for headers alone. Under
    load that second wake-up is a real share of a small request's cost (on a VM each one is an
    inter-processor interrupt). Writes here are queued and sent together by a callback that
    runs after the current step, so a response the app sends in one step leaves in one write;
    ``close`` and ``write_eof`` send what is queued first, ``abort`` drops it. Everything else
    is the wrapped transport's.
    """

    __slots__ = ("_transport", "_loop", "_queued")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._queued: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._queued:
            self._loop.call_soon(self.flush)
        self._queued.append(data)

    def flush(self) -> None:
        """Send what is queued (nothing once the transport is closing)."""
        queued, self._queued = self._queued, []
        if queued and not self._transport.is_closing():
            self._transport.write(queued[0] if len(queued) == 1 else b"".join(queued))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._queued = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkMixin:
    """Gives a uvicorn HTTP protocol (and the requests it creates) a :class:`CorkedTransport`."""

    transport: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = CorkedTransport(transport, asyncio.get_running_loop())


class H11DeadlineProtocol(CorkMixin, DeadlineMixin, H11Protocol):
    """h11's protocol (pure Python) with the deadlines and corked writes."""


if HAVE_HTTPTOOLS:

    class HttpToolsDeadlineProtocol(CorkMixin, DeadlineMixin, HttpToolsProtocol):
        """httptools' protocol (the C parser) with the deadlines and corked writes."""


def protocol_class() -> type[asyncio.Protocol]:
    """The class for ``uvicorn.run(http=...)``: httptools' protocol with the deadlines, or
    h11's if httptools is not installed (module-level classes, so uvicorn can hand them to
    its worker processes)."""
    if HAVE_HTTPTOOLS:
        return HttpToolsDeadlineProtocol
    return H11DeadlineProtocol


#: :func:`protocol_class`'s answer, and its import string for ``uvicorn.run(http=...)``
#: (resolved in each worker process, so a supervisor handed the string never imports neonsign).
DeadlineProtocol = protocol_class()
PROTOCOL = f"{__name__}:DeadlineProtocol"
