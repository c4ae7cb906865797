/* The training augmentation of a uint8 RGB batch in one pass per image (issue 18).
 *
 * For each image: a bilinear resampling through a 2x3 affine map with exactly the semantics of
 * PyTorch's F.affine_grid(theta, align_corners=False) + F.grid_sample(mode="bilinear",
 * padding_mode="border", align_corners=False) on 0..255 values (in float32), the mean of the
 * resampled image, the brightness/contrast jitter y * c / 255 + mean * (b - c) / 255 clamped to
 * [0, 1], and the per-channel normalisation (y - mean[ch]) / std[ch], written as float32 NHWC
 * (a channels_last NCHW tensor to PyTorch). Portable C with GCC/Clang 4-float vector types (SSE
 * on x86-64, NEON on AArch64; no intrinsics), on the calling thread; PyTorch's path is its
 * reference (tests/test_train_step.py).
 */
#ifndef NS_AUGMENT_H
#define NS_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

/* What each image of a batch of n is transformed by. */
typedef struct ns_augment_params {
    const float *theta;    /* n x (2, 3) row-major: output -> input coordinates in [-1, 1] */
    const float *bright;   /* n brightness factors */
    const float *contrast; /* n contrast factors */
    float mean[3], std[3]; /* normalisation per channel (std non-zero) */
} ns_augment_params;

/* Floats of scratch memory ns_augment_u8c3 needs for h x w images. */
size_t ns_augment_scratch_floats(size_t h, size_t w);

/* src: n images of h x w RGB uint8 pixels, packed (n, h, w, 3); dst: float32 (n, h, w, 3);
 * scratch: ns_augment_scratch_floats(h, w) floats. h, w >= 1 and h * w <= 2^28. Non-finite
 * theta entries sample the border (coordinates clamped; NaN -> 0). */
void ns_augment_u8c3(const uint8_t *src, size_t n, size_t h, size_t w, const ns_augment_params *p,
                     float *scratch, float *dst);

#endif /* NS_AUGMENT_H */
