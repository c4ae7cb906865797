/* C-level regression tests of PPM header limits (found while hardening, see tests/test_limits.py).
 *
 * sources: common.c ppm.c
 *
 * 1. A 16-bit P6 header whose byte count w*h*3*2 wraps around 64 bits (w*h*6 = 2^64 + 32) must
 *    not pass the truncation check with 32 bytes of data when max_pixels is huge: the decoder
 *    would then read ~2^64 bytes past the buffer.
 * 2. A P3 header declaring 60000x60000 with a few samples must be refused by the header parser
 *    (callers allocate width*height*3 bytes right after it succeeds).
 */
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "ppm.h"

#include "check.h"

static ns_status parse(const char *head, size_t data_bytes, size_t max_pixels, ns_error *err) {
    uint8_t buf[256];
    size_t n = strlen(head);
    memcpy(buf, head, n);
    memset(buf + n, '7', data_bytes);
    ns_ppm_info info;
    return ns_ppm_parse_header(buf, n + data_bytes, max_pixels, &info, err);
}

int main(void) {
    ns_error err;
    /* 1684887088 * 1824726041 * 6 = 2^64 + 32 */
    ns_status st = parse("P6\n1684887088 1824726041\n65535\n", 32, SIZE_MAX, &err);
    EXPECT(st != NS_OK, "wrapping 16-bit P6 size accepted");
    st = parse("P6\n1684887088 1824726041\n255\n", 32, SIZE_MAX, &err);
    EXPECT(st != NS_OK, "huge 8-bit P6 accepted with 32 bytes");

    st = parse("P3\n60000 60000\n255\n", 9, SIZE_MAX, &err);
    EXPECT(st == NS_ERR_FORMAT && strstr(err.msg, "truncated"), "huge P3: status %d, %s", st,
           err.msg);
    st = parse("P3\n60000 60000\n255\n", 9, 1000, &err);
    EXPECT(st == NS_ERR_LIMIT, "huge P3 over the pixel limit: status %d", st);

    /* the smallest plain rasters are accepted: "1 2 3" for 1x1 */
    uint8_t ok[] = "P3 1 1 255 1 2 3";
    ns_ppm_info info;
    st = ns_ppm_parse_header(ok, sizeof ok - 1, 100, &info, &err);
    EXPECT(st == NS_OK, "minimal P3 refused: %s", err.msg);
    uint8_t px[3];
    if (st == NS_OK) {
        st = ns_ppm_decode_pixels(ok, sizeof ok - 1, &info, px, &err);
        EXPECT(st == NS_OK && px[0] == 1 && px[1] == 2 && px[2] == 3, "minimal P3 decode");
    }
    uint8_t short1[] = "P3 2 1 255 1 2 3 4 5";
    st = ns_ppm_parse_header(short1, sizeof short1 - 1, 100, &info, &err);
    EXPECT(st == NS_ERR_FORMAT, "short P3 accepted");

    if (failures) return 1;
    printf("test_ppm_limits: ok\n");
    return 0;
}
