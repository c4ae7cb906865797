/* C-level tests of the preprocessing core under ASan/UBSan: every input lives in a malloc'd
 * block of exactly its size, so any read or write outside it is caught.
 *
 * - PPM: every prefix of valid P6/P3/16-bit files, and thousands of random mutations, either
 *   decode or fail with NS_ERR_FORMAT / NS_ERR_LIMIT and a message;
 * - CSV: the same for annotation files;
 * - resize: random sizes and strides; constant images stay constant; equal sizes copy;
 * - loader: good, truncated and missing files, 1 and 3 threads give identical bytes, skip_bad;
 *   the float32 pass's uint8 side output equals the uint8 layout and normalises to the floats;
 * - files that are not regular (a FIFO nobody writes, a symlink to /dev/zero, a directory) are
 *   refused before anything is allocated or read, without blocking.
 *
 * sources: common.c pool.c buf.c fileio.c ppm.c csv.c resize.c sha256.c loader.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

#include "csv.h"
#include "loader.h"
#include "pool.h"
#include "ppm.h"
#include "resize.h"

#include "check.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Decode data[0..len) copied into an exact-size block; returns the status. */
static ns_status try_ppm(const uint8_t *data, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    if (len) memcpy(copy, data, len);
    ns_error err;
    ns_error_clear(&err);
    ns_ppm_info info;
    ns_status st = ns_ppm_parse_header(copy, len, 1 << 16, &info, &err);
    if (st == NS_OK) {
        uint8_t *out = malloc(info.width * info.height * 3);
        CHECK(out);
        st = ns_ppm_decode_pixels(copy, len, &info, out, &err);
        free(out);
    }
    if (st != NS_OK) {
        CHECK(st == NS_ERR_FORMAT || st == NS_ERR_LIMIT);
        CHECK(err.msg[0] != '\0');
    }
    free(copy);
    return st;
}

static size_t make_p6(uint8_t *buf, size_t w, size_t h, unsigned maxval) {
    size_t n = (size_t)sprintf((char *)buf, "P6\n# c\n%zu %zu\n%u\n", w, h, maxval);
    size_t samples = w * h * 3, bps = maxval > 255 ? 2 : 1;
    for (size_t i = 0; i < samples * bps; i++)
        buf[n + i] = (uint8_t)(rnd() % (maxval > 255 ? 256 : maxval + 1));
    return n + samples * bps;
}

static size_t make_p3(uint8_t *buf, size_t w, size_t h, unsigned maxval) {
    size_t n = (size_t)sprintf((char *)buf, "P3\n%zu %zu\n%u\n", w, h, maxval);
    for (size_t i = 0; i < w * h * 3; i++)
        n +=
            (size_t)sprintf((char *)buf + n, "%u%s", rnd() % (maxval + 1), i % 5 ? " " : "\n# x\n");
    return n;
}

static void test_ppm(void) {
    static uint8_t buf[1 << 16], mut[1 << 16];
    const unsigned maxvals[] = {255, 1, 100, 65535, 300};
    for (int kind = 0; kind < 2; kind++) {
        for (size_t m = 0; m < sizeof maxvals / sizeof *maxvals; m++) {
            size_t len = kind ? make_p3(buf, 5, 4, maxvals[m]) : make_p6(buf, 5, 4, maxvals[m]);
            /* the whole file decodes (except 16-bit P6 samples above a maxval of 300) */
            ns_status full = try_ppm(buf, len);
            CHECK(full == NS_OK || (maxvals[m] == 300 && kind == 0));
            for (size_t cut = 0; cut < len; cut++) {
                ns_status st = try_ppm(buf, cut);
                if (kind == 0) CHECK(st != NS_OK); /* every proper prefix of P6 is truncated */
            }
            for (int trial = 0; trial < 3000; trial++) {
                memcpy(mut, buf, len);
                int flips = 1 + (int)(rnd() % 4);
                for (int f = 0; f < flips; f++) mut[rnd() % len] = (uint8_t)rnd();
                try_ppm(mut, len - (rnd() % 3 == 0 ? rnd() % len : 0));
            }
        }
    }
    /* huge declared sizes fail before allocating */
    const char *huge = "P6\n4000000000 4000000000\n255\n";
    CHECK(try_ppm((const uint8_t *)huge, strlen(huge)) == NS_ERR_FORMAT ||
          try_ppm((const uint8_t *)huge, strlen(huge)) == NS_ERR_LIMIT);
}

static void try_csv(const char *data, size_t len) {
    char *copy = malloc(len ? len : 1);
    CHECK(copy);
    if (len) memcpy(copy, data, len);
    ns_annotations a;
    ns_error err;
    ns_error_clear(&err);
    ns_status st = ns_csv_parse(copy, len, "t.csv", &a, &err);
    if (st == NS_OK) {
        for (size_t i = 0; i < a.count; i++) {
            const ns_annotation *r = &a.rows[i];
            CHECK(r->name_offset + r->name_len <= len);
            CHECK(r->x1 <= r->x2 && r->x2 < r->width && r->y1 <= r->y2 && r->y2 < r->height);
        }
        ns_annotations_free(&a);
    } else {
        CHECK(st == NS_ERR_FORMAT);
        CHECK(strstr(err.msg, "t.csv") != NULL);
    }
    free(copy);
}

static void test_csv(void) {
    const char *good =
        "\xEF\xBB\xBF"
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\r\n"
        "00000_00000.ppm;29;30;5;6;24;25;0\r\n00000_00001.ppm;30;30;5;5;25;25;12\r\n\r\n";
    size_t len = strlen(good);
    char mut[512];
    for (size_t cut = 0; cut <= len; cut++) try_csv(good, cut);
    const char alphabet[] = ";0123456789\r\n.-a";
    for (int trial = 0; trial < 20000; trial++) {
        memcpy(mut, good, len);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++) mut[rnd() % len] = alphabet[rnd() % (sizeof alphabet - 1)];
        try_csv(mut, len);
    }
}

static void test_resize(void) {
    ns_resize_scratch s, cached;
    memset(&s, 0, sizeof s);
    memset(&cached, 0, sizeof cached);
    cached.use_cache = 1;
    ns_error err;
    for (int trial = 0; trial < 1500; trial++) {
        size_t w = 1 + rnd() % 300, h = 1 + rnd() % 70, ow = 1 + rnd() % 70, oh = 1 + rnd() % 70;
        size_t stride = w * 3 + rnd() % 5;
        size_t bytes = stride * (h - 1) + w * 3; /* exactly what the image spans */
        uint8_t *src = malloc(bytes), *dst = malloc(ow * oh * 3);
        CHECK(src && dst);
        uint8_t c[3] = {(uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd()};
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) memcpy(src + y * stride + 3 * x, c, 3);
        CHECK(ns_resize_u8c3(src, w, h, stride, dst, ow, oh, &s, &err) == NS_OK);
        for (size_t i = 0; i < ow * oh; i++) CHECK(memcmp(dst + 3 * i, c, 3) == 0); /* constant */
        for (size_t i = 0; i < bytes; i++) src[i] = (uint8_t)rnd();
        CHECK(ns_resize_u8c3(src, w, h, stride, dst, ow, oh, &s, &err) == NS_OK);
        /* the coefficient cache (shared across sizes, slots reused) changes nothing */
        uint8_t *again = malloc(ow * oh * 3);
        CHECK(again);
        CHECK(ns_resize_u8c3(src, w, h, stride, again, ow, oh, &cached, &err) == NS_OK);
        CHECK(memcmp(dst, again, ow * oh * 3) == 0);
        free(again);
        free(dst);
        dst = malloc(w * h * 3);
        CHECK(dst);
        CHECK(ns_resize_u8c3(src, w, h, stride, dst, w, h, &s, &err) == NS_OK);
        for (size_t y = 0; y < h; y++) CHECK(memcmp(dst + y * w * 3, src + y * stride, w * 3) == 0);
        free(src);
        free(dst);
    }
    uint8_t px[3] = {1, 2, 3}, out[3];
    CHECK(ns_resize_u8c3(px, 0, 1, 3, out, 1, 1, &s, &err) == NS_ERR_INVALID);
    CHECK(ns_resize_u8c3(px, 1, 1, 2, out, 1, 1, &s, &err) == NS_ERR_INVALID);
    ns_resize_scratch_free(&s);
    ns_resize_scratch_free(&cached);
}

static void write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void test_loader(void) {
    char dir[] = "/tmp/ns_test_preproc_XXXXXX";
    CHECK(mkdtemp(dir));
    enum { N = 40 };
    char names[N][128];
    const char *paths[N];
    static uint8_t buf[1 << 17];
    int64_t rois[N * 4];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s/%02d.ppm", dir, i);
        paths[i] = names[i];
        size_t w = 1 + rnd() % 90, h = 1 + rnd() % 90;
        size_t len =
            (i % 7 == 3) ? make_p3(buf, w, h, 255) : make_p6(buf, w, h, i % 5 == 1 ? 65535 : 255);
        if (i == 13) len /= 2;                       /* truncated */
        if (i != 21) write_file(names[i], buf, len); /* 21 is missing */
        if (i % 3 == 0) {                            /* whole image */
            rois[4 * i] = rois[4 * i + 1] = rois[4 * i + 2] = rois[4 * i + 3] = -1;
        } else { /* a random inclusive box inside it */
            rois[4 * i] = rnd() % w;
            rois[4 * i + 1] = rnd() % h;
            rois[4 * i + 2] = rois[4 * i] + rnd() % (w - (size_t)rois[4 * i]);
            rois[4 * i + 3] = rois[4 * i + 1] + rnd() % (h - (size_t)rois[4 * i + 1]);
        }
    }
    ns_pool *pool;
    ns_error err;
    CHECK(ns_pool_create(&pool, 3, &err) == NS_OK);
    uint8_t *u8_layout = malloc(N * 24 * 20 * 3), *u8_side = malloc(N * 24 * 20 * 3);
    CHECK(u8_layout && u8_side);
    for (int layout = 0; layout < 2; layout++) {
        size_t elem = layout ? sizeof(float) : 1, per = 24 * 20 * 3 * elem;
        uint8_t *out1 = malloc(N * per), *out3 = malloc(N * per), ok1[N], ok3[N];
        char *msg1[N], *msg3[N];
        CHECK(out1 && out3);
        ns_load_request req;
        memset(&req, 0, sizeof req);
        req.count = N;
        req.paths = paths;
        req.rois = rois;
        req.out_h = 24;
        req.out_w = 20;
        req.layout = (ns_layout)layout;
        for (int c = 0; c < 3; c++) req.mean[c] = 0.5f, req.std[c] = 0.25f;
        req.max_pixels = 1 << 20;
        req.max_file_bytes = 1 << 20;
        req.skip_bad = 1;
        req.max_threads = 1;
        req.out = out1;
        req.ok = ok1;
        req.messages = msg1;
        req.out_u8 = layout ? u8_side : NULL;
        CHECK(ns_load_images(pool, &req, &err) == NS_OK);
        if (!layout) memcpy(u8_layout, out1, N * per);
        req.out_u8 = NULL;
        req.max_threads = 3;
        req.out = out3;
        req.ok = ok3;
        req.messages = msg3;
        CHECK(ns_load_images(pool, &req, &err) == NS_OK);
        CHECK(memcmp(out1, out3, N * per) == 0);
        CHECK(memcmp(ok1, ok3, N) == 0);
        if (layout) { /* the side output is the uint8 layout; the floats are its normalisation */
            CHECK(memcmp(u8_side, u8_layout, N * 24 * 20 * 3) == 0);
            float lut[3 * 256], *f = malloc(24 * 20 * 3 * sizeof(float));
            CHECK(f);
            ns_normalize_lut(req.mean, req.std, lut);
            for (int i = 0; i < N; i++) {
                ns_normalize_hwc_to_chw(u8_side + i * 24 * 20 * 3, 24, 20, lut, f);
                if (ok1[i]) CHECK(memcmp(f, out1 + i * per, per) == 0);
            }
            free(f);
        }
        for (int i = 0; i < N; i++) {
            CHECK(ok1[i] == (i != 13 && i != 21));
            if (!ok1[i]) CHECK(msg1[i] && strstr(msg1[i], names[i]) && msg3[i]);
            free(msg1[i]);
            free(msg3[i]);
        }
        /* without skip_bad: the lowest failing index is reported */
        req.skip_bad = 0;
        req.messages = NULL;
        CHECK(ns_load_images(pool, &req, &err) == NS_ERR_FORMAT);
        CHECK(strstr(err.msg, names[13]) != NULL);
        free(out1);
        free(out3);
    }
    free(u8_layout);
    free(u8_side);
    ns_pool_destroy(pool);
    for (int i = 0; i < N; i++) unlink(names[i]);
    rmdir(dir);
}

/* A FIFO nobody writes to (a blocking open would wait forever), a symlink to /dev/zero (would
 * read up to the size limit) and a directory, all named like images: refused from fstat, with
 * nothing allocated and nothing read; the loader skips them like any bad file. */
static void test_not_regular(void) {
    char dir[] = "/tmp/ns_test_special_XXXXXX";
    CHECK(mkdtemp(dir));
    char fifo[128], zero[128], sub[128], good[128];
    snprintf(fifo, sizeof fifo, "%s/fifo.ppm", dir);
    snprintf(zero, sizeof zero, "%s/zero.ppm", dir);
    snprintf(sub, sizeof sub, "%s/dir.ppm", dir);
    snprintf(good, sizeof good, "%s/good.ppm", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(symlink("/dev/zero", zero) == 0);
    CHECK(mkdir(sub, 0700) == 0);
    static uint8_t img[4096];
    write_file(good, img, make_p6(img, 9, 7, 255));
    const char *bad[3] = {fifo, zero, sub};
    const char *kind[3] = {"is a FIFO, not a regular file", "is a character device", NULL};
    for (int k = 0; k < 3; k++) {
        ns_buf buf = {NULL, 0};
        size_t len = 1;
        ns_error err;
        ns_error_clear(&err);
        CHECK(ns_read_file(bad[k], (size_t)1 << 30, &buf, &len, &err) == NS_ERR_IO);
        CHECK(buf.cap == 0 && buf.data == NULL && len == 0); /* nothing allocated, nothing read */
        CHECK(strstr(err.msg, bad[k]) == err.msg);
        if (kind[k]) CHECK(strstr(err.msg, kind[k]) != NULL);
    }
    ns_pool *pool;
    ns_error err;
    CHECK(ns_pool_create(&pool, 2, &err) == NS_OK);
    const char *paths[4] = {fifo, good, zero, sub};
    uint8_t out[4 * 8 * 8 * 3], ok[4];
    char *msgs[4];
    ns_load_request req;
    memset(&req, 0, sizeof req);
    req.count = 4;
    req.paths = paths;
    req.out_h = req.out_w = 8;
    req.layout = NS_LAYOUT_U8_NHWC;
    req.max_pixels = 1 << 20;
    req.max_file_bytes = (size_t)1 << 30;
    req.skip_bad = 1;
    req.out = out;
    req.ok = ok;
    req.messages = msgs;
    CHECK(ns_load_images(pool, &req, &err) == NS_OK);
    CHECK(!ok[0] && ok[1] && !ok[2] && !ok[3]);
    for (int i = 0; i < 4; i++) {
        if (i != 1) CHECK(msgs[i] && strstr(msgs[i], paths[i]));
        free(msgs[i]);
    }
    req.skip_bad = 0;
    req.messages = NULL;
    CHECK(ns_load_images(pool, &req, &err) == NS_ERR_IO);
    CHECK(strstr(err.msg, fifo) && strstr(err.msg, "FIFO"));
    ns_pool_destroy(pool);
    unlink(fifo);
    unlink(zero);
    unlink(good);
    rmdir(sub);
    rmdir(dir);
}

int main(void) {
    test_ppm();
    test_csv();
    test_resize();
    test_loader();
    test_not_regular();
    printf("test_preproc: ok\n");
    return 0;
}
