/* Training-step kernels for PyTorch's autograd (issue 18): 2x2 max-pooling fused with the ReLU
 * that follows it, forward and backward, on NHWC (channels_last) float32 or bfloat16 tensors.
 *
 * TrafficSignNet pools every convolution's output 2x2 (stride 2, floor mode) and applies a
 * ReLU. PyTorch's CPU max_pool2d, its index tensor, the ReLU and the backward (which zero-fills
 * the whole input gradient before scattering), with fc1's dropout mask, cost 2.3 of 14.9 ms of a
 * bf16 training step on the development machine; these kernels do the same work in one pass
 * each, memory-bound.
 *
 * Semantics are PyTorch's, bit for bit: the forward is relu(max_pool2d(x, 2)); within a window
 * the maximum is chosen in row-major order by `v > max || isnan(v)` (the first of equal maxima,
 * the last NaN), and the gradient of an output goes to that position unless the ReLU output has
 * none (threshold_backward: an output <= 0). Rows and columns that no window covers (odd sizes)
 * get zero gradient. As in PyTorch, relu(-0.0) is -0.0 and a -0.0 gradient lands as +0.0 (added
 * into zeros); a NaN stays a NaN, its payload the input's (PyTorch may rewrite it). bfloat16
 * values are uint16 bit patterns, compared as floats and copied, never rounded, so both dtypes
 * are exact.
 *
 * Portable C with GCC/Clang generic vectors of the target's native width (no intrinsics):
 * 16 bytes everywhere (SSE2, NEON), and on x86-64 also AVX2 and AVX-512 instances picked by
 * CPUID at run time (trainops_impl.h is the template). Kernel 0, "ref", is the scalar reference
 * the tests compare every instance with (tests/test_trainops.py); PyTorch is the reference of
 * all. Single-threaded: one call is a fraction of a millisecond on a training batch.
 */
#ifndef NS_TRAINOPS_H
#define NS_TRAINOPS_H

#include <stddef.h>
#include <stdint.h>

/* Element types of the tensors. */
typedef enum ns_tdtype { NS_TD_F32 = 0, NS_TD_BF16 = 1 } ns_tdtype;

/* arg value of an output whose ReLU passes no gradient (max <= 0). */
#define NS_POOL_NO_GRAD 0xFF

/* x: (n, h, w, c) NHWC, h, w >= 2; y: (n, h / 2, w / 2, c) NHWC, or (n, c, h / 2, w / 2) NCHW
 * when nchw_out (the flattened input of a following linear layer); arg: (n, h / 2, w / 2, c)
 * bytes, the window position of each output's maximum (0..3, row-major) or NS_POOL_NO_GRAD.
 * drop: arg holds a keep mask on entry (ns_dropout_keep; 0 = dropped), and dropped outputs are
 * 0 with no gradient, like those the ReLU zeroes (dropout without its 1 / (1 - p) scale, which
 * the caller applies). */
void ns_pool2_relu_fwd(ns_tdtype dt, const void *x, size_t n, size_t h, size_t w, size_t c, void *y,
                       int nchw_out, uint8_t *arg, int drop, int kernel);

/* keep[i] = 1 with probability 1 - p, else 0, for i < n (< 2^32): a counter-based hash of
 * (seed, i), so the mask depends only on the seed, never on the kernel. */
void ns_dropout_keep(uint64_t seed, double p, size_t n, uint8_t *keep, int kernel);

/* gy: the gradient of y (layout as y: NCHW when nchw_in); arg: the forward's (any value other
 * than 0-3 routes no gradient); gx: the gradient of x, (n, h, w, c) NHWC, every element
 * written. */
void ns_pool2_relu_bwd(ns_tdtype dt, const void *gy, int nchw_in, const uint8_t *arg, size_t n,
                       size_t h, size_t w, size_t c, void *gx, int kernel);

/* `kernel` of the three: an index of ns_trainops_kernel_name (0 "ref", 1 "v16", then "avx2" and
 * "avx512" on x86-64), or -1 (and any unsupported one) for the best this CPU runs. */
const char *ns_trainops_kernel_name(int kernel); /* NULL past the last */
int ns_trainops_kernel_supported(int kernel);
int ns_trainops_best_kernel(void);

#endif /* NS_TRAINOPS_H */
