"""The upload page and the API reference in headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``; no browser download). Skipped when either is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from serve_helpers import (
    encode,
    free_port,
    make_model_dir,
    running_server,
    serve_argv,
    sign_like_images,
)
from support import needs_subprocess

pytest.importorskip("fastapi")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)

CHROMIUM = (
    os.environ.get("NEONSIGN_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
pytestmark = [
    needs_subprocess,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    model = make_model_dir(tmp_path_factory.mktemp("browser_model"), seed=4)
    port = free_port()
    with running_server(serve_argv(model, port), port) as (base, _):
        yield base, model


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


def expected_label(model: Path, png: bytes) -> str:
    import io

    from PIL import Image

    from neonsign import preprocess
    from neonsign.data import CLASS_NAMES
    from neonsign.engine import Engine

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    cls, _ = Engine.from_file(model).classify(preprocess.preprocess_image(img))
    return CLASS_NAMES[int(cls)]


def test_upload_page_shows_the_label(served, browser, tmp_path: Path) -> None:
    base, model = served
    png = encode(sign_like_images(1, seed=21)[0], "PNG")
    path = tmp_path / "sign.png"
    path.write_bytes(png)
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/")
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "document.getElementById('status').textContent === 'done'", timeout=20000
    )
    label = page.inner_text("#label")
    assert label.startswith(expected_label(model, png) + " (")
    rows = page.locator("#top5 tbody tr")
    assert rows.count() == 5
    assert all(u.startswith((base, "blob:" + base)) for u in requests), (
        f"external requests: {requests}"
    )
    # a bad file shows the server's error, not a crash
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_function(
        "document.getElementById('status').textContent === 'failed'", timeout=20000
    )
    assert "unsupported image format" in page.inner_text("#error")
    page.close()


def test_api_reference_page_works_offline(served, browser, tmp_path: Path) -> None:
    base, _ = served
    path = tmp_path / "sign.ppm"
    path.write_bytes(encode(sign_like_images(1, seed=22)[0], "PPM"))
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/docs")
    section = page.locator("section", has_text="/predict/batch").first
    section.wait_for(timeout=20000)
    predict = page.locator("section").filter(has=page.locator("code", has_text="/predict")).first
    predict.locator("input[type=file]").set_input_files(str(path))
    predict.locator("button").click()
    out = predict.locator("pre")
    out.wait_for(state="visible", timeout=20000)
    assert out.inner_text().startswith("200") and '"predicted_class"' in out.inner_text()
    assert all(u.startswith((base, "blob:" + base)) for u in requests), (
        f"external requests: {requests}"
    )
    page.close()
