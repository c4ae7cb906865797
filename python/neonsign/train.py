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
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, NeonsignValueError

__all__ = ["TrainConfig", "TrainResult", "fit", "train", "train_loaded"]


@dataclass
class TrainConfig:
    """Hyperparameters and data options of a training run (defaults tuned on GTSRB by track)."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    warmup_fraction: float = 0.2  # fraction of steps spent increasing the learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    label_smoothing: float = 0.05
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
    roi: bool = True  # crop to the annotated ROI (+1.5 points by track, see docs)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # bfloat16 autocast of the forward/backward pass (weights and optimizer stay float32):
    # None = on where the CPU has native bf16 (x86-64 AVX512_BF16/AMX, Arm BF16), else float32.
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
            ("val_fraction", 0 <= self.val_fraction < 1),
            ("scale", 0 < self.scale[0] <= self.scale[1]),
            ("translate", 0 <= self.translate < 1),
            ("rotation", 0 <= self.rotation <= 180),
            ("brightness", 0 <= self.brightness < 1),
            ("contrast", 0 <= self.contrast < 1),
            ("threads", self.threads is None or self.threads >= 1),
            ("size", self.size == 32),
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
    history: list[dict[str, Any]]
    val_accuracy: float | None
    best_epoch: int
    seconds: float
    val_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))


def fit(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> Any:
    """Train on in-memory arrays; returns a ``FitResult`` (best state_dict, history, accuracy).

    images: uint8 (N, 32, 32, 3) RGB; labels: int (N,) in [0, 43); train_idx / val_idx: int
    indices into them (val_idx may be empty: the last epoch's weights are kept).
    """
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
    if labels.size and (labels.min() < 0 or labels.max() >= 43):
        raise NeonsignValueError(
            f"labels: values must lie in [0, 43), found [{labels.min()}, {labels.max()}]"
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


class _MlflowTracker:
    """Logs params, per-epoch metrics and the model directory to MLflow when it is importable.

    Uses ``MLFLOW_TRACKING_URI`` when set, else the registry's local SQLite store
    (:func:`neonsign.registry.default_uri`). A no-op otherwise.
    """

    def __init__(self, enabled: bool) -> None:
        self.mlflow: Any = None
        if not enabled:
            return
        try:
            import mlflow
        except ImportError:
            return
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            from .registry import Registry  # SQLite beside the registry: MLflow 3 refuses ./mlruns

            reg = Registry()
            mlflow.set_tracking_uri(reg.uri)
            reg.experiment_id()  # created with its artifacts beside the database, not ./mlruns
        mlflow.set_experiment("neonsign")
        mlflow.start_run()

    def params(self, params: dict[str, Any]) -> None:
        if self.mlflow:
            self.mlflow.log_params({k: str(v) for k, v in params.items()})

    def epoch(self, record: dict[str, Any]) -> None:
        if self.mlflow:
            metrics = {k: float(v) for k, v in record.items() if k != "epoch" and v is not None}
            self.mlflow.log_metrics(metrics, step=int(record["epoch"]))

    def finish(self, model_dir: Path | None, ok: bool) -> None:
        if self.mlflow:
            if model_dir is not None:
                self.mlflow.log_artifacts(str(model_dir), artifact_path="model")
            self.mlflow.end_run(status="FINISHED" if ok else "FAILED")


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


def _check_out(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise ModelError(
            f"output directory {path} already exists and is not empty; refusing to overwrite "
            "it (pass overwrite=True, or --force)"
        )


def train_loaded(
    images: np.ndarray,
    labels: np.ndarray,
    meta: Any,
    out: str | os.PathLike[str] | None,
    *,
    config: TrainConfig | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    track: bool = True,
    data_name: str = "",
) -> TrainResult:
    """Train on a split already loaded by :func:`neonsign.data.load_split` (uint8 NHWC, labels,
    meta) and write the model directory ``out`` (rank 0; None: write nothing).

    Validation takes whole tracks (:func:`neonsign.data.track_split`) unless
    ``config.val_fraction`` is 0.
    """
    from . import artifacts
    from ._trainer import fit as _fit
    from .data import track_split

    cfg = config or TrainConfig()
    cfg.validate()
    out_path = None if out is None else Path(out)
    if out_path is not None:
        _check_out(out_path, overwrite)
    rank, world, joined = _init_distributed()
    tracker = _MlflowTracker(track and rank == 0)
    model_dir: Path | None = None
    ok = False
    try:
        if cfg.val_fraction > 0:
            train_idx, val_idx = track_split(meta, val_fraction=cfg.val_fraction, seed=cfg.seed)
        else:
            train_idx, val_idx = np.arange(len(labels)), np.empty(0, np.int64)
        checksum = getattr(meta, "checksum", None)
        tracker.params(
            {
                **dataclasses.asdict(cfg),
                "world_size": world,
                "data": data_name,
                "data_checksum": checksum,
                "n_train": len(train_idx),
                "n_val": len(val_idx),
            }
        )
        res = _fit(
            images, labels, train_idx, val_idx, cfg, progress=not quiet, on_epoch=tracker.epoch
        )
        card = artifacts.make_card(
            metrics={
                "val_accuracy": res.val_accuracy,
                "per_class_accuracy": res.per_class_accuracy,
                "best_epoch": res.best_epoch,
                "history": res.history,
                "n_train": int(len(train_idx)),
                "n_val": int(len(val_idx)),
                "validation": "by track" if len(val_idx) else "none",
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
                "bf16_option": "auto" if cfg.bf16 is None else cfg.bf16,
            },
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
        tracker.finish(model_dir, ok)
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
    track: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Train TrafficSignNet on the GTSRB training split under ``data`` and save it to ``out``.

    ``config`` (default :class:`TrainConfig`) may be adjusted by keyword, e.g.
    ``train(root, out, epochs=5, seed=1, threads=2)``. ``out`` must not be an existing non-empty
    directory unless ``overwrite=True``. ``limit`` caps the number of images loaded (for quick
    runs). Under torchrun the run is distributed; rank 0 writes the model. MLflow tracking is
    used when ``track`` and mlflow is importable.
    """
    from .data import load_split

    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    out_path = Path(out)
    _check_out(out_path, overwrite)  # fail before spending time on loading
    images, labels, meta = load_split(
        data, "train", size=cfg.size, roi=cfg.roi, dtype="uint8", threads=cfg.threads, limit=limit
    )
    return train_loaded(
        images,
        labels,
        meta,
        out_path,
        config=cfg,
        quiet=quiet,
        overwrite=overwrite,
        track=track,
        data_name=os.fspath(Path(data).resolve()),
    )


if __name__ == "__main__":  # torchrun -m neonsign.train ...: the `neonsign train` command
    from neonsign.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
