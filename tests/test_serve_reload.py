"""Reload that cannot wedge or 500 (issue 17, part 5).

``/admin/reload`` checks the source it is given (400), refuses a registry source when the
server has no registry (instead of creating ``./registry/mlflow.db``), refuses FIFOs and other
non-regular model files at once, abandons a load that takes longer than the reload timeout
(504) without blocking later reloads, is disabled without a token when the server is bound to a
non-loopback address, and compares the token in constant time. In-process (TestClient) where the
behaviour is the app's; a real uvicorn where it depends on the server (bind address, SIGHUP).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from neonsign.app.serving import ServeConfig, create_app, routes  # noqa: E402
from neonsign.app.serving import models as serving_models  # noqa: E402
from neonsign.app.serving.config import is_loopback  # noqa: E402
from neonsign.artifacts import CARD_FILE, load_model  # noqa: E402
from neonsign.errors import ConfigError  # noqa: E402
from serve_helpers import free_port, make_model_dir, running_server, serve_argv  # noqa: E402
from support import needs_subprocess  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model", seed=1)


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(model_dir), admin_token=TOKEN)) as c:
        yield c


def _version(model: Path) -> str:
    return str(load_model(model, check_logits=False)[1]["weights_sha256"])


@pytest.mark.parametrize(
    ("body", "kind", "detail"),
    [
        (b'{"source": 5}', "bad_source", "non-empty string"),
        (b'{"source": ""}', "bad_source", "non-empty string"),
        (b'{"source": ["a"]}', "bad_source", "non-empty string"),
        (b'{"source": "models:/"}', "bad_source", "expected models:/NAME@ALIAS"),
        (b'{"source": "models:/gtsrb@"}', "bad_source", "expected models:/NAME@ALIAS"),
        (b'{"source": "models:/a/b/c"}', "bad_source", "expected models:/NAME@ALIAS"),
        (b'{"source": "registry:"}', "bad_source", "registry:ALIAS"),
        (b'{"sauce": "x"}', "bad_request", '{"source": "..."}'),
        (b"[1, 2]", "bad_request", '{"source": "..."}'),
        (b"not json", "bad_request", '{"source": "..."}'),
    ],
)
def test_bad_sources_are_400(client: TestClient, body: bytes, kind: str, detail: str) -> None:
    before = client.get("/model").json()["version"]
    r = client.post("/admin/reload", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == kind and detail in r.json()["detail"], r.json()
    assert client.get("/model").json()["version"] == before


def test_registry_source_without_a_registry_creates_nothing(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NEONSIGN_REGISTRY", raising=False)
    for source in ("registry:champion", "models:/neonsign@champion"):
        r = client.post("/admin/reload", json={"source": source}, headers=AUTH)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "no model registry" in detail and "NEONSIGN_REGISTRY" in detail, detail
        assert list(cwd.iterdir()) == []  # no ./registry/mlflow.db
    assert client.get("/readyz").json()["status"] == "ready"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_card_is_refused_and_the_lock_stays_free(
    client: TestClient, tmp_path: Path, model_dir: Path
) -> None:
    hung = make_model_dir(tmp_path / "hung", seed=2)
    (hung / CARD_FILE).unlink()
    os.mkfifo(hung / CARD_FILE)  # a card nobody writes: reading it would block forever
    r = client.post("/admin/reload", json={"source": str(hung)}, headers=AUTH)
    assert r.status_code == 422 and "not a regular file" in r.json()["detail"], r.text
    other = make_model_dir(tmp_path / "other", seed=3)
    r = client.post("/admin/reload", json={"source": str(other)}, headers=AUTH)
    assert r.status_code == 200 and r.json()["version"] == _version(other), r.text


def test_a_load_that_hangs_is_abandoned_and_later_reloads_work(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loader stuck in I/O (a hung mount, a registry that does not answer) is given up after
    ``reload_timeout`` seconds (504); the next reload is not blocked by it, and its model, when
    it finally comes, is not swapped in over a newer one."""
    release, finished = threading.Event(), threading.Event()

    def hanging(source: str) -> Any:
        release.wait(60)
        try:
            return load_model(model_dir, check_logits=False)
        finally:
            finished.set()

    monkeypatch.setitem(serving_models._LOADERS, "hang", hanging)
    other = make_model_dir(tmp_path / "other", seed=3)
    app = create_app(str(model_dir), admin_token=TOKEN, reload_timeout=1)
    with TestClient(app) as c:
        r = c.post("/admin/reload", json={"source": "hang:forever"}, headers=AUTH)
        assert r.status_code == 504 and r.json()["error"] == "reload_timeout", r.text
        assert "still serving" in r.json()["detail"]
        r = c.post("/admin/reload", json={"source": str(other)}, headers=AUTH)
        assert r.status_code == 200 and r.json()["version"] == _version(other), r.text
        release.set()
        assert finished.wait(30)
        assert c.get("/model").json()["version"] == _version(other)  # not the abandoned one
        metrics = c.get("/metrics").text
        assert 'neonsign_model_reloads_total{result="error"} 1.0' in metrics


def test_admin_endpoint_needs_a_token_beyond_loopback(model_dir: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        with TestClient(create_app(str(model_dir), host=host)) as c:
            r = c.post("/admin/reload")
            assert r.status_code == 403 and r.json()["error"] == "admin_disabled", (host, r.text)
            assert "NEONSIGN_ADMIN_TOKEN" in r.json()["detail"]
    for host in ("127.0.0.1", "::1", "localhost", None):
        with TestClient(create_app(str(model_dir), host=host)) as c:
            assert c.post("/admin/reload").status_code == 200, host
    with TestClient(create_app(str(model_dir), host="0.0.0.0", admin_token=TOKEN)) as c:
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/admin/reload", headers=AUTH).status_code == 200
    assert is_loopback("127.8.9.10") and not is_loopback("0.0.0.0")


def test_token_is_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = routes.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(routes.hmac, "compare_digest", spy)
    for header in (b"Bearer wrong", f"Bearer {TOKEN}x".encode(), b"Bearer s3cret-tokem", b"\xe9"):
        r = client.post("/admin/reload", headers={"Authorization": header})  # type: ignore[dict-item]
        assert r.status_code == 401, header
    assert client.post("/admin/reload", headers=AUTH).status_code == 200
    assert len(calls) == 5 and calls[-1] == (f"Bearer {TOKEN}".encode(),) * 2


def test_reload_timeout_setting() -> None:
    assert ServeConfig.from_env({"NEONSIGN_MODEL": "m"}).reload_timeout == 120
    cfg = ServeConfig.from_env({"NEONSIGN_MODEL": "m", "NEONSIGN_RELOAD_TIMEOUT": "5"})
    assert cfg.reload_timeout == 5 and ServeConfig.from_env(cfg.to_env()) == cfg
    for bad in ("0", "abc", "-3"):
        with pytest.raises(ConfigError, match="NEONSIGN_RELOAD_TIMEOUT"):
            ServeConfig.from_env({"NEONSIGN_MODEL": "m", "NEONSIGN_RELOAD_TIMEOUT": bad})
    with pytest.raises(ConfigError, match="printable"):
        ServeConfig(model="m", admin_token="a\nb")


# ---------------------------------------------------------------------------------------------
# a real uvicorn


@needs_subprocess
def test_server_bound_to_all_interfaces_disables_the_open_admin_endpoint(
    model_dir: Path, tmp_path: Path
) -> None:
    """``neonsign serve --host 0.0.0.0`` (the container's binding) without a token: 403 even
    from this machine; SIGHUP still reloads."""
    port = free_port()
    argv = serve_argv(model_dir, port)
    argv[argv.index("--host") + 1] = "0.0.0.0"
    with running_server(argv, port, log=tmp_path / "log") as (base, proc):
        r = httpx.post(base + "/admin/reload", timeout=60)
        assert r.status_code == 403 and r.json()["error"] == "admin_disabled", r.text
        make_model_dir(model_dir, seed=4)
        proc.send_signal(signal.SIGHUP)
        _wait_version(base, _version(model_dir))


@needs_subprocess
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_source_does_not_wedge_reloads_or_sighup(model_dir: Path, tmp_path: Path) -> None:
    """The issue's case: a source whose card is a FIFO used to hold the reload lock forever,
    so every later reload, SIGHUP included, hung."""
    hung = make_model_dir(tmp_path / "hung", seed=2)
    (hung / CARD_FILE).unlink()
    os.mkfifo(hung / CARD_FILE)
    port = free_port()
    env = {"NEONSIGN_ADMIN_TOKEN": TOKEN}
    with running_server(serve_argv(model_dir, port), port, env=env, log=tmp_path / "log") as (
        base,
        proc,
    ):
        r = httpx.post(base + "/admin/reload", json={"source": str(hung)}, headers=AUTH, timeout=60)
        assert r.status_code == 422 and "not a regular file" in r.json()["detail"], r.text
        r = httpx.post(base + "/admin/reload", json={"source": 5}, headers=AUTH, timeout=60)
        assert r.status_code == 400, r.text
        make_model_dir(model_dir, seed=5)
        proc.send_signal(signal.SIGHUP)
        _wait_version(base, _version(model_dir))
        r = httpx.post(base + "/admin/reload", headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["version"] == _version(model_dir), r.text


def _wait_version(base: str, version: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(base + "/model", timeout=10).json()["version"] != version:
        assert time.monotonic() < deadline, "SIGHUP did not reload the model"
        time.sleep(0.1)


def test_registry_errors_are_422_not_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error of MLflow itself (here: a store that raises) is a failed reload, not a crash."""
    from neonsign.app import registry

    def broken(spec: str) -> Any:
        raise RuntimeError("the tracking server answered 503")

    monkeypatch.setattr(serving_models, "_check_registry", lambda source: None)
    monkeypatch.setattr(registry, "load_from_registry", broken)
    r = client.post("/admin/reload", json={"source": "models:/gtsrb@champion"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "reload_failed", r.text
    assert "RuntimeError: the tracking server answered 503" in r.json()["detail"]
