#include "resize.h"

#include <math.h>
#include <string.h>

/* Pillow: PRECISION_BITS = 32 - 8 - 2 */
#define NS_PRECISION_BITS 22

static inline uint8_t clip8(int32_t v) {
    v >>= NS_PRECISION_BITS; /* arithmetic shift, as Pillow's lookup table index */
    return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

static inline double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Filter taps per output position (Pillow's ksize) for resampling in_size -> out_size. */
static size_t taps_for(size_t in_size, size_t out_size) {
    double filterscale = (double)(float)in_size / (double)out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    return (size_t)ceil(filterscale) * 2 + 1;
}

/* Compute Pillow's coefficient table for in_size -> out_size into buf: out_size*ksize int32
 * weights followed by out_size*2 int32 bounds (first input index, number of taps). */
static ns_status compute_coeffs(size_t in_size, size_t out_size, ns_buf *buf, size_t *ksize_out,
                                int32_t **k_out, int32_t **bounds_out, ns_error *err) {
    /* Pillow passes the box as float: replicate that rounding for huge sizes */
    const double in0 = 0.0, in1 = (double)(float)in_size;
    const double support_base = 1.0; /* BILINEAR */
    double scale = (in1 - in0) / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    size_t ksize = taps_for(in_size, out_size);
    size_t nk, nb, bytes;
    if (ns_mul_overflow(out_size, ksize, &nk) || ns_mul_overflow(out_size, 2, &nb) ||
        nk > SIZE_MAX - nb || ns_mul_overflow(nk + nb, sizeof(int32_t), &bytes) ||
        nk > (size_t)INT32_MAX)
        return ns_set_error(err, NS_ERR_LIMIT, "resize %zu -> %zu needs too many coefficients",
                            in_size, out_size);
    ns_status st = ns_buf_reserve(buf, bytes, "resize coefficients", err);
    if (st != NS_OK) return st;
    int32_t *kk = (int32_t *)buf->data;
    int32_t *bounds = kk + nk;
    double wbuf_static[64];
    double *w = wbuf_static;
    /* the double weights of one position; ksize is small unless the downscale is extreme */
    ns_buf wbig = {NULL, 0};
    if (ksize > 64) {
        size_t wbytes;
        if (ns_mul_overflow(ksize, sizeof(double), &wbytes))
            return ns_set_error(err, NS_ERR_LIMIT, "resize kernel too large");
        st = ns_buf_reserve(&wbig, wbytes, "resize weights", err);
        if (st != NS_OK) return st;
        w = (double *)wbig.data;
    }
    const double ss = 1.0 / filterscale;
    for (size_t xx = 0; xx < out_size; xx++) {
        double center = in0 + ((double)xx + 0.5) * scale;
        double ww = 0.0;
        int64_t xmin = (int64_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > (int64_t)in_size) xmax = (int64_t)in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if ((size_t)xmax > ksize) xmax = (int64_t)ksize; /* cannot happen; keeps writes in bounds */
        for (int64_t x = 0; x < xmax; x++) {
            double wx = bilinear_filter(((double)(x + xmin) - center + 0.5) * ss);
            w[x] = wx;
            ww += wx;
        }
        int32_t *k = kk + xx * ksize;
        for (int64_t x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            /* Pillow's normalize_coeffs_8bpc */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << NS_PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << NS_PRECISION_BITS));
        }
        for (size_t x = (size_t)xmax; x < ksize; x++) k[x] = 0;
        bounds[2 * xx] = (int32_t)xmin;
        bounds[2 * xx + 1] = (int32_t)xmax;
    }
    ns_buf_free(&wbig);
    *ksize_out = ksize;
    *k_out = kk;
    *bounds_out = bounds;
    return NS_OK;
}

void ns_resize_scratch_free(ns_resize_scratch *s) {
    ns_buf_free(&s->coeffs_x);
    ns_buf_free(&s->coeffs_y);
    ns_buf_free(&s->tmp);
    ns_buf_free(&s->acc);
}

/* Horizontal pass: nrows rows of src (rows src_stride bytes apart) -> nrows rows of dst_w RGB
 * pixels in dst (rows dst_w*3 bytes apart). */
static void horizontal_pass(const uint8_t *src, size_t src_stride, size_t nrows, uint8_t *dst,
                            size_t dst_w, size_t ksize, const int32_t *kk, const int32_t *bounds) {
    const int32_t half = 1 << (NS_PRECISION_BITS - 1);
    for (size_t r = 0; r < nrows; r++) {
        const uint8_t *row = src + r * src_stride;
        uint8_t *out = dst + r * dst_w * 3;
        for (size_t xx = 0; xx < dst_w; xx++) {
            const int32_t *k = kk + xx * ksize;
            const uint8_t *p = row + (size_t)bounds[2 * xx] * 3;
            const int32_t n = bounds[2 * xx + 1];
            int32_t s0 = half, s1 = half, s2 = half;
            for (int32_t x = 0; x < n; x++) {
                s0 += p[3 * x + 0] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            out[3 * xx + 0] = clip8(s0);
            out[3 * xx + 1] = clip8(s1);
            out[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src holds source rows y0, y0+1, ... (src_stride bytes apart, rowlen bytes
 * used); output row yy reads rows bounds[2*yy] .. + bounds[2*yy+1] into dst (rowlen bytes per
 * row, tightly packed). */
static void vertical_pass(const uint8_t *src, size_t src_stride, size_t y0, size_t rowlen,
                          uint8_t *dst, size_t dst_h, size_t ksize, const int32_t *kk,
                          const int32_t *bounds, int32_t *acc) {
    const int32_t half = 1 << (NS_PRECISION_BITS - 1);
    for (size_t yy = 0; yy < dst_h; yy++) {
        const int32_t *k = kk + yy * ksize;
        const uint8_t *base = src + ((size_t)bounds[2 * yy] - y0) * src_stride;
        const int32_t n = bounds[2 * yy + 1];
        for (size_t i = 0; i < rowlen; i++) acc[i] = half;
        for (int32_t y = 0; y < n; y++) {
            const uint8_t *row = base + (size_t)y * src_stride;
            const int32_t ky = k[y];
            for (size_t i = 0; i < rowlen; i++) acc[i] += row[i] * ky;
        }
        uint8_t *out = dst + yy * rowlen;
        for (size_t i = 0; i < rowlen; i++) out[i] = clip8(acc[i]);
    }
}

ns_status ns_resize_u8c3(const uint8_t *src, size_t src_w, size_t src_h, size_t src_stride,
                         uint8_t *dst, size_t dst_w, size_t dst_h, ns_resize_scratch *s,
                         ns_error *err) {
    if (!src || !dst || !s) return ns_set_error(err, NS_ERR_INVALID, "resize: NULL buffer");
    if (src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0)
        return ns_set_error(err, NS_ERR_INVALID, "resize: sizes must be >= 1, got %zux%zu -> %zux%zu",
                            src_w, src_h, dst_w, dst_h);
    if (src_w > (size_t)INT32_MAX || src_h > (size_t)INT32_MAX || dst_w > NS_RESIZE_MAX_SIDE ||
        dst_h > NS_RESIZE_MAX_SIDE)
        return ns_set_error(err, NS_ERR_LIMIT, "resize: %zux%zu -> %zux%zu is too large", src_w,
                            src_h, dst_w, dst_h);
    if (src_stride / 3 < src_w)
        return ns_set_error(err, NS_ERR_INVALID, "resize: row stride %zu < 3 * width %zu",
                            src_stride, src_w);
    const size_t dst_rowlen = dst_w * 3;
    const int need_h = src_w != dst_w, need_v = src_h != dst_h;
    if (!need_h && !need_v) { /* Pillow copies the image */
        for (size_t y = 0; y < dst_h; y++) memcpy(dst + y * dst_rowlen, src + y * src_stride, dst_rowlen);
        return NS_OK;
    }
    /* Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as
     * many pixels as the width does; identity passes are skipped (they are exact copies). */
    const int64_t dh = (int64_t)src_h - (int64_t)dst_h, dw = (int64_t)src_w - (int64_t)dst_w;
    const int horizontal_first = !(dh > 0 && dh > dw * 2);
    size_t kx = 0, ky = 0;
    int32_t *kkx = NULL, *bx = NULL, *kky = NULL, *by = NULL;
    ns_status st;
    if (need_h && (st = compute_coeffs(src_w, dst_w, &s->coeffs_x, &kx, &kkx, &bx, err)) != NS_OK)
        return st;
    if (need_v && (st = compute_coeffs(src_h, dst_h, &s->coeffs_y, &ky, &kky, &by, err)) != NS_OK)
        return st;
    size_t acc_bytes;
    const size_t widest = (need_v && !horizontal_first) ? src_w : dst_w; /* rows of the vertical pass */
    if (ns_mul_overflow(widest, 3 * sizeof(int32_t), &acc_bytes))
        return ns_set_error(err, NS_ERR_LIMIT, "resize: rows too long");
    if (need_v && (st = ns_buf_reserve(&s->acc, acc_bytes, "the resize accumulators", err)) != NS_OK)
        return st;
    if (!need_v) {
        horizontal_pass(src, src_stride, dst_h, dst, dst_w, kx, kkx, bx);
        return NS_OK;
    }
    if (!need_h) {
        vertical_pass(src, src_stride, 0, dst_rowlen, dst, dst_h, ky, kky, by, (int32_t *)s->acc.data);
        return NS_OK;
    }
    size_t tmp_bytes;
    if (horizontal_first) {
        /* only the source rows the vertical pass reads */
        size_t y_first = (size_t)by[0];
        size_t y_last = (size_t)by[2 * (dst_h - 1)] + (size_t)by[2 * (dst_h - 1) + 1];
        if (y_last > src_h || y_last <= y_first) /* cannot happen: bounds are clipped to the input */
            return ns_set_error(err, NS_ERR_INVALID, "resize: internal row bounds error");
        size_t nrows = y_last - y_first;
        if (ns_mul_overflow(dst_rowlen, nrows, &tmp_bytes))
            return ns_set_error(err, NS_ERR_LIMIT, "resize: intermediate image too large");
        if ((st = ns_buf_reserve(&s->tmp, tmp_bytes, "the resize intermediate", err)) != NS_OK)
            return st;
        uint8_t *tmp = (uint8_t *)s->tmp.data;
        horizontal_pass(src + y_first * src_stride, src_stride, nrows, tmp, dst_w, kx, kkx, bx);
        vertical_pass(tmp, dst_rowlen, y_first, dst_rowlen, dst, dst_h, ky, kky, by,
                      (int32_t *)s->acc.data);
    } else {
        const size_t src_rowlen = src_w * 3;
        if (ns_mul_overflow(src_rowlen, dst_h, &tmp_bytes))
            return ns_set_error(err, NS_ERR_LIMIT, "resize: intermediate image too large");
        if ((st = ns_buf_reserve(&s->tmp, tmp_bytes, "the resize intermediate", err)) != NS_OK)
            return st;
        uint8_t *tmp = (uint8_t *)s->tmp.data;
        vertical_pass(src, src_stride, 0, src_rowlen, tmp, dst_h, ky, kky, by, (int32_t *)s->acc.data);
        horizontal_pass(tmp, src_rowlen, dst_h, dst, dst_w, kx, kkx, bx);
    }
    return NS_OK;
}
