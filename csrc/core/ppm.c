#include "ppm.h"

#include <string.h>

static inline int is_ws(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline int is_digit(uint8_t c) {
    return c >= '0' && c <= '9';
}

/* Skip whitespace and comments starting at *pos. */
static void skip_ws(const uint8_t *buf, size_t len, size_t *pos) {
    size_t p = *pos;
    while (p < len) {
        if (is_ws(buf[p])) {
            p++;
        } else if (buf[p] == '#') {
            while (p < len && buf[p] != '\n' && buf[p] != '\r') p++;
        } else {
            break;
        }
    }
    *pos = p;
}

/* Printable description of byte c for messages. */
static void describe_byte(uint8_t c, char out[16]) {
    if (c >= 0x21 && c < 0x7f)
        out[0] = '\'', out[1] = (char)c, out[2] = '\'', out[3] = '\0';
    else {
        static const char hex[] = "0123456789abcdef";
        memcpy(out, "byte 0x", 7);
        out[7] = hex[c >> 4];
        out[8] = hex[c & 15];
        out[9] = '\0';
    }
}

/* Parse an unsigned decimal header field at *pos (after skipping whitespace). Values above
 * `limit` are an error. The token must end at whitespace, '#' or the end of the buffer. */
static ns_status header_uint(const uint8_t *buf, size_t len, size_t *pos, const char *field,
                             uint64_t limit, uint64_t *out, ns_error *err) {
    skip_ws(buf, len, pos);
    size_t p = *pos;
    if (p >= len)
        return ns_set_error(err, NS_ERR_FORMAT, "truncated PPM header: missing %s", field);
    if (!is_digit(buf[p])) {
        char d[16];
        describe_byte(buf[p], d);
        return ns_set_error(err, NS_ERR_FORMAT,
                            "bad PPM header: %s must be a decimal number, found %s at offset %zu",
                            field, d, p);
    }
    uint64_t v = 0;
    while (p < len && is_digit(buf[p])) {
        v = v * 10 + (uint64_t)(buf[p] - '0');
        if (v > limit)
            return ns_set_error(err, NS_ERR_FORMAT,
                                "bad PPM header: %s is too large (more than %llu)", field,
                                (unsigned long long)limit);
        p++;
    }
    if (p < len && !is_ws(buf[p]) && buf[p] != '#') {
        char d[16];
        describe_byte(buf[p], d);
        return ns_set_error(err, NS_ERR_FORMAT,
                            "bad PPM header: %s must be a decimal number, found %s at offset %zu",
                            field, d, p);
    }
    *pos = p;
    *out = v;
    return NS_OK;
}

/* Dimension limit before the pixel-count check: keeps products far from overflow. */
#define PPM_MAX_DIM ((uint64_t)1 << 31)

ns_status ns_ppm_parse_header(const uint8_t *buf, size_t len, size_t max_pixels, ns_ppm_info *info,
                              ns_error *err) {
    memset(info, 0, sizeof *info);
    if (len == 0) return ns_set_error(err, NS_ERR_FORMAT, "empty data: not a PPM image");
    if (len < 2 || buf[0] != 'P' || (buf[1] != '6' && buf[1] != '3')) {
        char d0[16], d1[16];
        describe_byte(buf[0], d0);
        describe_byte(len > 1 ? buf[1] : 0, d1);
        return ns_set_error(err, NS_ERR_FORMAT,
                            "bad magic: expected 'P6' or 'P3' (a PPM image), found %s %s", d0,
                            len > 1 ? d1 : "(end of data)");
    }
    info->plain = buf[1] == '3';
    size_t pos = 2;
    if (pos < len && !is_ws(buf[pos]) && buf[pos] != '#')
        return ns_set_error(err, NS_ERR_FORMAT, "bad magic: 'P%c' must be followed by whitespace",
                            buf[1]);
    uint64_t w, h, maxval;
    ns_status st;
    if ((st = header_uint(buf, len, &pos, "width", PPM_MAX_DIM, &w, err)) != NS_OK) return st;
    if ((st = header_uint(buf, len, &pos, "height", PPM_MAX_DIM, &h, err)) != NS_OK) return st;
    if (w == 0 || h == 0)
        return ns_set_error(err, NS_ERR_FORMAT, "bad PPM header: zero dimension %llux%llu",
                            (unsigned long long)w, (unsigned long long)h);
    if (w * h > (uint64_t)max_pixels)
        return ns_set_error(err, NS_ERR_LIMIT,
                            "PPM image of %llux%llu pixels exceeds the limit of %zu pixels",
                            (unsigned long long)w, (unsigned long long)h, max_pixels);
    if ((st = header_uint(buf, len, &pos, "maxval", 65536, &maxval, err)) != NS_OK) return st;
    if (maxval == 0 || maxval > 65535)
        return ns_set_error(err, NS_ERR_FORMAT, "bad PPM header: maxval %llu is not in 1..65535",
                            (unsigned long long)maxval);
    if (pos >= len)
        return ns_set_error(err, NS_ERR_FORMAT, "truncated PPM: no pixel data after the header");
    if (!is_ws(buf[pos]))
        return ns_set_error(err, NS_ERR_FORMAT,
                            "bad PPM header: maxval must be followed by one whitespace byte");
    pos++; /* exactly one whitespace byte for P6; P3 skips more in the raster parser */
    info->width = (size_t)w;
    info->height = (size_t)h;
    info->maxval = (unsigned)maxval;
    info->data_offset = pos;
    /* The raster must be present before anyone allocates for it. P6: 3 samples per pixel of 1
     * or 2 bytes. P3: at least one digit per sample and one whitespace byte between samples,
     * so 2 * samples - 1 bytes (a tiny file cannot declare a huge plain image either). The
     * products are checked: with a large max_pixels they can exceed 64 bits. */
    size_t samples, need;
    if (ns_mul_overflow((size_t)w, (size_t)h, &samples) || ns_mul_overflow(samples, 3, &samples) ||
        ns_mul_overflow(samples, info->plain ? 2 : (maxval > 255 ? 2 : 1), &need))
        return ns_set_error(err, NS_ERR_LIMIT, "PPM image of %llux%llu pixels is too large",
                            (unsigned long long)w, (unsigned long long)h);
    if (info->plain) need -= 1;
    if (len - pos < need)
        return ns_set_error(err, NS_ERR_FORMAT,
                            "truncated PPM: %llux%llu pixels need %s%zu bytes of data, found %zu",
                            (unsigned long long)w, (unsigned long long)h,
                            info->plain ? "at least " : "", need, len - pos);
    return NS_OK;
}

static inline uint8_t scale8(unsigned v, unsigned maxval) {
    return (uint8_t)(((uint32_t)v * 510u + maxval) / (2u * maxval));
}

static ns_status sample_too_large(ns_error *err, size_t i, unsigned v, unsigned maxval,
                                  size_t width) {
    size_t px = i / 3;
    return ns_set_error(err, NS_ERR_FORMAT,
                        "bad PPM data: sample %u at pixel (x=%zu, y=%zu) exceeds maxval %u", v,
                        px % width, px / width, maxval);
}

ns_status ns_ppm_decode_pixels(const uint8_t *buf, size_t len, const ns_ppm_info *info,
                               uint8_t *out, ns_error *err) {
    const size_t n = info->width * info->height * 3; /* bounded by the header's pixel limit */
    const unsigned maxval = info->maxval;
    size_t pos = info->data_offset;
    if (!info->plain) {
        const uint8_t *src = buf + pos;
        if (maxval == 255) {
            memcpy(out, src, n);
        } else if (maxval < 256) {
            uint8_t lut[256];
            for (unsigned v = 0; v <= maxval; v++) lut[v] = scale8(v, maxval);
            for (size_t i = 0; i < n; i++) {
                unsigned v = src[i];
                if (v > maxval) return sample_too_large(err, i, v, maxval, info->width);
                out[i] = lut[v];
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                unsigned v = ((unsigned)src[2 * i] << 8) | src[2 * i + 1];
                if (v > maxval) return sample_too_large(err, i, v, maxval, info->width);
                out[i] = scale8(v, maxval);
            }
        }
        return NS_OK;
    }
    /* P3: whitespace/comment separated decimal samples */
    for (size_t i = 0; i < n; i++) {
        skip_ws(buf, len, &pos);
        if (pos >= len)
            return ns_set_error(err, NS_ERR_FORMAT,
                                "truncated PPM: plain data ends after %zu of %zu samples", i, n);
        if (!is_digit(buf[pos])) {
            char d[16];
            describe_byte(buf[pos], d);
            return ns_set_error(err, NS_ERR_FORMAT,
                                "bad PPM data: sample %zu must be a decimal number, found %s at "
                                "offset %zu",
                                i, d, pos);
        }
        unsigned v = 0;
        while (pos < len && is_digit(buf[pos])) {
            if (v < 1000000u) v = v * 10 + (unsigned)(buf[pos] - '0'); /* saturates, no overflow */
            pos++;
        }
        if (pos < len && !is_ws(buf[pos]) && buf[pos] != '#') {
            char d[16];
            describe_byte(buf[pos], d);
            return ns_set_error(err, NS_ERR_FORMAT,
                                "bad PPM data: sample %zu must be a decimal number, found %s at "
                                "offset %zu",
                                i, d, pos);
        }
        if (v > maxval) return sample_too_large(err, i, v, maxval, info->width);
        out[i] = maxval == 255 ? (uint8_t)v : scale8(v, maxval);
    }
    return NS_OK;
}
