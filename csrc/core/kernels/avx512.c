/* AVX-512F micro-kernel: 12 rows x 32 output channels (24 zmm accumulators). */
#include <immintrin.h>

#include "kernels.h"

#define NS_VEC                 __m512
#define NS_VLEN                16
#define NS_NV                  2
#define NS_MR                  12
#define NS_LOAD(p)             _mm512_loadu_ps(p)
#define NS_STORE(p, v)         _mm512_storeu_ps((p), (v))
#define NS_STORE_PART(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define NS_BCAST(p)            _mm512_set1_ps(*(p))
#define NS_FMA(acc, a, b)      _mm512_fmadd_ps((a), (b), (acc))
#define NS_ZERO()              _mm512_setzero_ps()
#define NS_MAX(a, b)           _mm512_max_ps((a), (b))
#define NS_ADD(a, b)           _mm512_add_ps((a), (b))
#define NS_GEMM_NAME           gemm_avx512
#define NS_POOL_NAME           pool_avx512
#define NS_NHWC_NAME           nhwc_avx512
#define NS_POOL_MC             6
#define NS_CONV_POOL_NAME      conv_pool_avx512

#include "gemm_template.h"

static const ns_isa isa = {"avx512",    NS_NR,       NS_MR,           gemm_avx512,
                           pool_avx512, nhwc_avx512, NS_CONV_POOL_PTR};

const ns_isa *ns_isa_avx512(void) {
    return &isa;
}
