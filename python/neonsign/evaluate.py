"""Testing a model: ``neonsign test`` and :func:`evaluate`.

Runs a model directory over a GTSRB split through one backend and reports accuracy, per-class
accuracy, the confusion matrix (JSON and a PNG plot), inference timing and the torch.profiler
table of one batch of inference, printed as the learning path's ``test_model.py`` prints it
(``prof.key_averages().table(sort_by="cpu_time_total")``).

Backends (:data:`BACKENDS`, defined in :mod:`neonsign.backends` and shared with the profiler):
``native`` (neonsign's C engine) and ``native-<kernel>``, ``torch`` (PyTorch CPU defaults),
``torch-onednn-off`` (``torch.backends.mkldnn`` disabled), ``torch-channels-last`` and
``torch-bf16``. The default is the fastest available: ``native`` when the engine is built,
else ``torch``.

Importing this module does not import torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from ._fileio import atomic_write, atomic_write_text
from .artifacts import NUM_CLASSES, load_any, validate_state_dict
from .backends import BACKEND_NAMES, TorchToggles, list_backends
from .backends import resolve as resolve_backend
from .errors import NeonsignValueError, UnsupportedError, file_errors, require

__all__ = [
    "BACKENDS",
    "available_backends",
    "default_backend",
    "make_predictor",
    "confusion_matrix",
    "classification_metrics",
    "ClassificationMetrics",
    "EvaluationResult",
    "FramingMetrics",
    "Timing",
    "add_other_framing",
    "evaluate",
    "evaluate_arrays",
    "format_summary",
    "normalize_images",
    "plot_confusion",
    "save_result",
]

#: Backend names accepted by ``--backend`` (defined once, in :mod:`neonsign.backends`).
BACKENDS = BACKEND_NAMES
PROFILE_BATCH = 64  # the learning path's batch size


class ClassificationMetrics(TypedDict):
    """What :func:`classification_metrics` returns (JSON-ready)."""

    accuracy: float
    n_images: int
    n_correct: int
    per_class_accuracy: list[float | None]
    per_class_count: list[int]
    confusion_matrix: list[list[int]]


class _TimingBase(TypedDict):
    inference_seconds: float
    images_per_second: float | None
    batch_size: int


class Timing(_TimingBase, total=False):
    """Inference timing; ``load_seconds`` only when :func:`evaluate` loaded the split."""

    load_seconds: float


class _EvaluationBase(ClassificationMetrics):
    backend: str
    split: str
    model: str
    model_code_version: str | None
    model_data_checksum: str | None
    preprocessing: dict[str, Any]
    threads: int | None
    timing: Timing
    profile_table: str | None


class FramingMetrics(TypedDict):
    """The accuracy of one framing of the split (``EvaluationResult["framings"][name]``)."""

    accuracy: float
    n_images: int
    n_correct: int
    per_class_accuracy: list[float | None]


class EvaluationResult(_EvaluationBase, total=False):
    """What :func:`evaluate_arrays` and :func:`evaluate` return (JSON-ready): the metrics, how
    they were measured, ``confusion_plot`` when a plot was written, ``data`` and
    ``data_checksum`` when :func:`evaluate` loaded the split itself; ``framing`` (the framing
    the top-level metrics are for, ``"roi"`` or ``"whole"``) and ``framings`` (name ->
    :class:`FramingMetrics`, both framings) when :func:`evaluate` measured both."""

    confusion_plot: str
    data: str
    data_checksum: str | None
    framing: str
    framings: dict[str, FramingMetrics]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> list[str]:
    """The backends usable in this environment, fastest first (imports torch if installed)."""
    return [b.name for b in list_backends(include_unavailable=False)]


def default_backend() -> str:
    """``native`` when neonsign's engine is available, else ``torch``."""
    avail = available_backends()
    if not avail:
        raise UnsupportedError(
            "no inference backend available: neither neonsign.engine nor torch is importable"
        )
    return avail[0]


# ----------------------------------------------------------------------------------------------
# Backends: a predictor maps float32 (N, 3, 32, 32) to logits float32 (N, 43).

Predictor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def _torch_predictor(state_dict: dict[str, npt.NDArray[np.float32]], backend: str) -> Predictor:
    """TrafficSignNet (nn.Module) run with the toggles of the libtorch ``backend``."""
    require("torch", "torch", f"the {backend} backend")
    import torch

    from .model import TrafficSignNet

    toggles = TorchToggles(backend)
    model = TrafficSignNet().eval()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state_dict.items()})
    model = toggles.module(model)

    def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with toggles.mode():
            return np.asarray(model(toggles.input(x)).float().numpy(), dtype=np.float32)

    return predict


def make_predictor(
    model_dir: str | os.PathLike[str] | Mapping[str, Any],
    backend: str,
    threads: int | None = None,
    *,
    quantization: Mapping[str, Any] | None = None,
) -> Predictor:
    """A function float32 (N, 3, 32, 32) -> logits float32 (N, 43) for ``backend`` (a name of
    :data:`BACKENDS`), from a model directory whose sha256 is verified, a ``.safetensors`` file
    or a learning-path ``.pth`` (:func:`neonsign.artifacts.load_any`), or weights already
    loaded (a state_dict: the caller's card then describes exactly these weights, and
    ``quantization`` is its ``quantization`` section, if any; a directory's card gives its own).
    A quantized model runs in int8 on the native backends."""
    b = resolve_backend(backend)
    if isinstance(model_dir, Mapping):
        state_dict = validate_state_dict(model_dir, "state_dict")
    else:
        state_dict, card = load_any(model_dir)
        quantization = card.get("quantization")
    if b.family == "native":
        from .engine import Engine

        kernel = None if backend == "native" else backend.removeprefix("native-")
        engine = Engine.from_state_dict(
            state_dict, kernel=kernel, threads=threads, quantization=quantization
        )
        return lambda x: np.asarray(engine.predict(x), dtype=np.float32)
    return _torch_predictor(state_dict, backend)


# ----------------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(
    labels: npt.ArrayLike, predictions: npt.ArrayLike, num_classes: int = NUM_CLASSES
) -> npt.NDArray[np.int64]:
    """int64 (C, C) counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise NeonsignValueError(
            f"labels {labels.shape} and predictions {predictions.shape} must be equal 1-D shapes"
        )
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise NeonsignValueError(f"{name} must lie in [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def classification_metrics(
    labels: npt.ArrayLike, predictions: npt.ArrayLike
) -> ClassificationMetrics:
    """accuracy (fraction), n_images, n_correct, per_class_accuracy (None for absent classes),
    per_class_count and confusion_matrix (nested lists) for int labels/predictions (N,)."""
    cm = confusion_matrix(labels, predictions)
    counts = cm.sum(axis=1)
    correct = np.diag(cm)
    n = int(counts.sum())
    return {
        "accuracy": float(correct.sum() / n) if n else 0.0,
        "n_images": n,
        "n_correct": int(correct.sum()),
        "per_class_accuracy": [
            float(c / t) if t else None for c, t in zip(correct, counts, strict=False)
        ],
        "per_class_count": counts.tolist(),
        "confusion_matrix": cm.tolist(),
    }


def plot_confusion(
    cm: Sequence[Sequence[int]] | npt.NDArray[np.int64],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Write a row-normalised confusion matrix heat map (PNG, matplotlib Agg) to ``path``.

    Raises :class:`~neonsign.errors.UnsupportedError` when matplotlib is not installed, and a
    NeonsignOSError subclass naming ``path`` when it cannot be written (DiskFullError, ...)."""
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise UnsupportedError(
            f"writing the confusion matrix plot {os.fspath(path)!r} needs "
            "matplotlib: pip install 'neonsign[notebooks]'"
        ) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig, ax = plt.subplots(figsize=(9, 8), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (row-normalised)")
    ticks = np.arange(0, m.shape[0], 2)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = Path(path)
    try:
        # whole or absent: through a temporary name (which has no suffix, so the format is
        # named: the path's suffix, else PNG -- matplotlib would append ".png" to `out`)
        fmt = out.suffix[1:].lower() or "png"
        atomic_write(
            out, lambda tmp: fig.savefig(tmp, format=fmt), "write the confusion matrix plot"
        )
    finally:
        plt.close(fig)
    return out


def save_result(result: EvaluationResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as indented JSON to ``path`` (a NeonsignOSError subclass naming the path
    when it cannot be written: DiskFullError, NeonsignPermissionError, ...)."""
    out = Path(path)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n", "write the test results")
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation


def normalize_images(
    images: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]
) -> npt.NDArray[np.float32]:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) with (x / 255 - mean) / std."""
    try:
        from .preprocess import normalize
    except ImportError:  # preprocessing subsystem not built: the same arithmetic in NumPy
        x = images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
        m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - m) / s, dtype=np.float32)
    return np.asarray(normalize(images, mean, std), dtype=np.float32)


def _batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _profile_table(predict: Predictor, x: npt.NDArray[np.float32]) -> str | None:
    """torch.profiler table of one inference batch, as the learning path prints it."""
    if not _has("torch"):
        return None
    from torch.profiler import ProfilerActivity, profile, record_function

    predict(x)  # warm-up outside the profile
    with (
        profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof,
        record_function("model_inference"),
    ):
        predict(x)
    return str(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10))


def _check_arrays(
    images: npt.ArrayLike, labels: npt.ArrayLike, size: int, split: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[Any]]:
    """``images`` as uint8 (N, size, size, 3) and ``labels`` as (N,), N >= 1, or
    NeonsignValueError naming the array and what was expected."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise NeonsignValueError(
            f"images: expected uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}"
        )
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise NeonsignValueError(f"labels: expected shape ({images.shape[0]},), got {labels.shape}")
    if images.shape[0] == 0:
        raise NeonsignValueError(f"split {split!r} holds no images")
    return images, labels


def _predict_all(
    predict: Predictor, x: npt.NDArray[np.float32], batch_size: int, bar_label: str | None
) -> tuple[npt.NDArray[np.int64], float]:
    """Top-1 class of every image of ``x`` in batches after one warm-up batch, and the seconds
    the batches took (a tqdm bar labelled ``bar_label`` unless None)."""
    n = x.shape[0]
    predict(x[: min(n, batch_size)])  # warm-up
    bar = None
    if bar_label is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="img", desc=bar_label, dynamic_ncols=True)
    preds = np.empty(n, dtype=np.int64)
    t0 = time.perf_counter()
    for sl in _batches(n, batch_size):
        preds[sl] = predict(x[sl]).argmax(axis=1)
        if bar is not None:
            bar.update(sl.stop - sl.start)
    infer_seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return preds, infer_seconds


def evaluate_arrays(
    model: str | os.PathLike[str],
    images: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    backend: str | None = None,
    batch_size: int = 256,
    threads: int | None = None,
    profile: bool = True,
    plot: str | os.PathLike[str] | None = None,
    quiet: bool = True,
    split: str = "arrays",
) -> EvaluationResult:
    """Test the model ``model`` (a model directory or a ``.pth``/``.safetensors`` file, see
    :func:`neonsign.artifacts.load_any`) on uint8 RGB images (N, H, W, 3) with int labels (N,).

    Images are normalised as the model card says (mean, std); they must already have the card's
    size. Returns the JSON-ready dict described in :func:`evaluate` (without the data fields).
    """
    backend = backend or default_backend()
    resolve_backend(backend)
    if batch_size < 1:
        raise NeonsignValueError(f"batch_size must be >= 1, got {batch_size}")
    state_dict, card = load_any(model)  # one read: the card describes the weights tested
    prep = card["preprocessing"]
    images, labels = _check_arrays(images, labels, int(prep["size"]), split)
    n = images.shape[0]
    if threads is not None and backend.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
    predict = make_predictor(
        state_dict, backend, threads=threads, quantization=card.get("quantization")
    )
    x = normalize_images(images, prep["mean"], prep["std"])
    preds, infer_seconds = _predict_all(
        predict, x, batch_size, None if quiet else f"test ({backend})"
    )
    metrics = classification_metrics(labels, preds)
    result: EvaluationResult = {
        "accuracy": metrics["accuracy"],
        "n_images": metrics["n_images"],
        "n_correct": metrics["n_correct"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "per_class_count": metrics["per_class_count"],
        "confusion_matrix": metrics["confusion_matrix"],
        "backend": backend,
        "split": split,
        "model": os.fspath(Path(model).resolve()),
        "model_code_version": card.get("code_version"),
        "model_data_checksum": card.get("data_checksum"),
        "preprocessing": prep,
        "threads": threads,
        "timing": {
            "inference_seconds": infer_seconds,
            "images_per_second": n / infer_seconds if infer_seconds > 0 else None,
            "batch_size": batch_size,
        },
        "profile_table": _profile_table(predict, x[:PROFILE_BATCH]) if profile else None,
    }
    if plot is not None:
        result["confusion_plot"] = os.fspath(
            plot_confusion(
                result["confusion_matrix"],
                plot,
                f"{split}: accuracy {result['accuracy']:.4f} ({backend})",
            )
        )
    return result


def _framing_metrics(result: ClassificationMetrics) -> FramingMetrics:
    return {
        "accuracy": result["accuracy"],
        "n_images": result["n_images"],
        "n_correct": result["n_correct"],
        "per_class_accuracy": result["per_class_accuracy"],
    }


def add_other_framing(
    result: EvaluationResult,
    model: str | os.PathLike[str],
    images: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    backend: str | None = None,
    batch_size: int = 256,
    threads: int | None = None,
) -> EvaluationResult:
    """Measure the framing ``result`` is not for on ``images`` (the same images as ``result``'s,
    framed the other way: whole images for a ROI-crop result, ROI crops for a whole-image one)
    and fill ``result["framings"]`` with both; returns ``result``.

    ``result["framing"]`` ("roi" or "whole") names the framing ``result`` was measured in.
    """
    name = result.get("framing")
    if name not in ("roi", "whole"):
        raise NeonsignValueError(f"result framing must be 'roi' or 'whole', got {name!r}")
    other = "whole" if name == "roi" else "roi"
    measured = evaluate_arrays(
        model,
        images,
        labels,
        backend=backend or result["backend"],
        batch_size=batch_size,
        threads=threads,
        profile=False,
        split=result["split"],
    )
    if measured["n_images"] != result["n_images"]:
        raise NeonsignValueError(
            f"the {other} framing has {measured['n_images']} images, the {name} framing "
            f"{result['n_images']}: both framings must show the same images"
        )
    both = {name: _framing_metrics(result), other: _framing_metrics(measured)}
    result["framings"] = {k: both[k] for k in ("roi", "whole")}
    return result


def evaluate(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    split: str = "test",
    backend: str | None = None,
    batch_size: int = 256,
    threads: int | None = None,
    limit: int | None = None,
    profile: bool = True,
    plot: str | os.PathLike[str] | None = None,
    quiet: bool = True,
    roi: bool | None = None,
    framings: bool = True,
) -> EvaluationResult:
    """Test the model ``model`` (a model directory or a ``.pth``/``.safetensors`` file) on ``split`` of the GTSRB data under ``data``.

    Images are loaded by neonsign's loader at the card's size, cropped to their ROI when ``roi``
    (None: as the card's ``preprocessing.roi`` says) and normalised with its mean/std. Returns
    a JSON-ready dict with ``accuracy`` (fraction), ``n_images``, ``n_correct``,
    ``per_class_accuracy`` (43 entries, None for classes absent from the split),
    ``per_class_count``, ``confusion_matrix`` (43x43, rows = true class), ``backend``,
    ``split``, ``data_checksum``, ``timing`` and ``profile_table`` (torch.profiler table of one
    batch of 64, None without torch), all for that framing (``framing``: "roi" or "whole").
    With ``framings`` the other framing is measured too and ``framings`` holds the accuracy of
    both (``{"roi": {...}, "whole": {...}}``): a served model meets whole photos. Writes the
    confusion matrix PNG to ``plot`` if given. A file of the split that is missing or
    unreadable raises the matching NeonsignOSError subclass.
    """
    _, card = load_any(model)
    prep = card["preprocessing"]
    crop = bool(prep["roi"]) if roi is None else bool(roi)
    t0 = time.perf_counter()
    images, labels, meta = _load(data, split, int(prep["size"]), crop, threads, limit)
    load_seconds = time.perf_counter() - t0
    result = evaluate_arrays(
        model,
        images,
        labels,
        backend=backend,
        batch_size=batch_size,
        threads=threads,
        profile=profile,
        plot=plot,
        quiet=quiet,
        split=split,
    )
    result["framing"] = "roi" if crop else "whole"
    if framings:
        images, labels, _ = _load(data, split, int(prep["size"]), not crop, threads, limit)
        add_other_framing(
            result, model, images, labels, backend=backend, batch_size=batch_size, threads=threads
        )
    result["data"] = os.fspath(Path(data).resolve())
    result["data_checksum"] = getattr(meta, "checksum", None)
    result["timing"]["load_seconds"] = load_seconds
    return result


def _load(
    data: str | os.PathLike[str],
    split: str,
    size: int,
    roi: bool,
    threads: int | None,
    limit: int | None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], Any]:
    """``split`` of the GTSRB data under ``data`` as uint8 at ``size``, ROI crops or whole."""
    from .data import load_split

    with file_errors(f"load the {split} split of", data):
        return load_split(
            Path(data),
            split,
            size=size,
            roi=roi,
            dtype="uint8",
            threads=threads,
            limit=limit,
        )


def _class_name(c: int) -> str:
    try:
        from .data import CLASS_NAMES

        return f"{c:2d} {CLASS_NAMES[c]}"
    except (ImportError, IndexError):
        return f"{c:2d}"


def format_summary(result: Mapping[str, Any], worst: int = 5) -> str:
    """Human-readable summary: accuracy, throughput and the ``worst`` classes of an
    :class:`EvaluationResult` (or the same read back from its JSON)."""
    lines = [
        f"{result['split']}: accuracy {result['accuracy'] * 100:.2f}% "
        f"({result['n_correct']}/{result['n_images']}) backend {result['backend']}",
    ]
    framings = result.get("framings") or {}
    if framings:
        lines.append(
            "framings: "
            + ", ".join(
                f"{name} {m['accuracy'] * 100:.2f}% ({m['n_correct']}/{m['n_images']})"
                for name, m in framings.items()
            )
            + f"; the figures below are for the {result.get('framing', '?')} framing"
        )
    ips = result["timing"]["images_per_second"]
    if ips:
        lines.append(
            f"inference: {result['timing']['inference_seconds']:.3f} s, {ips:,.0f} images/s"
        )
    present = [(a, c) for c, a in enumerate(result["per_class_accuracy"]) if a is not None]
    lines.append(f"worst classes ({len(present)} present):")
    for acc, c in sorted(present)[:worst]:
        lines.append(f"  {_class_name(c)}: {acc * 100:.1f}% of {result['per_class_count'][c]}")
    return "\n".join(lines)
