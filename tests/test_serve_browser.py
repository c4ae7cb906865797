"""The upload page and the API reference in headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``; no browser download). Skipped when either is missing.

The page is checked against the API it calls: a drop of several files (a synthetic
DataTransfer), a ROI dragged with the mouse and a batch must show exactly what ``/predict`` and
``/predict/batch`` answer for the same files, and the page's 32x32 "as the model sees it" view
must be the library's own preparation (:func:`neonsign.images.prepare_image`). Screenshots go
to ``$NEONSIGN_ARTIFACTS/screenshots`` (default ``artifacts/screenshots`` in the checkout,
which .ci/run keeps).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serve_helpers import (
    REPO_ROOT,
    encode,
    free_port,
    make_model_dir,
    running_server,
    serve_argv,
    sign_like_images,
)
from support import needs_subprocess

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)

CHROMIUM = (
    os.environ.get("NEONSIGN_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
    or shutil.which("google-chrome")  # GitHub's x86-64 runner images
)
pytestmark = [
    needs_subprocess,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]
EXAMPLES = REPO_ROOT / "python/neonsign/app/serving/static/examples"
TIMEOUT_MS = 30000


def screenshot_dir() -> Path:
    """Where the screenshots go: ``$NEONSIGN_ARTIFACTS/screenshots`` (CI's artifacts)."""
    root = Path(os.environ.get("NEONSIGN_ARTIFACTS") or REPO_ROOT / "artifacts")
    out = root / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


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


@pytest.fixture
def page(served, browser):
    base, _ = served
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/")
    yield page
    assert all(u.startswith((base, "blob:" + base, "data:")) for u in requests), (
        f"external requests: {requests}"
    )
    page.close()


def expected_label(model: Path, png: bytes) -> str:
    import io

    from PIL import Image

    from neonsign import preprocess
    from neonsign.data import CLASS_NAMES
    from neonsign.engine import Engine

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    cls, _ = Engine.from_file(model).classify(preprocess.preprocess_image(img))
    return CLASS_NAMES[int(cls)]


def wait_state(page: Any, state: str, selector: str = "#status") -> None:
    page.wait_for_function(
        "([sel, state]) => document.querySelector(sel)?.dataset.state === state",
        arg=[selector, state],
        timeout=TIMEOUT_MS,
    )


def drop_files(page: Any, files: list[tuple[str, bytes, str]]) -> None:
    """Drop ``(name, bytes, mime)`` files on the drop zone with a synthetic DataTransfer."""
    payload = [(n, base64.b64encode(b).decode(), m) for n, b, m in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64, type] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def card_result(page: Any, index: int) -> dict[str, Any]:
    """What card ``index`` shows: label, top-5 rows, version, latency, ROI fields, 32x32 RGB."""
    return page.evaluate(
        """(i) => {
            const card = document.getElementById("card-" + i);
            const q = (s) => card.querySelector(s);
            const small = q("canvas.small");
            const rgba = small.getContext("2d").getImageData(0, 0, small.width, small.height).data;
            return {
                label: q(".label").textContent,
                rows: [...card.querySelectorAll(".top5 tbody tr")].map(
                    (tr) => [...tr.cells].slice(0, 3).map((td) => td.textContent)),
                version: q(".version").title,
                latency: q(".latency").textContent,
                error: q(".error").textContent,
                roi: ["x1", "y1", "x2", "y2"].map((f) => q("." + f).value),
                small: Array.from(rgba).filter((_, k) => k % 4 !== 3),
                size: [small.width, small.height],
            };
        }""",
        index,
    )


def shown_rows(prediction: dict[str, Any]) -> list[list[str]]:
    """The top-5 rows as the page formats them."""
    return [
        [str(r["class_id"]), r["label"], f"{100 * r['probability']:.2f}%"]
        for r in prediction["top5"]
    ]


def library_view(data: bytes, roi: list[int] | None) -> np.ndarray:
    """The library's 32x32 preparation of ``data`` (what the server classifies)."""
    from neonsign.artifacts import DEFAULT_PREPROCESSING
    from neonsign.images import prepare_image

    return prepare_image(data, DEFAULT_PREPROCESSING, roi).small


def test_upload_page_shows_the_label(served, page, tmp_path: Path) -> None:
    _, model = served
    png = encode(sign_like_images(1, seed=21)[0], "PNG")
    path = tmp_path / "sign.png"
    path.write_bytes(png)
    page.set_input_files("#file", str(path))
    wait_state(page, "done")
    label = page.inner_text("#card-0 .label")
    assert label.startswith(expected_label(model, png) + " (")
    rows = page.locator("#card-0 .top5 tbody tr")
    assert rows.count() == 5
    # a bad file shows the server's error, not a crash
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    page.set_input_files("#file", str(bad))
    wait_state(page, "failed")
    assert "unsupported image format" in page.inner_text("#card-0 .error")


def test_drop_batch_and_roi_drag_match_the_api(served, page) -> None:
    """A drop of three files (PNG, PPM, JPEG) is one batch; every card shows what
    /predict/batch answers and the library's 32x32 input; a dragged box is sent as the ROI and
    the card then shows /predict's answer for that ROI."""
    base, _ = served
    sign = (EXAMPLES / "14.png").read_bytes()
    other = sign_like_images(2, seed=5)
    files = [
        ("stop.png", sign, "image/png"),
        ("disc.ppm", encode(other[0], "PPM"), "image/x-portable-pixmap"),
        ("disc.jpg", encode(other[1], "JPEG"), "image/jpeg"),
    ]
    drop_files(page, files)
    wait_state(page, "done")
    assert "3 images in one batch" in page.inner_text("#status")
    api = httpx.post(
        base + "/predict/batch", files=[("files", (n, b, m)) for n, b, m in files], timeout=30
    ).json()["predictions"]
    for i, (name, data, _) in enumerate(files):
        shown = card_result(page, i)
        assert shown["rows"] == shown_rows(api[i]), name
        assert shown["label"].startswith(api[i]["label"] + " (")
        assert shown["version"] == api[i]["model_version"]
        assert "batch of 3" in shown["latency"]
        view = np.array(shown["small"], np.int16).reshape(32, 32, 3)
        expected = library_view(data, None).astype(np.int16)
        # PNG and PPM decode identically everywhere; browsers' JPEG decoders may differ by a step
        tolerance = 8 if name.endswith(".jpg") else 0
        assert np.abs(view - expected).max() <= tolerance, name

    # drag a box on the first image (56..96 px shown at up to 224 px)
    box = page.locator("#card-0 canvas.original").bounding_box()
    width = json.loads((EXAMPLES / "index.json").read_text())["examples"]
    w_img = next(e["width"] for e in width if e["file"] == "14.png")
    scale = box["width"] / w_img
    x0, y0 = box["x"] + 6.5 * scale, box["y"] + 5.5 * scale
    x1, y1 = box["x"] + 40.5 * scale, box["y"] + 44.5 * scale
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    wait_state(page, "done", "#card-0")
    shown = card_result(page, 0)
    roi = [int(v) for v in shown["roi"]]
    assert roi == [6, 5, 40, 44]
    one = httpx.post(
        base + "/predict",
        files={"file": ("stop.png", sign, "image/png")},
        data={"roi": ",".join(map(str, roi))},
        timeout=30,
    ).json()
    assert shown["rows"] == shown_rows(one)
    view = np.array(shown["small"], np.int16).reshape(32, 32, 3)
    assert np.array_equal(view, library_view(sign, roi).astype(np.int16))
    assert page.locator("#card-0 .roi-box").is_visible()
    page.screenshot(path=str(screenshot_dir() / "serve-page-batch-roi.png"), full_page=True)


def test_keyboard_examples_typed_roi_and_error_messages(served, page) -> None:
    """Everything works from the keyboard: an example button, a typed ROI (Enter), the file
    input; controls are labelled; 4xx answers read as sentences in an alert region."""
    base, _ = served
    page.wait_for_selector("#examples button", timeout=TIMEOUT_MS)
    index = json.loads((EXAMPLES / "index.json").read_text())["examples"]
    assert page.locator("#examples button").count() == len(index)
    for n in range(page.locator("#examples button").count()):
        assert (
            page.locator("#examples button")
            .nth(n)
            .get_attribute("aria-label")
            .startswith("example: ")
        )
    assert page.get_attribute("#status", "aria-live") == "polite"
    assert page.get_attribute("#error", "role") == "alert"
    # Tab from the top reaches the file input, then the first example
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file"
    page.keyboard.press("Tab")
    first = index[0]
    assert page.evaluate("document.activeElement.dataset.file") == first["file"]
    page.keyboard.press("Enter")
    wait_state(page, "done")
    data = (EXAMPLES / first["file"]).read_bytes()
    shown = card_result(page, 0)
    assert [int(v) for v in shown["roi"]] == first["roi"]  # an example is sent with its ROI
    api = httpx.post(
        base + "/predict",
        files={"file": (first["file"], data, "image/png")},
        data={"roi": ",".join(map(str, first["roi"]))},
        timeout=30,
    ).json()
    assert shown["rows"] == shown_rows(api)
    # every ROI field has a label
    for f in ("x1", "y1", "x2", "y2"):
        label = page.locator(f"#card-0 .{f}").evaluate("(el) => el.labels[0].textContent")
        assert label.strip().startswith(f)
    # a typed ROI, submitted with Enter
    roi = [10, 8, 45, 47]
    for f, v in zip(("x1", "y1", "x2", "y2"), roi, strict=True):
        page.fill(f"#card-0 .{f}", str(v))
    page.focus("#card-0 .y2")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('with [10, 8, 45, 47]: ')",
        timeout=TIMEOUT_MS,
    )
    assert page.get_attribute("#status", "data-state") == "done"
    api = httpx.post(
        base + "/predict",
        files={"file": (first["file"], data, "image/png")},
        data={"roi": "10,8,45,47"},
        timeout=30,
    ).json()
    assert card_result(page, 0)["rows"] == shown_rows(api)
    # a ROI outside the image is refused before it is sent
    page.fill("#card-0 .x2", "500")
    page.click("#card-0 .apply")
    assert "0 <= x1 <= x2 < " in page.inner_text("#card-0 .error")
    # the server's 4xx answers, as sentences
    drop_files(page, [("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png")])
    wait_state(page, "failed")
    message = page.inner_text("#card-0 .error")
    assert message.startswith("Error: HTTP 400: ") and "Server says:" in message
    drop_files(page, [("a.txt", b"hello", "text/plain"), ("b.txt", b"world", "text/plain")])
    page.wait_for_function(  # the state was already "failed": wait for this batch's message
        "document.querySelector('#status').textContent.startsWith('The batch failed')",
        timeout=TIMEOUT_MS,
    )
    assert "HTTP 415: unsupported image format" in page.inner_text("#error")
    assert "the batch failed" in page.inner_text("#card-1 .error")
    page.screenshot(path=str(screenshot_dir() / "serve-page-error.png"), full_page=True)


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
