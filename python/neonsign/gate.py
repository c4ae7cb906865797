"""The validation gate: may a candidate model replace the champion? (``neonsign gate``)

A candidate passes only if every check passes:

``accuracy_floor``
    its accuracy on the evaluation split is at least ``min_accuracy``;
``accuracy_vs_champion``
    it is not worse than the champion's accuracy on the same split by more than ``max_drop``
    (absolute fraction; passes when there is no champion);
``latency``
    its native per-batch latency did not regress beyond ``fail_if_slower`` percent against the
    champion's (:func:`neonsign.profile_report.compare` on native profiles, given as report
    files or measured here side by side); passes when there is no champion;
``probe_parity``
    on a fixed probe set (seeded random inputs plus the first evaluation images) the native
    engine and PyTorch agree: identical top-1 and max abs logit difference <= ``max_logit_diff``.

The verdict is a JSON-ready dict (``accepted``, ``checks``, ``reasons``); the CLI writes it and
exits 1 when the candidate is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NeonsignValueError, file_errors

__all__ = ["PROBE_RANDOM", "probe_set", "probe_parity", "gate"]

PROBE_RANDOM = 32  # seeded random inputs in the probe set
PROBE_SEED = 20240  # fixed: the probe set is the same for every candidate


def probe_set(
    images: np.ndarray | None = None,
    mean: Any = (0.5, 0.5, 0.5),
    std: Any = (0.5, 0.5, 0.5),
    n_images: int = 32,
) -> np.ndarray:
    """The fixed probe set: float32 (N, 3, 32, 32), :data:`PROBE_RANDOM` seeded uniform inputs
    in [-1, 1] followed by the first ``n_images`` of ``images`` (uint8 (M, 32, 32, 3), if given)
    normalised with ``mean``/``std``."""
    rng = np.random.default_rng(PROBE_SEED)
    parts = [rng.uniform(-1.0, 1.0, (PROBE_RANDOM, 3, 32, 32)).astype(np.float32)]
    if images is not None and len(images):
        x = np.asarray(images[:n_images], dtype=np.float32) / 255.0
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        parts.append(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    return np.concatenate(parts)


def probe_parity(
    model: str | os.PathLike[str], probes: np.ndarray, max_logit_diff: float = 1e-3
) -> dict[str, Any]:
    """Native engine vs PyTorch on ``probes``: a check dict (``passed``, ``top1_mismatches``,
    ``max_abs_logit_diff``, ``detail``). Without torch the check fails and says so."""
    from .evaluate import available_backends, make_predictor

    if "torch" not in available_backends():
        return {
            "name": "probe_parity",
            "passed": False,
            "detail": "PyTorch is not installed: the native engine cannot be checked against it",
        }
    native = make_predictor(model, "native")(probes)
    ref = make_predictor(model, "torch")(probes)
    mism = int(np.count_nonzero(native.argmax(1) != ref.argmax(1)))
    diff = float(np.max(np.abs(native.astype(np.float64) - ref)))
    ok = mism == 0 and diff <= max_logit_diff
    return {
        "name": "probe_parity",
        "passed": ok,
        "n_probes": int(len(probes)),
        "top1_mismatches": mism,
        "max_abs_logit_diff": diff,
        "limit": max_logit_diff,
        "detail": f"native vs torch on {len(probes)} probes: {mism} top-1 mismatches, "
        f"max |logit diff| {diff:.2e} (limit {max_logit_diff:g})",
    }


def _latency(
    candidate: str,
    champion: str | None,
    fail_if_slower: float,
    candidate_profile: str | None,
    champion_profile: str | None,
    repeats: int,
) -> dict[str, Any]:
    from .profile_report import compare

    if champion is None and champion_profile is None:
        return {"name": "latency", "passed": True, "detail": "no champion: nothing to compare with"}
    from .profile_report import ProfileReport
    from .profiler import profile

    def report(path: str | None, model: str | None) -> ProfileReport:
        if path is not None:
            return ProfileReport.load(path)
        return profile(model, backends=["native"], repeats=repeats, aten=False)

    base = report(champion_profile, champion)
    new = report(candidate_profile, candidate)
    cmp = compare(base, new, backends=["native"], fail_if_slower=fail_if_slower)
    return {
        "name": "latency",
        "passed": not cmp.failed,
        "fail_if_slower_pct": fail_if_slower,
        "regressions": cmp.regressions,
        "mismatches": cmp.mismatches,
        "detail": cmp.verdict(),
    }


def gate(
    candidate: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    champion: str | None = None,
    split: str = "test",
    min_accuracy: float = 0.0,
    max_drop: float = 0.01,
    fail_if_slower: float = 25.0,
    max_logit_diff: float = 1e-3,
    candidate_result: str | os.PathLike[str] | None = None,
    candidate_profile: str | None = None,
    champion_profile: str | None = None,
    repeats: int = 10,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the gate's checks (see the module doc) and return the verdict dict.

    Args:
        candidate: the candidate's model directory.
        data: GTSRB root holding ``split`` (the evaluation split).
        champion: the champion's model directory or a registry spec (``registry:champion``);
            None when there is none yet.
        candidate_result: a ``neonsign test --json`` result of the candidate on the same data
            and split (reused instead of evaluating again when its data checksum matches).
        candidate_profile, champion_profile: profile report JSON files (native backend).
    """
    from .artifacts import load_model
    from .data import load_split
    from .evaluate import evaluate_arrays

    for name, v in (("min_accuracy", min_accuracy), ("max_drop", max_drop)):
        if not 0.0 <= v <= 1.0:
            raise NeonsignValueError(f"{name} must be a fraction in [0, 1], got {v}")
    if fail_if_slower < 0 or max_logit_diff < 0:
        raise NeonsignValueError("fail_if_slower and max_logit_diff must be >= 0")
    candidate = os.fspath(candidate)
    champion_dir: str | None = None
    if champion:
        if champion.startswith(("models:", "registry:")):
            from .registry import resolve

            champion_dir = os.fspath(resolve(champion))
        else:
            champion_dir = champion
    _, card = load_model(candidate)
    prep = card["preprocessing"]
    images, labels, meta = load_split(
        data, split, size=int(prep["size"]), roi=bool(prep["roi"]), dtype="uint8", threads=threads
    )
    checksum = getattr(meta, "checksum", None)

    cand = None
    if candidate_result is not None:
        with file_errors("read the candidate result", candidate_result):
            cand = json.loads(Path(candidate_result).read_text(encoding="utf-8"))
        if cand.get("data_checksum") not in (None, checksum) or cand.get("split") != split:
            cand = None  # measured on other data: evaluate again
    if cand is None:
        cand = evaluate_arrays(
            candidate, images, labels, backend="native", threads=threads, profile=False, split=split
        )
    acc = float(cand["accuracy"])
    checks = [
        {
            "name": "accuracy_floor",
            "passed": acc >= min_accuracy,
            "accuracy": acc,
            "min_accuracy": min_accuracy,
            "detail": f"accuracy {acc:.4f} on {split} {'>=' if acc >= min_accuracy else '<'} floor {min_accuracy:.4f}",
        }
    ]
    champ_acc = None
    if champion_dir is not None:
        champ_acc = float(
            evaluate_arrays(
                champion_dir,
                images,
                labels,
                backend="native",
                threads=threads,
                profile=False,
                split=split,
            )["accuracy"]
        )
        ok = acc >= champ_acc - max_drop
        checks.append(
            {
                "name": "accuracy_vs_champion",
                "passed": ok,
                "accuracy": acc,
                "champion_accuracy": champ_acc,
                "max_drop": max_drop,
                "detail": f"accuracy {acc:.4f} vs champion {champ_acc:.4f} (allowed drop {max_drop:.4f})",
            }
        )
    else:
        checks.append({"name": "accuracy_vs_champion", "passed": True, "detail": "no champion yet"})
    checks.append(
        _latency(
            candidate, champion_dir, fail_if_slower, candidate_profile, champion_profile, repeats
        )
    )
    checks.append(
        probe_parity(candidate, probe_set(images, prep["mean"], prep["std"]), max_logit_diff)
    )
    reasons = [f"{c['name']}: {c['detail']}" for c in checks if not c["passed"]]
    return {
        "accepted": not reasons,
        "reasons": reasons,
        "checks": checks,
        "candidate": {
            "model": os.path.abspath(candidate),
            "weights_sha256": card.get("weights_sha256"),
            "accuracy": acc,
        },
        "champion": None
        if champion_dir is None
        else {"spec": champion, "model": os.path.abspath(champion_dir), "accuracy": champ_acc},
        "data": {
            "root": os.path.abspath(data),
            "split": split,
            "data_checksum": checksum,
            "n_images": int(len(labels)),
        },
    }
