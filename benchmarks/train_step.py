"""Training step before/after issue 18 parts 3-4, side by side: per-phase milliseconds.

"before" is the step as it was (uint8 -> float /255, ``F.affine_grid`` + ``F.grid_sample``,
jitter, a separate normalisation and channels_last copy; ``F.dropout`` before fc1 and fc2;
glibc's default allocator behaviour); "after_default_malloc" is the training loop's step now
(:func:`neonsign._trainer.prepare_batch`, :class:`neonsign._trainops.FusedTrafficSignNet`'s
fused C pooling and cheaper dropout masks) under the default allocator; "after" is that step as
:func:`neonsign._trainer.fit` runs it, with :func:`neonsign._trainer.keep_freed_memory` (no
page faults per step). "after_torch_prepare" is "after" with the batch preparation in PyTorch ops
(:func:`neonsign._trainer._prepare_batch_torch`, as before the C augmentation kernel), to time
that kernel alone; "after_torch_pool" is "after" with a plain TrafficSignNet (PyTorch's
max_pool2d and ReLU, both dropouts as ``torch.rand >= p`` masks, as before the fused C pooling
of :mod:`neonsign._trainops`), to time the pooling kernels alone. The allocator setting is
process-wide, so every kind runs in a process of its own (spawned once, fed one round at a
time). Same TrafficSignNet initialisation, batch,
thread count and precision choice; the kinds alternate in every round so that the load of a
shared machine hits all alike. Medians over all timed steps; page faults per step are counted
(``getrusage``).

Usage: python benchmarks/train_step.py [--steps N] [--rounds R] [--threads T] [--bf16|--no-bf16]
[--kinds K,K,...] [--out FILE] (default benchmarks/results/train_step.json).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import neonsign
from neonsign._trainer import (
    _prepare_batch_torch,
    keep_freed_memory,
    prepare_batch,
    resolve_precision,
)
from neonsign._trainops import FusedTrafficSignNet, dropout
from neonsign.model import TrafficSignNet
from neonsign.train import TrainConfig

PHASES = ("augment", "forward", "backward", "optimizer")
KINDS = ("before", "after_default_malloc", "after_torch_prepare", "after_torch_pool", "after")


def before_prepare(u8: torch.Tensor, gen: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    """The batch preparation as it was before issue 18 part 3."""
    x = u8.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

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
    x = ((x - mean) * contrast + mean * bright).clamp_(0.0, 1.0)
    m = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    s = torch.tensor(cfg.std).view(1, -1, 1, 1)
    return x.sub_(m).div_(s).contiguous(memory_format=torch.channels_last)


def before_dropout(model: TrafficSignNet, p: float) -> None:
    """``F.dropout`` pre-hooks on fc1 and fc2 (the dropout before issue 18 part 3)."""

    def drop(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (F.dropout(args[0], p, module.training), *args[1:])

    for layer in (model.fc1, model.fc2):
        layer.register_forward_pre_hook(drop)


def rand_dropout(model: TrafficSignNet, p: float) -> None:
    """``torch.rand >= p`` dropout pre-hooks on fc1 and fc2 (before the fused C pooling)."""

    def drop(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (dropout(args[0], p) if module.training else args[0], *args[1:])

    for layer in (model.fc1, model.fc2):
        layer.register_forward_pre_hook(drop)


def make_step(kind: str, cfg: TrainConfig, bf16: bool):
    """A closure running one training step of ``kind`` (see :data:`KINDS`) on a batch."""
    torch.manual_seed(0)
    if kind == "before":
        model = TrafficSignNet()
        before_dropout(model, cfg.dropout)
    elif kind == "after_torch_pool":
        model = TrafficSignNet()
        rand_dropout(model, cfg.dropout)
    else:  # the training loop's model: fused C pooling (+ dropout), neonsign._trainops
        model = FusedTrafficSignNet(dropout=cfg.dropout)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator().manual_seed(1)
    mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)

    def step(u8: torch.Tensor, y: torch.Tensor, out: dict[str, list[float]]) -> None:
        t0 = time.perf_counter()
        if kind == "before":
            x = before_prepare(u8, gen, cfg)
        elif kind == "after_torch_prepare":
            x = _prepare_batch_torch(u8, gen, cfg, mean, std)
        else:
            x = prepare_batch(u8, gen, cfg, mean, std)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = crit(model(x), y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for name, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
            out[name].append((b - a) * 1e3)

    return step


def _worker(conn, kind: str, threads: int, bf16: bool, steps: int) -> None:
    """One kind's own process: ``steps`` training steps per round number received; sends back
    the per-phase ms and the page faults (the parent drops round 0, the warm-up). None ends it."""
    torch.set_num_threads(threads)
    if kind in ("after", "after_torch_prepare", "after_torch_pool"):
        keep_freed_memory()
    cfg = TrainConfig(threads=threads)
    data = torch.randint(0, 256, (4096, 32, 32, 3), dtype=torch.uint8)
    labels = torch.randint(0, 43, (4096,))
    step = make_step(kind, cfg, bf16)
    gen = torch.Generator().manual_seed(2)
    conn.send("ready")
    while conn.recv() is not None:
        out: dict[str, list[float]] = {p: [] for p in PHASES}
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(steps):
            idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
            step(data[idx], labels[idx], out)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        conn.send((out, faults))
    conn.close()


def run_rounds(args: argparse.Namespace, bf16: bool) -> tuple[dict, dict]:
    """Every kind in its own process, alternating round by round: (per-phase ms lists,
    page faults per timed step) per kind."""
    ctx = mp.get_context("spawn")
    procs = {}
    for kind in args.kinds:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, kind, args.threads, bf16, args.steps))
        proc.start()
        child.close()
        procs[kind] = (conn, proc)
    times = {k: {p: [] for p in PHASES} for k in args.kinds}
    faults = dict.fromkeys(args.kinds, 0)
    try:
        for conn, _ in procs.values():
            conn.recv()  # ready
        for r in range(args.rounds + 1):  # round 0 warms up
            for kind, (conn, _) in procs.items():
                conn.send(r)
                out, n = conn.recv()
                if r:
                    for p in PHASES:
                        times[kind][p] += out[p]
                    faults[kind] += n
    finally:
        for conn, proc in procs.values():
            conn.send(None)
            proc.join(timeout=60)
    per_step = {k: v / (args.steps * args.rounds) for k, v in faults.items()}
    return times, per_step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per kind and round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "train_step.json")
    )
    ap.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)}"
    )
    args = ap.parse_args()
    asked = set(args.kinds.split(","))
    if not asked or not asked <= set(KINDS):
        ap.error(f"--kinds: choose among {', '.join(KINDS)}")
    args.kinds = [k for k in KINDS if k in asked]  # in KINDS order
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(threads=args.threads)
    precision = resolve_precision(args.bf16, cfg.batch_size, args.threads)
    times, faults = run_rounds(args, precision == "bfloat16")
    res: dict = {
        "benchmark": "train_step_before_after",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"neonsign": neonsign.__version__, "torch": torch.__version__},
        "threads": args.threads,
        "batch_size": cfg.batch_size,
        "precision": precision,
        "steps_per_kind": args.steps * args.rounds,
        "load_average_end": os.getloadavg()[0],
    }
    res["kinds"] = args.kinds
    for kind, phases in times.items():
        med = {p: statistics.median(v) for p, v in phases.items()}
        totals = [sum(t) for t in zip(*phases.values(), strict=True)]
        res[kind] = {
            "median_ms": med,
            "step_median_ms": statistics.median(totals),
            "page_faults_per_step": faults[kind],
        }
    ratios = {  # name: (slower kind, faster kind), reported when both ran
        **{f"speedup_step_{k}": ("before", k) for k in KINDS[1:]},
        "speedup_step_allocator": ("after_default_malloc", "after"),
        "speedup_step_c_augment": ("after_torch_prepare", "after"),
        "speedup_step_c_pool": ("after_torch_pool", "after"),
    }
    for name, (slow, fast) in ratios.items():
        if slow in res and fast in res:
            res[name] = res[slow]["step_median_ms"] / res[fast]["step_median_ms"]
    print(
        f"precision {precision}, {args.threads} thread(s), batch {cfg.batch_size}; median ms; "
        f"load {res['load_average_end']:.1f}"
    )
    print(f"{'step':<21}" + "".join(f"{p:>11}" for p in PHASES) + f"{'step':>11}{'faults':>9}")
    for kind in args.kinds:
        med = res[kind]["median_ms"]
        print(
            f"{kind:<21}"
            + "".join(f"{med[p]:>11.2f}" for p in PHASES)
            + f"{res[kind]['step_median_ms']:>11.2f}{res[kind]['page_faults_per_step']:>9.0f}"
        )
    print(", ".join(f"{name} {res[name]:.2f}x" for name in ratios if name in res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
