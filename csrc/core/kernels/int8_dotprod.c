/* AArch64 dotprod (Armv8.2 SDOT, every Neoverse) int8 micro-kernels: GEMM tile 4 rows x 16
 * output channels, conv + 2x2 max-pool tile 2 conv rows x 2 columns x 16 channels. Per 16 K
 * the tile loads one q-register of A per row (4 K groups; activations are stored as int8,
 * a - 128, by whoever writes them, and the packed bias compensates: s8_act) and 4 weight
 * q-registers per group, and issues SDOT by element (vdotq_laneq_s32): 16 accumulators + 4 A +
 * 4 W of the 32 registers, 5 loads per 16 SDOTs. Requantization is SQRDMULH + SRSHL, the
 * reference's integers exactly. Compiled with -march=armv8.2-a+dotprod. */
#include <arm_neon.h>
#include <string.h>

#include "int8_kernels.h"

/* A bytes are already int8 (a - 128: s8_act, flipped where activations are written). */
static inline int32x4_t loada_dot(const uint8_t *p) {
    return vreinterpretq_s32_u8(vld1q_u8(p));
}

static inline int32x4_t loada4_dot(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_s32_u32(vdupq_n_u32(v));
}

static inline int32x4_t requant_neon(int32x4_t v, const int32_t *mult, const int32_t *shift) {
    int32x4_t t = vqrdmulhq_s32(v, vld1q_s32(mult));
    t = vrshlq_s32(t, vnegq_s32(vld1q_s32(shift)));
    return vminq_s32(vmaxq_s32(t, vdupq_n_s32(0)), vdupq_n_s32(255));
}

static inline void store_u8_neon(uint8_t *p, int32x4_t v, size_t n) {
    const int16x4_t h = vmovn_s32(v);
    /* outputs are the next layer's A: stored as int8 (a - 128), the top bit flipped */
    const uint8x8_t b = veor_u8(vreinterpret_u8_s8(vmovn_s16(vcombine_s16(h, h))), vdup_n_u8(0x80));
    if (n == 4) {
        vst1_lane_u32((uint32_t *)(void *)p, vreinterpret_u32_u8(b), 0);
        return;
    }
    uint8_t tmp[8];
    vst1_u8(tmp, b);
    memcpy(p, tmp, n);
}

static inline void store_f32_neon(float *p, int32x4_t v, const float *s, size_t n) {
    const float32x4_t f = vmulq_f32(vcvtq_f32_s32(v), vld1q_f32(s));
    if (n == 4) {
        vst1q_f32(p, f);
        return;
    }
    float tmp[4];
    vst1q_f32(tmp, f);
    memcpy(p, tmp, n * sizeof(float));
}

#define NS_QV         int32x4_t
#define NS_QLANES     4
#define NS_QNV        4
#define NS_QMR        4
#define NS_QLOADW(p)  vreinterpretq_s32_s8(vld1q_s8(p))
#define NS_QLOADI(p)  vld1q_s32(p)
#define NS_QLOADA(p)  loada_dot(p)
#define NS_QLOADA4(p) loada4_dot(p)
#define NS_QZERO()    vdupq_n_s32(0)
#define NS_QADD(a, b) vaddq_s32((a), (b))
#define NS_QMAX(a, b) vmaxq_s32((a), (b))
#define NS_QDOT_LANE(acc, w, a, L)                                                                 \
    vdotq_laneq_s32((acc), vreinterpretq_s8_s32(w), vreinterpretq_s8_s32(a), L)
#define NS_QREQUANT(v, m, s)      requant_neon((v), (m), (s))
#define NS_QSTORE_U8(p, v, n)     store_u8_neon((p), (v), (n))
#define NS_QSTORE_F32(p, v, s, n) store_f32_neon((p), (v), (s), (n))
#define NS_QGEMM_NAME             ns_qgemm_dotprod_4x16
#define NS_QCONV_POOL_NAME        ns_qconv_pool_dotprod_4x16
#define NS_QPOOL_MC               2

#include "int8_template.h"

const ns_qisa *ns_qisa_dotprod(void) {
    static const ns_qisa isa = NS_QISA_INIT("dotprod", "dotprod_4x16", 1);
    return &isa;
}
