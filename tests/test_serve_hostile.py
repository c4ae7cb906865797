"""``neonsign serve`` under hostile load (issue 15), against real uvicorn processes.

* batch starvation: two ``/predict/batch`` uploads of 64 small PNGs that each declare 4096x4096
  (~50 KB each, ~0.25 s of decode CPU each) used to take every decode thread for tens of
  seconds; they are now refused from their headers (the batch pixel budget) without decoding
  a pixel, and a batch admitted within the budget runs in its own lane while single requests
  are answered and ``/readyz`` reports the saturation;
* the idle-socket wedge: with ``--limit-concurrency N``, N+1 connections that send nothing used
  to make every endpoint answer 503 until the client closed them; the header deadline now
  closes them, after which probes and predictions answer again;
* ``--port 84043`` is refused instead of binding port 18507.

The tests bound the work (what was decoded, which answers came while a batch was still
running), not the wall clock; the only waits are generous upper bounds on socket reads.
"""

from __future__ import annotations

import io
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from serve_helpers import (
    encode,
    free_port,
    make_model_dir,
    metric_value,
    running_server,
    serve_argv,
    sign_like_images,
)
from support import needs_subprocess

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

pytestmark = needs_subprocess


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("hostile_model"), seed=3)


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A 4096x4096 PNG of one colour: ~50 KB on the wire, 50 MB of pixels to decode."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4096, 4096), (200, 30, 30)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _batch(base: str, blobs: list[bytes]) -> httpx.Response:
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    return httpx.post(f"{base}/predict/batch", files=files, timeout=300)


def _single(base: str, blob: bytes) -> httpx.Response:
    return httpx.post(f"{base}/predict/", files={"file": ("s.png", blob, "image/png")}, timeout=60)


def test_batches_of_declared_4096x4096_pngs_are_refused_before_decoding(
    model_dir: Path, bomb_png: bytes, tmp_path: Path
) -> None:
    assert len(bomb_png) < 100_000
    small = [encode(img, "PNG") for img in sign_like_images(16, seed=5)]
    port = free_port()
    with running_server(serve_argv(model_dir, port), port, log=tmp_path / "log") as (base, _):
        answers: dict[str, httpx.Response] = {}
        batches = [
            threading.Thread(target=lambda k=k: answers.update({k: _batch(base, [bomb_png] * 64)}))
            for k in ("a", "b")
        ]
        for t in batches:
            t.start()
        singles = [_single(base, blob) for blob in small]  # meanwhile, one at a time
        for t in batches:
            t.join()
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
    assert [r.status_code for r in singles] == [200] * len(small)
    for r in answers.values():
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_many_pixels" and "batch budget" in r.json()["detail"]
    # the work is bounded: only the single images were ever decoded
    assert metric_value(metrics, "neonsign_input_image_pixels_count") == len(small)
    assert metric_value(metrics, "neonsign_errors_total", kind="too_many_pixels") == 2


def test_a_running_batch_leaves_singles_answered_and_readiness_saturated(
    model_dir: Path, bomb_png: bytes, tmp_path: Path
) -> None:
    """A batch admitted within a (raised) budget takes the batch lane only: a second batch is
    refused 503 ``busy``, ``/readyz`` says ``saturated`` with the reason, and single requests
    are answered while it still runs (readiness is still saturated after their answers)."""
    small = [encode(img, "PNG") for img in sign_like_images(8, seed=6)]
    port = free_port()
    argv = serve_argv(model_dir, port)
    env = {"NEONSIGN_BATCH_QUEUE": "1", "NEONSIGN_MAX_BATCH_PIXELS": str(4096 * 4096 * 64)}
    with running_server(argv, port, env=env, log=tmp_path / "log") as (base, _):
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
        slow: dict[str, httpx.Response] = {}
        worker = threading.Thread(target=lambda: slow.update(r=_batch(base, [bomb_png] * 12)))
        worker.start()
        try:
            ready = httpx.get(f"{base}/readyz", timeout=30)
            while ready.status_code == 200 and worker.is_alive():  # until it is admitted
                ready = httpx.get(f"{base}/readyz", timeout=30)
            assert worker.is_alive(), "the batch finished before it was seen running"
            assert ready.status_code == 503 and ready.json()["status"] == "saturated"
            assert "batch" in ready.json()["reason"]
            second = _batch(base, small)
            singles = [_single(base, blob) for blob in small]
            still = httpx.get(f"{base}/readyz", timeout=30)
        finally:
            worker.join()
        after = httpx.get(f"{base}/readyz", timeout=30)
    assert second.status_code == 503 and second.json()["error"] == "busy"
    assert [r.status_code for r in singles] == [200] * len(small)
    assert still.status_code == 503, "the singles were answered only after the batch"
    assert slow["r"].status_code == 200 and len(slow["r"].json()["predictions"]) == 12
    assert after.status_code == 200


def _closed_by_server(sock: socket.socket, bound: float = 60.0) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``bound`` seconds (whatever it
    answered before, e.g. uvicorn's 503 to a request over the concurrency limit)."""
    sock.settimeout(bound)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_idle_sockets_cannot_hold_the_concurrency_limit(model_dir: Path, tmp_path: Path) -> None:
    limit = 4
    blob = encode(sign_like_images(1, seed=7)[0], "PNG")
    port = free_port()
    argv = serve_argv(
        model_dir, port, "--limit-concurrency", str(limit), "--header-timeout", "2",
        "--body-timeout", "2",
    )  # fmt: skip
    with running_server(argv, port, log=tmp_path / "log") as (base, _):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(limit + 1)]
        slow_headers = socket.create_connection(("127.0.0.1", port))
        slow_headers.sendall(b"POST /predict/ HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(b"POST /predict/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        try:
            # the wedge: every request is refused while the idle connections are open
            wedged = httpx.get(f"{base}/readyz", timeout=30)
            assert wedged.status_code == 503, wedged.text
            # the deadlines close every one of them...
            assert all(_closed_by_server(s) for s in [*idle, slow_headers, slow_body])
            # ...and then probes and predictions answer again
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
            assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
            assert _single(base, blob).status_code == 200
        finally:
            for s in [*idle, slow_headers, slow_body]:
                s.close()


def test_a_slow_but_steady_client_within_the_deadlines_is_served(
    model_dir: Path, tmp_path: Path
) -> None:
    """The deadlines do not cut a keep-alive client that sends complete requests: two requests
    on one connection, the second after the first's answer."""
    blob = encode(sign_like_images(1, seed=8)[0], "PNG")
    port = free_port()
    argv = serve_argv(model_dir, port, "--header-timeout", "5")
    with running_server(argv, port, log=tmp_path / "log") as (base, _), httpx.Client() as client:
        for _ in range(2):
            r = client.post(f"{base}/predict", files={"file": ("a.png", blob)}, timeout=60)
            assert r.status_code == 200


@pytest.mark.parametrize("port", ["84043", "0", "-1", "http"])
def test_out_of_range_port_is_refused(model_dir: Path, port: str) -> None:
    r = subprocess.run(
        [*serve_argv(model_dir, 8000)[:-4], "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--port" in r.stderr and ("65535" in r.stderr or "port number" in r.stderr)
    assert "Traceback" not in r.stderr


def test_bomb_png_is_a_real_bomb(bomb_png: bytes) -> None:
    """The fixture is what the issue describes: small on the wire, 4096x4096 when decoded."""
    from neonsign.images import probe

    assert probe(bomb_png) == ("PNG", 4096, 4096)
    assert np.prod(probe(bomb_png)[1:]) == 4096 * 4096
