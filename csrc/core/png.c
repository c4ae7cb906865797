#include "png.h"

#include <stdlib.h>
#include <string.h>

size_t ns_png_data_size(size_t width, size_t height, int channels) {
    if (channels < 1 || channels > 4 || width == 0 || height == 0) return 0;
    size_t c = (size_t)channels;
    if (width > (SIZE_MAX - 1) / c) return 0;
    size_t stride = 1 + width * c;
    if (height > SIZE_MAX / stride) return 0;
    return stride * height;
}

static inline uint8_t paeth(int a, int b, int c) {
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return (uint8_t)a;
    return (uint8_t)(pb <= pc ? b : c);
}

/* Reconstruct one row of n bytes into cur (prev: the previous reconstructed row, all zero for
 * the first); bpp bytes per pixel. */
static void unfilter_row(int type, const uint8_t *src, const uint8_t *prev, uint8_t *cur, size_t n,
                         size_t bpp) {
    size_t i;
    switch (type) {
    case 0:
        memcpy(cur, src, n);
        break;
    case 1:
        memcpy(cur, src, bpp < n ? bpp : n);
        for (i = bpp; i < n; i++) cur[i] = (uint8_t)(src[i] + cur[i - bpp]);
        break;
    case 2:
        for (i = 0; i < n; i++) cur[i] = (uint8_t)(src[i] + prev[i]);
        break;
    case 3:
        for (i = 0; i < bpp && i < n; i++) cur[i] = (uint8_t)(src[i] + (prev[i] >> 1));
        for (; i < n; i++) cur[i] = (uint8_t)(src[i] + ((cur[i - bpp] + prev[i]) >> 1));
        break;
    default: /* 4, Paeth */
        for (i = 0; i < bpp && i < n; i++) cur[i] = (uint8_t)(src[i] + prev[i]);
        for (; i < n; i++) cur[i] = (uint8_t)(src[i] + paeth(cur[i - bpp], prev[i], prev[i - bpp]));
        break;
    }
}

static inline uint8_t on_white(unsigned v, unsigned a) {
    return (uint8_t)((v * a + 255u * (255u - a) + 127u) / 255u);
}

/* One reconstructed row of `width` pixels of `channels` samples as RGB. */
static void row_to_rgb(const uint8_t *row, size_t width, int channels, uint8_t *out) {
    size_t x;
    switch (channels) {
    case 1:
        for (x = 0; x < width; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
        break;
    case 2:
        for (x = 0; x < width; x++) {
            uint8_t v = on_white(row[2 * x], row[2 * x + 1]);
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
        }
        break;
    case 3:
        memcpy(out, row, 3 * width);
        break;
    default: /* 4 */
        for (x = 0; x < width; x++) {
            unsigned a = row[4 * x + 3];
            out[3 * x] = on_white(row[4 * x], a);
            out[3 * x + 1] = on_white(row[4 * x + 1], a);
            out[3 * x + 2] = on_white(row[4 * x + 2], a);
        }
        break;
    }
}

ns_status ns_png_unfilter_rgb(const uint8_t *in, size_t len, size_t width, size_t height,
                              int channels, uint8_t *out, ns_error *err) {
    size_t size = ns_png_data_size(width, height, channels);
    if (size == 0 || len != size)
        return ns_set_error(err, NS_ERR_INVALID,
                            "PNG data of %zu bytes does not fit a %zux%zu image of %d channels",
                            len, width, height, channels);
    size_t n = width * (size_t)channels, bpp = (size_t)channels;
    /* two reconstructed rows, the previous one starting as zeros (the filters' row "above"
     * the first) */
    uint8_t *rows = calloc(2, n);
    if (!rows) return ns_set_error(err, NS_ERR_NOMEM, "out of memory (%zu bytes)", 2 * n);
    uint8_t *prev = rows, *cur = rows + n;
    for (size_t y = 0; y < height; y++) {
        const uint8_t *src = in + y * (n + 1);
        if (src[0] > 4) {
            free(rows);
            return ns_set_error(err, NS_ERR_FORMAT, "PNG row %zu has filter type %u (0..4 exist)",
                                y, (unsigned)src[0]);
        }
        unfilter_row(src[0], src + 1, prev, cur, n, bpp);
        row_to_rgb(cur, width, channels, out + y * width * 3);
        uint8_t *t = prev;
        prev = cur;
        cur = t;
    }
    free(rows);
    return NS_OK;
}
