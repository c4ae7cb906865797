/* libFuzzer target: the whole-split loader (read + decode + crop + resize + normalise) on a
 * fuzzed file with a fuzzed ROI and output size.
 *
 * sources: common.c pool.c buf.c fileio.c ppm.c resize.c sha256.c loader.c
 *
 * Input: flags byte (bit 0: float32 NCHW else uint8 NHWC; bit 1: use the ROI; bit 2: skip_bad;
 * bit 3: with float32, also the uint8 side output, exact-size, checked against the floats;
 * bit 4: the in-order digest, checked against one sha256 of the uint8 rows),
 * out_h and out_w bytes (+1), four little-endian int16 ROI corners, then the file contents,
 * written to a temporary file that the loader reads twice (two images, the second with the
 * whole image). The output is an exact-size allocation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"

static char path[64];

static void remove_file(void) {
    unlink(path);
}

static int16_t le16(const uint8_t *p) {
    return (int16_t)(uint16_t)(p[0] | (p[1] << 8));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 11) return 0;
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/ns_fuzz_loader_%ld.ppm", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size > 11 && fwrite(data + 11, 1, size - 11, f) != size - 11) abort();
    fclose(f);

    const int f32 = data[0] & 1, use_roi = (data[0] >> 1) & 1, skip_bad = (data[0] >> 2) & 1;
    ns_load_request req;
    memset(&req, 0, sizeof req);
    const char *paths[2] = {path, path};
    int64_t rois[8] = {
        le16(data + 3), le16(data + 5), le16(data + 7), le16(data + 9), -1, -1, -1, -1};
    char *messages[2] = {NULL, NULL};
    uint8_t ok[2] = {0, 0};
    req.count = 2;
    req.paths = paths;
    req.rois = use_roi ? rois : NULL;
    req.out_h = (size_t)data[1] % 64 + 1;
    req.out_w = (size_t)data[2] % 64 + 1;
    req.layout = f32 ? NS_LAYOUT_F32_NCHW : NS_LAYOUT_U8_NHWC;
    for (int c = 0; c < 3; c++) req.mean[c] = 0.5f, req.std[c] = 0.5f;
    req.max_pixels = (size_t)1 << 20;
    req.max_file_bytes = (size_t)1 << 22;
    req.skip_bad = skip_bad;
    req.max_threads = 1;
    req.ok = ok;
    req.messages = messages;
    size_t bytes = 2 * req.out_h * req.out_w * 3 * (f32 ? sizeof(float) : 1);
    req.out = malloc(bytes);
    if (!req.out) return 0;
    const size_t plane = req.out_h * req.out_w * 3;
    if (f32 && (data[0] >> 3) & 1 && !(req.out_u8 = malloc(2 * plane))) abort();
    ns_sha256 digest;
    ns_sha256_init(&digest);
    ns_sha256_update(&digest, "prefix", 6);
    if ((data[0] >> 4) & 1) req.digest = &digest;
    const int digest_refused = req.digest && f32 && !req.out_u8; /* no uint8 rows to hash */
    ns_error err;
    ns_status st = ns_load_images(NULL, &req, &err);
    if (digest_refused != (st == NS_ERR_INVALID)) abort();
    if (st != NS_OK && ((skip_bad && !digest_refused) || err.msg[0] == '\0')) abort();
    if (req.digest && st == NS_OK) { /* the rows, hashed in order: one sha256 of them */
        ns_sha256 once;
        uint8_t a[32], b[32];
        ns_sha256_init(&once);
        ns_sha256_update(&once, "prefix", 6);
        ns_sha256_update(&once, f32 ? (const void *)req.out_u8 : req.out, 2 * plane);
        ns_sha256_final(&once, a);
        ns_sha256_final(&digest, b);
        if (memcmp(a, b, 32) != 0) abort();
    }
    if (req.out_u8 && st == NS_OK) { /* loaded floats are the side output, normalised */
        float lut[3 * 256];
        ns_normalize_lut(req.mean, req.std, lut);
        const float *out = req.out;
        for (size_t i = 0; i < 2; i++)
            for (size_t p = 0; ok[i] && p < plane / 3; p++)
                for (size_t c = 0; c < 3; c++)
                    if (out[i * plane + c * (plane / 3) + p] !=
                        lut[c * 256 + req.out_u8[i * plane + 3 * p + c]])
                        abort();
    }
    free(req.out_u8);
    for (int i = 0; i < 2; i++) { /* failures carry a message (a refused call loads nothing) */
        if (skip_bad && !digest_refused && !ok[i] && !messages[i]) abort();
        free(messages[i]);
    }
    free(req.out);
    return 0;
}
