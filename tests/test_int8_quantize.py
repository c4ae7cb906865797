"""Post-training quantization (issue 16, part 1): the scheme's numbers, the quantized model
directory, the `neonsign quantize` command, and quantized directories in predict and test."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from neonsign import quantize
from neonsign.artifacts import CARD_FILE, load_any
from neonsign.engine import Engine
from neonsign.errors import ModelError, NeonsignValueError
from serve_helpers import make_model_dir, random_state_dict


def test_weight_quantization_is_symmetric_per_channel():
    sd = random_state_dict(1)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32)
    section = quantize.quantization_section(sd, x)
    params = quantize.engine_params(sd, section)
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        w = sd[f"{layer}.weight"].reshape(len(sd[f"{layer}.weight"]), -1)
        wq = params[f"{layer}.weight"].reshape(len(w), -1)
        assert wq.dtype == np.int8 and np.abs(wq).max(axis=1).tolist() == [127] * len(w)
        s = np.asarray(section["weight_scales"][layer])
        np.testing.assert_allclose(wq * s[:, None], w, atol=s.max() / 2 + 1e-7)


def test_fixed_point_multipliers_match_the_real_ones():
    sd = random_state_dict(2)
    x = np.random.default_rng(1).uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32)
    section = quantize.quantization_section(sd, x, method="minmax")
    params = quantize.engine_params(sd, section)
    act = section["activation_scales"]
    s_in = {"conv1": act["input"], "conv2": act["pool1"], "fc1": act["pool2"]}
    s_out = {"conv1": act["pool1"], "conv2": act["pool2"], "fc1": act["fc1"]}
    for layer, scale_in in s_in.items():
        real = scale_in * np.asarray(section["weight_scales"][layer]) / s_out[layer]
        mult = params[f"{layer}.mult"].astype(np.float64)
        fixed = mult * 2.0 ** -(31 + params[f"{layer}.shift"].astype(np.float64))
        assert ((mult >= 2**30) & (mult < 2**31)).all()
        np.testing.assert_allclose(fixed, real, rtol=2.0**-30)


def test_calibration_methods():
    acts = {
        "input": np.array([-1.0, 0.5, 1.0], np.float32),
        "pool1": np.concatenate([np.linspace(0, 1, 100000), [50.0]]).astype(np.float32),
        "pool2": np.ones(10, np.float32),
        "fc1": np.zeros(10, np.float32),
    }
    mm = quantize.calibrate(acts, "minmax")
    pc = quantize.calibrate(acts, "percentile", 99.9)
    assert math.isclose(mm["input"], 1 / 127) and math.isclose(mm["pool1"], 50 / 255, rel_tol=1e-6)
    assert pc["pool1"] < 1.01 / 255  # the outlier no longer sets the grid
    assert mm["fc1"] > 0  # an all-zero tensor still gets a usable scale
    with pytest.raises(NeonsignValueError, match="method"):
        quantize.calibrate(acts, "mse2")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("int8") / "fp32", seed=4)


def test_quantize_model_directory(synth, model_dir, tmp_path):
    out = quantize.quantize_model(model_dir, synth, tmp_path / "q", images=60)
    card = json.loads((out / CARD_FILE).read_text())
    q = card["quantization"]
    assert q["method"] == "percentile" and q["scheme"] == quantize.SCHEME
    assert q["calibration"]["images"] == 60 and len(q["calibration"]["sha256"]) == 64
    assert set(q["activation_scales"]) == {"input", "pool1", "pool2", "fc1"}
    eng = Engine.from_file(out)
    assert eng.precision == "int8" and Engine.from_file(model_dir).precision == "fp32"
    sd, _ = load_any(out)  # every command's loader reads it: FP32 weights + the card section
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(eng.predict(x), Engine(sd, quantization=q).predict(x))
    with pytest.raises(ModelError, match="already quantized"):
        quantize.quantize_model(out, synth, tmp_path / "qq", images=10)


def test_changed_scales_are_refused(synth, model_dir, tmp_path):
    out = quantize.quantize_model(model_dir, synth, tmp_path / "q", images=20, method="minmax")
    card = json.loads((out / CARD_FILE).read_text())
    card["quantization"]["activation_scales"]["pool1"] *= 1.5
    (out / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="int8_sha256"):
        Engine.from_file(out)
    card["quantization"]["scheme"] = "int4"
    (out / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="scheme"):
        Engine.from_file(out)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "neonsign", *args], capture_output=True, text=True, timeout=600
    )


def test_cli_quantize_then_predict_and_test(synth, model_dir, tmp_path):
    q = tmp_path / "q"
    r = _cli(
        "quantize",
        "--model",
        str(model_dir),
        "--data",
        str(synth),
        "--out",
        str(q),
        "--images",
        "40",
    )
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout
    img = next((synth / "Final_Test" / "Images").glob("*.ppm"), None) or next(synth.rglob("*.ppm"))
    r = _cli("predict", str(img), "--model", str(q), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1
    r2 = _cli("quantize", "--model", str(model_dir), "--data", str(synth), "--out", str(q))
    assert (
        r2.returncode == 2 and "neonsign quantize: error:" in r2.stderr and "--force" in r2.stderr
    )


def test_cli_quantize_errors(synth, model_dir, tmp_path):
    r = _cli(
        "quantize",
        "--model",
        str(tmp_path / "nope"),
        "--data",
        str(synth),
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = _cli(
        "quantize",
        "--model",
        str(model_dir),
        "--data",
        str(synth),
        "--out",
        str(tmp_path / "o"),
        "--images",
        "0",
    )
    assert r.returncode == 2 and "positive" in r.stderr


def test_gate_checks_int8_parity(synth, model_dir, tmp_path):
    pytest.importorskip("torch")
    from neonsign.app.gate import gate

    q = quantize.quantize_model(model_dir, synth, tmp_path / "q", images=40)
    verdict = gate(q, synth, min_accuracy=0.0, fail_if_slower=1000.0, repeats=1)
    checks = {c["name"]: c for c in verdict["checks"]}
    assert checks["probe_parity"]["passed"], checks["probe_parity"]  # FP32 weights vs torch
    parity = checks["int8_parity"]
    assert parity["n_images"] > 0 and 0.0 <= parity["top1_agreement"] <= 1.0
    assert parity["passed"] == (parity["top1_agreement"] >= parity["limit"])
    plain = gate(model_dir, synth, min_accuracy=0.0, fail_if_slower=1000.0, repeats=1)
    assert "int8_parity" not in {c["name"] for c in plain["checks"]}


def test_profiler_times_the_int8_layers(synth, model_dir, tmp_path):
    from neonsign.profiler import profile

    q = quantize.quantize_model(model_dir, synth, tmp_path / "q", images=20)
    report = profile(q, backends=["native"], batch=8, repeats=2, warmup=1, aten=False)
    entry = report.data["backends"][0]
    assert entry["settings"]["kernel"] in quantize_kernels()
    timed = {r["name"] for r in entry["layers"] if r["self_ns_total"] > 0}
    assert {"conv1", "conv2", "fc1", "fc2"} <= timed


def quantize_kernels():
    from neonsign.engine import available_int8_kernels

    return available_int8_kernels()
