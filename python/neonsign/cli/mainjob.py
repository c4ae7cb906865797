"""``neonsign main``: the main job, data -> train -> test -> profile -> compare -> report, into a
new run directory (:func:`neonsign.app.pipeline.run_main_job`)."""

from __future__ import annotations

import argparse

from ..app.pipeline import run_main_job


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The main job: ``neonsign main``, data -> load -> train -> test -> report, as named stages."
    )
    parser.add_argument(
        "--data", default=None, help="GTSRB root (default: $GTSRB_ROOT, else synthetic data)"
    )
    parser.add_argument(
        "--runs", default="runs", help="parent of the new run directory (default ./runs)"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default=None, help="test backend (default: fastest available)")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_main_job(
        data=args.data,
        runs_dir=args.runs,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        backend=args.backend,
        quiet=args.quiet,
    )
    return 0
