"""One runner for both jobs: stages in order, resumable, every stage traced in ``lineage.json``.

A stage is skipped when ``lineage.json`` records it as finished, its recorded output files still
exist with the recorded sha256, its recorded values are all there, and the checksums of its
inputs are unchanged (data, training configuration, upstream outputs, the champion's weights).
``from_stage`` forces that stage and every later one.

``lineage.json`` (schema unchanged from the dict-based runner, so older runs resume)::

    {"stages": {NAME: {"consumed": {...}, "produced": {FILE: sha256}, "values": {...},
                       "seconds": float, "finished": ISO time}},
     "data_root": ..., "data_checksum": ..., "code_version": ..., "weights_sha256": ...,
     "registry_version": ...,
     "failed": {"stage": NAME, "error": "...", "at": ISO time}}   # only after a failed stage

A stage that raises stops the run: the runner writes ``failed`` (the stage, the error and when)
and re-raises; the next successful run of that stage removes it. An interrupt (Ctrl-C) is
recorded the same way; one that was swallowed (see :mod:`.interrupts`) is raised again before
the next stage starts, so an interrupted run never goes on to register or promote.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._fileio import atomic_write_text
from ...errors import NeonsignValueError, file_errors
from . import interrupts
from .context import RunContext

__all__ = ["LINEAGE_FILE", "Stage", "read_lineage", "run_stages", "write_json"]

LINEAGE_FILE = "lineage.json"
_TOP_LEVEL = ("data_root", "data_checksum", "code_version", "weights_sha256", "registry_version")


def _no_inputs(ctx: RunContext) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Stage:
    """A named step of a job.

    ``run(ctx)`` does the work: it reads the context, writes ``outputs`` (paths relative to the
    run directory) and sets context fields. ``values`` names the fields it sets that are JSON
    values worth recording (restored on a skip). ``inputs(ctx)`` names what the stage consumes
    as ``name -> checksum``; a stage without inputs or outputs is up to date once recorded.
    """

    name: str
    run: Callable[[RunContext], None]
    inputs: Callable[[RunContext], dict[str, Any]] = _no_inputs
    outputs: tuple[str, ...] = ()
    values: tuple[str, ...] = ()


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as indented JSON, atomically (a reader never sees half a file)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _sha(path: Path) -> str:
    from ...artifacts import sha256_file

    return sha256_file(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_lineage(run_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The run's lineage; an empty one when there is none yet or its content is not a lineage
    (then every stage runs and rewrites it). A file that cannot be read raises a
    :class:`~neonsign.errors.NeonsignOSError`."""
    path = run_dir / LINEAGE_FILE
    lineage: dict[str, Any] = {}
    if path.is_file():
        with file_errors("read the run's lineage", path):
            text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict) and isinstance(loaded.get("stages", {}), dict):
            lineage = loaded
        else:
            log(f"{path} is not a lineage record; running every stage")
    lineage.setdefault("stages", {})
    return lineage


def _up_to_date(stage: Stage, record: object, inputs: Mapping[str, Any], run_dir: Path) -> bool:
    if not isinstance(record, dict) or record.get("consumed") != inputs:
        return False
    produced, values = record.get("produced"), record.get("values")
    if not isinstance(produced, dict) or not isinstance(values, dict):
        return False
    if any(name not in values for name in stage.values):
        return False
    return all(
        (run_dir / o).is_file() and _sha(run_dir / o) == produced.get(o) for o in stage.outputs
    )


def _restore(stage: Stage, record: Mapping[str, Any], ctx: RunContext) -> None:
    values = record["values"]
    for name in stage.values:
        setattr(ctx, name, values[name])


def _run_one(stage: Stage, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage``; its lineage record. A failure is written to the lineage and re-raised."""
    t0 = time.perf_counter()
    try:
        stage.run(ctx)
    except BaseException as exc:
        ctx.failed = stage.name
        ctx.lineage["failed"] = {"stage": stage.name, "error": _describe(exc), "at": _now()}
        with contextlib.suppress(OSError):  # the stage's own error is the one to report
            write_json(ctx.run_dir / LINEAGE_FILE, ctx.lineage)
        raise
    seconds = time.perf_counter() - t0
    ctx.stage_seconds[stage.name] = seconds
    return {
        "consumed": inputs,
        "produced": {o: _sha(ctx.run_dir / o) for o in stage.outputs},
        "values": {name: getattr(ctx, name) for name in stage.values},
        "seconds": round(seconds, 3),
        "finished": _now(),
    }


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_stages(
    stages: Sequence[Stage], ctx: RunContext, *, from_stage: str | None = None
) -> dict[str, Any]:
    """Run ``stages`` in order in ``ctx.run_dir``, skipping those up to date (module doc).

    Records every stage in ``<run_dir>/lineage.json`` as it finishes and sets ``ctx.ran``,
    ``ctx.skipped``, ``ctx.stage_seconds`` and ``ctx.lineage``, which it returns. A
    ``from_stage`` that is not one of ``stages`` raises
    :class:`~neonsign.errors.NeonsignValueError`.
    """
    names = [s.name for s in stages]
    if from_stage is not None and from_stage not in names:
        raise NeonsignValueError(f"--from {from_stage!r}: not a stage (stages: {names})")
    path = ctx.run_dir / LINEAGE_FILE
    ctx.lineage = read_lineage(ctx.run_dir, ctx.log)
    ctx.ran, ctx.skipped, ctx.failed = [], [], None
    forced = False
    for stage in stages:
        interrupts.check()
        forced = forced or stage.name == from_stage
        inputs = stage.inputs(ctx)
        record = ctx.lineage["stages"].get(stage.name)
        if not forced and _up_to_date(stage, record, inputs, ctx.run_dir):
            _restore(stage, record, ctx)
            ctx.skipped.append(stage.name)
            ctx.log(f"== stage {stage.name}: up to date, skipped")
            continue
        ctx.log(f"== stage {stage.name}")
        ctx.lineage["stages"][stage.name] = _run_one(stage, ctx, inputs)
        ctx.ran.append(stage.name)
        failed = ctx.lineage.get("failed")
        if isinstance(failed, dict) and failed.get("stage") == stage.name:
            del ctx.lineage["failed"]
        ctx.lineage.update({k: _json_value(getattr(ctx, k)) for k in _TOP_LEVEL})
        write_json(path, ctx.lineage)
    interrupts.check()
    return ctx.lineage


def _json_value(value: object) -> object:
    return os.fspath(value) if isinstance(value, Path) else value
