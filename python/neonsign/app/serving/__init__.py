"""HTTP serving of TrafficSignNet on the native engine (FastAPI + uvicorn, no PyTorch).

The package, one module per concern::

    config.py     ServeConfig, ServerOptions: the only reader of the NEONSIGN_* serve settings
    models.py     model sources and loaders, LoadedModel, ModelHolder (atomic reload)
    inference.py  decode / prepare / classify and request coalescing (Inference), no HTTP
    metrics.py    the Prometheus metrics
    guard.py      the ASGI middleware: upload size limit, request metrics
    errors.py     the API's JSON errors and their handlers
    service.py    one app's state (config, model holder, metrics, inference) and reload
    routes.py     the endpoints, on an APIRouter
    app.py        create_app, app_from_env (uvicorn's factory), run_server (neonsign serve)
    static/       the upload page and the API reference page

Endpoints: ``POST /predict`` (also ``/predict/``), ``POST /predict/batch``, ``GET /healthz``,
``/readyz``, ``/model``, ``/metrics``, ``POST /admin/reload`` (also SIGHUP), ``GET /`` (upload
page) and ``/docs`` (API reference); see ``docs/serving.md``.

Models come from a *source*: a model directory (``model.safetensors`` + ``model_card.json``,
whose ``weights_sha256`` is checked) or any scheme registered with
:func:`register_model_loader` (the MLflow registry plugs in there). Preprocessing follows the
card's ``preprocessing`` section (size, mean, std), as in training. A reload builds and warms
the new engine first, then replaces one reference: requests already running finish on the old
engine.

Importing this package does not import FastAPI, uvicorn or prometheus-client; they are
imported when an app is created (``pip install 'neonsign[serve]'``).
"""

from .app import app_from_env, create_app, run_server
from .config import ServeConfig, ServerOptions
from .inference import Inference, Prediction, decode_image
from .models import LoadedModel, ModelHolder, load_model_source, register_model_loader

__all__ = [
    "ServeConfig",
    "ServerOptions",
    "LoadedModel",
    "ModelHolder",
    "register_model_loader",
    "load_model_source",
    "Inference",
    "Prediction",
    "decode_image",
    "create_app",
    "app_from_env",
    "run_server",
]
