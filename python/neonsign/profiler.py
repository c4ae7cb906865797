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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _native
from .backends import Backend, TorchToggles, cpuinfo, list_backends
from .backends import resolve as resolve_backend
from .engine import INPUT_SHAPE, LAYERS, WEIGHT_SHAPES, Engine
from .errors import ModelError, NeonsignValueError, UnsupportedError
from .profile_report import SCHEMA_VERSION, ProfileReport

__all__ = [
    "LAYERS",
    "Backend",
    "Recorder",
    "list_backends",
    "load_state_dict",
    "machine_info",
    "profile",
    "random_state_dict",
]

#: The span enclosing one forward pass of a batch.
FORWARD = "forward"


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
# Recorder


class Recorder(_native.Recorder):
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

    def __init__(self, capacity: int = 0, enabled: bool = True, engine: Any = None) -> None:
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

    def spans(self) -> list[dict[str, Any]]:
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


def machine_info() -> dict[str, Any]:
    """The machine and software a report was measured on (no PyTorch import)."""
    model, flags = cpuinfo()
    info: dict[str, Any] = {
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_count": int(_native.cpu_count()),
        "cpu_flags": flags,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "neonsign": __version__,
        # only if already imported (a libtorch backend ran): asking would import torch
        "torch": getattr(sys.modules.get("torch"), "__version__", None),
        "cycle_counter_hz": float(_native.prof_cycles_hz()),
    }
    return info


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
# Weights and inputs


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
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
) -> tuple[dict[str, np.ndarray], str, dict[str, Any] | None]:
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
) -> tuple[dict[str, np.ndarray], str]:
    """TrafficSignNet weights as float32 NumPy arrays, and where they came from.

    ``model`` may be None (random weights, seeded), a mapping (a state_dict of arrays or
    tensors), a model directory (``model.safetensors`` + ``model_card.json``, read with
    :func:`neonsign.artifacts.load_model`), a ``.safetensors`` file or a learning-path ``.pth``
    state_dict (needs PyTorch). Raises :class:`~neonsign.errors.ModelError` naming the file and
    tensor when something is missing or malformed.
    """
    state, source, _card = _load_model(model, seed)
    return state, source


def _load_inputs(
    data: str | os.PathLike[str] | np.ndarray | None,
    batch: int,
    split: str,
    seed: int,
    card: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, str]:
    """A float32 (batch, 3, 32, 32) C-contiguous input batch, and where it came from. A GTSRB
    root is preprocessed as the model card says (ROI crop, mean, std), if there is a card."""
    if data is None:
        rng = np.random.default_rng(seed + 1)
        x = rng.uniform(-1.0, 1.0, size=(batch, *INPUT_SHAPE)).astype(np.float32)
        return x, f"random uniform(-1, 1) inputs (seed {seed + 1})"
    if isinstance(data, np.ndarray):
        images, source = data, "array"
    else:
        from .data import load_split  # noqa: PLC0415

        prep = dict((card or {}).get("preprocessing") or {})
        options = {k: prep[k] for k in ("roi", "mean", "std") if k in prep}
        # `limit` spreads the images evenly over the split, so every class is represented
        images, _labels, _meta = load_split(data, split, limit=batch, **options)
        source = f"{data} ({split} split, {batch} images spread over it"
        source += f", preprocessed per the model card: {options})" if options else ")"
    if images.ndim != 4 or images.shape[1:] != INPUT_SHAPE or images.dtype != np.float32:
        raise NeonsignValueError(
            f"inputs from {source} must be float32 (N, 3, 32, 32), got {images.dtype} {images.shape}"
        )
    if images.shape[0] < batch:
        raise NeonsignValueError(f"{source} has {images.shape[0]} images, fewer than batch {batch}")
    if isinstance(data, np.ndarray):
        source = f"first {batch} images of the given array"
    return np.ascontiguousarray(images[:batch]), source


# ---------------------------------------------------------------------------------------------
# Runners: one forward pass of the batch inside a `forward` span


class _NativeRunner:
    def __init__(
        self, backend: Backend, state: Mapping[str, np.ndarray], threads: int, rec: Recorder
    ) -> None:
        engine = Engine.from_state_dict(state)
        rec.engine = engine
        if backend.name != "native":
            rec.kernel = backend.name.removeprefix("native-")  # switched through the recorder
        engine.threads = threads
        engine.enable_timers(True)
        self.engine, self.rec = engine, rec
        self.forward_id = rec.intern(FORWARD)
        self.kernel = str(engine.kernel)

    def settings(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "threads": int(self.engine.threads or _native.get_threads())}

    def run(self, x: np.ndarray) -> np.ndarray:
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

    def aten_pass(self, x: np.ndarray) -> dict[str, Any]:
        return {"aten_kernels": [], "layer_kernels": {}}


class _TorchRunner:
    def __init__(
        self, backend: Backend, state: Mapping[str, np.ndarray], threads: int, rec: Recorder
    ) -> None:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: N812, PLC0415

        self.torch, self.rec, self.name = torch, rec, backend.name
        self.threads = threads
        self.toggles = TorchToggles(backend.name)
        w = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
        for k in ("conv1.weight", "conv2.weight"):
            w[k] = w[k].contiguous(memory_format=self.toggles.memory_format)
        self.ops: list[tuple[int, Callable[[Any], Any]]] = [
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

    def settings(self) -> dict[str, Any]:
        return self.toggles.settings(self.threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        rec = self.rec
        t = self.toggles.input(x)
        with self.toggles.mode():
            rec.begin(self.forward_id)
            for span_id, op in self.ops:
                rec.begin(span_id)
                t = op(t)
                rec.end(span_id)
            rec.end(self.forward_id)
        return t.float().numpy()

    def aten_pass(self, x: np.ndarray) -> dict[str, Any]:
        """One forward pass under torch.profiler, naming the aten kernels per layer."""
        torch = self.torch
        from torch.profiler import ProfilerActivity, profile, record_function  # noqa: PLC0415

        t = self.toggles.input(x)
        with self.toggles.mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for (_, op), layer in zip(self.ops, self.layer_names, strict=True):
                with record_function(layer):
                    t = op(t)
        del torch
        totals: dict[str, dict[str, Any]] = {}
        for e in prof.key_averages():
            if e.key.startswith("aten::"):
                totals[e.key] = {
                    "name": e.key,
                    "calls": int(e.count),
                    "self_cpu_us": float(e.self_cpu_time_total),
                }
        # Per layer, the aten ops that did the work: those with at least 5% of the layer's
        # aten self time, most expensive first (allocation and view bookkeeping drop out).
        per_layer: dict[str, dict[str, float]] = {}
        for e in prof.events():
            if not e.name.startswith("aten::"):
                continue
            p = e.cpu_parent
            while p is not None and p.name not in self.layer_names:
                p = p.cpu_parent
            if p is not None:
                ops = per_layer.setdefault(p.name, {})
                ops[e.name] = ops.get(e.name, 0.0) + float(e.self_cpu_time_total)
        layer_kernels: dict[str, list[str]] = {}
        for layer, ops in per_layer.items():
            total = sum(ops.values()) or 1.0
            ranked = sorted(ops.items(), key=lambda kv: -kv[1])
            layer_kernels[layer] = [k for k, v in ranked if v >= 0.05 * total] or [ranked[0][0]]
        kernels = sorted(totals.values(), key=lambda k: -k["self_cpu_us"])
        return {
            "aten_kernels": kernels,
            "layer_kernels": {k: layer_kernels[k] for k in self.layer_names if k in layer_kernels},
        }


# ---------------------------------------------------------------------------------------------
# Statistics over the recorded spans


def _stats(values: Sequence[float]) -> dict[str, float]:
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


def _backend_figures(rec: Recorder, repeats: int) -> dict[str, Any]:
    """Per-layer and total figures from one backend's recorder (one `forward` root per repeat)."""
    spans = rec.spans()
    roots = [i for i, s in enumerate(spans) if s["parent"] < 0 and s["name"] == FORWARD]
    if len(roots) != repeats:
        raise RuntimeError(f"expected {repeats} forward spans, recorded {len(roots)}")
    root_of = {}
    for i, s in enumerate(spans):
        root_of[i] = i if s["parent"] < 0 else root_of[s["parent"]]
    order: list[str] = []
    per_repeat: dict[str, dict[int, list[int]]] = {}  # name -> root -> [self_ns, total_ns, calls]
    for i, s in enumerate(spans):
        if s["name"] not in per_repeat:
            order.append(s["name"])
            per_repeat[s["name"]] = {}
        acc = per_repeat[s["name"]].setdefault(root_of[i], [0, 0, 0])
        acc[0] += s["self_ns"]
        acc[1] += s["duration_ns"]
        acc[2] += s["calls"]
    totals = [spans[r]["duration_ns"] for r in roots]
    grand_self = sum(s["self_ns"] for s in spans) or 1
    grand_total = sum(totals) or 1
    layers = []
    for name in order:
        by_root = per_repeat[name]
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
        "total": {
            "per_repeat_ns": [int(t) for t in totals],
            "self_cpu_time_total_ns": int(sum(s["self_ns"] for s in spans)),
            **{f"{k}_ns": v for k, v in _stats(totals).items()},
        },
        "cycles_per_forward_median": float(np.median(cycles)) if any(cycles) else None,
    }


# ---------------------------------------------------------------------------------------------
# profile()


def profile(
    model: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    data: str | os.PathLike[str] | np.ndarray | None = None,
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
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    chosen = _resolve_backends(backends)
    if not chosen:
        raise UnsupportedError("no profiler backend is available on this machine")
    for name, value, low in (("batch", batch, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise NeonsignValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if threads is None:
        threads = int(_native.cpu_count())
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
        raise NeonsignValueError(f"threads must be an integer in [1, 256], got {threads!r}")
    if order not in ("interleaved", "sequential"):
        raise NeonsignValueError(f"order must be 'interleaved' or 'sequential', got {order!r}")
    names = [b.name for b in chosen]
    if baseline is None:
        baseline = "torch" if "torch" in names else names[0]
    elif baseline not in names:
        raise NeonsignValueError(
            f"baseline '{baseline}' is not among the profiled backends {names}"
        )

    state, model_source, card = _load_model(model, seed)
    x, input_source = _load_inputs(data, batch, split, seed, card)

    torch = None
    if any(b.family == "torch" for b in chosen):
        import torch  # noqa: PLC0415

        prev_torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    prev_threads = _native.get_threads()
    _native.set_threads(threads)
    try:
        runners = {}
        for b in chosen:
            rec = Recorder(capacity=(repeats + 1) * 16, enabled=False)
            cls = _NativeRunner if b.family == "native" else _TorchRunner
            runners[b.name] = cls(b, state, threads, rec)
        # warm-up, then timed repeats interleaved across backends
        steps = range(warmup + repeats)
        if order == "interleaved":
            schedule = [(step, name) for step in steps for name in runners]
        else:
            schedule = [(step, name) for name in runners for step in steps]
        if progress:
            from tqdm import tqdm  # noqa: PLC0415

            schedule = tqdm(schedule, desc="profile", unit="pass")
        logits: dict[str, np.ndarray] = {}
        rewarm = order == "interleaved" and len(runners) > 1
        for step, name in schedule:
            runner = runners[name]
            if step >= warmup and rewarm:
                # an untimed pass first, so the timed one finds this backend's weights in cache
                # and the previous backend's threads (e.g. spinning OpenMP workers) gone
                runner.rec.disable()
                runner.run(x)
            if step == warmup:
                runner.rec.reset()
            if step >= warmup:
                runner.rec.enable()
            logits[name] = runner.run(x)
        for runner in runners.values():
            runner.rec.disable()
        kernels = {
            name: (r.aten_pass(x) if aten else {"aten_kernels": [], "layer_kernels": {}})
            for name, r in runners.items()
        }
    finally:
        _native.set_threads(prev_threads)
        if torch is not None:
            torch.set_num_threads(prev_torch_threads)

    ref_name = next((n for n in names if n != "torch-bf16"), names[0])
    ref_top1 = logits[ref_name].argmax(axis=1)
    entries = []
    for b in chosen:
        runner = runners[b.name]
        top1 = logits[b.name].argmax(axis=1)
        entries.append(
            {
                "name": b.name,
                "family": b.family,
                "description": b.description,
                "settings": runner.settings(),
                **_backend_figures(runner.rec, repeats),
                **kernels[b.name],
                "accuracy_check": {
                    "reference": ref_name,
                    "top1_agreement": float(np.mean(top1 == ref_top1)),
                    "max_abs_logit_diff": float(np.max(np.abs(logits[b.name] - logits[ref_name]))),
                },
            }
        )
    notes = []
    if model is None:
        notes.append("random weights: no model was given")
    if data is None:
        notes.append("random inputs: no data was given")
    for e in entries:
        zero = [r["name"] for r in e["layers"] if r["name"] != FORWARD and r["self_ns_total"] == 0]
        if e["family"] == "native" and zero:
            notes.append(
                f"{e['name']}: {', '.join(zero)} report 0 ns: the engine fuses them into "
                "the neighbouring conv/fc layer, whose time includes them"
            )
    if "torch-bf16" in names:
        notes.append(
            "torch-bf16 computes in bfloat16: its top-1 may differ from fp32 backends "
            "on a few inputs"
        )
    machine = machine_info()
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": "neonsign.profiler",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "batch": batch,
            "threads": threads,
            "repeats": repeats,
            "warmup": warmup,
            "order": order,
            "flop_per_image": _flop_per_image(),
            "seed": seed,
            "model": model_source,
            "random_weights": model is None,
            "input": input_source,
            "random_input": data is None,
            "torch": machine["torch"],
            "clock": "CLOCK_MONOTONIC ns (neonsign._native.Recorder)",
        },
        "baseline": baseline,
        "backends": entries,
        "notes": notes,
    }
    return ProfileReport(report)
