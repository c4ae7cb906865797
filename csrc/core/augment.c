/* See augment.h. The formulas follow PyTorch's CPU grid sampler (aten/src/ATen/native/cpu/
 * GridSamplerKernel.cpp) term by term so that the float32 results agree to rounding:
 * unnormalised coordinate (g + 1) * size / 2 - 0.5, clipped to [0, size - 1] (border padding),
 * bilinear weights from the floor, and the four taps summed nw, ne, sw, se.
 *
 * Layout for speed, still portable C: each source image is widened once to float RGBx (4 floats
 * a pixel, x = 0), so that a tap is one 4-float vector (GCC/Clang vector extension: SSE on
 * x86-64, NEON on AArch64, plain scalar code elsewhere, no intrinsics); the resampled image is
 * kept RGBx in a scratch buffer, summed, then jittered, normalised and packed to RGB. */
#include "augment.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v4f splat(float x) {
    return (v4f){x, x, x, x};
}

/* Scratch floats ns_augment_u8c3 needs for an h x w image (source and result, RGBx each). */
size_t ns_augment_scratch_floats(size_t h, size_t w) {
    return h * w * 8 + w * 3;
}

/* x clamped to [0, hi]; NaN -> 0 (so that the index below is always in range). */
static inline float clip_coord(float x, float hi) {
    return x > 0.0f ? (x < hi ? x : hi) : 0.0f;
}

/* Pixel centres in [-1, 1] along a side of `size` pixels (affine_grid, align_corners=False). */
static inline float base_coord(int i, int size) {
    return (float)(2 * i + 1) / (float)size - 1.0f;
}

/* uint8 RGB -> float RGBx (x = 0). */
static void widen(const uint8_t *src, size_t pixels, float *rgbx) {
    for (size_t k = 0; k < pixels; k++) {
        for (int ch = 0; ch < 3; ch++) rgbx[k * 4 + ch] = (float)src[k * 3 + ch];
        rgbx[k * 4 + 3] = 0.0f;
    }
}

/* One output pixel: the bilinear sample of the RGBx image (h x w) at input coordinates
 * (ix, iy), already clipped to the image. */
static inline v4f sample(const float *img, int h, int w, float ix, float iy) {
    /* ix, iy >= 0: truncation is the floor (and no libm call without SSE4.1) */
    int x0 = (int)ix, y0 = (int)iy;
    /* at the last column/row the far tap has weight 0 (border clipping): reuse the near one */
    int dx = x0 + 1 < w ? 4 : 0, dy = y0 + 1 < h ? w * 4 : 0;
    float we = ix - (float)x0, ww = 1.0f - we, ws = iy - (float)y0, wn = 1.0f - ws;
    const float *a = img + (y0 * w + x0) * 4, *c = a + dy;
    return load4(a) * splat(wn * ww) + load4(a + dx) * splat(wn * we) + load4(c) * splat(ws * ww) +
           load4(c + dx) * splat(ws * we);
}

/* Row i's input coordinates, clipped: ix[j], iy[j] for the w output pixels (a loop the compiler
 * vectorises; xb holds the w base x coordinates). */
static void row_coords(const float *xb, int i, int h, int w, const float t[6], float *ix,
                       float *iy) {
    float yb = base_coord(i, h), sx = (float)w * 0.5f, sy = (float)h * 0.5f;
    float xmax = (float)(w - 1), ymax = (float)(h - 1);
    for (int j = 0; j < w; j++) {
        float gx = xb[j] * t[0] + yb * t[1] + t[2], gy = xb[j] * t[3] + yb * t[4] + t[5];
        ix[j] = clip_coord((gx + 1.0f) * sx - 0.5f, xmax);
        iy[j] = clip_coord((gy + 1.0f) * sy - 0.5f, ymax);
    }
}

/* The RGBx image resampled through t (0..255) into out (RGBx); returns the sum of its values.
 * coords: 3 * w floats of scratch. */
static double resample(const float *img, int h, int w, const float t[6], float *coords,
                       float *out) {
    float *xb = coords, *ix = coords + w, *iy = coords + 2 * w;
    for (int j = 0; j < w; j++) xb[j] = base_coord(j, w);
    double total = 0.0;
    for (int i = 0; i < h; i++) {
        float *row = out + (size_t)i * (size_t)w * 4;
        row_coords(xb, i, h, w, t, ix, iy);
        v4f acc = splat(0.0f);
        for (int j = 0; j < w; j++) {
            v4f v = sample(img, h, w, ix[j], iy[j]);
            memcpy(row + j * 4, &v, sizeof v);
            acc += v;
        }
        total += (double)acc[0] + (double)acc[1] + (double)acc[2]; /* acc[3] sums the zeros */
    }
    return total;
}

/* Jitter, clamp and normalise the resampled RGBx image into dst (RGB). */
static void jitter_normalise(const float *img, size_t pixels, float mu, float bright,
                             float contrast, v4f scale, v4f shift, float *dst) {
    v4f gain = splat(contrast / 255.0f), offset = splat(mu * ((bright - contrast) / 255.0f));
    v4f zero = splat(0.0f), one = splat(1.0f);
    for (size_t k = 0; k < pixels; k++) {
        v4f y = load4(img + k * 4) * gain + offset;
        v4i pos = y > zero, low = y < one; /* all-ones lanes where true (NaN: false) */
        y = (v4f)(((v4i)y & pos & low) | ((v4i)one & ~low & pos));
        y = y * scale + shift;
        for (int ch = 0; ch < 3; ch++) dst[k * 3 + ch] = y[ch];
    }
}

void ns_augment_u8c3(const uint8_t *src, size_t n, size_t h, size_t w, const ns_augment_params *p,
                     float *scratch, float *dst) {
    size_t pixels = h * w, values = pixels * 3;
    v4f scale = splat(0.0f), shift = splat(0.0f);
    for (int ch = 0; ch < 3; ch++) {
        scale[ch] = 1.0f / p->std[ch];
        shift[ch] = -p->mean[ch] / p->std[ch];
    }
    float *img = scratch, *res = scratch + pixels * 4;
    for (size_t i = 0; i < n; i++) {
        widen(src + i * values, pixels, img);
        double sum = resample(img, (int)h, (int)w, p->theta + i * 6, res + pixels * 4, res);
        float mu = (float)(sum / (double)values);
        jitter_normalise(res, pixels, mu, p->bright[i], p->contrast[i], scale, shift,
                         dst + i * values);
    }
}
