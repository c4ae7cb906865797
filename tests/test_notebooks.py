"""The committed notebooks: their sources are notebooks/make_notebooks.py's, they carry the
outputs (text, tables, figures) of a run of ``tools/notebooks.sh --update`` and no error, and
tools/notebook_outputs.py's structure comparison (what CI fails on) ignores what varies between
runs but not a lost figure, a new cell or an error. Executing them is tools/notebooks.sh's job
(CI runs it), not pytest's."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_exist() -> None:
    names = [p.name for p in PATHS]
    assert names == ["01_quickstart.ipynb", "02_backends.ipynb", "03_preprocessing.ipynb"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs(path: Path) -> None:
    """Every code cell shows what it did (text or a figure), no cell failed, and the notebook
    draws at least one figure; no attachments or per-run timing metadata."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    figures = 0
    for i, cell in enumerate(nb["cells"]):
        assert "attachments" not in cell, f"{path.name} cell {i} has attachments"
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        assert outputs, f"{path.name} cell {i} has no outputs: run tools/notebooks.sh --update"
        assert cell.get("execution_count") is not None, f"{path.name} cell {i} never ran"
        assert "execution" not in cell.get("metadata", {}), f"{path.name} cell {i}: timings"
        assert not [o for o in outputs if o["output_type"] == "error"], (
            f"{path.name} cell {i} failed when its outputs were recorded"
        )
        figures += sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= 1, f"{path.name} shows no figure"
    assert nb["metadata"]["language_info"]["file_extension"] == ".py"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_markdown_explains(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[0] == "markdown", f"{path.name} should open with a markdown cell"
    assert kinds.count("markdown") >= 3, f"{path.name} needs markdown cells that explain its steps"
    intro = "".join(nb["cells"][0]["source"])
    assert "What to expect" in intro, f"{path.name} should say what time and results to expect"


def test_notebooks_match_generator() -> None:
    if importlib.util.find_spec("nbformat") is None:
        pytest.skip("nbformat is not installed (the notebooks extra)")
    import nbformat

    module = load(NOTEBOOKS / "make_notebooks.py", "make_notebooks")
    for path in PATHS:
        committed = nbformat.read(path, as_version=4)
        built = module.build(module.NOTEBOOKS[path.name])
        assert module.sources(committed) == module.sources(built), (
            f"{path.name} differs from notebooks/make_notebooks.py: run "
            "`python notebooks/make_notebooks.py`, then `bash tools/notebooks.sh --update`, "
            "and commit the result"
        )
        # regenerating keeps the recorded outputs of unchanged cells
        kept = module.with_outputs(path.name, committed)
        assert [c.get("outputs") for c in kept.cells] == [c.get("outputs") for c in committed.cells]


def test_structure_comparison_ignores_what_varies_and_catches_what_matters() -> None:
    if importlib.util.find_spec("nbformat") is None:
        pytest.skip("nbformat is not installed (the notebooks extra)")
    import nbformat

    tool = load(ROOT / "tools" / "notebook_outputs.py", "notebook_outputs")
    committed = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    assert tool.differences(committed, committed) == []

    rerun = copy.deepcopy(committed)  # another run: other numbers, pixels, counts, warnings
    for n, cell in enumerate(c for c in rerun.cells if c["cell_type"] == "code"):
        cell["execution_count"] = 100 + n
        for out in cell["outputs"]:
            if out["output_type"] == "stream":
                out["text"] = out["text"].replace("0", "7").replace("1", "9")
            for mime in out.get("data", {}):
                out["data"][mime] = "changed"
        cell["outputs"].append(nbformat.v4.new_output("stream", name="stderr", text="warn\n"))
        if cell["outputs"][0]["output_type"] == "stream":  # a stream split in two chunks
            cell["outputs"].insert(1, nbformat.v4.new_output("stream", name="stdout", text="x"))
    assert tool.differences(committed, rerun) == []

    figure_cell = next(
        i
        for i, c in enumerate(committed.cells)
        if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    )
    lost = copy.deepcopy(committed)
    lost.cells[figure_cell]["outputs"] = [
        o for o in lost.cells[figure_cell]["outputs"] if "image/png" not in o.get("data", {})
    ]
    assert [d.split(":")[0] for d in tool.differences(committed, lost)] == [f"cell {figure_cell}"]

    grown = copy.deepcopy(committed)
    grown.cells.append(nbformat.v4.new_code_cell("print(1)"))
    assert tool.differences(committed, grown) == [
        f"{len(committed.cells)} cells committed, {len(grown.cells)} executed"
    ]

    failed = copy.deepcopy(committed)
    last = [c for c in failed.cells if c["cell_type"] == "code"][-1]
    last["outputs"].append(nbformat.v4.new_output("error", ename="ValueError", evalue="x"))
    diffs = tool.differences(committed, failed)
    assert any("error:ValueError" in d for d in diffs) and len(diffs) == 2

    edited = copy.deepcopy(committed)
    edited.cells[1]["source"] += "\n# edited"
    assert tool.differences(committed, edited) == ["cell 1: the source changed"]
