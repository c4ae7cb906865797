"""TrafficSignNet and model directories (safetensors + model card, .pth import/export)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neonsign import artifacts  # noqa: E402
from neonsign.errors import ModelError  # noqa: E402
from neonsign.model import TrafficSignNet  # noqa: E402


def _model(seed: int = 0) -> TrafficSignNet:
    torch.manual_seed(seed)
    return TrafficSignNet().eval()


def _inputs(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_architecture_matches_learning_path():
    m = _model()
    assert m(_inputs(2)).shape == (2, 43)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == artifacts.STATE_DICT_SHAPES
    assert (
        sum(p.numel() for p in m.parameters())
        == 32 * 27 + 32 + 64 * 288 + 64 + 128 * 2304 + 128 + 43 * 128 + 43
    )


def test_forward_matches_functional_reference():
    m = _model()
    x = _inputs()
    F = torch.nn.functional
    ref = F.max_pool2d(F.relu(F.conv2d(x, m.conv1.weight, m.conv1.bias)), 2)
    ref = F.max_pool2d(F.relu(F.conv2d(ref, m.conv2.weight, m.conv2.bias)), 2).flatten(1)
    ref = F.linear(F.relu(F.linear(ref, m.fc1.weight, m.fc1.bias)), m.fc2.weight, m.fc2.bias)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref)


def test_pth_roundtrip_through_safetensors_gives_identical_outputs(tmp_path):
    m = _model(3)
    pth = tmp_path / "traffic_sign_net.pth"
    torch.save(m.state_dict(), pth)  # exactly what the learning path's train_model.py writes
    model_dir = artifacts.import_pth(pth, tmp_path / "model")
    tensors, card = artifacts.load_model(model_dir)
    m2 = TrafficSignNet().eval()
    m2.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert card["source"] == str(pth)
    # and back to a .pth the learning path's test_model.py loads unchanged
    out = artifacts.export_pth(model_dir, tmp_path / "back.pth")
    m3 = TrafficSignNet().eval()
    m3.load_state_dict(torch.load(out, weights_only=True))
    with torch.no_grad():
        assert torch.equal(m(x), m3(x))
    with pytest.raises(ModelError, match="already exists"):
        artifacts.export_pth(model_dir, out)


def test_ddp_prefixed_pth_is_accepted(tmp_path):
    m = _model()
    pth = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in m.state_dict().items()}, pth)
    tensors, _ = artifacts.load_model(artifacts.import_pth(pth, tmp_path / "m"))
    assert set(tensors) == set(artifacts.STATE_DICT_SHAPES)


def test_model_card_is_complete(tmp_path):
    card = artifacts.make_card(
        metrics={"val_accuracy": 0.5},
        data_checksum="ab" * 32,
        seed=7,
        epochs=3,
        hyperparameters={"lr": 0.001},
    )
    d = artifacts.save_model(tmp_path / "m", _model().state_dict(), card)
    saved = json.loads((d / artifacts.CARD_FILE).read_text())
    for key in (
        "metrics",
        "preprocessing",
        "data_checksum",
        "seed",
        "epochs",
        "hyperparameters",
        "library_versions",
        "code_version",
        "created",
        "weights_sha256",
        "schema_version",
    ):
        assert key in saved, key
    assert saved["weights_sha256"] == artifacts.sha256_file(d / artifacts.WEIGHTS_FILE)
    assert saved["preprocessing"] == {
        "size": 32,
        "roi": False,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "dtype": "float32",
        "layout": "NCHW",
    }
    assert saved["library_versions"]["torch"] is not None
    assert saved["code_version"]


def test_tampered_weights_are_rejected(tmp_path):
    d = artifacts.save_model(tmp_path / "m", _model().state_dict(), artifacts.make_card())
    w = d / artifacts.WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        artifacts.load_model(d)


def test_existing_model_directory_is_not_overwritten(tmp_path):
    sd = _model().state_dict()
    d = artifacts.save_model(tmp_path / "m", sd, artifacts.make_card(seed=1))
    with pytest.raises(ModelError, match="refusing to overwrite"):
        artifacts.save_model(d, sd, artifacts.make_card(seed=2))
    assert artifacts.load_model(d)[1]["seed"] == 1
    artifacts.save_model(d, sd, artifacts.make_card(seed=2), overwrite=True)
    assert artifacts.load_model(d)[1]["seed"] == 2


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda sd: sd.pop("fc2.bias"), "missing"),
        (lambda sd: sd.__setitem__("extra", np.zeros(1, np.float32)), "unexpected"),
        (lambda sd: sd.__setitem__("fc1.bias", np.zeros(127, np.float32)), "shape"),
        (lambda sd: sd.__setitem__("fc1.bias", np.zeros(128, np.int32)), "dtype"),
        (lambda sd: sd.__setitem__("fc1.bias", np.full(128, np.nan, np.float32)), "NaN"),
    ],
)
def test_bad_state_dicts_are_rejected(tmp_path, mutate, match):
    sd = {k: v.numpy() for k, v in _model().state_dict().items()}
    mutate(sd)
    with pytest.raises(ModelError, match=match):
        artifacts.save_model(tmp_path / "m", sd, artifacts.make_card())
    assert not (tmp_path / "m" / artifacts.WEIGHTS_FILE).exists()


def test_bad_model_directories_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        artifacts.load_model(tmp_path / "nope")
    d = artifacts.save_model(tmp_path / "m", _model().state_dict(), artifacts.make_card())
    card_path = d / artifacts.CARD_FILE
    card = json.loads(card_path.read_text())
    card_path.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        artifacts.load_model(d)
    card_path.write_text(json.dumps({**card, "schema_version": 99}))
    with pytest.raises(ModelError, match="schema_version"):
        artifacts.load_model(d)
    # a truncated weights file whose card was updated to match still fails cleanly
    w = d / artifacts.WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[:100])
    card_path.write_text(json.dumps({**card, "weights_sha256": artifacts.sha256_file(w)}))
    with pytest.raises(ModelError, match="safetensors"):
        artifacts.load_model(d)


def test_not_a_state_dict_pth(tmp_path):
    pth = tmp_path / "x.pth"
    torch.save({"weight": torch.zeros(3)}, pth)
    with pytest.raises(ModelError, match="not a TrafficSignNet"):
        artifacts.import_pth(pth, tmp_path / "m")
    pth.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not be loaded"):
        artifacts.import_pth(pth, tmp_path / "m2")


@pytest.mark.parametrize("bf16", [False, True])
def test_pool_before_relu_matches_the_learning_path_order_bit_for_bit(bf16):
    """forward() pools before the ReLU (faster); outputs and gradients equal relu-then-pool, in
    float32 and as training runs it (channels_last, under bfloat16 autocast: max and relu are
    exact in any dtype, and a window whose max is <= 0 gets no gradient in either order)."""
    import torch.nn.functional as F

    from neonsign.model import TrafficSignNet

    torch.manual_seed(0)
    m = TrafficSignNet()
    x = torch.randn(8, 3, 32, 32)
    if bf16:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def learning_path(x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(m.conv1(x)), 2)
        x = F.max_pool2d(F.relu(m.conv2(x)), 2)
        return m.fc2(F.relu(m.fc1(torch.flatten(x, 1))))

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ours, ref = m(x), learning_path(x)
    assert torch.equal(ours, ref)
    g_ours = torch.autograd.grad(ours.square().sum(), list(m.parameters()))
    g_ref = torch.autograd.grad(ref.square().sum(), list(m.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g_ours, g_ref, strict=False))
