"""Serving benchmark: neonsign's server vs the learning path's FastAPI + PyTorch app.

Both are real uvicorn processes with one worker on 127.0.0.1, serving the same weights
(random TrafficSignNet weights unless --model names a model directory). Each gets a warm-up,
then the same bounded load: --requests POSTs of one image each (PNG, GTSRB-sized; real GTSRB
training images converted to PNG when $GTSRB_ROOT or a shared/gtsrb beside the checkout
exists, else synthetic)
from --concurrency concurrent keep-alive clients, stopping early at --duration seconds. The
servers run in turn, --rounds times alternating (machine noise hits all alike); the figures are
medians over rounds. Reported per server: throughput (ok requests / s), p50 / p99 latency,
errors, and the server process's resident memory (VmRSS after the load, VmHWM peak) from
/proc. Targets (docs/performance.md section 4): >= 3x the reference's throughput, zero errors,
RSS <= 1/3 of the reference's.

The load generator (httpx, asyncio, prebuilt multipart bodies) shares the machine's cores
with the server, so absolute figures are lower bounds; the ratio is what to read.

Usage: python benchmarks/serve.py [--requests 2000] [--concurrency 16] [--duration 120]
       [--rounds 2] [--model DIR] [--out benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # serve_helpers: model dirs, servers, load

from serve_helpers import (  # noqa: E402
    encode,
    free_port,
    make_model_dir,
    run_load,
    running_server,
    serve_argv,
    sign_like_images,
)


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes (Linux /proc)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def load_images(n: int) -> tuple[list[bytes], str]:
    """n PNG images: real GTSRB training images if available, else synthetic ones."""
    roots = [Path(os.environ["GTSRB_ROOT"])] if os.environ.get("GTSRB_ROOT") else []
    roots += [HERE.parents[1] / "shared" / "gtsrb", HERE.parents[2] / "shared" / "gtsrb"]
    for root in roots:
        ppms = sorted(root.glob("**/Final_Training/Images/*/*.ppm"))
        if ppms:
            from neonsign.preprocess import read_ppm

            step = max(1, len(ppms) // n)
            return [encode(read_ppm(p), "PNG") for p in ppms[::step][:n]], f"GTSRB ({root})"
    return [encode(img, "PNG") for img in sign_like_images(n, seed=0)], "synthetic"


def bench_server(
    name: str,
    argv: list[str],
    port: int,
    env: dict[str, str],
    path: str,
    blobs: list[bytes],
    args: argparse.Namespace,
    log: Path,
) -> dict:
    with running_server(argv, port, env=env, log=log) as (base, proc):
        asyncio.run(run_load(base, path, blobs, min(100, args.requests), args.concurrency, 60))
        res = asyncio.run(
            run_load(base, path, blobs, args.requests, args.concurrency, args.duration)
        )
        mem = proc_memory(proc.pid)
    lat = sorted(res["latencies"])
    pct = (lambda q: float(np.percentile(lat, q)) * 1e3) if lat else (lambda q: float("nan"))
    return {
        "server": name,
        "sent": res["sent"],
        "ok": res["ok"],
        "errors": len(res["failures"]),
        "error_statuses": sorted(set(res["failures"])),
        "elapsed_s": res["elapsed"],
        "throughput_rps": res["ok"] / res["elapsed"],
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "rss_bytes": mem.get("VmRSS", 0),
        "hwm_bytes": mem.get("VmHWM", 0),
    }


def median_of(rows: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=120.0, help="cap per run, seconds")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--model", type=Path, help="model directory (default: random weights)")
    ap.add_argument("--threads", type=int, help="neonsign serve --threads")
    ap.add_argument(
        "--servers",
        default="neonsign,reference,reference-1t",
        help="comma-separated subset to run (the summary needs all three)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="neonsign_serve_bench_"))
    model = args.model or make_model_dir(tmp / "model", seed=0)
    blobs, source = load_images(args.images)
    print(
        f"{len(blobs)} PNG images from {source}; {args.requests} requests, "
        f"{args.concurrency} concurrent, cap {args.duration:.0f} s, {args.rounds} round(s)"
    )

    ref_argv = lambda port: [  # noqa: E731
        sys.executable,
        "-m",
        "uvicorn",
        "reference_server:app",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    servers = {
        # name: (argv for a port, extra environment, route)
        "neonsign": (
            lambda port: serve_argv(
                model, port, *(["--threads", str(args.threads)] if args.threads else [])
            ),
            {},
            "/predict",
        ),
        # the learning path's app as it is (PyTorch's default threads) ...
        "reference": (ref_argv, {"NEONSIGN_REFERENCE_MODEL": str(model)}, "/predict/"),
        # ... and with one intra-op thread, its best configuration on a small, busy machine
        "reference-1t": (
            ref_argv,
            {"NEONSIGN_REFERENCE_MODEL": str(model), "NEONSIGN_REFERENCE_THREADS": "1"},
            "/predict/",
        ),
    }
    servers = {k: v for k, v in servers.items() if k in args.servers.split(",")}
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for rnd in range(args.rounds):
        order = list(servers) if rnd % 2 == 0 else list(servers)[::-1]
        for name in order:
            make_argv, env, path = servers[name]
            port = free_port()
            row = bench_server(
                name, make_argv(port), port, env, path, blobs, args, tmp / f"{name}{rnd}.log"
            )
            runs[name].append(row)
            print(
                f"  round {rnd + 1} {name:<12} {row['throughput_rps']:8.1f} req/s  "
                f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  "
                f"RSS {row['rss_bytes'] / 2**20:6.1f} MiB",
                flush=True,
            )

    if len(servers) < 3:
        return 0
    summary = {}
    for name, rows in runs.items():
        summary[name] = {
            k: median_of(rows, k)
            for k in ("throughput_rps", "p50_ms", "p99_ms", "rss_bytes", "hwm_bytes")
        }
        summary[name]["errors"] = sum(r["errors"] for r in rows)
        summary[name]["requests"] = sum(r["sent"] for r in rows)
    ns = summary["neonsign"]
    # the targets are checked against the reference's better configuration
    best = max(("reference", "reference-1t"), key=lambda n: summary[n]["throughput_rps"])
    ref = summary[best]
    ratios = {
        "against": best,
        "throughput_x": ns["throughput_rps"] / ref["throughput_rps"],
        "throughput_x_default_threads": ns["throughput_rps"]
        / summary["reference"]["throughput_rps"],
        "p99_ratio": ns["p99_ms"] / ref["p99_ms"],
        "rss_ratio": ns["rss_bytes"]
        / min(summary[n]["rss_bytes"] for n in ("reference", "reference-1t")),
    }
    targets = {
        "throughput_x>=3": ratios["throughput_x"] >= 3.0,
        "zero_errors": all(s["errors"] == 0 for s in summary.values()),
        "rss_ratio<=1/3": ratios["rss_ratio"] <= 1 / 3,
    }

    print()
    print(
        f"{'server':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS MiB':>8} {'HWM MiB':>8}"
    )
    for name, s in summary.items():
        print(
            f"{name:<12} {s['throughput_rps']:9.1f} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} "
            f"{s['errors']:7d} {s['rss_bytes'] / 2**20:8.1f} {s['hwm_bytes'] / 2**20:8.1f}"
        )
    print(
        f"throughput {ratios['throughput_x']:.2f}x {best} "
        f"({ratios['throughput_x_default_threads']:.2f}x the reference as shipped); "
        f"p99 {ratios['p99_ratio']:.2f}x; RSS {ratios['rss_ratio']:.2f}x the smaller reference"
    )
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "serve",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "config": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "duration_cap_s": args.duration,
            "rounds": args.rounds,
            "images": source,
            "model": str(args.model) if args.model else "random weights",
        },
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
        "targets": targets,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
