/* AArch64 Advanced SIMD micro-kernels: GEMM tile 4 rows x 16 output channels; the fused
 * conv + 2x2 max-pool tile is 2 conv rows x 2 columns x 16 channels (4x16). Per 4 K steps the
 * GEMM loads one q-register of A per row (4 consecutive K values) and 4 weight q-registers per
 * step, and issues FMLA-by-element (vfmaq_laneq_f32): 16 accumulators + 4 A + 4 W = 24 of the
 * 32 q-registers, 20 loads per 64 FMAs and no broadcast instructions in the main loop.
 * NEON is baseline on AArch64: no extra compiler flags. */
#include <arm_neon.h>

#include "../net.h" /* NS_NET_*_STRIDES: the layer strides to specialise for */
#include "kernels.h"

static inline void store_part_neon(float *p, float32x4_t v, size_t n) {
    float tmp[4];
    vst1q_f32(tmp, v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[i];
}

#define NS_VEC                       float32x4_t
#define NS_VLEN                      4
#define NS_NV                        4
#define NS_MR                        4
#define NS_LOAD(p)                   vld1q_f32(p)
#define NS_STORE(p, v)               vst1q_f32((p), (v))
#define NS_STORE_PART(p, v, n)       store_part_neon((p), (v), (n))
#define NS_BCAST(p)                  vld1q_dup_f32(p)
#define NS_FMA_LANE(acc, b, a, lane) vfmaq_laneq_f32((acc), (b), (a), lane)
#define NS_FMA(acc, a, b)            vfmaq_f32((acc), (a), (b))
#define NS_ZERO()                    vdupq_n_f32(0.0f)
#define NS_MAX(a, b)                 vmaxq_f32((a), (b))
#define NS_ADD(a, b)                 vaddq_f32((a), (b))
#define NS_GEMM_NAME                 ns_gemm_neon_4x16
#define NS_GEMM_STRIDES(X)           NS_NET_GEMM_STRIDES(X)
#define NS_POOL_NAME                 ns_pool2x2_neon
#define NS_NHWC_NAME                 ns_nhwc_neon
#define NS_POOL_MC                   2
#define NS_CONV_POOL_NAME            ns_conv_pool_neon_4x16
#define NS_CONV_POOL_STRIDES(X)      NS_NET_CONV_STRIDES(X)

#include "gemm_template.h"

const ns_isa *ns_isa_neon(void) {
    static const ns_isa isa = NS_ISA_INIT("neon", "neon_4x16");
    return &isa;
}
