#!/usr/bin/env bash
# Build the wheel as a user would (`pip wheel .`, build isolation with the pinned build
# requirements), install it into a fresh venv with the `dev` + `torch` extras from
# constraints.txt, and run the test suite against the INSTALLED package from a directory
# outside the source tree (so python/ is never imported).
#
# Usage: bash tools/wheel-check.sh [pytest args...]
# Leaves the wheel in dist/; the venv and the test copy live in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"
PY="${PYTHON:-python3}"
CONSTRAINTS="$SRC/${NEONSIGN_CONSTRAINTS:-constraints.txt}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/neonsign-wheel.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log() { printf '== wheel-check: %s\n' "$*"; }
t0=$(date +%s)

# 1. Build. PIP_CONSTRAINT pins the isolated build environment's meson/meson-python/numpy too.
log "building the wheel into dist/"
mkdir -p dist
rm -f dist/neonsign-*.whl
PIP_CONSTRAINT="$CONSTRAINTS" "$PY" -m pip wheel --no-deps -q -w dist .
wheel="$(ls dist/neonsign-*.whl)"
log "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
if [ "$(unzip -l "$wheel" | grep -c -E ' python/|\.c$')" != 0 ]; then
    echo "wheel-check: the wheel contains sources it should not" >&2
    exit 1
fi
t1=$(date +%s)

# 2. A fresh venv with the wheel and the test extras, nothing from the checkout.
log "installing into a fresh venv with the dev + torch extras"
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q -c "$CONSTRAINTS" "${wheel}[dev,torch]"
t2=$(date +%s)

# 3. The checkout's tests, run from a directory outside the source tree: pytest puts tests/ (not
#    the checkout, not python/) on sys.path, so `import neonsign` can only find the wheel.
cd "$tmp"
where="$("$tmp/venv/bin/python" -c 'import neonsign, os; print(os.path.dirname(neonsign.__file__))')"
case "$where" in
    "$SRC"*) echo "wheel-check: neonsign was imported from the checkout ($where)" >&2; exit 1 ;;
esac
log "testing neonsign from $where"
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider "$@" "$SRC/tests"
t3=$(date +%s)
log "build $((t1 - t0)) s, install $((t2 - t1)) s, tests $((t3 - t2)) s, total $((t3 - t0)) s"
