"""The model being served: sources, loading and warming, and the atomic swap on reload.

A *source* is a model directory (``model.safetensors`` + ``model_card.json``, whose
``weights_sha256`` is checked), ``file:PATH``, a registry spec (``models:/name@alias``,
``registry:alias``), or ``scheme:rest`` of any loader added with
:func:`register_model_loader`. Preprocessing follows the card's ``preprocessing`` section.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...artifacts import DEFAULT_PREPROCESSING, check_stats
from ...errors import ModelError, ModelNotFoundError, NeonsignError, NeonsignValueError
from .config import ServeConfig

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ...engine import Engine

__all__ = [
    "ModelLoader",
    "register_model_loader",
    "check_source",
    "load_model_source",
    "LoadedModel",
    "ModelHolder",
]

#: ``loader(source) -> (state_dict of float32 arrays, model card)``.
ModelLoader = Callable[[str], "tuple[Mapping[str, np.ndarray], dict[str, Any]]"]
_LOADERS: dict[str, ModelLoader] = {}

Stats = tuple[float, float, float]


def register_model_loader(scheme: str, loader: ModelLoader) -> None:
    """Serve models from sources written ``<scheme>:<rest>`` (e.g. ``models:/gtsrb/3`` for a
    registry). ``loader(source)`` returns ``(state_dict, card)`` and must verify integrity."""
    if not scheme.isidentifier() or len(scheme) < 2:
        raise NeonsignValueError(f"scheme must be an identifier of 2+ characters, got {scheme!r}")
    _LOADERS[scheme] = loader


def _load_model_dir(source: str) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """A model directory, or a learning-path ``.pth`` / bare ``.safetensors`` file, read by
    :func:`neonsign.artifacts.load_any` (a directory's weights sha256 is checked against its
    card; a bare file gets the learning path's preprocessing). The probe-batch logits check is
    left to :meth:`LoadedModel.load`, which warms the engine it serves with."""
    from ...artifacts import load_any

    return load_any(source, check_logits=False)


_REGISTRY_SCHEMES = ("models", "registry")


def check_source(source: object) -> str:
    """``source`` if it is a model source this server can try to load: a non-empty string,
    and for the registry a well-formed spec (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``registry:REF``). Checked before anything is read (``/admin/reload`` answers 400).

    Raises:
        NeonsignValueError: not a string, empty, or a malformed registry spec.
    """
    if not isinstance(source, str) or not source.strip():
        raise NeonsignValueError(f"a model source must be a non-empty string, got {source!r}")
    if "\0" in source:
        raise NeonsignValueError("a model source must not contain NUL characters")
    scheme, sep, _ = source.partition(":")
    if sep and scheme in _REGISTRY_SCHEMES and scheme not in _LOADERS:
        from ..registry import parse_spec

        parse_spec(source)
    return source


def _check_registry(source: str) -> None:
    """Refuse a registry source when no registry is configured: the default store is SQLite in
    ``./registry`` (relative to the server's working directory), and opening it would create
    an empty ``registry/mlflow.db`` there. A local SQLite store must already exist."""
    from ..registry import MLFLOW_URI_ENV, REGISTRY_DIR_ENV, default_uri

    uri = default_uri()
    if not uri.startswith("sqlite:///"):
        return  # a tracking server or another store: MLflow reports what it finds
    db = Path(uri[len("sqlite:///") :])
    if not db.is_file():
        raise ModelNotFoundError(
            f"{source}: no model registry at {db.parent} (no {db.name}); set {REGISTRY_DIR_ENV} "
            f"or {MLFLOW_URI_ENV} to the registry this server should read",
            filename=str(db),
        )


def load_model_source(source: str) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """Resolve a model source to ``(state_dict, card)``: ``scheme:rest`` goes to the loader
    registered for ``scheme``, anything else (a path, or ``file:PATH``) is a model directory.

    Files are read once and must be regular files (a FIFO or a device is refused at once,
    :func:`neonsign.artifacts.read_model_file`), so a load cannot block on them."""
    source = check_source(source)
    scheme, sep, rest = source.partition(":")
    if sep and scheme in _LOADERS:
        return _LOADERS[scheme](source)
    if sep and scheme in _REGISTRY_SCHEMES:  # the model registry, resolved at each (re)load
        from ..registry import load_from_registry

        _check_registry(source)
        try:
            return load_from_registry(source)
        except NeonsignError:
            raise
        except Exception as exc:  # MLflow's own errors (a store that does not answer, ...)
            raise ModelError(
                f"{source}: cannot load it from the registry: {type(exc).__name__}: {exc}"
            ) from exc
    if sep and scheme == "file":
        return _load_model_dir(rest[2:] if rest.startswith("//") else rest)
    return _load_model_dir(source)


def _preprocessing(source: str, card: Mapping[str, Any]) -> tuple[tuple[int, int], Stats, Stats]:
    """``(size (h, w), mean, std)`` from the card's ``preprocessing`` section, checked against
    the engine's input shape."""
    from ...engine import INPUT_SHAPE

    prep = card.get("preprocessing") or {}
    try:
        size = prep.get("size", DEFAULT_PREPROCESSING["size"])
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{source}: bad preprocessing section in the model card: {exc}") from exc
    if (3, h, w) != INPUT_SHAPE:
        raise ModelError(
            f"{source}: the engine takes {INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} images, card says {h}x{w}"
        )
    # finite, 3 values, std non-zero (a loader registered by a user may skip load_model's check)
    mean = check_stats(prep.get("mean", DEFAULT_PREPROCESSING["mean"]), source, "mean")
    std = check_stats(prep.get("std", DEFAULT_PREPROCESSING["std"]), source, "std")
    return (h, w), mean, std


@dataclass(frozen=True)
class LoadedModel:
    """An engine ready to serve, with what it was built from.

    Attributes:
        engine: the warmed native engine.
        card: the model card (JSON object).
        source: where it came from.
        version: ``weights_sha256`` from the card (identifies the weights).
        size: ``(height, width)`` the images are resized to.
        mean, std: per-channel normalisation.
        loaded_at: UNIX time it finished loading.
    """

    engine: Engine
    card: dict[str, Any]
    source: str
    version: str
    size: tuple[int, int]
    mean: Stats
    std: Stats
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(
        cls, source: str, kernel: str | None = None, threads: int | None = None
    ) -> LoadedModel:
        """Load ``source``, build the engine, and warm it with one forward pass.

        Raises:
            ModelError: bad weights, card or preprocessing (non-finite weights, mean or std, a
                zero std) or logits that are not finite on the warm-up probe batch;
                FileNotFoundError: no such source.
        """
        from ...engine import Engine

        state_dict, card = load_model_source(source)
        size, mean, std = _preprocessing(source, card)
        engine = Engine.from_state_dict(
            state_dict, kernel=kernel, threads=threads, quantization=card.get("quantization")
        )
        engine.warm_up(source)  # packs caches, pages in; ModelError if the logits overflow
        version = str(card.get("weights_sha256", "unknown"))
        return cls(engine, dict(card), source, version, size, mean, std)


class ModelHolder:
    """The model being served. ``current`` is one reference read once per request; a reload
    builds the new model completely (:meth:`load`, no lock held) before :meth:`swap` replaces
    it, so in-flight requests keep theirs and a load that never returns (a hung file system)
    cannot block later reloads: only the swap, which does no I/O, takes the lock."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()  # the swap only

    def load(self, source: str | None = None) -> LoadedModel:
        """Load and warm ``source`` (default: the configured one); nothing is swapped."""
        return LoadedModel.load(
            source or self.config.model, self.config.kernel, self.config.engine_threads
        )

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        """Serve ``new`` from now on; return the model it replaces."""
        with self._lock:
            old, self.current = self.current, new
        return old

    def reload(self, source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """:meth:`load` then :meth:`swap`; return (old, new). On error the old model stays
        and the exception propagates."""
        new = self.load(source)
        return self.swap(new), new
