#!/usr/bin/env bash
# Build neonsign._native with AddressSanitizer + UndefinedBehaviorSanitizer (clang) and run the
# C-facing Python tests against it; fails on any sanitizer report.
#
# Usage: bash tools/sanitize.sh [pytest args...]   (default: the tests that drive the C core)
#
# How: meson (the same meson.build as the real build) in build/sanitize with CC=clang,
# -Db_sanitize=address,undefined and -fno-sanitize-recover=undefined (a UBSan report aborts
# the process, so pytest fails). The module is copied next to a copy of python/neonsign in
# build/sanitize-site, and pytest runs on the interpreter that meson built against (a venv of
# its own, not .venv, whose editable-install finder would import the normal build) with the ASan runtime
# LD_PRELOADed (CPython itself is not instrumented, so the runtime must be loaded first).
#
# Leaks: ASAN_OPTIONS=detect_leaks=0. LeakSanitizer at exit would report CPython's and NumPy's
# deliberately immortal allocations (interned strings, type objects, module state) by the
# thousand, drowning any real report; leaks in the C core are checked where they are
# attributable: tests/c/ programs (tests/test_c_core.py) and the fuzzers (tools/fuzz.sh) run
# with LeakSanitizer on.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$PWD/build/sanitize"
SITE="$PWD/build/sanitize-site"
# The interpreter: $PYTHON if given, else a dedicated venv (build/sanitize-venv) with the pinned
# test dependencies and no neonsign installed, so that only the instrumented copy can be imported.
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
else
    VENV="$PWD/build/sanitize-venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q -c constraints.txt numpy meson ninja pytest hypothesis \
        pillow safetensors tqdm httpx fastapi uvicorn python-multipart prometheus-client
    PY="$VENV/bin/python"
fi
TIMEOUT="${NEONSIGN_SANITIZE_TIMEOUT:-900}"

log() { printf '== sanitize: %s\n' "$*"; }

has_asan_runtime() {
    [ -f "$("$1" -print-file-name=libclang_rt.asan-"$(uname -m)".so)" ]
}
. tools/lib/clang.sh
ensure_clang has_asan_runtime "the sanitizer build"
ASAN_RT="$("$CLANG" -print-file-name=libclang_rt.asan-"$(uname -m)".so)"

log "configuring with $CLANG in $BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
    CC="$CLANG" "$PY" -m mesonbuild.mesonmain setup "$BUILD" . --buildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args="-fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
        -Dc_link_args="-shared-libsan" >/dev/null
fi
log "building"
"$PY" -m mesonbuild.mesonmain compile -C "$BUILD" >/dev/null
ext="$(ls "$BUILD"/_native.*.so)"
rm -rf "$SITE"
mkdir -p "$SITE"
cp -r python/neonsign "$SITE/neonsign"
cp "$ext" "$SITE/neonsign/"
# (grep -c, not grep -q: with pipefail, grep -q's early exit would fail nm with SIGPIPE)
if [ "$(nm -D "$SITE/neonsign/$(basename "$ext")" | grep -c __asan_report)" = 0 ]; then
    echo "the built module is not instrumented" >&2
    exit 1
fi

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(tests/test_ppm.py tests/test_png_fast.py tests/test_csv.py tests/test_resize.py
           tests/test_trainops_numpy.py
           tests/test_loader.py tests/test_load_fused.py
           tests/test_engine.py tests/test_kernels.py tests/test_properties.py tests/test_limits.py
           tests/test_serve.py)
    existing=()
    for t in "${tests[@]}"; do [ -f "$t" ] && existing+=("$t"); done
    tests=("${existing[@]}")
    # starts the `neonsign` console script, which the sanitizer venv does not install
    tests+=(--deselect tests/test_serve.py::test_container_command_serves)
fi
log "pytest ${tests[*]} (timeout ${TIMEOUT}s)"
# The instrumented module must be the one imported: check before running the tests.
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$ASAN_RT"
# Reports go to files: pytest captures fd 2 during a test and the capture is lost when the
# process aborts.
REPORTS="$BUILD/reports"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0:allocator_may_return_null=1:handle_segv=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
export NEONSIGN_SANITIZE=1
"$PY" -c "import neonsign._native as m, sys; assert m.__file__.startswith('$SITE'), m.__file__; print('module:', m.__file__)"
set +e
timeout "$TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$BUILD/pytest.log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "$(ls -A "$REPORTS")" ] || grep -qE 'ERROR: AddressSanitizer|runtime error:' "$BUILD/pytest.log"; then
    echo "sanitizer reports found:" >&2
    for f in "$REPORTS"/*; do [ -f "$f" ] && { echo "--- $f" >&2; head -40 "$f" >&2; }; done
    rc=1
fi
log "exit status $rc"
exit $rc
