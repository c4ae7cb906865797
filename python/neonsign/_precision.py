"""Training precision by measurement: bfloat16 autocast only where it is faster here.

oneDNN reports bf16 support on every CPU with AVX512_BF16 (or Arm BF16), but native bf16 is not
always a win: on an AVX512_BF16 CPU without AMX, TrafficSignNet's training step is slower in
bfloat16 autocast than in float32 (the casts cost more than the narrower multiplies save). So
``TrainConfig.bf16 = None`` (auto) times a few real training steps of TrafficSignNet in each
precision, side by side, once per CPU, thread count, batch size and torch version, and keeps
float32 unless bfloat16 is clearly faster. The answer is cached in
``$NEONSIGN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/neonsign``, else ``~/.cache/neonsign``) as
``precision.json``; the model card records the choice and why.

This module imports torch (it is used by :mod:`neonsign._trainer` only).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ._fileio import atomic_write_text
from ._trainops import FusedTrafficSignNet

__all__ = ["PrecisionChoice", "bf16_supported", "cache_path", "choose_precision"]

#: bfloat16 must be at least this much faster per step (median) to be chosen: a tie keeps
#: float32, the precision without rounding of activations and gradients.
MIN_SPEEDUP = 1.10
_WARMUP_STEPS = 3
_TIMED_STEPS = 6
_ROUNDS = 3


@dataclass(frozen=True)
class PrecisionChoice:
    """The training precision (``"float32"`` or ``"bfloat16"``) and why it was chosen;
    ``step_ms`` the measured median step time per precision when it was measured."""

    precision: str
    reason: str
    step_ms: dict[str, float] | None = None

    def record(self) -> dict[str, Any]:
        """JSON-ready form (the model card's ``training.precision_choice``)."""
        out: dict[str, Any] = {"precision": self.precision, "reason": self.reason}
        if self.step_ms is not None:
            out["step_ms"] = self.step_ms
        return out


def bf16_supported() -> bool:
    """True when oneDNN has native bf16 on this CPU (AVX512_BF16/AMX on x86-64, BF16 on Arm)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cache_path() -> Path:
    """Where measured choices are kept: ``$NEONSIGN_CACHE_DIR/precision.json`` (default
    ``$XDG_CACHE_HOME/neonsign``, else ``~/.cache/neonsign``)."""
    base = os.environ.get("NEONSIGN_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "neonsign")
    return Path(base) / "precision.json"


def _cpu_id() -> str:
    """A short digest naming this CPU model and its features (Linux /proc/cpuinfo when there)."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [
                ln
                for ln in f.read(65536).splitlines()
                if ln.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")
            ]
        text += "\n".join(sorted(set(lines)))
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The version of the training step that is timed: bumped when the step changes (2: the fused C
#: pooling of neonsign._trainops), so that answers cached for another step are measured again.
_STEP_VERSION = 2


def _key(batch_size: int, threads: int) -> str:
    return (
        f"{_cpu_id()}/threads={threads}/batch={batch_size}/torch={torch.__version__}"
        f"/step={_STEP_VERSION}"
    )


def _time_steps(batch_size: int) -> dict[str, float]:
    """Median milliseconds of one TrafficSignNet training step with the training loop's model
    (:class:`FusedTrafficSignNet`, without dropout: forward, loss, backward, fused AdamW) per
    precision on a random channels_last batch, the precisions interleaved in rounds
    so that a noisy neighbour slows both alike. Torch's global RNG is left as it was: a run
    that measures initialises its network exactly like one that reads the cache."""
    with torch.random.fork_rng(devices=[]):
        return _time_steps_isolated(batch_size)


def _time_steps_isolated(batch_size: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, generator=gen).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 43, (batch_size,), generator=gen)
    model = FusedTrafficSignNet().to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits memory_format
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch's stub leaves backward untyped
        opt.step()

    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(_ROUNDS):
        for name, samples in times.items():
            bf16 = name == "bfloat16"
            for _ in range(_WARMUP_STEPS):
                step(bf16)
            for _ in range(_TIMED_STEPS):
                t0 = time.perf_counter()
                step(bf16)
                samples.append((time.perf_counter() - t0) * 1e3)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose_precision(
    bf16: bool | None, batch_size: int, threads: int | None = None
) -> PrecisionChoice:
    """The precision of a training run: forced by ``bf16`` (True/False), else measured.

    Auto (None): float32 where oneDNN has no native bf16; otherwise the cached measurement for
    this CPU, thread count, batch size and torch version, or a new one (about 30 training
    steps per precision, a few seconds) that is cached for the next run. An unwritable cache
    only costs the measurement again.
    """
    if bf16 is not None:
        return PrecisionChoice("bfloat16" if bf16 else "float32", "forced (--bf16/--no-bf16)")
    if not bf16_supported():
        return PrecisionChoice("float32", "auto: this CPU has no native bf16 (oneDNN)")
    threads = threads or torch.get_num_threads()
    path, key = cache_path(), _key(batch_size, threads)
    cached = _read_cache(path).get(key)
    if isinstance(cached, dict) and cached.get("precision") in ("float32", "bfloat16"):
        step_ms = cached.get("step_ms")
        return PrecisionChoice(
            str(cached["precision"]),
            f"auto: measured on this CPU ({path})",
            dict(step_ms) if isinstance(step_ms, dict) else None,
        )
    step_ms = _time_steps(batch_size)
    faster = step_ms["float32"] / step_ms["bfloat16"] >= MIN_SPEEDUP
    choice = PrecisionChoice(
        "bfloat16" if faster else "float32",
        "auto: measured on this CPU (bfloat16 "
        f"{step_ms['float32'] / step_ms['bfloat16']:.2f}x float32's speed per step; "
        f"chosen at >= {MIN_SPEEDUP:.2f}x)",
        step_ms,
    )
    entries = _read_cache(path)
    entries[key] = choice.record()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only home: measure again next time
    return choice
