#!/usr/bin/env bash
# Create .venv and install neonsign (editable) with the pinned stack from constraints.txt.
# Usage: bash tools/setup.sh [extras]   (default extras: torch,serve,dev)
# NEONSIGN_CONSTRAINTS selects another pin file (constraints-py310.txt for Python 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-torch,serve,dev}"
CONSTRAINTS="${NEONSIGN_CONSTRAINTS:-constraints.txt}"  # constraints-py310.txt on Python 3.10
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade -c "$CONSTRAINTS" pip >/dev/null 2>&1 || true
# Build requirements first: the package is built without isolation against these pinned versions.
.venv/bin/python -m pip install -q -c "$CONSTRAINTS" meson-python meson ninja numpy
.venv/bin/python -m pip install -q -c "$CONSTRAINTS" --no-build-isolation -e ".[${extras}]"
