"""Serving benchmark: ``neonsign serve`` vs the learning path's server vs the framework floor,
driven by wrk (a C load generator), side by side in one run.

Three servers, each a real uvicorn on 127.0.0.1 with the same worker count, serving the same
weights (random TrafficSignNet weights unless --model names a model directory):

* ``neonsign``: ``neonsign serve MODEL --workers N``;
* ``reference``: the learning path's app (``reference_server:app``: FastAPI + PyTorch with one
  intra-op thread + Pillow, inference in the async endpoint);
* ``floor``: a FastAPI app that only reads the multipart upload and answers a constant
  (``reference_server:floor_app``), the cost of the framework itself.

Each is driven by ``wrk -t2 -c16`` with a Lua script that sends the learning path's request:
``POST /predict/``, multipart field ``file``, a PNG (GTSRB training images converted to PNG
when $GTSRB_ROOT or a shared/gtsrb beside the checkout exists, else synthetic sign-like
images), cycling through --images bodies. After a --warmup run, a --duration run is measured:
requests/s, p50/p99 latency (wrk's latency distribution), non-2xx answers and socket errors,
the RSS summed over the server's process tree (uvicorn's supervisor and its workers), and the
CPU time that tree (and wrk) spent per request. The
servers run in turn, --rounds times alternating order (machine noise hits all alike), for each
worker count in --workers; figures are medians over rounds.

Goals (issue 15): neonsign >= 3x the reference's req/s and >= 0.7 of the floor's, p99 below
the reference's, RSS <= 1/3 of the reference's.

wrk shares the cores with the servers, so absolute figures are lower bounds; the ratios,
measured in one run on the same machine, are what to read.

Usage: python benchmarks/serve.py [--workers 1,2] [--duration 10] [--warmup 3] [--rounds 2]
       [--connections 16] [--model DIR] [--out benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # serve_helpers: model dirs, servers

from serve_helpers import (  # noqa: E402
    encode,
    free_port,
    make_model_dir,
    multipart,
    running_server,
    serve_argv,
    sign_like_images,
)

BOUNDARY = "neonsignwrkboundary"

#: wrk's Lua script: prebuilt requests (one per body file), cycled; the summary printed as one
#: JSON line (latencies in microseconds).
WRK_LUA = r"""
local requests = {}
local n = 0
local idx = 0

init = function(args)
  local path, dir, count, ctype = args[1], args[2], tonumber(args[3]), args[4]
  for i = 0, count - 1 do
    local f = assert(io.open(dir .. "/" .. i .. ".body", "rb"))
    local body = f:read("*a")
    f:close()
    requests[#requests + 1] = wrk.format("POST", path, {["Content-Type"] = ctype}, body)
  end
  n = #requests
  idx = math.random(0, n - 1)
end

request = function()
  idx = idx % n + 1
  return requests[idx]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "non_2xx": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_rss(pid: int) -> int:
    """Resident memory (VmRSS, bytes) of ``pid`` and all its descendants (Linux /proc)."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants (Linux /proc):
    what the server spends per request, whatever share of the cores the machine gives it."""
    total = 0.0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


def write_bodies(blobs: list[bytes], folder: Path) -> str:
    """One multipart body file per image (the learning path's upload); returns the content
    type."""
    folder.mkdir(parents=True, exist_ok=True)
    ctype = ""
    for i, blob in enumerate(blobs):
        body, ctype = multipart("file", f"{i}.png", blob, boundary=BOUNDARY)
        (folder / f"{i}.body").write_bytes(body)
    return ctype


def run_wrk(
    base: str,
    args: argparse.Namespace,
    script: Path,
    bodies: Path,
    n: int,
    ctype: str,
    seconds: float,
) -> dict[str, Any]:
    """One wrk run against ``base + /predict/``; wrk's summary as a dict."""
    cmd = [
        "wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s",
        "--timeout", "10s", "-s", str(script), base,
        "--", "/predict/", str(bodies), str(n), ctype,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    match = re.search(r"^WRKJSON (.*)$", out.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(match.group(1)))


def check_answer(base: str, blob: bytes) -> None:
    """The server answers the learning path's request with a class (not an error)."""
    import httpx

    r = httpx.post(f"{base}/predict/", files={"file": ("0.png", blob, "image/png")}, timeout=30)
    if r.status_code != 200 or not 0 <= r.json().get("predicted_class", -1) < 43:
        raise RuntimeError(f"{base}/predict/ answered {r.status_code}: {r.text[:200]}")


def server_argv(name: str, model: Path, port: int, workers: int) -> list[str]:
    if name == "neonsign":
        return serve_argv(model, port, "--workers", str(workers))
    target = "reference_server:app" if name == "reference" else "reference_server:floor_app"
    return [
        sys.executable, "-m", "uvicorn", target, "--app-dir", str(HERE),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning",
    ]  # fmt: skip


def bench_one(
    name: str,
    workers: int,
    model: Path,
    blobs: list[bytes],
    args: argparse.Namespace,
    tmp: Path,
    ctype: str,
) -> dict[str, Any]:
    """Start one server, check its answer, warm it, measure it with wrk, stop it."""
    port = free_port()
    env = {"NEONSIGN_REFERENCE_MODEL": str(model), "NEONSIGN_REFERENCE_THREADS": "1"}
    argv = server_argv(name, model, port, workers)
    script = tmp / "multipart.lua"
    with running_server(argv, port, env=env, log=tmp / f"{name}-{workers}.log") as (base, proc):
        check_answer(base, blobs[0])
        if args.warmup > 0:
            run_wrk(base, args, script, tmp / "bodies", len(blobs), ctype, args.warmup)
        cpu0, wrk0 = tree_cpu(proc.pid), _children_cpu()
        res = run_wrk(base, args, script, tmp / "bodies", len(blobs), ctype, args.duration)
        cpu, wrk_cpu = tree_cpu(proc.pid) - cpu0, _children_cpu() - wrk0
        rss = tree_rss(proc.pid)
    errors = res["connect_errors"] + res["read_errors"] + res["write_errors"] + res["timeouts"]
    return {
        "server": name,
        "workers": workers,
        "requests": res["requests"],
        "rps": res["requests"] / (res["duration_us"] / 1e6),
        "p50_ms": res["p50_us"] / 1e3,
        "p90_ms": res["p90_us"] / 1e3,
        "p99_ms": res["p99_us"] / 1e3,
        "max_ms": res["max_us"] / 1e3,
        "non_2xx": res["non_2xx"],
        "socket_errors": errors,
        "rss_bytes": rss,
        "cpu_us_per_request": cpu / max(res["requests"], 1) * 1e6,
        "wrk_cpu_us_per_request": wrk_cpu / max(res["requests"], 1) * 1e6,
    }


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SERVERS = ("neonsign", "reference", "floor")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds per server, and the ratios against the goals."""
    med = {
        name: {
            key: float(statistics.median(r[key] for r in rows if r["server"] == name))
            for key in ("rps", "p50_ms", "p99_ms", "rss_bytes", "cpu_us_per_request")
        }
        for name in SERVERS
    }
    for name in SERVERS:
        bad = [r for r in rows if r["server"] == name]
        med[name]["failed_requests"] = sum(r["non_2xx"] + r["socket_errors"] for r in bad)
    ns, ref, floor = med["neonsign"], med["reference"], med["floor"]
    ratios = {
        "rps_vs_reference": ns["rps"] / ref["rps"],
        "rps_vs_floor": ns["rps"] / floor["rps"],
        "p99_vs_reference": ns["p99_ms"] / ref["p99_ms"],
        "rss_vs_reference": ns["rss_bytes"] / ref["rss_bytes"],
        # CPU per request: the same comparison, independent of the share of the cores the
        # machine gave each run (not a goal; what to read on a busy machine)
        "cpu_per_request_reference_vs_neonsign": ref["cpu_us_per_request"]
        / ns["cpu_us_per_request"],
        "cpu_per_request_floor_vs_neonsign": floor["cpu_us_per_request"] / ns["cpu_us_per_request"],
    }
    goals = {
        "rps_vs_reference>=3": ratios["rps_vs_reference"] >= 3.0,
        "rps_vs_floor>=0.7": ratios["rps_vs_floor"] >= 0.7,
        "p99_below_reference": ratios["p99_vs_reference"] < 1.0,
        "rss_vs_reference<=1/3": ratios["rss_vs_reference"] <= 1 / 3,
        "no_failed_requests": all(m["failed_requests"] == 0 for m in med.values()),
    }
    return {"servers": med, "ratios": ratios, "goals": goals}


def print_summary(workers: int, s: dict[str, Any]) -> None:
    print(f"\n{workers} worker(s): {'server':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'RSS MiB':>8} {'CPU us/req':>10} {'failed':>7}")  # fmt: skip
    for name, m in s["servers"].items():
        print(f"{'':13}{name:<10} {m['rps']:8.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} "
              f"{m['rss_bytes'] / 2**20:8.1f} {m['cpu_us_per_request']:10.0f} "
              f"{m['failed_requests']:7.0f}")  # fmt: skip
    r = s["ratios"]
    print(f"  neonsign/reference {r['rps_vs_reference']:.2f}x (goal 3), neonsign/floor "
          f"{r['rps_vs_floor']:.2f} (goal 0.7), p99 {r['p99_vs_reference']:.2f}x the "
          f"reference's, RSS {r['rss_vs_reference']:.2f}x (goal <= 0.33); CPU per request: "
          f"reference {r['cpu_per_request_reference_vs_neonsign']:.2f}x neonsign's, floor "
          f"{r['cpu_per_request_floor_vs_neonsign']:.2f}x")  # fmt: skip
    print("  goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in s["goals"].items()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="uvicorn worker counts, comma-separated")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before it")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--model", type=Path, help="model directory (default: random weights)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="neonsign_serve_bench_"))
    model = args.model or make_model_dir(tmp / "model", seed=0)
    blobs, source = load_images(args.images)
    ctype = write_bodies(blobs, tmp / "bodies")
    (tmp / "multipart.lua").write_text(WRK_LUA)
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"{len(blobs)} PNG images from {source}; wrk -t{args.threads} -c{args.connections}, "
          f"{args.warmup:g} s warm-up + {args.duration:g} s measured, {args.rounds} round(s), "
          f"workers {worker_counts}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    summaries: dict[str, Any] = {}
    for workers in worker_counts:
        for rnd in range(args.rounds):
            order = SERVERS if rnd % 2 == 0 else SERVERS[::-1]
            for name in order:
                row = bench_one(name, workers, model, blobs, args, tmp, ctype)
                row["round"] = rnd
                rows.append(row)
                print(f"  {workers}w round {rnd + 1} {name:<10} {row['rps']:8.0f} req/s  p50 "
                      f"{row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms  RSS "
                      f"{row['rss_bytes'] / 2**20:6.1f} MiB  CPU "
                      f"{row['cpu_us_per_request']:5.0f} us/req (wrk "
                      f"{row['wrk_cpu_us_per_request']:3.0f})  failed "
                      f"{row['non_2xx'] + row['socket_errors']}", flush=True)  # fmt: skip
        summaries[str(workers)] = summarise([r for r in rows if r["workers"] == workers])
        print_summary(workers, summaries[str(workers)])

    command = "python benchmarks/serve.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = {
        "benchmark": "serve",
        "command": command.strip(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "config": {
            "load": f"wrk -t{args.threads} -c{args.connections}, multipart PNG upload to /predict/",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "images": source,
            "model": str(args.model) if args.model else "random weights",
        },
        "runs": rows,
        "summary": summaries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwrote {args.out}\nreproduce: {result['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
