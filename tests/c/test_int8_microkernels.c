/* int8 micro-kernel tester: every int8 micro-kernel this CPU runs (int8_kernels.h), called
 * directly against the plain-loop reference of its operation over the ISA's packed layout
 * (ns_qref_gemm, ns_qref_conv_pool), bit for bit (integer arithmetic):
 *
 * - GEMM over M = 1..3*MR rows (every tile and remainder), nc = 1..NR columns (store tails),
 *   kc = 1..6 K groups plus long K (the 16-K unroll and its tail), 1..3 segments, odd strides,
 *   requantized uint8 and dequantized float outputs, multipliers and shifts spanning their range;
 * - the fused conv + requant + 2x2 max-pool kernel over pooled widths 1..8;
 * - packing: ns_qpack_weights' bias correction for s8-activation ISAs (SDOT).
 *
 * Output elements the kernel must not write (columns nc..NR, gaps between rows) hold a sentinel
 * that must survive. It prints the int8 kernels this CPU has and the one chosen by default
 * ("int8 best: i8mm"): tools/arm/test.sh checks it under qemu's CPU models.
 *
 * sources: common.c kernels/int8_ref.c kernels/int8_dispatch.c
 * simd: kernels
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/int8_kernels.h"

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 11);
}

static int failures;

typedef struct qparams {
    int32_t bias[64], mult[64], shift[64];
    float scale[64];
} qparams;

static void fill_params(qparams *p, size_t nr) {
    for (size_t n = 0; n < nr; n++) {
        p->bias[n] = (int32_t)(rnd() % 200001) - 100000;
        p->mult[n] = (int32_t)((1u << 30) + rnd() % (1u << 30));
        p->shift[n] = (int32_t)(rnd() % 16);
        p->scale[n] = (float)(rnd() % 1000 + 1) * 1e-5f;
    }
}

/* One GEMM case of isa: random A (M rows, stride as) and packed W, compare with the reference. */
static void gemm_case(const ns_qisa *isa, size_t M, size_t nc, size_t nseg, size_t kc, int fp) {
    const size_t nr = isa->nr, cs = nr + 5;
    /* plain: row m at m * as; paired: row pair m/2 at (m/2) * as, 2 * kc bytes per segment */
    const size_t seg = isa->paired ? 2 * kc : kc, ss = seg + 1, as = nseg * ss + 3;
    const size_t alen = ((isa->paired ? (M + 1) / 2 : M) - 1) * as + (nseg - 1) * ss + seg;
    uint8_t *a = malloc(alen);
    int8_t *w = malloc(nseg * kc * nr);
    for (size_t i = 0; i < alen; i++) a[i] = (uint8_t)rnd();
    for (size_t i = 0; i < nseg * kc * nr; i++) w[i] = (int8_t)((int)(rnd() % 255) - 127);
    qparams p;
    fill_params(&p, nr);
    const ns_qout q = {p.bias, p.mult, p.shift, fp ? p.scale : NULL};
    const size_t esz = fp ? sizeof(float) : 1, clen = M * cs * esz;
    unsigned char *got = malloc(clen), *want = malloc(clen);
    memset(got, 0xA5, clen);
    memset(want, 0xA5, clen);
    isa->gemm(M, nc, nseg, kc, a, as, ss, w, &q, got, cs);
    ns_qref_gemm(isa, M, nc, nseg, kc, a, as, ss, w, &q, want, cs);
    if (memcmp(got, want, clen) != 0) {
        failures++;
        printf("FAIL %s M=%zu nc=%zu nseg=%zu kc=%zu %s\n", isa->gemm_name, M, nc, nseg, kc,
               fp ? "float" : "uint8");
    }
    free(a);
    free(w);
    free(got);
    free(want);
}

/* The conv + pool inputs: a random NHWC image of 4 rows x (2*pw + 3) pixels x kc/3 channels
 * (plus a row and pixel gap for the plain layout's odd strides), or its pair layout. */
static void conv_pool_case(const ns_qisa *isa, size_t pw, size_t nc, size_t kc) {
    const size_t nr = isa->nr, cs = nr + 3, ch = kc / 3, w = 2 * pw + 3;
    size_t as = ch, rs = w * ch + 7, alen = 4 * rs;
    uint8_t *img = malloc(alen), *a = img;
    for (size_t i = 0; i < alen; i++) img[i] = (uint8_t)rnd();
    if (isa->paired) {
        rs = w * ch; /* ns_qpair_image takes a packed NHWC image */
        as = 2 * ch;
        a = malloc(4 * w * 2 * ch);
        ns_qpair_image(img, 4, w, ch, a);
        rs = w * 2 * ch;
    }
    int8_t *w8 = malloc(3 * kc * nr);
    for (size_t i = 0; i < 3 * kc * nr; i++) w8[i] = (int8_t)((int)(rnd() % 255) - 127);
    qparams p;
    fill_params(&p, nr);
    const ns_qout q = {p.bias, p.mult, p.shift, NULL};
    uint8_t *got = malloc(pw * cs), *want = malloc(pw * cs);
    memset(got, 0xA5, pw * cs);
    memset(want, 0xA5, pw * cs);
    isa->conv_pool(pw, nc, kc, a, as, rs, w8, &q, got, cs);
    ns_qref_conv_pool(isa, pw, nc, kc, a, as, rs, w8, &q, want, cs);
    if (memcmp(got, want, pw * cs) != 0) {
        failures++;
        printf("FAIL %s pw=%zu nc=%zu kc=%zu\n", isa->conv_pool_name, pw, nc, kc);
    }
    if (a != img) free(a);
    free(img);
    free(w8);
    free(got);
    free(want);
}

/* Packing: an s8-activation ISA's bias is bias + 128 * column sum. */
static void pack_case(const ns_qisa *isa) {
    const size_t nout = 3, k = 2 * isa->kgroup;
    int8_t src[3 * 16], *wp = calloc(isa->nr * k, 1);
    int32_t bias[3] = {5, -7, 11}, *bp = calloc(isa->nr, sizeof(int32_t));
    for (size_t i = 0; i < nout * k; i++) src[i] = (int8_t)((int)(rnd() % 255) - 127);
    ns_qpack_weights(isa, nout, k, src, k, NULL, bias, wp, bp);
    for (size_t o = 0; o < nout; o++) {
        int32_t sum = 0;
        for (size_t i = 0; i < k; i++) sum += src[o * k + i];
        if (bp[o] != bias[o] + (isa->s8_act ? 128 * sum : 0)) {
            failures++;
            printf("FAIL packing bias of %s channel %zu\n", isa->name, o);
        }
    }
    free(wp);
    free(bp);
}

static void test_isa(const ns_qisa *isa) {
    const size_t g = isa->kgroup, nr = isa->nr;
    size_t cases = 0;
    for (size_t M = 1; M <= 3 * isa->mr + 1; M++)
        for (size_t nc = 1; nc <= nr; nc += (nc < 4 ? 1 : 3))
            for (size_t kg = 1; kg <= 6; kg++)
                for (size_t nseg = 1; nseg <= 3; nseg += 2, cases++)
                    gemm_case(isa, M, nc, nseg, kg * g, (int)((M + nc + kg) % 2));
    for (size_t M = 1; M <= 2 * isa->mr; M += 3)
        for (size_t kc = 64 - g; kc <= 64 + 2 * g; kc += g, cases++)
            gemm_case(isa, M, nr, 1, kc, 0);
    for (size_t pw = 1; pw <= 8; pw++)
        for (size_t nc = 1; nc <= nr; nc += 5)
            for (size_t kc = 3 * g; kc <= 12 * g; kc += 3 * g, cases++)
                conv_pool_case(isa, pw, nc, kc);
    pack_case(isa);
    printf("  %s (%s, %s): %zu cases\n", isa->name, isa->gemm_name, isa->conv_pool_name, cases);
}

int main(void) {
    char list[128];
    ns_qkernel_list(list, sizeof list);
    printf("int8 kernels: %s\n", list);
    printf("int8 best: %s\n", ns_qkernel_name(ns_qkernel_best()));
    for (int k = 0; k < NS_QKERNEL_COUNT; k++) {
        const ns_qisa *isa = ns_qkernel_isa((ns_qkernel)k);
        if (isa) test_isa(isa);
    }
#if defined(NS_AVXVNNI_AS_EVEX)
    test_isa(ns_qisa_avxvnni()); /* the AVX-VNNI kernel, EVEX-encoded (see int8_avxvnni.c) */
#endif
    if (failures) {
        printf("test_int8_microkernels: %d failures\n", failures);
        return 1;
    }
    printf("test_int8_microkernels: ok\n");
    return 0;
}
