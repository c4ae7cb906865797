/* TrafficSignNet in int8 (see kernels/int8_kernels.h for the number formats, docs/int8.md for
 * the quantization): the same layers as net.h's FP32 net, with uint8 activations, int8
 * per-output-channel weights, int32 accumulators and fixed-point requantization between layers.
 *
 *   input   float NCHW -> uint8 NHWC, zero point 128 (channels padded to the ISA's K group)
 *   conv1 + ReLU + 2x2 pool -> uint8 (15,15,32)   conv2 + ReLU + pool -> uint8 (6,6,64)
 *   fc1 + ReLU -> uint8 (128)                     fc2 -> int32 -> float logits (43)
 *
 * The SIMD kernels fuse conv + requant + pool as the FP32 engine does (kernels pool int32
 * accumulators in registers); "ref" runs every layer separately in plain NCHW loops
 * (int8_ref.c). All integer: every kernel gives bit-identical logits, for any batch size and
 * thread count. Threads: one task per image for the conv layers, fc1 in row chunks x channel
 * blocks, fc2 on the calling thread. A net has a mutex: concurrent forwards run one at a time.
 */
#ifndef NS_INT8_NET_H
#define NS_INT8_NET_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "kernels/int8_kernels.h"
#include "net.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One quantized layer: int8 weights in PyTorch layout, int32 bias (zero points folded in),
 * per-output-channel requantization (mult, shift) or, for the last layer, dequantization
 * scales (scale; mult and shift unused). */
typedef struct ns_qlayer {
    const int8_t *w;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
    const float *scale;
} ns_qlayer;

typedef struct ns_qnet_params {
    float input_inv_scale; /* 1 / s_x: input u8 = clamp(rint(x * inv), -128, 127) + 128 */
    ns_qlayer conv1, conv2, fc1, fc2; /* fc2 has scale, the others mult and shift */
} ns_qnet_params;

typedef struct ns_qnet ns_qnet;

/* Copies the parameters (checks mult in [2^30, 2^31) and shift in [0, 30]) and packs them for
 * kernel (NULL: $NEONSIGN_KERNEL if it names an int8 kernel, else the best). */
ns_status ns_qnet_create(const ns_qnet_params *p, const char *kernel, ns_qnet **out, ns_error *err);
void ns_qnet_destroy(ns_qnet *net);
ns_status ns_qnet_set_kernel(ns_qnet *net, const char *kernel, ns_error *err);
ns_qkernel ns_qnet_kernel(const ns_qnet *net);
/* The C function computing layer (NS_LAYER_* of net.h), or NULL (fused / free). */
const char *ns_qnet_layer_kernel(const ns_qnet *net, int layer);
/* x (n,3,32,32) float32 NCHW -> logits (n,43). */
ns_status ns_qnet_forward(ns_qnet *net, ns_pool *pool, int max_threads, const float *x, size_t n,
                          float *logits, ns_error *err);
void ns_qnet_enable_timers(ns_qnet *net, int on);
int ns_qnet_timers_enabled(const ns_qnet *net);
void ns_qnet_read_timers(ns_qnet *net, uint64_t ns[NS_NET_LAYERS], uint64_t calls[NS_NET_LAYERS]);
void ns_qnet_reset_timers(ns_qnet *net);

/* Layer-level entry points (tests): uint8 NCHW x (n,cin,h,w), int8 weight (cout,cin,3,3) ->
 * requant (+ 2x2 max pool if pool) uint8 NCHW out; linear: uint8 x (rows,kdim), int8 weight
 * (nout,kdim) -> uint8 out, or float fout if scale is non-NULL. */
ns_status ns_qop_conv3x3(ns_qkernel k, const uint8_t *x, size_t n, size_t cin, size_t h, size_t w,
                         const ns_qlayer *L, size_t cout, int pool, uint8_t *out, ns_error *err);
ns_status ns_qop_linear(ns_qkernel k, const uint8_t *x, size_t rows, size_t kdim,
                        const ns_qlayer *L, size_t nout, uint8_t *out, float *fout, ns_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NS_INT8_NET_H */
