"""The main job: ``neonsign main``, data -> load -> train -> test -> report, as named stages.

The command line of the main job; the job itself is :func:`neonsign.app.pipeline.run_main_job`
(stages in :data:`neonsign.app.pipeline.MAIN_JOB`).
"""

from __future__ import annotations

import argparse
from typing import Any

from .app.pipeline.jobs import run_main_job as run

__all__ = ["register_cli"]


def _run(args: argparse.Namespace) -> int:
    run(
        data=args.data,
        runs_dir=args.runs,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        backend=args.backend,
        quiet=args.quiet,
    )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``neonsign main`` to the CLI (import-light)."""
    p = subparsers.add_parser(
        "main",
        help="the main job: data -> train -> test -> profile -> compare -> report",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--data", default=None, help="GTSRB root (default: $GTSRB_ROOT, else synthetic data)"
    )
    p.add_argument(
        "--runs", default="runs", help="parent of the new run directory (default ./runs)"
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backend", default=None, help="test backend (default: fastest available)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_run)
