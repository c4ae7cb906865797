"""The committed notebooks are stripped (no outputs, no execution counts) and up to date with
notebooks/make_notebooks.py. Running them is tools/notebooks.sh's job, not pytest's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_exist() -> None:
    names = [p.name for p in PATHS]
    assert names == ["01_quickstart.ipynb", "02_backends.ipynb", "03_preprocessing.ipynb"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_is_stripped(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, (
                f"{path.name} cell {i} has an execution count"
            )
        assert "attachments" not in cell, f"{path.name} cell {i} has attachments"
    assert nb["metadata"]["language_info"]["file_extension"] == ".py"  # nbconvert --to script


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_markdown_explains(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[0] == "markdown", f"{path.name} should open with a markdown cell"
    assert kinds.count("markdown") >= 3, f"{path.name} needs markdown cells that explain its steps"


def test_notebooks_match_generator() -> None:
    if importlib.util.find_spec("nbformat") is None:
        pytest.skip("nbformat is not installed (the notebooks extra)")
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in PATHS:
        assert path.read_text(encoding="utf-8") == module.render(path.name), (
            f"{path.name} differs from notebooks/make_notebooks.py: run "
            "`python notebooks/make_notebooks.py` and commit the result"
        )
