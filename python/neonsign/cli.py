"""The ``neonsign`` command line.

Each subsystem module registers its own subcommands through a ``register_cli(subparsers)``
function, so this file stays a thin dispatcher and importing it stays cheap (no torch import
until a command that needs it runs). A handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import NeonsignError

# Modules that contribute subcommands, in help order.
_COMMAND_MODULES = (
    "neonsign.mainjob",  # main
    "neonsign.data",  # synth, download, data info
    "neonsign.train",  # train
    "neonsign.evaluate",  # test
    "neonsign.profiler",  # profile, backends, compare
    "neonsign.serve",  # serve
    "neonsign.registry",  # registry
    "neonsign.gate",  # gate
    "neonsign.pipeline",  # pipeline
    "neonsign.retrain",  # retrain-check
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neonsign",
        description="Traffic-sign recognition (GTSRB) MLOps on Arm CPUs.",
    )
    parser.add_argument("--version", action="version", version=f"neonsign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not built yet; its commands are simply absent
                continue
            raise
        module.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except NeonsignError as exc:
        print(f"neonsign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
