"""The predict endpoints' work, and a pure-ASGI fast path that does it without FastAPI.

Measured with wrk on the learning path's upload (``benchmarks/serve.py``, py-spy), FastAPI's
form handling -- python-multipart, the spooled ``UploadFile``, dependency solving, response
validation -- cost more per request than decoding and classifying a GTSRB-size image. The
fast path, an ASGI layer in front of the FastAPI app, answers ``POST /predict``,
``/predict/`` and ``/predict/batch`` itself when the body is a plain multipart form with the
expected fields (:mod:`.multipart`); any other body (another content type, an unusual part,
a missing or unknown field) is replayed unchanged to the FastAPI route, which answers it as
before (its validation errors included). Both call :func:`predict_one` / :func:`predict_many`,
so the answers and the errors are the same whichever path a request takes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, api_error, error_body
from .inference import parse_roi, parse_rois
from .multipart import Part, parse_form
from .service import Service

__all__ = ["PredictFastPath", "check_batch_size", "predict_one", "predict_many"]


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

    Args:
        app: the FastAPI app.
        service: the app's :class:`Service`.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in _FIELDS:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        request = self._parse(scope, body, path)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = _ROUTES[path]
        blobs, text = request
        try:
            if path == "/predict/batch":
                answer = await predict_many(self.service, blobs, text)
            else:
                answer = await predict_one(self.service, blobs[0], text)
        except ApiError as err:
            metrics = self.service.metrics
            metrics.child(metrics.errors, err.kind).inc()
            await _respond(send, err.status, error_body(err))
            return
        await _respond(send, 200, _JSON.encode(answer).encode())

    def _parse(self, scope: Scope, body: bytes, path: str) -> _Request | None:
        """The route's ``(blobs, text field)`` if the body is a form the fast path reads."""
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
        form = parse_form(body, content_type, self.service.config.max_batch + 1)
        if form is None:
            return None
        files, text = _FIELDS[path]
        return _fields(form, files, text, many=path == "/predict/batch")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (the guard outside counts it against the upload limit), or None
    if the client disconnected."""
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
