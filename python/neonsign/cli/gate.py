"""``neonsign gate``: may a candidate model replace the champion? (:func:`neonsign.app.gate.gate`)

Prints the verdict as JSON (and writes it to ``--out``); exit status 1 when it is refused.
"""

from __future__ import annotations

import argparse
import json

from .._fileio import atomic_write_text, check_file_writable
from ..app.gate import DEFAULT_MAX_DROP, DEFAULT_MIN_ACCURACY, gate


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The validation gate: may a candidate model replace the champion? (``neonsign gate``)"
    )
    parser.add_argument(
        "--candidate", required=True, help="candidate model directory or learning-path .pth"
    )
    parser.add_argument("--data", required=True, help="GTSRB root holding the evaluation split")
    parser.add_argument(
        "--champion",
        default=None,
        help="champion model directory or registry spec (registry:champion); omit if none",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=DEFAULT_MIN_ACCURACY,
        help="accuracy floor (fraction, default %(default)s); never below the champion's "
        "accuracy minus --max-drop",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=DEFAULT_MAX_DROP,
        help="allowed accuracy drop vs champion (fraction, default %(default)s)",
    )
    parser.add_argument(
        "--fail-if-slower", type=float, default=25.0, help="latency regression limit in percent"
    )
    parser.add_argument("--max-logit-diff", type=float, default=1e-3)
    parser.add_argument(
        "--candidate-result", default=None, help="`neonsign test --json` output to reuse"
    )
    parser.add_argument(
        "--candidate-profile", default=None, help="native profile report JSON of the candidate"
    )
    parser.add_argument(
        "--champion-profile", default=None, help="native profile report JSON of the champion"
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="profile repeats when profiling here"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the verdict JSON here")


def run(args: argparse.Namespace) -> int:
    if args.out:  # before the models are tested and profiled
        check_file_writable(args.out, "write the verdict")
    verdict = gate(
        args.candidate,
        args.data,
        champion=args.champion,
        split=args.split,
        min_accuracy=args.min_accuracy,
        max_drop=args.max_drop,
        fail_if_slower=args.fail_if_slower,
        max_logit_diff=args.max_logit_diff,
        candidate_result=args.candidate_result,
        candidate_profile=args.candidate_profile,
        champion_profile=args.champion_profile,
        repeats=args.repeats,
        threads=args.threads,
    )
    text = json.dumps(verdict, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n", "write the verdict")
    print(text)
    return 0 if verdict["accepted"] else 1
