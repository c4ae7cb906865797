/* libFuzzer target: engine weight packing and one forward pass from fuzzed weights.
 *
 * sources: common.c pool.c net.c kernels/ref.c kernels/dispatch.c (+ the per-ISA kernels)
 *
 * Input: byte 0 picks the kernel (index into the available ones) and the batch (1..4), the rest
 * fills the weights, biases and input as raw float32 bytes (repeated), so NaN, inf and
 * denormals all occur. Any output value is fine (NaN/inf included); crashes, out-of-bounds
 * accesses and undefined behaviour are not. Each available kernel is also switched to once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

static void fill(float *p, size_t n, const uint8_t *data, size_t size, size_t *pos) {
    uint8_t *b = (uint8_t *)p;
    size_t bytes = n * sizeof(float);
    if (size == 0) {
        memset(b, 0, bytes);
        return;
    }
    /* the input from *pos on, repeated (chunked memcpy: a byte loop is too slow under ASan) */
    size_t done = 0;
    while (done < bytes) {
        size_t off = *pos % size, chunk = size - off;
        if (chunk > bytes - done) chunk = bytes - done;
        memcpy(b + done, data + off, chunk);
        done += chunk;
        *pos += chunk;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ns_kernel avail[NS_KERNEL_COUNT];
    int navail = 0;
    for (int k = 0; k < NS_KERNEL_COUNT; k++)
        if (ns_kernel_available((ns_kernel)k)) avail[navail++] = (ns_kernel)k;
    const uint8_t sel = data[0];
    ns_kernel kernel = avail[(sel & 3) % navail];
    ns_kernel other = avail[((sel >> 4) & 3) % navail];
    size_t n = (size_t)((sel >> 2) & 3) + 1;
    data++;
    size--;

    static const size_t sizes[8] = {32 * 3 * 9, 32, 64 * 32 * 9, 64, 128 * 2304, 128, 43 * 128, 43};
    float *w[8] = {0};
    float *x = NULL, *logits = NULL;
    size_t pos = 0;
    for (int i = 0; i < 8; i++) {
        w[i] = malloc(sizes[i] * sizeof(float));
        if (!w[i]) goto done;
        fill(w[i], sizes[i], data, size, &pos);
    }
    x = malloc(n * 3 * 32 * 32 * sizeof(float));
    logits = malloc(n * NS_NET_CLASSES * sizeof(float));
    if (!x || !logits) goto done;
    fill(x, n * 3 * 32 * 32, data, size, &pos);
    ns_net_weights nw = {w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    ns_net *net = NULL;
    ns_error err;
    if (ns_net_create(&nw, ns_kernel_name(kernel), &net, &err) != NS_OK) abort();
    if (ns_net_forward(net, NULL, 1, x, n, logits, &err) != NS_OK) abort();
    /* repack for another kernel and run again */
    if (ns_net_set_kernel(net, ns_kernel_name(other), &err) != NS_OK) abort();
    if (ns_net_forward(net, NULL, 1, x, n, logits, &err) != NS_OK) abort();
    ns_net_destroy(net);
done:
    for (int i = 0; i < 8; i++) free(w[i]);
    free(x);
    free(logits);
    return 0;
}
