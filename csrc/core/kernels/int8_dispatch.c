/* int8 kernel dispatch (which int8 kernels were compiled in and which this CPU runs: cpuid +
 * XCR0 on x86-64, getauxval HWCAP/HWCAP2 on AArch64 Linux) and weight packing per layout. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "int8_kernels.h"

#if defined(__x86_64__) && (defined(NS_HAVE_AVX512VNNI) || defined(NS_HAVE_AVXVNNI))
#include <cpuid.h>

static unsigned long long xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* want512: AVX512F+BW+VL+VNNI with ZMM state; else AVX2 + AVX-VNNI with YMM state. */
static int x86_vnni(int want512) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1) || !((c >> 28) & 1)) return 0;
    const unsigned long long x = xcr0();
    if ((x & 0x6) != 0x6 || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 5) & 1)) return 0; /* AVX2 */
    if (want512) {
        const int f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
        return f && bw && vl && vnni && (x & 0xe0) == 0xe0;
    }
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 4) & 1; /* AVX-VNNI */
}
#endif

#if defined(__aarch64__) && defined(__linux__) &&                                                  \
    (defined(NS_HAVE_DOTPROD) || defined(NS_HAVE_I8MM))
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#endif

static const char *const qnames[NS_QKERNEL_COUNT] = {"ref", "dotprod", "i8mm", "avxvnni",
                                                     "avx512vnni"};

const char *ns_qkernel_name(ns_qkernel k) {
    return (k >= 0 && k < NS_QKERNEL_COUNT) ? qnames[k] : "unknown";
}

static int detect(ns_qkernel k) {
    switch (k) {
    case NS_QKERNEL_REF:
        return 1;
#if defined(NS_HAVE_DOTPROD) && defined(__linux__)
    case NS_QKERNEL_DOTPROD:
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#if defined(NS_HAVE_I8MM) && defined(__linux__)
    case NS_QKERNEL_I8MM:
        return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#endif
#if defined(NS_HAVE_AVXVNNI)
    case NS_QKERNEL_AVXVNNI:
        return x86_vnni(0);
#endif
#if defined(NS_HAVE_AVX512VNNI)
    case NS_QKERNEL_AVX512VNNI:
        return x86_vnni(1);
#endif
    default:
        return 0;
    }
}

int ns_qkernel_available(ns_qkernel k) {
    static int cached[NS_QKERNEL_COUNT] = {-1, -1, -1, -1, -1};
    if (k < 0 || k >= NS_QKERNEL_COUNT) return 0;
    if (cached[k] < 0) cached[k] = detect(k);
    return cached[k];
}

const ns_qisa *ns_qkernel_isa(ns_qkernel k) {
    if (!ns_qkernel_available(k)) return NULL;
    switch (k) {
#if defined(NS_HAVE_DOTPROD)
    case NS_QKERNEL_DOTPROD:
        return ns_qisa_dotprod();
#endif
#if defined(NS_HAVE_I8MM)
    case NS_QKERNEL_I8MM:
        return ns_qisa_i8mm();
#endif
#if defined(NS_HAVE_AVXVNNI)
    case NS_QKERNEL_AVXVNNI:
        return ns_qisa_avxvnni();
#endif
#if defined(NS_HAVE_AVX512VNNI)
    case NS_QKERNEL_AVX512VNNI:
        return ns_qisa_avx512vnni();
#endif
    case NS_QKERNEL_REF:
        return ns_qisa_ref();
    default:
        return NULL;
    }
}

ns_qkernel ns_qkernel_best(void) {
    for (int k = NS_QKERNEL_COUNT - 1; k > 0; k--)
        if (ns_qkernel_available((ns_qkernel)k)) return (ns_qkernel)k;
    return NS_QKERNEL_REF;
}

void ns_qkernel_list(char *buf, size_t size) {
    if (!buf || size == 0) return;
    buf[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < NS_QKERNEL_COUNT; k++) {
        if (!ns_qkernel_available((ns_qkernel)k)) continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", qnames[k]);
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
}

/* The FP32 engine's kernel names: in $NEONSIGN_KERNEL they select the best int8 kernel. */
static int fp32_name(const char *name) {
    return !strcmp(name, "neon") || !strcmp(name, "avx2") || !strcmp(name, "avx512");
}

ns_status ns_qkernel_resolve(const char *name, ns_qkernel *out, ns_error *err) {
    const char *source = "int8 kernel";
    if (!name || !*name) {
        name = getenv("NEONSIGN_KERNEL");
        source = "NEONSIGN_KERNEL";
        if (!name || !*name || fp32_name(name)) name = "auto";
    }
    if (!strcmp(name, "auto")) {
        *out = ns_qkernel_best();
        return NS_OK;
    }
    char avail[128];
    ns_qkernel_list(avail, sizeof avail);
    for (int k = 0; k < NS_QKERNEL_COUNT; k++) {
        if (strcmp(name, qnames[k]) != 0) continue;
        if (!ns_qkernel_available((ns_qkernel)k))
            return ns_set_error(err, NS_ERR_UNSUPPORTED,
                                "%s '%s' is not available on this CPU/build; available: %s", source,
                                name, avail);
        *out = (ns_qkernel)k;
        return NS_OK;
    }
    return ns_set_error(err, NS_ERR_INVALID,
                        "%s '%s' is not an int8 kernel name (ref, dotprod, i8mm, avxvnni, "
                        "avx512vnni, auto); available here: %s",
                        source, name, avail);
}

void ns_qpack_weights(const ns_qisa *isa, size_t nout, size_t k, const int8_t *src, size_t ld,
                      const size_t *map, const int32_t *bias, int8_t *wpacked, int32_t *bias_out) {
    const size_t nr = isa->nr, nb = (nout + nr - 1) / nr;
    memset(wpacked, 0, nb * nr * k);
    memset(bias_out, 0, nb * nr * sizeof *bias_out);
    for (size_t o = 0; o < nout; o++) {
        const size_t b = o / nr, n = o % nr;
        int8_t *blk = wpacked + b * k * nr;
        int32_t colsum = 0;
        for (size_t kk = 0; kk < k; kk++) {
            const size_t col = map ? map[kk] : kk;
            const int8_t v = col == SIZE_MAX ? 0 : src[o * ld + col];
            colsum += v;
            size_t at;
            if (isa->layout == NS_QPACK_MMLA8)
                at = (((kk / 8) * (nr / 2) + n / 2) * 2 + n % 2) * 8 + kk % 8;
            else
                at = ((kk / 4) * nr + n) * 4 + kk % 4;
            blk[at] = v;
        }
        bias_out[o] = bias[o] + (isa->s8_act ? 128 * colsum : 0);
    }
}
