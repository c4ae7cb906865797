/* TrafficSignNet, the native fp32 inference engine.
 *
 *   conv1 3->32 3x3 valid -> ReLU -> maxpool 2x2   (N,3,32,32) -> (N,32,15,15)
 *   conv2 32->64 3x3 valid -> ReLU -> maxpool 2x2  -> (N,64,6,6)   (row/col 12 dropped: floor)
 *   flatten (PyTorch NCHW order c*36 + y*6 + x) -> fc1 2304->128 -> ReLU -> fc2 128->43
 *
 * Weights use PyTorch's layouts (conv (Cout,Cin,3,3), linear (out,in)). ns_net_create copies
 * them and packs them once for the chosen kernel, choosing per layer the micro-kernel
 * specialised for the layer's row stride (NS_NET_GEMM_STRIDES below). The SIMD kernels keep
 * activations NHWC internally: a conv output pixel is a GEMM row whose K runs are contiguous
 * (no im2col), ReLU
 * and bias are fused in the micro-kernel epilogue and the 2x2 max pool is fused per pair of
 * conv rows; only the 12x12 conv2 outputs that survive the pool are computed. fc1's weight
 * columns are permuted at packing time so that the NHWC features need no flatten transpose.
 *
 * Threads: large batches run one task per image for the conv layers; for small batches (fewer
 * images than threads) the first calls time two modes, conv layers split by rows and channel
 * blocks or whole images in parallel, and keep the faster (wake-up cost vs per-image work
 * differs between machines). fc1 runs as tasks
 * over fixed row chunks x output-channel blocks; fc2 (tiny) on the calling thread. Task boundaries never depend on the thread
 * count and every output element is computed by the same sequence of operations, so results
 * are bit-identical for any thread count. (Across batch sizes an image's logits can differ in
 * the last bits: a lone row left at the end of an fc row chunk, e.g. batch 1, uses a
 * K-split GEMV tile that sums in another order.)
 *
 * Concurrency: a net has a mutex; concurrent ns_net_forward calls on one net run one after
 * the other (the shared pool serialises runs anyway). Scratch memory is per net, reused across
 * calls; it only grows (largest batch chunk seen, pool size).
 */
#ifndef NS_NET_H
#define NS_NET_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "kernels/kernels.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NS_NET_IN_C     3
#define NS_NET_IN_H     32
#define NS_NET_IN_W     32
#define NS_NET_C1       32
#define NS_NET_C2       64
#define NS_NET_FEATURES 2304 /* 64 * 6 * 6 */
#define NS_NET_HIDDEN   128
#define NS_NET_CLASSES  43

/* The A row strides of the net's GEMMs: a conv's rows are NHWC pixels Cin apart (conv1 3,
 * conv2 32), a linear layer's are input rows K apart (fc1 2304, fc2 128). Every SIMD ISA
 * compiles micro-kernels specialised for these strides (the ISA sources pass the lists to
 * kernels/gemm_template.h); packing a layer picks the one for its stride, any other stride
 * runs the generic kernel. The fused conv + pool kernels only see the conv strides. */
#define NS_NET_GEMM_STRIDES(X) X(NS_NET_IN_C) X(NS_NET_C1) X(NS_NET_HIDDEN) X(NS_NET_FEATURES)
#define NS_NET_CONV_STRIDES(X) X(NS_NET_IN_C) X(NS_NET_C1)

/* Per-layer timers, in this order. Fused layers report their time under the op they are
 * fused into and only count calls: with the SIMD kernels relu1/pool1 (and the NCHW->NHWC
 * input transpose) are timed under conv1, relu2/pool2 under conv2, relu3 under fc1, and
 * flatten costs nothing (fc1's weights are permuted instead). The ref kernel runs every layer
 * separately and times each one. Times are wall-clock ns of the calling thread; a phase that
 * runs several layers per task on several threads is split between its layers in proportion
 * to the threads' time in each. */
#define NS_NET_LAYERS 10
enum {
    NS_LAYER_CONV1,
    NS_LAYER_RELU1,
    NS_LAYER_POOL1,
    NS_LAYER_CONV2,
    NS_LAYER_RELU2,
    NS_LAYER_POOL2,
    NS_LAYER_FLATTEN,
    NS_LAYER_FC1,
    NS_LAYER_RELU3,
    NS_LAYER_FC2
};
extern const char *const ns_net_layer_names[NS_NET_LAYERS];

typedef struct ns_net_weights {
    const float *conv1_w; /* (32,3,3,3) */
    const float *conv1_b; /* (32,) */
    const float *conv2_w; /* (64,32,3,3) */
    const float *conv2_b; /* (64,) */
    const float *fc1_w;   /* (128,2304) */
    const float *fc1_b;   /* (128,) */
    const float *fc2_w;   /* (43,128) */
    const float *fc2_b;   /* (43,) */
} ns_net_weights;

typedef struct ns_net ns_net;

/* kernel: a name for ns_kernel_resolve (NULL: $NEONSIGN_KERNEL or the best). */
ns_status ns_net_create(const ns_net_weights *w, const char *kernel, ns_net **out, ns_error *err);
void ns_net_destroy(ns_net *net);
/* Switch kernel (repacks the weights). On failure the net keeps its previous kernel. */
ns_status ns_net_set_kernel(ns_net *net, const char *kernel, ns_error *err);
ns_kernel ns_net_kernel(const ns_net *net);
/* Name of the function that computes layer (NS_LAYER_*) with net's kernel and packing, e.g.
 * "ns_conv_pool_avx512_12x32_as3" or "ns_gemm_avx2_6x16_as2304" ("ns_ref_conv3x3"... for ref);
 * NULL for a layer fused into the one before it (or flatten, which costs nothing). */
const char *ns_net_layer_kernel(const ns_net *net, int layer);
/* x: (n,3,32,32) float32 NCHW; logits: (n,43). max_threads <= 0: the whole pool. pool may be
 * NULL (single thread). */
ns_status ns_net_forward(ns_net *net, ns_pool *pool, int max_threads, const float *x, size_t n,
                         float *logits, ns_error *err);

void ns_net_enable_timers(ns_net *net, int on);
int ns_net_timers_enabled(const ns_net *net);
void ns_net_read_timers(ns_net *net, uint64_t ns[NS_NET_LAYERS], uint64_t calls[NS_NET_LAYERS]);
void ns_net_reset_timers(ns_net *net);

/* Layer-level entry points (tests): the same code paths the net uses, on NCHW tensors.
 * Conv: x (n,cin,h,w), weight (cout,cin,3,3), bias (cout,), ReLU if relu, then a 2x2 max pool
 * if pool (the SIMD kernels require relu when pool is set: that is the fused op);
 * out (n,cout,oh,ow) with oh = h-2 (pool: (h-2)/2), same for w. Requires h, w >= 3 (pool: 4). */
ns_status ns_op_conv3x3(ns_kernel k, const float *x, size_t n, size_t cin, size_t h, size_t w,
                        const float *weight, const float *bias, size_t cout, int relu, int pool,
                        float *out, ns_error *err);
/* Linear: x (rows,kdim), weight (nout,kdim), bias (nout,) -> out (rows,nout), ReLU if relu. */
ns_status ns_op_linear(ns_kernel k, const float *x, size_t rows, size_t kdim, const float *weight,
                       const float *bias, size_t nout, int relu, float *out, ns_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NS_NET_H */
