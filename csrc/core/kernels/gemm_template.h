/* The segmented-GEMM micro-kernels, written once and instantiated per ISA (see kernels.h for
 * the operation). Before including this file an ISA source defines:
 *
 *   NS_VEC              the vector type             NS_VLEN   floats per vector
 *   NS_NV               vectors per NR block        NS_MR     rows per full register tile
 *   NS_LOAD(p)          aligned-or-not vector load  NS_STORE(p, v)  vector store
 *   NS_BCAST(p)         broadcast *p to all lanes   NS_FMA(acc, a, b)  acc + a * b
 *   NS_ZERO()           zero vector                 NS_MAX(a, b), NS_ADD(a, b)
 *   NS_STORE_PART(p, v, n)  store the first n (< NS_VLEN) lanes of v
 *   NS_GEMM_NAME        the GEMM kernel's name, ISA and tile: ns_gemm_<isa>_<MR>x<NR>
 *   NS_POOL_NAME, NS_NHWC_NAME  names of the 2x2 max-pool and NCHW->NHWC helpers
 * and optionally
 *   NS_POOL_MC (even; 2 * NS_POOL_MC * NS_NV accumulators must fit the register file) with
 *     NS_CONV_POOL_NAME (ns_conv_pool_<isa>_<2*NS_POOL_MC>x<NR>): a conv + 2x2 max-pool kernel
 *     whose epilogue pools in registers;
 *   NS_FMA_LANE(acc, b, a, lane) = acc + b * a[lane] (lane a literal 0..3): then the K loop
 *     runs 4 steps at a time with one vector load of 4 consecutive A values per row and
 *     lane-indexed FMAs (AArch64's FMLA by element) instead of a broadcast per row and step;
 *   NS_GEMM_STRIDES(X), NS_CONV_POOL_STRIDES(X): lists X(n) X(m) ... of A row strides to
 *     specialise for (below).
 *
 * A register tile holds NS_MR x NS_NV accumulators; the compiler keeps them in registers
 * because every loop over them has a compile-time trip count and is fully unrolled.
 * Rows past the last full tile are done by smaller tiles (NS_MR/2, 8, 4, 2 rows: the same
 * FMA sequence per row) and a last single row by a K-split tile (ns_tile_row1). The split of
 * rows into tiles depends only on M, so results never depend on the thread count.
 *
 * Instantiation (end of this file): NS_GEMM_NAME takes any A row stride; for each stride n of
 * NS_GEMM_STRIDES a function NS_GEMM_NAME##_as##n has it as a compile-time constant (every A
 * access in a tile becomes [pointer + constant]: no per-row pointers, fewer registers) and must
 * be called with as == n. Likewise NS_CONV_POOL_NAME and NS_CONV_POOL_STRIDES. The template
 * knows no model: the ISA source passes the strides, and packing (net.c) picks the function
 * for each layer through the table NS_ISA_INIT builds (ns_isa_gemm, ns_isa_conv_pool). A
 * specialisation runs exactly the operations of the generic kernel: the same bits.
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

/* MR rows x NR columns. Row m reads A at a + (m % MC) * as + (m / MC) * rs2: MC = MR is a
 * plain GEMM tile; with POOL, the tile is MC columns of two conv rows (rs2 apart) and the
 * epilogue writes their 2x2 max pool, MC/2 pooled pixels cs apart (MR = 2 * MC, MC even). */
NS_INLINE void ns_tile_ex(const size_t MR, const size_t MC, const int POOL, size_t nc, size_t nseg,
                          size_t kc, const float *a, const size_t as, size_t rs2, size_t ss,
                          const float *w, const float *bias, float *c, size_t cs, int relu) {
#define NS_AOFF(m) (((m) % MC) * as + ((m) / MC) * rs2)
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
            NS_UNROLL for (size_t m = 0; m < MR; m++) av[m] = NS_LOAD(ap + NS_AOFF(m) + k);
#define NS_LANE_STEP(L)                                                                            \
    do {                                                                                           \
        NS_VEC wv[NS_NV];                                                                          \
        NS_UNROLL for (size_t v = 0; v < NS_NV; v++) wv[v] = NS_LOAD(w + v * NS_VLEN);             \
        w += NS_NR;                                                                                \
        NS_UNROLL for (size_t m = 0; m < MR; m++) {                                                \
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[m][v] =                               \
                NS_FMA_LANE(acc[m][v], wv[v], av[m], L);                                           \
        }                                                                                          \
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
                const NS_VEC x = NS_BCAST(ap + NS_AOFF(m) + k);
                NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[m][v] =
                    NS_FMA(acc[m][v], x, wv[v]);
            }
        }
    }
#undef NS_AOFF
    const NS_VEC zero = NS_ZERO();
    if (POOL) {
        /* max(a + b, c + b) == max(a, c) + b exactly (rounding is monotonic): pool, then bias */
        NS_UNROLL for (size_t v = 0; v < NS_NV; v++) {
            const NS_VEC b = NS_LOAD(bias + v * NS_VLEN);
            NS_UNROLL for (size_t j = 0; j < MC / 2; j++) {
                NS_VEC r = NS_MAX(NS_MAX(acc[2 * j][v], acc[2 * j + 1][v]),
                                  NS_MAX(acc[MC + 2 * j][v], acc[MC + 2 * j + 1][v]));
                r = NS_ADD(r, b);
                if (relu) r = NS_MAX(r, zero);
                const size_t lo = v * NS_VLEN;
                if (nc >= lo + NS_VLEN)
                    NS_STORE(c + j * cs + lo, r);
                else if (nc > lo)
                    NS_STORE_PART(c + j * cs + lo, r, nc - lo);
            }
        }
        return;
    }
    NS_UNROLL for (size_t v = 0; v < NS_NV; v++) {
        const NS_VEC b = NS_LOAD(bias + v * NS_VLEN);
        NS_UNROLL for (size_t m = 0; m < MR; m++) {
            acc[m][v] = NS_ADD(acc[m][v], b);
            if (relu) acc[m][v] = NS_MAX(acc[m][v], zero);
        }
    }
    if (nc == NS_NR) {
        NS_UNROLL for (size_t m = 0; m < MR; m++) {
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++)
                NS_STORE(c + m * cs + v * NS_VLEN, acc[m][v]);
        }
    } else {
        for (size_t m = 0; m < MR; m++) {
            for (size_t v = 0; v < NS_NV; v++) {
                size_t lo = v * NS_VLEN;
                if (lo >= nc) break;
                if (nc - lo >= NS_VLEN)
                    NS_STORE(c + m * cs + lo, acc[m][v]);
                else
                    NS_STORE_PART(c + m * cs + lo, acc[m][v], nc - lo);
            }
        }
    }
}

NS_INLINE void ns_tile(const size_t MR, size_t nc, size_t nseg, size_t kc, const float *a,
                       const size_t as, size_t ss, const float *w, const float *bias, float *c,
                       size_t cs, int relu) {
    ns_tile_ex(MR, MR, 0, nc, nseg, kc, a, as, 0, ss, w, bias, c, cs, relu);
}

/* One row (batch-1 GEMV, remainders): with a single row the MR x NV accumulator chains of a
 * full tile shrink to NV, too few to hide the FMA latency, so K is split 4 ways into independent
 * partial sums that are added at the end ((p0 + p1) + (p2 + p3)). */
NS_INLINE void ns_tile_row1(size_t nc, size_t nseg, size_t kc, const float *a, size_t ss,
                            const float *w, const float *bias, float *c, int relu) {
    NS_VEC acc[4][NS_NV];
    NS_UNROLL for (size_t j = 0; j < 4; j++) {
        NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[j][v] = NS_ZERO();
    }
    for (size_t s = 0; s < nseg; s++) {
        const float *ap = a + s * ss;
        size_t k = 0;
        for (; k + 4 <= kc; k += 4) {
            NS_UNROLL for (size_t j = 0; j < 4; j++) {
                const NS_VEC x = NS_BCAST(ap + k + j);
                NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[j][v] =
                    NS_FMA(acc[j][v], x, NS_LOAD(w + v * NS_VLEN));
                w += NS_NR;
            }
        }
        for (; k < kc; k++) {
            const NS_VEC x = NS_BCAST(ap + k);
            NS_UNROLL for (size_t v = 0; v < NS_NV; v++) acc[0][v] =
                NS_FMA(acc[0][v], x, NS_LOAD(w + v * NS_VLEN));
            w += NS_NR;
        }
    }
    const NS_VEC zero = NS_ZERO();
    NS_UNROLL for (size_t v = 0; v < NS_NV; v++) {
        NS_VEC r = NS_ADD(NS_ADD(acc[0][v], acc[1][v]), NS_ADD(acc[2][v], acc[3][v]));
        r = NS_ADD(r, NS_LOAD(bias + v * NS_VLEN));
        if (relu) r = NS_MAX(r, zero);
        const size_t lo = v * NS_VLEN;
        if (nc >= lo + NS_VLEN)
            NS_STORE(c + lo, r);
        else if (nc > lo)
            NS_STORE_PART(c + lo, r, nc - lo);
    }
}

/* All M rows with a row stride known at compile time where possible (AS != 0): then every
 * A access in the tile is [pointer + constant] and no per-row pointers are needed. */
NS_INLINE void ns_gemm_rows(const size_t AS, size_t M, size_t nc, size_t nseg, size_t kc,
                            const float *a, size_t as, size_t ss, const float *w, const float *bias,
                            float *c, size_t cs, int relu) {
    const size_t st = AS ? AS : as;
    size_t m = 0;
    for (; m + NS_MR <= M; m += NS_MR)
        ns_tile(NS_MR, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
#if NS_MR >= 6
    if (M - m >= NS_MR / 2) { /* e.g. a 30-pixel conv row with 12-row tiles: 12 + 12 + 6 */
        ns_tile(NS_MR / 2, nc, nseg, kc, a + m * st, st, ss, w, bias, c + m * cs, cs, relu);
        m += NS_MR / 2;
    }
#endif
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
    if (m < M) ns_tile_row1(nc, nseg, kc, a + m * st, ss, w, bias, c + m * cs, relu);
}

#if defined(NS_POOL_MC)
/* One pooled output row of conv3x3 + bias (+ ReLU) + 2x2 max pool on an NHWC image:
 * pooled columns [0, pw) from the conv rows at a and a + rs (the input row stride, which is
 * also the segment stride: segments are the kernel's 3 rows). Tiles of NS_POOL_MC conv
 * columns x 2 rows; the remainder in tiles of 2 columns. */
NS_INLINE void ns_conv_pool_cols(const size_t AS, size_t pw, size_t nc, size_t kc, const float *a,
                                 size_t as, size_t rs, const float *w, const float *bias, float *c,
                                 size_t cs, int relu) {
    const size_t st = AS ? AS : as;
    size_t px = 0;
    for (; px + NS_POOL_MC / 2 <= pw; px += NS_POOL_MC / 2)
        ns_tile_ex(2 * NS_POOL_MC, NS_POOL_MC, 1, nc, 3, kc, a + 2 * px * st, st, rs, rs, w, bias,
                   c + px * cs, cs, relu);
    for (; px < pw; px++)
        ns_tile_ex(4, 2, 1, nc, 3, kc, a + 2 * px * st, st, rs, rs, w, bias, c + px * cs, cs, relu);
}

#endif

/* 2x2 max pool of a pair of NHWC conv rows: rows (2, cw, cs) -> out (cw/2, cs), channels
 * [c0,c1). Plain C: the compiler vectorises the channel loop with this file's ISA. */
static void NS_POOL_NAME(const float *restrict rows, size_t cw, size_t cs, size_t c0, size_t c1,
                         float *restrict out) {
    const size_t pw = cw / 2;
    for (size_t px = 0; px < pw; px++) {
        const float *t = rows + 2 * px * cs, *u = t + cw * cs;
        float *o = out + px * cs;
        for (size_t c = c0; c < c1; c++) {
            float m0 = t[c] > t[cs + c] ? t[c] : t[cs + c];
            float m1 = u[c] > u[cs + c] ? u[c] : u[cs + c];
            o[c] = m0 > m1 ? m0 : m1;
        }
    }
}

/* NCHW (c, hw) -> NHWC (hw, c) for one image. Plain C with the 3-channel case (the net's
 * input) spelled out so that the compiler vectorises it with interleaving permutes. */
static void NS_NHWC_NAME(const float *restrict src, size_t c, size_t hw, float *restrict dst) {
    if (c == 3) {
        const float *s0 = src, *s1 = src + hw, *s2 = src + 2 * hw;
        for (size_t i = 0; i < hw; i++) {
            dst[3 * i] = s0[i];
            dst[3 * i + 1] = s1[i];
            dst[3 * i + 2] = s2[i];
        }
        return;
    }
    for (size_t ch = 0; ch < c; ch++)
        for (size_t i = 0; i < hw; i++) dst[i * c + ch] = src[ch * hw + i];
}

/* ---- instantiation ------------------------------------------------------------------------ */

#define NS_CAT_(a, b) a##b
#define NS_CAT(a, b)  NS_CAT_(a, b)
#define NS_STR_(x)    #x
#define NS_STR(x)     NS_STR_(x)

#ifndef NS_GEMM_STRIDES
#define NS_GEMM_STRIDES(X)
#endif

/* The generic GEMM kernel: any A row stride. */
static void NS_GEMM_NAME(size_t M, size_t nc, size_t nseg, size_t kc, const float *a, size_t as,
                         size_t ss, const float *w, const float *bias, float *c, size_t cs,
                         int relu) {
    ns_gemm_rows(0, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu);
}

/* One GEMM kernel per listed stride N (callers pass as == N). */
#define NS_GEMM_AS(N) NS_CAT(NS_GEMM_NAME, NS_CAT(_as, N))
#define NS_GEMM_DEFINE(N)                                                                          \
    static void NS_GEMM_AS(N)(size_t M, size_t nc, size_t nseg, size_t kc, const float *a,         \
                              size_t as, size_t ss, const float *w, const float *bias, float *c,   \
                              size_t cs, int relu) {                                               \
        ns_gemm_rows(N, M, nc, nseg, kc, a, as, ss, w, bias, c, cs, relu);                         \
    }
NS_GEMM_STRIDES(NS_GEMM_DEFINE)

#define NS_GEMM_ENTRY(N) {NS_STR(NS_GEMM_AS(N)), N, NS_GEMM_AS(N)},
static const ns_gemm_kernel ns_gemm_kernels[] = {{NS_STR(NS_GEMM_NAME), 0, NS_GEMM_NAME},
                                                 NS_GEMM_STRIDES(NS_GEMM_ENTRY)};

#if defined(NS_POOL_MC)
#ifndef NS_CONV_POOL_STRIDES
#define NS_CONV_POOL_STRIDES(X)
#endif

/* The generic conv + pool kernel: any pixel stride. */
static void NS_CONV_POOL_NAME(size_t pw, size_t nc, size_t kc, const float *a, size_t as, size_t rs,
                              const float *w, const float *bias, float *c, size_t cs, int relu) {
    ns_conv_pool_cols(0, pw, nc, kc, a, as, rs, w, bias, c, cs, relu);
}

#define NS_CONV_POOL_AS(N) NS_CAT(NS_CONV_POOL_NAME, NS_CAT(_as, N))
#define NS_CONV_POOL_DEFINE(N)                                                                     \
    static void NS_CONV_POOL_AS(N)(size_t pw, size_t nc, size_t kc, const float *a, size_t as,     \
                                   size_t rs, const float *w, const float *bias, float *c,         \
                                   size_t cs, int relu) {                                          \
        ns_conv_pool_cols(N, pw, nc, kc, a, as, rs, w, bias, c, cs, relu);                         \
    }
NS_CONV_POOL_STRIDES(NS_CONV_POOL_DEFINE)

#define NS_CONV_POOL_ENTRY(N) {NS_STR(NS_CONV_POOL_AS(N)), N, NS_CONV_POOL_AS(N)},
static const ns_conv_pool_kernel ns_conv_pool_kernels[] = {
    {NS_STR(NS_CONV_POOL_NAME), 0, NS_CONV_POOL_NAME}, NS_CONV_POOL_STRIDES(NS_CONV_POOL_ENTRY)};
#define NS_CONV_POOL_TABLE   ns_conv_pool_kernels
#define NS_CONV_POOL_COUNT   (sizeof ns_conv_pool_kernels / sizeof ns_conv_pool_kernels[0])
#define NS_CONV_POOL_TILE_MR (2 * NS_POOL_MC)
#else
#define NS_CONV_POOL_TABLE   NULL
#define NS_CONV_POOL_COUNT   0
#define NS_CONV_POOL_TILE_MR 0
#endif

/* The ISA's dispatch table (an initialiser for a static const ns_isa): NAME is the user-facing
 * kernel name, TILE "<isa>_<MR>x<NR>". */
#define NS_ISA_INIT(NAME, TILE)                                                                    \
    {.name = (NAME),                                                                               \
     .tile = (TILE),                                                                               \
     .mr = NS_MR,                                                                                  \
     .nr = NS_NR,                                                                                  \
     .gemm = ns_gemm_kernels,                                                                      \
     .n_gemm = sizeof ns_gemm_kernels / sizeof ns_gemm_kernels[0],                                 \
     .conv_pool = NS_CONV_POOL_TABLE,                                                              \
     .n_conv_pool = NS_CONV_POOL_COUNT,                                                            \
     .pool_mr = NS_CONV_POOL_TILE_MR,                                                              \
     .pool2x2 = NS_POOL_NAME,                                                                      \
     .to_nhwc = NS_NHWC_NAME}
