"""Testing a model: metrics, backends, profiler table, confusion plot, ``neonsign test --json``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neonsign import artifacts, evaluate  # noqa: E402
from neonsign.errors import NeonsignValueError, UnsupportedError  # noqa: E402
from neonsign.model import TrafficSignNet  # noqa: E402

TORCH_BACKENDS = [b for b in evaluate.BACKENDS if b.startswith("torch")]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    torch.manual_seed(0)
    m = TrafficSignNet().eval()
    d = artifacts.save_model(
        tmp_path_factory.mktemp("m") / "model", m.state_dict(), artifacts.make_card()
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(150, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 43, size=150)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        expected = m(x).argmax(1).numpy()
    return d, images, labels, expected


def test_confusion_matrix_and_metrics_match_a_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 40, size=500)  # classes 40..42 absent
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, 43, size=500))
    cm = evaluate.confusion_matrix(y, p)
    ref = np.zeros((43, 43), np.int64)
    for a, b in zip(y, p, strict=False):
        ref[a, b] += 1
    assert np.array_equal(cm, ref)
    m = evaluate.classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(np.mean(y == p))
    assert m["n_images"] == 500 and m["n_correct"] == int(np.sum(y == p))
    assert m["per_class_accuracy"][40:] == [None, None, None]
    assert m["per_class_accuracy"][3] == pytest.approx(np.mean(p[y == 3] == 3))
    json.dumps(m)


def test_metrics_reject_bad_input():
    with pytest.raises(NeonsignValueError, match="shapes"):
        evaluate.confusion_matrix(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(NeonsignValueError, match="predictions"):
        evaluate.confusion_matrix(np.zeros(3, int), np.array([0, 1, 43]))


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_torch_backends_match_pytorch(model_and_data, backend, tmp_path):
    d, images, labels, expected = model_and_data
    plot = tmp_path / "cm.png"
    r = evaluate.evaluate_arrays(d, images, labels, backend=backend, batch_size=64, plot=plot)
    assert r["backend"] == backend and r["n_images"] == 150
    assert r["accuracy"] == pytest.approx(np.mean(expected == labels))
    cm = np.array(r["confusion_matrix"])
    assert np.array_equal(cm, evaluate.confusion_matrix(labels, expected))
    assert "model_inference" in r["profile_table"] and "Self CPU time total" in r["profile_table"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(r)


def test_onednn_off_really_disables_mkldnn(model_and_data, monkeypatch):
    d, images, labels, _ = model_and_data
    seen = []
    real = TrafficSignNet.forward

    def spy(self, x):
        seen.append(torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled())
        return real(self, x)

    monkeypatch.setattr(TrafficSignNet, "forward", spy)
    evaluate.make_predictor(d, "torch-onednn-off")(np.zeros((1, 3, 32, 32), np.float32))
    evaluate.make_predictor(d, "torch")(np.zeros((1, 3, 32, 32), np.float32))
    assert seen[0] is False
    assert seen[1] == torch.backends.mkldnn.is_available()


def test_bad_arguments(model_and_data):
    d, images, labels, _ = model_and_data
    with pytest.raises(NeonsignValueError, match="backend"):
        evaluate.evaluate_arrays(d, images, labels, backend="cuda")
    with pytest.raises(NeonsignValueError, match="images"):
        evaluate.evaluate_arrays(d, images[:, :16], labels, backend="torch")
    with pytest.raises(NeonsignValueError, match="labels"):
        evaluate.evaluate_arrays(d, images, labels[:3], backend="torch")
    if "native" not in evaluate.available_backends():
        with pytest.raises(UnsupportedError, match="native"):
            evaluate.evaluate_arrays(d, images, labels, backend="native")


def test_default_backend_is_native_when_the_engine_exists():
    expected = "native" if "native" in evaluate.available_backends() else "torch"
    assert evaluate.default_backend() == expected


@pytest.mark.skipif(
    "native" not in evaluate.available_backends(), reason="neonsign.engine not built yet"
)
def test_native_backend_agrees_with_torch(model_and_data):
    d, images, labels, expected = model_and_data
    r = evaluate.evaluate_arrays(d, images, labels, backend="native", profile=False)
    cm = np.array(r["confusion_matrix"])
    assert np.array_equal(cm, evaluate.confusion_matrix(labels, expected))


# ------------------------------------------------------------------------------------------------
# On files through the CLI (needs the C loader and the synthetic data generator)


def test_cli_json_contract(synth, model_and_data, tmp_path):
    d = model_and_data[0]
    out = tmp_path / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "neonsign.cli",
        "test",
        "--model",
        str(d),
        "--data",
        str(synth),
        "--split",
        "test",
        "--backend",
        "torch",
        "--json",
        str(out),
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert 0.0 <= res["accuracy"] <= 1.0 and res["n_images"] > 0 and res["backend"] == "torch"
    assert len(res["per_class_accuracy"]) == 43
    assert np.array(res["confusion_matrix"]).sum() == res["n_images"]
    assert out.with_suffix(".png").exists()
    r = subprocess.run(cmd[:-5] + ["--backend", "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    from neonsign.errors import UnsupportedError
    from neonsign.evaluate import plot_confusion

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UnsupportedError, match="matplotlib"):
        plot_confusion([[1, 0], [0, 1]], tmp_path / "cm.png")
