"""The validation gate: may a candidate model replace the champion? (``neonsign gate``)

A candidate passes only if every check passes:

``accuracy_floor``
    its accuracy on the evaluation split, in the framing its card asks for (the ROI crop by
    default), is at least the floor: ``min_accuracy`` (default :data:`DEFAULT_MIN_ACCURACY`,
    0.90), raised to the champion's accuracy minus ``max_drop`` when there is a champion -- the
    floor never sits below what is served today;
``accuracy_vs_champion``
    it is not worse than the champion's accuracy on the same split by more than ``max_drop``
    (absolute fraction; passes when there is no champion);

Both accuracy checks hold for each framing of the split: the ROI crops and the whole images
(what the server sees), so a model accurate only on ROI crops cannot pass. Their top-level
``accuracy``/``floor`` are the card's framing's; ``framings`` has each framing's figures and
verdict, and ``detail`` names the framing that failed. The champion is measured live in both
framings, so the champion rule holds per framing whatever its card records.
``latency``
    its native per-batch latency did not regress beyond ``fail_if_slower`` percent against the
    champion's (:func:`neonsign.profile_report.compare` on native profiles, given as report
    files or measured here side by side); passes when there is no champion;
``probe_parity``
    on a fixed probe set (seeded random inputs plus the first evaluation images) the native
    engine and PyTorch agree: identical top-1 and max abs logit difference <= ``max_logit_diff``
    (for a quantized candidate: its FP32 weights on the FP32 engine);
``int8_parity``
    only for a quantized candidate (``neonsign quantize``): on the evaluation images its int8
    engine's top-1 agrees with the FP32 engine on the same weights for at least
    :data:`DEFAULT_MIN_INT8_AGREEMENT` of them.

The verdict is a JSON-ready dict (``accepted``, ``checks``, ``reasons``); the CLI writes it and
exits 1 when the candidate is refused (the command line is in :mod:`neonsign.cli.gate`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import DEFAULT_PREPROCESSING
from ..engine import INPUT_SHAPE
from ..errors import NeonsignValueError, file_errors

if TYPE_CHECKING:
    from ..data import SplitMeta
    from ..profile_report import ProfileReport

    Split = tuple[np.ndarray, np.ndarray, SplitMeta]

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MIN_ACCURACY",
    "PROBE_RANDOM",
    "probe_set",
    "probe_parity",
    "int8_parity",
    "gate",
]

#: The default accuracy floor. A TrafficSignNet trained by ``neonsign train`` reaches 0.97+ on
#: GTSRB's test split, the learning path's whole-image model about 0.90-0.93, and a model that
#: is still learning or broken sits far below (chance is 1/43): 0.90 refuses a broken model on
#: a fresh registry without refusing a sound one. Short runs (a few epochs, synthetic data in
#: tests) pass their own floor explicitly (``min_accuracy=`` / ``--min-accuracy``).
DEFAULT_MIN_ACCURACY = 0.90
#: The default tolerance against the champion's accuracy (absolute fraction).
DEFAULT_MAX_DROP = 0.01

#: The int8 parity floor: top-1 agreement of a quantized candidate with its FP32 weights.
DEFAULT_MIN_INT8_AGREEMENT = 0.99

PROBE_RANDOM = 32  # seeded random inputs in the probe set
PROBE_SEED = 20240  # fixed: the probe set is the same for every candidate


def probe_set(
    images: np.ndarray | None = None,
    mean: Sequence[float] = tuple(DEFAULT_PREPROCESSING["mean"]),
    std: Sequence[float] = tuple(DEFAULT_PREPROCESSING["std"]),
    n_images: int = 32,
) -> np.ndarray:
    """The fixed probe set: float32 (N, 3, 32, 32), :data:`PROBE_RANDOM` seeded uniform inputs
    in [-1, 1] followed by the first ``n_images`` of ``images`` (uint8 (M, 32, 32, 3), if given)
    normalised with ``mean``/``std``."""
    rng = np.random.default_rng(PROBE_SEED)
    parts = [rng.uniform(-1.0, 1.0, (PROBE_RANDOM, *INPUT_SHAPE)).astype(np.float32)]
    if images is not None and len(images):
        x = np.asarray(images[:n_images], dtype=np.float32) / np.float32(255.0)
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        parts.append(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    return np.concatenate(parts)


def probe_parity(
    model: str | os.PathLike[str], probes: np.ndarray, max_logit_diff: float = 1e-3
) -> dict[str, Any]:
    """Native engine vs PyTorch on ``probes``: a check dict (``passed``, ``top1_mismatches``,
    ``max_abs_logit_diff``, ``detail``). Without torch the check fails and says so."""
    from ..evaluate import available_backends, make_predictor

    if "torch" not in available_backends():
        return {
            "name": "probe_parity",
            "passed": False,
            "detail": "PyTorch is not installed: the native engine cannot be checked against it",
        }
    native = _fp32_native(model)(probes)
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


def _profile_report(path: str | None, model: str | None, repeats: int) -> ProfileReport:
    """A native profile report: the file ``path`` if given, else ``model`` profiled here."""
    from ..profile_report import ProfileReport
    from ..profiler import profile

    if path is not None:
        return ProfileReport.load(path)
    return profile(model, backends=["native"], repeats=repeats, aten=False)


def _latency(
    candidate: str,
    champion: str | None,
    fail_if_slower: float,
    candidate_profile: str | None,
    champion_profile: str | None,
    repeats: int,
) -> dict[str, Any]:
    from ..profile_report import compare

    if champion is None and champion_profile is None:
        return {"name": "latency", "passed": True, "detail": "no champion: nothing to compare with"}
    base = _profile_report(champion_profile, champion, repeats)
    new = _profile_report(candidate_profile, candidate, repeats)
    cmp = compare(base, new, backends=["native"], fail_if_slower=fail_if_slower)
    return {
        "name": "latency",
        "passed": not cmp.failed,
        "fail_if_slower_pct": fail_if_slower,
        "regressions": cmp.regressions,
        "mismatches": cmp.mismatches,
        "detail": cmp.verdict(),
    }


def _check_limits(
    min_accuracy: float, max_drop: float, fail_if_slower: float, max_logit_diff: float
) -> None:
    for name, v in (("min_accuracy", min_accuracy), ("max_drop", max_drop)):
        if not 0.0 <= v <= 1.0:
            raise NeonsignValueError(f"{name} must be a fraction in [0, 1], got {v}")
    if fail_if_slower < 0 or max_logit_diff < 0:
        raise NeonsignValueError("fail_if_slower and max_logit_diff must be >= 0")


def _champion_dir(champion: str | None) -> str | None:
    """The champion's model directory: ``champion`` itself, or what a registry spec resolves to."""
    if not champion:
        return None
    if champion.startswith(("models:", "registry:")):
        from .registry import resolve

        return os.fspath(resolve(champion))
    return champion


def _reused_result(
    path: str | os.PathLike[str] | None, split: str, checksum: str | None
) -> dict[str, Any] | None:
    """The candidate's saved test result when it was measured on this split of these data."""
    if path is None:
        return None
    with file_errors("read the candidate result", path):
        text = Path(path).read_text(encoding="utf-8")
    try:
        result = json.loads(text)
    except ValueError as exc:
        raise NeonsignValueError(f"candidate result {path}: not JSON: {exc}") from None
    if not isinstance(result, dict) or "accuracy" not in result:
        raise NeonsignValueError(f"candidate result {path}: not a `neonsign test --json` result")
    if result.get("data_checksum") not in (None, checksum) or result.get("split") != split:
        return None  # measured on other data: evaluate again
    return result


def _accuracy_checks(
    acc: float,
    champ_acc: float | None,
    split: str,
    min_accuracy: float,
    max_drop: float,
    framing: str = "",
) -> list[dict[str, Any]]:
    """The accuracy floor and the comparison with the champion (passes without one) on one
    framing (named in the details when given).

    The floor is ``min_accuracy``, raised to ``champ_acc - max_drop`` when there is a champion
    (``floor`` in the check; ``min_accuracy`` keeps the configured value)."""
    bar = min_accuracy if champ_acc is None else max(min_accuracy, champ_acc - max_drop)
    why = (
        "" if bar == min_accuracy else f" (champion {champ_acc:.4f} - allowed drop {max_drop:.4f})"
    )
    on = f"{split} ({framing})" if framing else split
    floor = {
        "name": "accuracy_floor",
        "passed": acc >= bar,
        "accuracy": acc,
        "min_accuracy": min_accuracy,
        "floor": bar,
        "detail": f"accuracy {acc:.4f} on {on} {'>=' if acc >= bar else '<'} floor {bar:.4f}{why}",
    }
    if champ_acc is None:
        return [
            floor,
            {"name": "accuracy_vs_champion", "passed": True, "detail": "no champion yet"},
        ]
    vs = {
        "name": "accuracy_vs_champion",
        "passed": acc >= champ_acc - max_drop,
        "accuracy": acc,
        "champion_accuracy": champ_acc,
        "max_drop": max_drop,
        "detail": f"accuracy {acc:.4f} on {on} vs champion {champ_acc:.4f} "
        f"(allowed drop {max_drop:.4f})",
    }
    return [floor, vs]


def _framed_checks(
    accuracies: dict[str, tuple[float, float | None]],
    split: str,
    min_accuracy: float,
    max_drop: float,
) -> list[dict[str, Any]]:
    """``accuracy_floor`` and ``accuracy_vs_champion`` over every framing of ``accuracies``
    (framing -> (candidate, champion or None), the card's framing first): each passes when it
    passes on every framing; its top-level figures are the first framing's, ``framings`` holds
    each framing's check and ``detail`` the failing framings' details (else all of them)."""
    per = {
        name: _accuracy_checks(acc, champ, split, min_accuracy, max_drop, name)
        for name, (acc, champ) in accuracies.items()
    }
    merged: list[dict[str, Any]] = []
    for i in range(2):
        checks = {name: pair[i] for name, pair in per.items()}
        failed = [c["detail"] for c in checks.values() if not c["passed"]]
        first = next(iter(checks.values()))
        details = failed or [c["detail"] for c in checks.values()]
        merged.append(
            {
                **first,
                "passed": not failed,
                "detail": "; ".join(dict.fromkeys(details)),
                "framings": {
                    name: {k: v for k, v in c.items() if k != "name"} for name, c in checks.items()
                },
            }
        )
    return merged


def _native_accuracy(
    model: str, images: np.ndarray, labels: np.ndarray, split: str, threads: int | None
) -> float:
    from ..evaluate import evaluate_arrays

    result = evaluate_arrays(
        model, images, labels, backend="native", threads=threads, profile=False, split=split
    )
    return float(result["accuracy"])


def _framing_accuracies(
    candidate: str,
    champion_dir: str | None,
    splits: dict[str, Split],
    reused: dict[str, Any] | None,
    threads: int | None,
) -> dict[str, tuple[float, float | None]]:
    """framing -> (candidate accuracy, champion accuracy or None) on each loaded framing (the
    first is the card's); the candidate's from its reused ``neonsign test`` result where that
    has the framing."""
    out: dict[str, tuple[float, float | None]] = {}
    primary = next(iter(splits))
    for name, (images, labels, meta) in splits.items():
        acc = _reused_accuracy(reused, name, primary)
        if acc is None:
            acc = _native_accuracy(candidate, images, labels, meta.split, threads)
        champ = None
        if champion_dir is not None:
            champ = _native_accuracy(champion_dir, images, labels, meta.split, threads)
        out[name] = (acc, champ)
    return out


def _reused_accuracy(reused: dict[str, Any] | None, framing: str, primary: str) -> float | None:
    """The accuracy of ``framing`` in a reused ``neonsign test --json`` result, None when it
    does not have it. A result without ``framings`` (written before per-framing reporting)
    has only the card's framing (``primary``), as its top-level ``accuracy``."""
    if reused is None:
        return None
    measured = (reused.get("framings") or {}).get(framing)
    if isinstance(measured, dict) and "accuracy" in measured:
        return float(measured["accuracy"])
    if framing == primary and reused.get("framing", primary) == primary:
        return float(reused["accuracy"])
    return None


def _card_and_splits(
    model: str, data: str | os.PathLike[str], split: str, threads: int | None
) -> tuple[dict[str, Any], dict[str, Split]]:
    """The model's card and ``split`` of ``data`` loaded (uint8) at the card's size in both
    framings: framing name -> split, the card's framing first."""
    from ..artifacts import load_any
    from ..data import load_split

    _, card = load_any(model)
    prep = card["preprocessing"]
    crop = bool(prep["roi"])
    splits: dict[str, Split] = {}
    for name, roi in (
        (("roi", True), ("whole", False)) if crop else (("whole", False), ("roi", True))
    ):
        splits[name] = load_split(
            os.fspath(data), split, size=int(prep["size"]), roi=roi, dtype="uint8", threads=threads
        )
    return card, splits


def _fp32_native(model: str | os.PathLike[str]) -> Any:
    """The FP32 native engine's predict on the model's weights (also for a quantized model)."""
    from ..artifacts import load_any
    from ..engine import Engine

    return Engine(load_any(model)[0]).predict


def int8_parity(
    model: str | os.PathLike[str], x: np.ndarray, min_agreement: float = DEFAULT_MIN_INT8_AGREEMENT
) -> dict[str, Any]:
    """A quantized model's int8 engine vs the FP32 engine on its weights, on images ``x``
    (float32 NCHW): a check dict (``passed``, ``top1_agreement``, ``detail``)."""
    from ..artifacts import load_any
    from ..engine import Engine

    sd, card = load_any(model)
    p32 = Engine(sd).predict(x).argmax(1)
    p8 = Engine(sd, quantization=card["quantization"]).predict(x).argmax(1)
    agree = float((p32 == p8).mean()) if len(x) else 1.0
    return {
        "name": "int8_parity",
        "passed": agree >= min_agreement,
        "n_images": int(len(x)),
        "top1_agreement": agree,
        "limit": min_agreement,
        "detail": f"int8 vs FP32 top-1 agreement {100 * agree:.2f}% on {len(x)} images "
        f"(floor {100 * min_agreement:g}%)",
    }


def gate(
    candidate: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    champion: str | None = None,
    split: str = "test",
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
    max_drop: float = DEFAULT_MAX_DROP,
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
        candidate: the candidate's model directory, or a ``.pth``/``.safetensors`` file.
        data: GTSRB root holding ``split`` (the evaluation split).
        champion: the champion's model directory (or weights file) or a registry spec (``registry:champion``);
            None when there is none yet.
        min_accuracy: the accuracy floor (fraction; default :data:`DEFAULT_MIN_ACCURACY`),
            raised to the champion's accuracy minus ``max_drop`` when there is a champion.
        max_drop: how much less accurate than the champion the candidate may be (fraction).
        candidate_result: a ``neonsign test --json`` result of the candidate on the same data
            and split (reused instead of evaluating again when its data checksum matches).
        candidate_profile, champion_profile: profile report JSON files (native backend).
    """
    _check_limits(min_accuracy, max_drop, fail_if_slower, max_logit_diff)
    candidate = os.fspath(candidate)
    champion_dir = _champion_dir(champion)
    card, splits = _card_and_splits(candidate, data, split, threads)
    prep = card["preprocessing"]
    primary = next(iter(splits))
    images, labels, meta = splits[primary]
    cand = _reused_result(candidate_result, split, meta.checksum)
    accuracies = _framing_accuracies(candidate, champion_dir, splits, cand, threads)
    acc, champ_acc = accuracies[primary]
    checks = _framed_checks(accuracies, split, min_accuracy, max_drop)
    profiles = (candidate_profile, champion_profile)
    checks.append(_latency(candidate, champion_dir, fail_if_slower, *profiles, repeats))
    probes = probe_set(images, prep["mean"], prep["std"])
    checks.append(probe_parity(candidate, probes, max_logit_diff))
    if card.get("quantization"):
        from ..evaluate import normalize_images

        checks.append(int8_parity(candidate, normalize_images(images, prep["mean"], prep["std"])))
    reasons = [f"{c['name']}: {c['detail']}" for c in checks if not c["passed"]]
    return {
        "accepted": not reasons,
        "reasons": reasons,
        "checks": checks,
        "candidate": {
            "model": os.path.abspath(candidate),
            "weights_sha256": card.get("weights_sha256"),
            "accuracy": acc,
            "framing": primary,
            "framings": {k: {"accuracy": a} for k, (a, _) in accuracies.items()},
        },
        "champion": None
        if champion_dir is None
        else {
            "spec": champion,
            "model": os.path.abspath(champion_dir),
            "accuracy": champ_acc,
            "framings": {k: {"accuracy": c} for k, (_, c) in accuracies.items()},
        },
        "data": {
            "root": os.path.abspath(data),
            "split": split,
            "data_checksum": meta.checksum,
            "n_images": int(len(labels)),
        },
    }
