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
 *
 * Names: the user-facing kernel names ("ref", "neon", "avx2", "avx512") name an ISA; each ISA's
 * micro-kernels are named by operation, ISA and register tile (MR rows x NR columns):
 * ns_gemm_avx2_6x16, ns_gemm_avx512_12x32, ns_gemm_neon_4x16, ns_conv_pool_avx512_12x32,
 * ns_conv_pool_neon_4x16, and a specialisation for A row stride N appends _asN. Each ISA's
 * ns_isa table lists them (tests/c/test_microkernels.c calls every one directly).
 */
#ifndef NS_KERNELS_H
#define NS_KERNELS_H

#include <stddef.h>

#include "../common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The GEMM micro-kernel: the operation above for M rows, nc <= NR columns, nseg segments of kc;
 * a (row stride as, segment stride ss), w one packed [nseg * kc][NR] block, bias NR floats
 * (all NR lanes are read: pad them), c (row stride cs, only columns < nc written). */
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
 * rs; kc = 3 * Cin; c = output at (py, 0, block), pooled pixel stride cs (= Cout). That is,
 * c[px*cs + n] = max over dy, dx < 2 of act(bias[n] + sum_{s<3, k<kc}
 * a[(dy + s)*rs + (2*px + dx)*as + k] * w[(s*kc + k)*NR + n]). */
typedef void (*ns_conv_pool_fn)(size_t pw, size_t nc, size_t kc, const float *a, size_t as,
                                size_t rs, const float *w, const float *bias, float *c, size_t cs,
                                int relu);

/* A micro-kernel compiled for one A row stride (as: callers must pass exactly that; a stride
 * known at compile time makes every A access [pointer + constant]) or for any (as = 0). The
 * name says the operation, ISA, tile and stride: "ns_gemm_avx512_12x32_as32". */
typedef struct ns_gemm_kernel {
    const char *name;
    size_t as;
    ns_gemm_fn fn;
} ns_gemm_kernel;

typedef struct ns_conv_pool_kernel {
    const char *name; /* "ns_conv_pool_avx512_12x32_as3" */
    size_t as;        /* pixel stride (Cin) compiled in; 0: any */
    ns_conv_pool_fn fn;
} ns_conv_pool_kernel;

/* One ISA's kernels (built by NS_ISA_INIT in gemm_template.h). The specialised strides are the
 * model's (NS_NET_GEMM_STRIDES, NS_NET_CONV_STRIDES in net.h); which kernel a layer runs is
 * chosen when its weights are packed (net.c) with ns_isa_gemm / ns_isa_conv_pool. */
typedef struct ns_isa {
    const char *name;           /* user-facing kernel name: "avx2", "avx512", "neon" */
    const char *tile;           /* ISA and GEMM register tile MR x NR: "avx512_12x32" */
    size_t mr;                  /* rows per full GEMM register tile */
    size_t nr;                  /* output channels per tile and per packed weight block */
    const ns_gemm_kernel *gemm; /* [0]: any stride, then one per specialised stride */
    size_t n_gemm;
    const ns_conv_pool_kernel *conv_pool; /* likewise; NULL: none, net.c computes conv rows
                                             into a buffer with gemm, then pools (pool2x2) */
    size_t n_conv_pool;
    size_t pool_mr; /* conv pixels per conv-pool tile (2 rows x pool_mr/2 columns); 0: none */
    ns_pool2x2_fn pool2x2;
    ns_nhwc_fn to_nhwc;
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
/* The tile k runs: isa->tile ("avx512_12x32"), "scalar" for ref, NULL if k is unavailable. */
const char *ns_kernel_tile(ns_kernel k);
/* The GEMM kernel of isa for A row stride as: the one specialised for as, else the generic
 * one (isa->gemm[0]). */
const ns_gemm_kernel *ns_isa_gemm(const ns_isa *isa, size_t as);
/* The conv + pool kernel of isa for pixel stride as, likewise; NULL if the ISA has none. */
const ns_conv_pool_kernel *ns_isa_conv_pool(const ns_isa *isa, size_t as);
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
/* The micro-kernels' operations in plain loops (the tests' reference for ns_gemm_fn and
 * ns_conv_pool_fn): the same arguments, plus nr, the width of the packed w and bias. */
void ns_ref_gemm(size_t M, size_t nc, size_t nr, size_t nseg, size_t kc, const float *a, size_t as,
                 size_t ss, const float *w, const float *bias, float *c, size_t cs, int relu);
void ns_ref_conv_pool(size_t pw, size_t nc, size_t nr, size_t kc, const float *a, size_t as,
                      size_t rs, const float *w, const float *bias, float *c, size_t cs, int relu);

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
