#!/usr/bin/env bash
# Run every notebook in notebooks/ as a script: `jupyter nbconvert --to script` into a temporary
# folder, then python with MPLBACKEND=Agg. A failing cell fails the run.
#
# Usage: bash tools/notebooks.sh [notebooks/NAME.ipynb ...]   (default: all of notebooks/*.ipynb)
# Needs the `notebooks` extra (and `torch` for 01_quickstart's training):
#     pip install -c constraints.txt -e '.[torch,notebooks]'
# Size knobs (environment; the defaults below are CI-sized): NEONSIGN_NB_PER_CLASS, NEONSIGN_NB_TEST,
# NEONSIGN_NB_EPOCHS, NEONSIGN_NB_THREADS, NEONSIGN_NB_BATCH, NEONSIGN_NB_REPEATS, NEONSIGN_NB_N,
# NEONSIGN_NB_LIMIT; GTSRB_ROOT selects the real data set.
# NEONSIGN_NB_HTML=DIR executes the notebooks themselves instead (jupyter nbconvert --execute) and
# writes them to DIR as HTML with their outputs and figures (what ci.yml uploads as artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$PWD/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ $# -eq 0 ]; then
    set -- notebooks/*.ipynb
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/neonsign-notebooks.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
export NEONSIGN_NB_WORKDIR="${NEONSIGN_NB_WORKDIR:-$tmp/work}"
# CI-sized defaults (each notebook well under a minute on 2 busy cores); override from outside.
export NEONSIGN_NB_PER_CLASS="${NEONSIGN_NB_PER_CLASS:-20}" NEONSIGN_NB_TEST="${NEONSIGN_NB_TEST:-215}"
export NEONSIGN_NB_EPOCHS="${NEONSIGN_NB_EPOCHS:-2}" NEONSIGN_NB_THREADS="${NEONSIGN_NB_THREADS:-1}"
export NEONSIGN_NB_BATCH="${NEONSIGN_NB_BATCH:-16}" NEONSIGN_NB_REPEATS="${NEONSIGN_NB_REPEATS:-3}"
export NEONSIGN_NB_N="${NEONSIGN_NB_N:-500}"
run_notebook() {  # NOTEBOOK NAME
    if [ -n "${NEONSIGN_NB_HTML:-}" ]; then
        # the kernel's inline backend (not Agg) puts each figure into the HTML
        MPLBACKEND=module://matplotlib_inline.backend_inline \
            "$PY" -m jupyter nbconvert --log-level WARN --to html --execute \
            --ExecutePreprocessor.timeout=1800 --output-dir "$NEONSIGN_NB_HTML" "$1"
    else
        "$PY" -m jupyter nbconvert --log-level WARN --to script --output-dir "$tmp" "$1" \
            && (cd "$tmp" && "$PY" "$2.py")
    fi
}
status=0
for nb in "$@"; do
    name="$(basename "$nb" .ipynb)"
    start=$(date +%s%N)
    echo "== notebook $name"
    if run_notebook "$nb" "$name"; then
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        printf '== notebook %s passed in %d.%01d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
    else
        echo "== notebook $name FAILED" >&2
        status=1
    fi
    rm -rf "$NEONSIGN_NB_WORKDIR"  # each notebook starts from its own data
done
exit $status
