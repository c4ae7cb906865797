# Sourced by tools/sanitize.sh and tools/fuzz.sh: find a clang that passes a probe, installing
# Debian's clang and its sanitizer runtimes (as root) when none does.
#
#   ensure_clang PROBE WHAT   sets CLANG to the first of $CC_CLANG, clang, clang-16..14 for which
#                             the function PROBE succeeds; WHAT names the need in error messages.
ensure_clang() {
    local probe="$1" what="$2" c
    CLANG=""
    for pass in 1 2; do
        for c in "${CC_CLANG:-}" clang clang-16 clang-15 clang-14; do
            [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
            if "$probe" "$c"; then CLANG="$c"; return 0; fi
        done
        [ "$pass" = 2 ] && break
        if [ "$(id -u)" != 0 ]; then
            echo "$what needs clang (apt-get install clang libclang-rt-14-dev)" >&2
            return 1
        fi
        echo "== installing clang for $what"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
    done
    echo "no clang here can do $what" >&2
    return 1
}
