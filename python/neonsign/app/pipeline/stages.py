"""The one library of stages both jobs are made of (:mod:`.jobs` lists them).

Each stage is a function over the :class:`~.context.RunContext` and a :class:`~.runner.Stage`
naming what it consumes (for resuming), the files it writes in the run directory and the context
values it records. ``train``, ``test`` and ``profile`` are shared by the main job and the
lifecycle; what differs between the jobs is in their :class:`~.context.RunSettings`.

==========  ===============================================================  ================
stage       does                                                             writes
==========  ===============================================================  ================
data        picks the GTSRB root: ``--data``, ``$GTSRB_ROOT``, or synthetic
            data generated once                                              (``synth_dir``)
load        loads the training split (uint8) and the test split if any
train       trains with by-track validation                                  ``model/``
test        evaluates on the held-out / named split                          ``test.json``
profile     times the model per layer on the configured backends             ``profile.json``
compare     torch-onednn-off vs torch, best libtorch vs native               ``compare.json``
report      summary files and tables (also to $GITHUB_STEP_SUMMARY)          ``summary.*``
gate        the validation gate against the registry's champion             ``gate.json``
register    registers the model; promotes it when the gate accepted          ``registered.json``
==========  ===============================================================  ================

Heavy libraries (PyTorch, MLflow, matplotlib) are imported inside the stages that use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ModelError, NeonsignTypeError, file_errors
from . import interrupts
from .context import RunContext, TrainSettings, gtsrb_root_from_env, need
from .runner import LINEAGE_FILE, Stage, write_json

if TYPE_CHECKING:
    from ...data import SplitMeta
    from ...profile_report import Comparison, ProfileReport
    from ...train import TrainConfig
    from ..registry import MlflowTracker

__all__ = [
    "COMPARE",
    "DATA",
    "GATE",
    "LOAD",
    "PROFILE",
    "REGISTER",
    "REPORT",
    "SYNTH_EPOCHS",
    "TEST",
    "TRAIN",
    "comparisons",
    "load_training_data",
    "split_files_sha256",
    "train_config",
]

SYNTH_PER_CLASS = 60  # synthetic images per class in the training split
SYNTH_PER_TRACK = 6  # short tracks: 10 per class, so validation by track has tracks to spare
SYNTH_SIZES = (15, 120)  # image sides in pixels
SYNTH_EPOCHS = 10  # default epochs on synthetic data (a few minutes on 2 cores)


# ----------------------------------------------------------------------------------------------
# data and load


def _synthesize_once(root: Path, ctx: RunContext) -> None:
    """Generate the synthetic data set into ``root`` unless it is there (atomically: a
    half-written data set is never picked up)."""
    if root.is_dir():
        return
    from ...synth import synthesize

    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx.log(f"synthesising GTSRB-format data into {root} ({SYNTH_PER_CLASS} per class)")
    with file_errors("write synthetic data to", root):
        tmp.parent.mkdir(parents=True, exist_ok=True)
        synthesize(
            tmp,
            n_per_class=SYNTH_PER_CLASS,
            images_per_track=SYNTH_PER_TRACK,
            seed=0,
            size_range=SYNTH_SIZES,
        )
        os.replace(tmp, root)


def select_data(ctx: RunContext) -> None:
    """Pick the data root: ``--data``, else ``$GTSRB_ROOT``, else ``synth_dir`` (made once)."""
    env = gtsrb_root_from_env() if ctx.settings.data is None else None
    if ctx.settings.data is not None:
        ctx.data_root, ctx.synthetic = ctx.settings.data, False
    elif env is not None:
        ctx.data_root, ctx.synthetic = env, False
    else:
        _synthesize_once(ctx.settings.synth_dir, ctx)
        ctx.data_root, ctx.synthetic = ctx.settings.synth_dir, True
    ctx.log(f"data: {ctx.data_root}{' (synthetic)' if ctx.synthetic else ''}")


def train_config(settings: TrainSettings, synthetic: bool) -> TrainConfig:
    """The training configuration: ``settings.epochs`` or the default for the data
    (:data:`SYNTH_EPOCHS` for synthetic data, TrainConfig's for real data), seed, threads and
    the named overrides (a name that is not a TrainConfig field is a NeonsignTypeError)."""
    from ...train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings.overrides) - known)
    if unknown:
        raise NeonsignTypeError(
            f"unknown training option(s) {unknown}; TrainConfig fields are {sorted(known)}"
        )
    default = SYNTH_EPOCHS if synthetic else TrainConfig().epochs
    return TrainConfig(
        **{
            "epochs": settings.epochs or default,
            "seed": settings.seed,
            "threads": settings.threads,
            **settings.overrides,
        }
    )


def load_training_data(ctx: RunContext) -> None:
    """Set the training configuration and load the training split (uint8) of ``data_root``."""
    from ...data import load_split

    root = need(ctx.data_root, "the data root")
    ctx.config = config = train_config(ctx.settings.train, ctx.synthetic)
    ctx.train_split = load_split(
        root, "train", size=config.size, roi=config.roi, dtype="uint8", threads=config.threads
    )
    ctx.data_checksum = ctx.train_split[2].checksum


def load(ctx: RunContext) -> None:
    """Load the training split and, when the data have one, the test split."""
    from ...data import load_split
    from ...errors import DatasetNotFoundError

    t0 = time.perf_counter()
    load_training_data(ctx)
    config, root = need(ctx.config, "the training configuration"), need(ctx.data_root, "data")
    try:
        ctx.test_split = load_split(
            root, "test", size=config.size, roi=config.roi, dtype="uint8", threads=config.threads
        )
    except DatasetNotFoundError:
        ctx.test_split = None
    n_train = len(need(ctx.train_split, "the training split")[1])
    n_test = 0 if ctx.test_split is None else len(ctx.test_split[1])
    ctx.log(
        f"loaded {n_train} training and {n_test} test images in {time.perf_counter() - t0:.1f} s"
    )


# ----------------------------------------------------------------------------------------------
# train, test, profile (both jobs)


def _read_card(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "model_card.json"
    with file_errors("read the model card", path):
        text = path.read_text(encoding="utf-8")
    card = json.loads(text)
    if not isinstance(card, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return card


def config_hash(config: TrainConfig) -> str:
    """sha256 of the training configuration (the train stage's input checksum)."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _tracker(ctx: RunContext) -> MlflowTracker | None:
    """The MLflow tracker of the training run: in the run's registry store when there is one,
    else the default store; None when tracking is off or mlflow is not installed."""
    if not ctx.settings.train.track:
        return None
    from ..registry import MlflowTracker

    return MlflowTracker.start(ctx.registry.uri if ctx.registry is not None else None)


def train(ctx: RunContext) -> None:
    """Train with by-track validation; the model directory goes to ``<run>/model``."""
    from ...train import train_loaded

    images, labels, meta = need(ctx.train_split, "the training split")
    config = need(ctx.config, "the training configuration")
    ctx.train_result = r = train_loaded(
        images,
        labels,
        meta,
        ctx.model_dir,
        config=config,
        quiet=ctx.quiet,
        overwrite=True,
        tracker=_tracker(ctx),
        data_name=os.fspath(need(ctx.data_root, "the data root")),
    )
    ctx.weights_sha256 = str(_read_card(ctx.model_dir)["weights_sha256"])
    ctx.val_accuracy = r.val_accuracy
    acc = "n/a" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
    ctx.log(
        f"trained {config.epochs} epochs in {r.seconds:.1f} s; "
        f"best by-track validation accuracy {acc} (epoch {r.best_epoch})"
    )


def _heldout(ctx: RunContext) -> tuple[Any, Any, str, SplitMeta, Any]:
    """The loaded test split, else the by-track validation part of the training split:
    (images, labels, split name, the split's meta, its rows in that meta or None for all)."""
    if ctx.test_split is not None:
        images, labels, meta = ctx.test_split
        return images, labels, "test", meta, None
    images, labels, meta = need(ctx.train_split, "the training split")
    idx = need(ctx.train_result, "the training result").val_idx
    return images[idx], labels[idx], "validation (by track)", meta, idx


def test(ctx: RunContext) -> None:
    """Evaluate the model on the evaluation split, in both framings (ROI crop and whole
    image); ``<run>/test.json`` (+ ``confusion.png``)."""
    from ...data import reframe
    from ...evaluate import add_other_framing, evaluate, evaluate_arrays, format_summary

    s = ctx.settings.evaluation
    # The PNG needs matplotlib (the notebooks/dev extras); the JSON always has the matrix.
    want_plot = s.plot and importlib.util.find_spec("matplotlib") is not None
    plot = ctx.run_dir / "confusion.png" if want_plot else None
    threads = ctx.settings.train.threads
    common: dict[str, Any] = dict(
        backend=s.backend, threads=threads, profile=s.profile_table, plot=plot, quiet=ctx.quiet
    )
    if s.split is None:
        images, labels, split, meta, rows = _heldout(ctx)
        result = evaluate_arrays(ctx.model_dir, images, labels, split=split, **common)
        result["framing"] = "roi" if meta.roi else "whole"
        other = reframe(meta, rows, roi=not meta.roi, threads=threads)
        add_other_framing(result, ctx.model_dir, other, labels, backend=s.backend, threads=threads)
        ctx.heldout_images = images
    else:
        root = need(ctx.data_root, "the data root")
        result = evaluate(ctx.model_dir, root, split=s.split, **common)
    write_json(ctx.run_dir / "test.json", result)
    ctx.test_result, ctx.accuracy = result, float(result["accuracy"])
    if s.print_summary:
        print(format_summary(result), flush=True)


def profile(ctx: RunContext) -> None:
    """Profile the model per layer on the configured backends; ``<run>/profile.json``."""
    from ...evaluate import PROFILE_BATCH, normalize_images
    from ...profiler import profile as run_profile

    p = ctx.settings.profile
    x, batch = None, PROFILE_BATCH
    if p.on_heldout:
        images = need(ctx.heldout_images, "the held-out images")
        prep = need(ctx.test_result, "the test result")["preprocessing"]
        batch = min(PROFILE_BATCH, len(images))
        x = normalize_images(images[:batch], prep["mean"], prep["std"])
    report = run_profile(
        ctx.model_dir,
        x,
        None if p.backends is None else list(p.backends),
        batch=batch,
        threads=ctx.settings.train.threads,
        repeats=p.repeats,
        warmup=p.warmup,
        aten=p.aten,
        progress=not ctx.quiet,
    )
    report.save_json(ctx.run_dir / "profile.json")
    ctx.profile_report = report
    ctx.native_ms = report.total_ms("native") if "native" in report.backends else None
    ctx.log(f"profiled {', '.join(report.backends)} (batch {batch}, {p.repeats} repeats)")


# ----------------------------------------------------------------------------------------------
# compare and report (the main job)


def comparisons(report: ProfileReport) -> list[Comparison]:
    """torch-onednn-off -> torch (the learning path's OpenBLAS vs oneDNN/ACL comparison) and the
    fastest libtorch backend -> native, for those of them ``report`` holds."""
    from ...profile_report import compare_backends

    names = report.backends
    pairs = []
    if "torch-onednn-off" in names and "torch" in names:
        pairs.append(("torch-onednn-off", "torch"))
    torch_names = [n for n in names if report.backend(n)["family"] == "torch"]
    if "native" in names and torch_names:
        pairs.append((min(torch_names, key=report.total_ms), "native"))
    return [compare_backends(report, base, new) for base, new in pairs]


def compare(ctx: RunContext) -> None:
    """Compare backends of the profile; ``<run>/compare.json``."""
    ctx.comparisons = comparisons(need(ctx.profile_report, "the profile report"))
    doc = {"comparisons": [dict(c.to_dict(), headline=c.headline()) for c in ctx.comparisons]}
    write_json(ctx.run_dir / "compare.json", doc)
    for c in ctx.comparisons:
        ctx.log("\n".join(c.headline()))


def _summary(ctx: RunContext) -> dict[str, Any]:
    r = need(ctx.test_result, "the test result")
    prof = need(ctx.profile_report, "the profile report")
    return {
        "data": os.fspath(need(ctx.data_root, "the data root").resolve()),
        "synthetic": ctx.synthetic,
        "model": os.fspath(ctx.model_dir.resolve()),
        "split": r["split"],
        "accuracy": r["accuracy"],
        "n_images": r["n_images"],
        "backend": r["backend"],
        "val_accuracy": ctx.val_accuracy,
        "epochs": need(ctx.config, "the training configuration").epochs,
        "profile_median_ms": {b: prof.total_ms(b) for b in prof.backends},
        "compare": [line for c in ctx.comparisons for line in c.headline()],
        "stage_seconds": ctx.stage_seconds,
    }


def _write_plots(ctx: RunContext) -> list[str]:
    """``profile.png`` (per-layer bars per backend) and ``compare.png`` (the comparisons) beside
    ``summary.md`` when matplotlib is installed and the test stage plots; their file names."""
    if not ctx.settings.evaluation.plot or importlib.util.find_spec("matplotlib") is None:
        return []
    from ...plots import compare_figure, profile_figure, save_png

    save_png(profile_figure(need(ctx.profile_report, "the profile report")),
             ctx.run_dir / "profile.png")  # fmt: skip
    written = ["profile.png"]
    if ctx.comparisons:
        save_png(compare_figure(ctx.comparisons), ctx.run_dir / "compare.png")
        written.append("compare.png")
    return written


def _summary_markdown(ctx: RunContext, plots: list[str] | None = None) -> str:
    from ...evaluate import format_summary

    parts = [
        "# neonsign main job",
        "",
        f"run directory: `{ctx.run_dir}`",
        "",
        "```",
        format_summary(need(ctx.test_result, "the test result")),
        "```",
        "",
        need(ctx.profile_report, "the profile report").markdown(),
    ]
    parts += [f"![{name}]({name})\n" for name in plots or []]  # relative links, beside summary.md
    parts += [c.markdown() for c in ctx.comparisons]
    return "\n".join(parts)


def report(ctx: RunContext) -> None:
    """Write ``summary.json`` and ``summary.md`` (also to $GITHUB_STEP_SUMMARY); print the
    profile and comparison tables."""
    from ...profile_report import append_step_summary

    write_json(ctx.run_dir / "summary.json", _summary(ctx))
    md = _summary_markdown(ctx, _write_plots(ctx))
    with file_errors("write", ctx.run_dir / "summary.md"):
        (ctx.run_dir / "summary.md").write_text(md, encoding="utf-8")
    with file_errors("append to $GITHUB_STEP_SUMMARY"):
        append_step_summary(md)
    print(need(ctx.profile_report, "the profile report").text(), flush=True)
    for c in ctx.comparisons:
        print(c.text(), flush=True)
    print(
        f"artifacts in {ctx.run_dir}: model/ (safetensors + model_card.json), test.json, "
        f"confusion.png, profile.json (+ .png), compare.json (+ .png), summary.json, summary.md",
        flush=True,
    )


# ----------------------------------------------------------------------------------------------
# gate and register (the lifecycle)


def _champion(ctx: RunContext) -> tuple[int | None, str | None]:
    """(version, weights sha256) of the registry's champion, or (None, None)."""
    if ctx.registry is None:
        return None, None
    try:
        mv = ctx.registry.show(ctx.settings.gate.alias)
    except ModelError:
        return None, None
    return mv.version, mv.tags.get("weights_sha256")


def _other_champion(ctx: RunContext) -> str | None:
    """The champion's weights sha256 as a gate input; None when there is no champion or it is
    this run's own model (promoted by this run's register stage, which must not re-open the
    gate)."""
    sha = _champion(ctx)[1]
    return None if sha == ctx.weights_sha256 else sha


def gate(ctx: RunContext) -> None:
    """The validation gate against the registry's champion (if any); ``<run>/gate.json``."""
    from ..gate import gate as run_gate

    version, _ = _champion(ctx)
    registry = ctx.registry
    champion = None
    spec = None
    if registry is not None and version is not None:
        champion = os.fspath(registry.download(version))
        spec = f"models:/{registry.name}/{version}"
    g = ctx.settings.gate
    verdict = run_gate(
        ctx.model_dir,
        need(ctx.data_root, "the data root"),
        champion=champion,
        split=ctx.settings.evaluation.split or "test",
        min_accuracy=g.min_accuracy,
        max_drop=g.max_drop,
        fail_if_slower=g.fail_if_slower,
        candidate_result=ctx.run_dir / "test.json",
        candidate_profile=os.fspath(ctx.run_dir / "profile.json"),
        repeats=ctx.settings.profile.repeats,
        threads=ctx.settings.train.threads,
    )
    verdict["champion_spec"] = spec
    write_json(ctx.run_dir / "gate.json", verdict)
    ctx.accepted, ctx.gate_reasons = bool(verdict["accepted"]), list(verdict["reasons"])


def register(ctx: RunContext) -> None:
    """Register the model as ``challenger``; promote it to the gate's alias when the gate
    accepted it; ``<run>/registered.json``."""
    reg = need(ctx.registry, "the registry")
    accuracy = need(ctx.accuracy, "the test accuracy")
    promoted = bool(ctx.accepted)
    tags = {
        "run_dir": os.fspath(ctx.run_dir.resolve()),
        "gate_accepted": str(promoted).lower(),
        "lineage": os.fspath((ctx.run_dir / LINEAGE_FILE).resolve()),
    }
    # Registry.register is idempotent (weights already registered give back their version), so
    # a register stage interrupted after the version was made and run again adds no duplicate.
    mv = reg.register(
        ctx.model_dir, alias="challenger", tags=tags, metrics={"test_accuracy": float(accuracy)}
    )
    interrupts.check()  # an interrupt swallowed while registering must not promote
    alias = ctx.settings.gate.alias
    if promoted:
        mv = reg.promote(mv.version, alias)
    out = {
        "registry_uri": reg.uri,
        "name": reg.name,
        "version": mv.version,
        "aliases": mv.aliases,
        "promoted": promoted,
        "alias": alias,
    }
    write_json(ctx.run_dir / "registered.json", out)
    ctx.registry_version, ctx.promoted = mv.version, promoted


# ----------------------------------------------------------------------------------------------
# What each stage consumes (checksums: a change reruns the stage on a resumed run)


def _file_sha(ctx: RunContext, name: str) -> str | None:
    from ...artifacts import sha256_file

    path = ctx.run_dir / name
    return sha256_file(path) if path.is_file() else None


def split_files_sha256(root: Path, split: str) -> str:
    """sha256 of every file of a split as :func:`neonsign.data.find_split` finds it under
    ``root``: each file's path relative to the split folder and its bytes' sha256, in sorted
    order, plus the labels CSV when it lies outside that folder. Relabelling (a CSV edit),
    replacing, adding or removing an image all change it; reading is all it costs (no decode).
    """
    from ...artifacts import sha256_file
    from ...data import find_split

    spec = find_split(root, split)
    base = spec.images_dir
    with file_errors("list the files of", base):
        files = sorted(p for p in base.rglob("*") if p.is_file())
    if spec.labels_csv is not None and base not in spec.labels_csv.parents:
        files.append(spec.labels_csv)
    h = hashlib.sha256(f"neonsign-split-files-v1;{split};".encode())
    for path in files:
        name = path.relative_to(base) if base in path.parents else Path("..", path.name)
        h.update(f"{name.as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _evaluation_checksum(ctx: RunContext) -> str | None:
    """The checksum of the data the test and gate stages evaluate on: the named split's files
    (:func:`split_files_sha256`, computed once per run), else the held-out split's checksum
    (the loaded test split, or the training split whose by-track part is held out)."""
    split = ctx.settings.evaluation.split
    if split is None:
        return ctx.test_split[2].checksum if ctx.test_split is not None else ctx.data_checksum
    if ctx.eval_checksum is None:
        ctx.eval_checksum = split_files_sha256(need(ctx.data_root, "the data root"), split)
    return ctx.eval_checksum


def _train_inputs(ctx: RunContext) -> dict[str, Any]:
    config = need(ctx.config, "the training configuration")
    return {"data_checksum": ctx.data_checksum, "config": config_hash(config)}


def _test_inputs(ctx: RunContext) -> dict[str, Any]:
    return {
        "weights_sha256": ctx.weights_sha256,
        "split": ctx.settings.evaluation.split,
        "data_root": None if ctx.data_root is None else os.fspath(ctx.data_root),
        "eval_data_checksum": _evaluation_checksum(ctx),
    }


def _profile_inputs(ctx: RunContext) -> dict[str, Any]:
    inputs = {"weights_sha256": ctx.weights_sha256, "repeats": ctx.settings.profile.repeats}
    if ctx.settings.profile.on_heldout:  # timed on held-out images, not random inputs
        inputs["eval_data_checksum"] = _evaluation_checksum(ctx)
    return inputs


def _gate_inputs(ctx: RunContext) -> dict[str, Any]:
    """The gate reads the model, the evaluation split (the champion is evaluated on it and the
    probe set holds its first images), test.json, profile.json and the champion's weights."""
    g = ctx.settings.gate
    return {
        "weights_sha256": ctx.weights_sha256,
        "eval_data_checksum": _evaluation_checksum(ctx),
        "test.json": _file_sha(ctx, "test.json"),
        "profile.json": _file_sha(ctx, "profile.json"),
        "champion_weights_sha256": _other_champion(ctx),
        "limits": [g.min_accuracy, g.max_drop, g.fail_if_slower],
    }


def _register_inputs(ctx: RunContext) -> dict[str, Any]:
    return {
        "weights_sha256": ctx.weights_sha256,
        "gate.json": _file_sha(ctx, "gate.json"),
        "registry_uri": ctx.registry.uri if ctx.registry is not None else None,
    }


DATA = Stage("data", select_data)
LOAD = Stage("load", load)
TRAIN = Stage(
    "train",
    train,
    _train_inputs,
    ("model/model.safetensors", "model/model_card.json"),
    ("weights_sha256", "val_accuracy"),
)
TEST = Stage("test", test, _test_inputs, ("test.json",), ("accuracy",))
PROFILE = Stage("profile", profile, _profile_inputs, ("profile.json",), ("native_ms",))
COMPARE = Stage("compare", compare, outputs=("compare.json",))
REPORT = Stage("report", report, outputs=("summary.json", "summary.md"))
GATE = Stage("gate", gate, _gate_inputs, ("gate.json",), ("accepted", "gate_reasons"))
REGISTER = Stage(
    "register", register, _register_inputs, ("registered.json",), ("registry_version", "promoted")
)
