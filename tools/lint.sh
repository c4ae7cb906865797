#!/usr/bin/env bash
# Static gates: ruff (lint + format), mypy (configured in pyproject.toml) and clang-format for the
# C sources. Uses .venv (tools/setup.sh installs the pinned tools with the dev extra).
# Usage: bash tools/lint.sh [--fix]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
c_sources() { git ls-files 'csrc/*.c' 'csrc/*.h' 'tests/c/*.c' 'tests/c/*.h' 'tests/fuzz/*.c'; }
if [ "${1:-}" = "--fix" ]; then
    "$bin/ruff" check --fix .
    "$bin/ruff" format .
    c_sources | xargs "$bin/clang-format" -i
    exit 0
fi
status=0
echo "ruff check";     "$bin/ruff" check . || status=1
echo "ruff format";    "$bin/ruff" format --check . || status=1
echo "mypy";           "$bin/mypy" || status=1
echo "clang-format";   c_sources | xargs "$bin/clang-format" --dry-run -Werror || status=1
[ $status -eq 0 ] && echo "static checks: all clean"
exit $status
