"""Model registry on MLflow (local SQLite store): register, list, show, promote, roll back,
spec resolution, bad input, and a served model that switches on promotion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'neonsign[mlflow]')")

from neonsign.app.registry import Registry, parse_spec  # noqa: E402
from neonsign.artifacts import make_card, save_model  # noqa: E402
from neonsign.errors import ModelError, NeonsignValueError  # noqa: E402
from neonsign.profiler import random_state_dict  # noqa: E402


def make_model(path: Path, seed: int, accuracy: float) -> Path:
    card = make_card(
        metrics={"accuracy": accuracy}, data_checksum=f"data-{seed}", seed=seed, epochs=1
    )
    return save_model(path, random_state_dict(seed), card)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    return Registry(f"sqlite:///{root / 'mlflow.db'}", name="neonsign")


@pytest.fixture(scope="module")
def two_versions(reg: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int]:
    root = tmp_path_factory.mktemp("models")
    v1 = reg.register(make_model(root / "a", 1, 0.80), alias="champion")
    v2 = reg.register(make_model(root / "b", 2, 0.90), alias="challenger")
    return v1.version, v2.version


def test_register_records_card(reg: Registry, two_versions: tuple[int, int]) -> None:
    v1, v2 = two_versions
    mv = reg.show(v2)
    card = json.loads((reg.download(v2) / "model_card.json").read_text())
    assert mv.tags["weights_sha256"] == card["weights_sha256"]
    assert mv.tags["data_checksum"] == "data-2"
    assert mv.tags["code_version"] == card["code_version"]
    assert mv.metrics["accuracy"] == pytest.approx(0.90)
    assert mv.aliases == ["challenger"]
    listed = reg.list()
    assert [v.version for v in listed][:2] == [v2, v1]
    assert [v.aliases for v in listed][:2] == [["challenger"], ["champion"]]


def test_promote_and_rollback(reg: Registry, two_versions: tuple[int, int]) -> None:
    v1, v2 = two_versions
    assert reg.show("champion").version == v1
    assert reg.promote("challenger", "champion").version == v2
    assert reg.show("champion").version == v2
    assert reg.history("champion")[-2:] == [v1, v2]
    assert reg.rollback("champion").version == v1
    assert reg.show("champion").version == v1
    with pytest.raises(ModelError, match="no earlier version"):
        reg.rollback("champion")


def test_bad_input(reg: Registry, two_versions: tuple[int, int], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no version"):
        reg.show(999)
    with pytest.raises(ModelError, match="no version"):
        reg.show("nosuchalias")
    with pytest.raises(NeonsignValueError, match="alias"):
        reg.promote(1, "bad alias!")
    with pytest.raises(ModelError, match="not found"):
        reg.register(tmp_path / "missing")
    tampered = make_model(tmp_path / "t", 3, 0.5)
    data = bytearray((tampered / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tampered / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        reg.register(tampered)
    for spec in ("models:/neonsign", "models:/a/b/c", "registry:", "s3://x"):
        with pytest.raises(NeonsignValueError):
            parse_spec(spec)
    assert parse_spec("models:/neonsign@champion") == ("neonsign", "champion")
    assert parse_spec("models:/neonsign/3") == ("neonsign", "3")
    assert parse_spec("registry:challenger") == ("neonsign", "challenger")


def test_served_model_switches_on_promotion(
    reg: Registry, two_versions: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    v1, v2 = two_versions
    reg.promote(v1, "champion")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", reg.uri)
    with TestClient(create_app("models:/neonsign@champion")) as client:
        before = client.get("/model").json()
        assert reg.show(v1).tags["weights_sha256"] in json.dumps(before)
        reg.promote(v2, "champion")
        r = client.post("/admin/reload")
        assert r.status_code == 200, r.text
        after = client.get("/model").json()
        assert reg.show(v2).tags["weights_sha256"] in json.dumps(after)


def test_cli(reg: Registry, two_versions: tuple[int, int]) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "neonsign.cli",
            "registry",
            "--registry-uri",
            reg.uri,
            "--json",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    versions = json.loads(out.stdout)
    assert {v["version"] for v in versions} >= set(two_versions)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "neonsign.cli",
            "registry",
            "--registry-uri",
            reg.uri,
            "show",
            "999",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no version" in out.stderr


def test_import_neonsign_does_not_import_mlflow() -> None:
    code = "import sys, neonsign, neonsign.app.registry, neonsign.cli.registry; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
