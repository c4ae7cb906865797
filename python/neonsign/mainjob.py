"""The main job: ``neonsign main``, data -> load -> train -> test -> report, as named stages.

Data come from ``GTSRB_ROOT`` when it is set, else a synthetic GTSRB-format data set generated
once into ``./data/synth``. The model is tested on the held-out split: the test split when the
data have one (synthetic data do), else the by-track validation split of the training data.
Artifacts (model directory, results JSON, confusion matrix PNG, summary) go to a new
``./runs/<UTC timestamp>/``; an existing run directory is never overwritten.

After the test, ``profile`` times the trained model per layer on every available backend (native
kernels, torch, torch-onednn-off, torch-channels-last, torch-bf16 where the CPU has it) on a batch
of held-out images, and ``compare`` sets torch-onednn-off (OpenBLAS/NNPACK) against torch
(oneDNN/ACL), and the best libtorch backend against native. The job ends by printing those tables
and writing profile.json, compare.json and summary.md (also appended to $GITHUB_STEP_SUMMARY).

Stages are plain functions over a shared context dict, in :data:`STAGES`.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "comparisons", "run"]

SYNTH_PER_CLASS = 60  # synthetic images per class in the training split
SYNTH_PER_TRACK = 6  # short tracks: 10 per class, so validation by track has tracks to spare
SYNTH_SIZES = (15, 120)  # image sides in pixels
SYNTH_EPOCHS = 10  # default epochs on synthetic data (a few minutes on 2 cores)
PROFILE_REPEATS = 5  # timed passes per backend in the profile stage (seconds, not minutes)
PROFILE_WARMUP = 2

Stage_ = Callable[[dict[str, Any]], None]


def _log(ctx: dict[str, Any], msg: str) -> None:
    if not ctx["quiet"]:
        print(msg, flush=True)


def stage_data(ctx: dict[str, Any]) -> None:
    """Pick the data root: $GTSRB_ROOT, or synthesise ./data/synth once."""
    env = os.environ.get("GTSRB_ROOT")
    if ctx.get("data"):
        ctx["data_root"], ctx["synthetic"] = Path(ctx["data"]), False
    elif env:
        ctx["data_root"], ctx["synthetic"] = Path(env), False
    else:
        root = Path(ctx["synth_dir"])
        if not root.is_dir():
            from .synth import synthesize

            tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            _log(ctx, f"synthesising GTSRB-format data into {root} ({SYNTH_PER_CLASS} per class)")
            synthesize(
                tmp,
                n_per_class=SYNTH_PER_CLASS,
                images_per_track=SYNTH_PER_TRACK,
                seed=0,
                size_range=SYNTH_SIZES,
            )
            os.replace(tmp, root)  # atomic: a half-written data set is never picked up
        ctx["data_root"], ctx["synthetic"] = root, True
    _log(ctx, f"data: {ctx['data_root']}{' (synthetic)' if ctx['synthetic'] else ''}")


def stage_load(ctx: dict[str, Any]) -> None:
    """Load the training split (uint8) and, when present, the test split."""
    from .data import load_split
    from .errors import DatasetNotFoundError

    cfg = ctx["config"]
    opts = dict(size=cfg.size, roi=cfg.roi, dtype="uint8", threads=cfg.threads)
    t0 = time.perf_counter()
    ctx["train"] = load_split(ctx["data_root"], "train", **opts)
    try:
        ctx["test"] = load_split(ctx["data_root"], "test", **opts)
    except DatasetNotFoundError:
        ctx["test"] = None
    n_test = 0 if ctx["test"] is None else len(ctx["test"][1])
    _log(
        ctx,
        f"loaded {len(ctx['train'][1])} training and {n_test} test images "
        f"in {time.perf_counter() - t0:.1f} s",
    )


def stage_train(ctx: dict[str, Any]) -> None:
    """Train with by-track validation; the model goes to <run>/model."""
    from .train import train_loaded

    images, labels, meta = ctx["train"]
    ctx["model_dir"] = ctx["run_dir"] / "model"
    ctx["train_result"] = train_loaded(
        images,
        labels,
        meta,
        ctx["model_dir"],
        config=ctx["config"],
        quiet=ctx["quiet"],
        data_name=os.fspath(ctx["data_root"]),
    )
    r = ctx["train_result"]
    acc = "n/a" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
    _log(
        ctx,
        f"trained {ctx['config'].epochs} epochs in {r.seconds:.1f} s; "
        f"best by-track validation accuracy {acc} (epoch {r.best_epoch})",
    )


def stage_test(ctx: dict[str, Any]) -> None:
    """Test on the test split, or on the by-track validation split when there is none."""
    from .evaluate import evaluate_arrays, format_summary

    if ctx["test"] is not None:
        images, labels, _ = ctx["test"]
        split = "test"
    else:
        images, labels, _ = ctx["train"]
        idx = ctx["train_result"].val_idx
        images, labels, split = images[idx], labels[idx], "validation (by track)"
    # The PNG needs matplotlib (the notebooks/dev extras); the JSON always has the matrix.
    plot = ctx["run_dir"] / "confusion.png" if importlib.util.find_spec("matplotlib") else None
    result = evaluate_arrays(
        ctx["model_dir"],
        images,
        labels,
        backend=ctx["backend"],
        threads=ctx["config"].threads,
        plot=plot,
        quiet=ctx["quiet"],
        split=split,
    )
    (ctx["run_dir"] / "test.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    ctx["test_result"], ctx["heldout_images"] = result, images
    print(format_summary(result), flush=True)


def stage_profile(ctx: dict[str, Any]) -> None:
    """Profile the trained model per layer on every available backend; <run>/profile.json."""
    from .evaluate import PROFILE_BATCH, normalize_images
    from .profiler import profile

    images, prep = ctx["heldout_images"], ctx["test_result"]["preprocessing"]
    batch = min(PROFILE_BATCH, len(images))
    x = normalize_images(images[:batch], prep["mean"], prep["std"])
    report = profile(
        ctx["model_dir"],
        x,
        batch=batch,
        threads=ctx["config"].threads,
        repeats=PROFILE_REPEATS,
        warmup=PROFILE_WARMUP,
        progress=not ctx["quiet"],
    )
    report.save_json(ctx["run_dir"] / "profile.json")
    ctx["profile"] = report
    _log(ctx, f"profiled {', '.join(report.backends)} (batch {batch}, {PROFILE_REPEATS} repeats)")


def comparisons(report: Any) -> list[Any]:
    """torch-onednn-off -> torch (the learning path's OpenBLAS vs oneDNN/ACL comparison) and the
    fastest libtorch backend -> native, for those of them ``report`` (a ProfileReport) holds."""
    from .profile_report import compare_backends

    names = report.backends
    pairs = []
    if "torch-onednn-off" in names and "torch" in names:
        pairs.append(("torch-onednn-off", "torch"))
    torch_names = [n for n in names if report.backend(n)["family"] == "torch"]
    if "native" in names and torch_names:
        pairs.append((min(torch_names, key=report.total_ms), "native"))
    return [compare_backends(report, base, new) for base, new in pairs]


def stage_compare(ctx: dict[str, Any]) -> None:
    """Compare backends of the profile; <run>/compare.json."""
    ctx["comparisons"] = comparisons(ctx["profile"])
    doc = {"comparisons": [dict(c.to_dict(), headline=c.headline()) for c in ctx["comparisons"]]}
    (ctx["run_dir"] / "compare.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for c in ctx["comparisons"]:
        _log(ctx, "\n".join(c.headline()))


def _summary_markdown(ctx: dict[str, Any]) -> str:
    from .evaluate import format_summary

    parts = [
        "# neonsign main job",
        "",
        f"run directory: `{ctx['run_dir']}`",
        "",
        "```",
        format_summary(ctx["test_result"]),
        "```",
        "",
        ctx["profile"].markdown(),
    ]
    parts += [c.markdown() for c in ctx["comparisons"]]
    return "\n".join(parts)


def stage_report(ctx: dict[str, Any]) -> None:
    """Write <run>/summary.json and summary.md, print the profile and comparison tables."""
    from .profile_report import append_step_summary

    r = ctx["test_result"]
    summary = {
        "data": os.fspath(Path(ctx["data_root"]).resolve()),
        "synthetic": ctx["synthetic"],
        "model": os.fspath(Path(ctx["model_dir"]).resolve()),
        "split": r["split"],
        "accuracy": r["accuracy"],
        "n_images": r["n_images"],
        "backend": r["backend"],
        "val_accuracy": ctx["train_result"].val_accuracy,
        "epochs": ctx["config"].epochs,
        "profile_median_ms": {b: ctx["profile"].total_ms(b) for b in ctx["profile"].backends},
        "compare": [line for c in ctx["comparisons"] for line in c.headline()],
        "stage_seconds": ctx["stage_seconds"],
    }
    (ctx["run_dir"] / "summary.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    md = _summary_markdown(ctx)
    (ctx["run_dir"] / "summary.md").write_text(md, encoding="utf-8")
    append_step_summary(md)
    print(ctx["profile"].text(), flush=True)
    for c in ctx["comparisons"]:
        print(c.text(), flush=True)
    print(
        f"artifacts in {ctx['run_dir']}: model/ (safetensors + model_card.json), test.json, "
        f"confusion.png, profile.json, compare.json, summary.json, summary.md",
        flush=True,
    )


STAGES: list[tuple[str, Stage_]] = [
    ("data", stage_data),
    ("load", stage_load),
    ("train", stage_train),
    ("test", stage_test),
    ("profile", stage_profile),
    ("compare", stage_compare),
    ("report", stage_report),
]


def _new_run_dir(runs: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for i in range(1000):
        path = runs / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {runs}")


def run(
    *,
    data: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    synth_dir: str | os.PathLike[str] = "data/synth",
    epochs: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    backend: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run every stage of :data:`STAGES`; returns the context (``run_dir``, ``test_result``, ...).

    ``data`` overrides $GTSRB_ROOT; ``epochs`` defaults to the training default for real data
    and :data:`SYNTH_EPOCHS` for synthetic data.
    """
    from .pipeline import Stage, run_stages
    from .train import TrainConfig

    ctx: dict[str, Any] = {
        "data": data,
        "synth_dir": synth_dir,
        "quiet": quiet,
        "backend": backend,
        "stage_seconds": {},
    }
    ctx["run_dir"] = _new_run_dir(Path(runs_dir))

    def stage(name: str, fn: Stage_) -> Stage:
        def go(c: dict[str, Any]) -> None:
            if name == "load":  # epochs depend on the data chosen by the first stage
                default = SYNTH_EPOCHS if c["synthetic"] else TrainConfig().epochs
                c["config"] = TrainConfig(epochs=epochs or default, seed=seed, threads=threads)
            fn(c)

        return Stage(name, go, lambda c: {}, ())

    # the pipeline's stage runner (a new run directory, so every stage runs; lineage.json)
    run_stages([stage(n, f) for n, f in STAGES], ctx, log=lambda m: _log(ctx, m))
    return ctx
