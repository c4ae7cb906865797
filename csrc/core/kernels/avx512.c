/* AVX-512F micro-kernels: GEMM tile 12 rows x 32 output channels (24 zmm accumulators); the
 * fused conv + 2x2 max-pool tile is 2 conv rows x 6 columns x 32 channels (12x32). */
#include <immintrin.h>

#include "../net.h" /* NS_NET_*_STRIDES: the layer strides to specialise for */
#include "kernels.h"

#define NS_VEC                  __m512
#define NS_VLEN                 16
#define NS_NV                   2
#define NS_MR                   12
#define NS_LOAD(p)              _mm512_loadu_ps(p)
#define NS_STORE(p, v)          _mm512_storeu_ps((p), (v))
#define NS_STORE_PART(p, v, n)  _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define NS_BCAST(p)             _mm512_set1_ps(*(p))
#define NS_FMA(acc, a, b)       _mm512_fmadd_ps((a), (b), (acc))
#define NS_ZERO()               _mm512_setzero_ps()
#define NS_MAX(a, b)            _mm512_max_ps((a), (b))
#define NS_ADD(a, b)            _mm512_add_ps((a), (b))
#define NS_GEMM_NAME            ns_gemm_avx512_12x32
#define NS_GEMM_STRIDES(X)      NS_NET_GEMM_STRIDES(X)
#define NS_POOL_NAME            ns_pool2x2_avx512
#define NS_NHWC_NAME            ns_nhwc_avx512
#define NS_POOL_MC              6
#define NS_CONV_POOL_NAME       ns_conv_pool_avx512_12x32
#define NS_CONV_POOL_STRIDES(X) NS_NET_CONV_STRIDES(X)

#include "gemm_template.h"

const ns_isa *ns_isa_avx512(void) {
    static const ns_isa isa = NS_ISA_INIT("avx512", "avx512_12x32");
    return &isa;
}
