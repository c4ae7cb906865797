"""Does the profile show native's real 2-thread speed when libtorch runs beside it? (issue 15.4)

The main job profiles every available backend (native kernels and libtorch toggles) in one
process, interleaved, at one thread count. libtorch's OpenMP workers spin after each of its
passes and used to take the second core from the native passes that followed, so the 2-thread
native rows understated native. This runs ``neonsign profile`` -- the same code path, same
backend set, batch 64 -- at 1 and at 2 threads, each in a fresh process, in these modes:

* ``cli``: the command as shipped (it sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads);
* ``spinning``: the old behaviour: libtorch's default wait policy (torch loaded before the
  profiler could choose) and no settle pause before native passes (``SETTLE_SECONDS = 0``);
* ``settle``: libtorch's default (spinning) policy, as when a user imported torch first, with
  the profiler's settle pause before each native pass that follows libtorch;
* ``native-only``: only the native backend, no libtorch in the process (the reference).

and prints native's speedup from 1 to 2 threads, ``t1 / t2``, per mode (goal on a 2-core
machine: >= 1.6 in ``cli``): of the median forward pass (median over ``--rounds``) and of the
fastest forward pass (min over all runs: on a machine shared with other jobs the least
disturbed figure, since a pass can only be slowed by them). Rounds alternate the modes and
thread counts so load drift hits them alike.

    python benchmarks/profile_threads.py [--rounds 3] [--repeats 20] [--modes cli,settle,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SPINNING = """
import sys, torch  # loaded first: libgomp keeps its default (spinning) wait policy
import neonsign.profiler as p
from neonsign import cli
p.SETTLE_SECONDS = 0.0
sys.exit(cli.main(sys.argv[1:]))
"""

_SETTLE = """
import sys, torch  # loaded first: libgomp keeps its default (spinning) wait policy
from neonsign import cli
sys.exit(cli.main(sys.argv[1:]))  # the profiler's settle pause lets the spinners sleep
"""


def run_profile(mode: str, threads: int, args: argparse.Namespace, out: Path) -> dict:
    """One ``neonsign profile`` run in a fresh process; its JSON report."""
    common = ["profile", "--batch", str(args.batch), "--threads", str(threads)]
    common += ["--repeats", str(args.repeats), "--no-aten", "--quiet", "--json", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if mode in ("spinning", "settle"):
        cmd = [sys.executable, "-c", _SPINNING if mode == "spinning" else _SETTLE, *common]
    else:
        cmd = [sys.executable, "-m", "neonsign", *common]
        if mode == "native-only":
            cmd += ["--backends", "native"]
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def native_ms(report: dict, stat: str) -> float:
    entry = next(b for b in report["backends"] if b["name"] == "native")
    return float(entry["total"][stat]) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default=None)
    ap.add_argument("--modes", default="cli,settle,spinning,native-only")
    args = ap.parse_args()
    modes = tuple(args.modes.split(","))
    ms: dict[str, dict[int, list[float]]] = {m: {1: [], 2: []} for m in modes}
    best: dict[str, dict[int, float]] = {m: {1: float("inf"), 2: float("inf")} for m in modes}
    policy: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in modes:
                for threads in (1, 2) if r % 2 == 0 else (2, 1):
                    report = run_profile(mode, threads, args, Path(tmp) / "p.json")
                    ms[mode][threads].append(native_ms(report, "median_ns"))
                    best[mode][threads] = min(best[mode][threads], native_ms(report, "min_ns"))
                    torch_rows = [b for b in report["backends"] if b["family"] == "torch"]
                    if torch_rows:
                        policy[mode] = str(torch_rows[0]["settings"].get("omp_wait_policy"))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    figures = {}
    for mode in modes:
        t1, t2 = statistics.median(ms[mode][1]), statistics.median(ms[mode][2])
        b1, b2 = best[mode][1], best[mode][2]
        figures[mode] = {
            "native_1thread_ms": t1,
            "native_2threads_ms": t2,
            "speedup_2_over_1": t1 / t2,
            "native_1thread_min_ms": b1,
            "native_2threads_min_ms": b2,
            "speedup_2_over_1_min": b1 / b2,
            "runs_ms": {str(k): v for k, v in ms[mode].items()},
            "omp_wait_policy": policy.get(mode),
        }
        print(
            f"{mode:12s} native batch {args.batch}: median 1 thread {t1:6.3f} ms, 2 threads "
            f"{t2:6.3f} ms -> {t1 / t2:.2f}x; fastest {b1:6.3f} / {b2:6.3f} ms -> {b1 / b2:.2f}x"
            f"   (libtorch waits: {policy.get(mode, 'not loaded')})"
        )
    print("goal: cli >= 1.6x on a 2-core machine")
    out = {
        "benchmark": "profile_threads",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "node": platform.node(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "batch": args.batch,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "figures": figures,
        "goal": {"mode": "cli", "speedup_2_over_1": 1.6},
    }
    path = Path(args.json or Path(__file__).resolve().parent / "results" / "profile_threads.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
