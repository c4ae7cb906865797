"""The pipeline's runner and typed context, with small stages (no training): resume skips what is
up to date and restores its values, a failing stage stops the run and is recorded, the two jobs
share their stage functions, settings from the environment fail with a ConfigError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neonsign.app.pipeline import LIFECYCLE, MAIN_JOB, RunContext, RunSettings, Stage, run_stages
from neonsign.app.pipeline import stages as stage_library
from neonsign.app.pipeline.context import TrainSettings, gtsrb_root_from_env
from neonsign.errors import ConfigError, NeonsignTypeError, NeonsignValueError


def _write_test(ctx: RunContext) -> None:
    (ctx.run_dir / "test.json").write_text(json.dumps({"accuracy": 0.75}))
    ctx.accuracy = 0.75
    calls.append("test")


def _write_gate(ctx: RunContext) -> None:
    (ctx.run_dir / "gate.json").write_text(json.dumps({"accepted": ctx.accuracy == 0.75}))
    ctx.accepted, ctx.gate_reasons = ctx.accuracy == 0.75, []
    calls.append("gate")


def _fail(ctx: RunContext) -> None:
    raise NeonsignValueError("the gate broke")


calls: list[str] = []
TOY = [
    Stage("test", _write_test, lambda c: {"split": "test"}, ("test.json",), ("accuracy",)),
    Stage(
        "gate",
        _write_gate,
        lambda c: {"test.json": (c.run_dir / "test.json").read_text()},
        ("gate.json",),
        ("accepted", "gate_reasons"),
    ),
]


def _run(run_dir: Path, stages: list[Stage] = TOY, from_stage: str | None = None) -> RunContext:
    ctx = RunContext(RunSettings(run_dir=run_dir, quiet=True))
    run_stages(stages, ctx, from_stage=from_stage)
    return ctx


def test_resume_skips_up_to_date_stages_and_restores_their_values(tmp_path: Path) -> None:
    calls.clear()
    first = _run(tmp_path)
    assert first.ran == ["test", "gate"] and first.skipped == [] and calls == ["test", "gate"]
    assert set(first.stage_seconds) == {"test", "gate"}
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert lineage["stages"]["test"]["values"] == {"accuracy": 0.75}
    assert set(lineage["stages"]["gate"]["produced"]) == {"gate.json"}

    calls.clear()
    again = _run(tmp_path)
    assert again.ran == [] and again.skipped == ["test", "gate"] and calls == []
    assert again.accuracy == 0.75 and again.accepted is True  # restored from lineage.json

    (tmp_path / "gate.json").write_text("{}")  # an output changed: its stage reruns
    assert _run(tmp_path).ran == ["gate"]
    forced = _run(tmp_path, from_stage="test")
    assert forced.ran == ["test", "gate"]
    with pytest.raises(NeonsignValueError, match="not a stage"):
        _run(tmp_path, from_stage="train")


def test_a_failing_stage_stops_the_run_and_is_recorded(tmp_path: Path) -> None:
    failing = [TOY[0], Stage("gate", _fail, outputs=("gate.json",)), Stage("after", _fail)]
    ctx = RunContext(RunSettings(run_dir=tmp_path, quiet=True))
    with pytest.raises(NeonsignValueError, match="the gate broke"):
        run_stages(failing, ctx)
    assert ctx.ran == ["test"] and ctx.failed == "gate"
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert set(lineage["stages"]) == {"test"}
    assert lineage["failed"]["stage"] == "gate"
    assert lineage["failed"]["error"] == "NeonsignValueError: the gate broke"
    # the next successful run of that stage clears the record; the finished stage is skipped
    fixed = _run(tmp_path)
    assert fixed.skipped == ["test"] and fixed.ran == ["gate"] and fixed.failed is None
    assert "failed" not in json.loads((tmp_path / "lineage.json").read_text())


def test_lineage_written_by_the_dict_runner_resumes(tmp_path: Path) -> None:
    """A lineage.json as the former dict-based runner wrote it (same schema) is honoured."""
    _write_test(RunContext(RunSettings(run_dir=tmp_path)))
    from neonsign.artifacts import sha256_file

    old = {
        "stages": {
            "test": {
                "consumed": {"split": "test"},
                "produced": {"test.json": sha256_file(tmp_path / "test.json")},
                "values": {"accuracy": 0.5},
                "seconds": 1.0,
                "finished": "2026-01-01T00:00:00+00:00",
            }
        },
        "data_root": "/data",
        "data_checksum": "abc",
        "code_version": "0.1.0",
        "weights_sha256": "def",
        "registry_version": None,
    }
    (tmp_path / "lineage.json").write_text(json.dumps(old))
    ctx = _run(tmp_path, TOY[:1])
    assert ctx.skipped == ["test"] and ctx.accuracy == 0.5


def test_unreadable_lineage_content_reruns_every_stage(tmp_path: Path) -> None:
    (tmp_path / "lineage.json").write_text("[not json")
    assert _run(tmp_path).ran == ["test", "gate"]
    (tmp_path / "lineage.json").write_text('{"stages": []}')
    assert _run(tmp_path).ran == ["test", "gate"]


def test_both_jobs_share_their_stage_functions() -> None:
    main = {s.name: s for s in MAIN_JOB}
    life = {s.name: s for s in LIFECYCLE}
    assert [s.name for s in MAIN_JOB] == [
        "data",
        "load",
        "train",
        "test",
        "profile",
        "compare",
        "report",
    ]
    assert [s.name for s in LIFECYCLE] == ["train", "test", "profile", "gate", "register"]
    for name in ("train", "test", "profile"):
        assert main[name] is life[name]
        assert main[name].run is getattr(stage_library, name)


def test_context_fields(tmp_path: Path) -> None:
    ctx = RunContext(RunSettings(run_dir=tmp_path))
    assert ctx.model_dir == tmp_path / "model" and ctx.ran == [] and ctx.accepted is None
    ctx.accuracy = 0.9
    assert ctx.accuracy == 0.9


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GTSRB_ROOT", raising=False)
    assert gtsrb_root_from_env() is None
    monkeypatch.setenv("GTSRB_ROOT", "")
    assert gtsrb_root_from_env() is None
    monkeypatch.setenv("GTSRB_ROOT", str(tmp_path))
    assert gtsrb_root_from_env() == tmp_path
    monkeypatch.setenv("GTSRB_ROOT", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="GTSRB_ROOT"):
        gtsrb_root_from_env()

    from neonsign.app.registry import default_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("NEONSIGN_REGISTRY", str(tmp_path / "reg"))
    assert default_uri() == f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NEONSIGN_REGISTRY", str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="NEONSIGN_REGISTRY"):
        default_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_uri() == "http://mlflow:5000"


def test_training_options_are_checked_by_name() -> None:
    config = stage_library.train_config(TrainSettings(epochs=None, overrides={}), synthetic=True)
    assert config.epochs == stage_library.SYNTH_EPOCHS
    with pytest.raises(NeonsignTypeError, match="batchsize"):
        stage_library.train_config(TrainSettings(overrides={"batchsize": 3}), synthetic=False)
