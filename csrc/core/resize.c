#include "resize.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
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
    if (ksize > NS_RESIZE_MAX_TAPS)
        return ns_set_error(err, NS_ERR_LIMIT,
                            "resize %zu -> %zu: downscale factor above the supported %d", in_size,
                            out_size, (NS_RESIZE_MAX_TAPS - 1) / 2);
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

/* Coefficients for in_size -> out_size on one axis (0 = x, 1 = y), from the scratch's cache
 * when the same pair was computed before (images of a split share a few sizes). */
static ns_status get_coeffs(ns_resize_scratch *s, int axis, size_t in_size, size_t out_size,
                            size_t *ksize, int32_t **k, int32_t **bounds, ns_error *err) {
    if (s->use_cache && !s->cache) s->cache = calloc(NS_RESIZE_CACHE_SLOTS, sizeof *s->cache);
    if (!s->cache) /* one-off resize (or no memory for a cache): compute per axis */
        return compute_coeffs(in_size, out_size, axis ? &s->coeffs_y : &s->coeffs_x, ksize, k,
                              bounds, err);
    /* x and y use disjoint halves, so the two tables of one image never share a slot */
    size_t half_slots = NS_RESIZE_CACHE_SLOTS / 2;
    ns_coeff_entry *e = &s->cache[(size_t)axis * half_slots + in_size % half_slots];
    if (e->buf.data && e->in_size == in_size && e->out_size == out_size) {
        *ksize = e->ksize;
        *k = (int32_t *)e->buf.data;
        *bounds = *k + out_size * e->ksize;
        return NS_OK;
    }
    e->in_size = e->out_size = 0; /* invalid until the computation succeeds */
    ns_status st = compute_coeffs(in_size, out_size, &e->buf, ksize, k, bounds, err);
    if (st != NS_OK) return st;
    e->in_size = in_size;
    e->out_size = out_size;
    e->ksize = *ksize;
    return NS_OK;
}

void ns_resize_scratch_free(ns_resize_scratch *s) {
    if (s->cache) {
        for (size_t i = 0; i < NS_RESIZE_CACHE_SLOTS; i++) ns_buf_free(&s->cache[i].buf);
        free(s->cache);
        s->cache = NULL;
    }
    ns_buf_free(&s->coeffs_x);
    ns_buf_free(&s->coeffs_y);
    ns_buf_free(&s->tmp);
    ns_buf_free(&s->tr_in);
    ns_buf_free(&s->tr_out);
}

/* On x86-64 the accumulation loop is also compiled for AVX2 (8 int32 lanes with a native
 * 32-bit multiply) and picked at load time; AArch64's baseline NEON already has both. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones) && defined(__gnu_linux__)
#define NS_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef NS_CLONES
#define NS_CLONES
#endif

/* The core of both passes. src holds lines y0, y0+1, ... (src_stride bytes apart, rowlen bytes
 * used); output line j is the weighted sum of lines bounds[2j] .. bounds[2j] + bounds[2j+1] - 1
 * with Pillow's rounding and clipping, written to dst (rowlen bytes per line, packed). Every
 * output element uses the same weights, so the inner loops vectorise. */
NS_CLONES
static void resample_lines(const uint8_t *src, size_t src_stride, size_t y0, size_t rowlen,
                           uint8_t *dst, size_t dst_lines, size_t ksize, const int32_t *kk,
                           const int32_t *bounds) {
    /* BILINEAR weights are >= 0 and sum to (1 << 22) + at most taps/2, so the sums are
     * non-negative and below 256 << 22 + 2^21: the shift needs no lower clip, and the min()
     * keeps Pillow's upper clip for safety. Blocks keep their accumulators in registers. */
    enum { BLOCK = 32, SMALL = 8 };
    const uint32_t half = 1u << (NS_PRECISION_BITS - 1);
    for (size_t j = 0; j < dst_lines; j++) {
        const int32_t *k = kk + j * ksize;
        const uint8_t *base = src + ((size_t)bounds[2 * j] - y0) * src_stride;
        const int32_t n = bounds[2 * j + 1];
        uint8_t *out = dst + j * rowlen;
        size_t i = 0;
        for (; i + BLOCK <= rowlen; i += BLOCK) {
            uint32_t acc[BLOCK];
            for (int e = 0; e < BLOCK; e++) acc[e] = half;
            for (int32_t t = 0; t < n; t++) {
                const uint8_t *r = base + (size_t)t * src_stride + i;
                const uint32_t kt = (uint32_t)k[t];
                for (int e = 0; e < BLOCK; e++) acc[e] += r[e] * kt;
            }
            for (int e = 0; e < BLOCK; e++) {
                uint32_t v = acc[e] >> NS_PRECISION_BITS;
                out[i + e] = (uint8_t)(v < 255 ? v : 255);
            }
        }
        for (; i + SMALL <= rowlen; i += SMALL) {
            uint32_t acc[SMALL];
            for (int e = 0; e < SMALL; e++) acc[e] = half;
            for (int32_t t = 0; t < n; t++) {
                const uint8_t *r = base + (size_t)t * src_stride + i;
                const uint32_t kt = (uint32_t)k[t];
                for (int e = 0; e < SMALL; e++) acc[e] += r[e] * kt;
            }
            for (int e = 0; e < SMALL; e++) {
                uint32_t v = acc[e] >> NS_PRECISION_BITS;
                out[i + e] = (uint8_t)(v < 255 ? v : 255);
            }
        }
        for (; i < rowlen; i++) {
            int32_t a = (int32_t)half;
            for (int32_t t = 0; t < n; t++) a += base[(size_t)t * src_stride + i] * k[t];
            out[i] = clip8(a);
        }
    }
}

/* Transposing RGB images: dst[x][y] = src[y][x] for pixels, where src has h rows of w pixels
 * (src_stride bytes apart) and dst has w rows of h pixels (h*3 bytes each). */

/* Plain copies of the pixels in rows [y0, y1) x columns [x0, x1): edges of the SIMD versions. */
static void transpose_rgb_region(const uint8_t *src, size_t src_stride, size_t h, uint8_t *dst,
                                 size_t y0, size_t y1, size_t x0, size_t x1) {
    for (size_t y = y0; y < y1; y++) {
        const uint8_t *s = src + y * src_stride;
        for (size_t x = x0; x < x1; x++) {
            uint8_t *d = dst + x * h * 3 + 3 * y;
            d[0] = s[3 * x];
            d[1] = s[3 * x + 1];
            d[2] = s[3 * x + 2];
        }
    }
}

/* Portable version: pixels move as 4-byte words (the 4th byte is
 * rewritten by the next pixel) except in the last column/row, so nothing outside either image
 * is read or written. Blocked for cache locality. */
static void transpose_rgb_generic(const uint8_t *src, size_t src_stride, size_t h, size_t w,
                                  uint8_t *dst) {
    const size_t B = 16;
    const size_t dst_stride = h * 3;
    for (size_t y0 = 0; y0 < h; y0 += B) {
        const size_t y1 = y0 + B < h ? y0 + B : h;
        /* rows whose 4-byte store stays inside the dst line: y < h - 1 */
        const size_t y1w = y1 < h ? y1 : h - 1;
        for (size_t x0 = 0; x0 < w; x0 += B) {
            const size_t x1 = x0 + B < w ? x0 + B : w;
            for (size_t x = x0; x < x1; x++) {
                uint8_t *d = dst + x * dst_stride;
                const uint8_t *s = src + x * 3;
                size_t y = y0;
                if (x + 1 < w) { /* a 4-byte load stays inside the source row */
                    for (; y < y1w; y++) {
                        uint32_t v;
                        memcpy(&v, s + y * src_stride, 4);
                        memcpy(d + 3 * y, &v, 4);
                    }
                }
                for (; y < y1; y++) {
                    d[3 * y + 0] = s[y * src_stride + 0];
                    d[3 * y + 1] = s[y * src_stride + 1];
                    d[3 * y + 2] = s[y * src_stride + 2];
                }
            }
        }
    }
}

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define NS_TRANSPOSE_SIMD "neon"

/* 8x8 byte matrix transpose in registers (rows in, columns out). */
static inline void transpose8x8(uint8x8_t r[8]) {
    uint8x8x2_t a0 = vtrn_u8(r[0], r[1]), a1 = vtrn_u8(r[2], r[3]);
    uint8x8x2_t a2 = vtrn_u8(r[4], r[5]), a3 = vtrn_u8(r[6], r[7]);
    uint16x4x2_t b0 = vtrn_u16(vreinterpret_u16_u8(a0.val[0]), vreinterpret_u16_u8(a1.val[0]));
    uint16x4x2_t b1 = vtrn_u16(vreinterpret_u16_u8(a0.val[1]), vreinterpret_u16_u8(a1.val[1]));
    uint16x4x2_t b2 = vtrn_u16(vreinterpret_u16_u8(a2.val[0]), vreinterpret_u16_u8(a3.val[0]));
    uint16x4x2_t b3 = vtrn_u16(vreinterpret_u16_u8(a2.val[1]), vreinterpret_u16_u8(a3.val[1]));
    uint32x2x2_t c0 = vtrn_u32(vreinterpret_u32_u16(b0.val[0]), vreinterpret_u32_u16(b2.val[0]));
    uint32x2x2_t c1 = vtrn_u32(vreinterpret_u32_u16(b1.val[0]), vreinterpret_u32_u16(b3.val[0]));
    uint32x2x2_t c2 = vtrn_u32(vreinterpret_u32_u16(b0.val[1]), vreinterpret_u32_u16(b2.val[1]));
    uint32x2x2_t c3 = vtrn_u32(vreinterpret_u32_u16(b1.val[1]), vreinterpret_u32_u16(b3.val[1]));
    r[0] = vreinterpret_u8_u32(c0.val[0]);
    r[1] = vreinterpret_u8_u32(c1.val[0]);
    r[2] = vreinterpret_u8_u32(c2.val[0]);
    r[3] = vreinterpret_u8_u32(c3.val[0]);
    r[4] = vreinterpret_u8_u32(c0.val[1]);
    r[5] = vreinterpret_u8_u32(c1.val[1]);
    r[6] = vreinterpret_u8_u32(c2.val[1]);
    r[7] = vreinterpret_u8_u32(c3.val[1]);
}

/* 8x8-pixel blocks: vld3 splits 8 pixels of a row into R, G, B; each plane is transposed;
 * vst3 writes 8 pixels of a column. Loads and stores cover exactly the block. */
static void transpose_rgb_neon(const uint8_t *src, size_t src_stride, size_t h, size_t w,
                               uint8_t *dst) {
    const size_t ds = h * 3;
    size_t y = 0;
    for (; y + 8 <= h; y += 8) {
        size_t x = 0;
        for (; x + 8 <= w; x += 8) {
            uint8x8_t r[8], g[8], b[8];
            for (int i = 0; i < 8; i++) {
                uint8x8x3_t p = vld3_u8(src + (y + (size_t)i) * src_stride + 3 * x);
                r[i] = p.val[0];
                g[i] = p.val[1];
                b[i] = p.val[2];
            }
            transpose8x8(r);
            transpose8x8(g);
            transpose8x8(b);
            for (int j = 0; j < 8; j++) {
                uint8x8x3_t q = {{r[j], g[j], b[j]}};
                vst3_u8(dst + (x + (size_t)j) * ds + 3 * y, q);
            }
        }
        transpose_rgb_region(src, src_stride, h, dst, y, y + 8, x, w);
    }
    transpose_rgb_region(src, src_stride, h, dst, y, h, 0, w);
}

static int simd_available(void) {
    return 1;
}
#define transpose_rgb_simd transpose_rgb_neon

#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define NS_TRANSPOSE_SIMD  "ssse3"

/* 4x4-pixel blocks: pshufb widens 4 pixels of a row to 4 dwords, a 4x4 dword transpose makes
 * columns, pshufb packs each back to 12 bytes, stored as 8 + 4 bytes. The 16-byte loads need
 * x + 6 <= w so that they stay inside the row. */
__attribute__((target("ssse3"))) static void
transpose_rgb_ssse3(const uint8_t *src, size_t src_stride, size_t h, size_t w, uint8_t *dst) {
    const size_t ds = h * 3;
    const __m128i expand = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    const __m128i pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    size_t y = 0;
    for (; y + 4 <= h; y += 4) {
        const uint8_t *s = src + y * src_stride;
        size_t x = 0;
        for (; x + 6 <= w; x += 4) {
            __m128i r0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + 3 * x)), expand);
            __m128i r1 = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(s + src_stride + 3 * x)), expand);
            __m128i r2 = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(s + 2 * src_stride + 3 * x)), expand);
            __m128i r3 = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(s + 3 * src_stride + 3 * x)), expand);
            __m128i t0 = _mm_unpacklo_epi32(r0, r1), t1 = _mm_unpackhi_epi32(r0, r1);
            __m128i t2 = _mm_unpacklo_epi32(r2, r3), t3 = _mm_unpackhi_epi32(r2, r3);
            __m128i col[4] = {_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2),
                              _mm_unpacklo_epi64(t1, t3), _mm_unpackhi_epi64(t1, t3)};
            for (int j = 0; j < 4; j++) {
                __m128i v = _mm_shuffle_epi8(col[j], pack);
                uint8_t *d = dst + (x + (size_t)j) * ds + 3 * y;
                _mm_storel_epi64((__m128i *)d, v);
                uint32_t tail = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(v, 8));
                memcpy(d + 8, &tail, 4);
            }
        }
        transpose_rgb_region(src, src_stride, h, dst, y, y + 4, x, w);
    }
    transpose_rgb_region(src, src_stride, h, dst, y, h, 0, w);
}

static int simd_available(void) {
    return __builtin_cpu_supports("ssse3");
}
#define transpose_rgb_simd transpose_rgb_ssse3

#else
#define NS_TRANSPOSE_SIMD  "none"
static int simd_available(void) {
    return 0;
}
#define transpose_rgb_simd transpose_rgb_generic
#endif

/* The SIMD transpose unless the CPU lacks it or NEONSIGN_KERNEL=ref asks for the portable code
 * (as for the engine's kernels); decided once per process. */
static int use_simd_transpose(void) {
    static atomic_int use_simd = -1;
    int v = atomic_load_explicit(&use_simd, memory_order_relaxed);
    if (v < 0) {
        const char *k = getenv("NEONSIGN_KERNEL");
        v = simd_available() && !(k && strcmp(k, "ref") == 0);
        atomic_store_explicit(&use_simd, v, memory_order_relaxed);
    }
    return v;
}

const char *ns_resize_simd_name(void) {
    return use_simd_transpose() ? NS_TRANSPOSE_SIMD : "none";
}

static void transpose_rgb(const uint8_t *src, size_t src_stride, size_t h, size_t w, uint8_t *dst) {
    if (use_simd_transpose())
        transpose_rgb_simd(src, src_stride, h, w, dst);
    else
        transpose_rgb_generic(src, src_stride, h, w, dst);
}

/* Horizontal pass: nrows rows of src_w pixels (src_stride bytes apart) -> nrows rows of dst_w
 * pixels in dst (packed). Done as transpose, resample along lines, transpose back, so that the
 * arithmetic runs in the vectorised resample_lines (integer sums: identical results). */
static ns_status horizontal_pass(const uint8_t *src, size_t src_stride, size_t nrows, size_t src_w,
                                 uint8_t *dst, size_t dst_w, size_t ksize, const int32_t *kk,
                                 const int32_t *bounds, ns_resize_scratch *s, ns_error *err) {
    size_t line, t_bytes, u_bytes;
    if (ns_mul_overflow(nrows, 3, &line) || ns_mul_overflow(line, src_w, &t_bytes) ||
        ns_mul_overflow(line, dst_w, &u_bytes))
        return ns_set_error(err, NS_ERR_LIMIT, "resize: intermediate image too large");
    ns_status st;
    if ((st = ns_buf_reserve(&s->tr_in, t_bytes, "the resize transpose", err)) != NS_OK) return st;
    if ((st = ns_buf_reserve(&s->tr_out, u_bytes, "the resize transpose", err)) != NS_OK) return st;
    uint8_t *t = s->tr_in.data, *u = s->tr_out.data;
    transpose_rgb(src, src_stride, nrows, src_w, t);
    resample_lines(t, line, 0, line, u, dst_w, ksize, kk, bounds);
    transpose_rgb(u, line, dst_w, nrows, dst);
    return NS_OK;
}

ns_status ns_resize_u8c3(const uint8_t *src, size_t src_w, size_t src_h, size_t src_stride,
                         uint8_t *dst, size_t dst_w, size_t dst_h, ns_resize_scratch *s,
                         ns_error *err) {
    if (!src || !dst || !s) return ns_set_error(err, NS_ERR_INVALID, "resize: NULL buffer");
    if (src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0)
        return ns_set_error(err, NS_ERR_INVALID,
                            "resize: sizes must be >= 1, got %zux%zu -> %zux%zu", src_w, src_h,
                            dst_w, dst_h);
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
        for (size_t y = 0; y < dst_h; y++)
            memcpy(dst + y * dst_rowlen, src + y * src_stride, dst_rowlen);
        return NS_OK;
    }
    /* Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as
     * many pixels as the width does; identity passes are skipped (they are exact copies). */
    const int64_t dh = (int64_t)src_h - (int64_t)dst_h, dw = (int64_t)src_w - (int64_t)dst_w;
    const int horizontal_first = !(dh > 0 && dh > dw * 2);
    size_t kx = 0, ky = 0;
    int32_t *kkx = NULL, *bx = NULL, *kky = NULL, *by = NULL;
    ns_status st;
    if (need_h && (st = get_coeffs(s, 0, src_w, dst_w, &kx, &kkx, &bx, err)) != NS_OK) return st;
    if (need_v && (st = get_coeffs(s, 1, src_h, dst_h, &ky, &kky, &by, err)) != NS_OK) return st;
    if (!need_v)
        return horizontal_pass(src, src_stride, dst_h, src_w, dst, dst_w, kx, kkx, bx, s, err);
    if (!need_h) {
        resample_lines(src, src_stride, 0, dst_rowlen, dst, dst_h, ky, kky, by);
        return NS_OK;
    }
    size_t tmp_bytes;
    if (horizontal_first) {
        /* only the source rows the vertical pass reads */
        size_t y_first = (size_t)by[0];
        size_t y_last = (size_t)by[2 * (dst_h - 1)] + (size_t)by[2 * (dst_h - 1) + 1];
        if (y_last > src_h ||
            y_last <= y_first) /* cannot happen: bounds are clipped to the input */
            return ns_set_error(err, NS_ERR_INVALID, "resize: internal row bounds error");
        size_t nrows = y_last - y_first;
        if (ns_mul_overflow(dst_rowlen, nrows, &tmp_bytes))
            return ns_set_error(err, NS_ERR_LIMIT, "resize: intermediate image too large");
        if ((st = ns_buf_reserve(&s->tmp, tmp_bytes, "the resize intermediate", err)) != NS_OK)
            return st;
        uint8_t *tmp = (uint8_t *)s->tmp.data;
        st = horizontal_pass(src + y_first * src_stride, src_stride, nrows, src_w, tmp, dst_w, kx,
                             kkx, bx, s, err);
        if (st != NS_OK) return st;
        resample_lines(tmp, dst_rowlen, y_first, dst_rowlen, dst, dst_h, ky, kky, by);
    } else {
        const size_t src_rowlen = src_w * 3;
        if (ns_mul_overflow(src_rowlen, dst_h, &tmp_bytes))
            return ns_set_error(err, NS_ERR_LIMIT, "resize: intermediate image too large");
        if ((st = ns_buf_reserve(&s->tmp, tmp_bytes, "the resize intermediate", err)) != NS_OK)
            return st;
        uint8_t *tmp = (uint8_t *)s->tmp.data;
        resample_lines(src, src_stride, 0, src_rowlen, tmp, dst_h, ky, kky, by);
        return horizontal_pass(tmp, src_rowlen, dst_h, src_w, dst, dst_w, kx, kkx, bx, s, err);
    }
    return NS_OK;
}
