"""``neonsign registry list|show|register|promote|rollback``: the MLflow model registry
(:class:`neonsign.app.registry.Registry`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..app.registry import DEFAULT_NAME, Registry
from ..errors import NeonsignValueError


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every action takes, before or after the action word
    (``neonsign registry --json show champion`` and ``neonsign registry show champion --json``).
    The action's copies default to SUPPRESS so they never overwrite a value given before it."""

    def value(v: object) -> object:
        return argparse.SUPPRESS if default is argparse.SUPPRESS else v

    parser.add_argument(
        "--registry-uri",
        default=value(None),
        help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite in $NEONSIGN_REGISTRY or ./registry)",
    )
    parser.add_argument(
        "--name",
        default=value(DEFAULT_NAME),
        help=f"registered model name (default {DEFAULT_NAME}; letters, digits, '_', '-', '.')",
    )
    parser.add_argument("--json", action="store_true", default=value(False), help="print JSON")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Model registry on MLflow: register model directories, list, show, promote, roll back."
    )
    _common(parser, None)
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION")
    sub.required = True

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary)
        _common(p, argparse.SUPPRESS)
        return p

    action("list", "every version, newest first")
    s = action("show", "one version (number or alias)")
    s.add_argument("ref")
    s = action(
        "register",
        "register a model directory (or a learning-path .pth) as a new version; weights "
        "already registered give back their version",
    )
    s.add_argument("model_dir", help="model directory, or a .pth converted to one first")
    s.add_argument("--alias", default=None, help="also point this alias at it (e.g. challenger)")
    s = action("promote", "point an alias (default champion) at a version")
    s.add_argument("ref", help="version number or alias (e.g. challenger)")
    s.add_argument("--alias", default="champion")
    s = action("rollback", "move an alias back to its previous version")
    s.add_argument("--alias", default="champion")


def run(args: argparse.Namespace) -> int:
    reg = Registry(args.registry_uri, args.name)
    action = args.registry_command
    if action == "list":
        _print([v.to_dict() for v in reg.list()], args.json)
    elif action == "show":
        v = reg.show(args.ref).to_dict()
        v["history"] = {a: reg.history(a) for a in v["aliases"]}
        _print(v, args.json)
    elif action == "register":
        _print(reg.register(args.model_dir, alias=args.alias).to_dict(), args.json)
    elif action == "promote":
        _print(reg.promote(args.ref, args.alias).to_dict(), args.json)
    elif action == "rollback":
        _print(reg.rollback(args.alias).to_dict(), args.json)
    else:
        raise NeonsignValueError(f"unknown registry command {action!r}")
    return 0


def _print(obj: Any, as_json: bool) -> None:
    """A version (or a list of them) as JSON or as one line each."""
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
        return
    rows = obj if isinstance(obj, list) else [obj]
    for v in rows:
        m = v["metrics"]
        acc = m.get("test_accuracy", m.get("accuracy", m.get("val_accuracy")))
        print(
            f"v{v['version']:<4} {','.join(v['aliases']) or '-':<22} "
            f"acc={'n/a' if acc is None else f'{acc:.4f}'}  "
            f"sha256={v['tags'].get('weights_sha256', '?')[:12]}  "
            f"data={v['tags'].get('data_checksum', '?')[:12]}  code={v['tags'].get('code_version', '?')}  "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime((v['created'] or 0) / 1000))}Z"
        )
