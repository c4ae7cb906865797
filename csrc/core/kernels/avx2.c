/* AVX2+FMA micro-kernels: GEMM tile 6 rows x 16 output channels (12 ymm accumulators), no
 * fused conv + pool kernel (net.c pools conv rows from a buffer with ns_pool2x2_avx2). */
#include <immintrin.h>

#include "../net.h" /* NS_NET_GEMM_STRIDES: the layer strides to specialise for */
#include "kernels.h"

static inline void store_part_avx2(float *p, __m256 v, size_t n) {
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[i];
}

#define NS_VEC                 __m256
#define NS_VLEN                8
#define NS_NV                  2
#define NS_MR                  6
#define NS_LOAD(p)             _mm256_loadu_ps(p)
#define NS_STORE(p, v)         _mm256_storeu_ps((p), (v))
#define NS_STORE_PART(p, v, n) store_part_avx2((p), (v), (n))
#define NS_BCAST(p)            _mm256_broadcast_ss(p)
#define NS_FMA(acc, a, b)      _mm256_fmadd_ps((a), (b), (acc))
#define NS_ZERO()              _mm256_setzero_ps()
#define NS_MAX(a, b)           _mm256_max_ps((a), (b))
#define NS_ADD(a, b)           _mm256_add_ps((a), (b))
#define NS_GEMM_NAME           ns_gemm_avx2_6x16
#define NS_GEMM_STRIDES(X)     NS_NET_GEMM_STRIDES(X)
#define NS_POOL_NAME           ns_pool2x2_avx2
#define NS_NHWC_NAME           ns_nhwc_avx2

#include "gemm_template.h"

const ns_isa *ns_isa_avx2(void) {
    static const ns_isa isa = NS_ISA_INIT("avx2", "avx2_6x16");
    return &isa;
}
