/* libFuzzer target: antialiased bilinear resize with fuzzed sizes, stride and pixels.
 *
 * sources: common.c buf.c resize.c
 *
 * Input: src_w, src_h, dst_w, dst_h (one byte each, +1), a stride pad byte, a flags byte
 * (bit 0: keep a coefficient cache like the loader does), then pixels (repeated to fill). The
 * source and destination are exact-size allocations, so ASan sees any access outside them.
 * Also checks the output of a constant image is that constant (weights sum to one).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 6) return 0;
    size_t sw = (size_t)data[0] + 1, sh = (size_t)data[1] + 1;
    size_t dw = (size_t)data[2] + 1, dh = (size_t)data[3] + 1;
    size_t stride = sw * 3 + data[4] % 16;
    int cache = data[5] & 1, constant = (data[5] >> 1) & 1;
    const uint8_t *px = data + 6;
    size_t npx = size - 6;
    size_t src_bytes = stride * (sh - 1) + sw * 3; /* the last row has no padding */
    uint8_t *src = malloc(src_bytes);
    uint8_t *dst = malloc(dw * dh * 3);
    if (!src || !dst) goto done;
    for (size_t i = 0; i < src_bytes; i++)
        src[i] = constant ? (npx ? px[0] : 77) : (npx ? px[i % npx] : (uint8_t)i);
    ns_resize_scratch s;
    memset(&s, 0, sizeof s);
    s.use_cache = cache;
    ns_error err;
    for (int rep = 0; rep < 1 + cache; rep++) { /* the second run hits the cache */
        ns_status st = ns_resize_u8c3(src, sw, sh, stride, dst, dw, dh, &s, &err);
        if (st != NS_OK) abort(); /* these sizes are all valid */
        if (constant)
            for (size_t i = 0; i < dw * dh * 3; i++)
                if (dst[i] != src[0]) abort();
    }
    ns_resize_scratch_free(&s);
done:
    free(src);
    free(dst);
    return 0;
}
