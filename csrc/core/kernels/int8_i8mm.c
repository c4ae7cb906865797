/* AArch64 I8MM (Armv8.6 matrix multiply: Neoverse N2, V1, V2) int8 micro-kernels: USMMLA
 * multiplies a 2x8 uint8 block (two rows' 8 consecutive K) by an 8x2 int8 block (two output
 * channels' 8 K) into a 2x2 int32 block, 8x the multiply-adds of an FP32 FMLA. Tile: 4 rows (2
 * row pairs) x 16 output channels (8 channel pairs) = 16 accumulators. The two rows of a pair
 * must sit in one register, so A comes in row pairs (ns_qisa.paired): the previous layer's output
 * rewritten with each row interleaved with its neighbour in 8-byte chunks (ns_qpair_image for
 * the conv layers, whose rows are neighbouring pixels; ns_qpair_rows for fc). The inner loop is
 * then 2 A loads + 8 weight loads (NS_QPACK_MMLA8: channel pair p, K group g at w + (g*8 + p)*16)
 * + 16 USMMLA per 8 K, nothing else: 2 + 8 + 16 = 26 of the 32 registers. The conv + 2x2 pool
 * tile is the same 4 rows: a row pair is the two columns a pooled pixel takes from one conv row.
 * Requantization as the dotprod kernels (SQRDMULH + SRSHL).
 * Compiled with -march=armv8.2-a+dotprod+i8mm. */
#include <arm_neon.h>
#include <string.h>

#include "int8_kernels.h"

#define NR  16
#define NCP (NR / 2) /* channel pairs */

#if defined(__GNUC__)
#define I8_INLINE static inline __attribute__((always_inline))
#define I8_UNROLL _Pragma("GCC unroll 16")
#else
#define I8_INLINE static inline
#define I8_UNROLL
#endif

/* acc[rp][cp] += the row pair at p[rp] (pair layout: 16 bytes = both rows' 8 K, the operand as
 * is) x channel pairs cp, over nseg segments (ss apart) of kc K each: plain loads, no ZIPs. */
I8_INLINE void i8mm_accumulate(const uint8_t *const p[2], size_t nseg, size_t kc, size_t ss,
                               const int8_t *w, int32x4_t acc[2][NCP]) {
    for (size_t s = 0; s < nseg; s++) {
        const uint8_t *a0 = p[0] + s * ss, *a1 = p[1] + s * ss;
        for (size_t k = 0; k < kc; k += 8) {
            const uint8x16_t x0 = vld1q_u8(a0 + 2 * k), x1 = vld1q_u8(a1 + 2 * k);
            I8_UNROLL for (int cp = 0; cp < NCP; cp++) {
                const int8x16_t wv = vld1q_s8(w + cp * 16);
                acc[0][cp] = vusmmlaq_s32(acc[0][cp], x0, wv);
                acc[1][cp] = vusmmlaq_s32(acc[1][cp], x1, wv);
            }
            w += NCP * 16;
        }
    }
}

static inline int32x4_t requant_i8mm(int32x4_t v, const int32_t *mult, const int32_t *shift) {
    int32x4_t t = vqrdmulhq_s32(v, vld1q_s32(mult));
    t = vrshlq_s32(t, vnegq_s32(vld1q_s32(shift)));
    return vminq_s32(vmaxq_s32(t, vdupq_n_s32(0)), vdupq_n_s32(255));
}

/* Columns [lo, lo + 4) of one row: requant to bytes or dequant to floats, n <= 4 of them. */
static inline void store4(int32x4_t v, size_t lo, size_t nc, const ns_qout *q, void *row) {
    if (nc <= lo) return;
    const size_t n = nc - lo < 4 ? nc - lo : 4;
    v = vaddq_s32(v, vld1q_s32(q->bias + lo));
    if (q->scale) {
        float tmp[4];
        vst1q_f32(tmp, vmulq_f32(vcvtq_f32_s32(v), vld1q_f32(q->scale + lo)));
        memcpy((float *)row + lo, tmp, n * sizeof(float));
        return;
    }
    const int16x4_t h = vmovn_s32(requant_i8mm(v, q->mult + lo, q->shift + lo));
    uint8_t tmp[8];
    vst1_u8(tmp, vreinterpret_u8_s8(vmovn_s16(vcombine_s16(h, h))));
    memcpy((uint8_t *)row + lo, tmp, n);
}

/* Row i (0 or 1) of row pair rp as 4 vectors of 4 channels. */
I8_INLINE void row_of_pair(int32x4_t acc[2][NCP], int rp, int i, int32x4_t out[4]) {
    I8_UNROLL for (int j = 0; j < 4; j++) {
        const int64x2_t lo = vreinterpretq_s64_s32(acc[rp][2 * j]);
        const int64x2_t hi = vreinterpretq_s64_s32(acc[rp][2 * j + 1]);
        out[j] = vreinterpretq_s32_s64(i ? vzip2q_s64(lo, hi) : vzip1q_s64(lo, hi));
    }
}

static void ns_qgemm_i8mm_4x16(size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a,
                               size_t as, size_t ss, const int8_t *w, const ns_qout *q, void *c,
                               size_t cs) {
    const size_t esz = q->scale ? sizeof(float) : 1;
    for (size_t m = 0; m < M; m += 4) {
        const size_t rows = M - m < 4 ? M - m : 4;
        const uint8_t *p[2] = {a + (m / 2) * as, a + (m / 2 + (rows > 2)) * as};
        int32x4_t acc[2][NCP];
        I8_UNROLL for (int rp = 0; rp < 2; rp++) {
            I8_UNROLL for (int cp = 0; cp < NCP; cp++) acc[rp][cp] = vdupq_n_s32(0);
        }
        i8mm_accumulate(p, nseg, kc, ss, w, acc);
        for (size_t i = 0; i < rows; i++) {
            int32x4_t v[4];
            row_of_pair(acc, (int)(i / 2), (int)(i % 2), v);
            void *row = (uint8_t *)c + (m + i) * cs * esz;
            for (int j = 0; j < 4; j++) store4(v[j], 4 * (size_t)j, nc, q, row);
        }
    }
}

/* The conv + pool tile on the pair layout (int8_kernels.h): row pair 0 = conv row 0's pixels
 * 2px, 2px+1 = pair block 2px of input row 2py (+ kernel row); row pair 1 = conv row 1's. */
static void ns_qconv_pool_i8mm_4x16(size_t pw, size_t nc, size_t kc, const uint8_t *a, size_t as,
                                    size_t rs, const int8_t *w, const ns_qout *q, uint8_t *c,
                                    size_t cs) {
    for (size_t px = 0; px < pw; px++) {
        const uint8_t *p[2] = {a + 2 * px * as, a + rs + 2 * px * as};
        int32x4_t acc[2][NCP];
        I8_UNROLL for (int rp = 0; rp < 2; rp++) {
            I8_UNROLL for (int cp = 0; cp < NCP; cp++) acc[rp][cp] = vdupq_n_s32(0);
        }
        i8mm_accumulate(p, 3, kc, rs, w, acc);
        /* the 2x2 window = both rows of both pairs: max over the pairs, then over the rows */
        I8_UNROLL for (int cp = 0; cp < NCP; cp++) {
            const int32x4_t m = vmaxq_s32(acc[0][cp], acc[1][cp]);
            acc[0][cp] = vmaxq_s32(m, vextq_s32(m, m, 2)); /* lanes 0, 1: channels 2cp, 2cp+1 */
        }
        I8_UNROLL for (int j = 0; j < 4; j++) {
            const int32x4_t v =
                vcombine_s32(vget_low_s32(acc[0][2 * j]), vget_low_s32(acc[0][2 * j + 1]));
            store4(v, 4 * (size_t)j, nc, q, c + px * cs);
        }
    }
}

const ns_qisa *ns_qisa_i8mm(void) {
    static const ns_qisa isa = {.name = "i8mm",
                                .gemm_name = "ns_qgemm_i8mm_4x16",
                                .conv_pool_name = "ns_qconv_pool_i8mm_4x16",
                                .tile = "i8mm_4x16",
                                .mr = 4,
                                .nr = NR,
                                .kgroup = 8,
                                .layout = NS_QPACK_MMLA8,
                                .s8_act = 0,
                                .pool_mc = 2,
                                .paired = 1,
                                .gemm = ns_qgemm_i8mm_4x16,
                                .conv_pool = ns_qconv_pool_i8mm_4x16};
    return &isa;
}
