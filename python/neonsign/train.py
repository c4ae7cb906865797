"""Training TrafficSignNet: ``neonsign train`` and :func:`train`.

The split is loaded once by neonsign's C loader as uint8 NHWC, split into train / validation by
whole tracks (:func:`neonsign.data.track_split`), and trained with AdamW, a one-cycle learning
rate schedule, label smoothing and batch augmentation in torch. The weights of the epoch with the
best validation accuracy are written as a model directory (safetensors + model card, see
:mod:`neonsign.artifacts`).

Several processes: ``torchrun --nproc_per_node=2 -m neonsign.train --data ROOT --out DIR``
trains with DistributedDataParallel (gloo); each rank takes a shard of every epoch's batches and
rank 0 writes the model. ``--batch-size`` is per process.

Importing this module does not import torch (the CLI imports it to register ``train``).
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from .artifacts import DEFAULT_PREPROCESSING, NUM_CLASSES
from .errors import (
    ModelError,
    NeonsignFileExistsError,
    NeonsignNotADirectoryError,
    NeonsignPermissionError,
    NeonsignValueError,
    file_errors,
    require,
)
from .framing import FRAMING_KINDS

if TYPE_CHECKING:
    from ._trainer import EpochRecord, FitResult, Framing
    from .data import SplitMeta

__all__ = [
    "ModelDirectoryExistsError",
    "TrainConfig",
    "TrainResult",
    "TrainingTracker",
    "check_out",
    "fit",
    "train",
    "train_loaded",
]

_RGB = tuple[float, float, float]


def _rgb(values: Sequence[float]) -> _RGB:
    """Three per-channel values as a tuple (a dataclass default must be immutable)."""
    r, g, b = (float(v) for v in values)
    return (r, g, b)


class ModelDirectoryExistsError(NeonsignFileExistsError, ModelError):
    """The output model directory exists and is not empty, and overwriting was not asked for.

    A FileExistsError (the error boundary) and, as before it, a ModelError."""


@dataclass
class TrainConfig:
    """Hyperparameters and data options of a training run (defaults tuned on GTSRB by track)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    warmup_fraction: float = 0.2  # fraction of steps spent increasing the learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    label_smoothing: float = 0.05
    dropout: float = 0.3  # training-only dropout on the inputs of fc1 and fc2
    augment: bool = True
    rotation: float = 10.0  # degrees, +-
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1  # fraction of the image size, +-
    brightness: float = 0.3  # factor 1 +- brightness
    contrast: float = 0.3  # factor 1 +- contrast
    val_fraction: float = 0.2  # fraction of tracks held out for validation
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    size: int = 32
    # the framing the card asks evaluation for (``neonsign test``'s default; the ROI crop)
    roi: bool = True
    # training framings (see neonsign.framing): "roi-to-whole" trains on the ROI crop, the whole
    # image and ``framing_views`` random boxes in between, so the model serves whole photos as
    # well as ROI crops; "fixed" trains on the loaded framing only (the recipe before issue 13)
    framing: str = "roi-to-whole"
    framing_views: int = 2
    # roi-to-whole: how much more often the whole-image view is drawn than each other view
    # (1: every view equally often)
    whole_weight: float = 1.0
    mean: _RGB = _rgb(DEFAULT_PREPROCESSING["mean"])  # the learning path's normalisation
    std: _RGB = _rgb(DEFAULT_PREPROCESSING["std"])
    # bfloat16 autocast of the forward/backward pass (weights and optimizer stay float32):
    # None = measured: bfloat16 only where this CPU has native bf16 and a few timed training
    # steps show it faster than float32 (neonsign._precision; cached per CPU).
    bf16: bool | None = None

    def validate(self) -> None:
        """Raise NeonsignValueError naming the first field with an impossible value."""
        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0),
            ("warmup_fraction", 0 < self.warmup_fraction < 1),
            ("weight_decay", self.weight_decay >= 0),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("dropout", 0 <= self.dropout < 1),
            ("val_fraction", 0 <= self.val_fraction < 1),
            ("scale", 0 < self.scale[0] <= self.scale[1]),
            ("translate", 0 <= self.translate < 1),
            ("rotation", 0 <= self.rotation <= 180),
            ("brightness", 0 <= self.brightness < 1),
            ("contrast", 0 <= self.contrast < 1),
            ("threads", self.threads is None or self.threads >= 1),
            ("size", self.size == 32),
            ("framing", self.framing in FRAMING_KINDS),
            ("framing_views", 0 <= self.framing_views <= 16),
            ("whole_weight", 0 < self.whole_weight <= 16),
            ("std", all(s > 0 for s in self.std)),
            ("bf16", self.bf16 is None or isinstance(self.bf16, bool)),
        ]
        for name, ok in checks:
            if not ok:
                raise NeonsignValueError(
                    f"TrainConfig.{name} has an invalid value {getattr(self, name)!r}"
                )

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that shape the optimisation (for the model card and MLflow)."""
        skip = {"seed", "threads", "size", "roi", "mean", "std", "epochs", "bf16"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; only rank 0 writes ``model_dir``)."""

    model_dir: Path | None
    card: dict[str, Any]
    history: list[EpochRecord]
    val_accuracy: float | None
    best_epoch: int
    seconds: float
    val_idx: npt.NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: np.empty(0, np.int64)
    )


def fit(
    images: npt.ArrayLike,
    labels: npt.ArrayLike,
    train_idx: npt.ArrayLike,
    val_idx: npt.ArrayLike,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> FitResult:
    """Train on in-memory arrays; returns a ``FitResult`` (best state_dict, history, accuracy).

    images: uint8 (N, 32, 32, 3) RGB; labels: int (N,) in [0, 43); train_idx / val_idx: int
    indices into them (val_idx may be empty: the last epoch's weights are kept).
    """
    _require_torch()
    from ._trainer import fit as _fit

    cfg = config or TrainConfig()
    cfg.validate()
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (cfg.size, cfg.size, 3):
        raise NeonsignValueError(
            f"images: expected uint8 (N, {cfg.size}, {cfg.size}, 3), got {images.dtype} {images.shape}"
        )
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise NeonsignValueError(
            f"labels: expected integers of shape ({images.shape[0]},), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise NeonsignValueError(
            f"labels: values must lie in [0, {NUM_CLASSES}), found [{labels.min()}, {labels.max()}]"
        )
    for name, idx in (("train_idx", train_idx), ("val_idx", val_idx)):
        idx = np.asarray(idx)
        if idx.size and (
            not np.issubdtype(idx.dtype, np.integer)
            or idx.min() < 0
            or idx.max() >= images.shape[0]
        ):
            raise NeonsignValueError(f"{name}: indices must be integers in [0, {images.shape[0]})")
    return _fit(
        images,
        labels.astype(np.int64),
        np.asarray(train_idx),
        np.asarray(val_idx),
        cfg,
        progress=progress,
    )


class TrainingTracker(Protocol):
    """Where a training run reports its parameters, epochs and result (e.g. an MLflow run:
    :class:`neonsign.app.registry.MlflowTracker`). Only rank 0 of a distributed run reports."""

    def params(self, params: dict[str, Any]) -> None: ...

    def epoch(self, record: EpochRecord) -> None: ...

    def finish(self, model_dir: Path | None, ok: bool) -> None: ...


class _NoTracker:
    """The tracker of an untracked run: reports nothing."""

    def params(self, params: dict[str, Any]) -> None:
        pass

    def epoch(self, record: EpochRecord) -> None:
        pass

    def finish(self, model_dir: Path | None, ok: bool) -> None:
        pass


def _init_distributed() -> tuple[int, int, bool]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): (rank, world, joined)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return dist.get_rank(), dist.get_world_size(), False


def _require_torch() -> None:
    """MissingDependencyError naming the ``torch`` extra when PyTorch is not installed."""
    require("torch", "torch", "training")


def check_out(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that the model directory ``path`` can be written; ``path``.

    Raises :class:`ModelDirectoryExistsError` (a FileExistsError) when it exists and is not
    empty and ``overwrite`` is false, NeonsignNotADirectoryError when it or its nearest existing
    parent is not a directory, NeonsignPermissionError when that directory is not writable
    (including a read-only file system). Each message names the path.
    """
    out = Path(path)
    with file_errors("check the output directory", out):
        if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
            raise ModelDirectoryExistsError(
                f"output directory {out} already exists and is not empty; refusing to "
                "overwrite it (pass overwrite=True, or --force)",
                errno.EEXIST,
                str(out),
            )
        if out.exists() and not out.is_dir():
            raise NeonsignNotADirectoryError(
                f"output directory {out} is a file, not a directory", errno.ENOTDIR, str(out)
            )
        parent = out if out.exists() else _nearest_existing_parent(out)
        if not parent.is_dir():
            raise NeonsignNotADirectoryError(
                f"cannot create the output directory {out}: {parent} is not a directory",
                errno.ENOTDIR,
                str(parent),
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise NeonsignPermissionError(
                f"cannot write the output directory {out}: {parent} is not writable",
                errno.EACCES,
                str(parent),
            )
    return out


def _nearest_existing_parent(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (a file, if one is in the way)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _model_card(
    res: FitResult,
    cfg: TrainConfig,
    n_train: int,
    n_val: int,
    checksum: str | None,
    world: int,
    data_name: str,
) -> dict[str, Any]:
    """The model card of a finished run (see :func:`neonsign.artifacts.make_card`).

    ``metrics.val_accuracy`` is the accuracy in the framing the card asks evaluation for
    (``preprocessing.roi``); ``val_accuracy_roi`` and ``val_accuracy_whole`` are both framings
    of the same by-track validation images (absent without validation)."""
    from . import artifacts

    per_framing = {f"val_accuracy_{k}": v for k, v in sorted(res.val_framings.items())}
    return artifacts.make_card(
        metrics={
            "val_accuracy": res.val_accuracy,
            **per_framing,
            "per_class_accuracy": res.per_class_accuracy,
            "best_epoch": res.best_epoch,
            "history": res.history,
            "n_train": n_train,
            "n_val": n_val,
            "validation": "by track" if n_val else "none",
        },
        preprocessing={
            "size": cfg.size,
            "roi": cfg.roi,
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "dtype": "float32",
        },
        data_checksum=checksum,
        seed=cfg.seed,
        epochs=cfg.epochs,
        hyperparameters=cfg.hyperparameters(),
        training={
            "world_size": world,
            "threads": cfg.threads,
            "seconds": res.seconds,
            "data": data_name,
            "precision": res.precision,
            "precision_choice": res.precision_choice,
            "bf16_option": "auto" if cfg.bf16 is None else cfg.bf16,
            "framing": _framing_record(cfg),
        },
    )


def _framing_record(cfg: TrainConfig) -> dict[str, Any]:
    """The model card's ``training.framing``: which framings the network was trained on."""
    if cfg.framing == "fixed":
        return {"kind": "fixed", "views": ["roi" if cfg.roi else "whole"]}
    return {
        "kind": "roi-to-whole",
        "views": ["roi", "whole", *(["random"] * cfg.framing_views)],
        "random_views": cfg.framing_views,
        "random_box": "contains the ROI; each side moved towards the border by U(0, 1) of the room",
        "per_sample": "one view drawn per sample and batch, then the affine/colour augmentation",
        "whole_weight": cfg.whole_weight,
        "resize": "neonsign's C loader (the resize the server and neonsign test use)",
    }


def _views(
    images: npt.NDArray[np.uint8], meta: SplitMeta, cfg: TrainConfig
) -> tuple[npt.NDArray[np.uint8], Framing]:
    """The image views a run trains and validates on (see :mod:`neonsign.framing`).

    ``roi-to-whole``: the ROI crop, the whole image and ``framing_views`` random boxes, all
    trained on, the best epoch picked by the mean of the ROI and whole validation accuracies.
    ``fixed``: the loaded framing trained on and picked by; the other framing only validated.
    """
    from ._trainer import Framing
    from .framing import ROI_VIEW, WHOLE_VIEW, load_views

    primary = "roi" if cfg.roi else "whole"
    if cfg.framing == "roi-to-whole":
        v = load_views(
            meta, images, random_views=cfg.framing_views, seed=cfg.seed, threads=cfg.threads
        )
        names = {"roi": ROI_VIEW, "whole": WHOLE_VIEW}
        weights = [1.0] * v.count
        weights[WHOLE_VIEW] = cfg.whole_weight
        return v.images, Framing(v.count, names, primary, True, tuple(weights))
    v = load_views(meta, images, random_views=0, seed=cfg.seed, threads=cfg.threads)
    loaded = ROI_VIEW if meta.roi else WHOLE_VIEW
    order = [loaded, 1 - loaded]  # the loaded framing first: the only one trained on
    names = {"roi" if meta.roi else "whole": 0, "whole" if meta.roi else "roi": 1}
    return v.images[order], Framing(1, names, primary, select_on_mean=False)


def train_loaded(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer[Any]],
    meta: SplitMeta,
    out: str | os.PathLike[str] | None,
    *,
    config: TrainConfig | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    tracker: TrainingTracker | None = None,
    data_name: str = "",
) -> TrainResult:
    """Train on a split already loaded by :func:`neonsign.data.load_split` (uint8 NHWC, labels,
    meta) and write the model directory ``out`` (rank 0; None: write nothing).

    Validation takes whole tracks (:func:`neonsign.data.track_split`) unless
    ``config.val_fraction`` is 0. ``out`` is checked (:func:`check_out`) before training.
    """
    cfg = config or TrainConfig()
    cfg.validate()
    out_path = None if out is None else check_out(out, overwrite)
    _require_torch()
    from . import artifacts
    from ._trainer import fit as _fit
    from .data import track_split

    rank, world, joined = _init_distributed()
    report: TrainingTracker = tracker if tracker is not None and rank == 0 else _NoTracker()
    model_dir: Path | None = None
    ok = False
    try:
        if cfg.val_fraction > 0:
            train_idx, val_idx = track_split(meta, val_fraction=cfg.val_fraction, seed=cfg.seed)
        else:
            train_idx, val_idx = np.arange(len(labels)), np.empty(0, np.int64)
        checksum = getattr(meta, "checksum", None)
        report.params(
            {
                **dataclasses.asdict(cfg),
                "world_size": world,
                "data": data_name,
                "data_checksum": checksum,
                "n_train": len(train_idx),
                "n_val": len(val_idx),
            }
        )
        views, framing = _views(images, meta, cfg)
        res = _fit(
            views,
            labels,
            train_idx,
            val_idx,
            cfg,
            framing=framing,
            progress=not quiet,
            on_epoch=report.epoch,
        )
        card = _model_card(
            res, cfg, int(len(train_idx)), int(len(val_idx)), checksum, world, data_name
        )
        if rank == 0 and out_path is not None:
            model_dir = artifacts.save_model(out_path, res.state_dict, card, overwrite=overwrite)
        ok = True
        return TrainResult(
            model_dir,
            card,
            res.history,
            res.val_accuracy,
            res.best_epoch,
            res.seconds,
            np.asarray(val_idx),
        )
    finally:
        report.finish(model_dir, ok)
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    tracker: TrainingTracker | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train TrafficSignNet on the GTSRB training split under ``data`` and save it to ``out``.

    ``config`` (default :class:`TrainConfig`) may be adjusted by keyword, e.g.
    ``train(root, out, epochs=5, seed=1, threads=2)``. ``out`` must not be an existing non-empty
    directory unless ``overwrite=True``. ``limit`` caps the number of images loaded (for quick
    runs). Under torchrun the run is distributed; rank 0 writes the model. ``tracker``
    (e.g. :class:`neonsign.app.registry.MlflowTracker`) receives the parameters, every epoch and
    the result; None tracks nothing.
    """
    from .data import load_split

    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    out_path = check_out(out, overwrite)  # fail before spending time on loading
    _require_torch()
    with file_errors("load the train split of", data):
        images, labels, meta = load_split(
            Path(data),
            "train",
            size=cfg.size,
            roi=cfg.roi,
            dtype="uint8",
            threads=cfg.threads,
            limit=limit,
        )
    return train_loaded(
        images,
        labels,
        meta,
        out_path,
        config=cfg,
        quiet=quiet,
        overwrite=overwrite,
        tracker=tracker,
        data_name=os.fspath(Path(data).resolve()),
    )


if __name__ == "__main__":  # `torchrun -m neonsign.train ...` runs the `neonsign train` command
    import sys

    from neonsign.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
