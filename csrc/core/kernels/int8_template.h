/* The int8 dot-product micro-kernels (NS_QPACK_DOT4 layout), written once and instantiated per
 * ISA: x86-64 AVX512-VNNI and AVX-VNNI (vpdpbusd: u8 x s8, 4 products summed into each int32
 * lane) and AArch64 dotprod (SDOT by element: s8 x s8, the activations offset by -128 and the
 * bias corrected at packing). See int8_kernels.h for the operation and number formats. Before
 * including this file an ISA source defines:
 *
 *   NS_QV           int32 vector type           NS_QLANES  int32 lanes per vector
 *   NS_QNV          vectors per NR block        NS_QMR     rows per full register tile
 *   NS_QLOADW(p)    load NS_QLANES * 4 weight bytes      NS_QLOADI(p)  load NS_QLANES int32
 *   NS_QZERO()      NS_QADD(a, b)  NS_QMAX(a, b) (int32)
 *   NS_QREQUANT(v, mult, shift)  the fixed-point requantization, clamped to 0..255 (int32)
 *   NS_QSTORE_U8(p, v, n)        store lanes [0, n) of a 0..255 vector as bytes
 *   NS_QSTORE_F32(p, v, s, n)    store lanes [0, n) of (float)v * s (s a float vector load)
 *   NS_QDOT_BCAST(acc, p, w)     acc + dot4(the 4 bytes at p, broadcast; w) (x86), or
 *   NS_QLOADA(p), NS_QLOADA4(p), NS_QDOT_LANE(acc, w, a, L)  (AArch64: load 16 A bytes = 4
 *                                 K groups (NS_QLOADA4: one group, in lane 0 at least), then
 *                                 acc + dot4(w, group L of a); L a literal 0..3)
 *   NS_QGEMM_NAME, NS_QCONV_POOL_NAME, NS_QPOOL_MC (even)
 *
 * Integer sums do not depend on order, so any tiling or K split gives the reference's bits.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NS_QNR (NS_QNV * NS_QLANES)

#if defined(__GNUC__)
#define NS_QINLINE static inline __attribute__((always_inline))
#define NS_QUNROLL _Pragma("GCC unroll 16")
#else
#define NS_QINLINE static inline
#define NS_QUNROLL
#endif

/* Store one accumulator vector v of columns [lo, lo + NS_QLANES) of a row: requant or dequant. */
NS_QINLINE void ns_qstore_vec(NS_QV v, size_t lo, size_t nc, const ns_qout *q, void *c) {
    if (nc <= lo) return;
    const size_t n = nc - lo < NS_QLANES ? nc - lo : NS_QLANES;
    if (q->scale)
        NS_QSTORE_F32((float *)c + lo, v, q->scale + lo, n);
    else
        NS_QSTORE_U8((uint8_t *)c + lo, NS_QREQUANT(v, q->mult + lo, q->shift + lo), n);
}

/* MR rows x NR columns; row m reads A at a + (m % MC) * as + (m / MC) * rs2. POOL: the tile is
 * MC columns of two conv rows and the epilogue writes their 2x2 max pool (MC/2 pixels). */
NS_QINLINE void ns_qtile_ex(const size_t MR, const size_t MC, const int POOL, size_t nc,
                            size_t nseg, size_t kc, const uint8_t *a, const size_t as, size_t rs2,
                            size_t ss, const int8_t *w, const ns_qout *q, void *c, size_t cs) {
#define NS_QAOFF(m) (((m) % MC) * as + ((m) / MC) * rs2)
    NS_QV acc[NS_QMR][NS_QNV];
    NS_QUNROLL for (size_t m = 0; m < MR; m++) {
        NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[m][v] = NS_QZERO();
    }
    for (size_t s = 0; s < nseg; s++) {
        const uint8_t *ap = a + s * ss;
        size_t k = 0;
#if defined(NS_QDOT_LANE)
        for (; k + 16 <= kc; k += 16) {
            NS_QV av[NS_QMR];
            NS_QUNROLL for (size_t m = 0; m < MR; m++) av[m] = NS_QLOADA(ap + NS_QAOFF(m) + k);
#define NS_QLANE_STEP(L)                                                                           \
    do {                                                                                           \
        NS_QV wv[NS_QNV];                                                                          \
        NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) wv[v] = NS_QLOADW(w + v * NS_QLANES * 4);   \
        w += NS_QNR * 4;                                                                           \
        NS_QUNROLL for (size_t m = 0; m < MR; m++) {                                               \
            NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[m][v] =                             \
                NS_QDOT_LANE(acc[m][v], wv[v], av[m], L);                                          \
        }                                                                                          \
    } while (0)
            NS_QLANE_STEP(0);
            NS_QLANE_STEP(1);
            NS_QLANE_STEP(2);
            NS_QLANE_STEP(3);
#undef NS_QLANE_STEP
        }
        for (; k < kc; k += 4) { /* a K group at a time (kc % 16 != 0, conv1) */
            NS_QV wv[NS_QNV];
            NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) wv[v] = NS_QLOADW(w + v * NS_QLANES * 4);
            w += NS_QNR * 4;
            NS_QUNROLL for (size_t m = 0; m < MR; m++) {
                const NS_QV av = NS_QLOADA4(ap + NS_QAOFF(m) + k);
                NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[m][v] =
                    NS_QDOT_LANE(acc[m][v], wv[v], av, 0);
            }
        }
#else
        for (; k < kc; k += 4) {
            NS_QV wv[NS_QNV];
            NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) wv[v] = NS_QLOADW(w + v * NS_QLANES * 4);
            w += NS_QNR * 4;
            NS_QUNROLL for (size_t m = 0; m < MR; m++) {
                const uint8_t *p = ap + NS_QAOFF(m) + k;
                NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[m][v] =
                    NS_QDOT_BCAST(acc[m][v], p, wv[v]);
            }
        }
#endif
    }
#undef NS_QAOFF
    if (POOL) {
        NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) {
            const NS_QV b = NS_QLOADI(q->bias + v * NS_QLANES);
            NS_QUNROLL for (size_t j = 0; j < MC / 2; j++) {
                NS_QV r = NS_QMAX(NS_QMAX(acc[2 * j][v], acc[2 * j + 1][v]),
                                  NS_QMAX(acc[MC + 2 * j][v], acc[MC + 2 * j + 1][v]));
                ns_qstore_vec(NS_QADD(r, b), v * NS_QLANES, nc, q, (uint8_t *)c + j * cs);
            }
        }
        return;
    }
    NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) {
        const NS_QV b = NS_QLOADI(q->bias + v * NS_QLANES);
        NS_QUNROLL for (size_t m = 0; m < MR; m++) {
            void *row = q->scale ? (void *)((float *)c + m * cs) : (void *)((uint8_t *)c + m * cs);
            ns_qstore_vec(NS_QADD(acc[m][v], b), v * NS_QLANES, nc, q, row);
        }
    }
}

/* One row (batch-1 GEMV, remainders): K groups split 4 ways into independent accumulator
 * chains so the dot-product latency is hidden (exact: integer sums). */
NS_QINLINE void ns_qtile_row1(size_t nc, size_t nseg, size_t kc, const uint8_t *a, size_t ss,
                              const int8_t *w, const ns_qout *q, void *c) {
    NS_QV acc[4][NS_QNV];
    NS_QUNROLL for (size_t j = 0; j < 4; j++) {
        NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[j][v] = NS_QZERO();
    }
    for (size_t s = 0; s < nseg; s++) {
        const uint8_t *ap = a + s * ss;
        size_t k = 0;
#if defined(NS_QDOT_LANE)
        for (; k + 16 <= kc; k += 16) {
            const NS_QV av = NS_QLOADA(ap + k);
#define NS_QROW1_STEP(L)                                                                           \
    NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[L][v] =                                     \
        NS_QDOT_LANE(acc[L][v], NS_QLOADW(w + (L * NS_QNR + v * NS_QLANES) * 4), av, L);
            NS_QROW1_STEP(0)
            NS_QROW1_STEP(1)
            NS_QROW1_STEP(2)
            NS_QROW1_STEP(3)
#undef NS_QROW1_STEP
            w += 4 * NS_QNR * 4;
        }
        for (; k < kc; k += 4) {
            const NS_QV av = NS_QLOADA4(ap + k);
            NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[0][v] =
                NS_QDOT_LANE(acc[0][v], NS_QLOADW(w + v * NS_QLANES * 4), av, 0);
            w += NS_QNR * 4;
        }
#else
        for (; k + 16 <= kc; k += 16) {
            NS_QUNROLL for (size_t j = 0; j < 4; j++) {
                NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[j][v] = NS_QDOT_BCAST(
                    acc[j][v], ap + k + 4 * j, NS_QLOADW(w + (j * NS_QNR + v * NS_QLANES) * 4));
            }
            w += 4 * NS_QNR * 4;
        }
        for (; k < kc; k += 4) {
            NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) acc[0][v] =
                NS_QDOT_BCAST(acc[0][v], ap + k, NS_QLOADW(w + v * NS_QLANES * 4));
            w += NS_QNR * 4;
        }
#endif
    }
    NS_QUNROLL for (size_t v = 0; v < NS_QNV; v++) {
        NS_QV r = NS_QADD(NS_QADD(acc[0][v], acc[1][v]), NS_QADD(acc[2][v], acc[3][v]));
        ns_qstore_vec(NS_QADD(r, NS_QLOADI(q->bias + v * NS_QLANES)), v * NS_QLANES, nc, q, c);
    }
}

NS_QINLINE void *ns_qrow(const ns_qout *q, void *c, size_t m, size_t cs) {
    return q->scale ? (void *)((float *)c + m * cs) : (void *)((uint8_t *)c + m * cs);
}

#define NS_QTILE(R)                                                                                \
    ns_qtile_ex(R, R, 0, nc, nseg, kc, a + m * as, as, 0, ss, w, q, ns_qrow(q, c, m, cs), cs)

static void NS_QGEMM_NAME(size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a, size_t as,
                          size_t ss, const int8_t *w, const ns_qout *q, void *c, size_t cs) {
    size_t m = 0;
    for (; m + NS_QMR <= M; m += NS_QMR) NS_QTILE(NS_QMR);
#if NS_QMR >= 8
    if (M - m >= NS_QMR / 2) {
        NS_QTILE(NS_QMR / 2);
        m += NS_QMR / 2;
    }
#endif
#if NS_QMR > 4
    while (M - m >= 4) {
        NS_QTILE(4);
        m += 4;
    }
#endif
    while (M - m >= 2) {
        NS_QTILE(2);
        m += 2;
    }
    if (m < M) ns_qtile_row1(nc, nseg, kc, a + m * as, ss, w, q, ns_qrow(q, c, m, cs));
}
#undef NS_QTILE

static void NS_QCONV_POOL_NAME(size_t pw, size_t nc, size_t kc, const uint8_t *a, size_t as,
                               size_t rs, const int8_t *w, const ns_qout *q, uint8_t *c,
                               size_t cs) {
    size_t px = 0;
    for (; px + NS_QPOOL_MC / 2 <= pw; px += NS_QPOOL_MC / 2)
        ns_qtile_ex(2 * NS_QPOOL_MC, NS_QPOOL_MC, 1, nc, 3, kc, a + 2 * px * as, as, rs, rs, w, q,
                    c + px * cs, cs);
    for (; px < pw; px++)
        ns_qtile_ex(4, 2, 1, nc, 3, kc, a + 2 * px * as, as, rs, rs, w, q, c + px * cs, cs);
}

#define NS_QSTR_(x) #x
#define NS_QSTR(x)  NS_QSTR_(x)

/* The ISA's table (an initialiser for a static const ns_qisa). */
#define NS_QISA_INIT(NAME, TILE, S8ACT)                                                            \
    {.name = (NAME),                                                                               \
     .gemm_name = NS_QSTR(NS_QGEMM_NAME),                                                          \
     .conv_pool_name = NS_QSTR(NS_QCONV_POOL_NAME),                                                \
     .tile = (TILE),                                                                               \
     .mr = NS_QMR,                                                                                 \
     .nr = NS_QNR,                                                                                 \
     .kgroup = 4,                                                                                  \
     .layout = NS_QPACK_DOT4,                                                                      \
     .s8_act = (S8ACT),                                                                            \
     .pool_mc = NS_QPOOL_MC,                                                                       \
     .gemm = NS_QGEMM_NAME,                                                                        \
     .conv_pool = NS_QCONV_POOL_NAME}
