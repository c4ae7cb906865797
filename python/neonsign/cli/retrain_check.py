"""``neonsign retrain-check``: should we retrain? (:func:`neonsign.app.retrain.retrain_check`)

Prints a JSON decision; exit status 0 = no retraining needed, 1 = retrain, 2 = error.
"""

from __future__ import annotations

import argparse
import json

from ..app.retrain import retrain_check


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Should we retrain? (``neonsign retrain-check``)"
    parser.add_argument("--metrics", default=None, help="the server's /metrics URL or a saved copy")
    parser.add_argument(
        "--baseline",
        required=True,
        help="serving model's model_card.json, model directory or registry spec (registry:champion)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="GTSRB root: checksum the training split (and reference brightness)",
    )
    parser.add_argument(
        "--reference-metrics",
        default=None,
        help="a /metrics snapshot taken when the model was healthy",
    )
    parser.add_argument("--max-age-days", type=float, default=30.0)
    parser.add_argument("--max-psi", type=float, default=0.2)
    parser.add_argument("--max-low-confidence", type=float, default=0.3)
    parser.add_argument("--min-requests", type=int, default=100)


def run(args: argparse.Namespace) -> int:
    decision = retrain_check(
        args.metrics,
        args.baseline,
        data=args.data,
        reference_metrics=args.reference_metrics,
        max_age_days=args.max_age_days,
        max_psi=args.max_psi,
        max_low_confidence=args.max_low_confidence,
        min_requests=args.min_requests,
    )
    print(json.dumps(decision, indent=2, default=float))
    return 1 if decision["retrain"] else 0
