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
#        micro-kernel tester runs first, always.
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
mapfile -t sources < <(ls csrc/core/*.c csrc/core/kernels/*.c 2>/dev/null | grep -v -E '/(avx|x86)[^/]*\.c$')
NUMPY_INC="$(ls -d "$NP2"/numpy/_core/include)"
mapfile -t binding < <(ls csrc/binding/*.c)
VERSION="$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" meson.build | head -n 1)"
[ -n "$VERSION" ] || { echo "cannot read the project version from meson.build" >&2; exit 1; }
EXT="$SITE/neonsign/_native.cpython-${PYVER/./}-aarch64-linux-gnu.so"
log "compiling ${#sources[@]} core sources + ${#binding[@]} binding sources (neonsign $VERSION) for aarch64"
aarch64-linux-gnu-gcc -std=c11 -O2 -shared -fPIC -pthread -fno-math-errno \
    -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
    --sysroot="$SYSROOT" \
    -DNS_HAVE_NEON=1 -DNS_VERSION="\"$VERSION\"" \
    -fno-predictive-commoning -Icsrc -Icsrc/core -Icsrc/core/kernels \
    -I"$NUMPY_INC" \
    -I"$SYSROOT/usr/include/python$PYVER" -I"$SYSROOT/usr/include/aarch64-linux-gnu/python$PYVER" \
    "${sources[@]}" "${binding[@]}" -lm -o "$EXT"

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

# 6. Run the tests as aarch64 under qemu, with NumPy 2 and then NumPy 1.24.
# Default: the tests of code that is compiled per ISA (C core, kernels, engine). Pure-Python
# layers are covered by the x86-64 run; emulation is 10-50x slower.
explicit=1
if [ $# -eq 0 ]; then
    explicit=0
    set -- tests/test_package.py tests/test_native.py tests/test_ppm.py tests/test_csv.py \
        tests/test_resize.py tests/test_loader.py tests/test_kernels.py tests/test_engine.py
fi
run_pytest() {  # $1: extra PYTHONPATH entry
    QEMU_LD_PREFIX="$SYSROOT" \
    QEMU_SET_ENV="LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/blas:/usr/lib/aarch64-linux-gnu/lapack,PYTHONPATH=$SITE:$1,NEONSIGN_EMULATED=qemu-aarch64,PYTHONDONTWRITEBYTECODE=1" \
        qemu-aarch64 "$SYSROOT/usr/bin/python$PYVER" -m pytest -p no:cacheprovider -q "${@:2}"
}
log "pytest under qemu-aarch64, NumPy $NUMPY_VERSION"
run_pytest "$NP2" "$@"
# The same binary on NumPy 1.x: every binding entry point (the engine's through test_kernels and
# test_package) without the slowest whole-network cases, unless tests were named explicitly.
if [ "$explicit" = 0 ]; then
    set -- tests/test_package.py tests/test_native.py tests/test_ppm.py tests/test_csv.py \
        tests/test_loader.py tests/test_kernels.py
fi
log "pytest under qemu-aarch64, Debian's NumPy 1.24"
run_pytest "$NP1" "$@"
