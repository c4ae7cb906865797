"""Post-training int8 quantization of TrafficSignNet (NumPy; the int8 engine is C).

Scheme (``int8-v1``; csrc/core/kernels/int8_kernels.h has the integer arithmetic):

- weights: symmetric, one scale per output channel, ``s_w = max|w| / 127``, int8 in -127..127;
- activations: one scale per tensor, calibrated on training images. The normalised input is
  signed: int8 with ``s_x = r_x / 127`` stored as uint8 with zero point 128. After each ReLU
  (pool1, pool2 = the flattened features, fc1) activations are >= 0: uint8 with zero point 0
  and ``s = r / 255``. ``r`` is the calibration statistic: the maximum (``minmax``), a high
  percentile of the values (``percentile``, default 99.99: a few outliers no longer stretch the
  grid for every other value), or the clipping range that minimises the mean squared
  quantization error of the calibration values (``mse``, searched over 0.2..1 x the maximum);
- biases: int32 in units of ``s_in * s_w`` (the input zero point folded into conv1's);
- requantization: ``M = s_in * s_w / s_out`` per output channel as a fixed-point multiplier
  ``mult * 2^-(31 + shift)``, mult in [2^30, 2^31); the last layer dequantizes to float logits.

Only the activation scales are chosen by calibration: every int8 tensor is a pure function of
the float32 weights and those scales (:func:`engine_params`), so a quantized model directory
is the FP32 model directory (every command reads it as before) plus a ``quantization`` section
in its card (method, calibration data checksum, scales, a digest of the int8 tensors).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ModelError, NeonsignValueError, file_errors

__all__ = [
    "SCHEME",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_PERCENTILE",
    "DEFAULT_IMAGES",
    "activations",
    "calibration_images",
    "calibrate",
    "engine_params",
    "quantization_section",
    "quantize_model",
    "validation_accuracy",
    "validation_split",
]

SCHEME = "int8-v1"
#: Calibration methods: the statistic of each activation tensor that maps to the top code.
METHODS = ("minmax", "percentile", "mse")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
#: Training images the scales are calibrated on.
DEFAULT_IMAGES = 2000

#: The tensors calibrated, in order: the normalised input and the three post-ReLU activations.
ACTIVATIONS = ("input", "pool1", "pool2", "fc1")
_LAYERS = ("conv1", "conv2", "fc1", "fc2")

F32 = npt.NDArray[np.float32]


# ---- a float reference forward that keeps the activations --------------------------------------
def _conv3x3(x: F32, w: F32, b: F32) -> F32:
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (N,C,H',W',3,3)
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (N,H',W',O)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2) + b[None, :, None, None], np.float32)


def _relu_pool(x: F32) -> F32:
    n, c, h, w = x.shape
    x = np.maximum(x[:, :, : h // 2 * 2, : w // 2 * 2], 0)
    return np.asarray(x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)), np.float32)


def activations(state_dict: Mapping[str, F32], x: F32, batch: int = 256) -> dict[str, F32]:
    """The float32 activations quantization calibrates, for images ``x`` (N, 3, 32, 32):
    ``{"input": x, "pool1": (N,32,15,15), "pool2": (N,2304), "fc1": (N,128)}`` (after ReLU)."""
    sd = state_dict
    parts: dict[str, list[F32]] = {name: [] for name in ACTIVATIONS}
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        p1 = _relu_pool(_conv3x3(xb, sd["conv1.weight"], sd["conv1.bias"]))
        p2 = _relu_pool(_conv3x3(p1, sd["conv2.weight"], sd["conv2.bias"])).reshape(len(xb), -1)
        h = np.maximum(p2 @ sd["fc1.weight"].T + sd["fc1.bias"], 0)
        for name, value in zip(ACTIVATIONS, (xb, p1, p2, h), strict=True):
            parts[name].append(value)
    return {name: np.concatenate(v).astype(np.float32, copy=False) for name, v in parts.items()}


def _mse_range(mag: npt.NDArray[np.float32], levels: int) -> float:
    """The clipping range r in 0.2..1 x max(mag) minimising the mean squared error of
    quantizing mag to ``levels`` steps of r / levels (a 1M-value sample for big tensors)."""
    if mag.size > 1_000_000:
        mag = np.random.default_rng(0).choice(mag, 1_000_000, replace=False)
    v = mag.astype(np.float64)
    top = float(v.max())
    if top <= 0:
        return 0.0
    best_r, best_err = top, math.inf
    for r in np.linspace(0.2, 1.0, 41) * top:
        step = r / levels
        err = float(np.mean((np.minimum(np.rint(v / step), levels) * step - v) ** 2))
        if err < best_err:
            best_r, best_err = float(r), err
    return best_r


def calibrate(
    acts: Mapping[str, F32], method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE
) -> dict[str, float]:
    """Per-tensor scales from calibration activations: ``{"input": s_x, "pool1": ..., ...}``.

    ``minmax``: the largest magnitude maps to the top code; ``percentile``: that percentile of
    the magnitudes does (values beyond it saturate); ``mse``: the range with the least mean
    squared quantization error."""
    if method not in METHODS:
        raise NeonsignValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise NeonsignValueError(f"percentile must be in (50, 100], got {percentile!r}")
    scales: dict[str, float] = {}
    for name in ACTIVATIONS:
        mag = np.abs(acts[name]).ravel()
        levels = 127 if name == "input" else 255
        if method == "minmax":
            r = float(mag.max())
        elif method == "mse":
            r = _mse_range(mag, levels)
        else:
            r = float(np.percentile(mag, percentile))
        if not math.isfinite(r):
            raise ModelError(f"calibration: activation {name} is not finite")
        r = max(r, 1e-6)  # an all-zero tensor still needs a usable grid
        scales[name] = r / levels
    return scales


# ---- the int8 tensors --------------------------------------------------------------------------
def _weight_scales(w: F32) -> npt.NDArray[np.float64]:
    s = np.abs(w.reshape(len(w), -1)).max(axis=1).astype(np.float64) / 127.0
    return np.where(s > 0, s, 1.0)  # an all-zero channel quantizes to zeros with any scale


def _multipliers(m: npt.NDArray[np.float64], layer: str) -> tuple[npt.NDArray[np.int32], ...]:
    """Fixed-point ``mult * 2^-(31 + shift)`` for each real multiplier in ``m`` (all < 1)."""
    mult = np.empty(len(m), np.int64)
    shift = np.empty(len(m), np.int64)
    for i, v in enumerate(m):
        if not (v > 0 and math.isfinite(v)):
            raise ModelError(f"quantization: {layer} channel {i} has multiplier {v}")
        frac, exp = math.frexp(float(v))  # v = frac * 2^exp, frac in [0.5, 1)
        q = round(frac * 2.0**31)
        if q == 2**31:
            q, exp = q // 2, exp + 1
        if exp > 0:
            raise ModelError(
                f"quantization: {layer} channel {i} needs a requantization multiplier {v:.3g} "
                ">= 1 (output scale smaller than input x weight scale); recalibrate"
            )
        if -exp > 30:  # below 2^-31: the output is 0 either way
            q, exp = 2**30, -30
        mult[i], shift[i] = q, -exp
    return mult.astype(np.int32), shift.astype(np.int32)


def engine_params(
    state_dict: Mapping[str, F32], quantization: Mapping[str, Any]
) -> dict[str, npt.NDArray[Any]]:
    """The int8 engine's tensors (``neonsign._native.QNet``'s params) from the float32 weights
    and a card's ``quantization`` section; checked against its ``int8_sha256`` if present.

    Raises:
        ModelError: an unknown scheme, missing or bad scales, or int8 tensors that differ from
            the ones the model was quantized to.
    """
    scheme = quantization.get("scheme")
    if scheme != SCHEME:
        raise ModelError(f"quantization scheme {scheme!r} is not supported (this is {SCHEME})")
    raw = quantization.get("activation_scales")
    try:
        act = {name: float(raw[name]) for name in ACTIVATIONS}  # type: ignore[index]
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelError(
            f"quantization: activation_scales must map {ACTIVATIONS} to numbers"
        ) from exc
    if not all(math.isfinite(v) and v > 0 for v in act.values()):
        raise ModelError(f"quantization: activation scales must be positive, got {act}")
    params = _derive(state_dict, act)
    want = quantization.get("int8_sha256")
    if want is not None and want != params_digest(params):
        raise ModelError(
            "quantization: the int8 tensors derived from the weights and scales do not match the "
            "card's int8_sha256 (weights or scales changed since quantization)"
        )
    return params


def _derive(state_dict: Mapping[str, F32], act: Mapping[str, float]) -> dict[str, npt.NDArray[Any]]:
    s_in = {"conv1": act["input"], "conv2": act["pool1"], "fc1": act["pool2"], "fc2": act["fc1"]}
    s_out = {"conv1": act["pool1"], "conv2": act["pool2"], "fc1": act["fc1"]}
    out: dict[str, npt.NDArray[Any]] = {
        "input.inv_scale": np.array([1.0 / act["input"]], np.float32)
    }
    for layer in _LAYERS:
        w = np.asarray(state_dict[f"{layer}.weight"], np.float32)
        b = np.asarray(state_dict[f"{layer}.bias"], np.float32)
        sw = _weight_scales(w)
        shape = (-1,) + (1,) * (w.ndim - 1)
        wq = np.clip(np.rint(w / sw.reshape(shape)), -127, 127).astype(np.int8)
        acc_scale = s_in[layer] * sw
        bq = np.rint(b.astype(np.float64) / acc_scale)
        if layer == "conv1":  # input zero point 128: sum (q + 128) w = sum q w + 128 sum w
            bq -= 128.0 * wq.reshape(len(wq), -1).sum(axis=1, dtype=np.int64)
        out[f"{layer}.weight"] = wq
        out[f"{layer}.bias"] = np.clip(bq, -(2**30), 2**30).astype(np.int32)
        if layer == "fc2":
            out["fc2.scale"] = acc_scale.astype(np.float32)
        else:
            out[f"{layer}.mult"], out[f"{layer}.shift"] = _multipliers(
                acc_scale / s_out[layer], layer
            )
    return out


def params_digest(params: Mapping[str, npt.NDArray[Any]]) -> str:
    """sha256 over the int8 engine tensors (names, dtypes, shapes, bytes), sorted by name."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name])
        h.update(f"{name};{a.dtype.str};{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def quantization_section(
    state_dict: Mapping[str, F32],
    calibration: F32,
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A card's ``quantization`` section for ``state_dict`` calibrated on float32 images
    ``calibration`` (N, 3, 32, 32) normalised as the model expects. ``data``: provenance of the
    calibration images (checksum, count, split) recorded under ``calibration``."""
    scales = calibrate(activations(state_dict, calibration), method, percentile)
    params = _derive(state_dict, scales)
    weight_scales = {
        layer: _weight_scales(np.asarray(state_dict[f"{layer}.weight"], np.float32)).tolist()
        for layer in _LAYERS
    }
    return {
        "scheme": SCHEME,
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "calibration": {"images": int(len(calibration)), **dict(data or {})},
        "activation_scales": scales,
        "weight_scales": weight_scales,
        "int8_sha256": params_digest(params),
    }


def calibration_images(
    data: str | os.PathLike[str], card: Mapping[str, Any], images: int, seed: int
) -> tuple[F32, dict[str, Any]]:
    """``images`` training images from the training side of the card's by-track split,
    preprocessed as the card says, and their provenance (checksum of the uint8 pixels)."""
    from .data import load_split, split_checksum, track_split
    from .evaluate import normalize_images

    prep = card["preprocessing"]
    with file_errors("load the training split of", data):
        x_u8, labels, meta = load_split(
            Path(data), "train", size=int(prep["size"]), roi=bool(prep["roi"]), dtype="uint8"
        )
    hyper = card.get("hyperparameters") or {}
    val_fraction = float(hyper.get("val_fraction", 0.2))
    train_idx = (
        track_split(meta, val_fraction=val_fraction, seed=int(card.get("seed") or 0))[0]
        if val_fraction > 0
        else np.arange(len(labels))
    )
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(train_idx, size=min(images, len(train_idx)), replace=False))
    x = normalize_images(x_u8[pick], prep["mean"], prep["std"])
    info = {
        "split": "train (training side of the by-track split)",
        "seed": seed,
        "roi": bool(prep["roi"]),
        "sha256": split_checksum(
            x_u8[pick], labels[pick], size=int(prep["size"]), roi=bool(prep["roi"])
        ),
    }
    return x, info


def quantize_model(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    images: int = DEFAULT_IMAGES,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Quantize the model at ``model`` with scales calibrated on ``images`` training images of
    the GTSRB data under ``data``; write the quantized model directory ``out`` and return it.

    Raises:
        ModelError: ``model`` is already quantized, or cannot be quantized.
        NeonsignValueError: a bad method, percentile or image count.
        DatasetNotFoundError and other NeonsignOSError subclasses: unreadable data or output.
    """
    from .artifacts import load_any, save_model

    if method not in METHODS:
        raise NeonsignValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise NeonsignValueError(f"calibration images must be a positive int, got {images!r}")
    state_dict, card = load_any(model)
    if card.get("quantization"):
        raise ModelError(f"{model} is already quantized ({card['quantization'].get('method')})")
    x, info = calibration_images(data, card, images, seed)
    section = quantization_section(state_dict, x, method=method, percentile=percentile, data=info)
    qcard = {**card, "quantization": section}
    qcard.pop("weights_sha256", None)
    return save_model(out, state_dict, qcard, overwrite=overwrite)


def validation_split(
    data: str | os.PathLike[str], card: Mapping[str, Any], roi: bool
) -> tuple[F32, npt.NDArray[np.int64]]:
    """The by-track validation rows of the training split (the card's val_fraction and seed),
    preprocessed as the card says but framed by ``roi`` (True: ROI crop, False: whole image)."""
    from .data import load_split, track_split
    from .evaluate import normalize_images

    prep = card["preprocessing"]
    hyper = card.get("hyperparameters") or {}
    with file_errors("load the training split of", data):
        x_u8, labels, meta = load_split(
            Path(data), "train", size=int(prep["size"]), roi=roi, dtype="uint8"
        )
    _, val = track_split(
        meta,
        val_fraction=float(hyper.get("val_fraction", 0.2)) or 0.2,
        seed=int(card.get("seed") or 0),
    )
    return normalize_images(x_u8[val], prep["mean"], prep["std"]), labels[val]


def validation_accuracy(
    fp32_model: str | os.PathLike[str],
    int8_model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    kernel: str | None = None,
) -> dict[str, Any]:
    """FP32 vs int8 top-1 accuracy (and their top-1 agreement) on the by-track validation split
    of the FP32 model's card, for both framings: ``{"roi": {...}, "whole": {...}}``."""
    from .artifacts import load_any
    from .engine import Engine

    sd, card = load_any(fp32_model)
    sdq, qcard = load_any(int8_model)
    e32 = Engine(sd)
    e8 = Engine(sdq, kernel=kernel, quantization=qcard.get("quantization"))
    out: dict[str, Any] = {"int8": method_label(qcard.get("quantization")), "kernel": e8.kernel}
    for name, roi in (("roi", True), ("whole", False)):
        x, y = validation_split(data, card, roi)
        p32 = e32.predict(x).argmax(axis=1)
        p8 = e8.predict(x).argmax(axis=1)
        a32, a8 = float((p32 == y).mean()), float((p8 == y).mean())
        out[name] = {
            "images": int(len(y)),
            "fp32": a32,
            "int8": a8,
            "delta_points": 100.0 * (a8 - a32),
            "top1_agreement": float((p32 == p8).mean()),
        }
    return out


def method_label(quantization: Mapping[str, Any] | None) -> str:
    """``"int8 (percentile 99.99)"``, ``"int8 (minmax)"`` or ``"fp32"`` for reports."""
    if not quantization:
        return "fp32"
    m = quantization.get("method")
    p = quantization.get("percentile")
    return (
        f"int8 ({m} {p:g})" if m == "percentile" and isinstance(p, (int, float)) else f"int8 ({m})"
    )
