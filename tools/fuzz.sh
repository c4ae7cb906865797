#!/usr/bin/env bash
# Build the libFuzzer targets in tests/fuzz/ from csrc/core (no Python) with
# clang -fsanitize=fuzzer,address,undefined and run each for a fixed time.
#
# Usage: bash tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   default 60 s per target (CI); a longer campaign, e.g. 30 minutes per target on all cores:
#     NEONSIGN_FUZZ_JOBS=$(nproc) bash tools/fuzz.sh 1800
# Work dir: build/fuzz (git-ignored): bin/, corpus/<target>/ (seeds from tests/fuzz/make_seeds.py
# plus what the fuzzer finds; kept between runs), crashes/<target>/, logs/, summary.json.
# Exit status 1 if any target crashed (the crashing input is in build/fuzz/crashes/<target>/:
# minimise it and commit it under tests/fuzz/regressions/<target>/, where
# tests/test_fuzz_regressions.py replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
shift || true
WORK="${NEONSIGN_FUZZ_DIR:-$PWD/build/fuzz}"
JOBS="${NEONSIGN_FUZZ_JOBS:-1}"
PY="${PYTHON:-python3}"

log() { printf '== fuzz: %s\n' "$*"; }

# clang with the libFuzzer and sanitizer runtimes (Debian: clang + libclang-rt-NN-dev).
can_fuzz() {
    echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' |
        "$1" -x c - -fsanitize=fuzzer,address,undefined -o /dev/null >/dev/null 2>&1
}
. tools/lib/clang.sh
ensure_clang can_fuzz "fuzzing (libFuzzer)"

mkdir -p "$WORK"/{bin,obj,corpus,crashes,logs}
"$PY" tests/fuzz/make_seeds.py "$WORK/seeds"

FLAGS=(-std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Icsrc -Icsrc/core -Icsrc/core/kernels -fno-math-errno
       -Wall -Wno-unused-parameter)
# Per-ISA kernels with their own flags, as meson.build compiles them.
KERNEL_OBJS=()
KERNEL_DEFS=()
case "$(uname -m)" in
    x86_64)
        KERNEL_DEFS=(-DNS_HAVE_AVX2 -DNS_HAVE_AVX512)
        "$CLANG" "${FLAGS[@]/-fsanitize=fuzzer,/-fsanitize=}" -c csrc/core/kernels/avx2.c -mavx2 -mfma -DNS_HAVE_AVX2 -o "$WORK/obj/avx2.o"
        "$CLANG" "${FLAGS[@]/-fsanitize=fuzzer,/-fsanitize=}" -c csrc/core/kernels/avx512.c -mavx512f -mavx512bw \
            -mavx512dq -mavx512vl -mfma -DNS_HAVE_AVX512 -o "$WORK/obj/avx512.o"
        KERNEL_OBJS=("$WORK/obj/avx2.o" "$WORK/obj/avx512.o") ;;
    aarch64)
        KERNEL_DEFS=(-DNS_HAVE_NEON)
        "$CLANG" "${FLAGS[@]/-fsanitize=fuzzer,/-fsanitize=}" -c csrc/core/kernels/neon.c -DNS_HAVE_NEON -o "$WORK/obj/neon.o"
        KERNEL_OBJS=("$WORK/obj/neon.o") ;;
esac

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(ls tests/fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$//')
fi

status=0
summary="$WORK/summary.json"
echo "{" > "$summary.tmp"
sep=""
for t in "${targets[@]}"; do
    src="tests/fuzz/$t.c"
    core=$(sed -n 's/^ \* sources:\([^(]*\).*/\1/p' "$src")
    core_paths=()
    for s in $core; do core_paths+=("csrc/core/$s"); done
    extra=()
    if [[ " $core " == *" kernels/dispatch.c "* ]]; then extra=("${KERNEL_DEFS[@]}" "${KERNEL_OBJS[@]}"); fi
    log "building $t"
    "$CLANG" "${FLAGS[@]}" "$src" "${core_paths[@]}" "${extra[@]}" -o "$WORK/bin/$t" -pthread -lm
    rm -rf "$WORK/crashes/$t"  # artifacts of earlier runs: commit them as regressions first
    mkdir -p "$WORK/corpus/$t" "$WORK/crashes/$t"
    log "running $t for ${SECS}s"
    parallel=()
    [ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
    set +e
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
        "$WORK/bin/$t" "$WORK/corpus/$t" "$WORK/seeds/$t" -max_total_time="$SECS" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "${parallel[@]}" \
        -artifact_prefix="$WORK/crashes/$t/" >"$WORK/logs/$t.log" 2>&1
    rc=$?
    set -e
    # with -jobs the stats are in fuzz-N.log files
    execs=$(cat "$WORK/logs/$t.log" fuzz-*.log 2>/dev/null | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{s+=$1} END {print s+0}' || true)
    rm -f fuzz-*.log
    crashes=$(find "$WORK/crashes/$t" -type f | wc -l)
    cov=$(grep -o 'cov: [0-9]*' "$WORK/logs/$t.log" fuzz-*.log 2>/dev/null | tail -1 | awk '{print $2}' || true)
    log "$t: rc=$rc executions=$execs coverage=${cov:-?} crash files=$crashes"
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        status=1
        grep -m1 -A12 -E 'ERROR: (AddressSanitizer|libFuzzer)|runtime error' "$WORK/logs/$t.log" || tail -20 "$WORK/logs/$t.log"
    fi
    printf '%s  "%s": {"seconds": %s, "executions": %s, "coverage": %s, "exit_code": %s, "crash_files": %s}' \
        "$sep" "$t" "$SECS" "$execs" "${cov:-null}" "$rc" "$crashes" >> "$summary.tmp"
    sep=$',\n'
done
printf '\n}\n' >> "$summary.tmp"
mv "$summary.tmp" "$summary"
log "summary in $summary"
cat "$summary"
exit $status
