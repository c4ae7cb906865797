"""The validation gate on synthetic data: refuses a worse model, accepts a better one, checks
native/PyTorch parity on the probe set, rejects bad arguments; CLI exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the gate's parity check and training need PyTorch")

from neonsign.app.gate import gate, probe_parity, probe_set  # noqa: E402
from neonsign.artifacts import make_card, save_model  # noqa: E402
from neonsign.errors import ModelError, NeonsignValueError  # noqa: E402
from neonsign.profiler import random_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def models(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(trained, random): a model trained a few epochs on the synthetic data, and random weights."""
    from neonsign.train import train

    root = tmp_path_factory.mktemp("gate_models")
    trained = train(
        synth_root,
        root / "trained",
        epochs=6,
        batch_size=32,
        seed=0,
        threads=1,
        quiet=True,
    ).model_dir
    rnd = save_model(root / "random", random_state_dict(5), make_card(metrics={}))
    return Path(trained), rnd


def test_gate_refuses_worse_accepts_better(models: tuple[Path, Path], synth_root: Path) -> None:
    trained, rnd = models
    # a few epochs on the small synthetic set: far below the default floor, so set one
    worse = gate(rnd, synth_root, champion=str(trained), min_accuracy=0.0, fail_if_slower=400.0)
    assert not worse["accepted"]
    assert any(r.startswith("accuracy_vs_champion") for r in worse["reasons"])
    better = gate(trained, synth_root, champion=str(rnd), min_accuracy=0.0, fail_if_slower=400.0)
    assert better["accepted"], better["reasons"]
    assert better["candidate"]["accuracy"] > better["champion"]["accuracy"]
    names = [c["name"] for c in better["checks"]]
    assert names == ["accuracy_floor", "accuracy_vs_champion", "latency", "probe_parity"]
    floor = gate(trained, synth_root, min_accuracy=1.0, fail_if_slower=400.0)
    assert not floor["accepted"] and floor["reasons"][0].startswith("accuracy_floor")


def test_gate_default_floor_and_champion_floor(models: tuple[Path, Path], synth_root: Path) -> None:
    """The floor defaults to DEFAULT_MIN_ACCURACY (a 7%-accurate model does not become the
    first champion of a fresh registry), and with a champion it is never below the
    champion's accuracy minus max_drop, whatever min_accuracy says."""
    from neonsign.app.gate import DEFAULT_MIN_ACCURACY, _accuracy_checks

    trained, _ = models
    assert 0.5 <= DEFAULT_MIN_ACCURACY < 1.0
    fresh = gate(trained, synth_root, fail_if_slower=400.0)
    floor = fresh["checks"][0]
    assert floor["name"] == "accuracy_floor" and floor["min_accuracy"] == DEFAULT_MIN_ACCURACY
    if fresh["candidate"]["accuracy"] < DEFAULT_MIN_ACCURACY:
        assert not fresh["accepted"] and fresh["reasons"][0].startswith("accuracy_floor")
    raised, vs = _accuracy_checks(0.93, 0.97, "test", 0.5, 0.01)
    assert raised["floor"] == pytest.approx(0.96) and not raised["passed"]
    assert "champion 0.9700" in raised["detail"] and not vs["passed"]
    kept, _ = _accuracy_checks(0.93, 0.60, "test", 0.9, 0.01)
    assert kept["floor"] == 0.9 and kept["passed"]
    alone, none = _accuracy_checks(0.2, None, "test", 0.9, 0.01)
    assert alone["floor"] == 0.9 and not alone["passed"] and none["passed"]


def test_probe_parity_detects_a_different_model(models: tuple[Path, Path]) -> None:
    trained, _ = models
    probes = probe_set()
    assert probes.shape == (32, 3, 32, 32) and probes.dtype == np.float32
    assert np.array_equal(probes, probe_set())  # fixed
    ok = probe_parity(trained, probes)
    assert ok["passed"] and ok["max_abs_logit_diff"] <= 1e-3
    strict = probe_parity(trained, probes, max_logit_diff=0.0)
    assert strict["max_abs_logit_diff"] == 0.0 or not strict["passed"]


def test_gate_bad_arguments(models: tuple[Path, Path], synth_root: Path, tmp_path: Path) -> None:
    trained, _ = models
    with pytest.raises(NeonsignValueError, match="min_accuracy"):
        gate(trained, synth_root, min_accuracy=1.5)
    with pytest.raises(ModelError, match="not found"):
        gate(tmp_path / "missing", synth_root)


def test_gate_cli_exit_codes(models: tuple[Path, Path], synth_root: Path, tmp_path: Path) -> None:
    trained, rnd = models
    out = tmp_path / "verdict.json"
    cmd = [
        sys.executable,
        "-m",
        "neonsign.cli",
        "gate",
        "--data",
        str(synth_root),
        "--fail-if-slower",
        "400",
        "--min-accuracy",
        "0",
        "--out",
        str(out),
    ]
    r = subprocess.run(
        cmd + ["--candidate", str(rnd), "--champion", str(trained)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert json.loads(out.read_text())["accepted"] is False
    r = subprocess.run(
        cmd + ["--candidate", str(trained), "--champion", str(rnd)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(out.read_text())["accepted"] is True
