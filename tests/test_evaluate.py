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


# ---------------------------------------------------------------------------------------------
# The error boundary: every file a user names fails as a NeonsignError subclass


def _assert_boundary(info, neonsign_class, builtin_class, path):
    from neonsign.errors import NeonsignError

    assert isinstance(info.value, NeonsignError) and isinstance(info.value, neonsign_class)
    assert isinstance(info.value, builtin_class)
    assert str(path) in str(info.value)


def test_test_on_a_data_set_with_one_image_missing(synth_root, model_and_data, tmp_path):
    import shutil

    from neonsign.errors import NeonsignFileNotFoundError

    root = tmp_path / "gtsrb"
    shutil.copytree(synth_root, root)
    missing = sorted((root / "Final_Test" / "Images").glob("*.ppm"))[5]
    missing.unlink()
    with pytest.raises(NeonsignFileNotFoundError) as info:
        evaluate.evaluate(model_and_data[0], root, backend="torch", profile=False)
    _assert_boundary(info, NeonsignFileNotFoundError, FileNotFoundError, missing)


def test_plot_and_results_on_a_full_disk_or_a_bad_destination(
    model_and_data, tmp_path, monkeypatch
):
    from pathlib import Path

    from neonsign.errors import DiskFullError, NeonsignNotADirectoryError, NeonsignPermissionError

    pytest.importorskip("matplotlib")
    d, images, labels, _ = model_and_data
    result = evaluate.evaluate_arrays(d, images[:10], labels[:10], backend="torch", profile=False)
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(DiskFullError) as info:
        evaluate.plot_confusion(result["confusion_matrix"], full)
    _assert_boundary(info, DiskFullError, OSError, full)
    with pytest.raises(DiskFullError) as info:
        evaluate.save_result(result, full)
    _assert_boundary(info, DiskFullError, OSError, full)
    a_file = tmp_path / "file"
    a_file.write_text("")
    for write in (
        evaluate.save_result,
        lambda r, p: evaluate.plot_confusion(r["confusion_matrix"], p),
    ):
        with pytest.raises(NeonsignNotADirectoryError) as info:
            write(result, a_file / "out")
        _assert_boundary(info, NeonsignNotADirectoryError, NotADirectoryError, a_file / "out")

    # a read-only destination (chmod does not stop root, so the refusal is injected)
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(NeonsignPermissionError) as info:
        evaluate.save_result(result, tmp_path / "ro.json")
    _assert_boundary(info, NeonsignPermissionError, PermissionError, tmp_path / "ro.json")


def test_plot_without_a_suffix_writes_the_path_it_returns(model_and_data, tmp_path):
    pytest.importorskip("matplotlib")
    out = evaluate.plot_confusion(np.eye(43, dtype=np.int64), tmp_path / "plot")
    assert out == tmp_path / "plot" and out.read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "plot.png").exists()


def test_torch_backend_without_torch_is_a_missing_dependency(model_and_data, monkeypatch):
    from neonsign.errors import MissingDependencyError

    state, _ = artifacts.load_model(model_and_data[0])
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info:
        evaluate._torch_predictor(state, "torch")
    assert isinstance(info.value, ImportError) and "neonsign[torch]" in str(info.value)


@pytest.mark.parametrize("loaded_roi", [True, False])
def test_reframe_and_add_other_framing_match_evaluate(synth, model_and_data, loaded_roi):
    """The pipeline's held-out path: rows of a split loaded in one framing, the same rows
    reframed (``data.reframe``) and measured with ``add_other_framing`` -- the figures
    ``evaluate`` gives when it loads both framings itself."""
    from neonsign import data

    d = model_and_data[0]
    images, labels, meta = data.load_split(synth, "test", roi=loaded_roi, dtype="uint8")
    other_all, _, _ = data.load_split(synth, "test", roi=not loaded_roi, dtype="uint8")
    rows = np.arange(0, len(meta), 3)
    other = data.reframe(meta, rows, roi=not loaded_roi)
    assert np.array_equal(other, other_all[rows])
    assert np.array_equal(data.reframe(meta, roi=loaded_roi), images)  # the loaded framing too

    result = evaluate.evaluate_arrays(d, images, labels, backend="native", profile=False)
    result["framing"] = "roi" if loaded_roi else "whole"
    evaluate.add_other_framing(result, d, other_all, labels)
    expected = evaluate.evaluate(
        d, synth, split="test", backend="native", roi=loaded_roi, profile=False
    )
    assert result["framings"] == expected["framings"]
    assert result["framings"]["roi"]["n_images"] == len(meta)

    with pytest.raises(NeonsignValueError, match="same images"):
        evaluate.add_other_framing(result, d, other, labels[rows])
    with pytest.raises(NeonsignValueError, match="rows must lie"):
        data.reframe(meta, np.array([len(meta)]), roi=True)
