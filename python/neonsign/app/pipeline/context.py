"""The typed run context of both jobs: what the caller asked for, and what the stages made.

:class:`RunSettings` (frozen) is fixed when a job starts: the run directory, where the data
are, and one small settings block per stage family (training, evaluation, profiling, gate).
The two jobs differ only in these settings and in their stage lists (:mod:`.jobs`).

:class:`RunContext` holds the settings and every value a stage hands to a later one, as typed
fields: the data, the training configuration, the trained model's sha256, the test result,
the profile report, the gate's verdict, the registered version. A stage names the fields it
produces that are worth keeping (:attr:`.runner.Stage.values`); the runner records them in
``lineage.json`` and restores them when it skips the stage on a resumed run.

The one environment read of the pipeline is here: :func:`gtsrb_root_from_env` (``GTSRB_ROOT``,
the main job's data when ``--data`` is not given).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ...errors import ConfigError
from ..gate import DEFAULT_MAX_DROP, DEFAULT_MIN_ACCURACY

if TYPE_CHECKING:
    from ...data import SplitMeta
    from ...evaluate import EvaluationResult
    from ...profile_report import Comparison, ProfileReport
    from ...train import TrainConfig, TrainResult
    from ..registry import Registry

__all__ = [
    "GTSRB_ROOT_ENV",
    "EvalSettings",
    "GateSettings",
    "ProfileSettings",
    "RunContext",
    "RunSettings",
    "Split",
    "StageOrderError",
    "TrainSettings",
    "gtsrb_root_from_env",
    "need",
]

GTSRB_ROOT_ENV = "GTSRB_ROOT"

Split = tuple[np.ndarray, np.ndarray, "SplitMeta"]
"""A split as :func:`neonsign.data.load_split` returns it: uint8 images, labels, meta."""

T = TypeVar("T")


class StageOrderError(RuntimeError):
    """A stage needs a value no earlier stage has set: the stage list is out of order (a bug
    in the job definition, not something a user can cause)."""


def need(value: T | None, what: str) -> T:
    """``value``, or :class:`StageOrderError` naming ``what`` when a stage has not set it yet."""
    if value is None:
        raise StageOrderError(f"{what} is not set yet: a stage that provides it must run first")
    return value


def gtsrb_root_from_env() -> Path | None:
    """The GTSRB root named by ``$GTSRB_ROOT`` (None when unset or empty).

    Raises :class:`~neonsign.errors.ConfigError` when it is set to something that is not a
    directory, so a typo fails at once instead of as a missing split after synthesis is skipped.
    """
    value = os.environ.get(GTSRB_ROOT_ENV, "")
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{GTSRB_ROOT_ENV}={value!r}: not a directory (a GTSRB root expected)")
    return path


@dataclass(frozen=True)
class TrainSettings:
    """How to train: ``epochs`` (None: the default for the data, see
    :func:`.stages.train_config`), seed, torch threads, MLflow tracking of the training run, and
    further :class:`~neonsign.train.TrainConfig` fields by name (``overrides``)."""

    epochs: int | None = None
    seed: int = 0
    threads: int | None = None
    track: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSettings:
    """How the test stage evaluates the model.

    ``split`` names a split of the data root to load and test on; None tests on the split the
    load stage found (the test split, else the by-track validation split of the training data).
    ``backend`` None is the fastest available. ``plot`` writes ``confusion.png`` when matplotlib
    is installed; ``profile_table`` adds a torch.profiler table of one batch to ``test.json``;
    ``print_summary`` prints the accuracy summary even when quiet (the main job's result; the
    lifecycle keeps its stdout for its JSON summary).
    """

    split: str | None = None
    backend: str | None = None
    plot: bool = True
    profile_table: bool = True
    print_summary: bool = True


@dataclass(frozen=True)
class ProfileSettings:
    """How the profile stage times the model: on ``backends`` (None: every available one), on a
    batch of held-out images (``on_heldout``) or random inputs, ``repeats`` timed and ``warmup``
    untimed passes, and with ``aten`` one torch.profiler pass per libtorch backend."""

    backends: tuple[str, ...] | None = None
    on_heldout: bool = True
    repeats: int = 5
    warmup: int = 2
    aten: bool = True


@dataclass(frozen=True)
class GateSettings:
    """The validation gate's limits (see :func:`neonsign.app.gate.gate`) and the registry alias
    a model that passes is promoted to."""

    alias: str = "champion"
    min_accuracy: float = DEFAULT_MIN_ACCURACY
    max_drop: float = DEFAULT_MAX_DROP
    fail_if_slower: float = 25.0


@dataclass(frozen=True)
class RunSettings:
    """Everything a job was asked to do; fixed for the run.

    ``data`` is the GTSRB root (None: ``$GTSRB_ROOT``, else synthetic data generated once into
    ``synth_dir``; the lifecycle always names it).
    """

    run_dir: Path
    data: Path | None = None
    synth_dir: Path = Path("data/synth")
    quiet: bool = False
    train: TrainSettings = field(default_factory=TrainSettings)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    gate: GateSettings = field(default_factory=GateSettings)


@dataclass
class RunContext:
    """The state of one run, shared by the stages; each field is set by the stage named.

    Fields listed in a stage's :attr:`~.runner.Stage.values` are JSON values: the runner
    records them in ``lineage.json`` and restores them when the stage is skipped.
    """

    settings: RunSettings
    registry: Registry | None = None  # the model registry (lifecycle with a registry)
    # data / load (or the lifecycle's prologue)
    data_root: Path | None = None
    synthetic: bool = False
    config: TrainConfig | None = None
    train_split: Split | None = None
    test_split: Split | None = None
    data_checksum: str | None = None
    code_version: str | None = None
    # train
    train_result: TrainResult | None = None
    weights_sha256: str | None = None
    val_accuracy: float | None = None
    # test (and gate): the evaluation data's checksum, computed once per run
    eval_checksum: str | None = None
    test_result: EvaluationResult | None = None
    heldout_images: np.ndarray | None = None
    accuracy: float | None = None
    # profile / compare
    profile_report: ProfileReport | None = None
    native_ms: float | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    # gate / register
    accepted: bool | None = None
    gate_reasons: list[str] = field(default_factory=list)
    registry_version: int | None = None
    promoted: bool | None = None
    # the runner
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    failed: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """The run directory (every output of the run is in it)."""
        return self.settings.run_dir

    @property
    def model_dir(self) -> Path:
        """Where the train stage writes the model directory."""
        return self.settings.run_dir / "model"

    @property
    def quiet(self) -> bool:
        return self.settings.quiet

    def log(self, message: str) -> None:
        """Print a progress line unless the run is quiet."""
        if not self.settings.quiet:
            print(message, flush=True)
