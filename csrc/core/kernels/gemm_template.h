/* The segmented-GEMM micro-kernel, written once and instantiated per ISA (see kernels.h for
 * the operation). Before including this file an ISA source defines:
 *
 *   NS_VEC              the vector type             NS_VLEN   floats per vector
 *   NS_NV               vectors per NR block        NS_MR     rows per full register tile
 *   NS_LOAD(p)          aligned-or-not vector load  NS_STORE(p, v)  vector store
 *   NS_BCAST(p)         broadcast *p to all lanes   NS_FMA(acc, a, b)  acc + a * b
 *   NS_ZERO()           zero vector                 NS_MAX(a, b), NS_ADD(a, b)
 *   NS_STORE_PART(p, v, n)  store the first n (< NS_VLEN) lanes of v
 *   NS_GEMM_NAME        the exported function name
 * and optionally NS_FMA_LANE(acc, b, a, lane) = acc + b * a[lane] (lane a literal 0..3): then
 * the K loop runs 4 steps at a time with one vector load of 4 consecutive A values per row and
 * lane-indexed FMAs (AArch64's FMLA by element) instead of a broadcast per row and step.
 *
 * A register tile holds NS_MR x NS_NV accumulators; the compiler keeps them in registers
 * because every loop over them has a compile-time trip count and is fully unrolled.
 * Rows past the last full tile are done by smaller tiles (8, 4, 2, 1 rows), so every row is
 * computed by the same sequence of FMAs whatever M is: results per row do not depend on how
 * the rows were split between tasks.
 */
#include <stddef.h>

#define NS_NR (NS_NV * NS_VLEN)

#if defined(__GNUC__)
#define NS_INLINE static inline __attribute__((always_inline))
#define NS_UNROLL _Pragma("GCC unroll 16")
#else
#define NS_INLINE static inline
#define NS_UNROLL
#endif

NS_INLINE void ns_tile(const size_t MR, size_t nc, size_t nseg, size_t kc, const float *a,
                       const size_t as, size_t ss, const float *w, const float *bias, float *c,
                       size_t cs, int relu) {
    NS_VEC acc[NS_MR][NS_NV];
    NS_UNROLL for (size_t m = 0; m < MR; m++) {
        NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[m][v] = NS_ZERO();
    }
    for (size_t s = 0; s < nseg; s++) {
        const float *ap = a + s * ss;
        size_t k = 0;
#if defined(NS_FMA_LANE)
        for (; k + 4 <= kc; k += 4) {
            NS_VEC av[NS_MR];
            NS_UNROLL for (size_t m = 0; m < MR; m++) av[m] = NS_LOAD(ap + m * as + k);
#define NS_LANE_STEP(L)                                                                          \
    do {                                                                                         \
        NS_VEC wv[NS_NV];                                                                        \
        NS_UNROLL for (size_t v = 0; v < NS_NV; v++) wv[v] = NS_LOAD(w + v * NS_VLEN);          \
        w += NS_NR;                                                                              \
        NS_UNROLL for (size_t m = 0; m < MR; m++) {                                              \
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++)                                         \
                acc[m][v] = NS_FMA_LANE(acc[m][v], wv[v], av[m], L);                             \
        }                                                                                        \
    } while (0)
            NS_LANE_STEP(0);
            NS_LANE_STEP(1);
            NS_LANE_STEP(2);
            NS_LANE_STEP(3);
#undef NS_LANE_STEP
        }
#endif
        for (; k < kc; k++) {
            NS_VEC wv[NS_NV];
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++) wv[v] = NS_LOAD(w + v * NS_VLEN);
            w += NS_NR;
            NS_UNROLL for (size_t m = 0; m < MR; m++) {
                const NS_VEC x = NS_BCAST(ap + m * as + k);
                NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[m][v] = NS_FMA(acc[m][v], x, wv[v]);
            }
        }
    }
    const NS_VEC zero = NS_ZERO();
    NS_UNROLL for (size_t v = 0; v < NS_NV; v++) {
        const NS_VEC b = NS_LOAD(bias + v * NS_VLEN);
        NS_UNROLL for (size_t m = 0; m < MR; m++) {
            acc[m][v] = NS_ADD(acc[m][v], b);
            if (relu) acc[m][v] = NS_MAX(acc[m][v], zero);
        }
    }
    if (nc == NS_NR) {
        NS_UNROLL for (size_t m = 0; m < MR; m++) {
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++) NS_STORE(c + m * cs + v * NS_VLEN, acc[m][v]);
        }
    } else {
        for (size_t m = 0; m < MR; m++) {
            for (size_t v = 0; v < NS_NV; v++) {
                size_t lo = v * NS_VLEN;
                if (lo >= nc) break;
                if (nc - lo >= NS_VLEN) NS_STORE(c + m * cs + lo, acc[m][v]);
                else NS_STORE_PART(c + m * cs + lo, acc[m][v], nc - lo);
            }
        }
    }
}

/* All M rows with a row stride known at compile time where possible (AS != 0): then every
 * A access in the tile is [pointer + constant] and no per-row pointers are needed. */
NS_INLINE void ns_gemm_rows(const size_t AS, size_t M, size_t nc, size_t nseg, size_t kc,
                            const float *a, size_t as, size_t ss, const float *w,
                            const float *bias, float *c, size_t cs, int relu) {
    const size_t st = AS ? AS : as;
    size_t m = 0;
    for (; m + NS_MR <= M; m += NS_MR)
        ns_tile(NS_MR, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
#if NS_MR > 8
    if (M - m >= 8) {
        ns_tile(8, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
        m += 8;
    }
#endif
#if NS_MR > 4
    if (M - m >= 4) {
        ns_tile(4, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
        m += 4;
    }
#endif
    /* at most 3 rows left (NS_MR <= 4 leaves up to NS_MR - 1) */
    while (M - m >= 2) {
        ns_tile(2, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
        m += 2;
    }
    if (m < M) ns_tile(1, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
}

static void NS_GEMM_NAME(size_t M, size_t nc, size_t nseg, size_t kc, const float *a, size_t as,
                         size_t ss, const float *w, const float *bias, float *c, size_t cs,
                         int relu) {
    switch (as) {
    case 3: ns_gemm_rows(3, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu); break;
    case 32: ns_gemm_rows(32, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu); break;
    case 128: ns_gemm_rows(128, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu); break;
    case 2304: ns_gemm_rows(2304, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu); break;
    default: ns_gemm_rows(0, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu); break;
    }
}
