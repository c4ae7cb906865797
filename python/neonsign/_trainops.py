"""Fused training ops for TrafficSignNet (issue 18): 2x2 max-pooling + ReLU (+ dropout) as one C
kernel each way.

PyTorch's CPU ``max_pool2d`` on channels_last tensors, its int64 indices, the ReLU, the
backward's zero fill of the whole input gradient and fc1's dropout mask cost 2.3 of 14.9 ms
of a bfloat16 training step on the development machine (``benchmarks/train_step.py --kinds
after_torch_pool,after``); ``_native.pool2_relu`` / ``pool2_relu_backward``
(csrc/core/trainops.c) do each pooling in one memory-bound pass. The results are PyTorch's bit for bit (same maximum on ties,
-0.0 and NaN, same gradients; a NaN's payload aside: tests/test_trainops.py), so training with
them is the same computation, only faster.

:class:`FusedTrafficSignNet` is TrafficSignNet (same parameters, names and state_dict) whose
training-mode forward uses them; its eval-mode forward is TrafficSignNet's own, as every
export and backend sees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _native
from .model import TrafficSignNet

#: The element types the C kernels take (others fall back to PyTorch's ops).
_FUSED_DTYPES = (torch.float32, torch.bfloat16)

#: Which of ``_native.trainops_kernels()`` runs (None: the fastest this CPU has; the tests set
#: each in turn).
KERNEL: str | None = None


def _np(t: torch.Tensor) -> npt.NDArray[Any]:
    """A NumPy view of a contiguous tensor; bfloat16 as its uint16 bits."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _fusable(x: torch.Tensor) -> bool:
    """Whether the C kernel takes ``x``: a non-empty CPU float32/bfloat16 (N, C, H, W) tensor
    laid out channels_last, at least 2x2."""
    return (
        x.device.type == "cpu"
        and x.dtype in _FUSED_DTYPES
        and x.dim() == 4
        and x.numel() > 0
        and x.shape[2] >= 2
        and x.shape[3] >= 2
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``F.dropout(x, p)`` in training (survivors scaled by 1 / (1 - p), the rest zero): the
    mask is ``torch.rand >= p``, about 2x cheaper on CPU than ``F.dropout``'s ``bernoulli_``,
    which draws element by element."""
    if p == 0.0:
        return x
    mask = (torch.rand(x.shape) >= p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * mask


class _Pool2ReLU(torch.autograd.Function):
    """relu(max_pool2d(x, 2)) of a channels_last (N, C, H, W) tensor, into channels_last
    (N, C, H//2, W//2), or contiguous NCHW when ``nchw`` (ready to flatten for a linear layer);
    with ``p`` > 0 a fraction p of the outputs is dropped (zero, no gradient; unscaled)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, nchw: bool, p: float) -> torch.Tensor:
        n, c, h, w = x.shape
        oh, ow = h // 2, w // 2
        if nchw:
            y = torch.empty((n, c, oh, ow), dtype=x.dtype)
            y_view = y
        else:
            y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
            y_view = y.permute(0, 2, 3, 1)
        arg = torch.empty((n, oh, ow, c), dtype=torch.uint8)
        # the seed comes from torch's global RNG: a seeded run draws the same masks
        seed = int(torch.randint(0, 2**62, (1,)).item()) if p > 0.0 else 0
        _native.pool2_relu(
            _np(x.permute(0, 2, 3, 1)), _np(y_view), arg.numpy(), nchw, KERNEL, p, seed
        )
        ctx.save_for_backward(arg)
        ctx.shape, ctx.nchw, ctx.kernel = (n, c, h, w), nchw, KERNEL
        return y

    @staticmethod
    @once_differentiable  # the gradient's own gradient is not needed in training
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (arg,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        if ctx.nchw:
            gy = grad_y.contiguous()
        else:
            gy = grad_y.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        grad_x = torch.empty((n, c, h, w), dtype=grad_y.dtype, memory_format=torch.channels_last)
        _native.pool2_relu_backward(
            _np(gy), arg.numpy(), _np(grad_x.permute(0, 2, 3, 1)), ctx.nchw, ctx.kernel
        )
        return grad_x, None, None


def pool2_relu(x: torch.Tensor, nchw: bool = False, p: float = 0.0) -> torch.Tensor:
    """``F.relu(F.max_pool2d(x, 2))``, then dropout of rate ``p`` (the training law of
    ``F.dropout``), by the C kernels when ``x`` suits them (channels_last float32 or bfloat16
    on the CPU), else by PyTorch's ops; without dropout the same values and gradients bit for
    bit (NaN payloads aside). ``nchw``: return the result contiguous in NCHW order
    (``flatten(1)`` is then free)."""
    if _fusable(x):
        y: torch.Tensor = _Pool2ReLU.apply(x, nchw, p)  # type: ignore[no-untyped-call]
        if p == 0.0:
            return y
        # F.dropout's scale: 1 / (1 - p) rounded to the tensor's dtype, then the product
        return y * torch.tensor(1.0 / (1.0 - p), dtype=y.dtype)
    y = dropout(F.relu(F.max_pool2d(x, 2)), p)
    return y.contiguous() if nchw else y


class FusedTrafficSignNet(TrafficSignNet):
    """TrafficSignNet whose training forward pools and rectifies with :func:`pool2_relu` (and
    hands fc1 its NCHW-flattened input without a copy), with training-only dropout of rate
    ``dropout`` on the inputs of fc1 (fused into conv2's pooling) and fc2 (:func:`dropout`), a
    regulariser of the training run only. Same parameters and state_dict; in eval mode it is
    TrafficSignNet's forward, as every export and backend sees it."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        x = pool2_relu(self.conv1(x))
        x = pool2_relu(self.conv2(x), nchw=True, p=self.dropout).flatten(1)
        x = dropout(F.relu(self.fc1(x)), self.dropout)
        logits: torch.Tensor = self.fc2(x)
        return logits
