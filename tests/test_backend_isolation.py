"""Backends profiled side by side do not steal cores from each other (issue 15, part 4).

Structure, not timing (the timing is benchmarks/profile_threads.py):
* ``neonsign profile`` (and ``main``) set ``OMP_WAIT_POLICY=PASSIVE`` before torch loads, so the
  libtorch rows record a passive policy and the report has no spinning note; a policy the user
  set is kept and reported;
* a library caller that loaded torch first gets the default (spinning) policy: the report says
  so, and the profiler pauses before every native pass that follows a libtorch pass;
* ONNX Runtime sessions made by :func:`neonsign.backends.ort_session_options` do not spin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neonsign import backends, profiler

needs_torch = pytest.mark.skipif(
    not any(b.name == "torch" and b.available for b in backends.list_backends()),
    reason="needs PyTorch",
)

_PROFILE = ["profile", "--backends", "native,torch", "--batch", "2", "--repeats", "2"]
_PROFILE += ["--warmup", "1", "--no-aten", "--quiet", "--threads", "2"]


def _cli_report(tmp_path: Path, env_policy: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = tmp_path / "p.json"
    subprocess.run(
        [sys.executable, "-m", "neonsign", *_PROFILE, "--json", str(out)],
        check=True,
        env=env,
        timeout=300,
    )
    return dict(json.loads(out.read_text()))


def _torch_policy(report: dict[str, Any]) -> str:
    return str(
        next(b for b in report["backends"] if b["name"] == "torch")["settings"]["omp_wait_policy"]
    )


def _spin_notes(report: dict[str, Any]) -> list[str]:
    return [n for n in report["notes"] if "OpenMP workers were not passive" in n]


@needs_torch
def test_cli_profile_makes_libtorch_threads_passive(tmp_path: Path) -> None:
    report = _cli_report(tmp_path, None)
    assert _torch_policy(report) == "passive" and _spin_notes(report) == []


@needs_torch
def test_a_users_policy_is_kept_and_reported(tmp_path: Path) -> None:
    report = _cli_report(tmp_path, "ACTIVE")
    assert _torch_policy(report) == "active"
    assert len(_spin_notes(report)) == 1


@needs_torch
def test_torch_loaded_first_is_too_late_and_reported(tmp_path: Path) -> None:
    code = (
        "import os, sys, torch\n"
        "from neonsign import backends\n"
        "assert backends.prefer_passive_openmp() is False and 'OMP_WAIT_POLICY' not in os.environ\n"
        "print(backends.openmp_wait_policy())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "default"


def test_prefer_passive_sets_only_an_unset_policy() -> None:
    env: dict[str, str] = {"OMP_WAIT_POLICY": "active"}
    assert backends.prefer_passive_openmp(env) is False and env["OMP_WAIT_POLICY"] == "active"
    env = {"OMP_WAIT_POLICY": "Passive"}
    assert backends.prefer_passive_openmp(env) is True and env["OMP_WAIT_POLICY"] == "Passive"


@needs_torch
@pytest.mark.parametrize("policy", ["default", "passive"])
def test_native_passes_after_libtorch_wait_unless_passive(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    order: list[str] = []
    monkeypatch.setattr(profiler, "openmp_wait_policy", lambda: policy)
    monkeypatch.setattr(profiler.time, "sleep", lambda s: order.append(f"sleep {s}"))
    real_run = profiler._NativeRunner.run

    def native_run(self: Any, x: Any) -> Any:
        order.append("native")
        return real_run(self, x)

    monkeypatch.setattr(profiler._NativeRunner, "run", native_run)
    report = profiler.profile(
        None, None, ["torch", "native"], batch=2, repeats=3, warmup=1, aten=False
    )
    assert report.backends == ["torch", "native"]
    sleeps = [i for i, step in enumerate(order) if step.startswith("sleep")]
    if policy == "passive":
        assert sleeps == []
    else:  # one pause per round (warm-up + 3 timed), each right before native's first pass
        assert len(sleeps) == 4
        assert all(order[i + 1] == "native" for i in sleeps)
        assert order[sleeps[0]] == f"sleep {profiler.SETTLE_SECONDS}"


def test_ort_sessions_do_not_spin() -> None:
    pytest.importorskip("onnxruntime")
    so = backends.ort_session_options(2)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
