"""The inference backends, defined once: names, availability, and how libtorch is toggled.

Used by ``neonsign test --backend`` (:mod:`neonsign.evaluate`) and by the profiler
(:mod:`neonsign.profiler`), so a backend name means the same settings everywhere.

Backends
    ``native`` (the C engine, kernel chosen for this CPU) and ``native-<kernel>`` for each kernel
    (``ref``, ``neon``, ``avx2``, ``avx512``); libtorch: ``torch`` (default: oneDNN, which uses
    Arm Compute Library on AArch64 builds), ``torch-onednn-off``
    (``torch.backends.mkldnn.flags(enabled=False)``: OpenBLAS / NNPACK / native aten kernels),
    ``torch-channels-last`` (NHWC input and conv weights) and ``torch-bf16`` (CPU autocast to
    bfloat16, only where the CPU has bf16 instructions).

Importing this module does not import torch (the kernel names come from the native extension,
which ``import neonsign`` loads anyway).

Cores are not stolen between backends
    libtorch's OpenMP runtime (libgomp) keeps its idle worker threads spinning for a while after
    every parallel region, and ONNX Runtime's thread pools spin by default: a backend timed right
    after them finds its second core busy. :func:`prefer_passive_openmp` (called by the
    ``neonsign main`` and ``neonsign profile`` commands before anything loads torch) sets
    ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; libgomp reads it once, when
    torch loads. :func:`openmp_wait_policy` says which policy is in effect;
    :func:`ort_session_options` makes ONNX Runtime sessions whose threads do not spin.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _native

__all__ = [
    "BACKEND_NAMES",
    "NATIVE_KERNELS",
    "TORCH_BACKENDS",
    "Backend",
    "TorchToggles",
    "cpuinfo",
    "list_backends",
    "openmp_wait_policy",
    "ort_session_options",
    "prefer_passive_openmp",
    "resolve",
]

#: The environment variable libgomp reads (once, when libtorch loads) for its idle threads.
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"

# Set by prefer_passive_openmp when torch was already loaded (the setting came too late).
_late: list[bool] = []

#: Kernels of the native engine, each a ``native-<kernel>`` backend (whether built here or not).
NATIVE_KERNELS: tuple[str, ...] = _native.KERNELS

#: libtorch backends and what each one is.
TORCH_BACKENDS: dict[str, str] = {
    "torch": "libtorch default (oneDNN; Arm Compute Library on AArch64 builds)",
    "torch-onednn-off": "libtorch with oneDNN disabled (OpenBLAS / NNPACK / native aten kernels)",
    "torch-channels-last": "libtorch default with channels_last (NHWC) input and weights",
    "torch-bf16": "libtorch with CPU autocast to bfloat16",
}

#: Every backend name, native first (static: for command-line choices without probing).
BACKEND_NAMES: tuple[str, ...] = (
    "native",
    *(f"native-{k}" for k in NATIVE_KERNELS),
    *TORCH_BACKENDS,
)


@dataclass(frozen=True)
class Backend:
    """A backend: ``name`` (as on the command line), ``family`` ("native" or "torch"), what it is,
    whether it can run here and, if not, why."""

    name: str
    family: str
    description: str
    available: bool
    reason: str = ""


def cpuinfo() -> tuple[str, list[str]]:
    """(CPU model, sorted feature flags) from /proc/cpuinfo, or from platform as a fallback."""
    model = ""
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    implementer = part = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model") and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "cpu implementer" and not implementer:
            implementer = value
        elif key == "cpu part" and not part:
            part = value
    if not model and (implementer or part):
        model = f"Arm implementer {implementer} part {part}"
    return model or platform.processor() or platform.machine(), sorted(flags)


def _native_backends() -> list[Backend]:
    kernels = _native.available_kernels()
    out = [Backend("native", "native", "native C engine, kernel chosen for this CPU", True)]
    for k in NATIVE_KERNELS:
        ok = k in kernels
        out.append(
            Backend(
                f"native-{k}",
                "native",
                f"native C engine, {k} kernel",
                ok,
                "" if ok else f"this CPU or build has no {k} kernel",
            )
        )
    return out


def _torch_bf16_reason(torch: Any) -> str:
    """'' if torch-bf16 can run here, else why not."""
    _, flags = cpuinfo()
    if platform.machine().lower() in ("aarch64", "arm64"):
        has = "bf16" in flags
    else:
        has = bool({"avx512_bf16", "amx_bf16"} & set(flags))
        with contextlib.suppress(Exception):
            has = has or bool(torch.cpu._is_avx512_bf16_supported())
    if not has:
        return "the CPU has no bfloat16 instructions (cpuinfo flags avx512_bf16/amx_bf16/bf16)"
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch build has no oneDNN, which runs bfloat16 convolutions on CPU"
    return ""


def _torch_backends() -> list[Backend]:
    if importlib.util.find_spec("torch") is None:
        why = "PyTorch is not installed (pip install 'neonsign[torch]')"
        return [Backend(n, "torch", d, False, why) for n, d in TORCH_BACKENDS.items()]
    import torch  # noqa: PLC0415

    # torch.backends.mkldnn.is_available() carries no annotations in PyTorch's sources
    mkldnn = bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
    out = [Backend("torch", "torch", TORCH_BACKENDS["torch"], True)]
    out.append(
        Backend(
            "torch-onednn-off",
            "torch",
            TORCH_BACKENDS["torch-onednn-off"],
            mkldnn,
            "" if mkldnn else "this PyTorch build has no oneDNN to switch off",
        )
    )
    out.append(Backend("torch-channels-last", "torch", TORCH_BACKENDS["torch-channels-last"], True))
    why = _torch_bf16_reason(torch)
    out.append(Backend("torch-bf16", "torch", TORCH_BACKENDS["torch-bf16"], not why, why))
    return out


def list_backends(include_unavailable: bool = True) -> list[Backend]:
    """Every backend, with whether it runs on this machine and build (imports torch if installed)."""
    out = _native_backends() + _torch_backends()
    return out if include_unavailable else [b for b in out if b.available]


def resolve(name: str) -> Backend:
    """The available backend called ``name``; raises NeonsignValueError for an unknown name and
    UnsupportedError (saying why) for one that cannot run here."""
    from .errors import NeonsignValueError, UnsupportedError  # noqa: PLC0415

    if name not in BACKEND_NAMES:
        raise NeonsignValueError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    b = next(b for b in list_backends() if b.name == name)
    if not b.available:
        raise UnsupportedError(f"backend {name!r} is not available here: {b.reason}")
    return b


def prefer_passive_openmp(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Make libtorch's idle OpenMP workers sleep at once instead of spinning, if still possible.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless the user set
    a policy already (theirs is kept). libgomp reads the variable once, when ``import torch``
    loads it, so this only takes effect when torch is not loaded yet; the CLI calls it first.
    Returns True when idle libtorch threads will be passive.
    """
    env = os.environ if environ is None else environ
    if OMP_WAIT_POLICY in env:
        return env[OMP_WAIT_POLICY].strip().lower() == "passive"
    if "torch" in sys.modules:  # too late: libgomp has read its settings
        _late.append(True)
        return False
    env[OMP_WAIT_POLICY] = "PASSIVE"
    return True


def openmp_wait_policy() -> str:
    """How libtorch's idle OpenMP threads wait: ``"passive"`` (they sleep at once),
    ``"active"`` (they spin), or ``"default"`` (libgomp spins for a while, then sleeps) --
    from ``OMP_WAIT_POLICY``, or ``"default"`` when :func:`prefer_passive_openmp` came after
    torch had loaded."""
    value = os.environ.get(OMP_WAIT_POLICY, "").strip().lower()
    if _late or value not in ("passive", "active"):
        return "default"
    return value


def ort_session_options(threads: int) -> Any:
    """ONNX Runtime session options for timing beside other backends: ``threads`` intra-op
    threads, one inter-op thread, and no spinning (``session.intra_op.allow_spinning`` and
    ``session.inter_op.allow_spinning`` = 0), so idle ORT threads do not keep cores busy while
    another backend runs. Imports onnxruntime."""
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class TorchToggles:
    """How the libtorch backend ``name`` differs from PyTorch's defaults.

    ``memory_format`` for 4-D tensors (input, conv weights, or a module via :meth:`module`),
    :meth:`input` (float32 (N, 3, 32, 32) NumPy -> tensor in that format), :meth:`mode` (the
    context every forward pass runs in: inference mode, plus oneDNN off or bf16 autocast) and
    :meth:`settings` (JSON-ready description). Imports torch.
    """

    def __init__(self, name: str) -> None:
        if name not in TORCH_BACKENDS:
            from .errors import NeonsignValueError  # noqa: PLC0415

            raise NeonsignValueError(
                f"{name!r} is not a libtorch backend ({', '.join(TORCH_BACKENDS)})"
            )
        import torch  # noqa: PLC0415

        self.torch, self.name = torch, name
        self.memory_format = (
            torch.channels_last if name == "torch-channels-last" else torch.contiguous_format
        )

    def module(self, model: Any) -> Any:
        """``model`` converted to this backend's memory format (in place for nn.Module)."""
        return model.to(memory_format=self.memory_format)

    def input(self, x: Any) -> Any:
        """A NumPy float32 (N, 3, H, W) batch as a tensor in this backend's memory format."""
        return self.torch.from_numpy(x).contiguous(memory_format=self.memory_format)

    @contextlib.contextmanager
    def mode(self) -> Iterator[None]:
        """The backend's toggles, entered around every forward pass."""
        torch = self.torch
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            # mkldnn.flags() warns about TF32 on Intel GPUs on entry and exit: irrelevant on CPU
            warnings.filterwarnings("ignore", message=".*TF32.*", category=UserWarning)
            stack.enter_context(torch.inference_mode())
            if self.name == "torch-onednn-off":
                stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
            elif self.name == "torch-bf16":
                stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
            yield

    def settings(self, threads: int | None) -> dict[str, Any]:
        """The toggles as a JSON-ready dict."""
        return {
            "threads": threads,
            "mkldnn_enabled": self.name != "torch-onednn-off",
            "memory_format": "channels_last"
            if self.name == "torch-channels-last"
            else "contiguous",
            "autocast": "bfloat16" if self.name == "torch-bf16" else None,
            "cpu_capability": str(self.torch.backends.cpu.get_cpu_capability()),
            "omp_wait_policy": openmp_wait_policy(),
        }
