/* neonsign inference kernels: the scalar reference ops and the per-ISA GEMM micro-kernels.
 *
 * Reference ops (ref.c) work on NCHW tensors with plain loops: they are the definition of
 * correct. The SIMD kernels (avx2.c, avx512.c, neon.c) all implement one operation, a
 * register-blocked "segmented GEMM" over one block of NR output channels:
 *
 *   c[m*cs + n] = act(bias[n] + sum_{s<nseg} sum_{k<kc} a[m*as + s*ss + k] * w[(s*kc + k)*NR + n])
 *
 * for m < M rows and n < nc <= NR columns (act = ReLU or identity). A 3x3 valid convolution on
 * an NHWC image is that GEMM with one row per output pixel (as = Cin), three segments (one per
 * kernel row, ss = W*Cin) of kc = 3*Cin contiguous floats and weights packed as
 * [Cout/NR][ky][kx][Cin][NR]; a linear layer is one segment of kc = K. No im2col copy is made.
 * Weights are packed once (net.c) into [ceil(N/NR)][K][NR] blocks, zero padded.
 */
#ifndef NS_KERNELS_H
#define NS_KERNELS_H

#include <stddef.h>

#include "../common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*ns_gemm_fn)(size_t M, size_t nc, size_t nseg, size_t kc, const float *a, size_t as,
                           size_t ss, const float *w, const float *bias, float *c, size_t cs,
                           int relu);

/* 2x2 max pool of two NHWC rows (2, cw, cs) -> (cw/2, cs), channels [c0, c1). */
typedef void (*ns_pool2x2_fn)(const float *rows, size_t cw, size_t cs, size_t c0, size_t c1,
                              float *out);

/* One image NCHW (c, hw) -> NHWC (hw, c). */
typedef void (*ns_nhwc_fn)(const float *src, size_t c, size_t hw, float *dst);

/* One pooled row of conv3x3 + bias (+ ReLU) + 2x2 max pool, pooled columns [0, pw), one NR
 * block: a = input at (2*py, 0) of an NHWC image with pixel stride as (= Cin) and row stride
 * rs; kc = 3 * Cin; c = output at (py, 0, block), pooled pixel stride cs (= Cout). */
typedef void (*ns_conv_pool_fn)(size_t pw, size_t nc, size_t kc, const float *a, size_t as,
                                size_t rs, const float *w, const float *bias, float *c, size_t cs,
                                int relu);

typedef struct ns_isa {
    const char *name; /* "avx2", "avx512", "neon" */
    size_t nr;        /* output channels per packed weight block */
    size_t mr;        /* rows per register tile (informational) */
    ns_gemm_fn gemm;
    ns_pool2x2_fn pool2x2;
    ns_nhwc_fn to_nhwc;
    ns_conv_pool_fn conv_pool; /* NULL: net.c computes conv rows into a buffer, then pools */
} ns_isa;

/* Kernel identifiers, in order of preference (best last). */
typedef enum ns_kernel {
    NS_KERNEL_REF = 0,
    NS_KERNEL_NEON = 1,
    NS_KERNEL_AVX2 = 2,
    NS_KERNEL_AVX512 = 3,
    NS_KERNEL_COUNT = 4
} ns_kernel;

/* ---- dispatch.c ------------------------------------------------------------------------- */
/* Name of a kernel id ("ref", "neon", "avx2", "avx512"). */
const char *ns_kernel_name(ns_kernel k);
/* 1 if kernel k was compiled in and this CPU (and OS) supports it. */
int ns_kernel_available(ns_kernel k);
/* The best available kernel. */
ns_kernel ns_kernel_best(void);
/* Resolve a kernel name: NULL or "" -> $NEONSIGN_KERNEL if set, else the best; "auto" -> best.
 * Unknown names -> NS_ERR_INVALID; known but unavailable -> NS_ERR_UNSUPPORTED; both messages
 * list the available kernels. */
ns_status ns_kernel_resolve(const char *name, ns_kernel *out, ns_error *err);
/* Comma-separated list of available kernels into buf. */
void ns_kernel_list(char *buf, size_t size);
/* The SIMD micro-kernel table of k, or NULL for NS_KERNEL_REF / unavailable kernels. */
const ns_isa *ns_kernel_isa(ns_kernel k);
/* Estimated core clock in GHz (turbo included), from timing a dependent add chain (~0.1 s). */
double ns_cpu_ghz_estimate(void);

/* ---- ref.c: the scalar reference (NCHW, one image) --------------------------------------- */
/* out[co][y][x] = bias[co] + sum_{ci,ky,kx} in[ci][y+ky][x+kx] * w[co][ci][ky][kx], then
 * ReLU if relu; in (cin,h,w), out (cout,h-2,w-2); h, w >= 3. */
void ns_ref_conv3x3(const float *in, size_t cin, size_t h, size_t w, const float *weight,
                    const float *bias, size_t cout, int relu, float *out);
/* out[c][y][x] = ReLU(in[c][y][x]) in place over n floats. */
void ns_ref_relu(float *x, size_t n);
/* 2x2 max pool, stride 2, floor: in (c,h,w) -> out (c,h/2,w/2). */
void ns_ref_maxpool2x2(const float *in, size_t c, size_t h, size_t w, float *out);
/* out[m][o] = bias[o] + sum_k in[m][k] * weight[o][k] (ReLU if relu); in (rows,k), weight
 * (n,k), out (rows,n). */
void ns_ref_linear(const float *in, size_t rows, size_t k, const float *weight, const float *bias,
                   size_t n, int relu, float *out);

#if defined(NS_HAVE_AVX2)
const ns_isa *ns_isa_avx2(void);
#endif
#if defined(NS_HAVE_AVX512)
const ns_isa *ns_isa_avx512(void);
#endif
#if defined(NS_HAVE_NEON)
const ns_isa *ns_isa_neon(void);
#endif

#ifdef __cplusplus
}
#endif
#endif /* NS_KERNELS_H */
