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
:func:`default_uri` is the one place that reads those two settings.

Model specs understood by :func:`resolve` and by ``neonsign serve --model``:
``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``registry:ALIAS`` and ``registry:VERSION``
(default model name).

Integrity under concurrent callers and faults:

- every read-modify-write (register's find-or-create, promote, rollback) holds an exclusive
  lock, a ``flock`` on ``<store>.lock`` beside a SQLite database or file store (on a remote
  tracking server: a lock file per URI in the temporary directory, which serialises the callers
  on this host only; the tracking server has no transaction to use);
- register is idempotent: weights already registered (same ``weights_sha256`` tag) give back
  their existing version instead of a duplicate, so a retried or resumed register is harmless;
- a register that fails half way (disk full, interrupt) deletes its run's partial artifacts and
  ends the run FAILED (and deleted) instead of leaving it RUNNING with no version;
- the model name is validated before it reaches MLflow's search filter; a remote ``http(s)://``
  URI is probed with a short connection timeout (a dead port fails at once) and MLflow's HTTP
  timeout and retries are bounded (:data:`HTTP_TIMEOUT`, :data:`HTTP_MAX_RETRIES`, unless
  ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` are set).

MLflow errors reach the caller as :class:`RegistryError` (a NeonsignError) naming the URI.

mlflow is imported lazily (``pip install 'neonsign[mlflow]'``); importing this module does not
need it, and ``import neonsign`` does not import this module. mlflow ships no type information:
every call into it goes through :class:`_MlflowStore`, which returns plain typed values.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._fileio import publish_tree
from ..artifacts import CARD_FILE, is_model_file, load_any, load_model, save_model
from ..errors import (
    ConfigError,
    DiskFullError,
    ModelError,
    NeonsignError,
    NeonsignValueError,
    file_errors,
    os_error,
    require,
)

__all__ = [
    "DEFAULT_NAME",
    "MLFLOW_URI_ENV",
    "REGISTRY_DIR_ENV",
    "HTTP_MAX_RETRIES",
    "HTTP_TIMEOUT",
    "LOCK_TIMEOUT",
    "MlflowTracker",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "default_uri",
    "load_from_registry",
    "parse_spec",
    "resolve",
]

DEFAULT_NAME = "neonsign"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_DIR_ENV = "NEONSIGN_REGISTRY"
_HISTORY_TAG = "neonsign.history."
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SPEC_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
HTTP_TIMEOUT = 30  # seconds per HTTP request to a remote tracking server (MLflow's default: 120)
HTTP_MAX_RETRIES = 2  # retries of a failed request (MLflow's default: 7, with backoff)
CONNECT_TIMEOUT = 5.0  # seconds for the reachability probe of a remote tracking server
LOCK_TIMEOUT = 300.0  # seconds to wait for another process's registry operation to finish


class RegistryError(NeonsignError):
    """The registry could not do what was asked: MLflow refused or failed (the message names
    the URI and the operation), the tracking server is unreachable, or the registry stayed
    locked by another process for :data:`LOCK_TIMEOUT` seconds."""


def default_uri() -> str:
    """The registry URI when none is given: ``$MLFLOW_TRACKING_URI`` if set, else SQLite in
    ``$NEONSIGN_REGISTRY`` (default ``./registry``; empty counts as unset).

    Raises :class:`~neonsign.errors.ConfigError` when ``$NEONSIGN_REGISTRY`` names something
    that is not a directory (the database and artifacts go inside it).
    """
    env = os.environ.get(MLFLOW_URI_ENV, "").strip()
    if env:
        return env
    value = os.environ.get(REGISTRY_DIR_ENV, "")
    root = Path(value or "registry").resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{REGISTRY_DIR_ENV}={value!r}: {root} exists and is not a directory")
    return f"sqlite:///{root / 'mlflow.db'}"


def _check_name(name: str) -> str:
    """A registered model name that is safe in MLflow's search filters and in model specs."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise NeonsignValueError(
            f"registered model name {name!r}: expected letters, digits, '_', '-' or '.' "
            f"(starting with a letter or digit, at most 128 characters)"
        )
    return name


def _local_root(uri: str) -> Path | None:
    """The directory of a local store (SQLite database or ``file:`` store), else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(urllib.request.url2pathname(parsed.path))
    return None


def _lock_path(uri: str) -> Path:
    """The lock file of a store: beside a SQLite database (``mlflow.db.lock``), inside a file
    store, or for a remote store one per URI in the temporary directory."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return db.with_name(db.name + ".lock")
    root = _local_root(uri)
    if root is not None:
        return root / ".neonsign-registry.lock"
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"neonsign-registry-{digest}.lock"


class _StoreLock:
    """An exclusive lock on a store across processes (``flock`` on a lock file) and threads,
    re-entrant within a thread (register takes it and calls promote, which takes it again).

    Waits at most ``timeout`` seconds for another holder, then raises :class:`RegistryError`:
    a stuck process cannot hang every later registry command. The kernel drops a ``flock``
    when its process dies, so a killed holder never leaves a stale lock.
    """

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def _acquire_file(self, optional: bool) -> int | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if optional and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None  # a read-only store: nothing to serialise
            raise os_error(exc, "open the registry lock file", self.path) from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RegistryError(
                        f"the registry stayed locked by another process for {self.timeout:.0f} s "
                        f"(lock file {self.path}); is a neonsign registry command hung?"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                os.close(fd)
                raise os_error(exc, "lock the registry", self.path) from exc

    @contextlib.contextmanager
    def __call__(self, optional: bool = False) -> Iterator[None]:
        """Hold the lock for the block. ``optional``: a lock file that cannot be created (a
        read-only registry, e.g. mounted into the serving container) means no lock, not an
        error; for the reads of opening a store that cannot be written anyway."""
        with self._thread_lock:
            if self._depth == 0:
                self._fd = self._acquire_file(optional)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the descriptor releases the flock
                    self._fd = None


def _bound_http(uri: str) -> None:
    """For an ``http(s)://`` tracking URI: bound MLflow's HTTP timeout and retries (unless the
    user set them) and check that something listens, so a dead address fails in seconds with
    a clear error instead of after minutes of retries."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_MAX_RETRIES))
    try:
        host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(f"registry URI {uri!r}: {exc}") from None
    if not host:
        raise ConfigError(f"registry URI {uri!r}: no host")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RegistryError(
            f"cannot reach the MLflow tracking server {uri} ({host}:{port}): {reason}"
        ) from None


@dataclass(frozen=True)
class _StoredVersion:
    """What the registry reads of an MLflow model version."""

    version: int
    source: str
    run_id: str | None
    tags: dict[str, str]
    created: int | None


class _MissingError(LookupError):
    """MLflow has no such registered model / version / alias (``code``: MLflow's error code)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _MlflowStore:
    """The MLflow client calls the registry makes, typed; MLflow's "does not exist" errors
    become :class:`_MissingError`."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        self.uri = uri
        self.client: Any = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self._error: type[Exception] = MlflowException

    def _missing(self, exc: Exception) -> _MissingError:
        return _MissingError(str(getattr(exc, "error_code", "RESOURCE_DOES_NOT_EXIST")))

    def experiment_id(self, name: str, artifact_location: str | None) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=artifact_location))

    def registered_model(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """(aliases: alias -> version, tags) of a registered model."""
        try:
            rm = self.client.get_registered_model(name)
        except self._error as exc:
            raise self._missing(exc) from None
        aliases = {str(a): str(v) for a, v in (rm.aliases or {}).items()}
        return aliases, {str(k): str(v) for k, v in (rm.tags or {}).items()}

    def create_registered_model(self, name: str, description: str) -> None:
        self.client.create_registered_model(name, description=description)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in self.client.get_run(run_id).data.metrics.items()}

    def create_run(
        self, experiment_id: str, run_name: str, tags: dict[str, str]
    ) -> tuple[str, str]:
        """(run id, artifact URI) of a new run."""
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        return str(run.info.run_id), str(run.info.artifact_uri)

    def log_run(
        self, run_id: str, params: dict[str, object], metrics: dict[str, float], artifacts: Path
    ) -> None:
        """Log params, metrics and a directory of artifacts (``model/``), then end the run
        FINISHED. On failure the caller abandons the run (:meth:`abandon_run`)."""
        for k, v in params.items():
            self.client.log_param(run_id, k, v)
        for k, m in metrics.items():
            self.client.log_metric(run_id, k, m)
        with file_errors("copy the model directory into the registry's artifact store"):
            self.client.log_artifacts(run_id, os.fspath(artifacts), "model")
        self.client.set_terminated(run_id)

    def running_registers(self, experiment_id: str) -> list[tuple[str, str]]:
        """(run id, artifact URI) of every register run still RUNNING."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'RUNNING' and tags.`neonsign.kind` = 'register'",
        )
        return [(str(r.info.run_id), str(r.info.artifact_uri)) for r in runs]

    def abandon_run(self, run_id: str, artifact_uri: str) -> None:
        """Undo a run whose register failed half way: delete its local artifacts first (on a
        full disk that frees the space the database needs), then end it FAILED and delete it.
        Best effort: each step's own failure is swallowed so the original error is the one
        reported."""
        local = _local_artifacts(artifact_uri)
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.client.set_terminated(run_id, status="FAILED")
        with contextlib.suppress(Exception):
            self.client.delete_run(run_id)

    def create_version(self, name: str, source: str, run_id: str, tags: dict[str, str]) -> int:
        return int(self.client.create_model_version(name, source, run_id=run_id, tags=tags).version)

    def _stored(self, mv: Any) -> _StoredVersion:
        created = mv.creation_timestamp
        return _StoredVersion(
            int(mv.version),
            str(mv.source),
            None if mv.run_id is None else str(mv.run_id),
            {str(k): str(v) for k, v in (mv.tags or {}).items()},
            None if created is None else int(created),
        )

    def versions(self, name: str) -> list[_StoredVersion]:
        """Every version of ``name`` (a name :func:`_check_name` accepted: no quote can reach
        the filter)."""
        return [self._stored(m) for m in self.client.search_model_versions(f"name='{name}'")]

    def version(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> _StoredVersion:
        """A version by number, or by ``alias``."""
        try:
            if alias is not None:
                return self._stored(self.client.get_model_version_by_alias(name, alias))
            return self._stored(self.client.get_model_version(name, str(version)))
        except self._error as exc:
            raise self._missing(exc) from None

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """MLflow's errors in the block as :class:`RegistryError` ("registry URI: cannot
        ACTION: ..."), OSErrors as NeonsignOSErrors; :class:`_MissingError` passes through."""
        try:
            yield
        except self._error as exc:
            lines = [ln.strip() for ln in str(getattr(exc, "message", exc)).splitlines()]
            lines = [ln for ln in lines if ln] or [type(exc).__name__]
            why = next((ln for ln in lines if ln.startswith("(sqlite3.")), lines[0])
            if "disk is full" in why:
                raise DiskFullError(
                    f"registry {self.uri}: cannot {action}: {why}", errno.ENOSPC
                ) from exc
            raise RegistryError(f"registry {self.uri}: cannot {action}: {why}") from exc
        except NeonsignError:
            raise
        except OSError as exc:
            raise os_error(exc, action) from exc

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.client.set_registered_model_tag(name, key, value)

    def download(self, source: str, dst: str | None) -> Path:
        import mlflow

        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=dst, tracking_uri=self.uri
        )
        return Path(str(local))


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


def _create_sqlite_store(db: Path, artifact_root: str) -> None:
    """Create and migrate a new MLflow SQLite store under a temporary name beside ``db``, then
    rename it into place. An interrupt during MLflow's schema migration (seconds on a first
    run) then leaves no half-migrated database, which MLflow cannot open again ("table
    registered_models already exists"): ``db`` is either absent or complete."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = db.with_name(db.name + ".init")
    with file_errors("create the registry database", db):
        tmp.unlink(missing_ok=True)  # left by an interrupted creation
        try:
            store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root)  # type: ignore[no-untyped-call]  # MLflow is untyped
        except MlflowException as exc:
            raise RegistryError(f"sqlite:///{db}: cannot create the registry: {exc}") from exc
        store.engine.dispose()
        os.replace(tmp, db)


class Registry:
    """The MLflow Model Registry for neonsign models.

    Args:
        uri: MLflow tracking/registry URI (default :func:`default_uri`). For ``sqlite:///PATH``
            the database directory is created and artifacts go to ``PATH``'s directory
            ``/artifacts``.
        name: registered model name.

    Raises :class:`~neonsign.errors.MissingDependencyError` when mlflow is not installed,
    :class:`~neonsign.errors.NeonsignValueError` for a name MLflow filters cannot take safely,
    :class:`RegistryError` when a remote tracking server does not answer.

    Every operation that reads and then writes (register, promote, rollback) holds the store's
    lock (module doc), so concurrent callers see each other's writes and no alias move is lost.
    """

    def __init__(self, uri: str | None = None, name: str = DEFAULT_NAME) -> None:
        require("mlflow", "mlflow", "the model registry")
        self.uri = uri or default_uri()
        self.name = _check_name(name)
        self._artifact_root: str | None = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///") :])
            with file_errors("create the registry directory", db.parent):
                db.parent.mkdir(parents=True, exist_ok=True)
            self._artifact_root = (db.parent / "artifacts").resolve().as_uri()
        _bound_http(self.uri)
        self._lock = _StoreLock(_lock_path(self.uri))
        # a new SQLite database is created (migrated) by one process only, whole or not at all
        with self._lock(optional=True):
            if self._artifact_root is not None and not db.exists():
                _create_sqlite_store(db, self._artifact_root)
            self._store = _MlflowStore(self.uri)

    @property
    def client(self) -> Any:
        """The underlying ``mlflow.MlflowClient``, for calls the registry does not wrap."""
        return self._store.client

    # -- helpers -------------------------------------------------------------------------------
    def experiment_id(self) -> str:
        """The MLflow experiment of this model name (created with artifacts beside a SQLite db)."""
        with self._lock(), self._store.errors("find or create the experiment"):
            return self._store.experiment_id(self.name, self._artifact_root)

    def _ensure_model(self) -> None:
        try:
            self._store.registered_model(self.name)
        except _MissingError:
            self._store.create_registered_model(
                self.name, "TrafficSignNet (GTSRB) model directories from neonsign"
            )

    def _aliases(self) -> dict[int, list[str]]:
        """version -> aliases, from the registered model (search results may omit aliases)."""
        try:
            aliases, _ = self._store.registered_model(self.name)
        except _MissingError:
            return {}
        out: dict[int, list[str]] = {}
        for alias, version in aliases.items():
            out.setdefault(int(version), []).append(alias)
        return out

    def _version(
        self, mv: _StoredVersion, aliases: dict[int, list[str]] | None = None
    ) -> ModelVersion:
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = self._store.run_metrics(mv.run_id)
            except Exception:  # noqa: BLE001 - a version whose run was deleted still lists
                metrics = {}
        names = (aliases if aliases is not None else self._aliases()).get(mv.version, [])
        return ModelVersion(
            self.name, mv.version, sorted(names), mv.source, mv.run_id, mv.tags, metrics, mv.created
        )

    def _history(self, alias: str) -> list[int]:
        try:
            _, tags = self._store.registered_model(self.name)
        except _MissingError:
            return []
        try:
            hist = json.loads(tags.get(_HISTORY_TAG + alias, "[]"))
        except ValueError:
            return []
        return [int(v) for v in hist if isinstance(v, int)] if isinstance(hist, list) else []

    def _move(self, alias: str, hist: list[int]) -> None:
        """Record ``hist`` and point ``alias`` at its last entry: the history first, so an
        interrupt between the two writes leaves a history whose retry (promote is idempotent)
        or rollback (which pops the recorded move) still agrees with the alias."""
        self._store.set_model_tag(self.name, _HISTORY_TAG + alias, json.dumps(hist[-100:]))
        self._store.set_alias(self.name, alias, hist[-1])

    def find(self, weights_sha256: str) -> ModelVersion | None:
        """The (oldest) version registered with these weights, or None."""
        with self._store.errors("search the versions"):
            same = [
                v
                for v in self._store.versions(self.name)
                if v.tags.get("weights_sha256") == weights_sha256
            ]
            return self._version(min(same, key=lambda v: v.version)) if same else None

    # -- public API ----------------------------------------------------------------------------
    def register(
        self,
        model_dir: str | os.PathLike[str],
        *,
        alias: str | None = None,
        tags: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> ModelVersion:
        """Register a model directory as a new version (its sha256 is verified first), or give
        back the version that already holds these weights (same ``weights_sha256``): a retried
        or resumed register never makes a duplicate. ``alias`` is set either way.

        A learning-path ``.pth`` (or a bare ``.safetensors``) is first converted into a model
        directory in a temporary folder (:func:`neonsign.artifacts.load_any`: the learning
        path's preprocessing) and that directory is registered; ``source_dir`` names the file.

        The card's metrics become run metrics; ``data_checksum``, ``code_version``,
        ``weights_sha256``, epochs and seed become params and version tags. ``alias`` (e.g.
        ``challenger``) is set on the new version; ``metrics`` (e.g. ``test_accuracy``) are
        logged with the card's. A register that fails half way (a full disk, an interrupt)
        leaves no version and no RUNNING run (:meth:`_MlflowStore.abandon_run`).
        """
        path = Path(model_dir)
        if is_model_file(path):
            with tempfile.TemporaryDirectory(prefix="neonsign-register-") as tmp:
                converted = save_model(Path(tmp) / path.stem, *load_any(path))
                return self._register_dir(converted, path, alias, tags, metrics)
        return self._register_dir(path, path, alias, tags, metrics)

    def _register_dir(
        self,
        path: Path,
        source: Path,
        alias: str | None,
        tags: dict[str, str] | None,
        metrics: dict[str, float] | None,
    ) -> ModelVersion:
        """:meth:`register` of the model directory ``path``, which came from ``source``."""
        _, card = load_model(path)  # raises ModelError on a bad / tampered directory
        info = {
            "weights_sha256": str(card.get("weights_sha256")),
            "data_checksum": str(card.get("data_checksum")),
            "code_version": str(card.get("code_version")),
            "created": str(card.get("created")),
            "source_dir": os.fspath(source.resolve()),
        }
        info.update(tags or {})
        params: dict[str, object] = {
            k: info[k] for k in ("weights_sha256", "data_checksum", "code_version")
        }
        params.update({k: card[k] for k in ("epochs", "seed") if card.get(k) is not None})
        with self._lock():
            existing = self.find(info["weights_sha256"])
            if existing is not None:
                return self.promote(existing.version, alias) if alias else existing
            _check_room(_local_root(self.uri), path)
            with self._store.errors(f"register {source}"):
                self._ensure_model()
                version = self._new_version(path, source, info, params, card, metrics)
            if alias:
                self.promote(version, alias)
        return self.show(version)

    def _new_version(
        self,
        path: Path,
        source: Path,
        info: dict[str, str],
        params: dict[str, object],
        card: dict[str, Any],
        metrics: dict[str, float] | None,
    ) -> int:
        """One run holding ``path`` as artifacts and a version pointing at it; on any failure
        (BaseException: an interrupt too) the run is abandoned before the error goes on.

        Register runs still RUNNING are abandoned first: every register holds the store's lock,
        so one seen while holding it belongs to a register that died or was interrupted (even
        between MLflow creating the run and the call returning, where no handler can catch it).
        """
        experiment = self.experiment_id()
        for stale in self._store.running_registers(experiment):
            self._store.abandon_run(*stale)
        run_id, artifact_uri = self._store.create_run(
            experiment, f"register-{source.name}", {"neonsign.kind": "register"}
        )
        try:
            self._store.log_run(run_id, params, {**_flat_metrics(card), **(metrics or {})}, path)
            _publish_local(f"{artifact_uri}/model")
        except BaseException:
            self._store.abandon_run(run_id, artifact_uri)
            raise
        try:
            return self._store.create_version(self.name, f"{artifact_uri}/model", run_id, info)
        except BaseException:
            # The version may be committed although the call did not return (an interrupt just
            # after it): its artifacts must stay. Abandon the run only when surely unversioned.
            with contextlib.suppress(Exception):
                if not any(v.run_id == run_id for v in self._store.versions(self.name)):
                    self._store.abandon_run(run_id, artifact_uri)
            raise

    def list(self) -> list[ModelVersion]:
        """Every version, newest first."""
        with self._store.errors("list the versions"):
            aliases = self._aliases()
            found = [self._version(m, aliases) for m in self._store.versions(self.name)]
        return sorted(found, key=lambda v: -v.version)

    def show(self, ref: int | str) -> ModelVersion:
        """A version by number or alias; raises :class:`ModelError` when there is none."""
        try:
            with self._store.errors(f"show version {ref!r}"):
                if isinstance(ref, int) or str(ref).isdigit():
                    mv = self._store.version(self.name, int(ref))
                else:
                    mv = self._store.version(self.name, alias=_check_alias(str(ref)))
                return self._version(mv)
        except _MissingError as exc:
            raise ModelError(
                f"registry {self.uri}: model {self.name!r} has no version {ref!r} ({exc.code})"
            ) from None

    def promote(self, version: int | str, alias: str = "champion") -> ModelVersion:
        """Point ``alias`` at ``version`` (a number or another alias) and record the move
        (idempotent: promoting the version the alias already points at records nothing)."""
        alias = _check_alias(alias)
        with self._lock():
            target = self.show(version)
            with self._store.errors(f"point {alias!r} at version {target.version}"):
                hist = self._history(alias)
                current = self._aliases().get(target.version, [])
                if hist and hist[-1] == target.version and alias in current:
                    return target
                if not hist or hist[-1] != target.version:
                    hist.append(target.version)
                self._move(alias, hist)
        return self.show(target.version)

    def rollback(self, alias: str = "champion") -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before the last promotion."""
        alias = _check_alias(alias)
        with self._lock(), self._store.errors(f"roll back {alias!r}"):
            hist = self._history(alias)
            if len(hist) < 2:
                raise ModelError(
                    f"registry {self.uri}: alias {alias!r} of {self.name!r} has no "
                    f"earlier version to roll back to (history {hist})"
                )
            hist.pop()
            self._move(alias, hist)
        return self.show(hist[-1])

    def history(self, alias: str = "champion") -> builtins.list[int]:
        """Versions ``alias`` has pointed at, oldest first (the last is the current one)."""
        alias = _check_alias(alias)
        with self._store.errors(f"read the history of {alias!r}"):
            return self._history(alias)

    def download(self, ref: int | str, dst: str | os.PathLike[str] | None = None) -> Path:
        """A local model directory for version/alias ``ref`` (local artifact stores are used in
        place; remote ones are downloaded into ``dst`` or a temporary directory)."""
        mv = self.show(ref)
        with self._store.errors(f"download version {mv.version}"):
            path = self._store.download(mv.source, None if dst is None else os.fspath(dst))
        if dst is not None:  # a copy of our own: readable as the umask allows, like any output
            publish_tree(path)
        if not (path / CARD_FILE).is_file():
            raise ModelError(
                f"registry {self.uri}: version {mv.version} artifacts {mv.source} hold no {CARD_FILE}"
            )
        return path


def _local_artifacts(artifact_uri: str) -> Path | None:
    """The local path of a ``file:`` (or plain path) artifact URI; None for a remote store."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(urllib.request.url2pathname(parsed.path))


def _publish_local(artifact_uri: str) -> None:
    """Give the copy MLflow made in a local artifact store (``file:`` URI or a plain path) the
    umask's modes: MLflow copies keep the source's mode bits, so a model directory written
    ``0600`` by an older neonsign would stay unreadable to the serving container's user.
    Remote stores are left to their own permissions."""
    local = _local_artifacts(artifact_uri)
    if local is not None and local.exists():
        publish_tree(local)


def _check_room(root: Path | None, model_dir: Path) -> None:
    """Fail before any run is created when a local store's disk has no room for the model
    directory (plus 1 MiB for the database): a full disk is reported up front, not half way."""
    if root is None:
        return
    need = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) + (1 << 20)
    probe = root if root.exists() else root.parent
    with file_errors("check the free space of", probe):
        free = shutil.disk_usage(probe).free
    if free < need:
        raise DiskFullError(
            f"cannot register {model_dir} in {root}: {free} bytes free, about {need} needed",
            errno.ENOSPC,
            os.fspath(root),
        )


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


class MlflowTracker:
    """A training run tracked in MLflow: the :class:`neonsign.train.TrainingTracker` of
    ``neonsign train`` and the pipelines. Parameters, per-epoch metrics and the model directory
    (as artifacts) go to the registry's store (:func:`default_uri`)."""

    def __init__(self, mlflow: Any) -> None:
        self._mlflow = mlflow

    @classmethod
    def start(cls, uri: str | None = None) -> MlflowTracker | None:
        """Start an MLflow run in experiment ``neonsign``; None when mlflow is not installed
        (tracking is optional: training goes on untracked)."""
        try:
            import mlflow
        except ImportError:
            return None
        registry = Registry(uri)
        mlflow.set_tracking_uri(registry.uri)
        registry.experiment_id()  # created with its artifacts beside the database, not ./mlruns
        mlflow.set_experiment(registry.name)
        mlflow.start_run()
        return cls(mlflow)

    def params(self, params: dict[str, Any]) -> None:
        self._mlflow.log_params({k: str(v) for k, v in params.items()})

    def epoch(self, record: Mapping[str, object]) -> None:
        metrics = {
            k: float(v)
            for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        framings = record.get("val_framings")
        if isinstance(framings, Mapping):  # per-framing validation: val_accuracy_roi, ..._whole
            metrics.update({f"val_accuracy_{k}": float(v) for k, v in framings.items()})
        self._mlflow.log_metrics(metrics, step=int(str(record["epoch"])))

    def finish(self, model_dir: Path | None, ok: bool) -> None:
        if model_dir is not None:
            self._mlflow.log_artifacts(str(model_dir), artifact_path="model")
        self._mlflow.end_run(status="FINISHED" if ok else "FAILED")
