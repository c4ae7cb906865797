/* AVX-VNNI int8 micro-kernels (the VEX-encoded vpdpbusd on ymm: Alder Lake and later, Zen 5):
 * GEMM tile 6 rows x 16 output channels (12 ymm accumulators of the 16 registers), conv +
 * 2x2 max-pool tile 2 conv rows x 2 columns x 16 channels. Requantization as in the AVX512-VNNI
 * kernels (int64 products on even and odd lanes), the same integers as the scalar reference. */
#include <immintrin.h>
#include <string.h>

#include "int8_kernels.h"

static inline __m256i bcast4_256(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* ns_requant on 8 lanes (int8_kernels.h), clamped to 0..255. */
static inline __m256i requant_256(__m256i v, const int32_t *mult, const int32_t *shift) {
    const __m256i m = _mm256_loadu_si256((const __m256i *)mult);
    const __m256i s = _mm256_loadu_si256((const __m256i *)shift);
    const __m256i rnd = _mm256_set1_epi64x((long long)1 << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, m), rnd);
    const __m256i po =
        _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(m, 32)), rnd);
    __m256i t = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    const __m256i half = _mm256_srli_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), s), 1);
    t = _mm256_srav_epi32(_mm256_add_epi32(t, half), s);
    return _mm256_min_epi32(_mm256_max_epi32(t, _mm256_setzero_si256()), _mm256_set1_epi32(255));
}

/* Lanes [0, n) of a 0..255 vector as bytes. */
static inline void store_u8_256(uint8_t *p, __m256i v, size_t n) {
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i b = _mm_packus_epi16(w16, w16);
    if (n == 8) {
        _mm_storel_epi64((__m128i *)p, b);
        return;
    }
    uint8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, b);
    memcpy(p, tmp, n);
}

static inline void store_f32_256(float *p, __m256i v, const float *s, size_t n) {
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(s));
    if (n == 8) {
        _mm256_storeu_ps(p, f);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, f);
    memcpy(p, tmp, n * sizeof(float));
}

#define NS_QV         __m256i
#define NS_QLANES     8
#define NS_QNV        2
#define NS_QMR        6
#define NS_QLOADW(p)  _mm256_loadu_si256((const __m256i *)(p))
#define NS_QLOADI(p)  _mm256_loadu_si256((const __m256i *)(p))
#define NS_QZERO()    _mm256_setzero_si256()
#define NS_QADD(a, b) _mm256_add_epi32((a), (b))
#define NS_QMAX(a, b) _mm256_max_epi32((a), (b))
#if defined(NS_AVXVNNI_AS_EVEX)
/* Tests only (tests/test_int8_avxvnni.py): the same kernel with vpdpbusd's EVEX encoding
 * (AVX512VL + AVX512_VNNI), so that CPUs without AVX-VNNI (and qemu 7.2, which lacks it) run it. */
#define NS_QDOT_BCAST(acc, p, w) _mm256_dpbusd_epi32((acc), bcast4_256(p), (w))
#else
#define NS_QDOT_BCAST(acc, p, w) _mm256_dpbusd_avx_epi32((acc), bcast4_256(p), (w))
#endif
#define NS_QREQUANT(v, m, s)      requant_256((v), (m), (s))
#define NS_QSTORE_U8(p, v, n)     store_u8_256((p), (v), (n))
#define NS_QSTORE_F32(p, v, s, n) store_f32_256((p), (v), (s), (n))
#define NS_QGEMM_NAME             ns_qgemm_avxvnni_6x16
#define NS_QCONV_POOL_NAME        ns_qconv_pool_avxvnni_4x16
#define NS_QPOOL_MC               2

#include "int8_template.h"

const ns_qisa *ns_qisa_avxvnni(void) {
    static const ns_qisa isa = NS_QISA_INIT("avxvnni", "avxvnni_6x16", 0);
    return &isa;
}
