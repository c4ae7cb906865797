"""The main job: stages end to end on the synthetic session data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from neonsign import artifacts, mainjob  # noqa: E402


@pytest.fixture
def synth(request) -> Path:
    try:
        return Path(request.getfixturevalue("synth_root"))
    except pytest.FixtureLookupError:
        pytest.skip("synth_root fixture (neonsign.synth) not available on this branch yet")


def test_main_job_runs_every_stage_and_never_overwrites(synth, tmp_path, capsys):
    runs = tmp_path / "runs"
    ctx = mainjob.run(data=synth, runs_dir=runs, epochs=1, threads=1, backend="torch", quiet=True)
    run_dir = ctx["run_dir"]
    assert run_dir.parent == runs
    assert set(ctx["stage_seconds"]) == {name for name, _ in mainjob.STAGES}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["split"] == "test" and summary["n_images"] == 86
    assert 0 <= summary["accuracy"] <= 1
    test = json.loads((run_dir / "test.json").read_text())
    assert test["accuracy"] == summary["accuracy"] and len(test["per_class_accuracy"]) == 43
    assert (run_dir / "confusion.png").exists()
    artifacts.load_model(run_dir / "model")
    out = capsys.readouterr().out
    assert "accuracy" in out and str(run_dir) in out
    ctx2 = mainjob.run(data=synth, runs_dir=runs, epochs=1, threads=1, backend="torch", quiet=True)
    assert ctx2["run_dir"] != run_dir and (run_dir / "summary.json").exists()
