"""Training step before/after issue 18 part 3, side by side: per-phase milliseconds.

"before" is the step as it was (uint8 -> float /255, ``F.affine_grid`` + ``F.grid_sample``,
jitter, a separate normalisation and channels_last copy; ``F.dropout`` before fc1 and fc2);
"after" is the training loop's step now (:func:`neonsign._trainer.prepare_batch`, the cheaper
dropout mask of :func:`neonsign._trainer._add_dropout`). Same TrafficSignNet initialisation,
batch, thread count and precision choice; the two step kinds alternate in every round so that
the load of a shared machine hits both alike. Medians over all timed steps.

Usage: python benchmarks/train_step.py [--steps N] [--rounds R] [--threads T] [--bf16|--no-bf16]
[--out FILE] (default benchmarks/results/train_step.json).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import neonsign
from neonsign._trainer import _add_dropout, prepare_batch, resolve_precision
from neonsign.model import TrafficSignNet
from neonsign.train import TrainConfig

PHASES = ("augment", "forward", "backward", "optimizer")


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


def make_step(kind: str, cfg: TrainConfig, bf16: bool):
    """A closure running one training step of ``kind`` ("before"/"after") on a batch."""
    torch.manual_seed(0)
    model = TrafficSignNet()
    (before_dropout if kind == "before" else _add_dropout)(model, cfg.dropout)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator().manual_seed(1)
    mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)

    def step(u8: torch.Tensor, y: torch.Tensor, out: dict[str, list[float]]) -> None:
        t0 = time.perf_counter()
        if kind == "before":
            x = before_prepare(u8, gen, cfg)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per kind and round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "train_step.json")
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(threads=args.threads)
    precision = resolve_precision(args.bf16, cfg.batch_size, args.threads)
    bf16 = precision == "bfloat16"
    data = torch.randint(0, 256, (4096, 32, 32, 3), dtype=torch.uint8)
    labels = torch.randint(0, 43, (4096,))
    steps = {k: make_step(k, cfg, bf16) for k in ("before", "after")}
    times = {k: {p: [] for p in PHASES} for k in steps}
    gen = torch.Generator().manual_seed(2)
    for r in range(args.rounds + 1):  # round 0 warms up
        for kind, step in steps.items():
            sink = times[kind] if r else {p: [] for p in PHASES}
            for _ in range(args.steps):
                idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
                step(data[idx], labels[idx], sink)
    res: dict = {
        "benchmark": "train_step_before_after",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"neonsign": neonsign.__version__, "torch": torch.__version__},
        "threads": args.threads,
        "batch_size": cfg.batch_size,
        "precision": precision,
        "steps_per_kind": args.steps * args.rounds,
    }
    for kind, phases in times.items():
        med = {p: statistics.median(v) for p, v in phases.items()}
        totals = [sum(t) for t in zip(*phases.values(), strict=True)]
        res[kind] = {"median_ms": med, "step_median_ms": statistics.median(totals)}
    res["speedup_step"] = res["before"]["step_median_ms"] / res["after"]["step_median_ms"]
    res["speedup_augment"] = (
        res["before"]["median_ms"]["augment"] / res["after"]["median_ms"]["augment"]
    )
    res["speedup_forward"] = (
        res["before"]["median_ms"]["forward"] / res["after"]["median_ms"]["forward"]
    )
    print(f"precision {precision}, {args.threads} thread(s), batch {cfg.batch_size}; median ms")
    print(f"{'step':<8}" + "".join(f"{p:>11}" for p in PHASES) + f"{'step':>11}")
    for kind in steps:
        med = res[kind]["median_ms"]
        print(
            f"{kind:<8}"
            + "".join(f"{med[p]:>11.2f}" for p in PHASES)
            + f"{res[kind]['step_median_ms']:>11.2f}"
        )
    print(
        f"after vs before: step {res['speedup_step']:.2f}x, augment {res['speedup_augment']:.2f}x, "
        f"forward {res['speedup_forward']:.2f}x"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
