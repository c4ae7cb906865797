/* libFuzzer target: the training augmentation (augment.c) with fuzzed sizes, maps and factors.
 *
 * sources: augment.c
 *
 * Input: w, h (one byte each, % 48 + 1), n (a byte, % 3 + 1), then per image 8 float32 values
 * (the 2x3 map theta, brightness, contrast: any bit pattern, NaN and infinities included) and
 * then pixels (repeated to fill). Source, scratch and output are exact-size allocations, so
 * ASan sees any access outside them; every output must lie in the normalised range of [0, 1]
 * (the clamp happens before the normalisation, whatever the map and factors).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t w = data[0] % 48 + 1, h = data[1] % 48 + 1, n = data[2] % 3 + 1;
    data += 3, size -= 3;
    size_t values = n * h * w * 3;
    float *params = calloc(n * 8, sizeof(float)), *theta = malloc(n * 6 * sizeof(float));
    float *bright = malloc(n * sizeof(float)), *contrast = malloc(n * sizeof(float));
    uint8_t *src = malloc(values);
    float *scratch = malloc(ns_augment_scratch_floats(h, w) * sizeof(float));
    float *dst = malloc(values * sizeof(float));
    if (!params || !theta || !bright || !contrast || !src || !scratch || !dst) goto done;
    size_t take = size < n * 8 * sizeof(float) ? size : n * 8 * sizeof(float);
    memcpy(params, data, take);
    data += take, size -= take;
    for (size_t i = 0; i < n; i++) {
        memcpy(theta + i * 6, params + i * 8, 6 * sizeof(float));
        bright[i] = params[i * 8 + 6], contrast[i] = params[i * 8 + 7];
    }
    for (size_t i = 0; i < values; i++) src[i] = size ? data[i % size] : (uint8_t)i;
    ns_augment_params p = {theta, bright, contrast, {0.25f, 0.5f, 0.75f}, {0.5f, 0.25f, 2.0f}};
    ns_augment_u8c3(src, n, h, w, &p, scratch, dst);
    for (size_t i = 0; i < values; i++) {
        size_t ch = i % 3;
        float lo = -p.mean[ch] / p.std[ch], hi = (1.0f - p.mean[ch]) / p.std[ch];
        if (!(dst[i] >= lo - 1e-5f && dst[i] <= hi + 1e-5f)) abort();
    }
done:
    free(params), free(theta), free(bright), free(contrast);
    free(src), free(scratch), free(dst);
    return 0;
}
