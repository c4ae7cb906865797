/* libFuzzer target: PNG row reconstruction (ns_png_unfilter_rgb) on arbitrary rows.
 *
 * sources: common.c png.c
 *
 * Input: width-1, height-1 and channels-1 (one byte each, taken modulo 64, 64 and 4), then the
 * inflated rows. Rows of the exact size are reconstructed into an exact-size output (ASan
 * catches any access past either); other sizes must be refused with a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t width = (size_t)(data[0] % 64) + 1, height = (size_t)(data[1] % 64) + 1;
    int channels = data[2] % 4 + 1;
    size_t len = size - 3;
    uint8_t *rows = malloc(len ? len : 1); /* exact size: reads past it are ASan errors */
    uint8_t *out = malloc(width * height * 3);
    if (!rows || !out) {
        free(rows);
        free(out);
        return 0;
    }
    if (len) memcpy(rows, data + 3, len);
    ns_error err;
    ns_error_clear(&err);
    ns_status st = ns_png_unfilter_rgb(rows, len, width, height, channels, out, &err);
    if (len != ns_png_data_size(width, height, channels) && st == NS_OK) abort();
    if (st != NS_OK && (err.msg[0] == '\0' || err.status != st)) abort();
    free(rows);
    free(out);
    return 0;
}
