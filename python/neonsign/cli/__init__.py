"""The ``neonsign`` command line: a registry of commands and one error boundary.

Every command lives in a module of this package, ``neonsign.cli.<module>``, with two functions:

- ``configure(parser: argparse.ArgumentParser) -> None`` adds the command's arguments (and its
  own subcommands, e.g. ``registry list``); it reads no environment variable and no file.
- ``run(args: argparse.Namespace) -> int`` does the work and returns the exit status. Settings
  that default to an environment variable are resolved here, so a bad ``NEONSIGN_PORT`` breaks
  ``neonsign serve`` only, with a one-line error.

:data:`COMMANDS` lists them as ``(name, module, summary)``. ``neonsign --help`` is built from the
summaries alone, and running a command imports that command's module only.

:func:`main` is the error boundary: a :class:`~neonsign.errors.NeonsignError` (and an OSError or
ImportError that escapes the library, converted to one) is printed as
``neonsign COMMAND: error: MESSAGE`` with exit status 2, never a traceback; Ctrl-C prints
``interrupted`` and exits 130. ``--debug`` (or ``NEONSIGN_DEBUG=1``) re-raises instead, for a
developer who wants the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple, Protocol, cast

from .. import __version__
from ..backends import prefer_passive_openmp
from ..errors import MissingDependencyError, NeonsignError, os_error, os_error_class

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

#: Commands that time libtorch beside the native engine in one process: their libtorch OpenMP
#: workers sleep when idle instead of spinning on the native engine's cores
#: (:func:`neonsign.backends.prefer_passive_openmp`; a policy the user set is kept).
_TIMES_BACKENDS_SIDE_BY_SIDE = frozenset({"main", "profile"})


class Command(NamedTuple):
    """One ``neonsign`` command: its name, its module in this package, its one-line summary."""

    name: str
    module: str
    summary: str


#: Every command, in ``--help`` order.
COMMANDS: tuple[Command, ...] = (
    Command(
        "main", "mainjob", "the main job: data -> train -> test -> profile -> compare -> report"
    ),
    Command("synth", "synth", "write a synthetic GTSRB-format data set"),
    Command("download", "download", "download and extract the official GTSRB archives"),
    Command("data", "data", "inspect data sets"),
    Command("train", "train", "train TrafficSignNet and write a model directory"),
    Command("test", "test", "test a model on a split: accuracy, per-class, confusion, profile"),
    Command("predict", "predict", "classify image files: one row per image (table, CSV, JSON)"),
    Command("convert", "convert", "convert a learning-path .pth to a model directory, or back"),
    Command("profile", "profile", "per-layer timing of every backend in one process"),
    Command("backends", "backends", "list the profiler's backends on this machine"),
    Command(
        "compare",
        "compare",
        "compare two profile reports (or two backends) and gate on regressions",
    ),
    Command("serve", "serve", "serve a model over HTTP (FastAPI + uvicorn on the native engine)"),
    Command(
        "registry", "registry", "model registry (MLflow): list, show, register, promote, rollback"
    ),
    Command("gate", "gate", "validation gate: accuracy, latency, native/PyTorch parity"),
    Command(
        "pipeline", "pipeline", "train -> test -> profile -> gate -> register/promote, resumable"
    ),
    Command(
        "retrain-check", "retrain_check", "decide whether to retrain (data change, drift, age)"
    ),
    Command("quantize", "quantize", "post-training int8 quantization of a model directory"),
    Command("export-onnx", "export_onnx", "export a model to ONNX (float32, or QDQ int8)"),
)

#: Optional dependencies and the extra that installs them (for MissingDependencyError messages).
_EXTRAS = {
    "torch": "torch",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
    "mlflow": "mlflow",
    "sqlalchemy": "mlflow",
    "alembic": "mlflow",
    "matplotlib": "notebooks",
    "onnx": "onnx",
}


class CommandModule(Protocol):
    """What every ``neonsign.cli.<module>`` provides."""

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def load(command: Command) -> CommandModule:
    """Import the module of ``command`` (and nothing else)."""
    return cast(CommandModule, importlib.import_module(f"{__name__}.{command.module}"))


def _base_parser() -> tuple[
    argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]
]:
    parser = argparse.ArgumentParser(
        prog="neonsign",
        description="Traffic-sign recognition (GTSRB) MLOps on Arm CPUs.",
        epilog="Run 'neonsign COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"neonsign {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error instead of one line (also NEONSIGN_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    return parser, sub


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``neonsign`` parser. Every command is listed with its summary; the arguments of the
    command named ``only`` are configured, or of every command when ``only`` is None (that
    imports every command module: for tests and documentation, not for :func:`main`)."""
    return _build(only)[0]


def _build(
    only: str | None,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and the subparser of each configured command."""
    parser, sub = _base_parser()
    configured = {}
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.summary, description=command.summary)
        if only is None or command.name == only:
            module = load(command)
            module.configure(p)
            p.set_defaults(run=module.run)
            configured[command.name] = p
    return parser, configured


def _parse(argv: Sequence[str], name: str | None) -> argparse.Namespace:
    """Parse ``argv`` configuring only command ``name``. Arguments left over are reported by
    the command's parser, so the message reads ``neonsign COMMAND: error: ...`` as every
    other argument error of the command does (argparse would use the top-level prog)."""
    known = name if any(c.name == name for c in COMMANDS) else ""  # "": configure none
    parser, configured = _build(known)
    args, extra = parser.parse_known_args(argv)
    if extra:
        configured.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _command_name(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: its first argument that is not an option (the top-level
    parser has flags only, so no option takes a value before the command)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _debug(argv: Sequence[str], name: str | None) -> bool:
    top = argv[: argv.index(name)] if name is not None else argv
    return "--debug" in top or os.environ.get("NEONSIGN_DEBUG", "") not in ("", "0")


def _as_neonsign_error(exc: Exception) -> NeonsignError:
    """The safety net: an OSError or ImportError that escaped the library as a NeonsignError
    (the library converts its own; one reaching here is a gap to close where it was raised)."""
    if isinstance(exc, NeonsignError):
        return exc
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return os_error(exc, "access")
        # no file name to add: keep the message (which names the file, if anything does)
        return os_error_class(exc.errno)(exc.strerror or str(exc), exc.errno)
    assert isinstance(exc, ImportError)
    top = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return NeonsignError(f"cannot import {exc.name or 'a module'}: {exc}")
    return MissingDependencyError(
        f"{top} is not installed; install it with: pip install 'neonsign[{extra}]'", name=top
    )


def _stdout_is_broken() -> bool:
    """True when standard output is a pipe whose reader has closed it (poll reports POLLERR
    on such a pipe's write end); a broken pipe elsewhere (a socket) is a real error."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return False


def _quiet_after_broken_stdout() -> int:
    """Point stdout at /dev/null (so the interpreter's final flush cannot fail again) and
    return 141, the status of a process ended by SIGPIPE, as ``yes | head`` reports it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``neonsign ARGV`` (default ``sys.argv[1:]``) and return the exit status: 0 on
    success, 1 when a command's check failed (gate, compare, retrain-check), 2 on an error,
    130 when interrupted, 141 (as SIGPIPE would) when the reader of stdout has gone away.
    Argument errors exit through argparse (SystemExit with status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command_name(argv)
    debug = _debug(argv, name)
    if name in _TIMES_BACKENDS_SIDE_BY_SIDE:  # before anything loads torch (libgomp reads it once)
        prefer_passive_openmp()
    try:
        args = _parse(argv, name)
        return int(args.run(args))
    except BrokenPipeError as exc:
        if _stdout_is_broken():  # the reader went away (`neonsign ... | head`): not an error
            return _quiet_after_broken_stdout()
        if debug:
            raise
        print(f"neonsign {name}: error: {_as_neonsign_error(exc)}", file=sys.stderr)
        return 2
    except (NeonsignError, OSError, ImportError) as exc:
        if debug:
            raise
        print(f"neonsign {name}: error: {_as_neonsign_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
