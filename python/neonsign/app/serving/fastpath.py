"""The predict endpoints' work, and the fast path that does it without FastAPI.

Measured with wrk on the learning path's upload (``benchmarks/serve.py``, py-spy), FastAPI's
form handling -- python-multipart, the spooled ``UploadFile``, dependency solving, response
validation -- cost more per request than decoding and classifying a GTSRB-size image, and
even a bare pass through Starlette's middleware stack (its error middleware, FastAPI's body
limit and telemetry layers, the request guard) cost about as much as the engine. The fast path
runs before all of it: :class:`ServingAPI` (the app :func:`~.app.create_app` builds) hands
``POST /predict``, ``/predict/`` and ``/predict/batch`` to :class:`PredictFastPath`, which
answers them itself when the request declares a ``Content-Length`` within the upload limit and
its body is a plain multipart form with the expected fields (:mod:`.multipart`), counting them
as the request guard does. Any other request (chunked, too large, another content type, an
unusual part, a missing or unknown field) goes through the whole FastAPI stack unchanged (a
body already read is replayed), which answers it as before, its errors included. Both call
:func:`predict_one` / :func:`predict_many`, so the answers and the errors are the same
whichever path a request takes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, api_error, error_body
from .inference import parse_roi, parse_rois
from .multipart import Part, parse_form
from .service import Service

__all__ = ["PredictFastPath", "ServingAPI", "check_batch_size", "predict_one", "predict_many"]

log = logging.getLogger("neonsign.serve")


def _check_ready(service: Service) -> Any:
    current = service.holder.current
    if current is None:
        raise ApiError(503, "not_ready", "no model loaded yet")
    return current


async def predict_one(service: Service, data: bytes, roi: str | None) -> dict[str, Any]:
    """``POST /predict``: one image, an optional ``x1,y1,x2,y2`` ROI field.

    Raises:
        ApiError: every failure, as the status and kind the API answers.
    """
    try:
        crop = parse_roi(roi)
        model = _check_ready(service)
        return dict((await service.inference.predict_batch([data], model, [crop]))[0])
    except Exception as exc:  # noqa: BLE001 - answered as the matching HTTP error
        raise api_error(exc) from exc


def check_batch_size(service: Service, n: int) -> None:
    """413 ``too_many_files`` for more than ``max_batch`` images in one batch."""
    limit = service.config.max_batch
    if n > limit:
        raise ApiError(413, "too_many_files", f"{n} files; at most {limit} per batch")


async def predict_many(service: Service, blobs: list[bytes], rois: str | None) -> dict[str, Any]:
    """``POST /predict/batch``: several images, an optional JSON list of ROIs.

    Raises:
        ApiError: every failure, as the status and kind the API answers.
    """
    check_batch_size(service, len(blobs))
    try:
        crops = parse_rois(rois, len(blobs))
        model = _check_ready(service)
        predictions = await service.inference.predict_batch(blobs, model, crops)
    except Exception as exc:  # noqa: BLE001 - answered as the matching HTTP error
        raise api_error(exc) from exc
    return {"predictions": [dict(p) for p in predictions]}


class _Route(NamedTuple):
    """What the request metrics read from ``scope["route"]`` (FastAPI puts its route there)."""

    path: str


_FIELDS = {"/predict": ("file", "roi"), "/predict/": ("file", "roi")}
_FIELDS["/predict/batch"] = ("files", "rois")
_ROUTES = {path: _Route(path) for path in _FIELDS}
#: One encoder for every answer (``json.dumps`` with options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"))
#: Longest ROI text field the fast path reads (Starlette's own limit for fields is 1 MiB).
_MAX_FIELD = 4096


_Request = tuple[list[bytes], str | None]


def _fields(form: dict[str, list[Part]], files: str, text: str, many: bool) -> _Request | None:
    """``(blobs, text or None)`` when ``form`` has exactly the fields a route expects: one file
    (or, for a batch, one or more) and at most one text field; else None."""
    if set(form) - {files, text} or files not in form:
        return None
    uploads, extra = form[files], form.get(text, [])
    if (not many and len(uploads) != 1) or any(p.filename is None for p in uploads):
        return None
    if len(extra) > 1 or any(p.filename is not None or len(p.data) > _MAX_FIELD for p in extra):
        return None
    try:
        value = extra[0].data.decode("utf-8") if extra else None
    except UnicodeDecodeError:
        return None
    return [p.data for p in uploads], value


class PredictFastPath:
    """Pure ASGI: serves the predict routes' plain multipart requests without FastAPI, and
    hands everything else to ``app`` (a body already read is replayed to it).

    It counts the requests it answers in ``neonsign_http_requests`` and
    ``neonsign_http_request_duration_seconds`` as :class:`~.guard.RequestGuard` does (with the
    same route labels); the requests it hands on are counted there.

    Args:
        app: the whole FastAPI stack (the request guard included).
        service: the app's :class:`Service`.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service
        self.limit = service.config.max_upload_bytes

    @staticmethod
    def wants(scope: Scope) -> bool:
        """Whether ``scope`` is a request for a route this path may answer."""
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _FIELDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        length, content_type = _headers(scope)
        if length is None or length > self.limit:  # chunked, or the guard's 413: not ours
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        path = scope["path"]
        request = self._parse(body, content_type, path)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = _ROUTES[path]
        try:
            status, answer = await self._answer(path, *request)
        except Exception as exc:  # noqa: BLE001 - a bug must still get an answer, and a log
            log.error("unhandled error", exc_info=exc)
            err = ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")
            status, answer = err.status, error_body(err)
        await _respond(send, status, answer)
        self.service.metrics.request("POST", path, status, time.perf_counter() - start)

    async def _answer(self, path: str, blobs: list[bytes], text: str | None) -> tuple[int, bytes]:
        """``(status, JSON body)`` of a predict request the fast path reads."""
        try:
            if path == "/predict/batch":
                answer = await predict_many(self.service, blobs, text)
            else:
                answer = await predict_one(self.service, blobs[0], text)
        except ApiError as err:
            metrics = self.service.metrics
            metrics.child(metrics.errors, err.kind).inc()
            return err.status, error_body(err)
        return 200, _JSON.encode(answer).encode()

    def _parse(self, body: bytes, content_type: bytes, path: str) -> _Request | None:
        """The route's ``(blobs, text field)`` if the body is a form the fast path reads."""
        form = parse_form(body, content_type, self.service.config.max_batch + 1)
        if form is None:
            return None
        files, text = _FIELDS[path]
        return _fields(form, files, text, many=path == "/predict/batch")


class ServingAPI(FastAPI):
    """The FastAPI app, with :class:`PredictFastPath` in front of its whole stack (set
    :attr:`fast_path` after building the app)."""

    fast_path: PredictFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and fast.wants(scope):
            await fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def full_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of any request (what the fast path hands on)."""
        await super().__call__(scope, receive, send)


def _headers(scope: Scope) -> tuple[int | None, bytes]:
    """``(Content-Length or None, Content-Type)`` of a request; a repeated or malformed
    length is None (the full stack then answers it)."""
    length: int | None = None
    content_type, lengths = b"", 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            lengths += 1
            length = int(value) if value.isdigit() else None
        elif name == b"content-type":
            content_type = value
    return (length if lengths == 1 else None), content_type


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (its declared length is within the upload limit), or None if the
    client disconnected."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives ``body`` first, then whatever ``receive`` gives."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
