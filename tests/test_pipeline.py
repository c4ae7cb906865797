"""The lifecycle pipeline on synthetic data: a full run registers and promotes, a second run
skips every finished stage, --from forces a stage and the ones after it, a lost output reruns
its stage; lineage.json traces the model back to data, code and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the pipeline trains with PyTorch")
pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'neonsign[mlflow]')")

from neonsign.app.pipeline import run_pipeline as run  # noqa: E402
from neonsign.errors import NeonsignValueError  # noqa: E402

# two epochs on the synthetic set: far below the gate's default floor, so the tests set theirs
OPTS = dict(
    epochs=2,
    batch_size=32,
    threads=1,
    repeats=2,
    fail_if_slower=400.0,
    min_accuracy=0.0,
    quiet=True,
)


def test_pipeline_runs_resumes_and_traces(synth_root: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}"
    rd = tmp_path / "run"
    ctx = run(synth_root, rd, registry_uri=uri, **OPTS)
    assert ctx.ran == ["train", "test", "profile", "gate", "register"] and ctx.skipped == []
    assert ctx.accepted and ctx.promoted  # no champion yet: the first model is promoted
    assert ctx.registry.show("champion").version == ctx.registry_version

    lineage = json.loads((rd / "lineage.json").read_text())
    card = json.loads((rd / "model" / "model_card.json").read_text())
    assert lineage["weights_sha256"] == card["weights_sha256"]
    assert lineage["data_checksum"] == card["data_checksum"] == ctx.data_checksum
    assert lineage["code_version"] == card["code_version"]
    assert lineage["stages"]["test"]["consumed"]["weights_sha256"] == card["weights_sha256"]
    assert set(lineage["stages"]["gate"]["produced"]) == {"gate.json"}
    mv = ctx.registry.show(ctx.registry_version)
    assert mv.metrics["test_accuracy"] == pytest.approx(ctx.accuracy)
    assert sorted(mv.aliases) == ["challenger", "champion"]
    assert mv.tags["run_dir"] == str(rd.resolve()) and mv.tags["gate_accepted"] == "true"

    again = run(synth_root, rd, registry_uri=uri, **OPTS)
    assert again.ran == [] and again.skipped == [
        "train",
        "test",
        "profile",
        "gate",
        "register",
    ]
    assert again.registry_version == ctx.registry_version

    (rd / "profile.json").unlink()  # a lost output: that stage and what consumed it rerun
    lost = run(synth_root, rd, registry_uri=uri, **OPTS)
    assert lost.skipped[:2] == ["train", "test"] and lost.ran[0] == "profile"

    forced = run(synth_root, rd, registry_uri=uri, from_stage="gate", **OPTS)
    assert forced.skipped == ["train", "test", "profile"]
    assert forced.ran == ["gate", "register"]
    # the champion is now this very model: the gate compares against it and accepts
    assert forced.accepted, forced.gate_reasons

    with pytest.raises(NeonsignValueError, match="not a stage"):
        run(synth_root, rd, registry_uri=uri, from_stage="nope", **OPTS)


def test_pipeline_without_registry_refuses_below_floor(synth_root: Path, tmp_path: Path) -> None:
    ctx = run(synth_root, tmp_path / "run", use_registry=False, **{**OPTS, "min_accuracy": 1.0})
    assert ctx.ran == ["train", "test", "profile", "gate"]
    assert not ctx.accepted and ctx.gate_reasons[0].startswith("accuracy_floor")
    assert not (tmp_path / "run" / "registered.json").exists()
