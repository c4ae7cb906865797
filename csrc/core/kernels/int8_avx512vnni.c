/* AVX512-VNNI int8 micro-kernels: vpdpbusd (u8 activations x s8 weights, 4 products per int32
 * lane); GEMM tile 12 rows x 32 output channels (24 zmm accumulators), conv + 2x2 max-pool tile
 * 2 conv rows x 6 columns x 32 channels. The requantization is int64 arithmetic on even and
 * odd lanes (vpmuldq), the same integers as the scalar reference. */
#include <immintrin.h>
#include <string.h>

#include "int8_kernels.h"

static inline __m512i bcast4_512(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* ns_requant on 16 lanes (int8_kernels.h), clamped to 0..255. */
static inline __m512i requant_512(__m512i v, const int32_t *mult, const int32_t *shift) {
    const __m512i m = _mm512_loadu_si512((const void *)mult);
    const __m512i s = _mm512_loadu_si512((const void *)shift);
    const __m512i rnd = _mm512_set1_epi64((long long)1 << 30);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(v, m), rnd); /* even lanes, int64 */
    const __m512i po =
        _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(m, 32)), rnd);
    /* bits 31..62 of each product: (pe >> 31) in the low half, (po << 1) in the high half */
    __m512i t = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(pe, 31),
                                        _mm512_slli_epi64(po, 1));
    const __m512i half = _mm512_srli_epi32(_mm512_sllv_epi32(_mm512_set1_epi32(1), s), 1);
    t = _mm512_srav_epi32(_mm512_add_epi32(t, half), s);
    return _mm512_min_epi32(_mm512_max_epi32(t, _mm512_setzero_si512()), _mm512_set1_epi32(255));
}

#define NS_QMASK(n)              ((__mmask16)((1u << (n)) - 1u))
#define NS_QV                    __m512i
#define NS_QLANES                16
#define NS_QNV                   2
#define NS_QMR                   12
#define NS_QLOADW(p)             _mm512_loadu_si512((const void *)(p))
#define NS_QLOADI(p)             _mm512_loadu_si512((const void *)(p))
#define NS_QZERO()               _mm512_setzero_si512()
#define NS_QADD(a, b)            _mm512_add_epi32((a), (b))
#define NS_QMAX(a, b)            _mm512_max_epi32((a), (b))
#define NS_QDOT_BCAST(acc, p, w) _mm512_dpbusd_epi32((acc), bcast4_512(p), (w))
#define NS_QREQUANT(v, m, s)     requant_512((v), (m), (s))
#define NS_QSTORE_U8(p, v, n)    _mm512_mask_cvtepi32_storeu_epi8((p), NS_QMASK(n), (v))
#define NS_QSTORE_F32(p, v, s, n)                                                                  \
    _mm512_mask_storeu_ps((p), NS_QMASK(n),                                                        \
                          _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(s)))
#define NS_QGEMM_NAME      ns_qgemm_avx512vnni_12x32
#define NS_QCONV_POOL_NAME ns_qconv_pool_avx512vnni_12x32
#define NS_QPOOL_MC        6

#include "int8_template.h"

const ns_qisa *ns_qisa_avx512vnni(void) {
    static const ns_qisa isa = NS_QISA_INIT("avx512vnni", "avx512vnni_12x32", 0);
    return &isa;
}
