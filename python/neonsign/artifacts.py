"""Model directories: safetensors weights + a JSON model card (torch-free).

A model directory holds::

    model.safetensors   TrafficSignNet's state_dict tensors (float32) under their PyTorch names
    model_card.json     metrics, preprocessing, data checksum, seed, epochs, hyperparameters,
                        library and code versions, timestamp, sha256 of model.safetensors,
                        schema version

:func:`save_model` never silently replaces an existing model (``overwrite=True`` to allow it);
:func:`load_model` verifies the weights' sha256 against the card and the tensor names and shapes
against TrafficSignNet. The engine, the server and the registry read models through this module
without PyTorch. :func:`import_pth` / :func:`export_pth` convert from and to the learning path's
``.pth`` state_dicts (those two need torch, imported when called).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

from . import _native
from ._fileio import atomic_dir, atomic_write, check_dir_writable, check_file_writable
from .errors import (
    ModelError,
    ModelNotFoundError,
    NeonsignTypeError,
    NeonsignValueError,
    file_errors,
    os_error,
    require,
)
from .preprocess import DEFAULT_MEAN, DEFAULT_STD

__all__ = [
    "SCHEMA_VERSION",
    "MAX_MODEL_FILE_BYTES",
    "WEIGHTS_FILE",
    "CARD_FILE",
    "NUM_CLASSES",
    "STATE_DICT_SHAPES",
    "DEFAULT_PREPROCESSING",
    "Preprocessing",
    "validate_state_dict",
    "sha256_file",
    "read_model_file",
    "code_version",
    "library_versions",
    "make_card",
    "save_model",
    "load_model",
    "load_any",
    "pth_card",
    "is_model_file",
    "load_weights_file",
    "check_stats",
    "read_weights_file",
    "import_pth",
    "export_pth",
    "convert",
]

SCHEMA_VERSION = 1
#: Largest card or weights file a loader reads into memory (TrafficSignNet's weights are about
#: 1.3 MB; a learning-path checkpoint with optimizer state a few times that).
MAX_MODEL_FILE_BYTES = 256 << 20
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
#: Logits of TrafficSignNet (from the C engine, like the shapes below).
NUM_CLASSES: int = _native.NUM_CLASSES

#: TrafficSignNet's state_dict: PyTorch name -> shape, in the engine's order.
STATE_DICT_SHAPES: dict[str, tuple[int, ...]] = dict(_native.WEIGHT_SHAPES)


class Preprocessing(TypedDict):
    """A model card's ``preprocessing`` section: how images must be prepared for the model."""

    size: int
    roi: bool
    mean: list[float]
    std: list[float]
    dtype: str
    layout: str


#: The learning path's preprocessing: whole image resized to 32x32, Normalize(0.5, 0.5).
DEFAULT_PREPROCESSING: Preprocessing = {
    "size": 32,
    "roi": False,
    "mean": list(DEFAULT_MEAN),
    "std": list(DEFAULT_STD),
    "dtype": "float32",
    "layout": "NCHW",
}

_CARD_REQUIRED = ("schema_version", "weights_sha256", "preprocessing")
_PREPROCESSING_REQUIRED = ("size", "roi", "mean", "std", "dtype")
_PACKAGES = ("neonsign", "numpy", "torch", "safetensors", "pillow")


def _to_numpy(value: Any, name: str, source: str) -> NDArray[np.float32]:
    """A float32 C-contiguous copy of a NumPy array or a torch tensor (duck-typed, no import;
    half and bfloat16 tensors are widened to float32)."""
    if hasattr(value, "detach"):  # torch.Tensor without importing torch
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # anything unconvertible is a model error
        raise ModelError(
            f"{source}: tensor {name!r} cannot be converted to an array: {exc}"
        ) from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise ModelError(
            f"{source}: tensor {name!r} has dtype {arr.dtype}, expected floating-point numeric values"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


_KEY_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def _strip_prefixes(key: object) -> object:
    while isinstance(key, str) and key.startswith(_KEY_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def validate_state_dict(
    state_dict: Mapping[str, Any], source: str = "state_dict"
) -> dict[str, NDArray[np.float32]]:
    """Check a TrafficSignNet state_dict and return it as float32 NumPy arrays.

    The one validator of weights: used by :func:`save_model`, :func:`load_model`, the profiler
    and :class:`neonsign.engine.Engine`. Accepts NumPy arrays or torch tensors (any float dtype).
    Keys saved from a (Distributed)DataParallel wrapper (``module.``) or a ``torch.compile``d
    module (``_orig_mod.``) are accepted. Raises :class:`ModelError` naming ``source`` and the
    offending tensor for missing/unexpected names, wrong shapes, non-float or non-finite values.
    """
    if not isinstance(state_dict, Mapping):
        raise ModelError(
            f"{source}: expected a mapping of tensor names to tensors, got {type(state_dict).__name__}"
        )
    items = {_strip_prefixes(k): v for k, v in state_dict.items()}
    missing = [k for k in STATE_DICT_SHAPES if k not in items]
    unexpected = sorted(str(k) for k in set(items) - set(STATE_DICT_SHAPES))
    if missing or unexpected:
        raise ModelError(
            f"{source}: not a TrafficSignNet state_dict (missing {', '.join(missing) or 'none'}; "
            f"unexpected {', '.join(unexpected) or 'none'})"
        )
    out: dict[str, NDArray[np.float32]] = {}
    for name, shape in STATE_DICT_SHAPES.items():
        arr = _to_numpy(items[name], name, source)
        if arr.shape != shape:
            raise ModelError(
                f"{source}: tensor {name!r} has the wrong shape: expected {shape}, got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ModelError(f"{source}: tensor {name!r} contains NaN or infinite values")
        out[name] = arr
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (a NeonsignOSError subclass naming the file if unreadable).

    For a file that is then used, hash the bytes that are used instead (:func:`read_model_file`
    and ``hashlib.sha256(data)``): a file replaced between the hash and the read would be
    checked and used as two different files."""
    h = hashlib.sha256()
    with file_errors("read", path), open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model_file(path: str | os.PathLike[str], what: str = "model file") -> bytes:
    """The whole content of the regular file ``path``, read once (a card, a weights file).

    Every model loader reads through this function and then hashes and parses the same bytes,
    so what is checked is what is used even while the file is being replaced. The file is
    opened with ``O_NONBLOCK`` and refused unless it is a regular file: a FIFO or a device in
    a model's place (a hung mount, a mistake) raises :class:`ModelError` at once instead of
    blocking the reader -- the server's reload among them -- forever.

    Raises:
        ModelNotFoundError: no such file (``what`` and the path in the message).
        ModelError: not a regular file, or larger than :data:`MAX_MODEL_FILE_BYTES`.
        NeonsignOSError subclasses: the file cannot be read (permission, a directory, I/O).
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelNotFoundError(f"{what} {name} not found", filename=name) from None
    except OSError as exc:
        raise os_error(exc, f"read the {what}", name) from exc
    with file_errors(f"read the {what}", name), os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
            raise ModelError(f"{what} {name} is {kind}, not a regular file; refusing to read it")
        if info.st_size > MAX_MODEL_FILE_BYTES:
            raise ModelError(
                f"{what} {name} is {info.st_size} bytes, more than any TrafficSignNet model file "
                f"({MAX_MODEL_FILE_BYTES} at most); refusing to read it into memory"
            )
        return f.read(MAX_MODEL_FILE_BYTES + 1)


def code_version() -> str:
    """``git describe --always --dirty`` of the source checkout, else the package version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        if out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from . import __version__

    return __version__


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that shape a model (None when not installed)."""
    from importlib import metadata  # here: loading a model (a server) never needs it

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def make_card(
    *,
    metrics: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    data_checksum: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A model card with provenance filled in (versions, code version, timestamp, schema).

    ``weights_sha256`` is added by :func:`save_model`. ``preprocessing`` defaults to the learning
    path's (:data:`DEFAULT_PREPROCESSING`); given keys override the defaults.
    """
    prep: dict[str, Any] = {**DEFAULT_PREPROCESSING}
    prep.update(preprocessing or {})
    card: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "architecture": "TrafficSignNet",
        "num_classes": NUM_CLASSES,
        "metrics": dict(metrics or {}),
        "preprocessing": prep,
        "data_checksum": data_checksum,
        "seed": seed,
        "epochs": epochs,
        "hyperparameters": dict(hyperparameters or {}),
        "library_versions": library_versions(),
        "code_version": code_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    card.update(extra)
    return card


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise NeonsignTypeError(
        f"model card value of type {type(obj).__name__} is not JSON serialisable"
    )


def _card_json(card: Mapping[str, Any]) -> str:
    """The card as JSON text; NeonsignTypeError / NeonsignValueError for values JSON cannot hold
    (objects, NaN, infinity)."""
    try:
        return json.dumps(card, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except ValueError as exc:  # NaN or infinity (allow_nan=False), a circular reference
        raise NeonsignValueError(f"model card cannot be written as JSON: {exc}") from None


def save_model(
    directory: str | os.PathLike[str],
    state_dict: Mapping[str, Any],
    card: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model.safetensors`` + ``model_card.json`` into ``directory`` and return its path.

    ``state_dict``: TrafficSignNet tensors (NumPy float arrays or torch tensors), stored as
    float32. ``card``: typically from :func:`make_card`; ``weights_sha256`` and
    ``schema_version`` are set here; ``weights_sha256`` is the hash of the bytes written. An
    existing non-empty directory raises :class:`ModelError` unless ``overwrite=True``.

    The directory is written whole or not at all: both files go into a temporary sibling
    directory that is then renamed into place (:func:`neonsign._fileio.atomic_dir`; with
    ``overwrite`` the old directory is renamed away first and deleted after). A failure -- a
    full disk between the weights and the card, an interrupt -- leaves the old directory (or
    nothing) and no temporary directory.

    Raises:
        ModelError: bad tensors, or a directory that exists and may not be replaced.
        NeonsignTypeError / NeonsignValueError: a card that JSON cannot hold (NaN, objects).
        NeonsignOSError subclasses (NeonsignPermissionError, DiskFullError, ...): the directory
            or a file in it cannot be created or written; the message names it.
    """
    from safetensors.numpy import save_file

    path = Path(directory)
    with file_errors("inspect the model directory", path):
        if path.exists() and not path.is_dir():
            raise ModelError(f"model directory {path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ModelError(
                f"model directory {path} already exists and is not empty; refusing to overwrite "
                "it (pass overwrite=True, or --force on the command line)"
            )
    tensors = validate_state_dict(state_dict)
    if not isinstance(card, Mapping):
        raise NeonsignTypeError(f"card must be a mapping, got {type(card).__name__}")
    card_out = dict(card)
    card_out["schema_version"] = SCHEMA_VERSION
    card_out.setdefault("preprocessing", {**DEFAULT_PREPROCESSING})
    _card_json(card_out)  # refuse a card JSON cannot hold before writing anything

    def fill(staging: Path) -> None:
        # the staging directory is private (0700) until published: hashing the file written
        # there hashes exactly the bytes that are published
        with file_errors("write", path / WEIGHTS_FILE):
            save_file(tensors, os.fspath(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        data = read_model_file(staging / WEIGHTS_FILE, "weights file")
        card_out["weights_sha256"] = hashlib.sha256(data).hexdigest()
        with file_errors("write", path / CARD_FILE):
            (staging / CARD_FILE).write_text(_card_json(card_out) + "\n", encoding="utf-8")

    atomic_dir(path, fill, replace=overwrite, last=(CARD_FILE,), action="write the model directory")
    return path


def _read_card(card_path: Path) -> dict[str, Any]:
    data = read_model_file(card_path, "model card")
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {card_path} is unreadable: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path}: expected a JSON object")
    missing = [k for k in _CARD_REQUIRED if k not in card]
    if missing:
        raise ModelError(f"model card {card_path}: missing field(s) {missing}")
    if card["schema_version"] != SCHEMA_VERSION:
        raise ModelError(
            f"model card {card_path}: schema_version {card['schema_version']!r} is not supported "
            f"(this neonsign reads {SCHEMA_VERSION})"
        )
    prep = card["preprocessing"]
    if not isinstance(prep, dict) or any(k not in prep for k in _PREPROCESSING_REQUIRED):
        raise ModelError(
            f"model card {card_path}: 'preprocessing' must hold {list(_PREPROCESSING_REQUIRED)}"
        )
    for key in ("mean", "std"):
        check_stats(prep.get(key, DEFAULT_PREPROCESSING[key]), f"model card {card_path}", key)
    return card


def check_stats(values: object, source: str, key: str) -> tuple[float, float, float]:
    """Per-channel ``preprocessing.mean`` / ``preprocessing.std`` as three finite floats (a std
    also non-zero: images are divided by it); :class:`ModelError` naming ``source`` and the
    field otherwise. A NaN here would make every image non-finite after normalisation."""
    try:
        if not isinstance(values, (list, tuple, np.ndarray)):
            raise TypeError(f"a {type(values).__name__}")
        stats = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{source}: preprocessing.{key} must be 3 numbers, got {values!r} ({exc})"
        ) from None
    if len(stats) != 3 or not all(np.isfinite(stats)):
        raise ModelError(f"{source}: preprocessing.{key} must be 3 finite numbers, got {values!r}")
    if key == "std" and any(v == 0 for v in stats):
        raise ModelError(f"{source}: preprocessing.std must be non-zero, got {values!r}")
    return stats[0], stats[1], stats[2]


def load_model(
    directory: str | os.PathLike[str], *, check_logits: bool = True
) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
    """Read a model directory: (state_dict as float32 NumPy arrays, model card).

    With ``check_logits`` (default) the weights are tried on the engine's fixed probe batch
    (:meth:`neonsign.engine.Engine.warm_up`); a caller that builds and warms its own engine
    right after (the server) passes False so the work is not done twice.

    The weights file is read once; its sha256 is computed on those bytes, checked against the
    card, and the tensors are parsed from the same bytes (a file replaced meanwhile cannot be
    checked as one file and loaded as another). Verifies the tensors against TrafficSignNet;
    raises :class:`ModelError` (naming the file) when anything is missing, malformed, tampered
    with or not a regular file (a FIFO is refused, not waited on):
    :class:`~neonsign.errors.ModelNotFoundError` (also a FileNotFoundError) for a missing
    directory, card or weights file. A card or weights file that cannot be read raises the
    matching NeonsignOSError subclass.

    The card stays a ``dict``: besides the fields :func:`make_card` writes it holds whatever
    the caller added (metrics, hyperparameters, extra keys); ``card["preprocessing"]`` has the
    shape of :class:`Preprocessing`.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model directory {path} not found (expected {WEIGHTS_FILE} + {CARD_FILE} in it)",
            filename=str(path),
        )
    card = _read_card(path / CARD_FILE)
    weights = path / WEIGHTS_FILE
    data = read_model_file(weights, "weights file")
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["weights_sha256"]:
        raise ModelError(
            f"weights file {weights} has sha256 {digest}, but {CARD_FILE} records "
            f"{card['weights_sha256']}: the weights were modified or belong to another model"
        )
    tensors = validate_state_dict(_parse_weights(data, weights), source=os.fspath(weights))
    from .engine import Engine  # engine imports this module: imported when first needed

    if check_logits:
        Engine(tensors).warm_up(f"weights file {weights}")
    return tensors, card


# ----------------------------------------------------------------------------------------------
# Bare weights files: safetensors, and the learning path's .pth files (PyTorch pickles of a
# state_dict; need torch). Each is read once (read_model_file) and parsed from those bytes.

_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


def _parse_pth(data: bytes, pth_path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The state_dict in the bytes of a ``.pth`` (``torch.load(weights_only=True)``)."""
    torch = require("torch", "torch", f"loading {os.fspath(pth_path)}")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise ModelError(
            f".pth file {pth_path} could not be loaded as a state_dict: {exc}"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ModelError(f".pth file {pth_path} holds a {type(obj).__name__}, not a state_dict")
    return obj


def _parse_weights(data: bytes, path: Path) -> Mapping[str, Any]:
    """The tensors in the bytes of a weights file, by its suffix: safetensors (NumPy arrays)
    or a ``.pth``/``.pt`` state_dict (torch tensors). Not yet validated."""
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt"):
        return _parse_pth(data, path)
    if suffix != ".safetensors":
        raise ModelError(
            f"{path}: unknown model file type {path.suffix!r} (.safetensors, .pth or .pt)"
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"weights file {path} is not valid safetensors: {exc}") from None


def _read_weights(path: Path) -> tuple[Mapping[str, Any], str]:
    """(tensors as stored, sha256 of the bytes they were parsed from) of a bare weights file."""
    if path.suffix.lower() not in _WEIGHT_SUFFIXES:
        raise ModelError(
            f"{path}: unknown model file type {path.suffix!r} (.safetensors, .pth or .pt)"
        )
    data = read_model_file(path, "weights file")
    return _parse_weights(data, path), hashlib.sha256(data).hexdigest()


def _read_pth(pth_path: str | os.PathLike[str]) -> Mapping[str, Any]:
    return _parse_pth(read_model_file(pth_path, ".pth file"), pth_path)


def read_weights_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The tensors of a bare ``.safetensors`` file (NumPy arrays) or a learning-path ``.pth``/``.pt``
    state_dict (torch tensors; needs PyTorch, loaded with ``weights_only=True``), as stored: not
    yet validated (see :func:`load_weights_file`). The file is read once and parsed from memory
    (:func:`read_model_file`: regular files only). Raises :class:`ModelError` naming the file."""
    return _read_weights(Path(path))[0]


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, NDArray[np.float32]]:
    """TrafficSignNet weights (float32 NumPy arrays, validated by :func:`validate_state_dict`)
    from a bare ``.safetensors``, ``.pth`` or ``.pt`` file (see :func:`read_weights_file`). No
    model card, no checksum: use :func:`load_model` for model directories."""
    return validate_state_dict(read_weights_file(path), source=os.fspath(path))


def pth_card(path: str | os.PathLike[str], weights_sha256: str | None = None) -> dict[str, Any]:
    """The card of a bare weights file (a learning-path ``.pth``, or a ``.safetensors`` without
    a card): the learning path's whole-image preprocessing (:data:`DEFAULT_PREPROCESSING`,
    ``Normalize(0.5, 0.5)``), ``source`` ``"pth"`` or ``"safetensors"``, ``source_file`` the
    file, and ``weights_sha256`` the sha256 of that file (it identifies these weights; a model
    directory converted from it records the sha256 of its own ``model.safetensors``). Pass
    ``weights_sha256`` when the file was already read (:func:`load_any` does: the hash is of
    the bytes it loaded); otherwise the file is hashed here."""
    p = Path(path)
    kind = "safetensors" if p.suffix.lower() == ".safetensors" else "pth"
    card = make_card(source=kind, source_file=os.fspath(p))
    card["weights_sha256"] = weights_sha256 or sha256_file(p)
    return card


def load_any(
    path: str | os.PathLike[str], *, check_logits: bool = True
) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
    """(state_dict as float32 NumPy arrays, model card) of any model a user may name: a model
    directory (:func:`load_model`, sha256 verified), a bare ``.safetensors`` file, or a
    learning-path ``.pth``/``.pt`` state_dict (loaded with ``torch.load(weights_only=True)``;
    MissingDependencyError naming the ``torch`` extra without PyTorch). A bare file gets the
    synthetic card of :func:`pth_card`, whose ``weights_sha256`` is the hash of the bytes
    loaded.

    Every command that takes a model (``test``, ``serve``, ``predict``, ``gate``, ``registry
    register``, ``convert``) reads it through this function.

    Raises:
        ModelNotFoundError: nothing at ``path`` (a FileNotFoundError).
        ModelError: a malformed or tampered model, an unknown file type, a FIFO or device.
    """
    p = Path(path)
    if p.is_dir() or p.suffix.lower() not in _WEIGHT_SUFFIXES:
        return load_model(p, check_logits=check_logits)  # or "model directory ... not found"
    if not p.exists():
        raise ModelNotFoundError(f"model file {p} not found", filename=str(p))
    stored, digest = _read_weights(p)
    return validate_state_dict(stored, source=os.fspath(p)), pth_card(p, digest)


def is_model_file(path: str | os.PathLike[str]) -> bool:
    """True for a bare weights file :func:`load_any` reads (``.pth``, ``.pt``,
    ``.safetensors``), False for anything else (a model directory)."""
    p = Path(path)
    return not p.is_dir() and p.suffix.lower() in (".pth", ".pt", ".safetensors")


def import_pth(
    pth_path: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    *,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a learning-path ``.pth`` state_dict into a model directory (safetensors + card).

    The card defaults to :func:`make_card` with the learning path's preprocessing and a
    ``source`` field naming the ``.pth`` file.
    """
    tensors = validate_state_dict(_read_pth(pth_path), source=os.fspath(pth_path))
    if card is None:
        card = make_card(source=os.fspath(pth_path))
    return save_model(directory, tensors, card, overwrite=overwrite)


def export_pth(
    directory: str | os.PathLike[str], pth_path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a model directory's weights as a learning-path ``.pth`` (``torch.save`` of the
    state_dict), loadable with ``TrafficSignNet().load_state_dict(torch.load(p, weights_only=True))``.
    Needs PyTorch (MissingDependencyError naming the ``torch`` extra otherwise)."""
    require("torch", "torch", "writing a .pth file")
    import torch

    out = Path(pth_path)
    if out.exists() and not overwrite:
        raise ModelError(f"{out} already exists; refusing to overwrite it (pass overwrite=True)")
    check_file_writable(out, "write the .pth file")  # before the model is read
    tensors, _ = load_model(directory)
    state = {name: torch.from_numpy(arr.copy()) for name, arr in tensors.items()}
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    return out


def _check_model_dir_out(path: Path, overwrite: bool) -> None:
    """The checks :func:`save_model` makes of its directory, made before any work."""
    with file_errors("inspect the model directory", path):
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ModelError(
                f"model directory {path} already exists and is not empty; refusing to overwrite "
                "it (pass overwrite=True, or --force on the command line)"
            )
    check_dir_writable(path, "write the model directory")


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Convert between a learning-path ``.pth`` and a model directory, either way.

    * ``src`` a ``.pth``/``.pt`` (or bare ``.safetensors``) file: ``dst`` becomes a model
      directory with the learning path's preprocessing (:func:`load_any`, :func:`save_model`);
    * ``src`` a model directory and ``dst`` ending in ``.pth``/``.pt``: the weights are written
      as a state_dict (:func:`export_pth`; needs PyTorch).

    Raises:
        ModelError: another combination, or a destination that exists (unless ``overwrite``).
    """
    source, target = Path(src), Path(dst)
    if is_model_file(source):
        if target.suffix.lower() in (".pth", ".pt", ".safetensors"):
            raise ModelError(
                f"{target}: converting the weights file {source} makes a model directory; "
                "name a directory, not a file"
            )
        _check_model_dir_out(target, overwrite)  # before reading (and converting) anything
        return save_model(target, *load_any(source), overwrite=overwrite)
    if target.suffix.lower() in (".pth", ".pt"):
        return export_pth(source, target, overwrite=overwrite)
    raise ModelError(
        f"cannot convert {source} to {target}: convert a .pth into a model directory, or a "
        "model directory into a file ending in .pth"
    )
