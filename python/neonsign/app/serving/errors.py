"""The API's errors: every failure is answered as JSON ``{"error": kind, "detail": message}``
with a status code, and counted in ``neonsign_errors_total{kind}``.

:func:`api_error` maps the library's exceptions to (status, kind); :func:`install_error_handlers`
registers the handlers that answer them, FastAPI's own errors (404, 405, 422) included.
"""

from __future__ import annotations

import json
import logging
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ...errors import DecodeError, NeonsignValueError, ResourceLimitError, UnsupportedError
from .inference import Busy, RoiError
from .metrics import Metrics

__all__ = ["ApiError", "BodyTooLarge", "api_error", "error_body", "install_error_handlers"]

log = logging.getLogger("neonsign.serve")

#: Error kinds of FastAPI's own HTTP errors.
_HTTP_KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    """An error answered with ``{"error": kind, "detail": message}`` and ``status``."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


class BodyTooLarge(HTTPException):
    """The request body exceeds the upload limit (413 ``too_large``). An HTTPException, so that
    FastAPI passes it through its body parsing to :func:`install_error_handlers`' handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


#: The library's errors as (status, kind), checked in this order (subclasses first).
_LIBRARY_ERRORS: dict[type[BaseException], tuple[int, str]] = {
    Busy: (503, "busy"),
    ResourceLimitError: (413, "too_many_pixels"),
    RoiError: (422, "invalid_roi"),
    UnsupportedError: (415, "unsupported_media_type"),
    DecodeError: (400, "decode_error"),
    NeonsignValueError: (400, "decode_error"),
}


def api_error(exc: BaseException) -> ApiError:
    """The answer to an exception raised while handling an upload (unexpected ones are
    logged with their traceback and answered 500 ``internal_error``)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, (status, name) in _LIBRARY_ERRORS.items():
        if isinstance(exc, kind):
            return ApiError(status, name, str(exc))
    log.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


def error_body(err: ApiError) -> bytes:
    """The JSON body that answers ``err``."""
    return json.dumps({"error": err.kind, "detail": err.detail}).encode()


def _count(request: Request, kind: str) -> None:
    cast(Metrics, request.app.state.metrics).errors.labels(kind).inc()


def error_response(request: Request, err: ApiError) -> JSONResponse:
    """Count ``err`` and answer it."""
    _count(request, err.kind)
    return JSONResponse({"error": err.kind, "detail": err.detail}, status_code=err.status)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    return error_response(request, api_error(exc))


async def _on_too_large(request: Request, exc: Exception) -> Response:
    detail = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
    return error_response(request, ApiError(413, "too_large", detail))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_KINDS.get(exc.status_code, f"http_{exc.status_code}")
    _count(request, kind)
    return JSONResponse(
        {"error": kind, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    _count(request, "validation_error")
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
    )
    return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(request, ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}"))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON and count it (``app.state.metrics`` is the :class:`Metrics`)."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(BodyTooLarge, _on_too_large)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_crash)
