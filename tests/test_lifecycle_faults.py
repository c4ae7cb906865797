"""Issue 17, registry and pipeline under faults (real MLflow, SQLite stores, synthetic data):

- concurrent registers, promotes and rollbacks from several processes lose no alias move;
- register is idempotent (same weights -> same version), and a register that fails half way
  (disk full, interrupt) leaves no RUNNING run and no version;
- an interrupt at every stage boundary and at every step inside register, followed by a resume,
  ends in the registry state of an uninterrupted run;
- relabelling the evaluation split makes a resumed run test and gate again;
- Ctrl-C stops ``neonsign pipeline`` with exit status 130, also when Python swallowed it;
- registry inputs: names with quotes, a dead tracking server, ``show champion --json``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the pipeline trains with PyTorch")
pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'neonsign[mlflow]')")

import mlflow  # noqa: E402

from neonsign.app.pipeline import interrupts, jobs, run_pipeline  # noqa: E402
from neonsign.app.pipeline.runner import Stage  # noqa: E402
from neonsign.app.registry import Registry, RegistryError  # noqa: E402
from neonsign.artifacts import make_card, save_model  # noqa: E402
from neonsign.errors import DiskFullError, NeonsignValueError  # noqa: E402
from neonsign.profiler import random_state_dict  # noqa: E402

OPTS: dict[str, Any] = dict(
    epochs=2,
    batch_size=32,
    threads=1,
    repeats=2,
    fail_if_slower=400.0,
    min_accuracy=0.0,
    quiet=True,
)
CLI = [sys.executable, "-m", "neonsign.cli"]


def uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def make_model(path: Path, seed: int) -> Path:
    card = make_card(metrics={"accuracy": 0.5}, data_checksum=f"d{seed}", seed=seed, epochs=1)
    return save_model(path, random_state_dict(seed), card)


def registry_state(reg: Registry) -> dict[str, Any]:
    """What an operator sees: versions (weights, aliases), alias histories, and the runs (no
    RUNNING one; one live run per version)."""
    from mlflow.entities import ViewType

    runs = reg.client.search_runs([reg.experiment_id()], run_view_type=ViewType.ALL)
    live = sorted(r.info.run_id for r in runs if r.info.lifecycle_stage == "active")
    versions = reg.list()
    return {
        "versions": [(v.version, v.tags["weights_sha256"], v.aliases) for v in versions],
        "history": {a: reg.history(a) for a in ("champion", "challenger")},
        "running": [r.info.run_id for r in runs if r.info.status == "RUNNING"],
        "live_runs_match_versions": live == sorted(str(v.run_id) for v in versions),
    }


# ----------------------------------------------------------------------------------------------
# Part 1: concurrent callers, idempotent register

WORKER = """
import sys, time
from pathlib import Path
from neonsign.app.registry import Registry
uri, sync, i, model, shared, rollback = sys.argv[1:7]
sync = Path(sync)

def barrier(name):
    (sync / f"{name}-{i}").touch()
    while not (sync / name).exists():
        time.sleep(0.01)

reg = Registry(uri)
barrier("go")
v = reg.register(model, alias="challenger").version
s = reg.register(shared).version
reg.promote(v, "champion")
print(v, s, flush=True)
barrier("rollback")
if rollback == "yes":
    print(reg.rollback("champion").version)
"""


def _wait(sync: Path, name: str, n: int, procs: list[subprocess.Popen[str]]) -> None:
    """Wait until all ``n`` workers reached barrier ``name``."""
    deadline = time.monotonic() + 600
    while len(list(sync.glob(f"{name}-*"))) < n:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        assert time.monotonic() < deadline, f"workers did not reach {name}"
        time.sleep(0.02)


def _release(sync: Path, name: str, n: int, procs: list[subprocess.Popen[str]]) -> None:
    """Wait until all ``n`` workers reached barrier ``name``, then release them together."""
    _wait(sync, name, n, procs)
    (sync / name).touch()


def test_concurrent_registers_promotes_and_rollbacks_lose_nothing(tmp_path: Path) -> None:
    store = uri(tmp_path / "reg")  # a fresh store: the workers also race to create it
    sync = tmp_path / "sync"
    sync.mkdir()
    models = [make_model(tmp_path / f"m{i}", i) for i in range(4)]
    shared = make_model(tmp_path / "shared", 99)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store, os.fspath(sync), str(i)]
            + [os.fspath(models[i]), os.fspath(shared), "yes" if i < 3 else "no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    _release(sync, "go", 4, procs)  # four concurrent registers + promotions
    _wait(sync, "rollback", 4, procs)
    reg = Registry(store)
    promoted = reg.history("champion")  # read between the two phases
    (sync / "rollback").touch()  # then three concurrent rollbacks
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outs.append(out.split())
    mine = [int(o[0]) for o in outs]
    shared_versions = {int(o[1]) for o in outs}
    rolled = [int(o[2]) for o in outs[:3]]

    # five distinct weights, five versions: the shared model registered once by four callers
    assert len(reg.list()) == 5 and len(shared_versions) == 1
    assert sorted(mine + list(shared_versions)) == [1, 2, 3, 4, 5]
    # every promotion recorded in some serial order; each alias ends on its history's last
    challengers = reg.history("challenger")
    assert sorted(challengers) == sorted(mine) and len(challengers) == 4
    assert reg.show("challenger").version == challengers[-1]
    assert sorted(promoted) == sorted(mine) and len(promoted) == 4
    # three rollbacks in some order: each stepped back once, together to the first promotion
    assert sorted(rolled) == sorted(promoted[:3])
    assert reg.history("champion") == promoted[:1] == [reg.show("champion").version]


def test_register_is_idempotent_and_keeps_history(tmp_path: Path) -> None:
    reg = Registry(uri(tmp_path / "reg"))
    model = make_model(tmp_path / "m", 1)
    first = reg.register(model, alias="champion")
    again = reg.register(model, alias="champion")  # a retry: same version, no new history
    assert again.version == first.version and len(reg.list()) == 1
    assert reg.history("champion") == [first.version]
    other = reg.register(make_model(tmp_path / "n", 2), alias="champion")
    assert reg.history("champion") == [first.version, other.version]
    assert reg.promote(other.version, "champion").version == other.version  # no-op
    assert reg.history("champion") == [first.version, other.version]


def _fail_copy_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's artifact copy writes part of the weights, then the disk is full."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def copy(self: Any, local_dir: str, artifact_path: str | None = None) -> None:
        dst = Path(self.artifact_dir) / (artifact_path or "")
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "model.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))

    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", copy)


def test_register_on_full_disk_leaves_no_running_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(uri(tmp_path / "reg"))
    model = make_model(tmp_path / "m", 1)
    with monkeypatch.context() as m:
        _fail_copy_half_way(m)
        with pytest.raises(DiskFullError, match="registry's artifact store"):
            reg.register(model, alias="challenger")
    state = registry_state(reg)
    assert state["versions"] == [] and state["running"] == [] and state["live_runs_match_versions"]
    assert not any((tmp_path / "reg" / "artifacts").rglob("model.safetensors"))
    assert reg.register(model).version == 1  # the next attempt works


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", os.fspath(path)])
    if r.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", os.fspath(path)], check=False)  # -l: MLflow may hold the db


def test_cli_register_on_a_real_full_disk(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", 1)  # ~1.3 MB of weights: more than the disk has left
    with _small_tmpfs(tmp_path / "full", "1700k") as disk:
        out = subprocess.run(
            [*CLI, "registry", "--registry-uri", uri(disk), "register", os.fspath(model)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, out.stderr[-2000:]
        assert "error:" in out.stderr and "Traceback" not in out.stderr
        assert "free" in out.stderr or "disk is full" in out.stderr or "No space" in out.stderr
        state = registry_state(Registry(uri(disk)))
        assert state["versions"] == [] and state["running"] == []


# ----------------------------------------------------------------------------------------------
# Part 6: registry inputs


def test_registry_inputs_are_checked(tmp_path: Path) -> None:
    for bad in ("x'y", 'a"b', "", "a/b", "a@b", "-x", "x" * 200):
        with pytest.raises(NeonsignValueError, match="registered model name"):
            Registry(uri(tmp_path / "reg"), name=bad)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="cannot reach the MLflow tracking server"):
        Registry(f"http://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 30  # not MLflow's minutes of retries

    reg = Registry(uri(tmp_path / "reg"))
    reg.register(make_model(tmp_path / "m", 1), alias="champion")
    out = subprocess.run(
        [*CLI, "registry", "show", "champion", "--json", "--registry-uri", reg.uri],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    shown = json.loads(out.stdout)
    assert shown["version"] == 1 and shown["history"] == {"champion": [1]}
    out = subprocess.run(
        [*CLI, "registry", "--name", "x'y", "list", "--registry-uri", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "registered model name" in out.stderr, out.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# Part 2: resume that can be trusted


@dataclasses.dataclass
class Reference:
    empty: Path  # a migrated, empty registry to copy
    trained: Path  # a run directory where only train has finished
    gated: Path  # a run directory where train, test, profile and gate have finished
    state: dict[str, Any]  # the registry after the uninterrupted run


def _trimmed_run(src: Path, dst: Path, keep: list[str], files: list[str]) -> Path:
    dst.mkdir()
    for name in files:
        (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, dst / name)
    lineage = json.loads((src / "lineage.json").read_text())
    lineage["stages"] = {k: v for k, v in lineage["stages"].items() if k in keep}
    (dst / "lineage.json").write_text(json.dumps(lineage))
    return dst


@pytest.fixture(scope="module")
def reference(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("faults")
    Registry(uri(base / "empty"))  # creates the tables once; each case copies the file
    shutil.copytree(base / "empty", base / "ref")
    run = base / "ref-run"
    ctx = run_pipeline(synth_root, run, registry_uri=uri(base / "ref"), **OPTS)
    assert ctx.ran == ["train", "test", "profile", "gate", "register"] and ctx.promoted
    state = registry_state(Registry(uri(base / "ref")))
    assert [v[0] for v in state["versions"]] == [1] and state["running"] == []
    trained = _trimmed_run(run, base / "trained", ["train"], ["model"])
    files = ["model", "test.json", "profile.json", "gate.json"]
    gated = _trimmed_run(run, base / "gated", ["train", "test", "profile", "gate"], files)
    return Reference(base / "empty", trained, gated, state)


def _interrupt_stage(name: str, when: str) -> list[Stage]:
    """The lifecycle with a Ctrl-C just before stage ``name`` or just after it did its work
    (before the runner recorded it)."""

    def run(stage: Stage) -> Callable[[Any], None]:
        def interrupted(ctx: Any) -> None:
            if when == "before":
                raise KeyboardInterrupt
            stage.run(ctx)
            raise KeyboardInterrupt

        return interrupted

    return [dataclasses.replace(s, run=run(s)) if s.name == name else s for s in jobs.LIFECYCLE]


def _interrupt_mlflow(monkeypatch: pytest.MonkeyPatch, method: str, nth: int) -> None:
    """A Ctrl-C right after the ``nth`` call of ``MlflowClient.method`` did its work."""
    real = getattr(mlflow.MlflowClient, method)
    calls = [0]

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == nth:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(mlflow.MlflowClient, method, wrapped)


def _resume_after(
    ref: Reference,
    tmp: Path,
    start: Path,
    data: Path,
    inject: Callable[[pytest.MonkeyPatch], None],
) -> None:
    """Run the lifecycle from ``start`` on a fresh registry with the fault ``inject`` installs
    (it must interrupt), then resume it without faults: the registry must end as the
    uninterrupted run's did, and a further resume must change nothing."""
    store = tmp / "reg"
    shutil.copytree(ref.empty, store)
    run = tmp / "run"
    shutil.copytree(start, run)
    with pytest.MonkeyPatch.context() as m:
        inject(m)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(data, run, registry_uri=uri(store), **OPTS)
    ctx = run_pipeline(data, run, registry_uri=uri(store), **OPTS)
    assert "train" not in ctx.ran and ctx.accepted and ctx.promoted
    assert registry_state(Registry(uri(store))) == ref.state
    again = run_pipeline(data, run, registry_uri=uri(store), **OPTS)
    assert again.ran == [] and again.registry_version == ctx.registry_version


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("stage", ["test", "profile", "gate", "register"])
def test_interrupt_at_a_stage_boundary_then_resume(
    reference: Reference, synth_root: Path, tmp_path: Path, stage: str, when: str
) -> None:
    def inject(m: pytest.MonkeyPatch) -> None:
        m.setattr(jobs, "LIFECYCLE", _interrupt_stage(stage, when))

    _resume_after(reference, tmp_path, reference.trained, synth_root, inject)


REGISTER_STEPS = [
    ("create_registered_model", 1),
    ("create_run", 1),
    ("log_param", 1),
    ("log_artifacts", 1),
    ("set_terminated", 1),
    ("create_model_version", 1),
    ("set_registered_model_tag", 1),  # challenger history
    ("set_registered_model_alias", 1),  # challenger alias
    ("set_registered_model_tag", 2),  # champion history
    ("set_registered_model_alias", 2),  # champion alias
]


@pytest.mark.parametrize(("method", "nth"), REGISTER_STEPS)
def test_interrupt_inside_register_then_resume(
    reference: Reference, synth_root: Path, tmp_path: Path, method: str, nth: int
) -> None:
    def inject(m: pytest.MonkeyPatch) -> None:
        _interrupt_mlflow(m, method, nth)

    _resume_after(reference, tmp_path, reference.gated, synth_root, inject)


def test_relabelled_evaluation_split_is_tested_and_gated_again(
    synth_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    run = tmp_path / "run"
    first = run_pipeline(data, run, use_registry=False, **OPTS)
    assert first.ran == ["train", "test", "profile", "gate"]
    assert run_pipeline(data, run, use_registry=False, **OPTS).ran == []

    labels = next(data.rglob("GT-final_test.csv"))
    rows = list(csv.reader(labels.open(newline=""), delimiter=";"))
    col = rows[0].index("ClassId")
    for row in rows[1:]:
        row[col] = str((int(row[col]) + 1) % 43)  # every test image relabelled
    with labels.open("w", newline="") as f:
        csv.writer(f, delimiter=";", lineterminator="\n").writerows(rows)
    before = (run / "test.json").read_text()
    again = run_pipeline(data, run, use_registry=False, **OPTS)
    assert again.skipped == ["train", "profile"] and again.ran == ["test", "gate"]
    consumed = [c.lineage["stages"]["test"]["consumed"] for c in (first, again)]
    assert consumed[0]["eval_data_checksum"] != consumed[1]["eval_data_checksum"]
    assert (run / "test.json").read_text() != before  # the new labels were evaluated


# ----------------------------------------------------------------------------------------------
# Ctrl-C


class _SwallowsInterrupt:
    """An object whose finalizer receives the SIGINT: Python prints "Exception ignored in ...
    KeyboardInterrupt" and goes on, as it did inside SQLAlchemy's weakref callbacks."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_swallowed_interrupt_still_stops_the_pipeline(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neonsign.cli import main

    calls: list[str] = []

    def swallowed(stage: Stage) -> Stage:
        def run(ctx: Any) -> None:
            calls.append(stage.name)
            _SwallowsInterrupt()  # collected at once: its __del__ runs the handler
            stage.run(ctx)

        return dataclasses.replace(stage, run=run)

    lifecycle = [swallowed(s) if s.name == "train" else s for s in jobs.LIFECYCLE]
    monkeypatch.setattr(jobs, "LIFECYCLE", lifecycle)
    store = tmp_path / "reg"
    argv = ["pipeline", "--data", os.fspath(synth_root), "--run-dir", os.fspath(tmp_path / "run")]
    argv += ["--registry-uri", uri(store), "--epochs", "1", "--threads", "1", "--quiet"]
    assert main(argv) == 130
    assert calls == ["train"]  # train finished (the interrupt was swallowed), nothing after it
    assert Registry(uri(store)).list() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # trap restored it
    assert not interrupts.pending()  # and a later run in this process is not interrupted


def test_ctrl_c_stops_the_pipeline_in_its_first_seconds(synth_root: Path, tmp_path: Path) -> None:
    store = tmp_path / "reg"
    cmd = [*CLI, "pipeline", "--data", os.fspath(synth_root), "--run-dir"]
    cmd += [os.fspath(tmp_path / "run"), "--registry-uri", uri(store), "--epochs", "2"]
    cmd += ["--threads", "1", "--repeats", "2", "--min-accuracy", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # importing MLflow and opening the store
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    # 130, or death by SIGINT when the interrupt hit the interpreter's own start-up code
    # (a shell reports both as 130)
    assert proc.returncode in (130, -signal.SIGINT), err[-2000:]
    assert '"registry_version"' not in out
    if (store / "mlflow.db").exists():
        assert Registry(uri(store)).list() == []


def test_interrupted_store_creation_leaves_no_half_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during MLflow's first schema migration used to leave a half-migrated mlflow.db
    that no later command could open ("table registered_models already exists"): the store is
    now created under a temporary name and renamed into place."""
    import sqlite3

    from mlflow.store.tracking import sqlalchemy_store

    store = tmp_path / "reg"
    db = store / "mlflow.db"

    class Interrupted(sqlalchemy_store.SqlAlchemyStore):  # type: ignore[misc]
        def __init__(self, db_uri: str, default_artifact_root: str) -> None:
            path = db_uri[len("sqlite:///") :]
            with sqlite3.connect(path) as con:  # the migration's first table, then Ctrl-C
                con.execute("CREATE TABLE registered_models (name VARCHAR(256))")
            raise KeyboardInterrupt

    monkeypatch.setattr(sqlalchemy_store, "SqlAlchemyStore", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        Registry(uri(store))
    assert not db.exists() and (store / "mlflow.db.init").exists()
    monkeypatch.undo()
    assert Registry(uri(store)).list() == []  # a whole new store; the leftover is replaced
    assert db.exists() and not (store / "mlflow.db.init").exists()
