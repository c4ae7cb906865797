#!/usr/bin/env python3
"""Markdown tables for GitHub's job summary ($GITHUB_STEP_SUMMARY) from what the jobs write:

    summary.py pytest reports/pytest.xml         # totals of a JUnit XML report (+ failures)
    summary.py test results/test-*.json          # `neonsign test --json`: accuracy per framing
    summary.py gate results/gate.json            # `neonsign gate --out`: verdict and checks
    summary.py text "Title" reports/x.txt        # a text report (benchmark tables) as a block

The table is printed to stdout (the workflow appends it to the summary). Standard library
only, so it runs on a bare runner's ``python3``. A missing or unreadable input is an error
(exit 1): a summary that silently says nothing would hide a step that wrote nothing.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MAX_LISTED = 20


def pytest_table(path: Path) -> str:
    """Totals over every <testsuite> of a JUnit XML report, and the first failures by name."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: 0 for k in ("tests", "failures", "errors", "skipped")}
    seconds = 0.0
    for suite in suites:
        for key in total:
            total[key] += int(suite.get(key, 0))
        seconds += float(suite.get("time", 0))
    failed = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    lines = [
        "### pytest",
        "",
        "| tests | passed | failed | errors | skipped | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {total['tests']} | {passed} | {total['failures']} | {total['errors']} "
        f"| {total['skipped']} | {seconds:.1f} |",
    ]
    if failed:
        lines += ["", "Failed:", *[f"- `{name}`" for name in failed[:MAX_LISTED]]]
        if len(failed) > MAX_LISTED:
            lines.append(f"- ... and {len(failed) - MAX_LISTED} more")
    return "\n".join(lines)


def test_table(paths: list[Path]) -> str:
    """One row per `neonsign test --json` result: backend, accuracy per framing, speed."""
    lines = [
        "### Test split: accuracy per backend and framing",
        "",
        "| backend | card framing | accuracy (ROI crops) | accuracy (whole images) | images | images/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path in paths:
        r: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        framings = r.get("framings") or {r.get("framing", "roi"): r}
        acc = {name: f"{framings[name]['accuracy'] * 100:.2f}%" for name in framings}
        ips = r.get("timing", {}).get("images_per_second")
        lines.append(
            f"| {r['backend']} | {r.get('framing', '?')} | {acc.get('roi', '-')} "
            f"| {acc.get('whole', '-')} | {r['n_images']} | "
            f"{'-' if ips is None else f'{ips:,.0f}'} |"
        )
    return "\n".join(lines)


def gate_table(path: Path) -> str:
    """The gate's verdict: accepted or refused with reasons, and every check."""
    v: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    head = "accepted" if v["accepted"] else "**refused**"
    lines = [f"### Validation gate: {head}", ""]
    cand, champ = v.get("candidate") or {}, v.get("champion") or {}
    if cand:
        lines.append(
            f"Candidate `{str(cand.get('weights_sha256'))[:12]}`, champion: "
            + (f"`{str(champ.get('weights_sha256'))[:12]}`" if champ else "none yet")
        )
        lines.append("")
    lines += ["| check | passed | detail |", "|---|---|---|"]
    for check in v["checks"]:
        detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check['name']} | {'yes' if check['passed'] else '**no**'} | {detail} |")
    return "\n".join(lines)


def text_block(title: str, path: Path) -> str:
    return f"### {title}\n\n```text\n{path.read_text(encoding='utf-8').rstrip()}\n```"


def main(argv: list[str]) -> int:
    usage = "usage: summary.py pytest XML | test JSON... | gate JSON | text TITLE FILE"
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    kind, args = argv[0], argv[1:]
    try:
        if kind == "pytest":
            out = pytest_table(Path(args[0]))
        elif kind == "test":
            out = test_table([Path(a) for a in args])
        elif kind == "gate":
            out = gate_table(Path(args[0]))
        elif kind == "text" and len(args) == 2:
            out = text_block(args[0], Path(args[1]))
        else:
            print(usage, file=sys.stderr)
            return 2
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError) as exc:
        print(f"summary.py {kind}: {exc}", file=sys.stderr)
        return 1
    print(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
