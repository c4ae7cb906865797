/* Separable antialiased resampling of 8-bit RGB images with Pillow's BILINEAR semantics.
 *
 * Reproduces Pillow's src/libImaging/Resample.c for 8-bit images: per output position a
 * triangle filter whose support grows with the downscale factor (support = max(scale, 1)),
 * weights normalised to sum 1 then converted to fixed point with 22 fractional bits, a
 * horizontal pass (rounded and clipped to 8 bits) over the rows the vertical pass needs, then
 * the vertical pass -- or, as Pillow >= 13 does when the height shrinks by more than twice as
 * many pixels as the width, the vertical pass first. Output equals Pillow 13's
 * Image.resize((w, h), Image.BILINEAR) on the same pixels (older Pillow, always horizontal
 * first, can differ by 1 in those cases); a crop (ROI) is resampling a sub-image, which equals
 * Pillow's crop-then-resize.
 */
#ifndef NS_RESIZE_H
#define NS_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"

typedef struct ns_coeff_entry {
    size_t in_size, out_size, ksize;
    ns_buf buf;
} ns_coeff_entry;

#define NS_RESIZE_CACHE_SLOTS 512
/* Largest filter (taps per output); bounds the downscale factor to (taps - 1) / 2 = 8191 and
 * keeps the 32-bit sums exact. */
#define NS_RESIZE_MAX_TAPS 16383

/* Reused memory for ns_resize_u8c3 (one per thread). Zero-initialise; free with
 * ns_resize_scratch_free. */
typedef struct ns_resize_scratch {
    ns_buf coeffs_x, coeffs_y; /* int32 weights then int32 (first, count) bounds */
    ns_buf tmp;                /* horizontally resampled rows, uint8 */
    ns_buf tr_in, tr_out;      /* transposed lines for the horizontal pass */
    int use_cache;             /* set to 1 to keep coefficient tables across calls (loaders) */
    ns_coeff_entry *cache;     /* NS_RESIZE_CACHE_SLOTS tables, allocated on first use */
} ns_resize_scratch;

void ns_resize_scratch_free(ns_resize_scratch *s);

/* Largest output side accepted (also bounded by memory checks). */
#define NS_RESIZE_MAX_SIDE ((size_t)1 << 24)

/* Resample src (src_h rows of src_w RGB pixels, rows src_stride bytes apart) to dst (dst_h rows
 * of dst_w RGB pixels, tightly packed: dst_w*3 bytes per row). All sizes must be >= 1. */
ns_status ns_resize_u8c3(const uint8_t *src, size_t src_w, size_t src_h, size_t src_stride,
                         uint8_t *dst, size_t dst_w, size_t dst_h, ns_resize_scratch *s,
                         ns_error *err);

/* The SIMD used for transposing ("neon", "ssse3", or "none" when absent or NEONSIGN_KERNEL=ref);
 * the arithmetic is plain C, auto-vectorised (plus an AVX2 clone on x86-64). */
const char *ns_resize_simd_name(void);

#endif /* NS_RESIZE_H */
