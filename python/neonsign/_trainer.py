"""The PyTorch training loop behind :mod:`neonsign.train` (imports torch; private).

Data arrive once as uint8 NHWC arrays; every batch is gathered from them, augmented (random
affine with ``affine_grid``/``grid_sample``'s semantics, brightness/contrast jitter) and
normalised in one C pass (``_native.augment``; the draws come from torch), so no per-item
Python or Pillow work happens during an epoch. The forward/backward pass runs
under bfloat16 autocast where the CPU has native bf16 (``TrainConfig.bf16``; weights stay
float32). With ``torch.distributed`` initialised, each rank trains on a disjoint shard of every epoch's permutation under
DistributedDataParallel and validation counts are summed over ranks.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import _native
from ._precision import PrecisionChoice, bf16_supported, choose_precision
from ._trainops import FusedTrafficSignNet
from .artifacts import NUM_CLASSES
from .errors import NeonsignValueError

if TYPE_CHECKING:
    from tqdm.auto import tqdm

    from .train import TrainConfig

__all__ = [
    "EpochRecord",
    "FitResult",
    "Framing",
    "PHASES",
    "PhaseClock",
    "bf16_supported",
    "keep_freed_memory",
    "resolve_precision",
    "augment_batch",
    "prepare_batch",
    "to_float",
    "fit",
    "predict_logits",
]


class EpochRecord(TypedDict):
    """One epoch of the training history (the model card's ``metrics.history`` rows)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    val_framings: dict[str, float]  # validation accuracy per framing ("roi", "whole")
    lr: float
    seconds: float


@dataclass
class FitResult:
    """What :func:`fit` returns: the best state_dict (by validation accuracy) and the history."""

    state_dict: dict[str, torch.Tensor]
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    val_accuracy: float | None = None
    val_framings: dict[str, float] = field(default_factory=dict)
    per_class_accuracy: list[float | None] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "float32"
    precision_choice: dict[str, Any] = field(default_factory=dict)  # what was chosen and why


@dataclass(frozen=True)
class Framing:
    """Which views of the images a run trains on and validates.

    ``train_views``: training draws each sample from views ``0 .. train_views - 1``;
    ``val_views``: framing name ("roi", "whole") -> the view validated under that name;
    ``primary``: the framing reported as ``val_accuracy``; ``select_on_mean``: pick the best
    epoch by the mean validation accuracy over the framings (else by the primary one);
    ``view_weights``: relative probabilities of drawing each training view (None: uniform).
    """

    train_views: int = 1
    val_views: dict[str, int] = field(default_factory=lambda: {"roi": 0})
    primary: str = "roi"
    select_on_mean: bool = False
    view_weights: tuple[float, ...] | None = None


def resolve_precision(bf16: bool | None, batch_size: int = 64, threads: int | None = None) -> str:
    """ "bfloat16" or "float32" for ``TrainConfig.bf16``: forced by True/False; None measures
    which is faster on this CPU (:func:`neonsign._precision.choose_precision`)."""
    return choose_precision(bf16, batch_size, threads).precision


#: glibc's mallopt parameters (malloc.h) and the values :func:`keep_freed_memory` sets: blocks
#: up to 32 MiB (glibc's own ceiling for its adaptive threshold) come from the heap, and up to
#: 256 MiB of free memory at the heap's top stays in the process.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 << 20, 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a training step frees for the next step; True when set.

    Every step allocates and frees the same few-MB tensors (conv1's 64 x 32 x 30 x 30 output,
    the pooling indices and gradients). glibc serves such blocks with fresh ``mmap`` calls, or
    returns the top of its heap to the kernel when they are freed, so each step page-faults
    its working set back in: about 4,000 minor faults and a third of a bf16 step on a 2-core
    AVX-512 machine. Raising the mmap and trim thresholds (``mallopt``) keeps those blocks in
    the heap, where the next step reuses them: no faults, and the numbers computed are the
    same. Process-wide and for the rest of the process (glibc cannot restore its adaptive
    thresholds), set once by :func:`fit`; a no-op returning False off glibc (musl, macOS,
    Windows), where the allocators behave differently.
    """
    try:  # "glibc 2.36" on glibc; unknown elsewhere
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    if not libc.startswith("glibc"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok: bool = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
    trim_ok: bool = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1
    return mmap_ok and trim_ok


def to_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W): (x / 255 - mean) / std."""
    x = images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


@dataclass(frozen=True)
class _Draw:
    """One batch's random augmentation: the affine map ``theta`` (B, 2, 3) from output to
    input coordinates in [-1, 1] (``affine_grid``'s convention) and the brightness and
    contrast factors (B, 1, 1, 1)."""

    theta: torch.Tensor
    bright: torch.Tensor
    contrast: torch.Tensor


def _draw(b: int, gen: torch.Generator, cfg: TrainConfig) -> _Draw:
    """Rotation uniform in +-``cfg.rotation`` degrees, scale in ``cfg.scale``, translation
    +-``cfg.translate`` of the image size, brightness factor 1 +- ``cfg.brightness``, contrast
    factor 1 +- ``cfg.contrast`` around each image's mean, drawn only from ``gen``."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    angle = uniform(-cfg.rotation, cfg.rotation) * (math.pi / 180.0)
    scale = uniform(cfg.scale[0], cfg.scale[1])
    # the map works in [-1, 1] coordinates: a translation t of the image size is 2t there
    tx = uniform(-cfg.translate, cfg.translate) * 2.0
    ty = uniform(-cfg.translate, cfg.translate) * 2.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )
    bright = uniform(1.0 - cfg.brightness, 1.0 + cfg.brightness).view(b, 1, 1, 1)
    contrast = uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(b, 1, 1, 1)
    return _Draw(theta, bright, contrast)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int) -> torch.Tensor:
    """(h * w, 3) rows (x, y, 1) of the pixel centres in [-1, 1] (``align_corners=False``)."""
    xs = (torch.arange(w, dtype=torch.float32) * 2.0 + 1.0).div_(w).sub_(1.0)
    ys = (torch.arange(h, dtype=torch.float32) * 2.0 + 1.0).div_(h).sub_(1.0)
    rows = [xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w)]
    return torch.stack(rows, dim=-1).view(h * w, 3)


def _grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, h, w), align_corners=False)``: the same sampling grid
    (B, h, w, 2), as one (h*w, 3) x (3, 2B) matrix product instead of affine_grid's batched
    product with K=3, which costs more than the resampling itself at 32x32 on one thread."""
    b = theta.shape[0]
    grid = torch.mm(_base_grid(h, w), theta.reshape(2 * b, 3).t())  # (h*w, 2B)
    return grid.view(h, w, b, 2).permute(2, 0, 1, 3).contiguous()


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of (B, C, H, W) through the affine maps ``theta`` (border padding)."""
    grid = _grid(theta, x.shape[2], x.shape[3])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: torch.Tensor, gen: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    """Random affine + brightness/contrast jitter on float32 (B, 3, H, W) images in [0, 1].

    The reference form of the training augmentation (see :func:`_draw` for the ranges); the
    training loop runs the same transform fused with the conversion and normalisation
    (:func:`prepare_batch`). Draws only from ``gen``.
    """
    d = _draw(x.shape[0], gen, cfg)
    x = _resample(x, d.theta)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * d.contrast + mean * d.bright
    return x.clamp_(0.0, 1.0)


def prepare_batch(
    u8: torch.Tensor,
    gen: torch.Generator,
    cfg: TrainConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """The network's input for a uint8 (B, H, W, 3) batch: normalised float32 (B, 3, H, W)
    channels_last, augmented when ``cfg.augment``.

    Equal (to float rounding) to ``(augment_batch(u8 / 255) - mean) / std`` made channels_last
    (:func:`_prepare_batch_torch`, the PyTorch form kept as its reference). The random draws
    are :func:`_draw`'s; the resampling (``affine_grid`` + ``grid_sample``, bilinear, border),
    the per-image mean, the jitter and clamp and the normalisation run in one C pass on this
    thread (``_native.augment``, GIL released), writing NHWC float32, which is the
    channels_last layout of the NCHW tensor returned: 2-3x faster than the PyTorch ops
    (docs/training.md, issue 18).
    """
    if not cfg.augment:
        return _prepare_batch_torch(u8, gen, cfg, mean, std)
    d = _draw(u8.shape[0], gen, cfg)
    out = _native.augment(
        u8.contiguous().numpy(),
        d.theta.numpy(),
        d.bright.reshape(-1).numpy(),
        d.contrast.reshape(-1).numpy(),
        mean.tolist(),
        std.tolist(),
    )
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _prepare_batch_torch(
    u8: torch.Tensor,
    gen: torch.Generator,
    cfg: TrainConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """:func:`prepare_batch` in PyTorch ops (its reference, and its path without augmentation).

    In fewer passes than :func:`augment_batch` then a normalisation: resampled once in 0..255,
    the jitter and the 1/255 one per-image multiply-add, the clamp, then the normalisation
    written straight into a channels_last tensor (no separate conversion, division or layout
    copy).
    """
    m, s = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    out = torch.empty(u8.shape[0], u8.shape[3], u8.shape[1], u8.shape[2])
    out = out.contiguous(memory_format=torch.channels_last)
    if not cfg.augment:  # the uint8 NHWC batch is a channels_last view: no transpose
        return torch.addcmul(-m / s, u8.permute(0, 3, 1, 2), 1.0 / (255.0 * s), out=out)
    d = _draw(u8.shape[0], gen, cfg)
    # grid_sample is faster on contiguous NCHW input; it resamples 0..255 (no /255 pass)
    y = _resample(u8.permute(0, 3, 1, 2).contiguous().to(torch.float32), d.theta)
    mu = y.mean(dim=(1, 2, 3), keepdim=True)
    # ((y - mu) * c + mu * b) / 255 = y * c / 255 + mu * (b - c) / 255, clamped to [0, 1]
    y = torch.addcmul(mu * ((d.bright - d.contrast) / 255.0), y, d.contrast / 255.0).clamp_(0, 1)
    return torch.addcmul(-m / s, y, 1.0 / s, out=out)  # normalised, written channels_last


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits float32 (N, 43) for normalised float32 (N, 3, H, W), in eval mode, batched."""
    model.eval()
    outs = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, NUM_CLASSES)


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shard(perm: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """DistributedSampler-style shard: pad to a multiple of world by wrapping, take every world-th."""
    if world == 1:
        return perm
    per_rank = -(-perm.numel() // world)
    total = per_rank * world
    if total > perm.numel():
        reps = -(-total // perm.numel())
        perm = perm.repeat(reps)[:total]
    return perm[rank:total:world]


def _validate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int, world: int
) -> tuple[float, list[float | None]]:
    """Top-1 accuracy and per-class accuracy on (x, y), sharded over ranks and summed."""
    xs, ys = x[rank::world], y[rank::world]
    pred = (
        predict_logits(model, xs).argmax(dim=1)
        if xs.shape[0]
        else torch.empty(0, dtype=torch.int64)
    )
    counts = torch.zeros(2, NUM_CLASSES, dtype=torch.float64)
    counts[0].index_add_(0, ys, (pred == ys).to(torch.float64))
    counts[1].index_add_(0, ys, torch.ones_like(ys, dtype=torch.float64))
    if world > 1:
        dist.all_reduce(counts)
    correct, total = counts[0], counts[1]
    acc = float(correct.sum() / total.sum()) if total.sum() > 0 else 0.0
    per_class = [
        float(c / t) if t > 0 else None
        for c, t in zip(correct.tolist(), total.tolist(), strict=False)
    ]
    return acc, per_class


@dataclass
class _Data:
    """The training arrays as tensors: views of the images uint8 (V, N, H, W, 3) of which the
    first ``train_views`` are trained on, int64 targets, the training indices, and the
    normalised validation set of each validated framing (name -> (M, 3, H, W))."""

    images: torch.Tensor
    train_views: int
    view_weights: torch.Tensor | None  # float64 (train_views,), None: uniform
    targets: torch.Tensor
    train_idx: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    x_val: dict[str, torch.Tensor]
    y_val: torch.Tensor


def _tensors(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer[Any]],
    train_idx: npt.NDArray[np.integer[Any]],
    val_idx: npt.NDArray[np.integer[Any]],
    cfg: TrainConfig,
    framing: Framing,
) -> _Data:
    data = torch.from_numpy(np.ascontiguousarray(images))
    if data.ndim == 4:  # one view
        data = data.unsqueeze(0)
    targets = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    tr = torch.from_numpy(np.asarray(train_idx, dtype=np.int64))
    va = torch.from_numpy(np.asarray(val_idx, dtype=np.int64))
    if tr.numel() == 0:
        raise NeonsignValueError("training set is empty (no indices in train_idx)")
    if not 1 <= framing.train_views <= data.shape[0]:
        raise NeonsignValueError(
            f"train_views must lie in [1, {data.shape[0]}], got {framing.train_views}"
        )
    mean = torch.tensor(cfg.mean, dtype=torch.float32)
    std = torch.tensor(cfg.std, dtype=torch.float32)
    x_val = {name: to_float(data[view, va], mean, std) for name, view in framing.val_views.items()}
    weights = _view_weights(framing)
    return _Data(data, framing.train_views, weights, targets, tr, mean, std, x_val, targets[va])


def _view_weights(framing: Framing) -> torch.Tensor | None:
    """The view-drawing weights as a tensor (None when uniform: the plain ``randint`` draw)."""
    w = framing.view_weights
    if w is None or len(set(w)) == 1:
        return None
    if len(w) != framing.train_views or min(w) < 0 or sum(w) <= 0:
        raise NeonsignValueError(
            f"view_weights must be {framing.train_views} non-negative numbers, not all 0: {w}"
        )
    return torch.tensor(w, dtype=torch.float64)


@dataclass
class _Optimisation:
    """The model being trained (``net`` wraps it in DDP when distributed) and what updates it."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.OneCycleLR
    criterion: nn.CrossEntropyLoss
    use_bf16: bool


def _agreed_precision(cfg: TrainConfig, world: int) -> PrecisionChoice:
    """The run's precision choice; in a distributed run every rank trains in bfloat16 only if
    every rank chose it (each may have measured on its own)."""
    choice = choose_precision(cfg.bf16, cfg.batch_size, cfg.threads)
    if world > 1:
        flag = torch.tensor([int(choice.precision == "bfloat16")])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if not flag.item() and choice.precision == "bfloat16":
            return PrecisionChoice("float32", "auto: another rank measured float32 faster")
    return choice


def _optimisation(cfg: TrainConfig, world: int, total_steps: int, precision: str) -> _Optimisation:
    """A fresh TrafficSignNet (initialised from torch's global RNG), AdamW, the one-cycle
    schedule over ``total_steps`` and the label-smoothed loss."""
    # channels_last: oneDNN's convolutions train about 1.3x faster in NHWC on CPU
    # TrafficSignNet with the fused C pooling + ReLU (+ dropout) in training mode
    net_module = FusedTrafficSignNet(dropout=cfg.dropout)
    model: nn.Module = net_module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits memory_format
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    # fused: one kernel for all parameters' AdamW update (CPU-fused since torch 2.4)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
    )
    # OneCycleLR divides by (pct_start * total_steps - 1): an exactly-one-step warm-up (e.g. 5
    # steps at 0.2) would divide by zero, so nudge it by a negligible amount.
    pct_start = cfg.warmup_fraction
    if pct_start * total_steps == 1.0:
        pct_start *= 1.0 + 1e-6
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr,
        total_steps=total_steps,
        pct_start=pct_start,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # bf16 autocast: convolutions and linears run in bfloat16 (oneDNN's AVX512_BF16/AMX or Arm
    # BF16 kernels), weights, optimizer state and the loss stay float32; about 2x per step here.
    return _Optimisation(model, net, optimizer, scheduler, criterion, precision == "bfloat16")


#: The phases of a training step that :class:`PhaseClock` times (``benchmarks/train.py``'s
#: split): gathering the batch from the uint8 views, preparing it (float conversion,
#: augmentation, normalisation, channels_last), forward + loss, backward, the optimizer and
#: scheduler step, and the loop's bookkeeping (running loss/accuracy, progress bar).
PHASES = ("gather", "augment", "forward", "backward", "optimizer", "other")


class PhaseClock:
    """Seconds spent in each phase of the training steps (:data:`PHASES`), summed over steps.

    Passed to :func:`fit` by the training benchmark; the loop calls :meth:`lap` at each phase's
    end (the CPU runs torch's ops synchronously, so wall time between laps is the phase's)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self._last = time.perf_counter()

    def start(self) -> None:
        """Begin timing a stretch of steps (time before this counts in no phase)."""
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap to ``phase``."""
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now
        if phase == PHASES[-1]:
            self.steps += 1

    def per_step_ms(self) -> dict[str, float]:
        """Mean milliseconds per step in each phase."""
        return {k: v * 1e3 / max(self.steps, 1) for k, v in self.seconds.items()}


def _no_lap(phase: str) -> None:
    """The lap of an untimed run."""


def _gather(data: _Data, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 (B, H, W, 3) images of the training indices ``batch``, each sample from one
    training view drawn from ``gen``, uniformly or by ``data.view_weights`` (the only view when
    there is one)."""
    if data.view_weights is not None:
        view = torch.multinomial(data.view_weights, batch.numel(), replacement=True, generator=gen)
        return data.images[view, batch]
    if data.train_views > 1:
        view = torch.randint(data.train_views, (batch.numel(),), generator=gen)
        return data.images[view, batch]
    return data.images[0, batch]


def _train_epoch(
    opt: _Optimisation,
    data: _Data,
    shard: torch.Tensor,
    cfg: TrainConfig,
    aug_gen: torch.Generator,
    bar: tqdm[Any] | None,
    clock: PhaseClock | None = None,
) -> tuple[float, float]:
    """One pass over ``shard`` (training indices) in batches: (mean loss, accuracy)."""
    opt.net.train()
    # running sums stay tensors: no Python conversion per step
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    seen = 0
    lap = _no_lap if clock is None else clock.lap
    if clock is not None:
        clock.start()
    for batch in torch.split(shard, cfg.batch_size):
        u8 = _gather(data, batch, aug_gen)
        y = data.targets[batch]
        lap("gather")
        x = prepare_batch(u8, aug_gen, cfg, data.mean, data.std)
        lap("augment")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=opt.use_bf16):
            logits = opt.net(x)
            loss = opt.criterion(logits, y)
        lap("forward")
        loss.backward()
        lap("backward")
        opt.optimizer.step()
        opt.scheduler.step()
        opt.optimizer.zero_grad(set_to_none=True)  # the next backward allocates fresh grads
        lap("optimizer")
        loss_sum += loss.detach() * y.numel()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += y.numel()
        if bar is not None:
            bar.update(1)
        lap("other")
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)


def _progress_bar(total: int, show: bool) -> tqdm[Any] | None:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", desc="train", dynamic_ncols=True)


def _validate_framings(
    model: nn.Module, data: _Data, rank: int, world: int, primary: str
) -> tuple[dict[str, float], list[float | None]]:
    """Validation accuracy per framing, and the per-class accuracy of the ``primary`` one."""
    accs: dict[str, float] = {}
    per_class: list[float | None] = []
    for name, x in data.x_val.items():
        accs[name], classes = _validate(model, x, data.y_val, rank, world)
        if name == primary:
            per_class = classes
    return accs, per_class


def fit(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer[Any]],
    train_idx: npt.NDArray[np.integer[Any]],
    val_idx: npt.NDArray[np.integer[Any]],
    cfg: TrainConfig,
    *,
    framing: Framing | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    clock: PhaseClock | None = None,
) -> FitResult:
    """Train TrafficSignNet on ``images[train_idx]``, validating on ``images[val_idx]`` per epoch.

    images: uint8 (N, H, W, 3), or views of them (V, N, H, W, 3) as ``framing`` describes
    (default: one view, validated as the ROI framing); labels: int64 (N,) in [0, 43). ``cfg``
    is a :class:`neonsign.train.TrainConfig`. Returns the weights of the epoch with the best
    validation accuracy (the last epoch when there is no validation set). Same seed, same data
    and same thread count give identical weights. ``clock`` (a :class:`PhaseClock`) is
    charged with the time of every training step's phases.
    """
    rank, world = _rank_world()
    keep_freed_memory()  # no page faults per step (before the precision is measured)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)  # same on every rank
    aug_gen = torch.Generator().manual_seed(cfg.seed * 1009 + 17 + rank)  # per rank
    framing = framing or Framing()
    data = _tensors(images, labels, train_idx, val_idx, cfg, framing)
    tr = data.train_idx
    steps_per_epoch = -(-_shard(tr, rank, world).numel() // cfg.batch_size)
    choice = _agreed_precision(cfg, world)
    precision = choice.precision
    opt = _optimisation(cfg, world, cfg.epochs * steps_per_epoch, precision)
    bar = _progress_bar(cfg.epochs * steps_per_epoch, progress and rank == 0)
    result = FitResult(state_dict={}, precision=precision, precision_choice=choice.record())
    best_acc = -1.0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        shard = _shard(tr[torch.randperm(tr.numel(), generator=shuffle_gen)], rank, world)
        loss, accuracy = _train_epoch(opt, data, shard, cfg, aug_gen, bar, clock)
        accs, per_class = (
            _validate_framings(opt.model, data, rank, world, framing.primary)
            if data.y_val.numel()
            else ({}, [])
        )
        val_acc = accs.get(framing.primary)
        record: EpochRecord = {
            "epoch": epoch,
            "train_loss": loss,
            "train_accuracy": accuracy,
            "val_accuracy": val_acc,
            "val_framings": accs,
            "lr": float(opt.scheduler.get_last_lr()[0]),
            "seconds": time.perf_counter() - t0,
        }
        result.history.append(record)
        if bar is not None:
            bar.set_postfix(
                {"epoch": epoch, "loss": f"{loss:.3f}"}
                | {f"val_{k}": f"{v:.4f}" for k, v in accs.items()}
            )
        score = _score(accs, val_acc, framing.select_on_mean, epoch)
        if score > best_acc:
            best_acc = score
            _keep_best(result, opt.model, epoch, val_acc, per_class)
            result.val_framings = dict(accs)
        if on_epoch is not None and rank == 0:
            on_epoch(record)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result


def _score(accs: dict[str, float], primary: float | None, on_mean: bool, epoch: int) -> float:
    """The number the best epoch maximises: the mean over framings or the primary framing's
    validation accuracy; the epoch itself without validation (the last epoch wins)."""
    if not accs:
        return float(epoch)
    if on_mean:
        return sum(accs.values()) / len(accs)
    return primary if primary is not None else float(epoch)


def _keep_best(
    result: FitResult,
    model: nn.Module,
    epoch: int,
    val_acc: float | None,
    per_class: list[float | None],
) -> None:
    """Record ``model``'s current weights (copied) as the best so far."""
    result.state_dict = {
        k: v.detach().clone(memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }
    result.best_epoch = epoch
    result.val_accuracy = val_acc
    result.per_class_accuracy = per_class
