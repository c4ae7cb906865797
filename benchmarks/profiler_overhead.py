"""Cost of the profiler's span recorder: one begin/end pair, recording on and off.

Measures, in one process and side by side, the time per iteration of a Python loop that
(a) does nothing, (b) calls Recorder.begin/end with the recorder disabled, (c) with it enabled,
and (d) uses the ``with rec.span(...)`` context manager, off and on. The difference to (a) is the
profiler's cost per span as seen from Python; the C part alone is measured with the cycle
counter where available. Prints a table and writes JSON.

    python benchmarks/profiler_overhead.py [--iters 200000] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from neonsign import __version__, _native
from neonsign.profiler import Recorder, machine_info


def _loop_none(rec: Recorder, n: int, span_id: int) -> None:
    for _ in range(n):
        pass


def _loop_begin_end(rec: Recorder, n: int, span_id: int) -> None:
    begin, end = rec.begin, rec.end
    for _ in range(n):
        begin(span_id)
        end(span_id)


def _loop_span(rec: Recorder, n: int, span_id: int) -> None:
    span = rec.span
    for _ in range(n):
        with span(span_id):
            pass


CASES = [
    ("empty loop", _loop_none, False),
    ("begin/end, recorder off", _loop_begin_end, False),
    ("begin/end, recorder on", _loop_begin_end, True),
    ("with span(), recorder off", _loop_span, False),
    ("with span(), recorder on", _loop_span, True),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default="profiler_overhead.json")
    ap.add_argument(
        "--quick", action="store_true", help="CI smoke run: 20,000 iterations, 2 repeats"
    )
    args = ap.parse_args()
    if args.quick:
        args.iters, args.repeats = 20_000, 2

    rec = Recorder(capacity=args.iters + 16)
    span_id = rec.intern("span")
    times: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _ in range(args.repeats):  # interleaved, so drift hits every case alike
        for name, fn, enabled in CASES:
            rec.reset()
            rec.enabled = enabled
            t0 = time.perf_counter_ns()
            fn(rec, args.iters, span_id)
            times[name].append((time.perf_counter_ns() - t0) / args.iters)
    base = statistics.median(times["empty loop"])
    rows = []
    print(f"{'case':<28} {'median ns/iter':>15} {'min':>8} {'max':>8} {'cost vs empty':>14}")
    for name, _, _ in CASES:
        med = statistics.median(times[name])
        rows.append(
            {
                "case": name,
                "median_ns": med,
                "min_ns": min(times[name]),
                "max_ns": max(times[name]),
                "cost_ns": med - base,
            }
        )
        print(
            f"{name:<28} {med:15.1f} {min(times[name]):8.1f} {max(times[name]):8.1f} "
            f"{med - base:14.1f}"
        )

    # the C side alone: cycles of an empty span as recorded by the recorder itself
    rec.reset()
    rec.enabled = True
    for _ in range(10_000):
        rec.begin(span_id)
        rec.end(span_id)
    r = rec.records()
    hz = _native.prof_cycles_hz()
    inner = {
        "median_ns": float(statistics.median(r["duration_ns"].tolist())),
        "median_cycles": float(statistics.median(r["cycles"].tolist())) if hz else None,
        "cycle_counter_hz": hz,
    }
    print(
        f"empty span as recorded (end - begin inside C, incl. one Python call): "
        f"{inner['median_ns']:.0f} ns" + (f", {inner['median_cycles']:.0f} cycles" if hz else "")
    )
    out = {
        "benchmark": "profiler_overhead",
        "neonsign": __version__,
        "python": platform.python_version(),
        "machine": machine_info(),
        "iters": args.iters,
        "repeats": args.repeats,
        "cases": rows,
        "empty_span": inner,
    }
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
