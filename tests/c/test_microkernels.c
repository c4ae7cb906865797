/* Micro-kernel tester: every SIMD micro-kernel this CPU runs, called directly (not through a
 * layer) against the scalar reference of its operation (ns_ref_gemm, ns_ref_conv_pool in
 * kernels/ref.c):
 *
 * - each ISA's GEMM kernels, the generic one (any A row stride) and every stride
 *   specialisation, over M = 1..2*MR rows (every tile and remainder shape), nc = 1..NR columns
 *   (every store tail), K = 1..9 and a few larger K on both sides of the 4-step unroll, 1 to 3
 *   segments, odd strides (as, ss, cs), with and without bias and ReLU;
 * - the fused conv + 2x2 max-pool kernels (generic and specialised) over pooled widths
 *   1..MR, odd row stride rs (the second conv row and the segment stride at once);
 * - the 2x2 pool and NCHW->NHWC helpers, exactly;
 * - that a specialisation gives bit-identical results to its ISA's generic kernel, and that
 *   packing (ns_net_create) picks the specialisation for each layer's stride.
 *
 * Buffers are allocated to the exact size the kernel may read, so ASan reports any over-read;
 * output elements the kernel must not write (columns nc..NR, the gaps between rows) hold a
 * sentinel that must survive; packed weight and bias columns past nc hold a huge poison value
 * that must not leak into the stored columns.
 *
 * Two data sets per shape:
 * - integers: a, w in [-4, 4] and bias in [-8, 8]. Every product and partial sum is then an
 *   integer below 2^24 in magnitude, exactly representable in fp32, so every summation order,
 *   with or without fused multiply-add, gives the same exact result: compared bit for bit.
 * - reals in [-1, 1): the kernels fuse multiply-add and sum in their own order (K-split for a
 *   lone row), the reference multiplies and adds separately in plain order. Both are a float
 *   sum of n = nseg*kc products plus the bias, each within gamma(n+1) * S of the exact sum
 *   (Higham, Accuracy and Stability of Numerical Algorithms, (3.5); an FMA only drops
 *   roundings), S = |bias| + sum |a*w|, gamma(n) = n*u / (1 - n*u), u = 2^-24. So they differ by
 *   at most 2 * gamma(n+1) * S; ReLU and max are 1-Lipschitz and keep the bound. A wrong index
 *   or a skipped step changes a result by about one |a*w| term: far above that bound.
 *
 * sources: common.c pool.c net.c kernels/ref.c kernels/dispatch.c
 * simd: kernels
 *
 * tests/test_c_core.py builds it with the host's SIMD kernels (each with its ISA flags, as in
 * meson.build) under ASan/UBSan; tools/arm/test.sh cross-compiles it with the NEON kernel and
 * runs it under qemu-aarch64 (-cpu max and -cpu neoverse-n1).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#include "check.h"

#define SENTINEL (-777.25f)
#define POISON   (1.0e30f)

static unsigned long long rng_state = 2024;
static unsigned rnd(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(rng_state >> 33);
}
/* integers in [-r, r] when ints, else uniform reals in [-1, 1) */
static float value(int ints, int r) {
    if (ints) return (float)((int)(rnd() % (unsigned)(2 * r + 1)) - r);
    return (float)(rnd() & 0xffffff) / 8388608.0f - 1.0f;
}
static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    CHECK(p != NULL);
    return p;
}
static int same_bits(float x, float y) {
    return memcmp(&x, &y, sizeof x) == 0;
}

/* One problem: the operands of a GEMM or conv-pool call, the kernel's and the reference's
 * outputs and the per-output error bound. */
typedef struct problem {
    size_t nr, nc, kc, nseg; /* nseg = 3 for conv-pool */
    size_t a_len, c_len;
    float *a, *w, *bias, *out, *ref, *bound;
} problem;

/* a: a_len floats; w: (nseg*kc) x nr packed, columns >= nc poisoned; bias likewise; out and
 * ref prefilled with the sentinel. */
static void problem_init(problem *p, size_t nr, size_t nc, size_t nseg, size_t kc, size_t a_len,
                         size_t c_len, int ints) {
    p->nr = nr;
    p->nc = nc;
    p->kc = kc;
    p->nseg = nseg;
    p->a_len = a_len;
    p->c_len = c_len;
    p->a = alloc_floats(a_len);
    p->w = alloc_floats(nseg * kc * nr);
    p->bias = alloc_floats(nr);
    p->out = alloc_floats(c_len);
    p->ref = alloc_floats(c_len);
    p->bound = alloc_floats(c_len);
    for (size_t i = 0; i < a_len; i++) p->a[i] = value(ints, 4);
    for (size_t r = 0; r < nseg * kc; r++)
        for (size_t n = 0; n < nr; n++) p->w[r * nr + n] = n < nc ? value(ints, 4) : POISON;
    for (size_t n = 0; n < nr; n++) p->bias[n] = n < nc ? value(ints, 8) : POISON;
    for (size_t i = 0; i < c_len; i++) {
        p->out[i] = p->ref[i] = SENTINEL;
        p->bound[i] = 0.0f;
    }
}

static void problem_free(problem *p) {
    free(p->a);
    free(p->w);
    free(p->bias);
    free(p->out);
    free(p->ref);
    free(p->bound);
}

static void zero_bias(problem *p) {
    for (size_t n = 0; n < p->nc; n++) p->bias[n] = 0.0f;
}

/* sum |a*w| over the segments and K of one output (row offset off into a, column n) */
static double abs_terms(const problem *p, size_t off, size_t ss, size_t n) {
    double s = 0.0;
    for (size_t g = 0; g < p->nseg; g++)
        for (size_t k = 0; k < p->kc; k++)
            s += fabs((double)p->a[off + g * ss + k] * (double)p->w[(g * p->kc + k) * p->nr + n]);
    return s;
}

/* 2 * gamma(n + 1) * S: the bound on |kernel - reference| explained at the top (times 1.0001
 * for the rounding of this computation and of S itself) */
static float tolerance(size_t terms, double s) {
    const double u = ldexp(1.0, -24), nu = (double)(terms + 1) * u;
    return (float)(2.0 * nu / (1.0 - nu) * s * 1.0001);
}

/* Compare out against ref: the outputs (is_out) exactly for integer data or within their
 * bound, every other element must still hold the sentinel. Reports the first mismatch. */
static int compare(const problem *p, const unsigned char *is_out, int ints, const char *what,
                   const char *name) {
    for (size_t i = 0; i < p->c_len; i++) {
        const float o = p->out[i], r = p->ref[i];
        int ok;
        if (!is_out[i])
            ok = same_bits(o, SENTINEL);
        else if (ints)
            ok = same_bits(o, r);
        else
            ok = fabsf(o - r) <= p->bound[i];
        if (!ok) {
            EXPECT(0, "%s %s: element %zu is %.9g, expected %.9g%s (tolerance %.3g)", name, what, i,
                   (double)o, (double)r, is_out[i] ? "" : " (must not be written)",
                   (double)p->bound[i]);
            return 0;
        }
    }
    return 1;
}

/* After this many failures the rest is skipped: one broken tail breaks thousands of cases. */
#define MAX_FAILURES 20

/* ---- GEMM ----------------------------------------------------------------------------------- */

typedef struct gemm_case {
    size_t M, nc, nseg, kc, as, ss, cs;
    int relu, bias, ints;
} gemm_case;

/* Run kernel g (and, for a specialisation, the generic kernel gen) on one case. */
static void check_gemm(const ns_isa *isa, const ns_gemm_kernel *g, const ns_gemm_kernel *gen,
                       const gemm_case *t) {
    if (failures >= MAX_FAILURES) return;
    const size_t nr = isa->nr;
    const size_t a_len = (t->M - 1) * t->as + (t->nseg - 1) * t->ss + t->kc;
    const size_t c_len = t->M * t->cs + nr; /* room for a wrong full-width store */
    problem p;
    problem_init(&p, nr, t->nc, t->nseg, t->kc, a_len, c_len, t->ints);
    if (!t->bias) zero_bias(&p);
    unsigned char *is_out = calloc(c_len, 1);
    CHECK(is_out != NULL);
    for (size_t m = 0; m < t->M; m++)
        for (size_t n = 0; n < t->nc; n++) {
            is_out[m * t->cs + n] = 1;
            if (t->ints) continue; /* compared exactly */
            const double s = fabs((double)p.bias[n]) + abs_terms(&p, m * t->as, t->ss, n);
            p.bound[m * t->cs + n] = tolerance(t->nseg * t->kc, s);
        }
    g->fn(t->M, t->nc, t->nseg, t->kc, p.a, t->as, t->ss, p.w, p.bias, p.out, t->cs, t->relu);
    ns_ref_gemm(t->M, t->nc, nr, t->nseg, t->kc, p.a, t->as, t->ss, p.w, p.bias, p.ref, t->cs,
                t->relu);
    char what[160];
    snprintf(what, sizeof what, "M=%zu nc=%zu nseg=%zu kc=%zu as=%zu ss=%zu cs=%zu relu=%d %s",
             t->M, t->nc, t->nseg, t->kc, t->as, t->ss, t->cs, t->relu, t->ints ? "ints" : "reals");
    int ok = compare(&p, is_out, t->ints, what, g->name);
    if (ok && gen != g) { /* same operations in the same order: the same bits */
        float *o2 = alloc_floats(c_len);
        for (size_t i = 0; i < c_len; i++) o2[i] = SENTINEL;
        gen->fn(t->M, t->nc, t->nseg, t->kc, p.a, t->as, t->ss, p.w, p.bias, o2, t->cs, t->relu);
        for (size_t i = 0; i < c_len && ok; i++)
            if (!same_bits(o2[i], p.out[i])) {
                EXPECT(0, "%s %s: element %zu differs from %s (%.9g vs %.9g)", g->name, what, i,
                       gen->name, (double)p.out[i], (double)o2[i]);
                ok = 0;
            }
        free(o2);
    }
    free(is_out);
    problem_free(&p);
}

static size_t gemm_calls;

/* Every shape for one GEMM kernel. A specialisation runs at its own stride only. */
static void test_gemm_kernel(const ns_isa *isa, const ns_gemm_kernel *g) {
    const ns_gemm_kernel *gen = &isa->gemm[0];
    const size_t nr = isa->nr, mr = isa->mr;
    static const size_t long_k[] = {15, 16, 17, 31, 32, 33};
    unsigned flip = 0;
    for (int ints = 1; ints >= 0; ints--) {
        /* every tile shape x every store tail (reals: a few) x the short K loops (the
         * 4-step unroll +- 1) */
        for (size_t M = 1; M <= 2 * mr; M++)
            for (size_t nc = 1; nc <= nr; nc += ints ? 1 : nr / 2 - 1)
                for (size_t kc = 1; kc <= 9; kc++) {
                    const size_t as = g->as ? g->as : (kc | 1) + 2 * (M & 1);
                    gemm_case t = {M,
                                   nc,
                                   1 + flip % 3,
                                   kc,
                                   as,
                                   M * as + 5 + 2 * (kc & 1),
                                   nc | 1,
                                   (int)(flip & 1),
                                   (flip % 5) != 0,
                                   ints};
                    check_gemm(isa, g, gen, &t);
                    flip++;
                    gemm_calls++;
                }
        /* longer K (several unrolled steps plus 0..3 left) on a few column counts */
        for (size_t i = 0; i < sizeof long_k / sizeof long_k[0]; i++)
            for (size_t M = 1; M <= 2 * mr; M++) {
                const size_t ncs[] = {1, nr / 2 - 1, nr / 2 + 1, nr};
                for (size_t j = 0; j < 4; j++) {
                    const size_t kc = long_k[i], as = g->as ? g->as : kc + 1 + (M & 1);
                    gemm_case t = {M,          ncs[j],     1 + flip % 3,    kc, as,
                                   M * as + 3, ncs[j] + 2, (int)(flip & 1), 1,  ints};
                    check_gemm(isa, g, gen, &t);
                    flip++;
                    gemm_calls++;
                }
            }
    }
}

/* ---- conv + 2x2 max pool -------------------------------------------------------------------- */

static void check_conv_pool(const ns_isa *isa, const ns_conv_pool_kernel *k,
                            const ns_conv_pool_kernel *gen, size_t pw, size_t nc, size_t kc,
                            size_t as, size_t rs, size_t cs, int relu, int bias, int ints) {
    if (failures >= MAX_FAILURES) return;
    const size_t nr = isa->nr;
    /* rows a and a + rs, 3 segments rs apart: the last read is row 3, column 2*pw - 1 */
    const size_t a_len = 3 * rs + (2 * pw - 1) * as + kc;
    const size_t c_len = pw * cs + nr;
    problem p;
    problem_init(&p, nr, nc, 3, kc, a_len, c_len, ints);
    if (!bias) zero_bias(&p);
    unsigned char *is_out = calloc(c_len, 1);
    CHECK(is_out != NULL);
    for (size_t px = 0; px < pw; px++)
        for (size_t n = 0; n < nc; n++) {
            is_out[px * cs + n] = 1;
            if (ints) continue; /* compared exactly */
            double s = 0.0;     /* the largest of the four conv sums' bounds */
            for (size_t dy = 0; dy < 2; dy++)
                for (size_t dx = 0; dx < 2; dx++) {
                    double t = abs_terms(&p, dy * rs + (2 * px + dx) * as, rs, n);
                    if (t > s) s = t;
                }
            p.bound[px * cs + n] = tolerance(3 * kc, s + fabs((double)p.bias[n]));
        }
    k->fn(pw, nc, kc, p.a, as, rs, p.w, p.bias, p.out, cs, relu);
    ns_ref_conv_pool(pw, nc, nr, kc, p.a, as, rs, p.w, p.bias, p.ref, cs, relu);
    char what[160];
    snprintf(what, sizeof what, "pw=%zu nc=%zu kc=%zu as=%zu rs=%zu cs=%zu relu=%d %s", pw, nc, kc,
             as, rs, cs, relu, ints ? "ints" : "reals");
    int ok = compare(&p, is_out, ints, what, k->name);
    if (ok && gen != k) {
        float *o2 = alloc_floats(c_len);
        for (size_t i = 0; i < c_len; i++) o2[i] = SENTINEL;
        gen->fn(pw, nc, kc, p.a, as, rs, p.w, p.bias, o2, cs, relu);
        for (size_t i = 0; i < c_len && ok; i++)
            if (!same_bits(o2[i], p.out[i])) {
                EXPECT(0, "%s %s: element %zu differs from %s", k->name, what, i, gen->name);
                ok = 0;
            }
        free(o2);
    }
    free(is_out);
    problem_free(&p);
}

static size_t conv_pool_calls;

static void test_conv_pool_kernel(const ns_isa *isa, const ns_conv_pool_kernel *k) {
    const ns_conv_pool_kernel *gen = &isa->conv_pool[0];
    const size_t nr = isa->nr;
    unsigned flip = 0;
    for (int ints = 1; ints >= 0; ints--)
        for (size_t pw = 1; pw <= isa->mr; pw++)
            for (size_t nc = 1; nc <= nr; nc++) {
                /* a conv's kc is 3 * Cin; any kc must work: vary it around the unroll */
                const size_t kc = k->as ? 3 * k->as : 1 + flip % 13;
                const size_t as = k->as ? k->as : (kc / 3) | 1;
                const size_t rs = (2 * pw - 1) * as + kc + 2 * (flip % 3) + 1;
                check_conv_pool(isa, k, gen, pw, nc, kc, as, rs, nc + 1 + 2 * (flip & 1),
                                (int)(flip & 1), (flip % 4) != 0, ints);
                flip++;
                conv_pool_calls++;
            }
}

/* ---- pool and layout helpers (exact: no arithmetic) ----------------------------------------- */

static void test_pool2x2(const ns_isa *isa) {
    for (size_t cw = 2; cw <= 10; cw += 2)
        for (size_t cs = 1; cs <= 19; cs += 3)
            for (size_t c0 = 0; c0 < cs; c0 += 2)
                for (size_t c1 = c0 + 1; c1 <= cs; c1 += 3) {
                    const size_t pw = cw / 2;
                    float *rows = alloc_floats(2 * cw * cs), *out = alloc_floats(pw * cs);
                    for (size_t i = 0; i < 2 * cw * cs; i++) rows[i] = value(0, 0);
                    for (size_t i = 0; i < pw * cs; i++) out[i] = SENTINEL;
                    isa->pool2x2(rows, cw, cs, c0, c1, out);
                    for (size_t px = 0; px < pw; px++)
                        for (size_t c = 0; c < cs; c++) {
                            const float *t = rows + 2 * px * cs + c, *u = t + cw * cs;
                            float m = t[0];
                            if (t[cs] > m) m = t[cs];
                            if (u[0] > m) m = u[0];
                            if (u[cs] > m) m = u[cs];
                            const float want = (c >= c0 && c < c1) ? m : SENTINEL;
                            EXPECT(same_bits(out[px * cs + c], want),
                                   "%s pool2x2 cw=%zu cs=%zu [%zu,%zu): px %zu c %zu", isa->name,
                                   cw, cs, c0, c1, px, c);
                        }
                    free(rows);
                    free(out);
                }
}

static void test_to_nhwc(const ns_isa *isa) {
    for (size_t c = 1; c <= 6; c++)
        for (size_t hw = 1; hw <= 37; hw += 3) {
            float *src = alloc_floats(c * hw), *dst = alloc_floats(c * hw);
            for (size_t i = 0; i < c * hw; i++) src[i] = value(0, 0);
            isa->to_nhwc(src, c, hw, dst);
            for (size_t ch = 0; ch < c; ch++)
                for (size_t i = 0; i < hw; i++)
                    EXPECT(same_bits(dst[i * c + ch], src[ch * hw + i]),
                           "%s to_nhwc c=%zu hw=%zu at (%zu, %zu)", isa->name, c, hw, ch, i);
            free(src);
            free(dst);
        }
}

/* ---- the table and the packing choice ------------------------------------------------------ */

/* The table says what runs: tile = "<name>_<MR>x<NR>", kernel names carry the tile and their
 * stride, the lookup finds each specialisation and falls back to the generic kernel. */
static void test_table(const ns_isa *isa) {
    char tile[64], want[96];
    snprintf(tile, sizeof tile, "%s_%zux%zu", isa->name, isa->mr, isa->nr);
    EXPECT(strcmp(isa->tile, tile) == 0, "%s: tile '%s', MR x NR say '%s'", isa->name, isa->tile,
           tile);
    CHECK(isa->n_gemm >= 1 && isa->gemm[0].as == 0);
    for (size_t i = 0; i < isa->n_gemm; i++) {
        const ns_gemm_kernel *g = &isa->gemm[i];
        if (g->as)
            snprintf(want, sizeof want, "ns_gemm_%s_as%zu", isa->tile, g->as);
        else
            snprintf(want, sizeof want, "ns_gemm_%s", isa->tile);
        EXPECT(strcmp(g->name, want) == 0, "GEMM kernel '%s', expected '%s'", g->name, want);
        EXPECT(ns_isa_gemm(isa, g->as ? g->as : 1000003) == g, "ns_isa_gemm(%zu) is not %s", g->as,
               g->name);
    }
    EXPECT((isa->conv_pool != NULL) == (isa->n_conv_pool > 0), "%s: conv_pool table", isa->name);
    for (size_t i = 0; i < isa->n_conv_pool; i++) {
        const ns_conv_pool_kernel *k = &isa->conv_pool[i];
        if (k->as)
            snprintf(want, sizeof want, "ns_conv_pool_%s_%zux%zu_as%zu", isa->name, isa->pool_mr,
                     isa->nr, k->as);
        else
            snprintf(want, sizeof want, "ns_conv_pool_%s_%zux%zu", isa->name, isa->pool_mr,
                     isa->nr);
        EXPECT(strcmp(k->name, want) == 0, "conv-pool kernel '%s', expected '%s'", k->name, want);
        EXPECT(ns_isa_conv_pool(isa, k->as ? k->as : 1000003) == k,
               "ns_isa_conv_pool(%zu) is not %s", k->as, k->name);
    }
    if (!isa->n_conv_pool) EXPECT(ns_isa_conv_pool(isa, 3) == NULL, "%s: conv_pool", isa->name);
}

/* Packing picks, per layer, the kernel specialised for that layer's stride (conv: Cin, linear:
 * K) when the ISA has one. */
static void test_packing_choice(ns_kernel kid, const ns_isa *isa) {
    static const size_t sizes[8] = {NS_NET_C1 * NS_NET_IN_C * 9,     NS_NET_C1,
                                    NS_NET_C2 * NS_NET_C1 * 9,       NS_NET_C2,
                                    NS_NET_HIDDEN * NS_NET_FEATURES, NS_NET_HIDDEN,
                                    NS_NET_CLASSES * NS_NET_HIDDEN,  NS_NET_CLASSES};
    float *buf[8];
    for (int i = 0; i < 8; i++) {
        buf[i] = alloc_floats(sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++) buf[i][j] = value(0, 0) * 0.05f;
    }
    ns_net_weights w = {buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]};
    ns_net *net = NULL;
    ns_error err;
    ns_error_clear(&err);
    CHECK(ns_net_create(&w, ns_kernel_name(kid), &net, &err) == NS_OK);
    static const struct {
        int layer;
        size_t as;
        int pooled;
    } layers[] = {{NS_LAYER_CONV1, NS_NET_IN_C, 1},
                  {NS_LAYER_CONV2, NS_NET_C1, 1},
                  {NS_LAYER_FC1, NS_NET_FEATURES, 0},
                  {NS_LAYER_FC2, NS_NET_HIDDEN, 0}};
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const char *want = layers[i].pooled && isa->n_conv_pool
                               ? ns_isa_conv_pool(isa, layers[i].as)->name
                               : ns_isa_gemm(isa, layers[i].as)->name;
        const char *got = ns_net_layer_kernel(net, layers[i].layer);
        EXPECT(got && strcmp(got, want) == 0, "%s: layer %s runs '%s', expected '%s'", isa->name,
               ns_net_layer_names[layers[i].layer], got ? got : "(null)", want);
    }
    EXPECT(ns_net_layer_kernel(net, NS_LAYER_RELU1) == NULL,
           "relu1 is fused: no kernel of its own");
    ns_net_destroy(net);
    for (int i = 0; i < 8; i++) free(buf[i]);
}

int main(void) {
    const ns_kernel simd[] = {NS_KERNEL_NEON, NS_KERNEL_AVX2, NS_KERNEL_AVX512};
    int tested = 0;
    for (size_t i = 0; i < sizeof simd / sizeof simd[0]; i++) {
        const ns_isa *isa = ns_kernel_isa(simd[i]);
        if (!isa) {
            printf("%s: not available here, skipped\n", ns_kernel_name(simd[i]));
            continue;
        }
        tested++;
        const int before = failures;
        gemm_calls = conv_pool_calls = 0;
        test_table(isa);
        for (size_t g = 0; g < isa->n_gemm; g++) test_gemm_kernel(isa, &isa->gemm[g]);
        for (size_t k = 0; k < isa->n_conv_pool; k++)
            test_conv_pool_kernel(isa, &isa->conv_pool[k]);
        test_pool2x2(isa);
        test_to_nhwc(isa);
        test_packing_choice(simd[i], isa);
        printf("%s (tile %s): %zu GEMM kernels, %zu conv-pool kernels, %zu + %zu calls, %s\n",
               isa->name, isa->tile, isa->n_gemm, isa->n_conv_pool, gemm_calls, conv_pool_calls,
               failures != before       ? "FAILED"
               : before >= MAX_FAILURES ? "skipped (too many failures before)"
                                        : "ok");
    }
    EXPECT(strcmp(ns_kernel_tile(NS_KERNEL_REF), "scalar") == 0, "ref tile");
    if (!tested) printf("no SIMD kernel compiled in or supported here: nothing to test\n");
    if (failures) {
        printf("test_microkernels: %d failures%s\n", failures,
               failures >= MAX_FAILURES ? " (stopped early)" : "");
        return 1;
    }
    printf("test_microkernels: ok\n");
    return 0;
}
