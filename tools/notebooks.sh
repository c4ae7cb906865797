#!/usr/bin/env bash
# Execute every notebook in notebooks/ (tools/notebook_outputs.py: a fresh kernel each, cells in
# order, a failing cell fails the run) and check that the committed outputs are up to date in
# structure (cells, sources, output kinds: a figure is still a figure; numbers and timings may
# differ). --update writes the outputs of this run into the committed notebooks instead.
#
# Usage: bash tools/notebooks.sh [--update] [notebooks/NAME.ipynb ...]   (default: all)
# Needs the `notebooks` extra (and `torch` for 01_quickstart's training):
#     pip install -c constraints.txt -e '.[torch,notebooks]'
# Check mode runs CI-sized (the knobs below; each notebook well under a minute on 2 busy cores);
# --update runs the notebooks' own defaults (what a reader runs, what the committed outputs show)
# unless the knobs are set from outside: NEONSIGN_NB_PER_CLASS, NEONSIGN_NB_TEST,
# NEONSIGN_NB_EPOCHS, NEONSIGN_NB_THREADS, NEONSIGN_NB_BATCH, NEONSIGN_NB_REPEATS, NEONSIGN_NB_N,
# NEONSIGN_NB_LIMIT, NEONSIGN_NB_MODEL; GTSRB_ROOT selects the real data set.
# NEONSIGN_NB_HTML=DIR also writes the executed notebooks to DIR as HTML with their figures (what
# ci.yml uploads); NEONSIGN_ARTIFACTS=DIR keeps the executed .ipynb files in DIR/notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$PWD/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
update=()
if [ "${1:-}" = "--update" ]; then
    update=(--update)
    shift
fi
if [ $# -eq 0 ]; then
    set -- notebooks/*.ipynb
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/neonsign-notebooks.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# the kernel's inline backend (not Agg) turns each figure into an image/png output
export MPLBACKEND=module://matplotlib_inline.backend_inline PYTHONUNBUFFERED=1
export NEONSIGN_NB_WORKDIR="${NEONSIGN_NB_WORKDIR:-$tmp/work}"
if [ ${#update[@]} -eq 0 ]; then
    export NEONSIGN_NB_PER_CLASS="${NEONSIGN_NB_PER_CLASS:-20}" NEONSIGN_NB_TEST="${NEONSIGN_NB_TEST:-215}"
    export NEONSIGN_NB_EPOCHS="${NEONSIGN_NB_EPOCHS:-2}" NEONSIGN_NB_THREADS="${NEONSIGN_NB_THREADS:-1}"
    export NEONSIGN_NB_BATCH="${NEONSIGN_NB_BATCH:-16}" NEONSIGN_NB_REPEATS="${NEONSIGN_NB_REPEATS:-3}"
    export NEONSIGN_NB_N="${NEONSIGN_NB_N:-500}"
fi
extra=()
[ -n "${NEONSIGN_NB_HTML:-}" ] && extra+=(--html "$NEONSIGN_NB_HTML")
[ -n "${NEONSIGN_ARTIFACTS:-}" ] && extra+=(--out "$NEONSIGN_ARTIFACTS/notebooks")
status=0
for nb in "$@"; do
    # one work directory for all: 02_backends profiles the model 01_quickstart trained
    "$PY" tools/notebook_outputs.py run "${update[@]}" "${extra[@]}" "$nb" || status=1
done
exit $status
