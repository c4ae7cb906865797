"""The native TrafficSignNet inference engine (C, NEON / AVX2 / AVX-512 / scalar reference).

The model (the learning path's ``TrafficSignNet``)::

    conv1 3->32 3x3 -> ReLU -> max_pool2d(2)     (N,3,32,32) -> (N,32,15,15)
    conv2 32->64 3x3 -> ReLU -> max_pool2d(2)    -> (N,64,6,6)
    flatten (2304) -> fc1 2304->128 -> ReLU -> fc2 128->43 logits

Weights are PyTorch state_dict arrays (float32); they are copied and packed once for the
chosen kernel. Inputs are float32 NCHW batches as :mod:`neonsign.data` produces them
(normalised with mean 0.5 / std 0.5). Importing this module does not import PyTorch.

Example::

    from neonsign.engine import Engine
    eng = Engine.from_file("runs/model")          # dir with model.safetensors, or a .pth
    logits = eng.predict(images)                  # (N,43) float32
    classes, probs = eng.classify(images)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from . import _native
from ._math import softmax
from .artifacts import CARD_FILE, WEIGHTS_FILE, load_model, read_weights_file, validate_state_dict
from .errors import ModelError, NeonsignFileNotFoundError, NeonsignValueError

__all__ = [
    "Engine",
    "INPUT_SHAPE",
    "LAYERS",
    "NUM_CLASSES",
    "WEIGHT_SHAPES",
    "available_int8_kernels",
    "available_kernels",
]

#: Expected state_dict entries and their shapes, in the engine's order (from the C engine).
WEIGHT_SHAPES: dict[str, tuple[int, ...]] = dict(_native.WEIGHT_SHAPES)

#: Layer names of the per-layer timers, in execution order. With the SIMD kernels, relu1 and
#: pool1 are fused into conv1, relu2 and pool2 into conv2, relu3 into fc1, and flatten is free
#: (fc1's weights are permuted at load): those report 0 ns and only count calls.
LAYERS: tuple[str, ...] = _native.LAYER_NAMES

#: One image: (channels, height, width).
INPUT_SHAPE: tuple[int, int, int] = _native.INPUT_SHAPE

#: Logits per image.
NUM_CLASSES: int = _native.NUM_CLASSES


class TorchModule(Protocol):
    """What :meth:`Engine.from_torch` needs of a ``torch.nn.Module``."""

    def state_dict(self) -> Mapping[str, Any]: ...


def _probe_batch() -> npt.NDArray[np.float32]:
    """The fixed batch a model is tried on before it is accepted: a blank image plus three
    that spread evenly over the range of normalised pixels (-2..2, a golden-ratio sequence:
    no two neighbours alike), the same on every call so a refusal can be reproduced. (No
    ``numpy.random``: a server process need not load it.)"""
    n = 3 * int(np.prod(INPUT_SHAPE))
    spread = (np.arange(1, n + 1) * 0.6180339887498949) % 1.0 * 4.0 - 2.0
    return np.concatenate([np.zeros(n // 3), spread]).reshape(4, *INPUT_SHAPE).astype(np.float32)


def available_kernels() -> list[str]:
    """Kernels compiled into this build and supported by this CPU, e.g. ``['ref', 'avx2',
    'avx512']`` on x86-64 or ``['ref', 'neon']`` on AArch64."""
    return _native.available_kernels()


def available_int8_kernels() -> list[str]:
    """int8 kernels usable here, e.g. ``['ref', 'avx512vnni']`` or ``['ref', 'dotprod', 'i8mm']``
    (see docs/int8.md)."""
    return _native.available_int8_kernels()


class Engine:
    """TrafficSignNet inference on the native C engine.

    Build one with :meth:`from_file`, :meth:`from_state_dict` or :meth:`from_torch`.
    Thread-safe: calls from several Python threads run one after another on the shared pool
    (the GIL is released while they run).

    Args:
        state_dict: mapping of the eight TrafficSignNet tensors (see :data:`WEIGHT_SHAPES`).
        kernel: ``"ref"``, ``"neon"``, ``"avx2"``, ``"avx512"``, ``"auto"`` or None (the
            ``NEONSIGN_KERNEL`` environment variable if set, else the best available).
        threads: maximum threads per call (None: the whole shared pool, see
            :func:`neonsign.set_threads`).
        quantization: a model card's ``quantization`` section (:mod:`neonsign.quantize`): run
            the model in int8 (``kernel`` then names an int8 kernel, see
            :func:`available_int8_kernels`). None: float32.
    """

    def __init__(
        self,
        state_dict: Mapping[str, Any],
        kernel: str | None = None,
        threads: int | None = None,
        quantization: Mapping[str, Any] | None = None,
    ) -> None:
        weights = validate_state_dict(state_dict, "state_dict")
        self._weights = {name: weights[name] for name in WEIGHT_SHAPES}
        self._net: _native.Net | _native.QNet
        if quantization:
            from .quantize import engine_params

            self._net = _native.QNet(engine_params(self._weights, quantization), kernel=kernel)
        else:
            self._net = _native.Net(self._weights, kernel=kernel)
        self._precision = "int8" if quantization else "fp32"
        self._threads: int | None = None
        self.threads = threads

    # ---- constructors -----------------------------------------------------------------------
    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        kernel: str | None = None,
        threads: int | None = None,
        quantization: Mapping[str, Any] | None = None,
    ) -> Engine:
        """From a mapping of NumPy arrays or torch tensors with the TrafficSignNet keys (int8
        with a card's ``quantization`` section)."""
        return cls(state_dict, kernel=kernel, threads=threads, quantization=quantization)

    @classmethod
    def from_torch(
        cls, module: TorchModule, kernel: str | None = None, threads: int | None = None
    ) -> Engine:
        """From a ``torch.nn.Module`` with TrafficSignNet's parameters (uses its state_dict)."""
        if not hasattr(module, "state_dict"):
            raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
        return cls(module.state_dict(), kernel=kernel, threads=threads)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], kernel: str | None = None, threads: int | None = None
    ) -> Engine:
        """From a model directory, a ``.safetensors`` file, or a learning-path ``.pth``
        state_dict (needs PyTorch; loaded with ``weights_only=True``).

        A directory with a ``model_card.json`` is read by :func:`neonsign.artifacts.load_model`:
        the weights file is read once, its sha256 checked against the card and the tensors
        parsed from the same bytes, so a tampered (or concurrently replaced) weights file is
        refused with :class:`ModelError`; a quantized directory (``neonsign quantize``) runs in
        int8. A directory holding only ``model.safetensors`` and a bare file are read once too,
        without a card to check against.
        """
        p = Path(path)
        if p.is_dir():
            if (p / CARD_FILE).exists():
                weights, card = load_model(p, check_logits=False)
                q = card.get("quantization")
                quantization = q if isinstance(q, Mapping) and q else None
                return cls._built(weights, str(p / WEIGHTS_FILE), kernel, threads, quantization)
            cand = p / WEIGHTS_FILE
            if not cand.is_file():
                raise ModelError(f"model directory {p} has no {WEIGHTS_FILE}")
            p = cand
        if not p.exists():
            raise NeonsignFileNotFoundError(f"model file not found: {p}", errno.ENOENT, str(p))
        sd = read_weights_file(p)  # raises ModelError naming the file for unknown or bad files
        return cls._built(sd, str(p), kernel, threads)

    @classmethod
    def _built(
        cls,
        sd: Mapping[str, Any],
        source: str,
        kernel: str | None,
        threads: int | None,
        quantization: Mapping[str, Any] | None = None,
    ) -> Engine:
        """An engine of ``sd`` (int8 with ``quantization``) tried on the probe batch; errors
        name ``source``."""
        try:
            engine = cls(sd, kernel=kernel, threads=threads, quantization=quantization)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from exc
        engine.warm_up(source)
        return engine

    # ---- properties -------------------------------------------------------------------------
    @staticmethod
    def available_kernels() -> list[str]:
        """Kernels usable on this machine (see :func:`available_kernels`)."""
        return available_kernels()

    @property
    def kernel(self) -> str:
        """The kernel in use (``"ref"``, ``"neon"``, ``"avx2"`` or ``"avx512"``). Setting it
        repacks the weights; an unavailable kernel raises :class:`~neonsign.errors.UnsupportedError`."""
        return self._net.kernel

    @kernel.setter
    def kernel(self, name: str | None) -> None:
        self._net.set_kernel(name)

    @property
    def precision(self) -> str:
        """``"fp32"``, or ``"int8"`` for a quantized model (:mod:`neonsign.quantize`)."""
        return self._precision

    @property
    def tile(self) -> str:
        """The register tile of the kernel in use: ISA and MR x NR (``"avx512_12x32"``,
        ``"neon_4x16"``; ``"scalar"`` for ``ref``)."""
        return self._net.tile

    @property
    def layer_kernels(self) -> dict[str, str | None]:
        """``{layer: C function}`` for :data:`LAYERS`, as chosen when the weights were packed
        for the layer's strides (``"ns_conv_pool_avx512_12x32_as3"``); None for a layer fused
        into the one before it."""
        return self._net.layer_kernels

    @property
    def threads(self) -> int | None:
        """Maximum threads a call uses (None: the whole shared pool)."""
        return self._threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise NeonsignValueError(f"threads must be a positive int or None, got {n!r}")
            n = int(n)
        self._threads = n

    @property
    def state_dict(self) -> dict[str, npt.NDArray[np.float32]]:
        """The float32 weights this engine was built from (copies)."""
        return {k: v.copy() for k, v in self._weights.items()}

    # ---- inference --------------------------------------------------------------------------
    def _batch(self, x: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], bool]:
        arr = np.asarray(x)
        if arr.dtype != np.float32:
            if arr.dtype.kind != "f":
                raise NeonsignValueError(
                    f"input must be a float32 array (normalised images), got dtype {arr.dtype}"
                )
            arr = arr.astype(np.float32)
        single = arr.ndim == 3
        if single:
            arr = arr[None]
        c, h, w = INPUT_SHAPE
        if arr.ndim != 4 or arr.shape[1:] != INPUT_SHAPE or arr.shape[0] < 1:
            raise NeonsignValueError(
                f"input must have shape (N, {c}, {h}, {w}) with N >= 1 or ({c}, {h}, {w}), got {np.shape(x)}"
            )
        return np.ascontiguousarray(arr), single

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Logits for a batch.

        Args:
            x: float32 (N, 3, 32, 32) NCHW images (or one (3, 32, 32) image), normalised like
               the training data. Other float dtypes are converted.
        Returns:
            float32 (N, 43) logits ((43,) for a single image).
        """
        arr, single = self._batch(x)
        out = self._net.forward(arr, self._threads)
        return out[0] if single else out

    def classify(
        self, x: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64] | np.int64, npt.NDArray[np.float32] | np.float32]:
        """Top-1 class and its softmax probability.

        Args:
            x: as for :meth:`predict`.
        Returns:
            (classes int64 (N,), probabilities float32 (N,)); NumPy scalars (np.int64,
            np.float32) for a single (3, 32, 32) image.
        """
        logits = np.atleast_2d(self.predict(x))
        classes = np.argmax(logits, axis=1).astype(np.int64)
        probs = softmax(logits)[np.arange(len(classes)), classes]
        if np.ndim(x) == 3:
            return classes[0], probs[0]
        return classes, probs

    __call__ = predict

    def warm_up(self, source: str = "model") -> None:
        """Run the fixed probe batch (:func:`_probe_batch`) once (packs caches, pages the weights in) and
        refuse a model whose logits are not finite.

        Finite weights can still overflow float32 on the way (weights scaled by 1e38, say):
        such a model would answer every request with a NaN probability. Raises
        :class:`ModelError` naming ``source`` and the first bad class.
        """
        logits = self.predict(_probe_batch())
        bad = ~np.isfinite(logits)
        if bad.any():
            image, cls = (int(i) for i in np.argwhere(bad)[0])
            raise ModelError(
                f"{source}: the model's logits are not finite on the warm-up probe batch "
                f"(image {image}, class {cls}: {logits[image, cls]}): the weights overflow "
                "float32; refusing to load it"
            )

    # ---- timers -----------------------------------------------------------------------------
    def enable_timers(self, on: bool = True) -> None:
        """Turn the per-layer timers on or off (off by default; off costs one branch)."""
        self._net.enable_timers(bool(on))

    def timers(self) -> dict[str, tuple[int, int]]:
        """Accumulated ``{layer: (nanoseconds, calls)}`` for the layers in :data:`LAYERS`."""
        raw = self._net.timers()
        return {name: raw[name] for name in LAYERS}

    def reset_timers(self) -> None:
        """Zero the timers."""
        self._net.reset_timers()

    def __repr__(self) -> str:
        return f"Engine(kernel={self.kernel!r}, threads={self._threads!r}, precision={self._precision!r})"
