"""Per-layer profiling of TrafficSignNet on every backend, in one process, with one clock.

Backends
    ``native`` (the C engine, kernel chosen automatically) and ``native-<kernel>`` for every
    kernel this CPU runs (``ref``, ``neon``, ``avx2``, ``avx512``); libtorch toggled in process:
    ``torch`` (default: oneDNN, which uses Arm Compute Library on AArch64 builds),
    ``torch-onednn-off`` (``torch.backends.mkldnn.flags(enabled=False)``: OpenBLAS / NNPACK /
    native aten kernels), ``torch-channels-last`` and ``torch-bf16`` (autocast to bfloat16, only
    where the CPU has bf16 instructions). :func:`list_backends` says which exist here and why
    the others do not.

Timing
    Every backend is timed by the C span recorder (:class:`Recorder`, ``csrc/core/prof.c``):
    the monotonic nanosecond clock plus the CPU cycle counter. For libtorch backends the model
    runs layer by layer (conv1, relu1, pool1, conv2, relu2, pool2, flatten, fc1, relu3, fc2),
    each layer inside a span under a ``forward`` span. For the native engine the ``forward``
    span times ``Engine.predict`` and the engine's own per-layer timers (the same clock) are
    attached beneath it. A separate pass under ``torch.profiler`` only names the aten kernels
    that ran, so a toggle that changed nothing is visible. All backends get the same input,
    thread count and warm-up; repeats are interleaved across backends so drift on a shared
    machine hits them alike.

Backends do not steal cores from each other
    The default backend list runs the native backends first in each round, then libtorch's
    (names given explicitly run in the order given). libtorch's OpenMP workers
    would keep spinning after a libtorch pass and take the second core from the native pass
    that follows: with ``OMP_WAIT_POLICY=PASSIVE`` in effect (the ``neonsign main`` and
    ``neonsign profile`` commands set it before torch loads, see
    :func:`neonsign.backends.prefer_passive_openmp`) they sleep at once; without it, every
    native pass that follows a libtorch pass waits :data:`SETTLE_SECONDS` first (libgomp's
    default spin ends within milliseconds) and the report notes the policy.

Steps of :func:`profile`
    :meth:`ProfileRequest.create` validates the arguments; :func:`pool_threads` sets the thread
    count of the native pool (and libtorch) for the run and restores it after;
    :func:`build_runners` makes one runner per backend; :func:`schedule` orders the passes and
    :func:`run_schedule` runs them; :func:`backend_figures` turns one recorder's spans into
    statistics; :func:`assemble_report` builds the JSON-ready report.

Reports
    :func:`profile` returns a :class:`~neonsign.profile_report.ProfileReport` (tables in
    torch.profiler's ``key_averages`` shape, a summary with speedups, JSON with a versioned
    schema, Markdown, HTML in Jupyter); :func:`~neonsign.profile_report.compare` and the
    ``neonsign compare`` command compare two reports or two backends and gate on regressions.

PyTorch is imported only when a libtorch backend runs.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, cast

import numpy as np
import numpy.typing as npt

from . import __version__, _native
from .backends import Backend, TorchToggles, cpuinfo, list_backends, openmp_wait_policy
from .backends import resolve as resolve_backend
from .engine import INPUT_SHAPE, LAYERS, WEIGHT_SHAPES, Engine
from .errors import ModelError, NeonsignValueError, UnsupportedError, file_errors, require
from .profile_report import (
    SCHEMA_VERSION,
    AccuracyCheck,
    AtenKernel,
    BackendFigures,
    BackendReport,
    KernelInfo,
    LayerFigures,
    MachineInfo,
    ProfileReport,
    ReportData,
    ReportSettings,
    SpanStats,
    TotalFigures,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "LAYERS",
    "Backend",
    "ProfileRequest",
    "Recorder",
    "assemble_report",
    "backend_figures",
    "build_runners",
    "list_backends",
    "load_state_dict",
    "machine_info",
    "pool_threads",
    "profile",
    "random_state_dict",
    "run_schedule",
    "schedule",
]

#: The span enclosing one forward pass of a batch.
FORWARD = "forward"

#: The two pass orders of :func:`profile`.
ORDERS = ("interleaved", "sequential")

#: Pause before a native pass that follows a libtorch pass when libtorch's OpenMP workers are
#: not passive: longer than libgomp's default spin (``GOMP_SPINCOUNT`` 300,000 pauses).
SETTLE_SECONDS = 0.03

Float32Array = npt.NDArray[np.float32]


def _flop_per_image() -> int:
    """Floating-point operations (2 per multiply-add) of one TrafficSignNet forward pass."""
    c1o, c1i, k1, _ = WEIGHT_SHAPES["conv1.weight"]
    c2o, c2i, k2, _ = WEIGHT_SHAPES["conv2.weight"]
    side1 = INPUT_SHAPE[1] - k1 + 1  # 30
    side2 = side1 // 2 - k2 + 1  # 13
    macs = side1 * side1 * c1o * c1i * k1 * k1 + side2 * side2 * c2o * c2i * k2 * k2
    macs += int(np.prod(WEIGHT_SHAPES["fc1.weight"])) + int(np.prod(WEIGHT_SHAPES["fc2.weight"]))
    return 2 * macs


# ---------------------------------------------------------------------------------------------
# The native layer, typed here until neonsign/_native.pyi describes it (issue 12)

_C: Any = _native


def _cpu_count() -> int:
    """CPUs this process may run on (the default thread count)."""
    return int(_C.cpu_count())


def _native_threads() -> int:
    """The native pool's current thread count."""
    return int(_C.get_threads())


def _native_set_threads(threads: int) -> None:
    """Resize the native pool (a process-wide setting)."""
    _C.set_threads(threads)


# ---------------------------------------------------------------------------------------------
# Recorder


class Span(TypedDict):
    """One record of :meth:`Recorder.spans`."""

    name: str
    parent: int
    depth: int
    calls: int
    start_ns: int
    duration_ns: int
    self_ns: int
    cycles: int


class Recorder(_C.Recorder):  # type: ignore[misc]  # an Any base until _native.pyi (issue 12)
    """Nested named spans timed in C (monotonic ns clock and CPU cycle counter).

    ``with rec.span("conv1"): ...`` or ``rec.begin("conv1") ... rec.end("conv1")`` (names are
    str or :meth:`intern` ids; ``span``, ``begin`` and ``end`` are implemented in C); spans nest
    (each record knows its parent and depth). ``enable()`` / ``disable()`` switch recording (a
    disabled span costs one C call and an integer update), ``reset()`` drops the records and
    ``records()`` returns them as NumPy arrays (see :meth:`neonsign._native.Recorder.records`).

    The native engine's kernel is switched through the recorder: pass ``engine=`` (a
    :class:`neonsign.engine.Engine`) and set :attr:`kernel`. A recorder is not thread-safe.

    Args:
        capacity: records to preallocate (the buffer grows on demand).
        enabled: whether spans are recorded from the start.
        engine: the native engine whose kernel :attr:`kernel` reads and sets.
    """

    def __init__(
        self, capacity: int = 0, enabled: bool = True, engine: Engine | None = None
    ) -> None:
        super().__init__(capacity=capacity, enabled=enabled)
        self.engine = engine

    def enable(self) -> None:
        """Start recording spans."""
        self.enabled = True

    def disable(self) -> None:
        """Stop recording spans (open recorded spans still close at their end)."""
        self.enabled = False

    @property
    def kernel(self) -> str:
        """The attached native engine's kernel ("ref", "neon", "avx2", "avx512"); settable."""
        if self.engine is None:
            raise NeonsignValueError("this Recorder has no native engine attached (engine=None)")
        return str(self.engine.kernel)

    @kernel.setter
    def kernel(self, value: str) -> None:
        if self.engine is None:
            raise NeonsignValueError("this Recorder has no native engine attached (engine=None)")
        self.engine.kernel = value

    def spans(self) -> list[Span]:
        """The records as dicts (name, parent, depth, calls, start_ns, duration_ns, self_ns,
        cycles), in begin order; ``self_ns`` is the duration minus that of the children."""
        r = self.records()
        names = self.names()
        n = len(r["name"])
        child = np.zeros(n, dtype=np.int64)
        parent = r["parent"]
        has_parent = parent >= 0
        np.add.at(child, parent[has_parent], r["duration_ns"][has_parent].astype(np.int64))
        return [
            {
                "name": names[int(r["name"][i])],
                "parent": int(parent[i]),
                "depth": int(r["depth"][i]),
                "calls": int(r["calls"][i]),
                "start_ns": int(r["start_ns"][i]),
                "duration_ns": int(r["duration_ns"][i]),
                "self_ns": int(r["duration_ns"][i]) - int(child[i]),
                "cycles": int(r["cycles"][i]),
            }
            for i in range(n)
        ]


# ---------------------------------------------------------------------------------------------
# Machine and backends


def machine_info() -> MachineInfo:
    """The machine and software a report was measured on (no PyTorch import)."""
    model, flags = cpuinfo()
    torch_module = sys.modules.get("torch")
    return {
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_count": _cpu_count(),
        "cpu_flags": flags,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "neonsign": __version__,
        # only if already imported (a libtorch backend ran): asking would import torch
        "torch": None if torch_module is None else str(torch_module.__version__),
        "cycle_counter_hz": float(_C.prof_cycles_hz()),
    }


def _resolve_backends(names: Sequence[str] | None) -> list[Backend]:
    if not names:
        return list_backends(include_unavailable=False)
    out: list[Backend] = []
    for name in names:
        b = resolve_backend(name)
        if b not in out:
            out.append(b)
    return out


# ---------------------------------------------------------------------------------------------
# Validated arguments


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an int in [low, high]; NeonsignValueError naming ``name`` otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise NeonsignValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return value


@dataclass(frozen=True)
class ProfileRequest:
    """The validated settings of one :func:`profile` run (see its arguments)."""

    backends: tuple[Backend, ...]
    batch: int
    threads: int
    repeats: int
    warmup: int
    baseline: str
    order: str
    split: str
    seed: int
    aten: bool
    progress: bool

    @property
    def names(self) -> list[str]:
        """The backend names, in run order."""
        return [b.name for b in self.backends]

    @property
    def uses_torch(self) -> bool:
        """True if a libtorch backend is profiled (then torch is imported)."""
        return any(b.family == "torch" for b in self.backends)

    @classmethod
    def create(
        cls,
        backends: Sequence[str] | str | None = None,
        *,
        batch: int = 64,
        threads: int | None = None,
        repeats: int = 10,
        warmup: int = 3,
        baseline: str | None = None,
        split: str = "test",
        seed: int = 0,
        aten: bool = True,
        order: str = "interleaved",
        progress: bool = False,
    ) -> ProfileRequest:
        """Resolve the backends and check every argument, raising a NeonsignError subclass
        that names the first bad one (UnsupportedError when no backend can run here)."""
        if isinstance(backends, str):
            backends = [b.strip() for b in backends.split(",") if b.strip()]
        chosen = _resolve_backends(backends)
        if not chosen:
            raise UnsupportedError("no profiler backend is available on this machine")
        batch = _check_int("batch", batch, 1)
        repeats = _check_int("repeats", repeats, 1)
        warmup = _check_int("warmup", warmup, 0)
        threads = _check_int("threads", _cpu_count() if threads is None else threads, 1, 256)
        if order not in ORDERS:
            raise NeonsignValueError(f"order must be 'interleaved' or 'sequential', got {order!r}")
        names = [b.name for b in chosen]
        if baseline is None:
            baseline = "torch" if "torch" in names else names[0]
        elif baseline not in names:
            raise NeonsignValueError(
                f"baseline '{baseline}' is not among the profiled backends {names}"
            )
        return cls(
            backends=tuple(chosen),
            batch=batch,
            threads=threads,
            repeats=repeats,
            warmup=warmup,
            baseline=baseline,
            order=order,
            split=split,
            seed=seed,
            aten=aten,
            progress=progress,
        )


# ---------------------------------------------------------------------------------------------
# Weights and inputs


def random_state_dict(seed: int = 0) -> dict[str, Float32Array]:
    """TrafficSignNet weights drawn like PyTorch's default init (uniform in +-1/sqrt(fan_in)),
    float32, seeded."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in WEIGHT_SHAPES.items():
        layer = key.split(".")[0]
        fan_in = int(np.prod(WEIGHT_SHAPES[f"{layer}.weight"][1:]))
        bound = 1.0 / np.sqrt(fan_in)
        out[key] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def _load_model(
    model: str | os.PathLike[str] | Mapping[str, Any] | None, seed: int
) -> tuple[dict[str, Float32Array], str, dict[str, Any] | None]:
    """(weights, where they came from, model card or None); see :func:`load_state_dict`."""
    from .artifacts import load_model, load_weights_file, validate_state_dict  # noqa: PLC0415

    if model is None:
        return random_state_dict(seed), f"random weights (seed {seed})", None
    if isinstance(model, Mapping):
        return validate_state_dict(model, "state_dict"), "state_dict", None
    path = Path(model)
    if not path.exists():
        raise ModelError(f"model '{path}' does not exist")
    if path.is_dir():
        state, card = load_model(path)
        return state, str(path), card
    if path.suffix in (".safetensors", ".pth", ".pt"):
        return load_weights_file(path), str(path), None
    raise ModelError(f"model '{path}': expected a model directory, .safetensors or .pth file")


def load_state_dict(
    model: str | os.PathLike[str] | Mapping[str, Any] | None, seed: int = 0
) -> tuple[dict[str, Float32Array], str]:
    """TrafficSignNet weights as float32 NumPy arrays, and where they came from.

    ``model`` may be None (random weights, seeded), a mapping (a state_dict of arrays or
    tensors), a model directory (``model.safetensors`` + ``model_card.json``, read with
    :func:`neonsign.artifacts.load_model`), a ``.safetensors`` file or a learning-path ``.pth``
    state_dict (needs PyTorch). Raises :class:`~neonsign.errors.ModelError` naming the file and
    tensor when something is missing or malformed.
    """
    state, source, _card = _load_model(model, seed)
    return state, source


def _load_gtsrb_batch(
    data: str | os.PathLike[str], batch: int, split: str, card: Mapping[str, Any] | None
) -> tuple[npt.NDArray[Any], str]:
    """``batch`` images spread over ``split`` of the GTSRB root ``data``, preprocessed as the
    model card says (ROI crop, mean, std) if there is a card, and where they came from."""
    from .data import load_split  # noqa: PLC0415

    prep = dict((card or {}).get("preprocessing") or {})
    options = {k: prep[k] for k in ("roi", "mean", "std") if k in prep}
    # `limit` spreads the images evenly over the split, so every class is represented
    with file_errors(f"load the {split} split of", data):
        images, _labels, _meta = load_split(Path(data), split, limit=batch, **options)
    source = f"{data} ({split} split, {batch} images spread over it"
    source += f", preprocessed per the model card: {options})" if options else ")"
    return images, source


def _load_inputs(
    data: str | os.PathLike[str] | npt.NDArray[Any] | None,
    batch: int,
    split: str,
    seed: int,
    card: Mapping[str, Any] | None = None,
) -> tuple[Float32Array, str]:
    """A float32 (batch, 3, 32, 32) C-contiguous input batch, and where it came from. A GTSRB
    root is preprocessed as the model card says (ROI crop, mean, std), if there is a card."""
    if data is None:
        rng = np.random.default_rng(seed + 1)
        x = rng.uniform(-1.0, 1.0, size=(batch, *INPUT_SHAPE)).astype(np.float32)
        return x, f"random uniform(-1, 1) inputs (seed {seed + 1})"
    if isinstance(data, np.ndarray):
        images, source = data, "array"
    else:
        images, source = _load_gtsrb_batch(data, batch, split, card)
    if images.ndim != 4 or images.shape[1:] != INPUT_SHAPE or images.dtype != np.float32:
        raise NeonsignValueError(
            f"inputs from {source} must be float32 (N, 3, 32, 32), got {images.dtype} {images.shape}"
        )
    if images.shape[0] < batch:
        raise NeonsignValueError(f"{source} has {images.shape[0]} images, fewer than batch {batch}")
    if isinstance(data, np.ndarray):
        source = f"first {batch} images of the given array"
    return np.ascontiguousarray(images[:batch], dtype=np.float32), source


# ---------------------------------------------------------------------------------------------
# Thread counts


def _import_torch() -> None:
    """MissingDependencyError naming the extra when PyTorch is not installed."""
    require("torch", "torch", "the libtorch profiler backends")


@contextmanager
def pool_threads(threads: int, *, torch_too: bool = False) -> Iterator[None]:
    """Run the block with the native pool (and, with ``torch_too``, libtorch's intra-op pool)
    at ``threads`` threads; the previous counts are restored after it, even on an error."""
    prev_torch: int | None = None
    if torch_too:
        _import_torch()
        import torch  # noqa: PLC0415

        prev_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
    prev = _native_threads()
    try:
        _native_set_threads(threads)
        yield
    finally:
        _native_set_threads(prev)
        if prev_torch is not None:
            import torch  # noqa: PLC0415

            torch.set_num_threads(prev_torch)


# ---------------------------------------------------------------------------------------------
# Runners: one forward pass of the batch inside a `forward` span


class Runner(Protocol):
    """One backend, ready to run the batch: its recorder, settings, a timed forward pass and
    (for libtorch) one pass under torch.profiler naming the aten kernels."""

    rec: Recorder

    def settings(self) -> dict[str, object]: ...

    def run(self, x: Float32Array) -> Float32Array: ...

    def aten_pass(self, x: Float32Array) -> KernelInfo: ...


class _NativeRunner:
    def __init__(
        self,
        backend: Backend,
        state: Mapping[str, Float32Array],
        threads: int,
        rec: Recorder,
        quantization: Mapping[str, Any] | None = None,
    ) -> None:
        # a quantized model (its card's quantization section) profiles the int8 engine
        engine = Engine.from_state_dict(dict(state), quantization=quantization)
        rec.engine = engine
        if backend.name != "native":
            rec.kernel = backend.name.removeprefix("native-")  # switched through the recorder
        engine.threads = threads
        engine.enable_timers(True)
        self.engine, self.rec = engine, rec
        self.forward_id = rec.intern(FORWARD)
        self.kernel = str(engine.kernel)

    def settings(self) -> dict[str, object]:
        return {"kernel": self.kernel, "threads": int(self.engine.threads or _native_threads())}

    def run(self, x: Float32Array) -> Float32Array:
        rec, engine = self.rec, self.engine
        engine.reset_timers()
        index = rec.count
        rec.begin(self.forward_id)
        logits = engine.predict(x)
        rec.end(self.forward_id)
        if rec.count > index:  # the forward span was recorded: attach the layers under it
            start = int(rec.records()["start_ns"][index])
            for layer, (ns, calls) in engine.timers().items():
                if calls:
                    rec.add(layer, int(ns), calls=int(calls), parent=index, start_ns=start)
        return np.asarray(logits, dtype=np.float32)

    def aten_pass(self, x: Float32Array) -> KernelInfo:
        return {"aten_kernels": [], "layer_kernels": {}}


class _TorchRunner:
    def __init__(
        self, backend: Backend, state: Mapping[str, Float32Array], threads: int, rec: Recorder
    ) -> None:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: N812, PLC0415

        self.rec, self.name = rec, backend.name
        self.threads = threads
        self.toggles = TorchToggles(backend.name)
        w = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
        for k in ("conv1.weight", "conv2.weight"):
            w[k] = w[k].contiguous(memory_format=self.toggles.memory_format)
        self.ops: list[tuple[int, Callable[[torch.Tensor], torch.Tensor]]] = [
            (rec.intern("conv1"), lambda t: F.conv2d(t, w["conv1.weight"], w["conv1.bias"])),
            (rec.intern("relu1"), F.relu),
            (rec.intern("pool1"), lambda t: F.max_pool2d(t, 2)),
            (rec.intern("conv2"), lambda t: F.conv2d(t, w["conv2.weight"], w["conv2.bias"])),
            (rec.intern("relu2"), F.relu),
            (rec.intern("pool2"), lambda t: F.max_pool2d(t, 2)),
            (rec.intern("flatten"), lambda t: torch.flatten(t, 1)),
            (rec.intern("fc1"), lambda t: F.linear(t, w["fc1.weight"], w["fc1.bias"])),
            (rec.intern("relu3"), F.relu),
            (rec.intern("fc2"), lambda t: F.linear(t, w["fc2.weight"], w["fc2.bias"])),
        ]
        self.layer_names = LAYERS
        self.forward_id = rec.intern(FORWARD)

    def settings(self) -> dict[str, object]:
        return self.toggles.settings(self.threads)

    def run(self, x: Float32Array) -> Float32Array:
        rec = self.rec
        t: torch.Tensor = self.toggles.input(x)
        with self.toggles.mode():
            rec.begin(self.forward_id)
            for span_id, op in self.ops:
                rec.begin(span_id)
                t = op(t)
                rec.end(span_id)
            rec.end(self.forward_id)
        return cast(Float32Array, t.float().numpy())

    def aten_pass(self, x: Float32Array) -> KernelInfo:
        """One forward pass under torch.profiler, naming the aten kernels per layer."""
        from torch.profiler import ProfilerActivity, profile, record_function  # noqa: PLC0415

        t: torch.Tensor = self.toggles.input(x)
        with self.toggles.mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for (_, op), layer in zip(self.ops, self.layer_names, strict=True):
                with record_function(layer):
                    t = op(t)
        totals: dict[str, AtenKernel] = {}
        for e in prof.key_averages():
            if e.key.startswith("aten::"):
                totals[e.key] = {
                    "name": e.key,
                    "calls": int(e.count),
                    "self_cpu_us": float(e.self_cpu_time_total),
                }
        layer_kernels = _layer_kernels(prof.events(), self.layer_names)
        return {
            "aten_kernels": sorted(totals.values(), key=lambda k: -k["self_cpu_us"]),
            "layer_kernels": {k: layer_kernels[k] for k in self.layer_names if k in layer_kernels},
        }


def _layer_kernels(events: Iterable[Any], layer_names: Sequence[str]) -> dict[str, list[str]]:
    """Per layer, the aten ops that did the work: those with at least 5% of the layer's aten
    self time, most expensive first (allocation and view bookkeeping drop out). ``events`` are
    torch.profiler's FunctionEvents."""
    per_layer: dict[str, dict[str, float]] = {}
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        p = e.cpu_parent
        while p is not None and p.name not in layer_names:
            p = p.cpu_parent
        if p is not None:
            ops = per_layer.setdefault(p.name, {})
            ops[e.name] = ops.get(e.name, 0.0) + float(e.self_cpu_time_total)
    layer_kernels: dict[str, list[str]] = {}
    for layer, ops in per_layer.items():
        total = sum(ops.values()) or 1.0
        ranked = sorted(ops.items(), key=lambda kv: -kv[1])
        layer_kernels[layer] = [k for k, v in ranked if v >= 0.05 * total] or [ranked[0][0]]
    return layer_kernels


def build_runners(
    request: ProfileRequest,
    state: Mapping[str, Float32Array],
    quantization: Mapping[str, Any] | None = None,
) -> dict[str, Runner]:
    """One runner per requested backend (by name, in run order), each with its own disabled
    recorder. Call inside :func:`pool_threads`: runners read the thread count when built.
    ``quantization`` (a quantized model's card section): the native runners run int8."""
    runners: dict[str, Runner] = {}
    for b in request.backends:
        rec = Recorder(capacity=(request.repeats + 1) * 16, enabled=False)
        if b.family == "native":
            runners[b.name] = _NativeRunner(b, state, request.threads, rec, quantization)
        else:
            runners[b.name] = _TorchRunner(b, state, request.threads, rec)
    return runners


# ---------------------------------------------------------------------------------------------
# The schedule of forward passes


def schedule(names: Sequence[str], passes: int, order: str) -> list[tuple[int, str]]:
    """(step, backend) pairs: ``passes`` steps of every backend, one pass of each in turn
    (``interleaved``) or all passes of one backend, then the next (``sequential``)."""
    steps = range(passes)
    if order == "interleaved":
        return [(step, name) for step in steps for name in names]
    return [(step, name) for name in names for step in steps]


def run_schedule(
    runners: Mapping[str, Runner], x: Float32Array, request: ProfileRequest
) -> dict[str, Float32Array]:
    """Warm-up passes, then the timed repeats in the request's order; the last logits of every
    backend. Each runner's recorder holds exactly its ``repeats`` timed forward passes after.

    Interleaved with several backends, every timed pass follows an untimed pass of the same
    backend, so it finds its weights in cache and the previous backend's threads (e.g. spinning
    OpenMP workers) gone."""
    warmup = request.warmup
    passes: Iterable[tuple[int, str]] = schedule(
        list(runners), warmup + request.repeats, request.order
    )
    if request.progress:
        from tqdm import tqdm  # noqa: PLC0415

        passes = tqdm(passes, desc="profile", unit="pass")
    logits: dict[str, Float32Array] = {}
    rewarm = request.order == "interleaved" and len(runners) > 1
    family = {b.name: b.family for b in request.backends}
    settle = openmp_wait_policy() != "passive"
    previous = ""
    for step, name in passes:
        runner = runners[name]
        if settle and family.get(previous) == "torch" and family.get(name) == "native":
            time.sleep(SETTLE_SECONDS)  # let libtorch's spinning OpenMP workers go to sleep
        previous = name
        if step >= warmup and rewarm:
            runner.rec.disable()
            runner.run(x)
        if step == warmup:
            runner.rec.reset()
        if step >= warmup:
            runner.rec.enable()
        logits[name] = runner.run(x)
    for runner in runners.values():
        runner.rec.disable()
    return logits


# ---------------------------------------------------------------------------------------------
# Statistics over the recorded spans


def _stats(values: Sequence[float]) -> SpanStats:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"median": 0.0, "mean": 0.0, "min": 0.0, "max": 0.0, "q1": 0.0, "q3": 0.0}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(med),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "q1": float(q1),
        "q3": float(q3),
    }


def _sums_per_root(spans: Sequence[Span]) -> dict[str, dict[int, list[int]]]:
    """span name -> root record index -> [self_ns, total_ns, calls] summed under that root,
    names in first-seen order."""
    root_of: dict[int, int] = {}
    for i, s in enumerate(spans):
        root_of[i] = i if s["parent"] < 0 else root_of[s["parent"]]
    per_root: dict[str, dict[int, list[int]]] = {}
    for i, s in enumerate(spans):
        acc = per_root.setdefault(s["name"], {}).setdefault(root_of[i], [0, 0, 0])
        acc[0] += s["self_ns"]
        acc[1] += s["duration_ns"]
        acc[2] += s["calls"]
    return per_root


def backend_figures(rec: Recorder, repeats: int) -> BackendFigures:
    """Per-layer and total figures from one backend's recorder (one ``forward`` root span per
    timed repeat): the rows of the report's ``layers``, ``total`` and the cycle count."""
    spans = rec.spans()
    roots = [i for i, s in enumerate(spans) if s["parent"] < 0 and s["name"] == FORWARD]
    if len(roots) != repeats:
        raise RuntimeError(f"expected {repeats} forward spans, recorded {len(roots)}")
    totals = [spans[r]["duration_ns"] for r in roots]
    grand_self = sum(s["self_ns"] for s in spans) or 1
    grand_total = sum(totals) or 1
    layers: list[LayerFigures] = []
    for name, by_root in _sums_per_root(spans).items():
        selfs = [by_root.get(r, [0, 0, 0])[0] for r in roots]
        tots = [by_root.get(r, [0, 0, 0])[1] for r in roots]
        calls = sum(v[2] for v in by_root.values())
        layers.append(
            {
                "name": name,
                "calls": int(calls),
                "self_ns_total": int(sum(selfs)),
                "total_ns_total": int(sum(tots)),
                "self_ns_avg": float(sum(selfs)) / max(calls, 1),
                "total_ns_avg": float(sum(tots)) / max(calls, 1),
                "self_pct": 100.0 * sum(selfs) / grand_self,
                "total_pct": 100.0 * sum(tots) / grand_total,
                "self_ns_per_forward": _stats(selfs),
            }
        )
    cycles = [spans[r]["cycles"] for r in roots]
    return {
        "layers": layers,
        "total": _total_figures(totals, sum(s["self_ns"] for s in spans)),
        "cycles_per_forward_median": float(np.median(cycles)) if any(cycles) else None,
    }


def _total_figures(per_repeat_ns: Sequence[int], self_total_ns: int) -> TotalFigures:
    """The ``total`` block: the forward pass's duration per repeat and its statistics."""
    stats = _stats(per_repeat_ns)
    return {
        "per_repeat_ns": [int(t) for t in per_repeat_ns],
        "self_cpu_time_total_ns": int(self_total_ns),
        "median_ns": stats["median"],
        "mean_ns": stats["mean"],
        "min_ns": stats["min"],
        "max_ns": stats["max"],
        "q1_ns": stats["q1"],
        "q3_ns": stats["q3"],
    }


# ---------------------------------------------------------------------------------------------
# Report assembly


@dataclass(frozen=True)
class _Sources:
    """Where the weights and the inputs came from (for the report's settings and notes)."""

    model: str
    random_weights: bool
    input: str
    random_input: bool


def _accuracy_checks(
    names: Sequence[str], logits: Mapping[str, Float32Array]
) -> dict[str, AccuracyCheck]:
    """Every backend's top-1 agreement and largest logit difference with the first fp32
    backend (bf16 disagrees by design on a few inputs, so it is never the reference)."""
    ref_name = next((n for n in names if n != "torch-bf16"), names[0])
    ref = logits[ref_name]
    ref_top1 = ref.argmax(axis=1)
    return {
        name: {
            "reference": ref_name,
            "top1_agreement": float(np.mean(logits[name].argmax(axis=1) == ref_top1)),
            "max_abs_logit_diff": float(np.max(np.abs(logits[name] - ref))),
        }
        for name in names
    }


def _notes(sources: _Sources, entries: Sequence[BackendReport]) -> list[str]:
    """What a reader of the report must know to read its numbers right."""
    notes = []
    if sources.random_weights:
        notes.append("random weights: no model was given")
    if sources.random_input:
        notes.append("random inputs: no data was given")
    for e in entries:
        zero = [r["name"] for r in e["layers"] if r["name"] != FORWARD and r["self_ns_total"] == 0]
        if e["family"] == "native" and zero:
            notes.append(
                f"{e['name']}: {', '.join(zero)} report 0 ns: the engine fuses them into "
                "the neighbouring conv/fc layer, whose time includes them"
            )
    policy = openmp_wait_policy()
    if policy != "passive" and any(e["family"] == "torch" for e in entries):
        notes.append(
            f"libtorch's OpenMP workers were not passive (OMP_WAIT_POLICY {policy}): they spin "
            "after each libtorch pass; native passes after one waited "
            f"{SETTLE_SECONDS * 1e3:.0f} ms first. Set OMP_WAIT_POLICY=PASSIVE before torch "
            "loads (the neonsign CLI does) for rows that do not depend on it"
        )
    if any(e["name"] == "torch-bf16" for e in entries):
        notes.append(
            "torch-bf16 computes in bfloat16: its top-1 may differ from fp32 backends "
            "on a few inputs"
        )
    return notes


def _settings(
    request: ProfileRequest, sources: _Sources, torch_version: str | None
) -> ReportSettings:
    return {
        "batch": request.batch,
        "threads": request.threads,
        "repeats": request.repeats,
        "warmup": request.warmup,
        "order": request.order,
        "flop_per_image": _flop_per_image(),
        "seed": request.seed,
        "model": sources.model,
        "random_weights": sources.random_weights,
        "input": sources.input,
        "random_input": sources.random_input,
        "torch": torch_version,
        "clock": "CLOCK_MONOTONIC ns (neonsign._native.Recorder)",
    }


def assemble_report(
    request: ProfileRequest,
    runners: Mapping[str, Runner],
    logits: Mapping[str, Float32Array],
    kernels: Mapping[str, KernelInfo],
    sources: _Sources,
) -> ReportData:
    """The JSON-ready report (schema ``profile_report.schema.json``) of a finished run."""
    checks = _accuracy_checks(request.names, logits)
    entries: list[BackendReport] = []
    for b in request.backends:
        runner = runners[b.name]
        figures = backend_figures(runner.rec, request.repeats)
        entries.append(
            {
                "name": b.name,
                "family": b.family,
                "description": b.description,
                "settings": runner.settings(),
                "layers": figures["layers"],
                "total": figures["total"],
                "cycles_per_forward_median": figures["cycles_per_forward_median"],
                "aten_kernels": kernels[b.name]["aten_kernels"],
                "layer_kernels": kernels[b.name]["layer_kernels"],
                "accuracy_check": checks[b.name],
            }
        )
    machine = machine_info()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "neonsign.profiler",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": _settings(request, sources, machine["torch"]),
        "baseline": request.baseline,
        "backends": entries,
        "notes": _notes(sources, entries),
    }


# ---------------------------------------------------------------------------------------------
# profile()


def profile(
    model: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    data: str | os.PathLike[str] | npt.NDArray[Any] | None = None,
    backends: Sequence[str] | str | None = None,
    *,
    batch: int = 64,
    threads: int | None = None,
    repeats: int = 10,
    warmup: int = 3,
    baseline: str | None = None,
    split: str = "test",
    seed: int = 0,
    aten: bool = True,
    order: str = "interleaved",
    progress: bool = False,
) -> ProfileReport:
    """Profile TrafficSignNet per layer on several backends, in this process, with one clock.

    Args:
        model: weights (see :func:`load_state_dict`); None means random weights (the report
            says so).
        data: a GTSRB root (``batch`` images spread evenly over its ``split``, loaded with
            :func:`neonsign.data.load_split`), or a float32 (N, 3, 32, 32) array (its first
            ``batch`` images). None means random inputs in [-1, 1].
        backends: names (or a comma-separated string); None means every available backend.
        batch: images per forward pass.
        threads: threads for every backend (default: one per CPU).
        repeats: timed forward passes per backend (median and spread are over these).
        warmup: untimed forward passes per backend first.
        baseline: the backend speedups are relative to (default: ``torch`` if profiled, else
            the first backend).
        split: the split read from ``data``.
        seed: seeds random weights and inputs.
        aten: also run one pass per libtorch backend under torch.profiler to name aten kernels.
        order: ``"interleaved"`` (one pass of each backend in turn, so load drift on a shared
            machine hits all alike; each timed pass follows an untimed pass of the same backend,
            so it does not inherit the previous backend's cache state or still-spinning OpenMP
            workers) or ``"sequential"`` (all passes of one backend, then the next).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`~neonsign.profile_report.ProfileReport`.
    """
    request = ProfileRequest.create(
        backends,
        batch=batch,
        threads=threads,
        repeats=repeats,
        warmup=warmup,
        baseline=baseline,
        split=split,
        seed=seed,
        aten=aten,
        order=order,
        progress=progress,
    )
    state, model_source, card = _load_model(model, seed)
    x, input_source = _load_inputs(data, request.batch, split, seed, card)
    sources = _Sources(model_source, model is None, input_source, data is None)
    with pool_threads(request.threads, torch_too=request.uses_torch):
        runners = build_runners(request, state, (card or {}).get("quantization"))
        logits = run_schedule(runners, x, request)
        kernels: dict[str, KernelInfo] = {
            name: r.aten_pass(x) if aten else {"aten_kernels": [], "layer_kernels": {}}
            for name, r in runners.items()
        }
    return ProfileReport(dict(assemble_report(request, runners, logits, kernels, sources)))


# ---------------------------------------------------------------------------------------------
# CLI
