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
from typing import TYPE_CHECKING, Any

import numpy as np

from ...artifacts import DEFAULT_PREPROCESSING, check_stats
from ...errors import ModelError, NeonsignValueError
from .config import ServeConfig

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ...engine import Engine

__all__ = [
    "ModelLoader",
    "register_model_loader",
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


def load_model_source(source: str) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """Resolve a model source to ``(state_dict, card)``: ``scheme:rest`` goes to the loader
    registered for ``scheme``, anything else (a path, or ``file:PATH``) is a model directory."""
    scheme, sep, rest = source.partition(":")
    if sep and scheme in _LOADERS:
        return _LOADERS[scheme](source)
    if sep and scheme in ("models", "registry"):  # the model registry, resolved at each (re)load
        from ..registry import load_from_registry

        return load_from_registry(source)
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
    """The model being served. ``current`` is one reference read once per request; ``reload``
    builds the new model completely before replacing it, so in-flight requests keep theirs."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time

    def reload(self, source: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``source`` (default: the configured one) and swap it in; return (old, new).
        On error the old model stays and the exception propagates."""
        with self._lock:
            new = LoadedModel.load(
                source or self.config.model, self.config.kernel, self.config.engine_threads
            )
            old, self.current = self.current, new
            return old, new
