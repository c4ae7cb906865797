"""ONNX export (issue 16, part 5): float32 graphs against ONNX Runtime (logits within 1e-5 of
the native engine), QDQ graphs of quantized directories (top-1 agreement with neonsign's int8
engine), and the `neonsign export-onnx` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neonsign import quantize
from neonsign.artifacts import load_any
from neonsign.engine import Engine
from serve_helpers import make_model_dir

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _run(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"x": x})[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("onnx") / "fp32", seed=6)


def _inputs(n=48, seed=2):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)


def test_fp32_export_matches_the_engine_and_torch(model_dir, tmp_path):
    from neonsign.onnx_export import export_onnx

    path, kind = export_onnx(model_dir, tmp_path / "m.onnx")
    assert kind == "fp32"
    x = _inputs()
    got = _run(path, x)
    sd, _ = load_any(model_dir)
    want = Engine(sd, kernel="ref").predict(x)
    assert got.shape == (48, 43)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    torch = pytest.importorskip("torch")
    from neonsign.model import TrafficSignNet

    net = TrafficSignNet().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


def test_qdq_export_agrees_with_the_int8_engine(synth, model_dir, tmp_path):
    import onnx

    from neonsign.onnx_export import export_onnx

    q = quantize.quantize_model(model_dir, synth, tmp_path / "q", images=60)
    path, kind = export_onnx(q, tmp_path / "q.onnx")
    assert kind == "int8 (QDQ)"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    x = _inputs(200, seed=3)
    got = _run(path, x).argmax(1)
    native = Engine.from_file(q).predict(x).argmax(1)
    assert (got == native).mean() >= 0.95


def test_cli_export_onnx(model_dir, tmp_path):
    out = tmp_path / "cli.onnx"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "neonsign",
            "export-onnx",
            "--model",
            str(model_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "fp32" in r.stdout
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "neonsign",
            "export-onnx",
            "--model",
            str(tmp_path / "none"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        r.returncode == 2
        and "neonsign export-onnx: error:" in r.stderr
        and "Traceback" not in r.stderr
    )
