"""The ASGI middleware in front of every request: the upload size limit and the request
metrics.

It is pure ASGI (no ``BaseHTTPMiddleware``), so it adds no task or copy per request and can
count the body as it streams in: a request whose ``Content-Length`` exceeds the limit gets 413
before its body is read, and one streamed without a length is cut off once it passes the limit.
Requests are counted by route *template* (``/predict``, not the URL), so label values stay
bounded whatever clients send.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge
from .metrics import Metrics

__all__ = ["RequestGuard"]


@dataclass
class _Exchange:
    """What the guard learns about one request while it runs."""

    send: Send
    status: int = 500
    started: bool = False
    received: int = 0

    async def send_tracked(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
        await self.send(message)


class RequestGuard:
    """Pure ASGI middleware: request size limit (413 ``too_large``, from ``Content-Length``
    and while streaming), request counts and latency by route template.

    Args:
        app: the wrapped ASGI app.
        limit: largest request body in bytes.
        metrics: where requests, latency and ``too_large`` errors are counted.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        exchange = _Exchange(send)

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
                if exchange.received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        try:
            length = dict(scope.get("headers") or ()).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                raise BodyTooLarge(self.limit)
            await self.app(scope, receive_counted, exchange.send_tracked)
        except BodyTooLarge as exc:  # raised before or outside the app's handlers
            await self._too_large(exchange, exc)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - start
            self.metrics.request(scope.get("method", ""), name, exchange.status, seconds)

    async def _too_large(self, exchange: _Exchange, exc: BodyTooLarge) -> None:
        """Answer 413 unless a response has already started (then the connection just ends)."""
        self.metrics.errors.labels("too_large").inc()
        if exchange.started:
            return
        body = json.dumps({"error": "too_large", "detail": exc.detail}).encode()
        await exchange.send_tracked(
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
        await exchange.send({"type": "http.response.body", "body": body})
