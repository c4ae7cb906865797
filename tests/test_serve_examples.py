"""The served page's example images: up to date with their generator (tools/make_examples.py,
the repository's synthetic sign generator), small, and served by ``GET /examples/NAME`` with
nothing else reachable through that route."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from serve_helpers import REPO_ROOT, make_model_dir

EXAMPLES = REPO_ROOT / "python/neonsign/app/serving/static/examples"


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "make_examples", REPO_ROOT / "tools/make_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_match_their_generator_and_are_small() -> None:
    tool = load_tool()
    assert tool.stale(tool.render()) == [], "run: python tools/make_examples.py"
    index = json.loads((EXAMPLES / "index.json").read_text())["examples"]
    assert len(index) >= 6
    for ex in index:
        path = EXAMPLES / ex["file"]
        assert path.stat().st_size < 32_000
        x1, y1, x2, y2 = ex["roi"]
        assert 0 <= x1 < x2 < ex["width"] and 0 <= y1 < y2 < ex["height"]


def test_examples_are_served(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    app = create_app(str(make_model_dir(tmp_path / "m", seed=3)), threads=1)
    with TestClient(app) as client:
        index = client.get("/examples/index.json")
        assert index.status_code == 200 and index.json()["examples"]
        first = index.json()["examples"][0]["file"]
        png = client.get(f"/examples/{first}")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == (EXAMPLES / first).read_bytes()
        # ("/examples/.." itself is normalised to "/" by the client: the page, not a file)
        for name in ("nope.png", ".hidden", "..%2Findex.html", "%2E%2E%2Fdocs.html", "%2E%2E"):
            r = client.get(f"/examples/{name}")
            assert r.status_code == 404, name
            assert r.json()["error"] == "not_found"
