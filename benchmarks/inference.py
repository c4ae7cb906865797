"""Inference benchmark: the native engine (every available kernel, FP32 and int8) vs PyTorch
eager and ONNX Runtime (FP32, and int8 from its own static quantization) on the same
TrafficSignNet weights, batch 1 and 64, 1 and 2 threads.

int8 (issue 16): the native int8 engine (neonsign.quantize, every int8 kernel but the scalar
reference) and ONNX Runtime's int8 (``onnxruntime.quantization.quantize_static``: QDQ,
per-channel int8 weights, uint8 activations, MinMax calibration) are calibrated on the same
images (the benchmark's batch-64 input; the native engine with ``--method``, default minmax like
ORT). Their rows report the speedup over the best FP32 native kernel ("vs fp32") and their top-1
agreement with PyTorch's FP32 logits.

Method (see /work/shared/docs/performance.md section 2): for each (batch, threads) all backends
are timed side by side, interleaved round by round (so machine noise hits them alike; in each
round every backend makes one untimed call to re-warm its caches, then one timed call), after a
warm-up; figures are medians of the rounds (the minimum of the rounds is reported too: on a
loaded shared machine it is the less noisy estimate of what the code can do). PyTorch runs under ``torch.no_grad()`` with
``torch.set_num_threads(t)`` in three variants (default, oneDNN off, channels_last input) and the
fastest is the reference; ONNX Runtime runs the model exported with ``torch.onnx.export`` with
``intra_op_num_threads = t``. Correctness is reported beside speed (max |logit difference| and
top-1 agreement against PyTorch).

Peak: FP32 FMA peak = FMA units x lanes x 2 flops x clock; the clock is measured (a dependent
add chain, turbo included; /proc/cpuinfo's nominal MHz is reported too). Assumed FMA units:
2 for AVX-512 and AVX2 (Sapphire Rapids-class Xeon), 2 x 128-bit for NEON (Neoverse N1).

Usage: python benchmarks/inference.py [--rounds N] [--out FILE] [--kernels avx512,avx2]
       [--int8-kernels avx512vnni] [--no-int8] [--model DIR]
Writes JSON (default benchmarks/results/inference.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import neonsign
from neonsign import _native
from neonsign.artifacts import load_any
from neonsign.backends import ort_session_options
from neonsign.engine import Engine, available_kernels

FLOP_PER_IMAGE = 8.4e6  # 4.2 M multiply-adds
FMA_FLOPS_PER_CYCLE = {"avx512": 2 * 16 * 2, "avx2": 2 * 8 * 2, "neon": 2 * 4 * 2, "ref": None}


def torch_model(state_dict: dict[str, np.ndarray]):
    """TrafficSignNet (the learning path's model) with the given weights, eval mode."""
    import torch

    from neonsign.model import TrafficSignNet

    net = TrafficSignNet().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return net


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    from neonsign.engine import WEIGHT_SHAPES

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in WEIGHT_SHAPES.items():
        fan_in = int(np.prod(WEIGHT_SHAPES[name.split(".")[0] + ".weight"][1:]))
        out[name] = rng.uniform(-1, 1, size=shape).astype(np.float32) / np.sqrt(fan_in)
    return out


def cpu_info() -> dict:
    info: dict = {"machine": platform.machine(), "processor": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu MHz", "CPU part", "CPU implementer") and key not in info:
                info[key] = val.strip()
            if key in ("flags", "Features") and "flags" not in info:
                info["flags"] = val.split()
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    info["measured_ghz"] = round(_native.cpu_ghz(), 3)
    return info


def export_onnx(net, path: Path) -> str | None:
    """Export to ONNX; returns None on success or the reason it failed."""
    import torch

    dummy = torch.zeros(1, 3, 32, 32)
    kwargs = dict(
        input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}}, opset_version=17
    )
    errors = []
    for dynamo in (False, True):
        try:
            torch.onnx.export(net, (dummy,), str(path), dynamo=dynamo, **kwargs)
            return None
        except Exception as exc:  # noqa: BLE001 - try the other exporter
            errors.append(f"dynamo={dynamo}: {type(exc).__name__}: {exc}")
    return "; ".join(errors)


def ort_int8(onnx_path: Path, calib: np.ndarray, out_path: Path) -> str | None:
    """ONNX Runtime's static int8 quantization of onnx_path (QDQ, per-channel weights, MinMax
    on `calib`) into out_path; None on success, else the reason it failed."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"x": calib[i : i + 16]} for i in range(0, len(calib), 16)])

            def get_next(self):  # noqa: ANN202 - ORT's interface
                return next(self.batches, None)

        quantize_static(
            str(onnx_path),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return None
    except Exception as exc:  # noqa: BLE001 - reported in the JSON, the rest still runs
        return f"{type(exc).__name__}: {exc}"


def ort_backends(
    ort: object, paths: dict[str, Path], threads: int, x: np.ndarray
) -> dict[str, Callable[[], object]]:
    """One ONNX Runtime session per model file (name -> path), ``threads`` intra-op threads."""
    out: dict[str, Callable[[], object]] = {}
    for name, path in paths.items():
        so = ort_session_options(threads)  # no spinning threads between the timed backends
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
        out[name] = lambda sess=sess: sess.run(None, {"x": x})
    return out


def add_int8_engines(
    engines: dict[str, Engine],
    sd: dict[str, np.ndarray],
    calib: np.ndarray,
    args: argparse.Namespace,
) -> list[str]:
    """Add an int8 engine per int8 kernel (``int8-<kernel>``), calibrated on ``calib``."""
    from neonsign.engine import available_int8_kernels
    from neonsign.quantize import quantization_section

    section = quantization_section(sd, calib, method=args.method)
    kernels = (
        args.int8_kernels.split(",")
        if args.int8_kernels
        else [k for k in available_int8_kernels() if k != "ref"] or ["ref"]
    )
    for k in kernels:
        engines[f"int8-{k}"] = Engine(sd, kernel=k, quantization=section)
    return kernels


def bench(
    backends: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(median, minimum) seconds per call of each backend, timed interleaved round by round."""
    for fn in backends.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in backends}
    for _ in range(rounds):
        for name, fn in backends.items():
            fn()  # re-warm this backend's caches after the others ran; time the next call
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return (
        {k: statistics.median(v) for k, v in samples.items()},
        {k: min(v) for k, v in samples.items()},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rounds", type=int, default=0, help="timed rounds (default: 200 at batch 1, 30 at 64)"
    )
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    ap.add_argument("--kernels", default="", help="native kernels (default: all but ref)")
    ap.add_argument("--int8-kernels", default="", help="int8 kernels (default: all but ref)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    ap.add_argument("--method", default="minmax", help="native int8 calibration method")
    ap.add_argument("--model", default="", help="model directory (default: random weights)")
    ap.add_argument("--out", default="benchmarks/results/inference.json")
    ap.add_argument(
        "--quick", action="store_true", help="CI smoke run: 5 rounds, batches 1,16, 1 thread"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.batches, args.threads = 5, "1,16", "1"

    import torch

    threads_list = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    kernels = (
        args.kernels.split(",")
        if args.kernels
        else [k for k in available_kernels() if k != "ref"] or ["ref"]
    )
    neonsign.set_threads(max(threads_list))

    sd = load_any(args.model)[0] if args.model else random_state_dict(0)
    net = torch_model(sd)
    rng = np.random.default_rng(1)
    inputs = {b: rng.uniform(-1, 1, size=(b, 3, 32, 32)).astype(np.float32) for b in batches}
    engines = {k: Engine(sd, kernel=k) for k in kernels}
    calib = rng.uniform(-1, 1, size=(64, 3, 32, 32)).astype(np.float32)
    int8_kernels = [] if args.no_int8 else add_int8_engines(engines, sd, calib, args)

    ort = None
    ort_note = None
    ort_int8_note: str | None = "not run (--no-int8 or no ONNX Runtime)"
    ort_int8_path: Path | None = None
    tmp = tempfile.TemporaryDirectory()
    try:
        import onnxruntime as ort  # noqa: F811

        onnx_path = Path(tmp.name) / "trafficsignnet.onnx"
        ort_note = export_onnx(net, onnx_path)
        if ort_note:
            ort = None
    except ImportError as exc:
        ort_note = f"onnxruntime not installed: {exc}"
    ort_paths = {} if ort is None else {"onnxruntime": onnx_path}
    if ort is not None and not args.no_int8:
        ort_int8_path = Path(tmp.name) / "trafficsignnet-int8.onnx"
        ort_int8_note = ort_int8(onnx_path, calib, ort_int8_path)
        ort_paths.update({} if ort_int8_note else {"onnxruntime-int8": ort_int8_path})

    info = cpu_info()
    results = []
    print(
        f"CPU: {info.get('model name', info['machine'])}, {info['cpus']} CPUs, "
        f"measured clock {info['measured_ghz']} GHz (nominal {info.get('cpu MHz', '?')} MHz)"
    )
    header = (
        f"{'batch':>5} {'thr':>3} {'backend':<26} {'ms/call':>9} {'img/s':>10} {'GFLOP/s':>8} "
        f"{'%peak':>6} {'vs torch':>8} {'vs ORT':>7} {'vs fp32':>7} {'vs ORT8':>8} "
        f"{'min ms':>8} {'min vs torch':>12}"
    )
    print(header)
    print("-" * len(header))
    for b in batches:
        x = inputs[b]
        xt = torch.from_numpy(x)
        xt_cl = xt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            want = net(xt).numpy()
        for t in threads_list:
            torch.set_num_threads(t)
            backends: dict[str, Callable[[], object]] = {}
            for k, eng in engines.items():
                eng.threads = t
                backends[f"native-{k}"] = lambda eng=eng: eng.predict(x)

            def torch_default():
                with torch.no_grad():
                    return net(xt)

            def torch_no_onednn():
                with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
                    return net(xt)

            def torch_channels_last():
                with torch.no_grad():
                    return net(xt_cl)

            backends["torch-default"] = torch_default
            backends["torch-onednn-off"] = torch_no_onednn
            backends["torch-channels-last"] = torch_channels_last
            backends.update(ort_backends(ort, ort_paths, t, x))
            rounds = args.rounds or (200 if b == 1 else 30)
            med, best = bench(backends, rounds=rounds, warmup=max(3, rounds // 10))
            torch_min = min(v for k, v in best.items() if k.startswith("torch-"))
            torch_best = min(v for k, v in med.items() if k.startswith("torch-"))
            torch_best_name = min((v, k) for k, v in med.items() if k.startswith("torch-"))[1]
            ort_t = med.get("onnxruntime")
            fp32_best = min(
                (v for k, v in med.items() if k.startswith("native-") and "int8" not in k),
                default=None,
            )
            for name, sec in med.items():
                kern = name.split("-", 1)[1] if name.startswith("native-") else None
                gflops = FLOP_PER_IMAGE * b / sec / 1e9
                fpc = FMA_FLOPS_PER_CYCLE.get(kern) if kern else None
                peak = fpc * info["measured_ghz"] * t if fpc else None
                row = {
                    "batch": b,
                    "threads": t,
                    "backend": name,
                    "seconds_per_call": sec,
                    "images_per_s": b / sec,
                    "gflops": gflops,
                    "peak_gflops": peak,
                    "percent_of_peak": 100 * gflops / peak if peak else None,
                    "speedup_vs_torch_best": torch_best / sec,
                    "torch_best": torch_best_name,
                    "speedup_vs_onnxruntime": (ort_t / sec) if ort_t else None,
                    "min_seconds_per_call": best[name],
                    "min_speedup_vs_torch_best": torch_min / best[name],
                    "min_speedup_vs_onnxruntime": (best["onnxruntime"] / best[name])
                    if ort_t
                    else None,
                    "speedup_vs_fp32_native_best": fp32_best / sec if fp32_best else None,
                    "speedup_vs_onnxruntime_int8": med["onnxruntime-int8"] / sec
                    if "onnxruntime-int8" in med
                    else None,
                }
                if name == "onnxruntime-int8":  # ORT's own int8: its top-1 vs FP32 PyTorch
                    got = np.asarray(backends[name]()[0])  # type: ignore[index]
                    row["top1_agreement_vs_torch"] = float((got.argmax(1) == want.argmax(1)).mean())
                elif kern:
                    got = engines[kern].predict(x)
                    row["max_abs_logit_diff_vs_torch"] = float(np.abs(got - want).max())
                    row["top1_agreement_vs_torch"] = float((got.argmax(1) == want.argmax(1)).mean())
                results.append(row)
                pk = f"{row['percent_of_peak']:.0f}" if peak else "-"
                vo = f"{row['speedup_vs_onnxruntime']:.2f}x" if ort_t else "-"
                vf = f"{fp32_best / sec:.2f}x" if fp32_best else "-"
                v8 = row["speedup_vs_onnxruntime_int8"]
                print(
                    f"{b:>5} {t:>3} {name:<26} {sec * 1e3:>9.3f} {b / sec:>10.0f} {gflops:>8.1f} "
                    f"{pk:>6} {torch_best / sec:>7.2f}x {vo:>7} {vf:>7} "
                    f"{(f'{v8:.2f}x' if v8 else '-'):>8} {best[name] * 1e3:>8.3f} "
                    f"{torch_min / best[name]:>11.2f}x"
                )
    # thread scaling of the native engine
    scaling = {}
    for b in batches:
        for k in [*kernels, *(f"int8-{q}" for q in int8_kernels)]:
            r = {
                row["threads"]: row["seconds_per_call"]
                for row in results
                if row["batch"] == b and row["backend"] == f"native-{k}"
            }
            if 1 in r and 2 in r:
                scaling[f"native-{k} batch {b}"] = r[1] / r[2]
    for k, v in scaling.items():
        print(f"2 threads vs 1, {k}: {v:.2f}x")
    doc = {
        "benchmark": "inference",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": info,
        "default_kernel": _native.resolve_kernel(None),
        "kernels": kernels,
        "flop_per_image": FLOP_PER_IMAGE,
        "fma_flops_per_cycle_assumed": FMA_FLOPS_PER_CYCLE,
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": torch.__version__,
            "onnxruntime": getattr(ort, "__version__", None),
            "neonsign": neonsign.__version__,
            "compiler": _native.build_info().get("compiler"),
        },
        "onnx_note": ort_note,
        "onnxruntime_int8_note": ort_int8_note,
        "int8_kernels": int8_kernels,
        "int8_calibration": f"{args.method} on the 64 benchmark calibration images (ORT: MinMax)",
        "results": results,
        "thread_scaling_2_vs_1": scaling,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
