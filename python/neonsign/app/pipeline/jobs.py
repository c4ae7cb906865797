"""The two jobs: two stage lists over one stage library, run by one runner.

:data:`MAIN_JOB` (``neonsign main``): data -> load -> train -> test -> profile -> compare ->
report in a new ``./runs/<UTC timestamp>/``. Data come from ``--data``, else ``$GTSRB_ROOT``,
else a synthetic GTSRB-format data set generated once into ``./data/synth``. The model is tested
on the held-out split (the test split when the data have one, else the by-track validation
split), then timed per layer on every available backend on a batch of held-out images; the
comparisons are torch-onednn-off against torch (OpenBLAS/NNPACK vs oneDNN/ACL) and the best
libtorch backend against native. An existing run directory is never overwritten.

:data:`LIFECYCLE` (``neonsign pipeline``): train -> test -> profile -> gate -> register in a
run directory the caller names, resumable (see :mod:`.runner`). One run directory holds::

    model/            the trained model directory (model.safetensors + model_card.json)
    test.json         ``neonsign test --json`` result on the evaluation split (native engine)
    profile.json      native profile report of the model
    gate.json         the validation gate's verdict (against the registry's champion, if any)
    registered.json   the registry version, and whether it became ``champion``
    lineage.json      per stage: what it consumed (checksums) and produced (files + sha256),
                      with the data checksum, code version and model sha256

The same stages are what the mlops workflow runs as jobs (``neonsign pipeline --run-dir DIR
--from STAGE`` per job, sharing DIR as an artifact).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import NeonsignFileExistsError, file_errors
from ..gate import DEFAULT_MAX_DROP, DEFAULT_MIN_ACCURACY
from . import stages
from .context import (
    EvalSettings,
    GateSettings,
    ProfileSettings,
    RunContext,
    RunSettings,
    TrainSettings,
)
from .runner import Stage, run_stages

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["LIFECYCLE", "MAIN_JOB", "new_run_dir", "run_main_job", "run_pipeline"]

PROFILE_REPEATS = 5  # main job: timed passes per backend (seconds, not minutes)
PROFILE_WARMUP = 2

MAIN_JOB: list[Stage] = [
    stages.DATA,
    stages.LOAD,
    stages.TRAIN,
    stages.TEST,
    stages.PROFILE,
    stages.COMPARE,
    stages.REPORT,
]
LIFECYCLE: list[Stage] = [stages.TRAIN, stages.TEST, stages.PROFILE, stages.GATE, stages.REGISTER]


def new_run_dir(runs: Path) -> Path:
    """Create and return a new ``runs/<UTC timestamp>[-N]`` directory (never an existing one)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with file_errors("create a run directory under", runs):
        for i in range(1000):
            path = runs / (stamp if i == 0 else f"{stamp}-{i}")
            try:
                path.mkdir(parents=True, exist_ok=False)
                return path
            except FileExistsError:
                continue
    raise NeonsignFileExistsError(
        f"could not create a new run directory under {runs}: {stamp} and 999 more exist"
    )


def run_main_job(
    *,
    data: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    synth_dir: str | os.PathLike[str] = "data/synth",
    epochs: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    backend: str | None = None,
    quiet: bool = False,
) -> RunContext:
    """Run every stage of :data:`MAIN_JOB` in a new run directory; returns the context
    (``run_dir``, ``test_result``, ``profile_report``, ``stage_seconds``, ...).

    ``data`` overrides $GTSRB_ROOT; ``epochs`` defaults to the training default for real data
    and :data:`.stages.SYNTH_EPOCHS` for synthetic data; ``backend`` is the test backend
    (default: the fastest available).
    """
    settings = RunSettings(
        run_dir=new_run_dir(Path(runs_dir)),
        data=None if data is None else Path(data),
        synth_dir=Path(synth_dir),
        quiet=quiet,
        train=TrainSettings(epochs=epochs, seed=seed, threads=threads),
        evaluation=EvalSettings(backend=backend),
        profile=ProfileSettings(repeats=PROFILE_REPEATS, warmup=PROFILE_WARMUP),
    )
    ctx = RunContext(settings)
    run_stages(MAIN_JOB, ctx)
    return ctx


def run_pipeline(
    data: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    epochs: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    registry_uri: str | None = None,
    use_registry: bool = True,
    alias: str = "champion",
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
    max_drop: float = DEFAULT_MAX_DROP,
    fail_if_slower: float = 25.0,
    repeats: int = 10,
    from_stage: str | None = None,
    quiet: bool = False,
    **train_overrides: Any,
) -> RunContext:
    """Run :data:`LIFECYCLE` on the GTSRB root ``data`` in ``run_dir`` (created; reused to
    resume). ``train_overrides`` are further TrainConfig fields (``batch_size=32``).

    Without a registry (``use_registry=False``) the gate has no champion and the register stage
    is left out. Returns the context: ``ran``, ``skipped``, ``accepted``, ``accuracy``,
    ``registry_version``, ``promoted``, ``lineage`` ...
    """
    from ...artifacts import code_version

    rd = Path(run_dir)
    with file_errors("create the run directory", rd):
        rd.mkdir(parents=True, exist_ok=True)
    settings = RunSettings(
        run_dir=rd,
        data=Path(os.path.abspath(data)),
        quiet=quiet,
        train=TrainSettings(
            epochs=epochs, seed=seed, threads=threads, track=False, overrides=train_overrides
        ),
        evaluation=EvalSettings(
            split=split, backend="native", plot=False, profile_table=False, print_summary=False
        ),
        profile=ProfileSettings(backends=("native",), on_heldout=False, repeats=repeats, warmup=3),
        gate=GateSettings(alias, min_accuracy, max_drop, fail_if_slower),
    )
    ctx = RunContext(settings, registry=_registry(registry_uri) if use_registry else None)
    ctx.data_root = settings.data
    stages.load_training_data(ctx)  # the train stage's input checksum needs the data
    ctx.code_version = code_version()
    job = (
        LIFECYCLE
        if ctx.registry is not None
        else [s for s in LIFECYCLE if s is not stages.REGISTER]
    )
    run_stages(job, ctx, from_stage=from_stage)
    return ctx


def _registry(uri: str | None) -> Registry:
    from ..registry import Registry

    return Registry(uri)
