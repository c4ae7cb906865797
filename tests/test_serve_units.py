"""The serving package's seams, in process and without a server: the configuration (the only
reader of the NEONSIGN_* serve settings), the inference service and its request coalescing
(no FastAPI app), the API's error mapping, and the routes mounted from the router.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from neonsign.app.serving import Inference, LoadedModel, ServeConfig, ServerOptions
from neonsign.app.serving.inference import Coalescer, prediction
from neonsign.errors import ConfigError, DecodeError, NeonsignValueError, UnsupportedError
from serve_helpers import encode, make_model_dir, metric_value, sign_like_images

# ---------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "abc", "from 1 to 65535"),
        ("PORT", "0", "from 1 to 65535"),
        ("PORT", "84043", "from 1 to 65535"),
        ("WORKERS", "-1", ">= 1"),
        ("WORKERS", "two", ">= 1"),
        ("LIMIT_CONCURRENCY", "0", ">= 1"),
        ("LOG_LEVEL", "loud", "one of critical, error, warning, info, debug, trace"),
    ],
)
def test_server_options_bad_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("NEONSIGN_" + variable, value)
    with pytest.raises(ConfigError) as info:
        ServerOptions.from_env()
    message = str(info.value)
    assert f"NEONSIGN_{variable}={value!r}" in message and expected in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAX_BATCH", "x", ">= 1"),
        ("MAX_BATCH", "0", ">= 1"),
        ("MAX_PIXELS", "lots", ">= 1"),
        ("MAX_UPLOAD_BYTES", "1.5", ">= 1"),
        ("THREADS", "0", ">= 1"),
        ("ENGINE_THREADS", "-1", ">= 0"),
    ],
)
def test_serve_config_bad_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("NEONSIGN_MODEL", "/models/current")
    monkeypatch.setenv("NEONSIGN_" + variable, value)
    with pytest.raises(ConfigError) as info:
        ServeConfig.from_env()
    message = str(info.value)
    assert f"NEONSIGN_{variable}={value!r}" in message and expected in message


def test_config_from_a_mapping_and_defaults() -> None:
    env = {"NEONSIGN_MODEL": "m", "NEONSIGN_ENGINE_THREADS": "0", "NEONSIGN_PORT": "9000"}
    cfg = ServeConfig.from_env(env)
    assert cfg == ServeConfig(model="m", engine_threads=None)
    assert ServeConfig.from_env({}, model="x").model == "x"
    with pytest.raises(ConfigError, match="NEONSIGN_MODEL"):
        ServeConfig.from_env({})
    opts = ServerOptions.from_env(env, workers=3)
    assert (opts.host, opts.port, opts.workers, opts.log_level) == ("127.0.0.1", 9000, 3, "info")
    assert ServerOptions.from_env({}) == ServerOptions()
    assert ServerOptions.from_env({"NEONSIGN_LOG_LEVEL": "WARNING"}).log_level == "WARNING"


def test_config_fields_are_checked() -> None:
    for bad in (0, 65536, 84043, -1, True, "80"):
        with pytest.raises(ConfigError, match="port must be an integer from 1 to 65535"):
            ServerOptions(port=bad)  # type: ignore[arg-type]
    for field in ("workers", "limit_concurrency"):
        with pytest.raises(ConfigError, match=field):
            ServerOptions(**{field: 0})
    with pytest.raises(ConfigError, match="log_level"):
        ServerOptions(log_level="chatty")
    with pytest.raises(NeonsignValueError, match="max_batch"):
        ServeConfig(model="m", max_batch=0)
    assert ServerOptions(port=65535).port == 65535


# ---------------------------------------------------------------------------------------------
# Inference without an app


class CountingEngine:
    """Wraps an Engine: records the batch size of every call, can fail on demand."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.kernel = getattr(engine, "kernel", "ref")
        self.calls: list[int] = []
        self.fail = False
        self.lock = threading.Lock()

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(len(x))
        if self.fail:
            raise RuntimeError("engine exploded")
        return self.engine.predict(x)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return LoadedModel.load(str(make_model_dir(tmp_path_factory.mktemp("units_model"), seed=4)))


@pytest.fixture()
def counted(loaded: LoadedModel) -> LoadedModel:
    return dataclasses.replace(loaded, engine=CountingEngine(loaded.engine))


class Recorder:
    """An InferenceObserver that keeps everything it is told."""

    def __init__(self) -> None:
        self.uploads: list[int] = []
        self.formats: list[str] = []
        self.engine_calls: list[int] = []
        self.classes: list[int] = []

    def upload(self, nbytes: int) -> None:
        self.uploads.append(nbytes)

    def prepared(self, image, seconds: float) -> None:
        self.formats.append(image.fmt)

    def engine_call(self, images: int, seconds: float) -> None:
        self.engine_calls.append(images)

    def predicted(self, pred) -> None:
        self.classes.append(pred["predicted_class"])


def _blobs(n: int, seed: int) -> list[bytes]:
    return [encode(img, "PNG") for img in sign_like_images(n, seed=seed)]


def _expected(model: LoadedModel, blobs: list[bytes]) -> list[int]:
    """Top-1 of each image classified on its own (no coalescing)."""
    inference = Inference(max_pixels=10**6, max_batch=1, threads=1)
    try:
        return [inference.run_batch([b], model)[0]["predicted_class"] for b in blobs]
    finally:
        inference.close()


async def _gather_one_by_one(inference: Inference, blobs: list[bytes], model: LoadedModel):
    return await asyncio.gather(
        *(inference.predict_one(b, model) for b in blobs), return_exceptions=True
    )


def test_concurrent_requests_coalesce_into_one_engine_call(counted: LoadedModel) -> None:
    blobs = _blobs(8, seed=21)
    expected = _expected(counted, blobs)
    counted.engine.calls.clear()
    recorder = Recorder()
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1, observer=recorder)
    try:
        results = asyncio.run(_gather_one_by_one(inference, blobs, counted))
    finally:
        inference.close()
    # the first request starts at once; the seven queued behind it share one engine call
    assert counted.engine.calls == [1, 7]
    assert [r["predicted_class"] for r in results] == expected
    assert all(r["model_version"] == counted.version for r in results)
    assert recorder.engine_calls == [1, 7] and recorder.classes == expected
    assert recorder.uploads == [len(b) for b in blobs] and recorder.formats == ["PNG"] * 8


def test_coalesced_errors_stay_with_their_request(counted: LoadedModel) -> None:
    good = _blobs(6, seed=22)
    expected = _expected(counted, good)
    counted.engine.calls.clear()
    blobs = [good[0], good[1][:100], good[1], b"GIF89a" + bytes(40), *good[2:]]
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1)
    try:
        results = asyncio.run(_gather_one_by_one(inference, blobs, counted))
    finally:
        inference.close()
    assert isinstance(results[1], DecodeError) and isinstance(results[3], UnsupportedError)
    good_results = [r for i, r in enumerate(results) if i not in (1, 3)]
    assert [r["predicted_class"] for r in good_results] == expected
    assert counted.engine.calls == [1, 5]  # the bad ones never reach the engine
    # a bad request on its own (nothing else in its job)
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1)
    try:
        with pytest.raises(UnsupportedError):
            asyncio.run(inference.predict_one(b"hello", counted))
        assert isinstance(inference.run_coalesced([(b"", counted)])[0], UnsupportedError)
    finally:
        inference.close()


def test_an_engine_failure_fails_its_group_only(counted: LoadedModel) -> None:
    blobs = _blobs(4, seed=23)
    counted.engine.fail = True
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1)
    try:
        results = asyncio.run(_gather_one_by_one(inference, [*blobs, b"nonsense"], counted))
        counted.engine.fail = False
        after = asyncio.run(inference.predict_one(blobs[0], counted))
    finally:
        inference.close()
    assert all(isinstance(r, RuntimeError) for r in results[:4])
    assert isinstance(results[4], UnsupportedError)
    assert after["predicted_class"] == _expected(counted, blobs[:1])[0]


def test_coalesced_requests_of_two_models(counted: LoadedModel, loaded: LoadedModel) -> None:
    """Requests that read different models (a reload in between) get their own model's
    answer, one engine call per model."""
    other = dataclasses.replace(loaded, engine=CountingEngine(loaded.engine), version="other")
    blobs = _blobs(5, seed=24)
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1)
    try:
        results = inference.run_coalesced(
            [(b, counted if i % 2 else other) for i, b in enumerate(blobs)]
        )
    finally:
        inference.close()
    assert [r["model_version"] for r in results] == ["other", counted.version] * 2 + ["other"]
    assert counted.engine.calls == [2] and other.engine.calls == [3]


def test_predict_batch_is_one_engine_call(counted: LoadedModel) -> None:
    blobs = _blobs(5, seed=25)
    expected = _expected(counted, blobs)
    counted.engine.calls.clear()
    inference = Inference(max_pixels=10**6, max_batch=64, threads=2)
    try:
        preds = asyncio.run(inference.predict_batch(blobs, counted))
        assert [p["predicted_class"] for p in preds] == expected
        assert counted.engine.calls == [5]
        with pytest.raises(DecodeError):  # one bad image fails the batch
            asyncio.run(inference.predict_batch([blobs[0], blobs[1][:50]], counted))
    finally:
        inference.close()


def test_coalescer_respects_max_items_and_max_running() -> None:
    batches: list[list[int]] = []

    def work(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        return [ValueError(i) if i == 5 else i * 10 for i in items]

    async def go() -> list[object]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            c: Coalescer[int, int] = Coalescer(pool, work, max_items=3, max_running=1)
            return await asyncio.gather(*(c.submit(i) for i in range(8)), return_exceptions=True)

    results = asyncio.run(go())
    assert batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert results[:5] == [0, 10, 20, 30, 40] and results[6:] == [60, 70]
    assert isinstance(results[5], ValueError)


def test_prediction_top5_and_softmax(loaded: LoadedModel) -> None:
    from neonsign import preprocess
    from neonsign._math import softmax

    img = sign_like_images(1, seed=26)[0]
    x = preprocess.preprocess_image(img)
    probs = softmax(loaded.engine.predict(x[None]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    pred = prediction(probs[0], "v")
    cls, prob = loaded.engine.classify(x)
    assert pred["predicted_class"] == int(cls) and pred["probability"] == float(prob)
    assert [t["class_id"] for t in pred["top5"]] == list(np.argsort(-probs[0], kind="stable")[:5])


# ---------------------------------------------------------------------------------------------
# The API's error mapping and the app assembled from the router


def test_api_error_mapping() -> None:
    pytest.importorskip("fastapi")
    from neonsign.app.serving.errors import api_error
    from neonsign.app.serving.inference import RoiError
    from neonsign.errors import ResourceLimitError

    cases = {
        ResourceLimitError("big"): (413, "too_many_pixels"),
        UnsupportedError("gif"): (415, "unsupported_media_type"),
        DecodeError("bad"): (400, "decode_error"),
        RoiError("roi 0,0,9,9 does not fit"): (422, "invalid_roi"),
        RuntimeError("boom"): (500, "internal_error"),
    }
    for exc, (status, kind) in cases.items():
        err = api_error(exc)
        assert (err.status, err.kind) == (status, kind) and err.detail


def test_routes_are_mounted_from_the_router(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app
    from neonsign.app.serving.routes import router

    model_dir = make_model_dir(tmp_path / "m", seed=5)
    app = create_app(str(model_dir), threads=1, max_batch=2)
    ours = {r.path for r in router.routes}  # type: ignore[attr-defined]
    assert ours == {
        "/predict",
        "/predict/",
        "/predict/batch",
        "/healthz",
        "/readyz",
        "/model",
        "/metrics",
        "/admin/reload",
        "/",
        "/docs",
        "/examples/{name}",
    }
    assert set(app.openapi()["paths"]) == ours - {"/predict/", "/", "/docs", "/examples/{name}"}
    with pytest.raises(ConfigError, match="not both"):
        create_app(ServeConfig(model=str(model_dir)), threads=1)
    png = _blobs(1, seed=27)[0]
    with TestClient(app) as client:  # runs the lifespan: load and warm
        assert client.get("/readyz").json()["status"] == "ready"
        r = client.post("/predict", files={"file": ("a.png", png)})
        assert (
            r.status_code == 200 and r.json()["model_version"] == app.state.holder.current.version
        )
        files = [("files", (f"{i}.png", png)) for i in range(3)]
        r = client.post("/predict/batch", files=files)
        assert r.status_code == 413 and r.json()["error"] == "too_many_files"
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "neonsign_errors_total", kind="too_many_files") == 1
        assert metric_value(metrics, "neonsign_predictions_total") == 1
        labels = {"route": "/predict/batch", "status": "413"}
        assert metric_value(metrics, "neonsign_http_requests_total", **labels) == 1


# ---------------------------------------------------------------------------------------------
# The optional ROI sent with an upload


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1,2,30,40", (1, 2, 30, 40)),
        (" 0, 0 ,0,0", (0,) * 4),
    ],
)
def test_parse_roi_accepts(text: str | None, expected: tuple[int, ...] | None) -> None:
    from neonsign.app.serving.inference import parse_roi

    assert parse_roi(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "four integers"),
        ("1,2,3,4,5", "four integers"),
        ("a,b,c,d", "four integers"),
        ("1.5,2,3,4", "four integers"),
        ("-1,0,3,3", "0 <= x1 <= x2"),
        ("5,0,4,3", "0 <= x1 <= x2"),
        ("0,5,4,3", "0 <= y1 <= y2"),
    ],
)
def test_parse_roi_refuses(text: str, message: str) -> None:
    from neonsign.app.serving.inference import RoiError, parse_roi

    with pytest.raises(RoiError, match=message) as info:
        parse_roi(text)
    assert isinstance(info.value, NeonsignValueError) and "roi" in str(info.value)


def test_parse_rois() -> None:
    from neonsign.app.serving.inference import RoiError, parse_rois

    assert parse_rois(None, 2) == [None, None]
    assert parse_rois("[[1, 2, 3, 4], null]", 2) == [(1, 2, 3, 4), None]
    for text, message in [
        ("[[1, 2, 3, 4]]", "list of 2 entries"),
        ("{}", "list of 2 entries"),
        ("not json", "list of 2 entries"),
        ("[[1, 2, 3], null]", r"rois\[0\]: expected \[x1, y1, x2, y2\]"),
        ("[null, [1, 2, 3, true]]", r"rois\[1\]"),
        ("[null, [1, 2, 3, 4.0]]", r"rois\[1\]"),
        ("[null, [3, 2, 1, 4]]", r"rois\[1\]: expected 0 <= x1 <= x2"),
    ]:
        with pytest.raises(RoiError, match=message):
            parse_rois(text, 2)


def test_roi_crop_is_the_library_path(loaded: LoadedModel) -> None:
    """A ROI sent with an upload gives exactly the input of neonsign.images.prepare(roi=...),
    the function ``neonsign predict --roi`` calls; a ROI outside the image is a RoiError."""
    from neonsign import images
    from neonsign.app.serving.inference import RoiError, prepare

    image = sign_like_images(1, seed=31)[0]
    h, w = image.shape[:2]
    png = encode(image, "PNG")
    card = {"size": loaded.size, "mean": loaded.mean, "std": loaded.std}
    for roi in [(0, 0, w - 1, h - 1), (3, 4, w // 2, h // 2), (w - 1, h - 1, w - 1, h - 1)]:
        got = prepare(png, loaded, 10**6, roi)
        assert np.array_equal(got.x, images.prepare(png, card, roi))
        assert (got.width, got.height, got.fmt) == (w, h, "PNG")
    assert not np.array_equal(
        prepare(png, loaded, 10**6, (3, 4, 9, 9)).x, prepare(png, loaded, 10**6).x
    )
    for roi in [(0, 0, w, h - 1), (0, 0, w - 1, h)]:
        with pytest.raises(RoiError, match=f"does not fit the {w}x{h} image"):
            prepare(png, loaded, 10**6, roi)


def _ranked(pred: dict) -> list[int]:
    return [c["class_id"] for c in pred["top5"]]


def test_rois_in_a_batch_and_coalesced(counted: LoadedModel) -> None:
    """Per-file ROIs of a batch, and ROIs of concurrent single requests coalesced into one
    engine call, each give the answer of that image cropped on its own."""
    from neonsign.app.serving.inference import Upload

    blobs = _blobs(4, seed=33)
    rois = [(1, 1, 15, 15), None, (0, 2, 10, 19), None]
    solo = Inference(max_pixels=10**6, max_batch=1, threads=1)
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1)
    try:
        expected = [solo.run_batch([b], counted, [r])[0] for b, r in zip(blobs, rois, strict=True)]
        batch = asyncio.run(inference.predict_batch(blobs, counted, rois))
        coalesced = inference.run_coalesced(
            [Upload(b, counted, r) for b, r in zip(blobs, rois, strict=True)]
        )
    finally:
        solo.close()
        inference.close()
    # the engine's last bits depend on the batch's size (odd sizes take another path), so
    # compare the classes and the probabilities to float32 precision
    for got in (batch, coalesced):
        assert [_ranked(p) for p in got] == [_ranked(p) for p in expected]
        for p, q in zip(got, expected, strict=True):
            assert p["probability"] == pytest.approx(q["probability"], rel=1e-4, abs=1e-6)
    whole = _expected(counted, blobs)
    assert [p["predicted_class"] for p in expected][1::2] == whole[1::2]


def test_roi_form_fields(tmp_path: Path) -> None:
    """``roi`` on /predict and /predict/, ``rois`` on /predict/batch: the crop's answer, and
    422 ``invalid_roi`` naming the problem for a malformed or out-of-image ROI."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    image = sign_like_images(1, seed=35)[0]
    h, w = image.shape[:2]
    png = encode(image, "PNG")
    app = create_app(str(make_model_dir(tmp_path / "m", seed=6)), threads=1)
    with TestClient(app) as client:
        model = app.state.holder.current
        inference = Inference(max_pixels=10**6, max_batch=1, threads=1)
        try:
            crop = inference.run_batch([png], model, [(2, 3, w - 5, h - 6)])[0]
            whole = inference.run_batch([png], model)[0]
        finally:
            inference.close()

        def post(path: str, **data: str) -> tuple[int, dict]:
            r = client.post(path, files={"file": ("a.png", png)}, data=data)
            return r.status_code, r.json()

        for path in ("/predict", "/predict/"):
            assert post(path, roi=f"2,3,{w - 5},{h - 6}") == (200, crop)
            assert post(path, roi="") == (200, whole) == post(path)
        for roi, message in [
            ("1,2,3", "four integers"),
            ("9,0,1,5", "0 <= x1 <= x2"),
            (f"0,0,{w},{h - 1}", f"does not fit the {w}x{h} image"),
        ]:
            status, body = post("/predict", roi=roi)
            assert status == 422 and body["error"] == "invalid_roi" and message in body["detail"]
        files = [("files", (f"{i}.png", png)) for i in range(2)]
        r = client.post(
            "/predict/batch", files=files, data={"rois": f"[null, [2, 3, {w - 5}, {h - 6}]]"}
        )
        assert r.status_code == 200
        assert [_ranked(p) for p in r.json()["predictions"]] == [_ranked(whole), _ranked(crop)]
        r = client.post("/predict/batch", files=files, data={"rois": "[null]"})
        assert r.status_code == 422 and r.json()["error"] == "invalid_roi"
        assert "list of 2 entries" in r.json()["detail"]
        schema = app.openapi()["components"]["schemas"]
        assert (
            "x1,y1,x2,y2" in schema["Body_predict_predict_post"]["properties"]["roi"]["description"]
        )
        assert "rois" in schema["Body_predict_batch_predict_batch_post"]["properties"]
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "neonsign_errors_total", kind="invalid_roi") == 4


def test_corked_transport_sends_one_steps_writes_together() -> None:
    """A response written in one event-loop step (status line + headers, then body) leaves in
    one write; close sends what is queued first, abort drops it; the rest is delegated."""
    from neonsign.app.serving.protocol import CorkedTransport

    class Fake:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.events: list[str] = []

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return bool(self.events)

        def close(self) -> None:
            self.events.append("close")

        def abort(self) -> None:
            self.events.append("abort")

        def get_extra_info(self, name: str) -> str:
            return f"info {name}"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = Fake()
        corked = CorkedTransport(fake, loop)  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        corked.write(b"body")
        assert fake.writes == []
        await asyncio.sleep(0)
        assert fake.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
        assert corked.get_extra_info("peername") == "info peername"
        corked.write(b"last")
        corked.close()
        assert fake.writes[-1] == b"last" and fake.events == ["close"]
        await asyncio.sleep(0)  # the scheduled flush finds nothing left to send
        assert len(fake.writes) == 2
        other = Fake()
        dropped = CorkedTransport(other, loop)  # type: ignore[arg-type]
        dropped.write(b"never sent")
        dropped.abort()
        await asyncio.sleep(0)
        assert other.writes == [] and other.events == ["abort"]

    asyncio.run(scenario())
