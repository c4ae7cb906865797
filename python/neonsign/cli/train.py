"""``neonsign train``: train TrafficSignNet and write a model directory (:func:`neonsign.train.train`).

``torchrun --nproc_per_node=2 -m neonsign.train --data ROOT --out DIR`` runs this command in
every process (DistributedDataParallel); ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..framing import FRAMING_KINDS
from ..train import TrainConfig, check_out, train

if TYPE_CHECKING:
    from ..app.registry import MlflowTracker

DESCRIPTION = "Training TrafficSignNet: ``neonsign train`` and :func:`train`."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    d = TrainConfig()
    parser.add_argument("--data", required=True, help="GTSRB root (any supported layout)")
    parser.add_argument("--out", required=True, help="model directory to write (must not exist)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"per process (default {d.batch_size})"
    )
    parser.add_argument(
        "--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})"
    )
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    parser.add_argument(
        "--dropout",
        type=float,
        default=d.dropout,
        help=f"training-only dropout before fc1 and fc2 (default {d.dropout})",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="fraction of tracks held out for validation (0: none)",
    )
    parser.add_argument(
        "--roi",
        action=argparse.BooleanOptionalAction,
        default=d.roi,
        help="crop each image to its annotated ROI before resizing",
    )
    parser.add_argument(
        "--framing",
        default=d.framing,
        choices=FRAMING_KINDS,
        help="training framings: roi-to-whole (default) trains on the ROI crop, the whole image "
        "and random boxes in between, so one model serves ROI crops and whole photos; fixed "
        "trains on the --roi framing only (the earlier recipe)",
    )
    parser.add_argument(
        "--framing-views",
        type=int,
        default=d.framing_views,
        help=f"random in-between boxes per image for roi-to-whole (default {d.framing_views})",
    )
    parser.add_argument(
        "--whole-weight",
        type=float,
        default=d.whole_weight,
        help="roi-to-whole: how much more often the whole-image view is drawn than each other "
        f"view (default {d.whole_weight:g})",
    )
    parser.add_argument("--no-augment", action="store_true", help="disable batch augmentation")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast for forward/backward (default: measured, on only where the CPU has bf16 and it is faster)",
    )
    parser.add_argument("--limit", type=int, default=None, help="load at most this many images")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing model directory"
    )
    parser.add_argument(
        "--no-mlflow", action="store_true", help="do not track with MLflow even if installed"
    )


def _tracker() -> MlflowTracker | None:
    """Track the run in MLflow (the registry's store) when mlflow is installed."""
    from ..app.registry import MlflowTracker

    return MlflowTracker.start()


def run(args: argparse.Namespace) -> int:
    check_out(args.out, args.force)  # in the first second, before MLflow or the data
    cfg = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        dropout=args.dropout,
        val_fraction=args.val_fraction,
        roi=args.roi,
        framing=args.framing,
        framing_views=args.framing_views,
        whole_weight=args.whole_weight,
        augment=not args.no_augment,
        bf16=args.bf16,
    )
    res = train(
        args.data,
        args.out,
        config=cfg,
        quiet=args.quiet,
        overwrite=args.force,
        limit=args.limit,
        tracker=None if args.no_mlflow else _tracker(),
    )
    if res.model_dir is not None:
        acc = "n/a" if res.val_accuracy is None else f"{res.val_accuracy:.4f}"
        metrics = res.card.get("metrics", {})
        framings = "".join(
            f", {name} {metrics[f'val_accuracy_{name}']:.4f}"
            for name in ("roi", "whole")
            if metrics.get(f"val_accuracy_{name}") is not None
        )
        print(
            f"model written to {res.model_dir} (val accuracy by track {acc}{framings}, best "
            f"epoch {res.best_epoch}/{cfg.epochs}, {res.seconds:.1f} s)"
        )
    return 0
