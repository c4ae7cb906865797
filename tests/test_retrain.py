"""retrain-check: data change, age and drift triggers, with Prometheus text from the server's
own metric definitions; bad input; CLI exit codes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "prometheus_client", reason="retrain-check parses /metrics with prometheus_client"
)

from neonsign.app.retrain import parse_histograms, psi, retrain_check  # noqa: E402
from neonsign.errors import ModelError, NeonsignValueError  # noqa: E402


def metrics_text(brightness: list[float], probs: list[float]) -> str:
    """/metrics text with the server's histogram names and buckets."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    r = CollectorRegistry()
    b = Histogram(
        "neonsign_input_brightness", "", buckets=tuple(i / 10 for i in range(1, 11)), registry=r
    )
    p = Histogram(
        "neonsign_prediction_probability",
        "",
        buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        registry=r,
    )
    for v in brightness:
        b.observe(v)
    for v in probs:
        p.observe(v)
    return generate_latest(r).decode()


@pytest.fixture()
def card(tmp_path: Path, synth_root: Path) -> Path:
    from neonsign.data import load_split

    _, _, meta = load_split(synth_root, "train", size=32, roi=False, dtype="uint8")
    path = tmp_path / "model_card.json"
    path.write_text(
        json.dumps(
            {
                "data_checksum": meta.checksum,
                "weights_sha256": "x",
                "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                "preprocessing": {"size": 32, "roi": False},
            }
        )
    )
    return path


def test_no_trigger_then_each_trigger(card: Path, synth_root: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    healthy = tmp_path / "healthy.txt"
    healthy.write_text(
        metrics_text(list(rng.uniform(0.2, 0.6, 500)), list(rng.uniform(0.7, 1.0, 500)))
    )
    ok = retrain_check(str(healthy), card, data=synth_root, reference_metrics=str(healthy))
    assert ok["retrain"] is False, ok["reasons"]
    assert ok["checks"]["drift"]["brightness_psi"] == pytest.approx(0.0)

    dark = tmp_path / "dark.txt"
    dark.write_text(
        metrics_text(list(rng.uniform(0.0, 0.1, 500)), list(rng.uniform(0.1, 0.5, 500)))
    )
    drift = retrain_check(str(dark), card, reference_metrics=str(healthy))
    assert drift["retrain"] and any("PSI" in r for r in drift["reasons"])
    assert any("top-1 probability" in r for r in drift["reasons"])
    # reference from the training images when no snapshot is given
    assert (
        retrain_check(str(dark), card, data=synth_root)["checks"]["drift"]["reference"]
        == "training data"
    )

    few = tmp_path / "few.txt"
    few.write_text(metrics_text([0.05] * 10, [0.1] * 10))
    assert retrain_check(str(few), card, reference_metrics=str(healthy))["retrain"] is False

    old = retrain_check(None, card, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=40))
    assert old["retrain"] and old["reasons"][0].startswith("age")

    changed = json.loads(card.read_text())
    changed["data_checksum"] = "0" * 64
    card.write_text(json.dumps(changed))
    d = retrain_check(None, card, data=synth_root)
    assert d["retrain"] and d["reasons"][0].startswith("data")


def test_psi_and_parser() -> None:
    assert psi(np.array([1, 1, 1.0]), np.array([2, 2, 2.0])) == pytest.approx(0.0)
    assert psi(np.array([10, 0, 0.0]), np.array([0, 0, 10.0])) > 1.0
    with pytest.raises(NeonsignValueError):
        psi(np.array([1.0, 2.0]), np.array([1.0]))
    h = parse_histograms(metrics_text([0.05, 0.15, 0.15], []))
    bounds, counts = h["neonsign_input_brightness"]
    assert counts[:2].tolist() == [1.0, 2.0] and counts.sum() == 3 and np.isinf(bounds[-1])


def test_bad_input(tmp_path: Path, card: Path) -> None:
    with pytest.raises(ModelError, match="unreadable"):
        retrain_check(None, tmp_path / "nope.json")
    with pytest.raises(NeonsignValueError, match="could not read"):
        retrain_check(str(tmp_path / "missing.txt"), card)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"created": "yesterday"}))
    with pytest.raises(ModelError, match="ISO"):
        retrain_check(None, bad)


def test_cli_exit_codes(card: Path) -> None:
    base = [sys.executable, "-m", "neonsign.cli", "retrain-check", "--baseline", str(card)]
    r = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["retrain"] is False
    r = subprocess.run(base + ["--max-age-days", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and json.loads(r.stdout)["retrain"] is True
