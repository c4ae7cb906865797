"""The training step's pieces (issue 18): the fused batch preparation (the C augmentation
kernel and its PyTorch form) against PyTorch's own affine_grid/grid_sample augmentation, and the per-phase clock of benchmarks/train.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")

from neonsign._trainer import PHASES, PhaseClock, _grid, fit, prepare_batch  # noqa: E402
from neonsign.train import TrainConfig  # noqa: E402


def _reference(u8: torch.Tensor, seed: int, cfg: TrainConfig) -> torch.Tensor:
    """The augmentation as first written (before issue 18): u8 / 255, ``F.affine_grid`` +
    ``F.grid_sample``, brightness/contrast around each image's mean, clamp, normalise."""
    gen = torch.Generator().manual_seed(seed)
    x = u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    if cfg.augment:
        angle = uniform(-cfg.rotation, cfg.rotation) * (math.pi / 180.0)
        scale = uniform(cfg.scale[0], cfg.scale[1])
        tx = uniform(-cfg.translate, cfg.translate) * 2.0
        ty = uniform(-cfg.translate, cfg.translate) * 2.0
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        bright = uniform(1.0 - cfg.brightness, 1.0 + cfg.brightness).view(b, 1, 1, 1)
        contrast = uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(b, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean * bright).clamp(0.0, 1.0)
    m = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    s = torch.tensor(cfg.std).view(1, -1, 1, 1)
    return (x - m) / s


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize(
    "mean, std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.3, 0.4, 0.5), (0.2, 0.25, 0.3))]
)
def test_prepare_batch_is_the_reference_augmentation(augment, mean, std):
    u8 = torch.randint(
        0, 256, (37, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    cfg = TrainConfig(augment=augment, mean=mean, std=std)
    got = prepare_batch(
        u8, torch.Generator().manual_seed(7), cfg, torch.tensor(mean), torch.tensor(std)
    )
    want = _reference(u8, 7, cfg)
    assert got.dtype == torch.float32 and got.shape == (37, 3, 32, 32)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    # the clamp to [0, 1] happens before normalisation: the output stays in the normalised range
    lo = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, -1, 1, 1)
    hi = ((1 - torch.tensor(mean)) / torch.tensor(std)).view(1, -1, 1, 1)
    assert torch.all(got >= lo - 1e-5) and torch.all(got <= hi + 1e-5)


def _torch_augment(u8, theta, bright, contrast, mean, std):
    """The C kernel's transform in PyTorch's own ops: ``F.affine_grid`` + ``F.grid_sample``
    (bilinear, border, align_corners=False) on 0..255, the jitter around each image's mean,
    clamp, normalise."""
    x = u8.permute(0, 3, 1, 2).to(torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b, c = bright.view(-1, 1, 1, 1), contrast.view(-1, 1, 1, 1)
    mu = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mu) * c + mu * b).div(255.0).clamp(0.0, 1.0)
    return (y - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.mark.parametrize("h, w", [(32, 32), (17, 23), (48, 8), (1, 5), (1, 1)])
@pytest.mark.parametrize("spread", [0.3, 1.0, 4.0])
def test_c_augment_is_grid_sample(h, w, spread):
    """``_native.augment`` (issue 18: the batch preparation in one C pass) against PyTorch's
    affine_grid/grid_sample path on random batches: thetas from near-identity to large
    rotations, scalings and translations that sample far outside the image (the border
    clamp), brightness/contrast factors that drive the clamp to 0 and 1."""
    from neonsign import _native

    g = torch.Generator().manual_seed(h * 100 + w + int(spread * 10))
    n = 19
    u8 = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)
    theta = torch.eye(2, 3).expand(n, 2, 3) + spread * torch.randn(n, 2, 3, generator=g)
    bright = 0.2 + 1.6 * torch.rand(n, generator=g)
    contrast = 0.2 + 1.6 * torch.rand(n, generator=g)
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    got = _native.augment(
        u8.numpy(), theta.contiguous().numpy(), bright.numpy(), contrast.numpy(), mean, std
    )
    assert got.dtype == np.float32 and got.shape == (n, h, w, 3)
    want = _torch_augment(u8, theta, bright, contrast, mean, std)
    torch.testing.assert_close(torch.from_numpy(got).permute(0, 3, 1, 2), want, atol=1e-4, rtol=0)


def test_c_augment_identity_and_far_border():
    """The identity map reproduces the image (normalised); a translation far outside the image
    fills it with its nearest border pixels (border padding), as grid_sample does."""
    from neonsign import _native

    u8 = torch.randint(0, 256, (2, 9, 7, 3), dtype=torch.uint8, generator=torch.Generator())
    ident = torch.eye(2, 3).expand(2, 2, 3).contiguous()
    ones = np.ones(2, np.float32)
    got = _native.augment(u8.numpy(), ident.numpy(), ones, ones, (0, 0, 0), (1, 1, 1))
    np.testing.assert_allclose(got, u8.numpy() / 255.0, atol=1e-5)
    far = ident.clone()
    far[:, 0, 2], far[:, 1, 2] = 50.0, -50.0  # right of and above the image: its top-right pixel
    got = _native.augment(u8.numpy(), far.numpy(), ones, ones, (0, 0, 0), (1, 1, 1))
    corner = u8.numpy()[:, :1, -1:, :] / 255.0
    np.testing.assert_allclose(got, np.broadcast_to(corner, got.shape), atol=1e-5)


def test_c_augment_rejects_bad_arguments_and_survives_non_finite_maps():
    """Shapes, dtypes and std are checked with neonsign errors naming the argument; NaN or
    infinite maps sample the border (no crash, no read outside the image)."""
    from neonsign import _native
    from neonsign.errors import NeonsignTypeError, NeonsignValueError

    u8 = np.zeros((3, 8, 8, 3), np.uint8)
    theta = np.zeros((3, 2, 3), np.float32)
    f = np.ones(3, np.float32)
    m, s = (0.5,) * 3, (0.5,) * 3
    with pytest.raises(NeonsignValueError, match="theta"):
        _native.augment(u8, theta[:2], f, f, m, s)
    with pytest.raises(NeonsignValueError, match="theta"):
        _native.augment(u8, theta.astype(np.float64), f, f, m, s)
    with pytest.raises(NeonsignValueError, match="contrast"):
        _native.augment(u8, theta, f, f[:2], m, s)
    with pytest.raises(NeonsignValueError, match="images"):
        _native.augment(u8.astype(np.float32), theta, f, f, m, s)
    with pytest.raises(NeonsignTypeError, match="bright"):
        _native.augment(u8, theta, [1.0] * 3, f, m, s)
    with pytest.raises(NeonsignValueError, match="std"):
        _native.augment(u8, theta, f, f, m, (0.5, 0.0, 0.5))
    odd = np.array([[[np.nan, 0, 0], [0, 1, 0]], [[np.inf, 0, -np.inf], [0, 1, 0]]] * 2)
    got = _native.augment(u8[:2] + 7, odd[:2].astype(np.float32), f[:2], f[:2], m, s)
    np.testing.assert_allclose(got, (7 / 255 - 0.5) / 0.5, atol=1e-5)
    assert _native.augment(u8[:0], theta[:0], f[:0], f[:0], m, s).shape == (0, 8, 8, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_prepare_batch_is_its_pytorch_form(seed):
    """The training loop's batch preparation (the C kernel) against its PyTorch form with the
    same draws, on the default recipe's ranges and on wider ones."""
    from neonsign._trainer import _prepare_batch_torch

    u8 = torch.randint(
        0, 256, (64, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    wide = dict(rotation=180.0, scale=(0.3, 2.0), translate=0.6, brightness=0.9, contrast=0.9)
    for cfg in (TrainConfig(), TrainConfig(**wide)):
        m, s = torch.tensor(cfg.mean), torch.tensor(cfg.std)
        got = prepare_batch(u8, torch.Generator().manual_seed(seed), cfg, m, s)
        want = _prepare_batch_torch(u8, torch.Generator().manual_seed(seed), cfg, m, s)
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("h, w", [(32, 32), (17, 23), (1, 5)])
def test_grid_is_affine_grid(h, w):
    theta = torch.randn(9, 2, 3, generator=torch.Generator().manual_seed(h * w))
    want = F.affine_grid(theta, [9, 3, h, w], align_corners=False)
    torch.testing.assert_close(_grid(theta, h, w), want, atol=1e-6, rtol=0)


def test_phase_clock_charges_every_step_to_its_phases():
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, size=(3, 100, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 43, size=100).astype(np.int64)
    from neonsign._trainer import Framing

    clock = PhaseClock()
    cfg = TrainConfig(epochs=2, batch_size=32, threads=1, bf16=False)
    res = fit(
        views,
        labels,
        np.arange(100),
        np.empty(0, np.int64),
        cfg,
        framing=Framing(train_views=3),
        progress=False,
        clock=clock,
    )
    assert clock.steps == 2 * 4  # ceil(100 / 32) batches per epoch
    assert set(clock.seconds) == set(PHASES)
    assert all(clock.seconds[p] > 0 for p in PHASES)
    assert sum(clock.seconds.values()) <= res.seconds
    ms = clock.per_step_ms()
    assert ms["forward"] == pytest.approx(clock.seconds["forward"] * 1e3 / 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_mask_is_torchs_dropout(dtype):
    """The training-only dropout on fc2's input draws its own mask (cheaper than ``bernoulli_``):
    the same law as ``F.dropout`` -- survivors scaled by 1 / (1 - p) exactly as F.dropout scales
    them in that dtype, the rest zero, the dropped fraction p -- and the identity at p = 0."""
    from neonsign._trainops import dropout

    p = 0.3
    x = torch.ones(256, 2304, dtype=dtype)
    torch.manual_seed(0)
    got = dropout(x, p)
    want = F.dropout(x, p, training=True)
    assert got.dtype == dtype and got.shape == x.shape
    assert set(got.unique().tolist()) == set(want.unique().tolist())  # {0, 1 / (1 - p)}
    frac = float((got == 0).float().mean())
    assert abs(frac - p) < 0.01, frac  # 589,824 draws: the standard error is 0.0006
    assert dropout(x, 0.0) is x


def test_whole_weight_draws_the_whole_view_that_much_more_often():
    """``whole_weight`` w: the whole-image view (view 1) is drawn w times as often as each other
    view; w = 1 keeps the uniform draw (the stream of runs before the option)."""
    from neonsign._trainer import Framing, _gather, _tensors

    n = 4000
    views = np.stack([np.full((n, 32, 32, 3), v, np.uint8) for v in range(4)])  # view id = pixel
    labels = np.zeros(n, np.int64)
    cfg = TrainConfig()
    batch = torch.arange(n)
    for weights, want in (((1.0, 3.0, 1.0, 1.0), [1 / 6, 3 / 6, 1 / 6, 1 / 6]), (None, [0.25] * 4)):
        data = _tensors(
            views,
            labels,
            np.arange(n),
            np.empty(0, np.int64),
            cfg,
            Framing(train_views=4, view_weights=weights),
        )
        got = _gather(data, batch, torch.Generator().manual_seed(0))[:, 0, 0, 0]
        freq = torch.bincount(got.long(), minlength=4).double() / n
        torch.testing.assert_close(freq, torch.tensor(want, dtype=torch.float64), atol=0.03, rtol=0)
    uniform = _tensors(
        views,
        labels,
        np.arange(n),
        np.empty(0, np.int64),
        cfg,
        Framing(train_views=4, view_weights=(2.0,) * 4),
    )
    assert uniform.view_weights is None  # equal weights: the plain uniform draw
    with pytest.raises(ValueError, match="view_weights"):
        _tensors(
            views,
            labels,
            np.arange(n),
            np.empty(0, np.int64),
            cfg,
            Framing(train_views=4, view_weights=(1.0, 2.0)),
        )
    with pytest.raises(ValueError, match="whole_weight"):
        TrainConfig(whole_weight=0).validate()


_MALLOC_SCRIPT = """
import ctypes, sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "set":
    from neonsign._trainer import keep_freed_memory
    assert keep_freed_memory()
size = 24 << 20  # a block of a training step's order (conv1's output at batch 64: 7 MiB)
before = libc.mallinfo2()
block = libc.malloc(size)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(during.hblkhd - before.hblkhd, during.arena - before.arena, after.arena - during.arena)
"""


def _malloc_effect(mode: str) -> tuple[int, int, int]:
    """In a fresh process (``mode`` "set": after :func:`keep_freed_memory`), glibc's
    ``mallinfo2`` around a 24 MiB malloc and free: (bytes mmapped for it, bytes the heap grew
    by, bytes the heap changed by on free)."""
    out = subprocess.run(
        [sys.executable, "-c", _MALLOC_SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    mapped, grown, freed = (int(v) for v in out.stdout.split()[-3:])
    return mapped, grown, freed


def test_freed_training_memory_stays_in_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """``keep_freed_memory`` (which ``fit`` calls) makes glibc serve a step-size block from its
    heap and keep it there when freed, for the next step to reuse without page faults; by
    default the same block is a fresh ``mmap`` (faulted in, then unmapped on free). Read from
    glibc's own accounting (``mallinfo2``), not from timings or fault counts."""
    from neonsign import _trainer

    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if not libc or not libc.startswith("glibc"):
        assert _trainer.keep_freed_memory() is False  # other C libraries are left alone
        pytest.skip(f"glibc only (this C library: {libc or 'unknown'})")
    size = 24 << 20
    mapped, grown, freed = _malloc_effect("plain")
    assert mapped >= size and grown < size, (mapped, grown)  # glibc's default: mmap
    mapped, grown, freed = _malloc_effect("set")
    assert mapped == 0 and grown > size // 2 and freed == 0, (mapped, grown, freed)
    # and fit applies it, before anything else
    calls: list[int] = []
    monkeypatch.setattr(_trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    cfg = TrainConfig(epochs=1, threads=1, bf16=False, batch_size=8)
    _trainer.fit(images, rng.integers(0, 43, 16), np.arange(16), np.empty(0, np.int64), cfg)
    assert calls == [1]
