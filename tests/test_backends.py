"""One definition of the backends: names, availability and libtorch toggles shared by
``neonsign test --backend`` (evaluate) and the profiler."""

from __future__ import annotations

import numpy as np
import pytest

from neonsign import backends
from neonsign.errors import NeonsignValueError, UnsupportedError
from support import needs_subprocess, torch_imported_after


@needs_subprocess
def test_backends_evaluate_and_profiler_import_without_torch():
    code = "import neonsign.backends, neonsign.evaluate, neonsign.profiler, neonsign.app.pipeline"
    assert not torch_imported_after(code)


def test_one_list_of_names_everywhere():
    from neonsign import evaluate, profiler

    assert evaluate.BACKENDS == backends.BACKEND_NAMES
    assert [b.name for b in profiler.list_backends()] == list(backends.BACKEND_NAMES)
    assert profiler.Backend is backends.Backend
    assert set(backends.TORCH_BACKENDS) == {
        "torch",
        "torch-onednn-off",
        "torch-channels-last",
        "torch-bf16",
    }
    for b in backends.list_backends():
        assert b.available != bool(b.reason), b  # an unavailable backend says why


def test_cli_test_accepts_exactly_the_shared_names():
    from neonsign.cli import build_parser

    parser = build_parser()
    for name in backends.BACKEND_NAMES:
        args = parser.parse_args(["test", "--model", "m", "--data", "d", "--backend", name])
        assert args.backend == name
    with pytest.raises(SystemExit):
        parser.parse_args(["test", "--model", "m", "--data", "d", "--backend", "cuda"])


def test_resolve_rejects_unknown_and_unavailable():
    with pytest.raises(NeonsignValueError, match="unknown backend 'cuda'"):
        backends.resolve("cuda")
    missing = [b for b in backends.list_backends() if not b.available]
    if not missing:
        pytest.skip("every backend is available on this machine")
    with pytest.raises(UnsupportedError, match=f"'{missing[0].name}' is not available here"):
        backends.resolve(missing[0].name)


@pytest.mark.parametrize("name", list(backends.TORCH_BACKENDS))
def test_torch_toggles_switch_what_they_say(name):
    torch = pytest.importorskip("torch")
    t = backends.TorchToggles(name)
    x = t.input(np.zeros((2, 3, 32, 32), np.float32))
    assert x.is_contiguous(memory_format=torch.channels_last) == (name == "torch-channels-last")
    assert x.is_contiguous() == (name != "torch-channels-last")
    with t.mode():
        assert torch.is_inference_mode_enabled()
        mkldnn_on = torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()
        assert mkldnn_on == (torch.backends.mkldnn.is_available() and name != "torch-onednn-off")
        assert torch.is_autocast_enabled("cpu") == (name == "torch-bf16")
    assert torch._C._get_mkldnn_enabled()  # restored on exit
    assert not torch.is_autocast_enabled("cpu") and not torch.is_inference_mode_enabled()
    s = t.settings(threads=3)
    assert s["threads"] == 3 and s["mkldnn_enabled"] == (name != "torch-onednn-off")


def test_torch_toggles_reject_other_names():
    pytest.importorskip("torch")
    with pytest.raises(NeonsignValueError, match="not a libtorch backend"):
        backends.TorchToggles("native")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from neonsign import artifacts
    from neonsign.profiler import random_state_dict

    return artifacts.save_model(
        tmp_path_factory.mktemp("m") / "model", random_state_dict(5), artifacts.make_card()
    )


def test_every_available_backend_predicts_alike_through_evaluate(model_dir):
    """``neonsign test --backend`` runs every shared name: fp32 backends agree with torch."""
    pytest.importorskip("torch")
    from neonsign import evaluate

    x = np.random.default_rng(2).uniform(-1, 1, size=(16, 3, 32, 32)).astype(np.float32)
    ref = evaluate.make_predictor(model_dir, "torch")(x)
    assert ref.shape == (16, 43) and ref.dtype == np.float32
    for name in evaluate.available_backends():
        got = evaluate.make_predictor(model_dir, name, threads=1)(x)
        assert got.shape == (16, 43) and got.dtype == np.float32, name
        tol = 0.1 if name == "torch-bf16" else 1e-4
        np.testing.assert_allclose(got, ref, atol=tol, rtol=tol, err_msg=name)
