"""Static checks of .github/workflows and the pin files CI uses (tools/lint-workflows.sh runs
actionlint and zizmor; these are the project's own rules on top).

The MLOps rules (issue 14) are functions that return the problems they find, so each is run on
the real workflows (no problems) and on broken variants of them (the problem is found):

- every ``run:`` step fails when any command in a pipe fails (``shell: bash`` = ``-eo pipefail``);
- mlops.yml: the gate (a real accuracy floor, PyTorch for the parity check) runs before
  register and push; promote and push only when it accepted; the image is built and called
  (docker run + /healthz, /readyz, /predict/) before the push; push only from the default branch;
- ci.yml: the Dockerfile is built and smoke-tested on Arm and x86, never pushed;
- every action is pinned to the SHA of a verified Node 24 (or non-Node) release.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
SCRIPTS = ROOT / ".github" / "scripts"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)

#: Every action the workflows use, pinned to the commit of a release that was checked in the
#: action's own repository (``git rev-parse vX.Y.Z^{commit}`` in a fresh clone) together with
#: ``runs.using`` of its action.yml at that commit. Upgrading an action means verifying the new
#: release the same way and updating this table (docs/ci.md, "Action pins").
VERIFIED_PINS: dict[str, tuple[str, str, str]] = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1", "node24"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0", "node24"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5", "node24"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0", "node24"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1", "node24"),
    "docker/setup-buildx-action": (
        "37fe631027851001ddb9b187196cc803df7f5f0e",
        "v4.3.0",
        "node24",
    ),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0", "node24"),
    "docker/login-action": ("4907a6ddec9925e35a0a9e82d7399ccc52663121", "v4.1.0", "node24"),
    # composite: runs actions/setup-python@v7.0.0 (node24) inside
    "pypa/cibuildwheel": ("1828c10ab37f080699c7b81cea34097c684a7074", "v4.2.0", "composite"),
    # a Docker container action: no Node runtime
    "pypa/gh-action-pypi-publish": (
        "76f52bc884231f62b9a034ebfe128415bbaabdfc",
        "v1.12.4",
        "docker",
    ),
}

#: Runner labels: repository variables with GitHub's hosted runners as defaults.
RUNNER_VARS = {"ARM_RUNNER": "ubuntu-24.04-arm", "X64_RUNNER": "ubuntu-24.04"}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def job_text(job: dict[str, Any]) -> str:
    """Every ``run:`` script of a job, one after the other."""
    return "\n".join(str(s.get("run", "")) for s in steps(job))


# ---------------------------------------------------------------------------------------------
# 1. Every run: step fails when any command in it fails


def has_pipe(script: str) -> bool:
    """Whether ``script`` pipes one command into another (``a | b``; not ``||``)."""
    try:
        lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        return any(tok in ("|", "|&") for tok in lexer)
    except ValueError:  # unbalanced quotes (here-documents): fall back to the raw text
        return re.search(r"(?<![|])\|(?![|])", script) is not None


def runs_with_pipefail(shell: str | None, script: str) -> bool:
    """GitHub runs ``shell: bash`` as ``bash --noprofile --norc -eo pipefail {0}``; with no shell
    it runs ``bash -e {0}`` (no pipefail), ``sh`` as ``sh -e {0}``."""
    if shell == "bash" or (shell and re.search(r"-\w*o pipefail", shell)):
        return True
    return re.search(r"^\s*set -\w*o pipefail|^\s*set -o pipefail", script, re.M) is not None


def pipefail_problems(wf: dict[str, Any], name: str) -> list[str]:
    """``defaults: run: shell: bash`` missing, or a piped step that runs without pipefail."""
    problems = []
    default = (wf.get("defaults") or {}).get("run", {}).get("shell")
    if "jobs" in wf and default != "bash":
        problems.append(f"{name}: no workflow-level `defaults: run: shell: bash`")
    jobs = wf.get("jobs") or {"(composite)": {"steps": wf.get("runs", {}).get("steps", [])}}
    for job_name, job in jobs.items():
        job_shell = (job.get("defaults") or {}).get("run", {}).get("shell", default)
        for i, step in enumerate(steps(job)):
            script = str(step.get("run", ""))
            if (
                script
                and has_pipe(script)
                and not runs_with_pipefail(step.get("shell", job_shell), script)
            ):
                label = step.get("name") or f"step {i + 1}"
                problems.append(f"{name}:{job_name}: {label!r} pipes without pipefail")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_step_fails_when_a_piped_command_fails(path: Path) -> None:
    assert pipefail_problems(load(path), path.name) == []


PIPED = "neonsign test --model model --data d --json r.json | tee r.txt"


@pytest.mark.parametrize(
    ("workflow", "found"),
    [
        ({"jobs": {"t": {"steps": [{"run": PIPED}]}}}, 2),  # no defaults: bash -e, no pipefail
        ({"defaults": {"run": {"shell": "bash"}}, "jobs": {"t": {"steps": [{"run": PIPED}]}}}, 0),
        (
            {
                "defaults": {"run": {"shell": "bash"}},
                "jobs": {"t": {"steps": [{"run": PIPED, "shell": "sh"}]}},
            },
            1,
        ),
        (
            {
                "defaults": {"run": {"shell": "bash"}},
                "jobs": {"t": {"steps": [{"run": PIPED, "shell": "bash -e {0}"}]}},
            },
            1,
        ),
        ({"jobs": {"t": {"steps": [{"run": "set -euo pipefail\n" + PIPED}]}}}, 1),  # defaults only
        (
            {"defaults": {"run": {"shell": "bash"}}, "jobs": {"t": {"steps": [{"run": "a || b"}]}}},
            0,
        ),
    ],
)
def test_pipefail_check_finds_broken_workflows(workflow: dict[str, Any], found: int) -> None:
    assert len(pipefail_problems(workflow, "broken.yml")) == found


def _stub_bin(tmp_path: Path) -> Path:
    """A ``.venv/bin/neonsign`` that fails like a missing model does (exit 2, error on stderr),
    and a ``python`` that is this one."""
    binary = tmp_path / ".venv" / "bin"
    binary.mkdir(parents=True)
    stub = binary / "neonsign"
    stub.write_text('#!/bin/sh\necho "neonsign: error: model: no such directory" >&2\nexit 2\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return binary


def _replay(tmp_path: Path, script: str, shell: list[str]) -> int:
    path = tmp_path / "step.sh"
    path.write_text(script)
    env = {
        **os.environ,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "DATA": "data/gtsrb",
        "BACKEND": "native",
    }
    return subprocess.run([*shell, str(path)], cwd=tmp_path, env=env, timeout=60).returncode


def test_replayed_test_step_fails_with_a_missing_model(tmp_path: Path) -> None:
    """The issue's replay: mlops.yml's test step with a `neonsign test` that fails. Under the
    workflow's shell (bash = -eo pipefail) the step fails; under GitHub's default `bash -e`,
    which the step had before, `| tee` hid the failure (exit 0)."""
    _stub_bin(tmp_path)
    mlops = load(ROOT / ".github" / "workflows" / "mlops.yml")
    (step,) = [s for s in steps(mlops["jobs"]["test"]) if "neonsign test" in s.get("run", "")]
    assert mlops["defaults"]["run"]["shell"] == "bash"
    github_bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
    assert _replay(tmp_path, step["run"], github_bash) == 2  # neonsign's own exit status
    lines = step["run"].split("\n")
    through_tee = "\n".join(lines[: next(i for i, ln in enumerate(lines) if "| tee" in ln) + 1])
    assert _replay(tmp_path, through_tee, ["bash", "-e"]) == 0  # what `no shell:` did


# ---------------------------------------------------------------------------------------------
# 2. mlops.yml: gate -> register -> image (built and called) -> push


def ancestors(wf: dict[str, Any], job: str) -> set[str]:
    """Every job ``job`` transitively needs."""
    out: set[str] = set()
    todo = [job]
    while todo:
        needs = wf["jobs"][todo.pop()].get("needs") or []
        for n in [needs] if isinstance(needs, str) else needs:
            if n not in out:
                out.add(n)
                todo.append(n)
    return out


def jobs_where(wf: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> list[str]:
    return [name for name, job in wf["jobs"].items() if test(job)]


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action + "@")


def builds_image(job: dict[str, Any]) -> int | None:
    """Index of the step that builds the repository's Dockerfile, or None."""
    for i, s in enumerate(steps(job)):
        if _uses(s, "docker/build-push-action") and (s.get("with") or {}).get("context") == ".":
            return i
        if re.search(r"docker (buildx )?build\b.*\s\.(\s|$)", str(s.get("run", ""))):
            return i
    return None


def smoke_tests_image(job: dict[str, Any]) -> int | None:
    """Index of the step that runs the container smoke test (docker run + /healthz, /readyz,
    curl -F file=@img.png .../predict/), or None."""
    for i, s in enumerate(steps(job)):
        if "smoke-test-image.sh" in str(s.get("run", "")):
            return i
    return None


def pushes(job: dict[str, Any]) -> bool:
    text = job_text(job)
    if re.search(r"docker push|imagetools create", text):
        return True
    return any(
        _uses(s, "docker/build-push-action")
        and str((s.get("with") or {}).get("push")).lower() != "false"
        for s in steps(job)
    )


DEFAULT_BRANCH = re.compile(
    r"github\.ref == format\('refs/heads/\{0\}', github\.event\.repository\.default_branch\)"
)


def _env_default(wf: dict[str, Any], var: str) -> str | None:
    """The default of ``${{ inputs.x || 'default' }}`` (or a literal) in the workflow's env."""
    value = str((wf.get("env") or {}).get(var, ""))
    m = re.search(r"\|\|\s*'([^']*)'\s*}}", value)
    return m.group(1) if m else (value or None)


def _gate_problems(wf: dict[str, Any], gate: str) -> list[str]:
    job = wf["jobs"][gate]
    run = re.sub(r"\\\n\s*", " ", job_text(job))
    m = re.search(r"--min-accuracy\s+\"?\$?(\w+|[\d.]+)\"?", run)
    floor = None if m is None else _env_default(wf, m.group(1)) or m.group(1)
    problems = []
    try:
        if floor is None or float(floor) < 0.5:
            problems.append(f"gate job {gate!r}: no real accuracy floor (--min-accuracy {floor})")
    except ValueError:
        problems.append(f"gate job {gate!r}: --min-accuracy {floor!r} is not a number")
    extras = [str((s.get("with") or {}).get("extras", "")) for s in steps(job)]
    if not any("torch" in e.split(",") for e in extras):
        problems.append(f"gate job {gate!r}: no torch extra, so the parity check cannot pass")
    if "outputs" not in job or "accepted" not in job["outputs"]:
        problems.append(f"gate job {gate!r}: no `accepted` output for the jobs after it")
    return problems


def _promote_guarded(wf: dict[str, Any], job_name: str, gate: str) -> bool:
    """The step that promotes runs only when the gate accepted (its `if`, or a shell test of an
    env var set from the gate's output)."""
    job = wf["jobs"][job_name]
    accepted = f"needs.{gate}.outputs.accepted"
    for s in steps(job):
        run = str(s.get("run", ""))
        if "registry promote" not in run:
            continue
        if accepted in str(s.get("if", "")):
            return True
        env = {**(job.get("env") or {}), **(s.get("env") or {})}
        names = [k for k, v in env.items() if accepted in str(v)]
        return any(re.search(rf'if \[ "\${n}" = true \]; then\s*\n[^\n]*registry promote', run)
                   for n in names)  # fmt: skip
    return False


def mlops_problems(wf: dict[str, Any]) -> list[str]:
    """What makes mlops.yml able to go green while broken, or push an ungated image."""
    gates = jobs_where(wf, lambda j: "neonsign gate" in job_text(j))
    registers = jobs_where(wf, lambda j: re.search(r"neonsign registry .*register", job_text(j)))
    images = jobs_where(wf, lambda j: builds_image(j) is not None)
    pushers = jobs_where(wf, pushes)
    if len(gates) != 1 or not registers or not images or not pushers:
        return [f"gate {gates}, register {registers}, image {images}, push {pushers}: missing"]
    (gate,) = gates
    problems = _gate_problems(wf, gate)
    for job in registers:
        if gate not in ancestors(wf, job):
            problems.append(f"register job {job!r} does not run after the gate {gate!r}")
        if not _promote_guarded(wf, job, gate):
            problems.append(f"register job {job!r} promotes without the gate's acceptance")
    for job in images:
        built, smoked = builds_image(wf["jobs"][job]), smoke_tests_image(wf["jobs"][job])
        if smoked is None or built is None or smoked < built:
            problems.append(f"image job {job!r}: the built image is not run and called")
        if pushes(wf["jobs"][job]):
            problems.append(f"image job {job!r} pushes before/without the push job's checks")
    for job in pushers:
        before = ancestors(wf, job)
        missing = {gate, *registers, *images} - before
        if missing:
            problems.append(f"push job {job!r} does not wait for {sorted(missing)}")
        cond = str(wf["jobs"][job].get("if", ""))
        if f"needs.{gate}.outputs.accepted == 'true'" not in cond:
            problems.append(f"push job {job!r} pushes without the gate's acceptance")
        if not DEFAULT_BRANCH.search(cond):
            problems.append(f"push job {job!r} pushes from any branch")
    return problems


MLOPS = ROOT / ".github" / "workflows" / "mlops.yml"


def test_mlops_gates_register_and_push_and_calls_the_image() -> None:
    assert mlops_problems(load(MLOPS)) == []


def _without(items: list[Any], test: Callable[[Any], bool]) -> list[Any]:
    return [x for x in items if not test(x)]


def _break_register_order(wf: dict[str, Any]) -> None:
    wf["jobs"]["register"]["needs"] = []


def _break_push_condition(wf: dict[str, Any]) -> None:
    wf["jobs"]["push"]["if"] = "github.ref == 'refs/heads/main'"


def _break_push_branch(wf: dict[str, Any]) -> None:
    wf["jobs"]["push"]["if"] = "needs.gate.outputs.accepted == 'true'"


def _break_smoke(wf: dict[str, Any]) -> None:
    job = wf["jobs"]["image"]
    job["steps"] = _without(job["steps"], lambda s: "smoke-test-image" in str(s.get("run", "")))


def _break_push_needs(wf: dict[str, Any]) -> None:
    wf["jobs"]["push"]["needs"] = ["register"]


def _break_floor(wf: dict[str, Any]) -> None:
    wf["env"]["MIN_ACCURACY"] = "${{ inputs.min_accuracy || '0' }}"


def _break_parity(wf: dict[str, Any]) -> None:
    for s in wf["jobs"]["gate"]["steps"]:
        if "extras" in (s.get("with") or {}):
            s["with"]["extras"] = "mlflow"


def _break_promote(wf: dict[str, Any]) -> None:
    for s in wf["jobs"]["register"]["steps"]:
        if "registry promote" in str(s.get("run", "")):
            s["run"] = s["run"].replace('if [ "$ACCEPTED" = true ]; then', "if true; then")


def _break_image_push(wf: dict[str, Any]) -> None:
    for s in wf["jobs"]["image"]["steps"]:
        if _uses(s, "docker/build-push-action"):
            s["with"]["push"] = True


BREAKAGES = {
    "register before the gate": (_break_register_order, "does not run after the gate"),
    "push without acceptance": (_break_push_condition, "without the gate's acceptance"),
    "push from any branch": (_break_push_branch, "from any branch"),
    "image never called": (_break_smoke, "is not run and called"),
    "push before the image test": (_break_push_needs, "does not wait for"),
    "no accuracy floor": (_break_floor, "no real accuracy floor"),
    "no parity check": (_break_parity, "parity check cannot pass"),
    "promote unconditionally": (_break_promote, "promotes without"),
    "image job pushes": (_break_image_push, "pushes before/without"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_mlops_checks_find_broken_workflows(case: str) -> None:
    breaker, message = BREAKAGES[case]
    wf = copy.deepcopy(load(MLOPS))
    breaker(wf)
    problems = mlops_problems(wf)
    assert any(message in p for p in problems), problems


# ---------------------------------------------------------------------------------------------
# 3. ci.yml


CI = ROOT / ".github" / "workflows" / "ci.yml"


def resolve_runner(label: str) -> str:
    """``${{ vars.ARM_RUNNER || 'ubuntu-24.04-arm' }}`` -> ``ubuntu-24.04-arm`` (the default)."""
    m = re.fullmatch(r"\$\{\{\s*vars\.(\w+)\s*\|\|\s*'([^']+)'\s*}}", label.strip())
    assert m, f"runner label {label!r} is not a repository variable with a default"
    assert RUNNER_VARS.get(m.group(1)) == m.group(2), label
    return m.group(2)


def runners(job: dict[str, Any]) -> list[str]:
    """The default labels a job runs on (a matrix's ``runner`` entries, or its runs-on)."""
    runs_on = str(job["runs-on"])
    if runs_on == "${{ matrix.runner }}":
        return [resolve_runner(e["runner"]) for e in job["strategy"]["matrix"]["include"]]
    return [resolve_runner(runs_on)]


def ci_container_problems(wf: dict[str, Any]) -> list[str]:
    """ci.yml builds the Dockerfile and smoke-tests it on Arm and x86, and pushes nothing."""
    problems = []
    for name, job in wf["jobs"].items():
        if pushes(job):
            problems.append(f"ci job {name!r} pushes an image")
    built = [
        n
        for n, j in wf["jobs"].items()
        if builds_image(j) is not None
        and smoke_tests_image(j) is not None
        and smoke_tests_image(j) > builds_image(j)  # type: ignore[operator]
    ]
    covered = {r for n in built for r in runners(wf["jobs"][n])}
    if covered != set(RUNNER_VARS.values()):
        problems.append(f"Dockerfile built and called on {sorted(covered)}, not Arm and x86")
    return problems


def test_ci_builds_and_calls_the_image_on_arm_and_x86() -> None:
    assert ci_container_problems(load(CI)) == []


@pytest.mark.parametrize("case", ["no smoke test", "arm only", "push"])
def test_ci_container_check_finds_broken_workflows(case: str) -> None:
    wf = copy.deepcopy(load(CI))
    job = wf["jobs"]["container"]
    if case == "no smoke test":
        job["steps"] = _without(job["steps"], lambda s: "smoke-test" in str(s.get("run", "")))
    elif case == "arm only":
        job["strategy"]["matrix"]["include"] = job["strategy"]["matrix"]["include"][:1]
    else:
        for s in job["steps"]:
            if _uses(s, "docker/build-push-action"):
                s["with"]["push"] = True
    assert ci_container_problems(wf)


def test_ci_triggers_once_per_change_and_cancels_superseded_runs() -> None:
    ci = load(CI)
    assert ci["on"]["push"] == {"branches": ["main"]}, "push runs only on the default branch"
    assert "pull_request" in ci["on"]
    assert "cancel-in-progress" in ci["concurrency"] and ci["concurrency"]["group"]


def _setup_step(job: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for s in steps(job) if s.get("uses") == "./.github/actions/setup-neonsign"]
    return step


def test_ci_installs_what_tools_test_sh_installs() -> None:
    m = re.search(r"tools/setup\.sh\s+(\S+)", (ROOT / "tools" / "test.sh").read_text())
    assert m
    wanted = set(m.group(1).split(","))
    extras = set(_setup_step(load(CI)["jobs"]["test"])["with"]["extras"].split(","))
    assert wanted <= extras, f"ci.yml lacks {sorted(wanted - extras)}"
    assert "mlflow" in extras


def test_cpu_only_torch_and_pip_cache_keyed_on_the_pin_files() -> None:
    action = load(ROOT / ".github" / "actions" / "setup-neonsign" / "action.yml")
    (setup,) = [s for s in action["runs"]["steps"] if _uses(s, "actions/setup-python")]
    assert setup["with"]["cache"] == "pip"
    keyed = set(setup["with"]["cache-dependency-path"].split())
    assert {"constraints.txt", "constraints-py310.txt"} <= keyed
    (torch,) = [s for s in action["runs"]["steps"] if "torch" in str(s.get("name", "")).lower()]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch["run"]
    assert "torch.version.cuda" in torch["run"], "the step checks that the wheel is CPU-only"
    # the pin is the public version: it matches the CPU index's local version 2.13.0+cpu
    assert "+" not in _pins(ROOT / "constraints.txt")["torch"]


def test_ci_summary_benchmarks_and_rendered_notebooks() -> None:
    job = load(CI)["jobs"]["test"]
    text = job_text(job)
    assert "summary.py pytest reports/pytest.xml" in text
    assert text.count('summary.py text "Benchmark') == 1 and "GITHUB_STEP_SUMMARY" in text
    assert "NEONSIGN_NB_HTML=reports/notebooks bash tools/notebooks.sh" in text
    (upload,) = [s for s in steps(job) if _uses(s, "actions/upload-artifact")]
    assert upload["with"]["path"] == "reports/"


def test_ci_matrix_covers_arm_and_x86_and_pythons() -> None:
    ci = load(CI)
    matrix = ci["jobs"]["test"]["strategy"]["matrix"]
    assert set(runners(ci["jobs"]["test"])) == {"ubuntu-24.04-arm", "ubuntu-24.04"}
    assert matrix["python"] == ["3.10", "3.11", "3.12", "3.13"]
    mlops = load(MLOPS)
    assert mlops["jobs"]["test"]["strategy"]["matrix"]["backend"] == [
        "native",
        "torch",
        "torch-onednn-off",
    ]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_runner_labels_are_variables_with_hosted_defaults(path: Path) -> None:
    for job in load(path)["jobs"].values():
        assert set(runners(job)) <= set(RUNNER_VARS.values())


# ---------------------------------------------------------------------------------------------
# 4. The scheduled retraining check


def test_retrain_check_is_scheduled_and_starts_the_training_run() -> None:
    wf = load(ROOT / ".github" / "workflows" / "retrain.yml")
    assert wf["on"]["schedule"] and "workflow_dispatch" in wf["on"]
    check, dispatch = wf["jobs"]["check"], wf["jobs"]["dispatch"]
    assert "neonsign retrain-check" in job_text(check) and "registry:champion" in job_text(check)
    assert (
        dispatch["needs"] == "check" and "needs.check.outputs.retrain == 'true'" in dispatch["if"]
    )
    assert "gh workflow run mlops.yml" in job_text(dispatch)
    assert dispatch["permissions"] == {"actions": "write"}
    assert "workflow_dispatch" in load(MLOPS)["on"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_secrets_only_through_env(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        for step in steps(job):
            assert "secrets." not in str(step.get("run", "")), f"{path.name}:{name}"


# ---------------------------------------------------------------------------------------------
# 5. Pins, permissions, inputs


def test_workflows_present() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "mlops.yml", "retrain.yml", "wheels.yml"]
    assert [p.parent.name for p in ACTIONS] == ["setup-neonsign"]


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_actions_pinned_by_sha_with_version(path: Path) -> None:
    found = USES.findall(path.read_text(encoding="utf-8"))
    assert found, f"{path.name} uses no actions"
    for ref, rest in found:
        if ref.startswith("./"):  # this repository's own action, at the checked-out commit
            continue
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), (
            f"{path.name}: {ref} is not pinned to a full commit SHA"
        )
        assert re.search(r"#\s*v\d", rest), f"{path.name}: {ref} lacks a '# vX.Y.Z' version comment"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_actions_are_the_verified_node24_releases(path: Path) -> None:
    for ref, rest in USES.findall(path.read_text(encoding="utf-8")):
        if ref.startswith("./"):
            continue
        action, _, sha = ref.partition("@")
        repo = "/".join(action.split("/")[:2])
        assert repo in VERIFIED_PINS, f"{path.name}: {repo} is not a verified pin"
        want_sha, version, _ = VERIFIED_PINS[repo]
        assert sha == want_sha, f"{path.name}: {ref} is not the verified {version}"
        assert rest.strip() == f"# {version}", f"{path.name}: {ref} comment {rest!r}"


def test_lifecycle_doc_example_uses_the_verified_pins() -> None:
    """docs/lifecycle.md's scheduled example: pinned actions, bash, no secrets in run:."""
    text = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    doc = yaml.safe_load(block)
    assert doc["defaults"]["run"]["shell"] == "bash" and doc["permissions"] == {"contents": "read"}
    for ref, rest in USES.findall(block):
        if ref.startswith("./"):
            continue
        repo = "/".join(ref.partition("@")[0].split("/")[:2])
        sha, version, _ = VERIFIED_PINS[repo]
        assert ref.endswith("@" + sha) and rest.strip() == f"# {version}", ref
    for job in doc["jobs"].values():
        for step in steps(job):
            assert "secrets." not in str(step.get("run", "")) and "vars." not in str(
                step.get("run", "")
            )


def test_same_action_same_sha() -> None:
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS + ACTIONS:
        for ref, _ in USES.findall(path.read_text(encoding="utf-8")):
            if ref.startswith("./"):
                continue
            action, _, sha = ref.partition("@")
            seen.setdefault(action.split("/")[0] + "/" + action.split("/")[1], set()).add(sha)
    assert {a: s for a, s in seen.items() if len(s) > 1} == {}


#: Job-level write permissions, each where the workflow needs it and nowhere else.
ALLOWED_WRITES = {
    ("wheels.yml", "publish"): {"id-token": "write"},  # trusted publishing
    ("mlops.yml", "persist-registry"): {"contents": "write"},  # the registry release asset
    ("retrain.yml", "dispatch"): {"actions": "write"},  # workflow_dispatch of mlops.yml
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_no_untrusted_text_in_run(path: Path) -> None:
    wf = load(path)
    assert wf["permissions"] == {"contents": "read"}, (
        f"{path.name}: top-level permissions must be contents: read"
    )
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        if "id-token" in perms:
            assert path.name == "wheels.yml" and name == "publish", (
                f"{path.name}:{name} asks for id-token"
            )
            assert perms == {"id-token": "write"}
        if any(v == "write" for v in perms.values()):
            assert ALLOWED_WRITES.get((path.name, name)) == perms, f"{path.name}:{name} {perms}"
        for step in job.get("steps", []):
            run = step.get("run", "")
            assert "github.event" not in run and "github.head_ref" not in run, (
                f"{path.name}:{name}: untrusted event text in a run: line (pass it through env)"
            )
            assert "${{ inputs." not in run, f"{path.name}:{name}: an input in a run: line"
            if "actions/checkout@" in step.get("uses", ""):
                assert step.get("with", {}).get("persist-credentials") is False, (
                    f"{path.name}:{name}"
                )


def test_py310_constraints_pin_the_same_packages() -> None:
    main = _pins(ROOT / "constraints.txt")
    py310 = _pins(ROOT / "constraints-py310.txt")
    assert set(main) == set(py310), f"differ: {sorted(set(main) ^ set(py310))}"
    differing = {k for k in main if main[k] != py310[k]}
    assert differing <= {"numpy", "pillow", "onnxruntime", "matplotlib"}, differing


# ---------------------------------------------------------------------------------------------
# The scripts the workflows run (.github/scripts)


def _script(name: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, **kw
    )


@pytest.fixture
def junit(tmp_path: Path) -> Iterator[Path]:
    """A real pytest JUnit report: 2 passed, 1 failed, 1 skipped."""
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_a(): pass\n"
        "def test_b(): pass\n"
        "def test_c(): assert False\n"
        "@pytest.mark.skip(reason='x')\n"
        "def test_d(): pass\n"
    )
    xml = tmp_path / "pytest.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
         str(tmp_path / "test_x.py")],
        capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert ET.parse(xml).getroot() is not None
    yield xml


def test_summary_pytest_totals(junit: Path) -> None:
    r = _script("summary.py", "pytest", str(junit))
    assert r.returncode == 0, r.stderr
    row = [ln for ln in r.stdout.splitlines() if re.match(r"^\| \d", ln)][0]
    assert [c.strip() for c in row.strip("|").split("|")][:5] == ["4", "2", "1", "0", "1"]
    assert "test_x::test_c" in r.stdout


def test_summary_refuses_a_missing_report(tmp_path: Path) -> None:
    r = _script("summary.py", "pytest", str(tmp_path / "none.xml"))
    assert r.returncode == 1 and "none.xml" in r.stderr


def test_summary_test_table_has_both_framings(synth_root: Path, tmp_path: Path) -> None:
    """A real `neonsign test` result (native engine, both framings measured) as the table row
    mlops.yml's test and gate jobs append to the job summary."""
    from neonsign.evaluate import evaluate, save_result
    from serve_helpers import make_model_dir

    model = make_model_dir(tmp_path / "model", seed=3)
    result = evaluate(model, synth_root, backend="native", profile=False, quiet=True)
    path = save_result(result, tmp_path / "test-native.json")
    r = _script("summary.py", "test", str(path))
    assert r.returncode == 0, r.stderr
    (row,) = [ln for ln in r.stdout.splitlines() if ln.startswith("| native")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    framings = result["framings"]
    assert cells[2] == f"{framings['roi']['accuracy'] * 100:.2f}%"
    assert cells[3] == f"{framings['whole']['accuracy'] * 100:.2f}%"
    assert cells[4] == str(result["n_images"])


def test_summary_gate_table_of_a_refused_model(synth_root: Path, tmp_path: Path) -> None:
    """A real verdict: random weights against the default floor are refused, and the table
    says so check by check."""
    pytest.importorskip("torch", reason="the gate's parity check needs PyTorch")
    from neonsign.app.gate import gate
    from serve_helpers import make_model_dir

    model = make_model_dir(tmp_path / "model", seed=3)
    verdict = gate(model, synth_root, min_accuracy=0.9, repeats=1, threads=1)
    assert not verdict["accepted"]
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(verdict))
    r = _script("summary.py", "gate", str(path))
    assert r.returncode == 0, r.stderr
    assert "### Validation gate: **refused**" in r.stdout and "champion: none yet" in r.stdout
    assert re.search(r"^\| accuracy_floor \| \*\*no\*\* \|", r.stdout, re.M), r.stdout
    assert re.search(r"^\| probe_parity \| yes \|", r.stdout, re.M), r.stdout


GH_STUB = """#!/usr/bin/env bash
# A stand-in for the GitHub CLI's `gh release` subcommands: a release is a folder in $RELEASES.
set -euo pipefail
[ "$1" = release ] || exit 64
cmd="$2" tag="$3"; shift 3
dir="$RELEASES/$tag"
case "$cmd" in
view) [ -d "$dir" ] ;;
create) mkdir -p "$dir" ;;
upload) [ -d "$dir" ] && cp "$1" "$dir/" ;;
download)
    pattern="" out="."
    while [ $# -gt 0 ]; do
        case "$1" in --pattern) pattern="$2"; shift 2 ;; --dir) out="$2"; shift 2 ;; *) shift ;; esac
    done
    [ -f "$dir/$pattern" ] && cp "$dir/$pattern" "$out/" ;;
*) exit 64 ;;
esac
"""


@pytest.mark.slow
def test_registry_store_keeps_the_champion_across_runs(tmp_path: Path) -> None:
    """registry-store.sh: a first run starts empty; the registry packed and published by one
    run is restored by the next at the same path with its champion; a release without the
    asset is an error, not a silently empty registry. (gh is a stand-in; MLflow is real.)"""
    pytest.importorskip("mlflow")
    from serve_helpers import make_model_dir

    (tmp_path / "bin").mkdir()
    gh = tmp_path / "bin" / "gh"
    gh.write_text(GH_STUB)
    gh.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RELEASES": str(tmp_path / "releases"),
        "NEONSIGN_REGISTRY": str(tmp_path / "registry"),
        "REGISTRY_RELEASE": "mlops-registry",
        "GITHUB_SHA": "0" * 40,
        "MLFLOW_TRACKING_URI": "",
    }
    store = str(SCRIPTS / "registry-store.sh")
    neonsign = [sys.executable, "-m", "neonsign"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    first = run("bash", store, "restore")
    assert first.returncode == 0 and "starts empty" in first.stdout
    model = make_model_dir(tmp_path / "model", seed=4)
    assert run(*neonsign, "registry", "register", str(model), "--alias", "champion").returncode == 0
    assert run("bash", store, "pack", "out").returncode == 0
    assert run("bash", store, "publish", "out").returncode == 0
    shutil.rmtree(tmp_path / "registry")
    again = run("bash", store, "restore")
    assert again.returncode == 0 and "restored" in again.stdout
    shown = run(*neonsign, "registry", "--json", "show", "champion")
    assert shown.returncode == 0, shown.stderr
    card = json.loads((model / "model_card.json").read_text())
    assert json.loads(shown.stdout)["tags"]["weights_sha256"] == card["weights_sha256"]
    (tmp_path / "releases" / "mlops-registry" / "registry.tar.gz").unlink()
    broken = run("bash", store, "restore")
    assert broken.returncode == 1 and "could not be downloaded" in broken.stdout


# ---------------------------------------------------------------------------------------------
# mlops.yml's steps replayed: the commands and flags the workflow runs, on synthetic data


def _step(wf: dict[str, Any], job: str, marker: str) -> str:
    (script,) = [s["run"] for s in steps(wf["jobs"][job]) if marker in str(s.get("run", ""))]
    return str(script)


def _outputs(path: Path) -> dict[str, str]:
    text = path.read_text() if path.exists() else ""
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)


@pytest.fixture
def workspace(tmp_path: Path, synth_root: Path) -> Path:
    """A job's working directory: the checkout's scripts, this venv as .venv, the synthetic
    data at $DATA, a model, a stand-in gh without the registry release yet."""
    from serve_helpers import make_model_dir

    ws = tmp_path / "ws"
    (ws / ".github").mkdir(parents=True)
    (ws / ".github" / "scripts").symlink_to(SCRIPTS)
    (ws / ".venv").symlink_to(Path(sys.prefix))  # this venv, with its pyvenv.cfg
    (ws / "data").mkdir()
    (ws / "data" / "gtsrb").symlink_to(synth_root)
    make_model_dir(ws / "model", seed=5)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gh").write_text(GH_STUB)
    (tmp_path / "bin" / "gh").chmod(0o755)
    return ws


@pytest.mark.slow
def test_mlops_steps_replayed(workspace: Path, tmp_path: Path) -> None:
    """mlops.yml's own scripts (data sample, test, gate, register) run in order under the
    workflow's shell: an accepted model becomes the champion; a refused one is only the
    challenger and the step still reports the verdict rather than failing."""
    pytest.importorskip("torch", reason="the gate's parity check needs PyTorch")
    pytest.importorskip("mlflow")
    wf = load(MLOPS)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ["PATH"],
        "RELEASES": str(tmp_path / "releases"),
        "DATA": wf["env"]["DATA"],
        "NEONSIGN_REGISTRY": str(tmp_path / "registry"),
        "FAIL_IF_SLOWER": "1000",  # same model on both sides: latency is not what is tested
        "MLFLOW_TRACKING_URI": "",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]

    def replay(job: str, marker: str, **extra: str) -> dict[str, str]:
        out = tmp_path / f"output-{job}"
        out.unlink(missing_ok=True)
        script = tmp_path / "step.sh"
        script.write_text(_step(wf, job, marker))
        run_env = {**env, "GITHUB_OUTPUT": str(out), **extra}
        r = subprocess.run([*shell, str(script)], cwd=workspace, env=run_env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, f"{job}: {marker}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return _outputs(out)

    replay("data", "samples/img.png")
    assert (workspace / "samples" / "img.png").read_bytes().startswith(b"\x89PNG")
    replay("test", "neonsign test", BACKEND="native")
    assert json.loads((workspace / "results" / "test-native.json").read_text())["framings"]
    for name in ("torch", "torch-onednn-off"):  # what the other matrix jobs leave for the gate
        shutil.copy(
            workspace / "results" / "test-native.json", workspace / f"results/test-{name}.json"
        )
    replay("gate", "registry-store.sh restore")
    assert replay("gate", "neonsign gate", MIN_ACCURACY="0")["accepted"] == "true"
    first = replay("register", "registry promote", ACCEPTED="true")
    assert first == {"version": "1", "store": "release"}
    # a new candidate (other weights: registering the same weights again is idempotent and
    # returns version 1) is tested and refused against the champion
    from serve_helpers import make_model_dir

    shutil.rmtree(workspace / "model")
    make_model_dir(workspace / "model", seed=6)
    replay("test", "neonsign test", BACKEND="native")
    for name in ("torch", "torch-onednn-off"):
        shutil.copy(
            workspace / "results" / "test-native.json", workspace / f"results/test-{name}.json"
        )
    refused = replay("gate", "neonsign gate", MIN_ACCURACY="0.99")  # now against the champion
    assert refused["accepted"] == "false"
    assert "Validation gate: **refused**" in (tmp_path / "summary.md").read_text()
    assert json.loads((workspace / "results" / "gate.json").read_text())["champion"]
    assert replay("register", "registry promote", ACCEPTED="false")["version"] == "2"
    shown = subprocess.run([sys.executable, "-m", "neonsign", "registry", "--json", "list"],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    aliases = {v["version"]: v["aliases"] for v in json.loads(shown.stdout)}
    assert aliases == {2: ["challenger"], 1: ["champion"]}


@pytest.mark.slow
def test_notebooks_rendered_to_html_with_their_figures(tmp_path: Path) -> None:
    """ci.yml's notebook step (`NEONSIGN_NB_HTML=DIR tools/notebooks.sh`): the notebook is
    executed and written as HTML with its outputs, figures embedded as PNG."""
    for module in ("nbconvert", "ipykernel", "matplotlib"):
        pytest.importorskip(module)
    out = tmp_path / "html"
    env = {**os.environ, "NEONSIGN_NB_HTML": str(out), "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(ROOT / "tools" / "notebooks.sh"), "notebooks/03_preprocessing.ipynb"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    html = (out / "03_preprocessing.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2, "figures missing from the HTML"
    assert "Traceback" not in html
