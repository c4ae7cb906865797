"""The fused pooling kernels in training (issue 18): ``neonsign._trainops.pool2_relu`` against
PyTorch's ``F.relu(F.max_pool2d(x, 2))`` -- values and gradients bit for bit, in float32 and
bfloat16, on every kernel this CPU runs -- and :class:`FusedTrafficSignNet`'s training step
against TrafficSignNet's. ``tests/test_trainops_numpy.py`` checks the same kernels without
PyTorch (and on AArch64 under qemu)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from neonsign import _native, _trainops  # noqa: E402
from neonsign._trainops import FusedTrafficSignNet, pool2_relu  # noqa: E402
from neonsign.model import TrafficSignNet  # noqa: E402


def _input(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    flat = x.view(-1)
    flat[torch.rand(flat.numel(), generator=g) < 0.1] = 0.5  # ties
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan")])
    pick = torch.rand(flat.numel(), generator=g) < 0.03
    flat[pick] = specials[torch.randint(len(specials), (int(pick.sum()),), generator=g)]
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (-0.0 is not +0.0), except that any NaN matches any NaN (PyTorch may rewrite
    a NaN's payload)."""
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    bits = torch.int16 if a.dtype == torch.bfloat16 else torch.int32
    ok = ~torch.isnan(b)
    return bool(torch.equal(a.view(bits)[ok], b.view(bits)[ok]))


@pytest.mark.parametrize("kernel", _native.trainops_kernels())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(64, 32, 30, 30), (64, 64, 13, 13), (3, 37, 7, 9)])
@pytest.mark.parametrize("nchw", [False, True])
def test_pool2_relu_is_pytorchs(monkeypatch, kernel, dtype, shape, nchw) -> None:
    monkeypatch.setattr(_trainops, "KERNEL", kernel)
    x = _input(shape, dtype, seed=shape[1])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = pool2_relu(a, nchw)
    want = F.relu(F.max_pool2d(b, 2))
    assert got.dtype == dtype and got.shape == want.shape
    if nchw:
        assert got.is_contiguous()
    else:
        assert got.is_contiguous(memory_format=torch.channels_last)
    assert _same(got, want)
    grad = torch.randn(want.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    grad.view(-1)[::7] = -0.0  # PyTorch adds gradients into zeros: -0.0 lands as +0.0
    got.backward(grad)
    want.backward(grad)
    assert a.grad.is_contiguous(memory_format=torch.channels_last)
    assert _same(a.grad, b.grad)


def test_pool2_relu_falls_back_to_pytorch_for_other_tensors() -> None:
    for x in (
        torch.randn(2, 3, 8, 8),  # NCHW-contiguous
        torch.randn(2, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last),
        torch.randn(2, 3, 1, 8).contiguous(memory_format=torch.channels_last),
        torch.randn(0, 3, 8, 8).contiguous(memory_format=torch.channels_last),  # empty
    ):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        if x.shape[2] < 2:
            with pytest.raises(RuntimeError):
                pool2_relu(a)
            continue
        got, want = pool2_relu(a, nchw=True), F.relu(F.max_pool2d(b, 2))
        assert got.is_contiguous() and torch.equal(got, want)
        got.sum().backward()
        want.sum().backward()
        assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("bf16", [False, True])
def test_fused_net_trains_exactly_like_trafficsignnet(bf16: bool) -> None:
    torch.manual_seed(0)
    plain = TrafficSignNet().to(memory_format=torch.channels_last)
    fused = FusedTrafficSignNet().to(memory_format=torch.channels_last)
    fused.load_state_dict(plain.state_dict())
    assert list(fused.state_dict()) == list(plain.state_dict())
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 43, (16,))
    outs = []
    for net in (plain, fused):
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        outs.append((logits.detach(), {k: p.grad for k, p in net.named_parameters()}))
    assert torch.equal(outs[0][0], outs[1][0])
    for k, g in outs[0][1].items():
        assert torch.equal(g, outs[1][1][k]), k
    # eval mode is TrafficSignNet's forward (every export and backend runs that one)
    plain.eval()
    fused.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), fused(x))


@pytest.mark.parametrize("kernel", _native.trainops_kernels())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("nchw", [False, True])
def test_fused_dropout_has_dropouts_law(monkeypatch, kernel, dtype, nchw) -> None:
    """``pool2_relu(x, p=p)``: survivors are relu(max_pool2d(x)) times F.dropout's mask value
    (1 / (1 - p) in that dtype), a fraction p of the outputs is zero, the gradient flows through
    the survivors only (scaled alike), the mask is the seed's (the same on every kernel) and a
    seeded run repeats its masks."""
    monkeypatch.setattr(_trainops, "KERNEL", kernel)
    p = 0.3
    x = torch.randn(64, 64, 13, 13).abs().add_(0.1).to(dtype)  # all positive: ReLU keeps all
    x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(3)
    got = pool2_relu(a, nchw, p=p)
    base = F.relu(F.max_pool2d(b, 2))
    keep = (got != 0).to(dtype)
    want = base * keep.div(1.0 - p)  # F.dropout's: the mask scaled in the tensor's dtype
    assert torch.equal(got, want)
    frac = 1.0 - float(keep.float().mean())
    assert abs(frac - p) < 0.01, frac  # 173,056 outputs: the standard error is 0.0011
    grad = torch.randn(got.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(a.grad, b.grad)
    torch.manual_seed(3)
    again = pool2_relu(x, nchw, p=p)
    assert torch.equal(again, got.detach())
    monkeypatch.setattr(_trainops, "KERNEL", "ref")
    torch.manual_seed(3)
    assert torch.equal(pool2_relu(x, nchw, p=p), got.detach())
