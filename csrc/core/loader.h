/* Whole splits in one call: read + decode + crop + resize + normalise a list of PPM files
 * straight into one preallocated array, on the shared thread pool.
 *
 * A pool task is a run of up to 64 consecutive images, with per-thread scratch (file buffer,
 * decode buffer, resize buffers) reused across images. Each image writes only its own output
 * slot, so the output is identical for any thread count. 8-bit P6 files are resampled in place from the file buffer.
 * Per image, one pass: open, fstat (non-regular files and files over the limit are refused
 * before reading), read, decode, crop, resize, normalise into the caller's array; optionally
 * the uint8 rows are fed to a sha256 in row order as they complete (the split checksum).
 */
#ifndef NS_LOADER_H
#define NS_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "pool.h"
#include "sha256.h"

typedef enum ns_layout {
    NS_LAYOUT_U8_NHWC = 0,  /* uint8 (N, H, W, 3) */
    NS_LAYOUT_F32_NCHW = 1, /* float32 (N, 3, H, W), ((v / 255) - mean[c]) / std[c] */
} ns_layout;

/* Per-channel lookup table: lut[c*256 + v] = ((float)v / 255 - mean[c]) / std[c] in float32,
 * the same operations (and so the same bits) as torchvision's ToTensor + Normalize. */
void ns_normalize_lut(const float mean[3], const float std[3], float lut[3 * 256]);

/* One image: uint8 HxWx3 (tightly packed) -> float32 3xHxW through lut. */
void ns_normalize_hwc_to_chw(const uint8_t *src, size_t h, size_t w, const float *lut, float *dst);

typedef struct ns_load_request {
    size_t count;
    const char *const *paths; /* count NUL-terminated paths */
    const int64_t *rois;      /* NULL or count*4: x1, y1, x2, y2 inclusive; x1 < 0 = whole image */
    size_t out_h, out_w;
    ns_layout layout;
    float mean[3], std[3]; /* used for NS_LAYOUT_F32_NCHW; std must be non-zero */
    size_t max_pixels;     /* per decoded image */
    size_t max_file_bytes; /* per file */
    int skip_bad;          /* 0: stop at the first failure (lowest index) */
    int max_threads;       /* <= 0: the whole pool */
    void *out;             /* count * out_h * out_w * 3 elements of the layout's type */
    uint8_t *out_u8;       /* NULL, or for NS_LAYOUT_F32_NCHW count * out_h * out_w * 3 bytes
                            * that receive the uint8 (N, H, W, 3) resize the float32 output is
                            * normalised from (for a checksum over the decode, in the same pass) */
    uint8_t *ok;           /* count flags, set to 1 for images that loaded */
    char **messages;       /* NULL or count pointers set to NULL; failures get a malloc'd
                                 * message (free with free()) when skip_bad */
    ns_sha256 *digest;     /* NULL, or a hash (already fed any prefix) that receives the uint8
                            * (N, H, W, 3) rows -- out_u8, or out for NS_LAYOUT_U8_NHWC -- in
                            * row order, failed (zero) rows included, hashed by the worker
                            * threads as rows complete; it requires that uint8 array. Its state
                            * is unspecified when the call fails. */
} ns_load_request;

/* Load every image of req. Without skip_bad returns the error of the lowest-index failing image
 * (its message names the path). With skip_bad returns NS_OK unless memory for the bookkeeping
 * itself runs out; failed images have ok[i] == 0, zeroed output and messages[i] set. */
ns_status ns_load_images(ns_pool *pool, const ns_load_request *req, ns_error *err);

#endif /* NS_LOADER_H */
