"""The lifecycle pipeline: train -> test -> profile -> gate -> register/promote (``neonsign pipeline``).

One run directory holds everything::

    model/            the trained model directory (model.safetensors + model_card.json)
    test.json         ``neonsign test --json`` result on the evaluation split (native engine)
    profile.json      native profile report of the model
    gate.json         the validation gate's verdict (against the registry's champion, if any)
    registered.json   the registry version, and whether it became ``champion``
    lineage.json      per stage: what it consumed (checksums) and produced (files + sha256),
                      with the data checksum, code version and model sha256

Resumable: a stage is skipped when ``lineage.json`` records it, its recorded output files still
exist with the recorded sha256, and the checksums of its inputs are unchanged (data, training
configuration, upstream outputs, the champion's weights). ``--from STAGE`` forces that stage and
every later one. The same stages are what the mlops workflow runs as jobs
(``neonsign pipeline --run-dir DIR --from STAGE`` per job, sharing DIR as an artifact).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NeonsignValueError

__all__ = ["Stage", "STAGES", "run_stages", "run"]

LINEAGE_FILE = "lineage.json"


@dataclass(frozen=True)
class Stage:
    """A resumable stage over a shared context dict.

    ``run(ctx)`` does the work, writes ``outputs`` (paths relative to the run directory) and
    returns JSON-ready values (or None) that are merged into ``ctx`` and recorded (restored on a
    skip). A stage without inputs or outputs runs whenever it is not recorded yet.
    ``inputs(ctx)`` names what the stage consumes, as ``name -> checksum``.
    """

    name: str
    run: Callable[[dict[str, Any]], dict[str, Any]]
    inputs: Callable[[dict[str, Any]], dict[str, Any]]
    outputs: tuple[str, ...]


def _sha(path: Path) -> str:
    from .artifacts import sha256_file

    return sha256_file(path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_stages(
    stages: Sequence[Stage],
    ctx: dict[str, Any],
    *,
    from_stage: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``stages`` in order in ``ctx["run_dir"]``, skipping finished ones (see module doc).

    Records every stage in ``<run_dir>/lineage.json`` as it finishes; sets ``ctx["ran"]``,
    ``ctx["skipped"]`` (stage names) and ``ctx["stage_seconds"]``. Returns the lineage dict.
    ``neonsign main`` (:mod:`neonsign.mainjob`) runs its stages through this too.
    """
    names = [s.name for s in stages]
    if from_stage is not None and from_stage not in names:
        raise NeonsignValueError(f"--from {from_stage!r}: not a stage (stages: {names})")
    run_dir = Path(ctx["run_dir"])
    path = run_dir / LINEAGE_FILE
    lineage: dict[str, Any] = {}
    if path.is_file():
        try:
            lineage = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            log(f"{path} is unreadable; running every stage")
    lineage.setdefault("stages", {})
    ctx["ran"], ctx["skipped"] = [], []
    forced = False
    for st in stages:
        forced = forced or st.name == from_stage
        inputs = st.inputs(ctx)
        rec = lineage["stages"].get(st.name)
        if (
            not forced
            and rec
            and rec.get("consumed") == inputs
            and all(
                (run_dir / o).is_file() and _sha(run_dir / o) == rec["produced"].get(o)
                for o in st.outputs
            )
        ):
            ctx.update(rec.get("values", {}))
            ctx["skipped"].append(st.name)
            log(f"== stage {st.name}: up to date, skipped")
            continue
        log(f"== stage {st.name}")
        t0 = time.perf_counter()
        values = st.run(ctx) or {}
        ctx.update(values)
        ctx.setdefault("stage_seconds", {})[st.name] = time.perf_counter() - t0
        lineage["stages"][st.name] = {
            "consumed": inputs,
            "produced": {o: _sha(run_dir / o) for o in st.outputs},
            "values": values,
            "seconds": round(time.perf_counter() - t0, 3),
            "finished": _now(),
        }
        ctx["ran"].append(st.name)
        lineage.update(
            {
                k: ctx.get(k)
                for k in (
                    "data_root",
                    "data_checksum",
                    "code_version",
                    "weights_sha256",
                    "registry_version",
                )
            }
        )
        _write_json(path, lineage)
    return lineage


# ----------------------------------------------------------------------------------------------
# The lifecycle stages


def _config_hash(config: Any) -> str:
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_sha(ctx: dict[str, Any], name: str) -> str | None:
    p = Path(ctx["run_dir"]) / name
    return _sha(p) if p.is_file() else None


def _train(ctx: dict[str, Any]) -> dict[str, Any]:
    from .train import train_loaded

    images, labels, meta = ctx["train_split"]
    out = Path(ctx["run_dir"]) / "model"
    r = train_loaded(
        images,
        labels,
        meta,
        out,
        config=ctx["config"],
        quiet=ctx["quiet"],
        overwrite=True,
        track=False,
        data_name=os.fspath(ctx["data_root"]),
    )
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    return {"weights_sha256": card["weights_sha256"], "val_accuracy": r.val_accuracy}


def _test(ctx: dict[str, Any]) -> dict[str, Any]:
    from .evaluate import evaluate

    rd = Path(ctx["run_dir"])
    result = evaluate(
        rd / "model",
        ctx["data_root"],
        split=ctx["split"],
        backend="native",
        threads=ctx["config"].threads,
        profile=False,
    )
    _write_json(rd / "test.json", result)
    return {"accuracy": result["accuracy"]}


def _profile(ctx: dict[str, Any]) -> dict[str, Any]:
    from .profiler import profile

    rd = Path(ctx["run_dir"])
    report = profile(
        rd / "model",
        backends=["native"],
        repeats=ctx["repeats"],
        aten=False,
        threads=ctx["config"].threads,
    )
    report.save_json(rd / "profile.json")
    return {"native_ms": report.total_ms("native")}


def _champion(ctx: dict[str, Any]) -> tuple[str | None, str | None]:
    """(spec, weights sha256) of the registry's champion, or (None, None)."""
    if ctx["registry"] is None:
        return None, None
    from .errors import ModelError

    try:
        mv = ctx["registry"].show(ctx["alias"])
    except ModelError:
        return None, None
    return f"models:/{ctx['registry'].name}/{mv.version}", mv.tags.get("weights_sha256")


def _other_champion(ctx: dict[str, Any]) -> str | None:
    """The champion's weights sha256 as a gate input; None when there is no champion or it is
    this run's own model (promoted by this run's register stage, which must not re-open the gate)."""
    sha = _champion(ctx)[1]
    return None if sha == ctx.get("weights_sha256") else sha


def _gate(ctx: dict[str, Any]) -> dict[str, Any]:
    from .gate import gate

    rd = Path(ctx["run_dir"])
    spec, _ = _champion(ctx)
    champion = None if spec is None else os.fspath(ctx["registry"].download(spec.rsplit("/", 1)[1]))
    verdict = gate(
        rd / "model",
        ctx["data_root"],
        champion=champion,
        split=ctx["split"],
        min_accuracy=ctx["min_accuracy"],
        max_drop=ctx["max_drop"],
        fail_if_slower=ctx["fail_if_slower"],
        candidate_result=rd / "test.json",
        candidate_profile=os.fspath(rd / "profile.json"),
        repeats=ctx["repeats"],
        threads=ctx["config"].threads,
    )
    verdict["champion_spec"] = spec
    _write_json(rd / "gate.json", verdict)
    return {"accepted": verdict["accepted"], "gate_reasons": verdict["reasons"]}


def _register(ctx: dict[str, Any]) -> dict[str, Any]:
    rd = Path(ctx["run_dir"])
    reg = ctx["registry"]
    tags = {
        "run_dir": os.fspath(rd.resolve()),
        "gate_accepted": str(ctx["accepted"]).lower(),
        "lineage": os.fspath((rd / LINEAGE_FILE).resolve()),
    }
    mv = reg.register(
        rd / "model",
        alias="challenger",
        tags=tags,
        metrics={"test_accuracy": float(ctx["accuracy"])},
    )
    promoted = bool(ctx["accepted"])
    if promoted:
        mv = reg.promote(mv.version, ctx["alias"])
    out = {
        "registry_uri": reg.uri,
        "name": reg.name,
        "version": mv.version,
        "aliases": mv.aliases,
        "promoted": promoted,
        "alias": ctx["alias"],
    }
    _write_json(rd / "registered.json", out)
    return {"registry_version": mv.version, "promoted": promoted}


STAGES: list[Stage] = [
    Stage(
        "train",
        _train,
        lambda c: {"data_checksum": c["data_checksum"], "config": _config_hash(c["config"])},
        ("model/model.safetensors", "model/model_card.json"),
    ),
    Stage(
        "test",
        _test,
        lambda c: {
            "weights_sha256": c.get("weights_sha256"),
            "split": c["split"],
            "data_root": os.fspath(c["data_root"]),
        },
        ("test.json",),
    ),
    Stage(
        "profile",
        _profile,
        lambda c: {"weights_sha256": c.get("weights_sha256"), "repeats": c["repeats"]},
        ("profile.json",),
    ),
    Stage(
        "gate",
        _gate,
        lambda c: {
            "test.json": _file_sha(c, "test.json"),
            "profile.json": _file_sha(c, "profile.json"),
            "champion_weights_sha256": _other_champion(c),
            "limits": [c["min_accuracy"], c["max_drop"], c["fail_if_slower"]],
        },
        ("gate.json",),
    ),
    Stage(
        "register",
        _register,
        lambda c: {
            "gate.json": _file_sha(c, "gate.json"),
            "registry_uri": c["registry"].uri if c["registry"] else None,
        },
        ("registered.json",),
    ),
]


def run(
    data: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    epochs: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    registry_uri: str | None = None,
    use_registry: bool = True,
    alias: str = "champion",
    min_accuracy: float = 0.0,
    max_drop: float = 0.01,
    fail_if_slower: float = 25.0,
    repeats: int = 10,
    from_stage: str | None = None,
    quiet: bool = False,
    **train_overrides: Any,
) -> dict[str, Any]:
    """Run the pipeline on the GTSRB root ``data`` in ``run_dir`` (created; reused to resume).

    Without a registry (``use_registry=False``) the gate has no champion and the register stage
    is left out. Returns the context: ``ran``, ``skipped``, ``accepted``, ``accuracy``,
    ``registry_version``, ``promoted``, ``lineage`` ...
    """
    from .artifacts import code_version
    from .data import load_split
    from .train import TrainConfig

    base = TrainConfig()
    config = TrainConfig(
        **{
            **dataclasses.asdict(base),
            "epochs": epochs or base.epochs,
            "seed": seed,
            "threads": threads,
            **train_overrides,
        }
    )
    rd = Path(run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    registry = None
    if use_registry:
        from .registry import Registry

        registry = Registry(registry_uri)
    images, labels, meta = load_split(
        data, "train", size=config.size, roi=config.roi, dtype="uint8", threads=threads
    )
    ctx: dict[str, Any] = {
        "run_dir": rd,
        "data_root": os.path.abspath(data),
        "split": split,
        "config": config,
        "train_split": (images, labels, meta),
        "data_checksum": meta.checksum,
        "code_version": code_version(),
        "registry": registry,
        "alias": alias,
        "min_accuracy": min_accuracy,
        "max_drop": max_drop,
        "fail_if_slower": fail_if_slower,
        "repeats": repeats,
        "quiet": quiet,
    }
    stages = STAGES if registry is not None else [s for s in STAGES if s.name != "register"]
    ctx["lineage"] = run_stages(
        stages,
        ctx,
        from_stage=from_stage,
        log=(lambda m: None) if quiet else (lambda m: print(m, flush=True)),
    )
    return ctx
