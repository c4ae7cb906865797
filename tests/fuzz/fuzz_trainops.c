/* libFuzzer target: the fused pooling kernels (trainops.c), every instance this CPU runs against
 * the scalar reference, on fuzzed sizes and any bit patterns.
 *
 * sources: trainops.c
 *
 * Input: n, h, w, c (one byte each: n % 3 + 1, h and w % 17 + 2, c % 70 + 1), a flags byte
 * (bit 0 bfloat16, bit 1 NCHW output, bit 2 dropout), an 8-byte seed, then the input's element
 * bytes (repeated to fill; NaNs, infinities, zeros of both signs included). Every buffer is an
 * exact-size allocation, so ASan sees any access outside it. Each instance's output, arg bytes
 * and input gradient must equal the reference's bit for bit, and so must its gradient for arg
 * bytes taken from the input (any value).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trainops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 13) return 0;
    size_t n = data[0] % 3 + 1, h = data[1] % 17 + 2, w = data[2] % 17 + 2, c = data[3] % 70 + 1;
    int bf16 = data[4] & 1, nchw = (data[4] >> 1) & 1, drop = (data[4] >> 2) & 1;
    uint64_t seed;
    memcpy(&seed, data + 5, sizeof seed);
    data += 13, size -= 13;
    ns_tdtype dt = bf16 ? NS_TD_BF16 : NS_TD_F32;
    size_t es = bf16 ? 2 : 4, in = n * h * w * c, out = n * (h / 2) * (w / 2) * c;
    uint8_t *x = malloc(in * es), *gx_ref = malloc(in * es), *gx = malloc(in * es);
    uint8_t *y_ref = malloc(out * es), *y = malloc(out * es);
    uint8_t *arg_ref = malloc(out), *arg = malloc(out);
    if (!x || !gx_ref || !gx || !y_ref || !y || !arg_ref || !arg) goto done;
    for (size_t i = 0; i < in * es; i++) x[i] = size ? data[i % size] : (uint8_t)(i * 37);
    /* the reference, then its gradient of the forward's output as the upstream gradient */
    if (drop) ns_dropout_keep(seed, 0.3, out, arg_ref, 0);
    ns_pool2_relu_fwd(dt, x, n, h, w, c, y_ref, nchw, arg_ref, drop, 0);
    ns_pool2_relu_bwd(dt, y_ref, nchw, arg_ref, n, h, w, c, gx_ref, 0);
    for (int k = 1; ns_trainops_kernel_name(k); k++) {
        if (!ns_trainops_kernel_supported(k)) continue;
        memset(y, 0xA5, out * es), memset(gx, 0x5A, in * es), memset(arg, 0x77, out);
        if (drop) ns_dropout_keep(seed, 0.3, out, arg, k);
        ns_pool2_relu_fwd(dt, x, n, h, w, c, y, nchw, arg, drop, k);
        ns_pool2_relu_bwd(dt, y, nchw, arg, n, h, w, c, gx, k);
        if (memcmp(y, y_ref, out * es) || memcmp(arg, arg_ref, out) || memcmp(gx, gx_ref, in * es))
            abort();
    }
    /* the backward with arg bytes from the input (any value; > 3 routes no gradient) */
    for (size_t i = 0; i < out; i++) arg_ref[i] = size ? data[(i * 7) % size] : (uint8_t)i;
    ns_pool2_relu_bwd(dt, y_ref, nchw, arg_ref, n, h, w, c, gx_ref, 0);
    for (int k = 1; ns_trainops_kernel_name(k); k++) {
        if (!ns_trainops_kernel_supported(k)) continue;
        memset(gx, 0x5A, in * es);
        ns_pool2_relu_bwd(dt, y_ref, nchw, arg_ref, n, h, w, c, gx, k);
        if (memcmp(gx, gx_ref, in * es)) abort();
    }
done:
    free(x), free(gx_ref), free(gx), free(y_ref), free(y), free(arg_ref), free(arg);
    return 0;
}
