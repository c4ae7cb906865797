"""The two servers benchmarks/serve.py measures ``neonsign serve`` against.

``app``: the learning path's serving app. Like its ``app.py``: FastAPI, ``POST /predict/`` with
an uploaded image, PyTorch ``TrafficSignNet`` in eval mode, Pillow ``resize((32, 32))``,
ToTensor + Normalize(0.5, 0.5) arithmetic in torch, ``torch.no_grad()``, the model run inside
the ``async`` endpoint, and ``{"predicted_class": N}`` back. Weights come from the model
directory named by ``NEONSIGN_REFERENCE_MODEL`` (``model.safetensors``), so both servers run the
same model. ``NEONSIGN_REFERENCE_THREADS``, if set, calls ``torch.set_num_threads`` (the
learning path leaves PyTorch's default, one thread per core; the benchmark uses 1, its best
setting on a small shared machine).

``floor_app``: the framework floor. The same FastAPI route and ``UploadFile`` field, reading the
whole upload and answering a constant: no decode, no model. What any FastAPI server of this
API pays before it does any work. It does not import PyTorch (``app`` is built on first access),
so its memory is the framework's alone.

Run: ``uvicorn reference_server:app --app-dir benchmarks --workers 1`` (or ``:floor_app``).
"""

from __future__ import annotations

import io
import os
from typing import Any

from fastapi import FastAPI, File, UploadFile

floor_app = FastAPI()


@floor_app.get("/readyz")
async def floor_readyz() -> dict[str, str]:
    return {"status": "ready"}


@floor_app.post("/predict/")
async def floor_predict(file: UploadFile = File(...)) -> dict[str, int]:
    await file.read()
    return {"predicted_class": 0}


def _reference_app() -> FastAPI:
    """The learning path's app (imports PyTorch and loads the weights)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from safetensors.torch import load_file
    from torch import nn

    class TrafficSignNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.fc1 = nn.Linear(64 * 6 * 6, 128)
            self.fc2 = nn.Linear(128, 43)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.fc2(F.relu(self.fc1(x)))

    if os.environ.get("NEONSIGN_REFERENCE_THREADS"):
        torch.set_num_threads(int(os.environ["NEONSIGN_REFERENCE_THREADS"]))

    model = TrafficSignNet()
    model.load_state_dict(
        load_file(os.path.join(os.environ["NEONSIGN_REFERENCE_MODEL"], "model.safetensors"))
    )
    model.eval()

    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/predict/")
    async def predict(file: UploadFile = File(...)) -> dict[str, int]:
        image = Image.open(io.BytesIO(await file.read())).convert("RGB").resize((32, 32))
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(32, 32, 3)
        x = x.permute(2, 0, 1).float().div(255.0)  # ToTensor
        x = x.sub(0.5).div(0.5).unsqueeze(0)  # Normalize((0.5,)*3, (0.5,)*3)
        with torch.no_grad():
            out = model(x)
        return {"predicted_class": int(out.argmax(1).item())}

    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn reference_server:app`` builds the PyTorch app on first access (PEP 562), so
    # ``reference_server:floor_app`` never imports PyTorch.
    if name == "app":
        globals()["app"] = value = _reference_app()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
