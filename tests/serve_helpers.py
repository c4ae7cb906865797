"""Helpers for the serving tests and benchmark: model directories from random weights, free
ports, and real uvicorn server processes (importable as ``serve_helpers``)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def random_state_dict(seed: int) -> dict[str, np.ndarray]:
    """TrafficSignNet weights with PyTorch's default-init scale (so logits are spread out)."""
    from neonsign.engine import WEIGHT_SHAPES

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in WEIGHT_SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        bound = 1.0 / np.sqrt(fan_in)
        out[name] = rng.uniform(-bound, bound, shape).astype(np.float32) * 4.0
    return out


def make_model_dir(path: str | os.PathLike[str], seed: int) -> Path:
    """A model directory (``neonsign.artifacts.save_model``) with :func:`random_state_dict`
    weights; ``seed`` is recorded in the card. An existing one is replaced."""
    from neonsign.artifacts import make_card, save_model

    return save_model(path, random_state_dict(seed), make_card(seed=seed), overwrite=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def encode(image: np.ndarray, fmt: str) -> bytes:
    """uint8 (H, W, 3) -> PNG / JPEG / PPM bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def sign_like_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """n RGB images of varied sizes with some structure (a disc on a background)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        yy, xx = np.mgrid[0:h, 0:w]
        disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.5) ** 2
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8) // 2
        img[disc] = rng.integers(0, 256, 3)
        out.append(img)
    return out


def wait_ready(base_url: str, proc: subprocess.Popen | None, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not ready after {timeout} s")


@contextmanager
def running_server(
    argv: Sequence[str], port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``argv`` (a server listening on 127.0.0.1:port), wait for /readyz, yield
    (base_url, process), then stop it (SIGTERM, then SIGKILL after 10 s)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(list(argv), env=full_env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def serve_argv(model_dir: str | os.PathLike[str], port: int, *extra: str) -> list[str]:
    """``neonsign serve`` through the current interpreter."""
    return [
        sys.executable,
        "-m",
        "neonsign.cli",
        "serve",
        os.fspath(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` in Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def multipart(
    field: str, filename: str, data: bytes, boundary: str = "neonsignbench"
) -> tuple[bytes, str]:
    """A prebuilt ``multipart/form-data`` body with one file and its content type (so a load
    generator spends no time encoding)."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


async def _http_post(reader, writer, request: bytes) -> int:
    """Send one prebuilt HTTP/1.1 request on a keep-alive connection; return the status
    after reading the whole response (Content-Length framing, as uvicorn answers)."""
    import asyncio

    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    if b"connection: close" in head.lower():
        raise asyncio.IncompleteReadError(b"", None)  # server closes: reconnect
    return status


async def run_load(
    base: str, path: str, blobs: Sequence[bytes], total: int, concurrency: int, duration_cap: float
) -> dict:
    """POST ``blobs`` (cycled) as multipart field ``file`` to ``base + path``: ``total``
    requests from ``concurrency`` keep-alive connections, stopping early at ``duration_cap``
    seconds. The client is plain asyncio streams with prebuilt requests, so it takes little
    CPU from the server it measures.

    Returns ``{"sent", "ok", "failures" (status codes, -1 for transport errors),
    "latencies" (seconds, successful requests), "elapsed"}``.
    """
    import asyncio
    from urllib.parse import urlsplit

    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = []
    for i, b in enumerate(blobs):
        body, ctype = multipart("file", f"{i}.png", b)
        requests.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    state = {"sent": 0, "ok": 0}
    failures: list[int] = []
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = time.monotonic() + duration_cap

    async def worker() -> None:
        conn = None
        while state["sent"] < total and time.monotonic() < deadline:
            request = requests[state["sent"] % len(requests)]
            state["sent"] += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                status = await asyncio.wait_for(_http_post(*conn, request), 60)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                failures.append(-1)
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            if status == 200:
                state["ok"] += 1
                latencies.append(time.perf_counter() - t0)
            else:
                failures.append(status)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "sent": state["sent"],
        "ok": state["ok"],
        "failures": failures,
        "latencies": latencies,
        "elapsed": time.perf_counter() - start,
    }
