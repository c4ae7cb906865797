"""The bad-invocation matrix: every command, run as a user runs it, with bad input.

Each case runs the real command line (``python -m neonsign ...``) in a subprocess and fails on
any traceback. A bad invocation must end with exit status 2 and a last stderr line
``neonsign COMMAND: error: ...`` (argparse's format for argument errors, the error boundary's
for everything else) that names the offending file, option or setting.

Permissions: as root (these tests' usual container) ``chmod 000`` does not stop reads, so the
unreadable-entry cases put a directory where a file is expected (EISDIR), which fails for every
user; the ``chmod 000`` case runs only as a non-root user. A full disk is ``/dev/full`` as the
output file (ENOSPC on write). A missing optional dependency is simulated by a ``-c`` wrapper
whose import finders do not see ``torch``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serve_helpers import make_model_dir

# Runs `neonsign` with torch invisible to the import system (as if it were not installed).
HIDE_TORCH = """
import sys
class _NoTorch:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            return None
        return self.inner.find_spec(name, path, target)
sys.meta_path[:] = [_NoTorch(f) for f in sys.meta_path]
from neonsign.cli import main
sys.exit(main())
"""


@dataclass(frozen=True)
class Case:
    """``neonsign ARGS`` (``{name}`` placeholders filled from the world) must fail with
    ``neonsign COMMAND: error:`` and ``expect`` in that line."""

    id: str
    args: tuple[str, ...]
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    hide_torch: bool = False
    needs_torch: bool = False  # gets as far as training (without torch it fails earlier)
    marks: tuple[pytest.MarkDecorator, ...] = ()


def case(id: str, args: str, expect: str, **kw) -> Case:
    return Case(id, tuple(args.split()), expect, **kw)


FAST = ["--repeats", "1", "--warmup", "0", "--batch", "4", "--quiet", "--no-aten"]

CASES = [
    # main
    case(
        "main-missing-data", "main --data {missing_dir} --runs {tmp}/runs --quiet", "{missing_dir}"
    ),
    case("main-runs-under-file", "main --data {ds} --runs {file}/runs --quiet", "{file}/runs"),
    case("main-bad-epochs", "main --epochs abc", "--epochs"),
    # synth
    case("synth-root-under-file", "synth {file}/gtsrb -q", "{file}/gtsrb"),
    case("synth-bad-count", "synth {tmp}/s --per-class abc", "--per-class"),
    # download
    case("download-root-under-file", "download {file}/g -q", "{file}/g"),
    case(
        "download-refused",
        "download {tmp}/dl --split test -q --base-url http://127.0.0.1:9/",
        "http://127.0.0.1:9/",
    ),
    case("download-bad-split", "download {tmp}/dl --split validation", "--split"),
    # data
    case("data-info-missing-dir", "data info {missing_dir}", "{missing_dir}"),
    case("data-info-missing-image", "data info {missing} --split train -q", "00000_00000.ppm"),
    case("data-info-dir-for-image", "data info {dirimg} --split train -q", "00000_00000.ppm"),
    case("data-info-disk-full", "data info {ds} --split test -q --json /dev/full", "/dev/full"),
    case(
        "data-info-out-under-file",
        "data info {ds} --split test -q --json {file}/i.json",
        "{file}/i.json",
    ),
    case("data-info-bad-threads", "data info {ds} --split test -q --threads -1", "threads"),
    case("data-info-bad-size", "data info {ds} --size abc", "--size"),
    case("data-no-subcommand", "data", "SUBCOMMAND"),
    case(
        "data-info-bad-env-threads",
        "data info {ds} --split test -q",
        "NEONSIGN_THREADS",
        env={"NEONSIGN_THREADS": "abc"},
    ),
    # train
    case(
        "train-missing-data",
        "train --data {missing_dir} --out {tmp}/m1 --no-mlflow",
        "{missing_dir}",
    ),
    case(
        "train-missing-image",
        "train --data {missing} --out {tmp}/m2 --epochs 1 --no-mlflow --quiet",
        "00000_00000.ppm",
    ),
    case(
        "train-out-under-file",
        "train --data {ds} --out {file}/m --epochs 1 --limit 86 --no-mlflow --quiet",
        "{file}/m",
        needs_torch=True,
    ),
    case("train-bad-epochs", "train --data {ds} --out {tmp}/m3 --epochs abc", "--epochs"),
    case(
        "train-zero-batch",
        "train --data {ds} --out {tmp}/m4 --batch-size 0 --no-mlflow --quiet",
        "batch_size",
    ),
    case(
        "train-without-torch",
        "train --data {ds} --out {tmp}/m5 --epochs 1 --no-mlflow --quiet",
        "pip install 'neonsign[torch]'",
        hide_torch=True,
    ),
    # test
    case("test-missing-model", "test --model {missing_dir} --data {ds}", "{missing_dir}"),
    case("test-missing-data", "test --model {model} --data {missing_dir}", "{missing_dir}"),
    case(
        "test-missing-image",
        "test --model {model} --data {missing} --no-profile --quiet",
        "00000.ppm",
    ),
    case("test-unknown-backend", "test --model {model} --data {ds} --backend cuda", "cuda"),
    case(
        "test-zero-batch",
        "test --model {model} --data {ds} --batch-size 0 --no-profile --quiet",
        "batch_size",
    ),
    case(
        "test-disk-full",
        "test --model {model} --data {ds} --limit 10 --no-profile --quiet --plot {tmp}/c.png --json /dev/full",
        "/dev/full",
    ),
    case(
        "test-plot-under-file",
        "test --model {model} --data {ds} --limit 10 --no-profile --quiet --plot {file}/c.png",
        "{file}/c.png",
    ),
    case(
        "test-without-torch",
        "test --model {model} --data {ds} --backend torch --quiet",
        "pip install 'neonsign[torch]'",
        hide_torch=True,
    ),
    # predict
    case("predict-missing-input", "predict {missing_dir} --model {model}", "{missing_dir}"),
    case("predict-missing-model", "predict {image} --model {missing_dir}", "{missing_dir}"),
    case("predict-no-images", "predict {tmp}/empty* --model {model}", "{tmp}/empty*"),
    case("predict-strict-bad-image", "predict {file} --model {model} --strict", "{file}"),
    case("predict-bad-roi", "predict {image} --model {model} --roi 1,2,3", "--roi"),
    case("predict-bad-top-k", "predict {image} --model {model} --top-k 0", "top_k"),
    case("predict-bad-format", "predict {image} --model {model} --format xml", "--format"),
    case("predict-disk-full", "predict {image} --model {model} -o /dev/full", "/dev/full"),
    case(
        "predict-output-under-file",
        "predict {image} --model {model} -o {file}/rows.json",
        "{file}/rows.json",
    ),
    case(
        "predict-pth-without-torch",
        "predict {image} --model {pth}",
        "pip install 'neonsign[torch]'",
        hide_torch=True,
    ),
    # convert
    case("convert-missing-source", "convert {missing_dir}/x.pth {tmp}/c1", "{missing_dir}/x.pth"),
    case("convert-dir-to-dir", "convert {model} {tmp}/c2", "{tmp}/c2"),
    case("convert-no-arguments", "convert", "src"),
    case(
        "convert-pth-without-torch",
        "convert {pth} {tmp}/c3",
        "pip install 'neonsign[torch]'",
        hide_torch=True,
    ),
    case(
        "convert-to-pth-without-torch",
        "convert {model} {tmp}/c4.pth",
        "pip install 'neonsign[torch]'",
        hide_torch=True,
    ),
    # profile
    case(
        "profile-missing-image",
        "profile --data {missing} --split test --backends native " + " ".join(FAST),
        "00000.ppm",
    ),
    case(
        "profile-missing-model",
        "profile --model {missing_dir} --backends native --quiet",
        "{missing_dir}",
    ),
    case("profile-zero-batch", "profile --batch 0", "--batch"),
    case("profile-negative-threads", "profile --threads -1", "--threads"),
    case("profile-unknown-backend", "profile --backends nosuch --quiet", "nosuch"),
    case(
        "profile-disk-full",
        "profile --backends native --json /dev/full " + " ".join(FAST),
        "/dev/full",
    ),
    case(
        "profile-markdown-under-file",
        "profile --backends native --markdown {file}/p.md " + " ".join(FAST),
        "{file}/p.md",
    ),
    # backends
    case("backends-extra-argument", "backends extra", "extra"),
    # compare
    case(
        "compare-missing-report",
        "compare {missing_dir}/base.json {report}",
        "{missing_dir}/base.json",
    ),
    case("compare-not-json", "compare {file} {report}", "{file}"),
    case("compare-one-report", "compare {report}", "two reports"),
    case(
        "compare-bad-percent", "compare {report} {report} --fail-if-slower abc", "--fail-if-slower"
    ),
    case(
        "compare-unknown-backend",
        "compare {report} --base-backend native --new-backend nosuch",
        "nosuch",
    ),
    case("compare-disk-full", "compare {report} {report} --json /dev/full", "/dev/full"),
    # serve
    case("serve-bad-port-env", "serve {model}", "NEONSIGN_PORT", env={"NEONSIGN_PORT": "abc"}),
    case(
        "serve-bad-batch-env",
        "serve {model}",
        "NEONSIGN_MAX_BATCH",
        env={"NEONSIGN_MAX_BATCH": "x"},
    ),
    case(
        "serve-zero-workers-env", "serve {model}", "NEONSIGN_WORKERS", env={"NEONSIGN_WORKERS": "0"}
    ),
    case("serve-missing-model", "serve {missing_dir}", "{missing_dir}"),
    case("serve-no-model", "serve", "NEONSIGN_MODEL"),
    case("serve-bad-port", "serve {model} --port abc", "--port"),
    case("serve-unknown-kernel", "serve {model} --kernel nosuch", "nosuch"),
    # registry
    case("registry-no-action", "registry", "ACTION"),
    case("registry-register-missing", "registry register {missing_dir}", "{missing_dir}"),
    # gate
    case("gate-missing-candidate", "gate --candidate {missing_dir} --data {ds}", "{missing_dir}"),
    case("gate-missing-data", "gate --candidate {model} --data {missing_dir}", "{missing_dir}"),
    case(
        "gate-missing-result",
        "gate --candidate {model} --data {ds} --candidate-result {missing_dir}/t.json",
        "{missing_dir}/t.json",
    ),
    case(
        "gate-bad-percent",
        "gate --candidate {model} --data {ds} --fail-if-slower abc",
        "--fail-if-slower",
    ),
    # pipeline
    case(
        "pipeline-missing-data",
        "pipeline --data {missing_dir} --run-dir {tmp}/r1 --no-registry --quiet",
        "{missing_dir}",
    ),
    case(
        "pipeline-run-dir-under-file",
        "pipeline --data {ds} --run-dir {file}/r --no-registry --quiet",
        "{file}/r",
        needs_torch=True,
    ),
    case(
        "pipeline-unknown-stage", "pipeline --data {ds} --run-dir {tmp}/r2 --from nosuch", "nosuch"
    ),
    # retrain-check
    case(
        "retrain-missing-metrics",
        "retrain-check --metrics {missing_dir}/metrics --baseline {model}",
        "{missing_dir}/metrics",
    ),
    case("retrain-missing-baseline", "retrain-check --baseline {missing_dir}", "{missing_dir}"),
    case(
        "retrain-missing-data",
        "retrain-check --baseline {model} --data {missing_dir}",
        "{missing_dir}",
    ),
    case("retrain-bad-psi", "retrain-check --baseline {model} --max-psi abc", "--max-psi"),
    # quantize (issue 16)
    case(
        "quantize-missing-model",
        "quantize --model {missing_dir} --data {ds} --out {tmp}/q",
        "{missing_dir}",
    ),
    case(
        "quantize-missing-data",
        "quantize --model {model} --data {missing_dir} --out {tmp}/q",
        "{missing_dir}",
    ),
    case(
        "quantize-out-under-file",
        "quantize --model {model} --data {ds} --out {file}/q --images 8",
        "{file}/q",
    ),
    case(
        "quantize-bad-method",
        "quantize --model {model} --data {ds} --out {tmp}/q --method best",
        "--method",
    ),
    # export-onnx (issue 16)
    case(
        "export-onnx-missing-model",
        "export-onnx --model {missing_dir} --out {tmp}/m.onnx",
        "{missing_dir}",
    ),
    case(
        "export-onnx-out-under-file",
        "export-onnx --model {model} --out {file}/m.onnx",
        "{file}/m.onnx",
    ),
]


@dataclass(frozen=True)
class World:
    """Files the cases point at (``{name}`` in a case's arguments)."""

    tmp: Path
    values: dict[str, str]

    def fill(self, text: str) -> str:
        return text.format(**self.values)


def _copy_without(src: Path, dst: Path, *relative: str, as_dir: bool = False) -> Path:
    """A copy of ``src`` with the files ``relative`` deleted (or replaced by directories)."""
    shutil.copytree(src, dst)
    for rel in relative:
        (dst / rel).unlink()
        if as_dir:
            (dst / rel).mkdir()
    return dst


@pytest.fixture(scope="module")
def world(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    from neonsign.profiler import profile

    tmp = tmp_path_factory.mktemp("bad_invocations")
    train_image = "Final_Training/Images/00003/00000_00000.ppm"
    test_image = "Final_Test/Images/00000.ppm"
    afile = tmp / "a_file"
    afile.write_text("not a directory, not JSON\n")
    pth = tmp / "learning.pth"  # never read: without torch the load stops before it
    pth.write_bytes(b"not a pickle")
    report = tmp / "report.json"
    profile(backends=["native"], batch=1, repeats=1, warmup=0, progress=False).save_json(report)
    values = {
        "tmp": str(tmp),
        "ds": str(synth_root),
        "missing": str(_copy_without(synth_root, tmp / "missing", train_image, test_image)),
        "dirimg": str(_copy_without(synth_root, tmp / "dirimg", train_image, as_dir=True)),
        "model": str(make_model_dir(tmp / "model", seed=0)),
        "missing_dir": str(tmp / "does_not_exist"),
        "file": str(afile),
        "report": str(report),
        "pth": str(pth),
        "image": str(synth_root / test_image),
    }
    return World(tmp, values)


def child_env(world: World, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the user's NEONSIGN_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEONSIGN_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["NEONSIGN_REGISTRY"] = str(world.tmp / "registry")
    env.update(extra or {})
    return env


def run_neonsign(
    world: World, args: list[str], env: dict[str, str] | None = None, hide_torch: bool = False
) -> subprocess.CompletedProcess[str]:
    prefix = ["-c", HIDE_TORCH] if hide_torch else ["-m", "neonsign"]
    return subprocess.run(
        [sys.executable, *prefix, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=world.tmp,
        env=child_env(world, env),
    )


def assert_one_line_error(r: subprocess.CompletedProcess[str], command: str, expect: str) -> None:
    """Exit status 2, no traceback, the last stderr line ``neonsign COMMAND[ SUB]: error:``
    naming ``expect``."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines, f"nothing on stderr (exit status {r.returncode})"
    last = lines[-1]
    assert re.match(rf"neonsign {re.escape(command)}( [a-z-]+)?: error: ", last), r.stderr
    assert expect in last, f"{expect!r} not named in: {last}"
    assert r.returncode == 2, (r.returncode, r.stderr)


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_invocation(world: World, c: Case) -> None:
    if c.needs_torch:
        pytest.importorskip("torch")
    args = [world.fill(a) for a in c.args]
    r = run_neonsign(world, args, c.env, hide_torch=c.hide_torch)
    assert_one_line_error(r, c.args[0], world.fill(c.expect))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="as root, chmod 000 does not stop reads (the dirimg cases cover unreadable entries)",
)
def test_unreadable_class_folder(world: World, synth_root: Path) -> None:
    root = world.tmp / "unreadable"
    shutil.copytree(synth_root, root)
    folder = root / "Final_Training" / "Images" / "00003"
    folder.chmod(0)
    try:
        r = run_neonsign(world, ["data", "info", str(root), "--split", "train", "-q"])
    finally:
        folder.chmod(0o755)
    assert_one_line_error(r, "data", "00003")


@pytest.mark.parametrize("args", [["--version"], ["backends"], ["--help"], ["data", "--help"]])
def test_a_bad_serve_setting_breaks_only_serve(world: World, args: list[str]) -> None:
    r = run_neonsign(world, args, {"NEONSIGN_PORT": "abc", "NEONSIGN_WORKERS": "many"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_command_is_an_argparse_error(world: World) -> None:
    r = run_neonsign(world, ["nosuch"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("neonsign: error: argument COMMAND")


def test_every_command_is_in_the_matrix() -> None:
    from neonsign.cli import COMMANDS

    covered = {c.args[0] for c in CASES}
    assert covered == {c.name for c in COMMANDS}


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    """`neonsign ... | head`: when the reader of stdout has closed the pipe, the command stops
    quietly with SIGPIPE's status (141), no "error: Broken pipe" and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "neonsign.cli", "backends"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child (still importing) writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "error" not in err and "Traceback" not in err and "Exception ignored" not in err
