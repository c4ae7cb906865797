"""The command-line package: the registry of commands, lazy imports, one handler signature,
settings resolved when a command runs, and the error boundary of ``neonsign.cli.main``.

The matrix of bad invocations of every command, run as subprocesses, is test_cli_errors.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from neonsign import cli
from neonsign.errors import NeonsignValueError


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The neonsign.cli.* modules imported after running ``code`` in a fresh interpreter."""
    probe = (
        "import sys\n"
        "from neonsign.cli import main\n"
        "try:\n"
        f"    {code}\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(m for m in sys.modules if m.startswith('neonsign.cli.')), file=sys.stderr)"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    return set(r.stderr.strip().splitlines()[-1].split()) if r.stderr.strip() else set()


def test_help_lists_every_command_without_importing_any(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command.name in out and command.summary.split()[0] in out
    assert _modules_after("main(['--help'])") == set()


def test_version_imports_no_command_module() -> None:
    assert _modules_after("main(['--version'])") == set()


def test_a_command_imports_only_its_module() -> None:
    assert _modules_after("main(['backends'])") == {"neonsign.cli.backends"}
    assert _modules_after("main(['profile', '--help'])") == {
        "neonsign.cli.profile",
        "neonsign.cli.backends",  # profile --list-backends prints the same table
    }


def test_every_command_module_has_the_handler_signature() -> None:
    # + predict, convert; + quantize, export-onnx (issue 16)
    assert len({c.name for c in cli.COMMANDS}) == len(cli.COMMANDS) == 18
    for command in cli.COMMANDS:
        module = cli.load(command)
        parser = argparse.ArgumentParser(prog=f"neonsign {command.name}")
        module.configure(parser)
        assert callable(module.run), command


def test_build_parser_configures_every_command() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["registry", "promote", "3", "--alias", "staging"])
    assert (args.registry_command, args.ref, args.alias) == ("promote", "3", "staging")
    args = parser.parse_args(["data", "info", "ROOT", "--split", "train"])
    assert (args.data_command, args.root, args.split) == ("info", "ROOT", "train")
    args = parser.parse_args(["retrain-check", "--baseline", "m"])
    assert args.max_psi == 0.2 and args.run.__module__ == "neonsign.cli.retrain_check"


def test_serve_options_have_no_environment_defaults(monkeypatch) -> None:
    monkeypatch.setenv("NEONSIGN_PORT", "abc")
    monkeypatch.setenv("NEONSIGN_MODEL", "m")
    args = cli.build_parser("serve").parse_args(["serve"])
    assert args.port is None and args.model is None and args.workers is None


def test_serve_settings_resolved_at_run(monkeypatch) -> None:
    from neonsign.cli import serve
    from neonsign.errors import ConfigError

    parse = cli.build_parser("serve").parse_args
    for name in ("PORT", "WORKERS", "HOST", "MODEL", "THREADS", "ENGINE_THREADS", "MAX_BATCH"):
        monkeypatch.delenv("NEONSIGN_" + name, raising=False)
    _, server = serve.settings(parse(["serve", "m"]))
    assert (server.host, server.port, server.workers, server.log_level) == (
        "127.0.0.1",
        8000,
        1,
        "info",
    )
    monkeypatch.setenv("NEONSIGN_PORT", "9001")
    monkeypatch.setenv("NEONSIGN_HOST", "0.0.0.0")
    monkeypatch.setenv("NEONSIGN_MAX_BATCH", "8")
    _, server = serve.settings(parse(["serve", "m"]))
    assert (server.host, server.port) == ("0.0.0.0", 9001)
    assert serve.settings(parse(["serve", "m", "--port", "7"]))[1].port == 7  # option wins
    config, _ = serve.settings(parse(["serve", "m", "--engine-threads", "0"]))
    assert (config.model, config.max_batch, config.engine_threads) == ("m", 8, None)
    assert serve.settings(parse(["serve", "m", "--max-batch", "2"]))[0].max_batch == 2
    monkeypatch.setenv("NEONSIGN_PORT", "abc")
    with pytest.raises(ConfigError, match="NEONSIGN_PORT"):
        serve.settings(parse(["serve", "m"]))
    with pytest.raises(SystemExit) as exit_info:  # argparse: "argument --port: ... 1 to 65535"
        parse(["serve", "m", "--port", "70000"])
    assert exit_info.value.code == 2
    monkeypatch.setenv("NEONSIGN_PORT", "70000")
    with pytest.raises(ConfigError, match="NEONSIGN_PORT"):
        serve.settings(parse(["serve", "m"]))


# ---------------------------------------------------------------------------------------------
# The error boundary


def _fail_with(monkeypatch, exc: BaseException) -> None:
    from neonsign.cli import backends

    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(backends, "run", run)


def test_neonsign_error_is_one_line(monkeypatch, capsys) -> None:
    _fail_with(monkeypatch, NeonsignValueError("bad thing in /x/y"))
    assert cli.main(["backends"]) == 2
    assert capsys.readouterr().err == "neonsign backends: error: bad thing in /x/y\n"


def test_debug_reraises(monkeypatch) -> None:
    _fail_with(monkeypatch, NeonsignValueError("bad"))
    with pytest.raises(NeonsignValueError):
        cli.main(["--debug", "backends"])
    monkeypatch.setenv("NEONSIGN_DEBUG", "1")
    with pytest.raises(NeonsignValueError):
        cli.main(["backends"])


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            FileNotFoundError(2, "No such file or directory", "/data/x.ppm"),
            "cannot access /data/x.ppm: No such file or directory",
        ),
        (OSError(28, "No space left on device"), "No space left on device"),
        (FileNotFoundError("report /r.json does not exist"), "report /r.json does not exist"),
    ],
)
def test_an_escaped_os_error_is_one_line(monkeypatch, capsys, exc, message) -> None:
    _fail_with(monkeypatch, exc)
    assert cli.main(["backends"]) == 2
    assert capsys.readouterr().err == f"neonsign backends: error: {message}\n"


@pytest.mark.parametrize(
    ("module", "extra"),
    [("torch", "torch"), ("fastapi", "serve"), ("mlflow.tracking", "mlflow")],
)
def test_a_missing_optional_dependency_names_the_extra(monkeypatch, capsys, module, extra):
    _fail_with(monkeypatch, ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert cli.main(["backends"]) == 2
    top = module.split(".")[0]
    assert capsys.readouterr().err == (
        f"neonsign backends: error: {top} is not installed; install it with: "
        f"pip install 'neonsign[{extra}]'\n"
    )


def test_keyboard_interrupt(monkeypatch, capsys) -> None:
    _fail_with(monkeypatch, KeyboardInterrupt())
    assert cli.main(["backends"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_argument_errors_keep_argparse_format(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["backends", "extra"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "neonsign backends: error: unrecognized arguments: extra"
    )


def test_python_dash_m_entry_points() -> None:
    for module in ("neonsign", "neonsign.cli"):
        r = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True
        )
        assert r.returncode == 0 and r.stdout.startswith("neonsign "), r.stderr
