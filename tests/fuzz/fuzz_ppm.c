/* libFuzzer target: PPM header parsing and pixel decoding on arbitrary bytes.
 *
 * sources: common.c ppm.c
 *
 * Decodes into a buffer of exactly width*height*3 bytes, so ASan catches any write past the
 * image; a small pixel cap keeps each run fast (the cap itself is what protects allocation).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ppm.h"

#define FUZZ_MAX_PIXELS ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ns_error err;
    ns_ppm_info info;
    /* copy into an exact-size allocation: reads past `size` are ASan errors */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    ns_status st = ns_ppm_parse_header(buf, size, FUZZ_MAX_PIXELS, &info, &err);
    if (st == NS_OK) {
        if (info.width == 0 || info.height == 0 || info.width * info.height > FUZZ_MAX_PIXELS ||
            info.data_offset > size)
            abort(); /* the header contract is broken */
        uint8_t *out = malloc(info.width * info.height * 3);
        if (out) {
            st = ns_ppm_decode_pixels(buf, size, &info, out, &err);
            free(out);
        }
    }
    if (st != NS_OK && (err.msg[0] == '\0' || err.status != st))
        abort(); /* errors need a message */
    free(buf);
    return 0;
}
