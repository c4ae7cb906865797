"""Nonsense models are refused at the door (issue 13, part 7): at load and at reload, weights
and the card's preprocessing mean/std must be finite (std non-zero) and a warm-up forward on a
fixed probe batch must give finite logits; a refused reload leaves the old model serving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from neonsign.artifacts import load_model, make_card, save_model
from neonsign.engine import Engine
from neonsign.errors import ModelError
from serve_helpers import encode, make_model_dir, random_state_dict, sign_like_images


def _overflowing(seed: int = 1) -> dict[str, np.ndarray]:
    """Finite weights whose logits overflow float32: fc2 scaled by 1e38."""
    sd = random_state_dict(seed)
    sd["fc2.weight"] = sd["fc2.weight"] * np.float32(1e38)
    assert all(np.isfinite(v).all() for v in sd.values())
    return sd


def _nan_std(model_dir: Path) -> None:
    """Rewrite the card with ``std: [NaN, NaN, NaN]`` (Python's json writes the NaN token)."""
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["preprocessing"]["std"] = [math.nan] * 3
    card_path.write_text(json.dumps(card))


def test_library_loading_refuses_overflowing_logits(tmp_path: Path) -> None:
    bad = save_model(tmp_path / "bad", _overflowing(), make_card())
    with pytest.raises(ModelError, match=r"model\.safetensors.*logits are not finite"):
        load_model(bad)
    with pytest.raises(ModelError, match=r"model\.safetensors.*logits are not finite"):
        Engine.from_file(bad)
    with pytest.raises(ModelError, match="logits are not finite"):
        Engine.from_state_dict(_overflowing()).warm_up()
    Engine.from_state_dict(random_state_dict(1)).warm_up()  # a sound model passes


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("std", [math.nan] * 3, r"preprocessing\.std must be 3 finite numbers"),
        ("std", [0.5, 0.0, 0.5], r"preprocessing\.std must be non-zero"),
        ("mean", [0.5, math.inf, 0.5], r"preprocessing\.mean must be 3 finite numbers"),
        ("mean", [0.5, 0.5], r"preprocessing\.mean must be 3 finite numbers"),
        ("mean", "0.5", r"preprocessing\.mean must be 3 numbers"),
    ],
)
def test_library_loading_refuses_bad_card_stats(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    model_dir = make_model_dir(tmp_path / "m", seed=3)
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["preprocessing"][field] = value
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message) as info:
        load_model(model_dir)
    assert "model_card.json" in str(info.value)


def test_serving_load_refuses_nonsense(tmp_path: Path) -> None:
    from neonsign.app.serving import LoadedModel

    bad = save_model(tmp_path / "bad", _overflowing(), make_card())
    with pytest.raises(ModelError, match="logits are not finite"):
        LoadedModel.load(str(bad), threads=1)
    nan_card = make_model_dir(tmp_path / "nan", seed=2)
    _nan_std(nan_card)
    with pytest.raises(ModelError, match=r"preprocessing\.std"):
        LoadedModel.load(str(nan_card), threads=1)


def test_refused_reload_keeps_serving_the_old_model(tmp_path: Path) -> None:
    """Reload to a model whose logits overflow, then to a card with a NaN std: both are
    refused with 422 ``reload_failed`` naming the reason, the old model keeps answering,
    /readyz stays 200 and the metrics never show NaN."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    live = make_model_dir(tmp_path / "live", seed=1)
    version = json.loads((live / "model_card.json").read_text())["weights_sha256"]
    png = encode(sign_like_images(1, seed=4)[0], "PNG")
    app = create_app(str(live), threads=1, max_batch=2)
    with TestClient(app) as client:
        first = client.post("/predict/", files={"file": ("a.png", png)}).json()
        assert first["model_version"] == version and first["probability"] is not None

        save_model(live, _overflowing(), make_card(), overwrite=True)
        r = client.post("/admin/reload")
        assert r.status_code == 422 and r.json()["error"] == "reload_failed", r.text
        assert "logits are not finite" in r.json()["detail"]

        make_model_dir(live, seed=1)
        _nan_std(live)
        r = client.post("/admin/reload")
        assert r.status_code == 422 and r.json()["error"] == "reload_failed", r.text
        assert "preprocessing.std" in r.json()["detail"]

        assert client.get("/readyz").status_code == 200
        again = client.post("/predict/", files={"file": ("a.png", png)})
        assert again.status_code == 200 and again.json() == first
        metrics = client.get("/metrics").text
        assert "nan" not in metrics.lower(), [
            line for line in metrics.splitlines() if "nan" in line.lower()
        ]
