/* neonsign int8 inference kernels: the scalar reference and the per-ISA dot-product kernels.
 *
 * Number formats (see docs/int8.md):
 *   activations  uint8, per-tensor scale s, zero point 0 after a ReLU (0..255) and 128 for the
 *                net's signed input (u8 = q + 128, q = round(x / s) in -128..127);
 *   weights      int8 in -127..127, symmetric, one scale per output channel;
 *   bias         int32 in units of s_in * s_w[n], with the input zero point folded in
 *                (bias -= zp * sum_k w[n][k]);
 *   accumulator  int32, exact: acc[n] = bias[n] + sum_k a[k] * w[n][k] (u8 x s8 products).
 *
 * Requantization to the next layer's uint8 (per output channel, fixed point, no float):
 *   t   = (acc * mult[n] + 2^30) >> 31          (64-bit product; AArch64's SQRDMULH)
 *   t   = (t + 2^(shift[n]-1)) >> shift[n]      (if shift > 0; AArch64's SRSHL)
 *   out = clamp(t, 0, 255)                      (the ReLU is the lower clamp)
 * which is round(acc * M[n]) for M[n] = mult[n] * 2^-(31 + shift[n]) = s_in * s_w[n] / s_out,
 * mult in [2^30, 2^31), shift in [0, 30]. The last layer dequantizes instead:
 * logits[n] = (float)acc[n] * scale[n]. Every step is integer arithmetic (or one float
 * multiply of the same operands), so every kernel gives the same bits as the reference.
 * Requantization is monotonic in acc, so a 2x2 max pool of int32 accumulators followed by
 * requantization equals requantize-then-pool: the fused conv + pool kernels pool in registers.
 *
 * The micro-kernel operation (the int8 twin of kernels.h's segmented GEMM), one block of NR
 * output channels:
 *
 *   acc[m][n] = bias[n] + sum_{s<nseg} sum_{k<kc} a[m*as + s*ss + k] * W(s*kc + k, n)
 *   c[m*cs + n] = requant(acc[m][n]) (uint8) or (float)acc[m][n] * scale[n] (float)
 *
 * with kc a multiple of the ISA's K group (4 for dot-product kernels, 8 for I8MM) and the
 * weights packed per ISA (ns_qisa.layout): NS_QPACK_DOT4: W(k, n) at w[((k/4)*NR + n)*4 + k%4]
 * (vpdpbusd / SDOT read 4 consecutive K of one column); NS_QPACK_MMLA8: at
 * w[(((k/8)*(NR/2) + n/2)*2 + n%2)*8 + k%8] (SMMLA / USMMLA read 2 columns x 8 K).
 *
 * Names: user-facing int8 kernel names name an ISA extension ("ref", "avx512vnni", "avxvnni",
 * "dotprod", "i8mm"); micro-kernels are named by operation, ISA and register tile:
 * ns_qgemm_avx512vnni_12x32, ns_qconv_pool_dotprod_4x16, ...
 */
#ifndef NS_INT8_KERNELS_H
#define NS_INT8_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Output stage of one NR block (pointers already offset to the block; NR entries each). */
typedef struct ns_qout {
    const int32_t *bias;  /* int32 bias (the ISA's: see ns_qisa.s8_act) */
    const int32_t *mult;  /* requantization multipliers, [2^30, 2^31) */
    const int32_t *shift; /* right shifts, 0..30 */
    const float *scale;   /* non-NULL: dequantize to float (c is float*) instead of requant */
} ns_qout;

/* The int8 GEMM micro-kernel: the operation above for M rows, nc <= NR columns; c is uint8_t*
 * (requant) or float* (q->scale set), row stride cs elements. */
typedef void (*ns_qgemm_fn)(size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a,
                            size_t as, size_t ss, const int8_t *w, const ns_qout *q, void *c,
                            size_t cs);

/* One pooled row of conv3x3 + requant(ReLU) + 2x2 max pool (as ns_conv_pool_fn in kernels.h,
 * int8): c[px*cs + n] = requant(max over dy, dx < 2 of acc at conv pixel (dy, 2*px + dx)). */
typedef void (*ns_qconv_pool_fn)(size_t pw, size_t nc, size_t kc, const uint8_t *a, size_t as,
                                 size_t rs, const int8_t *w, const ns_qout *q, uint8_t *c,
                                 size_t cs);

typedef enum ns_qpack { NS_QPACK_DOT4 = 0, NS_QPACK_MMLA8 = 1 } ns_qpack;

/* One int8 ISA's kernels. */
typedef struct ns_qisa {
    const char *name;                       /* user-facing kernel name: "avx512vnni" */
    const char *gemm_name, *conv_pool_name; /* "ns_qgemm_avx512vnni_12x32", ... */
    const char *tile;                       /* "avx512vnni_12x32" */
    size_t mr, nr;                          /* register tile: rows x output channels */
    size_t kgroup;   /* kc must be a multiple of this: 4 (dot4) or 8 (mmla8) */
    ns_qpack layout; /* weight packing */
    int s8_act;      /* 1: SDOT (s8 x s8): activation buffers hold a ^ 0x80 = a - 128 as int8,
                          both the kernel's A and its uint8 outputs (the top bit flipped once,
                          where activations are written, not per load); its bias must be
                          bias + 128 * sum_k w[n][k] (ns_qpack_weights does it) */
    size_t pool_mc;  /* conv columns per conv-pool tile */
    int paired;      /* 1: A in row pairs (I8MM): conv_pool reads the pair image
                        (ns_qpair_image), gemm reads row pair m/2 at a + (m/2)*as with row m's
                        K value k of segment s at s*ss + (k/8)*16 + (m%2)*8 + k%8 */
    ns_qgemm_fn gemm;
    ns_qconv_pool_fn conv_pool;
} ns_qisa;

typedef enum ns_qkernel {
    NS_QKERNEL_REF = 0,
    NS_QKERNEL_DOTPROD = 1,
    NS_QKERNEL_I8MM = 2,
    NS_QKERNEL_AVXVNNI = 3,
    NS_QKERNEL_AVX512VNNI = 4,
    NS_QKERNEL_COUNT = 5
} ns_qkernel;

/* ---- int8_dispatch.c ------------------------------------------------------------------- */
const char *ns_qkernel_name(ns_qkernel k);
int ns_qkernel_available(ns_qkernel k);
ns_qkernel ns_qkernel_best(void);
/* NULL or "" -> $NEONSIGN_KERNEL if it names an int8 kernel, else the best ("auto" too; an
 * FP32 kernel name in $NEONSIGN_KERNEL selects the best int8 kernel, "ref" the reference). */
ns_status ns_qkernel_resolve(const char *name, ns_qkernel *out, ns_error *err);
void ns_qkernel_list(char *buf, size_t size);
/* The micro-kernel table of k; the scalar table (ns_qisa_ref) for NS_QKERNEL_REF; NULL if k
 * is unavailable. */
const ns_qisa *ns_qkernel_isa(ns_qkernel k);

/* Pack W (nout rows of k int8; packed column kk reads src column map[kk], or kk if map is
 * NULL; columns with map[kk] == SIZE_MAX are zero) for isa: wpacked gets ceil(nout/nr) blocks
 * of k * nr bytes (k a multiple of isa->kgroup), bias_out ceil(nout/nr)*nr int32 (the ISA's
 * bias: + 128 * column sum for s8_act kernels), zero padded. */
void ns_qpack_weights(const ns_qisa *isa, size_t nout, size_t k, const int8_t *src, size_t ld,
                      const size_t *map, const int32_t *bias, int8_t *wpacked, int32_t *bias_out);

/* The pair layout (I8MM's conv input: USMMLA multiplies two rows' 8 K values held in one
 * register, and a conv tile's rows are neighbouring pixels): NHWC (h, w, c), c % 8 == 0, to
 * (h, w, 2c) where block (y, x) interleaves pixels x and x+1 (x again for the last) in 8-channel
 * chunks: bytes [16j, 16j+8) = pixel x channels 8j..8j+7, [16j+8, 16j+16) = pixel x+1's. A conv
 * row pair (x, x+1) then reads each kernel row as one contiguous run of 2 * 3c bytes, 16 per
 * 8 K. A paired conv_pool kernel takes a = the pair image at conv input row 2*py, as = 2c (the
 * block stride), rs = w * 2c (the pair row stride), kc = 3c. */
void ns_qpair_image(const uint8_t *src, size_t h, size_t w, size_t c, uint8_t *dst);
/* Rows (m, k) (row stride k, k % 8 == 0) to ceil(m/2) row pairs of 2k bytes (a paired gemm's
 * A with as = 2k): pair p interleaves rows 2p and 2p+1 (row 2p again when m is odd). */
void ns_qpair_rows(const uint8_t *src, size_t m, size_t k, uint8_t *dst);

/* ---- int8_ref.c: the scalar reference --------------------------------------------------- */
/* The requantization above, one value. */
static inline uint8_t ns_requant(int32_t acc, int32_t mult, int32_t shift) {
    int64_t p = (int64_t)acc * (int64_t)mult + ((int64_t)1 << 30);
    int32_t t = (int32_t)(p >> 31);
    if (shift > 0) t = (int32_t)(((int64_t)t + ((int64_t)1 << (shift - 1))) >> shift);
    return (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
}
/* Quantize float NCHW (c, hw) to uint8 NHWC (hw, cpad) with zero point 128: u8 =
 * clamp(rint(x * inv_scale), -128, 127) + 128 (round half to even); channels c..cpad-1 = 128;
 * every byte XORed with flip (0x80 for s8_act ISAs, else 0). */
void ns_qinput_nhwc(const float *src, size_t c, size_t hw, float inv_scale, size_t cpad,
                    uint8_t flip, uint8_t *dst);
/* Conv 3x3 valid on uint8 NCHW in (cin,h,w): acc = bias[co] + sum in * w (int8 (cout,cin,3,3)),
 * then requant to uint8 NCHW out (cout,h-2,w-2). */
void ns_qref_conv3x3(const uint8_t *in, size_t cin, size_t h, size_t w, const int8_t *weight,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, size_t cout,
                     uint8_t *out);
/* 2x2 max pool, stride 2, floor, uint8 NCHW (c,h,w) -> (c,h/2,w/2). */
void ns_qref_maxpool2x2(const uint8_t *in, size_t c, size_t h, size_t w, uint8_t *out);
/* Linear: in (rows,k) uint8, weight (n,k) int8: requant to uint8 out (rows,n), or with scale
 * non-NULL dequantize to float fout (rows,n). */
void ns_qref_linear(const uint8_t *in, size_t rows, size_t k, const int8_t *weight,
                    const int32_t *bias, const int32_t *mult, const int32_t *shift,
                    const float *scale, size_t n, uint8_t *out, float *fout);
/* The micro-kernel operations in plain loops over isa's packed layout (tests' reference). */
void ns_qref_gemm(const ns_qisa *isa, size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a,
                  size_t as, size_t ss, const int8_t *w, const ns_qout *q, void *c, size_t cs);
void ns_qref_conv_pool(const ns_qisa *isa, size_t pw, size_t nc, size_t kc, const uint8_t *a,
                       size_t as, size_t rs, const int8_t *w, const ns_qout *q, uint8_t *c,
                       size_t cs);
/* The scalar table (dot4 layout, nr 16): plain-loop micro-kernels, the "ref" int8 kernel. */
const ns_qisa *ns_qisa_ref(void);

#if defined(NS_HAVE_AVX512VNNI)
const ns_qisa *ns_qisa_avx512vnni(void);
#endif
#if defined(NS_HAVE_AVXVNNI)
const ns_qisa *ns_qisa_avxvnni(void);
#endif
#if defined(NS_HAVE_DOTPROD)
const ns_qisa *ns_qisa_dotprod(void);
#endif
#if defined(NS_HAVE_I8MM)
const ns_qisa *ns_qisa_i8mm(void);
#endif

#ifdef __cplusplus
}
#endif
#endif /* NS_INT8_KERNELS_H */
