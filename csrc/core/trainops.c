/* See trainops.h. The scalar references are here; the optimised kernels are trainops_impl.h,
 * instantiated below at each native vector width (16 bytes everywhere; 32 and 64 on x86-64,
 * chosen by CPUID). They work on a vector of channels of one output pixel at a time: the
 * forward compares float32 as floats and bfloat16 through int16 keys (no widening) and writes
 * back the chosen input's bits; the backward only moves bits (the gradient of an output is
 * copied to one position, zeros elsewhere), the same code for both dtypes at their element
 * sizes. Channels past the last whole vector go through the scalar path the references use.
 *
 * Zeros and NaNs as PyTorch has them: relu(-0.0) is -0.0 (only values < 0 become +0), the
 * gradient of a -0.0 is +0.0 (PyTorch adds it into a zeroed buffer), and a NaN stays a NaN
 * (its payload may differ from PyTorch's, which can rewrite it). */
#include "trainops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ---- element access -------------------------------------------------------------------- */

static inline float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* float32 -> bfloat16 for values that came from bfloat16 (or are zero): the low half is 0. */
static inline uint16_t f32_to_bf16_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static inline float load_el(ns_tdtype dt, const void *p, size_t i) {
    return dt == NS_TD_BF16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void store_el(ns_tdtype dt, void *p, size_t i, float v) {
    if (dt == NS_TD_BF16)
        ((uint16_t *)p)[i] = f32_to_bf16_exact(v);
    else
        ((float *)p)[i] = v;
}

static inline size_t el_size(ns_tdtype dt) {
    return dt == NS_TD_BF16 ? 2 : 4;
}

/* Index of (b, i, j, ch) of an (n, oh, ow, c) output in NHWC or NCHW order. */
static inline size_t out_index(int nchw, size_t b, size_t i, size_t j, size_t ch, size_t oh,
                               size_t ow, size_t c) {
    return nchw ? ((b * c + ch) * oh + i) * ow + j : ((b * oh + i) * ow + j) * c + ch;
}

/* ---- scalar references ----------------------------------------------------------------- */

/* One output of the forward: PyTorch's max (row-major, `v > m || isnan(v)`, index 0 when all
 * are -inf), then the ReLU. x[at] is the window's top-left element of this channel; the next
 * column's is `col` elements on, the next row's `row`. */
static inline void pool_one(ns_tdtype dt, const void *x, size_t at, size_t col, size_t row,
                            float *out, uint8_t *arg, int drop) {
    float m = -INFINITY;
    unsigned a = 0;
    const size_t offs[4] = {0, col, row, row + col};
    for (unsigned k = 0; k < 4; k++) {
        float v = load_el(dt, x, at + offs[k]);
        if (v > m || isnan(v)) {
            m = v;
            a = k;
        }
    }
    /* threshold_backward passes no gradient where relu's output is <= 0 (not for NaN); relu
     * zeroes values < 0 (-0.0 stays); *arg: the keep mask on entry when drop */
    int dropped = drop && !*arg, dead = m <= 0.0f || dropped;
    *out = m < 0.0f || dropped ? 0.0f : m;
    *arg = dead ? NS_POOL_NO_GRAD : (uint8_t)a;
}

static void fwd_ref(ns_tdtype dt, const void *x, size_t n, size_t h, size_t w, size_t c, void *y,
                    int nchw_out, uint8_t *arg, int drop) {
    size_t oh = h / 2, ow = w / 2;
    for (size_t b = 0; b < n; b++)
        for (size_t ch = 0; ch < c; ch++)
            for (size_t i = 0; i < oh; i++)
                for (size_t j = 0; j < ow; j++) {
                    float v;
                    size_t at = ((b * h + 2 * i) * w + 2 * j) * c + ch;
                    size_t o = ((b * oh + i) * ow + j) * c + ch;
                    pool_one(dt, x, at, c, w * c, &v, &arg[o], drop);
                    store_el(dt, y, out_index(nchw_out, b, i, j, ch, oh, ow, c), v);
                }
}

static void bwd_ref(ns_tdtype dt, const void *gy, int nchw_in, const uint8_t *arg, size_t n,
                    size_t h, size_t w, size_t c, void *gx) {
    size_t oh = h / 2, ow = w / 2, es = el_size(dt);
    memset(gx, 0, n * h * w * c * es);
    for (size_t b = 0; b < n; b++)
        for (size_t i = 0; i < oh; i++)
            for (size_t j = 0; j < ow; j++)
                for (size_t ch = 0; ch < c; ch++) {
                    uint8_t a = arg[((b * oh + i) * ow + j) * c + ch];
                    if (a > 3) continue; /* NS_POOL_NO_GRAD, or any other non-position */
                    size_t to = ((b * h + 2 * i + a / 2) * w + 2 * j + a % 2) * c + ch;
                    size_t from = out_index(nchw_in, b, i, j, ch, oh, ow, c);
                    float g = load_el(dt, gy, from);
                    if (g == 0.0f) continue; /* 0 + -0.0 is +0.0: leave the zero */
                    memcpy((char *)gx + to * es, (const char *)gy + from * es, es);
                }
}

/* ---- dropout ---------------------------------------------------------------------------- */

/* lowbias32 (Chris Wellons' integer hash search): a 32-bit mixer with good avalanche. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* The random 32 bits of element i under the seed (lo, hi): two rounds keyed by each half. */
static inline uint32_t dropout_hash(uint32_t i, uint32_t lo, uint32_t hi) {
    return mix32(mix32(i + lo) ^ hi);
}

static void keep_ref(uint64_t seed, uint32_t threshold, size_t n, uint8_t *keep) {
    for (size_t i = 0; i < n; i++)
        keep[i] = dropout_hash((uint32_t)i, (uint32_t)seed, (uint32_t)(seed >> 32)) >= threshold;
}

/* ---- optimised ------------------------------------------------------------------------- */

/* One instance of trainops_impl.h per native vector width. */
#define NS_TO_VB       16
#define NS_TO_FN(name) name##_v16
#define NS_TO_TARGET
#include "trainops_impl.h"

/* x86-64 with GCC/Clang: AVX2 and AVX-512 instances too, chosen by CPUID at run time. */
#if defined(__x86_64__) && defined(__GNUC__)
#define NS_TO_WIDE     1
#define NS_TO_VB       32
#define NS_TO_FN(name) name##_v32
#define NS_TO_TARGET   __attribute__((target("avx2")))
#include "trainops_impl.h"

#define NS_TO_VB       64
#define NS_TO_FN(name) name##_v64
#define NS_TO_TARGET   __attribute__((target("avx512f,avx512bw,avx512vl")))
#include "trainops_impl.h"
#endif

typedef void (*fwd_fn)(ns_tdtype, const void *, size_t, size_t, size_t, size_t, void *, int,
                       uint8_t *, int);
typedef void (*keep_fn)(uint64_t, uint32_t, size_t, uint8_t *);
typedef void (*bwd_fn)(ns_tdtype, const void *, int, const uint8_t *, size_t, size_t, size_t,
                       size_t, void *);

/* The instances, widest last; names as ns_trainops_kernel_name reports them. */
static const struct {
    const char *name;
    fwd_fn fwd;
    bwd_fn bwd;
    keep_fn keep;
} kernels[] = {
    {"ref", fwd_ref, bwd_ref, keep_ref},
    {"v16", fwd_v16, bwd_v16, keep_v16},
#ifdef NS_TO_WIDE
    {"avx2", fwd_v32, bwd_v32, keep_v32},
    {"avx512", fwd_v64, bwd_v64, keep_v64},
#endif
};
#define NKERNELS (sizeof kernels / sizeof kernels[0])

int ns_trainops_kernel_supported(int k) {
    if (k < 0 || (size_t)k >= NKERNELS) return 0;
#ifdef NS_TO_WIDE
    if (k == 2) return __builtin_cpu_supports("avx2");
    if (k == 3)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#endif
    return 1;
}

const char *ns_trainops_kernel_name(int k) {
    return k >= 0 && (size_t)k < NKERNELS ? kernels[k].name : NULL;
}

int ns_trainops_best_kernel(void) {
    static atomic_int best = -1; /* computed once; a race stores the same value */
    int k = atomic_load_explicit(&best, memory_order_relaxed);
    if (k < 0) {
        k = (int)NKERNELS - 1;
        while (!ns_trainops_kernel_supported(k)) k--;
        atomic_store_explicit(&best, k, memory_order_relaxed);
    }
    return k;
}

static int pick(int kernel) {
    return kernel < 0 || !ns_trainops_kernel_supported(kernel) ? ns_trainops_best_kernel() : kernel;
}

void ns_pool2_relu_fwd(ns_tdtype dt, const void *x, size_t n, size_t h, size_t w, size_t c, void *y,
                       int nchw_out, uint8_t *arg, int drop, int kernel) {
    kernels[pick(kernel)].fwd(dt, x, n, h, w, c, y, nchw_out, arg, drop);
}

void ns_dropout_keep(uint64_t seed, double p, size_t n, uint8_t *keep, int kernel) {
    /* keep when 32 random bits >= p * 2^32: probability 1 - p to within 2^-32 */
    double t = p * 4294967296.0;
    uint32_t threshold = !(t > 0.0) ? 0 : t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
    kernels[pick(kernel)].keep(seed, threshold, n, keep);
}

void ns_pool2_relu_bwd(ns_tdtype dt, const void *gy, int nchw_in, const uint8_t *arg, size_t n,
                       size_t h, size_t w, size_t c, void *gx, int kernel) {
    kernels[pick(kernel)].bwd(dt, gy, nchw_in, arg, n, h, w, c, gx);
}
