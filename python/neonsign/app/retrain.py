"""Should we retrain? (``neonsign retrain-check``)

Decides from three triggers, each reported with its figures:

``data``
    the training data changed: the checksum of the training split under ``--data`` differs
    from the baseline model card's ``data_checksum``;
``age``
    the baseline model is older than ``--max-age-days``;
``drift``
    the server's input statistics (``/metrics``: the ``neonsign_input_brightness`` histogram)
    moved away from a reference distribution by a population stability index (PSI) above
    ``--max-psi``, or the share of low-confidence predictions (``neonsign_prediction_probability``
    below 0.5) exceeds ``--max-low-confidence``. The reference is a metrics snapshot taken when
    the model was healthy (``--reference-metrics``) or, failing that, the brightness of the
    training images under ``--data``. Drift is judged only after ``--min-requests`` inputs.

The command line (:mod:`neonsign.cli.retrain_check`) prints the JSON decision; exit code 0 = no
retraining needed, 1 = retrain, 2 = error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, NeonsignValueError, require

__all__ = ["parse_histograms", "psi", "retrain_check"]

BRIGHTNESS = "neonsign_input_brightness"
CONFIDENCE = "neonsign_prediction_probability"


def _read_metrics(source: str) -> str:
    """Prometheus text from an http(s) URL or a file."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=30) as resp:  # noqa: S310 - user-given URL
                body: bytes = resp.read()
                return body.decode("utf-8")
        except OSError as exc:
            raise NeonsignValueError(f"metrics {source}: could not fetch: {exc}") from None
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise NeonsignValueError(f"metrics {source}: could not read: {exc}") from None


def parse_histograms(
    text: str, source: str = "metrics"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Prometheus histograms in ``text``: name -> (upper bounds float64 (B,), per-bucket counts
    float64 (B,), not cumulative; the last bound is +inf). Label sets other than ``le`` are summed."""
    parser = require("prometheus_client.parser", "serve", "reading /metrics")

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        families = list(parser.text_string_to_metric_families(text))
    except ValueError as exc:
        raise NeonsignValueError(f"{source}: not Prometheus text format: {exc}") from None
    for fam in families:
        if fam.type != "histogram":
            continue
        cum: dict[float, float] = {}
        for s in fam.samples:
            if s.name.endswith("_bucket") and "le" in s.labels:
                le = float(s.labels["le"])
                cum[le] = cum.get(le, 0.0) + float(s.value)
        if cum:
            bounds = np.array(sorted(cum), dtype=np.float64)
            c = np.array([cum[b] for b in bounds], dtype=np.float64)
            out[fam.name] = (bounds, np.diff(c, prepend=0.0))
    return out


def psi(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of two bucket-count vectors of one length (> 0.2: shifted)."""
    p = np.asarray(reference, np.float64)
    q = np.asarray(current, np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise NeonsignValueError(
            f"psi needs two non-empty count vectors of one shape, got {p.shape} and {q.shape}"
        )
    p = np.clip(p / p.sum(), eps, None)
    q = np.clip(q / q.sum(), eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _training_brightness(data: str, card: dict[str, Any], bounds: np.ndarray) -> np.ndarray:
    """Bucket counts of the training images' mean brightness (0..1) on the server's buckets."""
    from ..data import load_split

    prep = card.get("preprocessing") or {}
    images, _, _ = load_split(
        data, "train", size=int(prep.get("size", 32)), roi=False, dtype="uint8"
    )
    b = images.reshape(len(images), -1).mean(axis=1) / 255.0
    idx = np.searchsorted(bounds, b, side="left")
    return np.bincount(idx, minlength=len(bounds)).astype(np.float64)[: len(bounds)]


def _load_card(baseline: str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(baseline, str) and baseline.startswith(("models:", "registry:")):
        from .registry import resolve

        baseline = resolve(baseline)
    path = Path(baseline)
    if path.is_dir():
        path = path / "model_card.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"baseline card {path}: unreadable: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"baseline card {path}: expected a JSON object")
    return card


def _data_check(
    data: str | os.PathLike[str], card: dict[str, Any], checks: dict[str, Any], reasons: list[str]
) -> None:
    """The ``data`` trigger: the training split's checksum against the card's."""
    from ..data import load_split

    prep = card.get("preprocessing") or {}
    _, _, meta = load_split(
        os.fspath(data),
        "train",
        size=int(prep.get("size", 32)),
        roi=bool(prep.get("roi", False)),
        dtype="uint8",
    )
    changed = meta.checksum != card.get("data_checksum")
    checks["data"] = {
        "changed": changed,
        "current": meta.checksum,
        "baseline": card.get("data_checksum"),
    }
    if changed:
        reasons.append(
            f"data: training split checksum {meta.checksum[:12]} differs from the "
            f"model's {str(card.get('data_checksum'))[:12]}"
        )


def _age_check(
    created: object,
    max_age_days: float,
    now: _dt.datetime | None,
    checks: dict[str, Any],
    reasons: list[str],
) -> None:
    """The ``age`` trigger: days since the card's ``created`` time."""
    try:
        t = _dt.datetime.fromisoformat(str(created))
    except ValueError:
        raise ModelError(f"baseline card: 'created' is not an ISO timestamp: {created!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    age = ((now or _dt.datetime.now(_dt.timezone.utc)) - t).total_seconds() / 86400
    checks["age"] = {"days": age, "max_days": max_age_days}
    if age > max_age_days:
        reasons.append(f"age: the model is {age:.1f} days old (max {max_age_days:g})")


def _brightness_reference(
    bounds: np.ndarray,
    reference_metrics: str | None,
    data: str | os.PathLike[str] | None,
    card: dict[str, Any],
) -> tuple[np.ndarray | None, str | None]:
    """(bucket counts, what they are) of the reference brightness on ``bounds``: the healthy
    snapshot when it has the same buckets, else the training images, else (None, None)."""
    if reference_metrics is not None:
        rh = parse_histograms(_read_metrics(reference_metrics), reference_metrics)
        if BRIGHTNESS in rh and np.array_equal(rh[BRIGHTNESS][0], bounds):
            return rh[BRIGHTNESS][1], reference_metrics
    if data is not None:
        return _training_brightness(os.fspath(data), card, bounds), "training data"
    return None, None


def _brightness_drift(
    current: tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray | None, str | None],
    limits: tuple[int, float],
    drift: dict[str, Any],
    reasons: list[str],
) -> None:
    """PSI of the input brightness against the reference, once there are ``min_requests``."""
    (_, counts), (ref, ref_name), (min_requests, max_psi) = current, reference, limits
    n = float(counts.sum())
    drift["requests"] = n
    if ref_name is not None:
        drift["reference"] = ref_name
    if n < min_requests:
        drift["note"] = f"only {n:.0f} inputs (< {min_requests}): drift not judged"
    elif ref is not None and ref.sum() > 0:
        value = psi(ref, counts)
        drift.update({"brightness_psi": value, "max_psi": max_psi})
        if value > max_psi:
            reasons.append(f"drift: input brightness PSI {value:.3f} > {max_psi:g}")
    else:
        drift["note"] = "no reference distribution (give --reference-metrics or --data)"


def _confidence_drift(
    hist: tuple[np.ndarray, np.ndarray],
    min_requests: int,
    max_low_confidence: float,
    drift: dict[str, Any],
    reasons: list[str],
) -> None:
    """Share of predictions with top-1 probability <= 0.5, once there are ``min_requests``."""
    bounds, counts = hist
    n = float(counts.sum())
    if n < min_requests:
        return
    low = float(counts[bounds <= 0.5].sum() / n)
    drift.update({"low_confidence_share": low, "max_low_confidence": max_low_confidence})
    if low > max_low_confidence:
        reasons.append(
            f"drift: {low:.1%} of predictions have top-1 probability <= 0.5 "
            f"(max {max_low_confidence:.0%})"
        )


def retrain_check(
    metrics: str | None,
    baseline: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    reference_metrics: str | None = None,
    max_age_days: float = 30.0,
    max_psi: float = 0.2,
    max_low_confidence: float = 0.3,
    min_requests: int = 100,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The decision dict: ``retrain`` (bool), ``reasons`` (list of str) and ``checks`` with figures.

    ``metrics``: the server's ``/metrics`` URL or a saved copy (None: no drift check).
    ``baseline``: the serving model's card (``model_card.json``, its model directory, or a
    registry spec such as ``registry:champion``).
    """
    card = _load_card(baseline)
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    if data is not None:
        _data_check(data, card, checks, reasons)
    created = card.get("created")
    if created:
        _age_check(created, max_age_days, now, checks, reasons)
    if metrics is not None:
        hist = parse_histograms(_read_metrics(metrics), metrics)
        drift: dict[str, Any] = {}
        if BRIGHTNESS in hist:
            reference = _brightness_reference(hist[BRIGHTNESS][0], reference_metrics, data, card)
            limits = (min_requests, max_psi)
            _brightness_drift(hist[BRIGHTNESS], reference, limits, drift, reasons)
        if CONFIDENCE in hist:
            _confidence_drift(hist[CONFIDENCE], min_requests, max_low_confidence, drift, reasons)
        checks["drift"] = drift
    return {
        "retrain": bool(reasons),
        "reasons": reasons,
        "checks": checks,
        "baseline": {
            "weights_sha256": card.get("weights_sha256"),
            "created": created,
            "data_checksum": card.get("data_checksum"),
        },
    }
