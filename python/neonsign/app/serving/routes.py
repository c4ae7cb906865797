"""The HTTP endpoints, on an :class:`~fastapi.APIRouter` that :func:`create_app` mounts.

Handlers get the app's :class:`~neonsign.app.serving.service.Service` through a FastAPI
dependency (``app.state.service``); they hold no state of their own.

    POST /predict         multipart field ``file`` (PNG, JPEG or PPM), optional ``roi``
                          (``x1,y1,x2,y2``) -> top-1 + top-5 (also /predict/)
    POST /predict/batch   multipart field ``files`` (several images), optional ``rois`` (a JSON
                          list, one ``[x1, y1, x2, y2]`` or null per file) -> {"predictions": [...]}
    GET  /healthz         the process answers
    GET  /readyz          a model is loaded and warmed (503 before)
    GET  /model           the model card of the model being served
    GET  /metrics         Prometheus metrics (latency, predictions per class, errors, input drift)
    POST /admin/reload    load the model source again and swap it in atomically (also SIGHUP)
    GET  /                a self-contained upload page;  GET /docs: self-contained API reference
    GET  /examples/NAME   the upload page's example images (static/examples/, index.json)
"""

# No "from __future__ import annotations": FastAPI evaluates the endpoints' annotations.
import hmac
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ...errors import NeonsignError, NeonsignValueError
from .config import is_loopback
from .errors import ApiError
from .fastpath import check_batch_size, predict_many, predict_one
from .models import LoadedModel, check_source
from .service import ReloadTimeout, Service

__all__ = ["router", "STATIC"]

#: The upload page and the API reference page.
STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


async def get_service(request: Request) -> Service:
    """The app's :class:`Service` (a FastAPI dependency; async, so FastAPI does not run it in
    a worker thread for every request)."""
    return cast(Service, request.app.state.service)


ServiceDep = Annotated[Service, Depends(get_service)]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "corrupt image"},
    413: {"description": "too large"},
    415: {"description": "unsupported image format"},
    422: {"description": "missing or misnamed form field, malformed or out-of-image ROI"},
    503: {"description": "no model loaded, or the server is saturated (busy)"},
}


def _serving(service: Service) -> LoadedModel:
    """The model this request uses, read once (reloads meanwhile do not affect it)."""
    current = service.holder.current
    if current is None:
        raise ApiError(503, "not_ready", "no model loaded yet")
    return current


#: The ROI form fields, as the OpenAPI document and ``/docs`` show them.
ROI_HELP = (
    "optional crop before resizing: x1,y1,x2,y2, four integers, inclusive corners in the "
    "uploaded image's pixels (GTSRB's Roi.X1..Roi.Y2, neonsign predict --roi); absent or "
    "empty: the whole image"
)
ROIS_HELP = (
    "optional crops, a JSON list with one entry per file in order: [x1, y1, x2, y2] "
    "(inclusive corners) or null for the whole image, e.g. [[5, 6, 40, 41], null]"
)


async def predict(
    service: ServiceDep,
    file: UploadFile = File(..., description="PNG, JPEG or PPM image"),
    roi: str | None = Form(None, description=ROI_HELP, examples=["5,6,40,41"]),
) -> dict[str, Any]:
    """Classify one image: ``predicted_class`` (0..42), its ``label``, ``probability``
    (softmax), ``top5`` and the ``model_version`` (weights sha256). With ``roi=x1,y1,x2,y2``
    the image is cropped to that box (inclusive corners) before resizing, exactly as
    ``neonsign predict --roi`` and ``neonsign test``'s ROI crop do; a malformed ROI or one
    outside the image is answered 422 ``invalid_roi``. (Plain multipart requests are answered
    by the fast path, :mod:`.fastpath`, with the same function.)"""
    return await predict_one(service, await file.read(), roi)


router.post("/predict", responses=_RESPONSES, summary="Classify one image")(predict)
router.post("/predict/", include_in_schema=False)(predict)  # the learning path's route


@router.post("/predict/batch", responses=_RESPONSES, summary="Classify several images")
async def predict_batch(
    service: ServiceDep,
    files: list[UploadFile] = File(..., description="images"),
    rois: str | None = Form(None, description=ROIS_HELP, examples=["[[5, 6, 40, 41], null]"]),
) -> dict[str, Any]:
    """Classify several images in one engine call: ``{"predictions": [...]}`` in order. With
    ``rois`` (a JSON list aligned with the files, ``[x1, y1, x2, y2]`` or null each) every
    image is cropped to its own box first, as ``/predict``'s ``roi`` does."""
    check_batch_size(service, len(files))  # before reading them
    return await predict_many(service, [await f.read() for f in files], rois)


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz", summary="Readiness", responses={503: {"description": "loading or saturated"}}
)
async def readyz(service: ServiceDep) -> JSONResponse:
    """200 once a model is loaded and warmed and the server admits requests; 503 before
    (``loading``) and while a queue is full (``saturated``, with the ``reason``)."""
    current = service.holder.current
    if current is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    reason = service.inference.saturation()
    if reason is not None:
        return JSONResponse({"status": "saturated", "reason": reason}, status_code=503)
    return JSONResponse(
        {"status": "ready", "model_version": current.version, "kernel": current.engine.kernel}
    )


@router.get("/model", summary="Model card")
async def model_card(service: ServiceDep) -> dict[str, Any]:
    """The card of the model being served, with its source, version and engine kernel."""
    current = _serving(service)
    return {
        "source": current.source,
        "version": current.version,
        "kernel": current.engine.kernel,
        "loaded_at": current.loaded_at,
        "card": current.card,
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prom_metrics(service: ServiceDep) -> Response:
    """Prometheus text format (this worker's metrics)."""
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)


def _exposed(service: Service, request: Request) -> bool:
    """Whether this request may come from another machine: the server is bound to a
    non-loopback address (``config.host``), or the request reached a non-loopback local
    address (a server started some other way, e.g. ``uvicorn --host 0.0.0.0``)."""
    host = service.config.host
    if host is not None and not is_loopback(host):
        return True
    local = request.scope.get("server")
    if not local or not isinstance(local[0], str):
        return False  # a Unix socket, or no address (in-process clients)
    try:
        ipaddress.ip_address(local[0])
    except ValueError:
        return False  # not an address: an in-process test client's "testserver"
    return not is_loopback(local[0])


def _token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (hmac.compare_digest), so
    the answer's timing does not reveal how much of a guess was right."""
    given = (header or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


async def _reload_source(service: Service, request: Request) -> str | None:
    """The source a reload request asks for: with an admin token configured, the bearer token
    must match and the body may be ``{"source": "..."}`` (checked: 400 if it is not a
    well-formed source); without one, the configured source -- and only when the server is not
    exposed beyond loopback (403 otherwise: the deployment must set a token to opt in)."""
    token = service.config.admin_token
    if token is None:
        if _exposed(service, request):
            raise ApiError(
                403,
                "admin_disabled",
                "/admin/reload is disabled on a server reachable beyond loopback without an "
                "admin token: set NEONSIGN_ADMIN_TOKEN to enable it (SIGHUP still reloads)",
            )
        return None
    if not _token_matches(request.headers.get("authorization"), token):
        raise ApiError(401, "unauthorized", "missing or wrong admin bearer token")
    body = await request.body()
    if not body:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or set(payload) - {"source"}:
        raise ApiError(400, "bad_request", 'body must be JSON {"source": "..."}')
    source = payload.get("source")
    if source is None:
        return None
    try:
        return check_source(source)
    except NeonsignValueError as exc:
        raise ApiError(400, "bad_source", str(exc)) from exc


@router.post(
    "/admin/reload",
    summary="Load the model again and swap it in",
    responses={
        400: {"description": "malformed body or source"},
        401: {"description": "bad token"},
        403: {"description": "disabled: no admin token on a non-loopback address"},
        422: {"description": "the source cannot be loaded"},
        504: {"description": "the load did not finish in time"},
    },
)
async def admin_reload(service: ServiceDep, request: Request) -> dict[str, Any]:
    """Reload the configured source (or, with an admin token, ``{"source": ...}``).
    Requests already running finish on the previous model; on any failure it keeps serving."""
    source = await _reload_source(service, request)
    try:
        old, new = await service.reload(source)
    except (NeonsignError, OSError) as exc:
        current = service.holder.current
        serving = current.version if current else "nothing"
        status, kind = (
            (504, "reload_timeout") if isinstance(exc, ReloadTimeout) else (422, "reload_failed")
        )
        raise ApiError(status, kind, f"{exc}; still serving {serving}") from exc
    return {
        "status": "reloaded",
        "previous_version": old.version if old else None,
        "version": new.version,
        "source": new.source,
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs() -> HTMLResponse:
    return HTMLResponse((STATIC / "docs.html").read_text(encoding="utf-8"))


@router.get("/examples/{name}", include_in_schema=False)
async def example(name: str) -> FileResponse:
    """The upload page's example images (made by tools/make_examples.py)."""
    path = STATIC / "examples" / name
    if name.startswith(".") or not path.is_file():
        raise ApiError(404, "not_found", f"no example named {name!r}")
    return FileResponse(path)
