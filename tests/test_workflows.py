"""Static checks of .github/workflows and the pin files CI uses (tools/lint-workflows.sh runs
actionlint and zizmor; these are the project's own rules on top)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_workflows_present() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "mlops.yml", "wheels.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned_by_sha_with_version(path: Path) -> None:
    found = USES.findall(path.read_text(encoding="utf-8"))
    assert found, f"{path.name} uses no actions"
    for ref, rest in found:
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), (
            f"{path.name}: {ref} is not pinned to a full commit SHA"
        )
        assert re.search(r"#\s*v\d", rest), f"{path.name}: {ref} lacks a '# vX.Y.Z' version comment"


def test_same_action_same_sha() -> None:
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for ref, _ in USES.findall(path.read_text(encoding="utf-8")):
            action, _, sha = ref.partition("@")
            seen.setdefault(action.split("/")[0] + "/" + action.split("/")[1], set()).add(sha)
    assert {a: s for a, s in seen.items() if len(s) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_no_untrusted_text_in_run(path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    text = path.read_text(encoding="utf-8")
    wf = yaml.safe_load(text)
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
        for step in job.get("steps", []):
            run = step.get("run", "")
            assert "github.event" not in run and "github.head_ref" not in run, (
                f"{path.name}:{name}: untrusted event text in a run: line (pass it through env)"
            )
            if "actions/checkout@" in step.get("uses", ""):
                assert step.get("with", {}).get("persist-credentials") is False, (
                    f"{path.name}:{name}"
                )


def test_ci_matrix_covers_arm_and_x86_and_pythons() -> None:
    yaml = pytest.importorskip("yaml")
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    matrix = ci["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-24.04-arm", "ubuntu-24.04"}
    assert matrix["python"] == ["3.10", "3.11", "3.12", "3.13"]
    mlops = yaml.safe_load(
        (ROOT / ".github" / "workflows" / "mlops.yml").read_text(encoding="utf-8")
    )
    assert mlops["jobs"]["test"]["strategy"]["matrix"]["backend"] == [
        "native",
        "torch",
        "torch-onednn-off",
    ]


def test_py310_constraints_pin_the_same_packages() -> None:
    main = _pins(ROOT / "constraints.txt")
    py310 = _pins(ROOT / "constraints-py310.txt")
    assert set(main) == set(py310), f"differ: {sorted(set(main) ^ set(py310))}"
    differing = {k for k in main if main[k] != py310[k]}
    assert differing <= {"numpy", "pillow", "onnxruntime", "matplotlib"}, differing
