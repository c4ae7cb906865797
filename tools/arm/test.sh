#!/usr/bin/env bash
# Build neonsign._native for AArch64 with Debian's cross gcc and run the correctness tests under
# qemu-user against an arm64 Python. See ../shared/docs/arm-testing.md.
#
# The extension is built against NumPy 2's headers (as the real wheels are) and the tests run
# twice: on NumPy 2 (aarch64 wheel from PyPI) and on Debian bookworm's NumPy 1.24, proving the
# one binary works with both C APIs.
#
# Usage: bash tools/arm/test.sh [pytest args...]   (default: the kernel, engine and preprocessing
#        tests; torch-only tests skip themselves since PyTorch is not in the arm64 root). The C
#        micro-kernel and sha256 testers run first, always.
# Caches the arm64 root in tools/arm/.sysroot and the wheels in tools/arm/.build (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
ARM_DIR=tools/arm
SYSROOT="${NEONSIGN_ARM_SYSROOT:-$PWD/$ARM_DIR/.sysroot}"
BUILD="$PWD/$ARM_DIR/.build"
PYVER=3.11
NUMPY_VERSION="$(sed -n 's/^numpy==//p' constraints.txt)"
SAFETENSORS_VERSION="$(sed -n 's/^safetensors==//p' constraints.txt)"

log() { printf '== arm: %s\n' "$*"; }

# 1. Tools: cross compiler, qemu-user, mmdebstrap (Debian packages).
missing=()
for tool in aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu qemu-aarch64:qemu-user mmdebstrap:mmdebstrap; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "arm tests need: ${missing[*]} (apt-get install as root)" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" libc6-dev-arm64-cross >/dev/null
fi

# 2. The arm64 Debian root (extracted only; nothing in it is executed at build time).
if [ ! -f "$SYSROOT/.complete" ]; then
    log "building the arm64 root in $SYSROOT"
    rm -rf "$SYSROOT"
    mmdebstrap --quiet --arch=arm64 --variant=extract \
        --include=python3,python3-numpy,python3-pytest,python3-dev,libpython3-dev,python3-pil,python3-hypothesis,python3-tqdm \
        bookworm "$SYSROOT"
    touch "$SYSROOT/.complete"
fi

# 3. aarch64 wheels from PyPI for NumPy 2 and the package's compiled dependency (safetensors).
NP2="$BUILD/pydeps-numpy2"
if [ ! -f "$NP2/.complete-$NUMPY_VERSION" ]; then
    log "fetching aarch64 wheels: numpy==$NUMPY_VERSION safetensors==$SAFETENSORS_VERSION"
    rm -rf "$NP2"
    python3 -m pip install -q --no-deps --target "$NP2" --platform manylinux2014_aarch64 \
        --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
        --python-version "$PYVER" --implementation cp --only-binary=:all: \
        "numpy==$NUMPY_VERSION" "safetensors==$SAFETENSORS_VERSION"
    touch "$NP2/.complete-$NUMPY_VERSION"
fi
NP1="$BUILD/pydeps-numpy1"  # Debian's numpy 1.24 from the root, plus safetensors
if [ ! -f "$NP1/.complete" ]; then
    rm -rf "$NP1"
    mkdir -p "$NP1"
    cp -r "$NP2"/safetensors* "$NP1"/
    touch "$NP1/.complete"
fi

# 4. Cross-compile the extension (NumPy 2's include dir first: Debian's python3.11 include dir
#    links 1.24's): every core source, the portable and AArch64 kernels, and the binding
#    (csrc/binding/*.c) with the version from meson.build's project() as NS_VERSION.
SITE="$BUILD/site"
rm -rf "$SITE"
mkdir -p "$SITE"
cp -r python/neonsign "$SITE/neonsign"
find "$SITE" -name '__pycache__' -prune -exec rm -rf {} +
mapfile -t sources < <(ls csrc/core/*.c csrc/core/kernels/*.c 2>/dev/null | grep -v -E '/(int8_)?(avx|x86|dotprod|i8mm)[^/]*\.c$')
# The int8 dot-product kernels need their architecture extensions (as meson.build compiles them);
# dispatch (int8_dispatch.c) runs them only where HWCAP/HWCAP2 say the CPU has them.
INT8_OBJS=()
compile_int8() {  # $1: kernel source, $2: -march, $3: output object
    aarch64-linux-gnu-gcc -std=c11 -O2 -fPIC -fno-math-errno -fno-predictive-commoning \
        -Wall -Wextra -Wno-unused-parameter --sysroot="$SYSROOT" -march="$2" \
        -Icsrc -Icsrc/core -Icsrc/core/kernels -c "$1" -o "$3"
}
mkdir -p "$BUILD/obj"
compile_int8 csrc/core/kernels/int8_dotprod.c armv8.2-a+dotprod "$BUILD/obj/int8_dotprod.o"
compile_int8 csrc/core/kernels/int8_i8mm.c armv8.2-a+dotprod+i8mm "$BUILD/obj/int8_i8mm.o"
INT8_OBJS=("$BUILD/obj/int8_dotprod.o" "$BUILD/obj/int8_i8mm.o")
INT8_DEFS=(-DNS_HAVE_DOTPROD=1 -DNS_HAVE_I8MM=1)
NUMPY_INC="$(ls -d "$NP2"/numpy/_core/include)"
mapfile -t binding < <(ls csrc/binding/*.c)
VERSION="$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" meson.build | head -n 1)"
[ -n "$VERSION" ] || { echo "cannot read the project version from meson.build" >&2; exit 1; }
EXT="$SITE/neonsign/_native.cpython-${PYVER/./}-aarch64-linux-gnu.so"
log "compiling ${#sources[@]} core sources + ${#binding[@]} binding sources (neonsign $VERSION) for aarch64"
aarch64-linux-gnu-gcc -std=c11 -O2 -shared -fPIC -pthread -fno-math-errno \
    -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
    --sysroot="$SYSROOT" \
    -DNS_HAVE_NEON=1 "${INT8_DEFS[@]}" -DNS_VERSION="\"$VERSION\"" \
    -fno-predictive-commoning -Icsrc -Icsrc/core -Icsrc/core/kernels \
    -I"$NUMPY_INC" \
    -I"$SYSROOT/usr/include/python$PYVER" -I"$SYSROOT/usr/include/aarch64-linux-gnu/python$PYVER" \
    "${sources[@]}" "${binding[@]}" "${INT8_OBJS[@]}" -lm -o "$EXT"

# 5. The C micro-kernel tester (tests/c/test_microkernels.c) with the NEON kernels, built like
# the extension (-O2, kernel flags) and run on two CPU models: qemu's "max" (every feature it
# emulates) and a Neoverse N1 (Armv8.2, the Graviton2 / Ampere Altra core the NEON tile targets).
ctest=tests/c/test_microkernels.c
mapfile -t csources < <(sed -n 's/^ \* sources://p' "$ctest" | tr ' ' '\n' | sed '/^$/d; s|^|csrc/core/|')
CEXE="$BUILD/test_microkernels"
log "compiling $ctest with the NEON kernels for aarch64"
aarch64-linux-gnu-gcc -std=c11 -O2 -pthread -fno-math-errno -fno-predictive-commoning \
    -Wall -Wextra -Wno-unused-parameter --sysroot="$SYSROOT" -DNS_HAVE_NEON \
    -Icsrc -Icsrc/core -Itests/c "$ctest" "${csources[@]}" csrc/core/kernels/neon.c -lm -o "$CEXE"
for cpu in max neoverse-n1; do
    log "$ctest under qemu-aarch64 -cpu $cpu"
    QEMU_LD_PREFIX="$SYSROOT" qemu-aarch64 -cpu "$cpu" "$CEXE"
done

# 5b. The int8 micro-kernel tester with the dotprod and I8MM kernels, on a CPU model with I8MM
# and dotprod (qemu's "max": Armv8.6+) and one with dotprod only (Neoverse N1, Armv8.2): each
# must pick its best kernel by HWCAP/HWCAP2 (i8mm, dotprod) and test every kernel it has.
qtest=tests/c/test_int8_microkernels.c
mapfile -t qsources < <(sed -n 's/^ \* sources://p' "$qtest" | tr ' ' '\n' | sed '/^$/d; s|^|csrc/core/|')
QEXE="$BUILD/test_int8_microkernels"
log "compiling $qtest with the dotprod and I8MM kernels for aarch64"
aarch64-linux-gnu-gcc -std=c11 -O2 -pthread -fno-math-errno -Wall -Wextra -Wno-unused-parameter \
    --sysroot="$SYSROOT" "${INT8_DEFS[@]}" -Icsrc -Icsrc/core -Itests/c "$qtest" "${qsources[@]}" \
    "${INT8_OBJS[@]}" -lm -o "$QEXE"
for pair in max:i8mm neoverse-n1:dotprod; do
    cpu="${pair%%:*}" want="${pair##*:}"
    log "$qtest under qemu-aarch64 -cpu $cpu (expects int8 kernel $want)"
    out="$(QEMU_LD_PREFIX="$SYSROOT" qemu-aarch64 -cpu "$cpu" "$QEXE")" || { echo "$out"; exit 1; }
    echo "$out"
    grep -qx "int8 best: $want" <<<"$out" || { echo "-cpu $cpu picked the wrong int8 kernel" >&2; exit 1; }
done

# 5c. The sha256 tester (the loader's checksum): the Armv8 SHA2 block function against the
# scalar reference and known digests. Every qemu CPU model has SHA2 (HWCAP_SHA2), so the Armv8
# function must be the one selected (NEONSIGN_EXPECT_SHA256; the pytest run below checks the
# same through the binding). Built like the extension: baseline Armv8-A, SHA2 per function.
stest=tests/c/test_sha256.c
mapfile -t ssources < <(sed -n 's/^ \* sources://p' "$stest" | tr ' ' '\n' | sed '/^$/d; s|^|csrc/core/|')
SEXE="$BUILD/test_sha256"
log "compiling $stest for aarch64"
aarch64-linux-gnu-gcc -std=c11 -O2 -pthread -Wall -Wextra -Wno-unused-parameter \
    --sysroot="$SYSROOT" -Icsrc -Icsrc/core -Itests/c "$stest" "${ssources[@]}" -lm -o "$SEXE"
for cpu in max neoverse-n1; do
    log "$stest under qemu-aarch64 -cpu $cpu (expects the armv8 block function)"
    NEONSIGN_EXPECT_SHA256=armv8 QEMU_LD_PREFIX="$SYSROOT" qemu-aarch64 -cpu "$cpu" "$SEXE"
done

# 6. Run the tests as aarch64 under qemu, with NumPy 2 and then NumPy 1.24.
# Default: the tests of code that is compiled per ISA (C core, kernels, engine). Pure-Python
# layers are covered by the x86-64 run; emulation is 10-50x slower.
explicit=1
if [ $# -eq 0 ]; then
    explicit=0
    set -- tests/test_package.py tests/test_native.py tests/test_ppm.py tests/test_png_fast.py \
        tests/test_csv.py tests/test_resize.py tests/test_loader.py tests/test_kernels.py \
        tests/test_engine.py tests/test_int8_kernels.py tests/test_augment_numpy.py \
        tests/test_trainops_numpy.py \
        tests/test_load_fused.py::test_digest_hashed_by_the_workers_equals_hashlib \
        tests/test_load_fused.py::test_hardware_sha256_wherever_the_cpu_has_sha_instructions
fi
run_pytest() {  # $1: extra PYTHONPATH entry; $CPU: qemu CPU model, $INT8: its expected int8 kernel
    QEMU_LD_PREFIX="$SYSROOT" QEMU_CPU="${CPU:-max}" \
    QEMU_SET_ENV="LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/blas:/usr/lib/aarch64-linux-gnu/lapack,PYTHONPATH=$SITE:$1,NEONSIGN_EMULATED=qemu-aarch64,PYTHONDONTWRITEBYTECODE=1,NEONSIGN_EXPECT_INT8_KERNEL=${INT8:-i8mm},NEONSIGN_EXPECT_SHA256=armv8" \
        qemu-aarch64 "$SYSROOT/usr/bin/python$PYVER" -m pytest -p no:cacheprovider -q "${@:2}"
}
log "pytest under qemu-aarch64 -cpu max, NumPy $NUMPY_VERSION"
run_pytest "$NP2" "$@"
# The int8 tests again on a CPU model with dotprod but no I8MM: dispatch must fall back to SDOT.
log "int8 tests under qemu-aarch64 -cpu neoverse-n1 (dotprod, no I8MM)"
CPU=neoverse-n1 INT8=dotprod run_pytest "$NP2" tests/test_int8_kernels.py
# The same binary on NumPy 1.x: every binding entry point (the engine's through test_kernels and
# test_package) without the slowest whole-network cases, unless tests were named explicitly.
if [ "$explicit" = 0 ]; then
    set -- tests/test_package.py tests/test_native.py tests/test_ppm.py tests/test_png_fast.py \
        tests/test_csv.py tests/test_loader.py tests/test_kernels.py tests/test_augment_numpy.py \
        tests/test_trainops_numpy.py
fi
log "pytest under qemu-aarch64, Debian's NumPy 1.24"
run_pytest "$NP1" "$@"
