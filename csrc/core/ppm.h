/* PPM (netpbm P6 binary and P3 plain) decoding to 8-bit RGB.
 *
 * Header: magic, width, height, maxval separated by whitespace (space, TAB, CR, LF, VT, FF) with
 * '#' comments (to the end of the line) allowed wherever whitespace is. P6: exactly one
 * whitespace byte after maxval, then height*width*3 samples, one byte each (maxval < 256) or two
 * big-endian bytes (maxval 256..65535); trailing bytes after the raster are ignored. P3: decimal
 * samples separated by whitespace/comments. maxval is 1..65535; samples above maxval are an
 * error; maxval != 255 is scaled to 8 bits as round(v * 255 / maxval) (halves round up).
 */
#ifndef NS_PPM_H
#define NS_PPM_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define NS_PPM_DEFAULT_MAX_PIXELS ((size_t)1 << 26)

typedef struct ns_ppm_info {
    size_t width, height;
    unsigned maxval;    /* 1..65535 */
    int plain;          /* 1 for P3, 0 for P6 */
    size_t data_offset; /* first raster byte */
} ns_ppm_info;

/* Parse and validate the header of buf[0..len). width*height above max_pixels fails with
 * NS_ERR_LIMIT; anything malformed with NS_ERR_FORMAT. Messages do not name a file: callers
 * prefix the source. */
ns_status ns_ppm_parse_header(const uint8_t *buf, size_t len, size_t max_pixels, ns_ppm_info *info,
                              ns_error *err);

/* Decode the raster described by info (from ns_ppm_parse_header on the same buffer) into
 * out[height][width][3] (uint8, tightly packed). */
ns_status ns_ppm_decode_pixels(const uint8_t *buf, size_t len, const ns_ppm_info *info,
                               uint8_t *out, ns_error *err);

/* 1 if the raster can be used in place: P6 with maxval 255 (pixels at buf + data_offset). */
static inline int ns_ppm_is_raw8(const ns_ppm_info *info) {
    return !info->plain && info->maxval == 255;
}

#endif /* NS_PPM_H */
