/* AArch64 Advanced SIMD micro-kernel: 6 rows x 16 output channels (24 q-register
 * accumulators, 4 for the weights, 1 broadcast: 29 of 32). NEON is baseline on AArch64. */
#include <arm_neon.h>

#include "kernels.h"

static inline void store_part_neon(float *p, float32x4_t v, size_t n) {
    float tmp[4];
    vst1q_f32(tmp, v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[i];
}

#define NS_VEC float32x4_t
#define NS_VLEN 4
#define NS_NV 4
#define NS_MR 6
#define NS_LOAD(p) vld1q_f32(p)
#define NS_STORE(p, v) vst1q_f32((p), (v))
#define NS_STORE_PART(p, v, n) store_part_neon((p), (v), (n))
#define NS_BCAST(p) vld1q_dup_f32(p)
#define NS_FMA(acc, a, b) vfmaq_f32((acc), (a), (b))
#define NS_ZERO() vdupq_n_f32(0.0f)
#define NS_MAX(a, b) vmaxq_f32((a), (b))
#define NS_ADD(a, b) vaddq_f32((a), (b))
#define NS_GEMM_NAME gemm_neon

#include "gemm_template.h"

static const ns_isa isa = {"neon", NS_NR, NS_MR, gemm_neon};

const ns_isa *ns_isa_neon(void) { return &isa; }
