"""The serving fast path and the bounded lanes, in process (issue 15).

* :func:`parse_form` reads exactly the multipart bodies clients send (httpx's encoder here) and
  declines everything else, which the FastAPI route then parses;
* the fast path and the FastAPI route give the same answers and the same errors;
* :func:`neonsign.images.probe` reads sizes from headers; ``reduce_above`` decodes large JPEGs
  at a reduced scale and leaves every other image exactly as before;
* the inline lane coalesces; the batch lane has a pixel budget and an admission bound, and a
  single request is answered while a batch holds the batch lane.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
from pathlib import Path

import numpy as np
import pytest

from serve_helpers import encode, make_model_dir, metric_value, sign_like_images

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from neonsign import images  # noqa: E402
from neonsign.app.serving import Inference, LoadedModel  # noqa: E402
from neonsign.app.serving.inference import Busy  # noqa: E402
from neonsign.app.serving.multipart import Part, boundary_of, parse_form  # noqa: E402
from neonsign.errors import DecodeError, ResourceLimitError, UnsupportedError  # noqa: E402


def _encoded(
    files: list[tuple[str, tuple[str, bytes]]], data: dict[str, str]
) -> tuple[bytes, bytes]:
    """A multipart body and its content type, as httpx encodes them."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"].encode()


def test_parse_form_reads_what_clients_send() -> None:
    body, ctype = _encoded([("file", ("a b.png", b"\x89PNG\r\n--x\r\n"))], {"roi": "1,2,3,4"})
    form = parse_form(body, ctype, max_parts=4)
    assert form == {
        "roi": [Part(None, b"1,2,3,4")],
        "file": [Part("a b.png", b"\x89PNG\r\n--x\r\n")],
    }
    files = [("files", (f"{i}.png", bytes([i]) * 10)) for i in range(3)]
    body, ctype = _encoded(files, {})
    form = parse_form(body, ctype, max_parts=4)
    assert form is not None and [p.data for p in form["files"]] == [
        bytes([i]) * 10 for i in range(3)
    ]
    assert parse_form(body, ctype, max_parts=2) is None  # more parts than allowed


def _with(body: bytes, old: bytes, new: bytes) -> bytes:
    assert old in body
    return body.replace(old, new, 1)


def test_parse_form_declines_unusual_bodies() -> None:
    body, ctype = _encoded([("file", ("a.png", b"data"))], {})
    boundary = boundary_of(ctype)
    assert boundary is not None and parse_form(body, ctype, 4) is not None
    declined = {
        "preamble": (b"preamble\r\n" + body, ctype),
        "epilogue text": (body + b"more", ctype),
        "unterminated": (body[: body.rindex(b"--" + boundary)], ctype),
        "other header": (_with(body, b"Content-Type", b"X-Other: 1\r\nContent-Type"), ctype),
        "encoded filename": (_with(body, b'filename="a.png"', b"filename*=UTF-8''a.png"), ctype),
        "escaped quote": (_with(body, b'filename="a.png"', b'filename="a\\".png"'), ctype),
        "padding": (_with(body, b"--" + boundary + b"\r\n", b"--" + boundary + b"  \r\n"), ctype),
        "not form-data": (body, b"multipart/mixed; boundary=" + boundary),
        "no boundary": (body, b"multipart/form-data"),
        "urlencoded": (b"file=a", b"application/x-www-form-urlencoded"),
    }
    for name, (b, t) in declined.items():
        assert parse_form(b, t, 4) is None, name


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("fastpath_model"), seed=9)


def test_fast_path_and_fastapi_route_answer_alike(model_dir: Path) -> None:
    """The same requests, once as plain bodies (the fast path) and once with an extra part
    header (which the fast path declines, so FastAPI parses them): identical answers and
    errors."""
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    png = encode(sign_like_images(1, seed=10)[0], "PNG")
    cases = [
        ("/predict/", [("file", ("a.png", png))], {}),
        ("/predict", [("file", ("a.png", png))], {"roi": "2,2,15,15"}),
        ("/predict", [("file", ("a.png", png))], {"roi": "2,2,900,15"}),  # 422 invalid_roi
        ("/predict", [("file", ("a.gif", b"GIF89a" + bytes(30)))], {}),  # 415
        ("/predict/batch", [("files", ("a.png", png)), ("files", ("b.png", png))], {}),
        ("/predict/batch", [("files", ("a.png", png))] * 2, {"rois": "[[1, 1, 9, 9], null]"}),
        ("/predict/batch", [("files", ("a.png", png))] * 2, {"rois": "[1]"}),  # 422
        ("/predict/batch", [("files", ("a.png", png))] * 3, {}),  # 413 too_many_files
    ]
    app = create_app(str(model_dir), threads=1, max_batch=2)
    with TestClient(app) as client:
        for path, files, data in cases:
            body, ctype = _encoded(files, data)
            first = body[: body.index(b"\r\n") + 2]
            odd = first + b"X-Other: 1\r\n" + body[len(first) :]
            assert parse_form(body, ctype, 3) is not None and parse_form(odd, ctype, 3) is None
            headers = {"content-type": ctype.decode()}
            fast = client.post(path, content=body, headers=headers)
            slow = client.post(path, content=odd, headers=headers)
            assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), path
        # a missing field is FastAPI's validation error, as before
        r = client.post("/predict", files={"image": ("a.png", png)})
        assert r.status_code == 422 and r.json()["error"] == "validation_error"
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "neonsign_errors_total", kind="invalid_roi") == 4
    assert metric_value(metrics, "neonsign_errors_total", kind="too_many_files") == 2
    assert (
        metric_value(metrics, "neonsign_http_requests_total", route="/predict", status="200") == 2
    )


def test_fast_path_hands_on_what_it_does_not_answer(model_dir: Path) -> None:
    """The fast path runs in front of the whole FastAPI stack: a request without a
    Content-Length (chunked) or over the upload limit goes through that stack (the guard's
    413, the route's answer), and a bug inside the fast path is a JSON 500, not a dropped
    connection."""
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    png = encode(sign_like_images(1, seed=11)[0], "PNG")
    body, ctype = _encoded([("file", ("a.png", png))], {})
    headers = {"content-type": ctype.decode()}
    app = create_app(str(model_dir), threads=1, max_upload_bytes=len(body) + 10)
    fast = app.fast_path
    assert fast is not None
    parsed = []
    parse = fast._parse
    fast._parse = lambda *a: parsed.append(1) or parse(*a)  # type: ignore[method-assign]
    with TestClient(app) as client:
        plain = client.post("/predict", content=body, headers=headers)
        chunked = client.post("/predict", content=iter([body[:100], body[100:]]), headers=headers)
        assert plain.status_code == chunked.status_code == 200
        assert plain.json() == chunked.json()
        assert len(parsed) == 1  # the chunked one went through FastAPI
        big, big_type = _encoded([("file", ("a.png", png + bytes(64)))], {})
        r = client.post("/predict", content=big, headers={"content-type": big_type.decode()})
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        async def broken(*_args: object) -> None:
            raise RuntimeError("a bug")

        fast._answer = broken  # type: ignore[method-assign]
        r = client.post("/predict", content=body, headers=headers)
        assert r.status_code == 500 and r.json()["error"] == "internal_error"
        assert "a bug" in r.json()["detail"]
        metrics = client.get("/metrics").text
    assert (
        metric_value(metrics, "neonsign_http_requests_total", route="/predict", status="200") == 2
    )
    assert (
        metric_value(metrics, "neonsign_http_requests_total", route="/predict", status="500") == 1
    )


def test_probe_reads_sizes_from_headers() -> None:
    img = sign_like_images(1, seed=11)[0]
    h, w = img.shape[:2]
    for fmt in ("PNG", "JPEG", "PPM"):
        assert images.probe(encode(img, fmt)) == (fmt, w, h)
    assert images.probe(b"P6\n# a comment\n 7 5\n255\n") == ("PPM", 7, 5)
    with pytest.raises(UnsupportedError):
        images.probe(b"GIF89a")
    with pytest.raises(DecodeError):
        images.probe(b"\xff\xd8\xff" + bytes(10))


def test_reduced_jpeg_decode_only_above_the_threshold() -> None:
    from PIL import Image

    rng = np.random.default_rng(12)
    small = encode(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), "JPEG")
    # a normal image is decoded exactly as without the option
    np.testing.assert_array_equal(
        images.decode(small, reduce_above=1 << 20).image, images.decode(small).image
    )
    big = encode(
        np.kron(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.ones((80, 80, 1), np.uint8)),
        "JPEG",
    )
    assert images.probe(big) == ("JPEG", 3200, 2400)
    full = images.decode(big).image
    reduced = images.decode(big, reduce_above=1 << 20).image
    assert full.shape == (2400, 3200, 3) and reduced.shape == (1200, 1600, 3)  # 1/2: >= 1 MP
    # what libjpeg's scaled decode gives (Pillow's draft), not a resize of the full decode
    with Image.open(io.BytesIO(big)) as im:
        im.draft("RGB", (1600, 1200))
        np.testing.assert_array_equal(reduced, np.asarray(im.convert("RGB")))
    # a ROI is in full-size pixels: a cropped upload is never reduced
    from neonsign.app.serving.inference import prepare

    class Card:
        size, mean, std = (32, 32), (0.5,) * 3, (0.5,) * 3

    cropped = prepare(big, Card, 10**8, (0, 0, 3199, 2399), reduce_above=1 << 20)  # type: ignore[arg-type]
    assert (cropped.width, cropped.height) == (3200, 2400)


class BlockingEngine:
    """An engine whose calls from the batch lane wait for ``release``."""

    def __init__(self, engine: object) -> None:
        self.engine, self.kernel = engine, "ref"
        self.release, self.entered = threading.Event(), threading.Event()
        self.calls: list[int] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        if threading.current_thread().name.startswith("neonsign-batch"):
            self.entered.set()
            assert self.release.wait(60)
        return self.engine.predict(x)  # type: ignore[attr-defined]


@pytest.fixture()
def blocking(model_dir: Path) -> LoadedModel:
    loaded = LoadedModel.load(str(model_dir))
    return dataclasses.replace(loaded, engine=BlockingEngine(loaded.engine))


def test_inline_lane_coalesces_what_arrived_together(blocking: LoadedModel) -> None:
    blobs = [encode(img, "PNG") for img in sign_like_images(6, seed=13)]
    inference = Inference(max_pixels=10**6, max_batch=64, threads=1, inline_pixels=200 * 200)

    async def all_at_once() -> list[object]:
        return await asyncio.gather(*(inference.predict_one(b, blocking) for b in blobs))

    try:
        results = asyncio.run(all_at_once())
    finally:
        inference.close()
    assert blocking.engine.calls == [6]  # type: ignore[attr-defined]
    expected = [
        r["predicted_class"]
        for r in Inference(max_pixels=10**6, max_batch=1).run_batch(blobs[:1], blocking)
    ]
    assert results[0]["predicted_class"] == expected[0]  # type: ignore[index]


def test_batch_lane_budget_admission_and_singles_meanwhile(blocking: LoadedModel) -> None:
    blobs = [encode(img, "PNG") for img in sign_like_images(4, seed=14)]
    declared = sum(images.probe(b)[1] * images.probe(b)[2] for b in blobs)
    inference = Inference(
        max_pixels=10**6, max_batch=64, threads=1, inline_pixels=200 * 200, batch_queue=1,
        max_batch_pixels=declared,
    )  # fmt: skip
    engine = blocking.engine

    async def scenario() -> tuple[object, ...]:
        with pytest.raises(ResourceLimitError, match="batch budget"):
            await inference.predict_batch([*blobs, blobs[0]], blocking)  # one image too many
        running = asyncio.ensure_future(inference.predict_batch(blobs, blocking))
        while not engine.entered.is_set():  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        reason = inference.saturation()
        with pytest.raises(Busy):
            await inference.predict_batch(blobs[:2], blocking)
        single = await inference.predict_one(blobs[0], blocking)  # answered meanwhile
        done_before = running.done()
        engine.release.set()  # type: ignore[attr-defined]
        return reason, single, done_before, await running, inference.saturation()

    try:
        reason, single, done_before, batch, after = asyncio.run(scenario())
    finally:
        engine.release.set()  # type: ignore[attr-defined]
        inference.close()
    assert reason is not None and "batch" in reason and after is None
    assert not done_before and single["predicted_class"] == batch[0]["predicted_class"]  # type: ignore[index]
    assert engine.calls == [4, 1]  # type: ignore[attr-defined]  # the budget refusal decoded nothing


def test_a_bad_file_in_a_batch_is_named_by_its_position(model_dir: Path) -> None:
    """A batch with a file that is no image at all is refused as unsupported (415), not as
    over the pixel budget its unreadable header would count for; a corrupt image is a decode
    error (400); both name the image's position in the batch."""
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    png = encode(sign_like_images(1, seed=15)[0], "PNG")
    corrupt = png[:40]
    app = create_app(str(model_dir), threads=1, max_batch=4)
    with TestClient(app) as client:
        text = [
            ("files", ("a.png", png)),
            ("files", ("b.txt", b"hello")),
            ("files", ("c.txt", b"x")),
        ]
        r = client.post("/predict/batch", files=text)
        assert r.status_code == 415, r.text
        assert (
            "image 2 of 3" in r.json()["detail"]
            and "unsupported image format" in r.json()["detail"]
        )
        r = client.post(
            "/predict/batch", files=[("files", ("a.png", png)), ("files", ("b.png", corrupt))]
        )
        assert r.status_code == 400, r.text
        assert "image 2 of 2" in r.json()["detail"]
    inference = Inference(max_pixels=10**6, max_batch=4, max_batch_pixels=10**12)
    try:
        with pytest.raises(UnsupportedError, match="image 1 of 2"):
            inference.check_batch_budget([b"GIF89a" + bytes(30), png])
        with pytest.raises(DecodeError, match="image 2 of 2"):
            inference.run_batch([png, corrupt], LoadedModel.load(str(model_dir)))
    finally:
        inference.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [("BATCH_QUEUE", "0"), ("MAX_BATCH_PIXELS", "-5"), ("MAX_QUEUE", "x"), ("INLINE_PIXELS", "-1")],
)
def test_new_serve_settings_are_checked(name: str, value: str) -> None:
    from neonsign.app.serving import ServeConfig, ServerOptions
    from neonsign.errors import ConfigError

    with pytest.raises(ConfigError, match=f"NEONSIGN_{name}"):
        ServeConfig.from_env({"NEONSIGN_MODEL": "m", f"NEONSIGN_{name}": value})
    with pytest.raises(ConfigError, match="NEONSIGN_HEADER_TIMEOUT"):
        ServerOptions.from_env({"NEONSIGN_HEADER_TIMEOUT": "0"})
    config = ServeConfig.from_env({"NEONSIGN_MODEL": "m", "NEONSIGN_INLINE_PIXELS": "0"})
    assert config.inline_pixels == 0
    assert ServeConfig.from_env(config.to_env()) == config
    options = ServerOptions.from_env({"NEONSIGN_BODY_TIMEOUT": "7"})
    assert options.body_timeout == 7 and options.timeouts_env()["NEONSIGN_BODY_TIMEOUT"] == "7"
