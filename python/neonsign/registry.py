"""Model registry on MLflow: register model directories, list, show, promote, roll back.

A registered model (default name ``neonsign``) has numbered versions; each version is one model
directory (``model.safetensors`` + ``model_card.json``) logged as the artifacts of an MLflow run
whose params and tags hold the card's data checksum, code version and weights sha256 and whose
metrics hold the card's metrics. Aliases (``champion``, ``challenger``, ...) point at versions;
every alias move is appended to a registered-model tag ``neonsign.history.<alias>`` so that
:meth:`Registry.rollback` can move it back.

The store is MLflow's: a local SQLite database by default (``sqlite:///<dir>/mlflow.db`` with the
artifacts in ``<dir>/artifacts``; ``<dir>`` is ``$NEONSIGN_REGISTRY`` or ``./registry``), or any
MLflow tracking server given by URI (``--registry-uri`` / ``$MLFLOW_TRACKING_URI``).

Model specs understood by :func:`resolve` and by ``neonsign serve --model``:
``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``registry:ALIAS`` and ``registry:VERSION``
(default model name).

mlflow is imported lazily (``pip install 'neonsign[mlflow]'``); importing this module does not
need it, and ``import neonsign`` does not import this module.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import CARD_FILE, load_model
from .errors import ModelError, NeonsignValueError, UnsupportedError

__all__ = [
    "DEFAULT_NAME",
    "ModelVersion",
    "Registry",
    "default_uri",
    "parse_spec",
    "resolve",
]

DEFAULT_NAME = "neonsign"
_HISTORY_TAG = "neonsign.history."
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_SPEC_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def default_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else SQLite in ``$NEONSIGN_REGISTRY`` (default ``./registry``)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(os.environ.get("NEONSIGN_REGISTRY", "registry")).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow import MlflowClient
    except ImportError as exc:
        raise UnsupportedError(
            "the model registry needs MLflow: pip install 'neonsign[mlflow]' "
            f"(import failed: {exc})"
        ) from None
    return MlflowClient


@dataclass
class ModelVersion:
    """One registered version: ``version`` (int), ``aliases``, ``source`` (artifact URI of the
    model directory), ``run_id``, ``tags`` (weights_sha256, data_checksum, code_version, ...),
    ``metrics`` (from the card) and ``created`` (UNIX ms)."""

    name: str
    version: int
    aliases: list[str]
    source: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    created: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias) or alias.isdigit():
        raise NeonsignValueError(
            f"alias {alias!r}: expected a name like 'champion' (letters, digits, _ or -)"
        )
    return alias


def _flat_metrics(card: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (card.get("metrics") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out


class Registry:
    """The MLflow Model Registry for neonsign models.

    Args:
        uri: MLflow tracking/registry URI (default :func:`default_uri`). For ``sqlite:///PATH``
            the database directory is created and artifacts go to ``PATH``'s directory
            ``/artifacts``.
        name: registered model name.
    """

    def __init__(self, uri: str | None = None, name: str = DEFAULT_NAME) -> None:
        client_cls = _mlflow()
        self.uri = uri or default_uri()
        self.name = name
        self._artifact_root: str | None = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            self._artifact_root = (db.parent / "artifacts").resolve().as_uri()
        self.client = client_cls(tracking_uri=self.uri, registry_uri=self.uri)

    # -- helpers -------------------------------------------------------------------------------
    def experiment_id(self) -> str:
        """The MLflow experiment of this model name (created with artifacts beside a SQLite db)."""
        exp = self.client.get_experiment_by_name(self.name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(self.name, artifact_location=self._artifact_root))

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(
                self.name, description="TrafficSignNet (GTSRB) model directories from neonsign"
            )

    def _aliases(self) -> dict[int, list[str]]:
        """version -> aliases, from the registered model (search results may omit aliases)."""
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(self.name)
        except MlflowException:
            return {}
        out: dict[int, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            out.setdefault(int(version), []).append(alias)
        return out

    def _version(self, mv: Any, aliases: dict[int, list[str]] | None = None) -> ModelVersion:
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(self.client.get_run(mv.run_id).data.metrics)
            except Exception:  # noqa: BLE001 - a version whose run was deleted still lists
                metrics = {}
        names = (aliases if aliases is not None else self._aliases()).get(int(mv.version), [])
        return ModelVersion(
            self.name,
            int(mv.version),
            sorted(names),
            mv.source,
            mv.run_id,
            dict(mv.tags or {}),
            metrics,
            mv.creation_timestamp,
        )

    def _history(self, alias: str) -> list[int]:
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(self.name).tags or {}
        except MlflowException:
            return []
        try:
            hist = json.loads(tags.get(_HISTORY_TAG + alias, "[]"))
        except ValueError:
            return []
        return [int(v) for v in hist if isinstance(v, int)]

    # -- public API ----------------------------------------------------------------------------
    def register(
        self,
        model_dir: str | os.PathLike[str],
        *,
        alias: str | None = None,
        tags: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> ModelVersion:
        """Register a model directory as a new version (its sha256 is verified first).

        The card's metrics become run metrics; ``data_checksum``, ``code_version``,
        ``weights_sha256``, epochs and seed become params and version tags. ``alias`` (e.g.
        ``challenger``) is set on the new version; ``metrics`` (e.g. ``test_accuracy``) are
        logged with the card's.
        """
        path = Path(model_dir)
        _, card = load_model(path)  # raises ModelError on a bad / tampered directory
        info = {
            "weights_sha256": str(card.get("weights_sha256")),
            "data_checksum": str(card.get("data_checksum")),
            "code_version": str(card.get("code_version")),
            "created": str(card.get("created")),
            "source_dir": os.fspath(path.resolve()),
        }
        info.update(tags or {})
        self._ensure_model()
        run = self.client.create_run(
            self.experiment_id(),
            run_name=f"register-{path.name}",
            tags={"neonsign.kind": "register"},
        )
        rid = run.info.run_id
        try:
            for k in ("weights_sha256", "data_checksum", "code_version"):
                self.client.log_param(rid, k, info[k])
            for k in ("epochs", "seed"):
                if card.get(k) is not None:
                    self.client.log_param(rid, k, card[k])
            for k, v in {**_flat_metrics(card), **(metrics or {})}.items():
                self.client.log_metric(rid, k, v)
            self.client.log_artifacts(rid, os.fspath(path), "model")
            self.client.set_terminated(rid)
        except Exception:
            self.client.set_terminated(rid, status="FAILED")
            raise
        mv = self.client.create_model_version(
            self.name, f"{run.info.artifact_uri}/model", run_id=rid, tags=info
        )
        if alias:
            self.promote(int(mv.version), alias)
        return self.show(int(mv.version))

    def list(self) -> list[ModelVersion]:
        """Every version, newest first."""
        mvs = self.client.search_model_versions(f"name='{self.name}'")
        aliases = self._aliases()
        return sorted((self._version(m, aliases) for m in mvs), key=lambda v: -v.version)

    def show(self, ref: int | str) -> ModelVersion:
        """A version by number or alias; raises :class:`ModelError` when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            if isinstance(ref, int) or str(ref).isdigit():
                mv = self.client.get_model_version(self.name, str(int(ref)))
            else:
                mv = self.client.get_model_version_by_alias(self.name, _check_alias(str(ref)))
        except MlflowException as exc:
            raise ModelError(
                f"registry {self.uri}: model {self.name!r} has no version {ref!r} "
                f"({exc.error_code})"
            ) from None
        return self._version(mv)

    def promote(self, version: int | str, alias: str = "champion") -> ModelVersion:
        """Point ``alias`` at ``version`` (a number or another alias) and record the move."""
        alias = _check_alias(alias)
        target = self.show(version)
        hist = self._history(alias)
        if not hist or hist[-1] != target.version:
            hist.append(target.version)
        self.client.set_registered_model_alias(self.name, alias, str(target.version))
        self.client.set_registered_model_tag(
            self.name, _HISTORY_TAG + alias, json.dumps(hist[-100:])
        )
        return self.show(target.version)

    def rollback(self, alias: str = "champion") -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before the last promotion."""
        alias = _check_alias(alias)
        hist = self._history(alias)
        if len(hist) < 2:
            raise ModelError(
                f"registry {self.uri}: alias {alias!r} of {self.name!r} has no "
                f"earlier version to roll back to (history {hist})"
            )
        hist.pop()
        self.client.set_registered_model_alias(self.name, alias, str(hist[-1]))
        self.client.set_registered_model_tag(self.name, _HISTORY_TAG + alias, json.dumps(hist))
        return self.show(hist[-1])

    def history(self, alias: str = "champion") -> list[int]:
        """Versions ``alias`` has pointed at, oldest first (the last is the current one)."""
        return self._history(_check_alias(alias))

    def download(self, ref: int | str, dst: str | os.PathLike[str] | None = None) -> Path:
        """A local model directory for version/alias ``ref`` (local artifact stores are used in
        place; remote ones are downloaded into ``dst`` or a temporary directory)."""
        import mlflow

        mv = self.show(ref)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source,
            dst_path=None if dst is None else os.fspath(dst),
            tracking_uri=self.uri,
        )
        path = Path(local)
        if not (path / CARD_FILE).is_file():
            raise ModelError(
                f"registry {self.uri}: version {mv.version} artifacts {mv.source} hold no {CARD_FILE}"
            )
        return path


def parse_spec(spec: str) -> tuple[str, str]:
    """``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` / ``registry:REF`` -> (name, ref)."""
    if spec.startswith("registry:"):
        ref = spec[len("registry:") :]
        if not ref:
            raise NeonsignValueError(
                f"model spec {spec!r}: expected registry:ALIAS or registry:VERSION"
            )
        return DEFAULT_NAME, ref
    m = _SPEC_RE.match(spec)
    if not m:
        raise NeonsignValueError(
            f"model spec {spec!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION or registry:REF"
        )
    return m["name"], m["alias"] or m["version"]


def resolve(spec: str, uri: str | None = None) -> Path:
    """The local model directory a registry spec points at now (see :func:`parse_spec`)."""
    name, ref = parse_spec(spec)
    return Registry(uri, name).download(ref)


def load_from_registry(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, card)`` for a registry spec, sha256-verified (a model loader for serve)."""
    return load_model(resolve(spec))
