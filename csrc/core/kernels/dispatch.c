/* Kernel dispatch: which kernels were compiled in, which this CPU runs, and name lookup. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && (defined(NS_HAVE_AVX2) || defined(NS_HAVE_AVX512))
#include <cpuid.h>

/* XCR0 via xgetbv: which register states the OS saves on context switch. */
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* 1 if the CPU has every listed feature and the OS saves the needed state. */
static int x86_supports(int want_avx512) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return 0;
    unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    if (!avx2) return 0;
    if (!want_avx512) return 1;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (!(f && dq && bw && vl)) return 0;
    return (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM state */
}
#endif

static const char *const names[NS_KERNEL_COUNT] = {"ref", "neon", "avx2", "avx512"};

const char *ns_kernel_name(ns_kernel k) {
    return (k >= 0 && k < NS_KERNEL_COUNT) ? names[k] : "unknown";
}

const ns_isa *ns_kernel_isa(ns_kernel k) {
    if (!ns_kernel_available(k)) return NULL;
    switch (k) {
#if defined(NS_HAVE_NEON)
    case NS_KERNEL_NEON:
        return ns_isa_neon();
#endif
#if defined(NS_HAVE_AVX2)
    case NS_KERNEL_AVX2:
        return ns_isa_avx2();
#endif
#if defined(NS_HAVE_AVX512)
    case NS_KERNEL_AVX512:
        return ns_isa_avx512();
#endif
    default:
        return NULL;
    }
}

const char *ns_kernel_tile(ns_kernel k) {
    if (k == NS_KERNEL_REF) return "scalar";
    const ns_isa *isa = ns_kernel_isa(k);
    return isa ? isa->tile : NULL;
}

const ns_gemm_kernel *ns_isa_gemm(const ns_isa *isa, size_t as) {
    for (size_t i = 1; i < isa->n_gemm; i++)
        if (isa->gemm[i].as == as) return &isa->gemm[i];
    return &isa->gemm[0];
}

const ns_conv_pool_kernel *ns_isa_conv_pool(const ns_isa *isa, size_t as) {
    if (!isa->n_conv_pool) return NULL;
    for (size_t i = 1; i < isa->n_conv_pool; i++)
        if (isa->conv_pool[i].as == as) return &isa->conv_pool[i];
    return &isa->conv_pool[0];
}

int ns_kernel_available(ns_kernel k) {
    switch (k) {
    case NS_KERNEL_REF:
        return 1;
#if defined(NS_HAVE_NEON)
    case NS_KERNEL_NEON:
        return 1; /* Advanced SIMD is baseline on AArch64 */
#endif
#if defined(NS_HAVE_AVX2)
    case NS_KERNEL_AVX2: {
        static int cached = -1;
        if (cached < 0) cached = x86_supports(0);
        return cached;
    }
#endif
#if defined(NS_HAVE_AVX512)
    case NS_KERNEL_AVX512: {
        static int cached = -1;
        if (cached < 0) cached = x86_supports(1);
        return cached;
    }
#endif
    default:
        return 0;
    }
}

ns_kernel ns_kernel_best(void) {
    for (int k = NS_KERNEL_COUNT - 1; k > 0; k--)
        if (ns_kernel_available((ns_kernel)k)) return (ns_kernel)k;
    return NS_KERNEL_REF;
}

void ns_kernel_list(char *buf, size_t size) {
    if (!buf || size == 0) return;
    buf[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < NS_KERNEL_COUNT; k++) {
        if (!ns_kernel_available((ns_kernel)k)) continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", names[k]);
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
}

ns_status ns_kernel_resolve(const char *name, ns_kernel *out, ns_error *err) {
    const char *source = "kernel";
    if (!name || !*name) {
        name = getenv("NEONSIGN_KERNEL");
        source = "NEONSIGN_KERNEL";
        if (!name || !*name) {
            *out = ns_kernel_best();
            return NS_OK;
        }
    }
    if (strcmp(name, "auto") == 0) {
        *out = ns_kernel_best();
        return NS_OK;
    }
    char avail[128];
    ns_kernel_list(avail, sizeof avail);
    for (int k = 0; k < NS_KERNEL_COUNT; k++) {
        if (strcmp(name, names[k]) != 0) continue;
        if (!ns_kernel_available((ns_kernel)k))
            return ns_set_error(err, NS_ERR_UNSUPPORTED,
                                "%s '%s' is not available on this CPU/build; available: %s", source,
                                name, avail);
        *out = (ns_kernel)k;
        return NS_OK;
    }
    return ns_set_error(err, NS_ERR_INVALID,
                        "%s '%s' is not a kernel name (ref, neon, avx2, avx512, auto); "
                        "available here: %s",
                        source, name, avail);
}

/* Core clock estimate: a chain of dependent register-register adds runs at one add per cycle on every
 * x86-64 and AArch64 core we target, so adds / seconds ~ Hz (turbo included). The best of
 * 200 short runs is taken so that preemption on a shared machine only lowers a sample. */
double ns_cpu_ghz_estimate(void) {
    double best = 0.0;
    for (int run = 0; run < 200; run++) {
        uint64_t x = (uint64_t)run, one = 1; /* register operands: adds of immediates can be
                                                 folded at rename on recent cores */
        const uint64_t iters = 100000; /* x 8 adds: ~0.3 ms, short enough to dodge preemption */
        uint64_t t0 = ns_now_ns();
        for (uint64_t i = 0; i < iters; i++) {
#if defined(__x86_64__) && defined(__GNUC__)
            __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                             "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                             : "+r"(x)
                             : "r"(one));
#elif defined(__aarch64__) && defined(__GNUC__)
            __asm__ volatile("add %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1\n\t"
                             "add %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1\n\t"
                             "add %0, %0, %1\n\tadd %0, %0, %1"
                             : "+r"(x)
                             : "r"(one));
#else
            x += 8;
#endif
        }
        uint64_t dt = ns_now_ns() - t0;
        if (x == 42) best += 0.0; /* keep x live */
        if (dt > 0) {
            double ghz = (double)(iters * 8) / (double)dt;
            if (ghz > best) best = ghz;
        }
    }
    return best;
}
