"""``neonsign backends``: list the profiler's backends on this machine, available or not (why)."""

from __future__ import annotations

import argparse

from ..backends import list_backends


def configure(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    return print_backends()


def print_backends() -> int:
    """Print one line per backend (``neonsign profile --list-backends`` too)."""
    for b in list_backends():
        mark = "yes" if b.available else "no "
        extra = "" if b.available else f"  ({b.reason})"
        print(f"{mark}  {b.name:<20} {b.description}{extra}")
    return 0
