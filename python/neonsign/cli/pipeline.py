"""``neonsign pipeline``: the lifecycle pipeline, train -> test -> profile -> gate ->
register/promote, resumable in its run directory (:func:`neonsign.app.pipeline.run_pipeline`).

Prints a JSON summary; exit status 1 when the gate refused the model, 130 when interrupted
(Ctrl-C), even when the interrupt landed where Python swallows it (:mod:`neonsign.app.pipeline
.interrupts`): the run stops before its next stage, never going on to register or promote.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..app.gate import DEFAULT_MAX_DROP, DEFAULT_MIN_ACCURACY
from ..app.pipeline import LIFECYCLE, interrupts, run_pipeline


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The lifecycle pipeline: train -> test -> profile -> gate -> register/promote "
        "(``neonsign pipeline``)."
    )
    parser.add_argument(
        "--data", required=True, help="GTSRB root (train split, and the evaluation split)"
    )
    parser.add_argument("--run-dir", required=True, help="run directory (reuse it to resume)")
    parser.add_argument(
        "--from",
        dest="from_stage",
        default=None,
        choices=[s.name for s in LIFECYCLE],
        help="force this stage and every later one",
    )
    parser.add_argument("--split", default="test", help="evaluation split (default test)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--registry-uri", default=None, help="MLflow URI (default: see neonsign registry)"
    )
    parser.add_argument("--no-registry", action="store_true", help="no champion, no register stage")
    parser.add_argument("--alias", default="champion", help="alias promoted when the gate accepts")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=DEFAULT_MIN_ACCURACY,
        help="the gate's accuracy floor (fraction, default %(default)s); never below the "
        "champion's accuracy minus --max-drop",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=DEFAULT_MAX_DROP,
        help="allowed accuracy drop vs champion (fraction, default %(default)s)",
    )
    parser.add_argument("--fail-if-slower", type=float, default=25.0)
    parser.add_argument("--repeats", type=int, default=10, help="profile repeats")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    with interrupts.trap():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    ctx = run_pipeline(
        args.data,
        args.run_dir,
        split=args.split,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        registry_uri=args.registry_uri,
        use_registry=not args.no_registry,
        alias=args.alias,
        min_accuracy=args.min_accuracy,
        max_drop=args.max_drop,
        fail_if_slower=args.fail_if_slower,
        repeats=args.repeats,
        from_stage=args.from_stage,
        quiet=args.quiet,
    )
    interrupts.check()  # one swallowed during the last stage: no summary, exit 130
    summary = {
        "ran": ctx.ran,
        "skipped": ctx.skipped,
        "accuracy": ctx.accuracy,
        "accepted": ctx.accepted,
        "gate_reasons": ctx.gate_reasons,
        "registry_version": ctx.registry_version,
        "promoted": ctx.promoted,
        "weights_sha256": ctx.weights_sha256,
        "data_checksum": ctx.data_checksum,
        "run_dir": os.fspath(Path(args.run_dir).resolve()),
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0 if ctx.accepted else 1
