#!/usr/bin/env bash
# Create .venv and install neonsign (editable) with the pinned stack from constraints.txt.
# Usage: bash tools/setup.sh [extras]   (default extras: torch,serve,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-torch,serve,dev}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade -c constraints.txt pip >/dev/null 2>&1 || true
# Build requirements first: the package is built without isolation against these pinned versions.
.venv/bin/python -m pip install -q -c constraints.txt meson-python meson ninja numpy
.venv/bin/python -m pip install -q -c constraints.txt --no-build-isolation -e ".[${extras}]"
