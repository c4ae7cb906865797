#define _POSIX_C_SOURCE 200809L
#include "loader.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fileio.h"
#include "ppm.h"
#include "resize.h"

void ns_normalize_lut(const float mean[3], const float std[3], float lut[3 * 256]) {
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c * 256 + v] = ((float)v / 255.0f - mean[c]) / std[c];
}

void ns_normalize_hwc_to_chw(const uint8_t *src, size_t h, size_t w, const float *lut, float *dst) {
    const size_t plane = h * w;
    float *d0 = dst, *d1 = dst + plane, *d2 = dst + 2 * plane;
    const float *l0 = lut, *l1 = lut + 256, *l2 = lut + 512;
    for (size_t i = 0; i < plane; i++) {
        d0[i] = l0[src[3 * i + 0]];
        d1[i] = l1[src[3 * i + 1]];
        d2[i] = l2[src[3 * i + 2]];
    }
}

typedef struct {
    ns_buf file;      /* raw file bytes */
    ns_buf pixels;    /* decoded uint8 HxWx3 for files that are not 8-bit P6 */
    ns_buf small;     /* resized uint8 image before normalisation */
    ns_dir_cache dir; /* directory of the previous file */
    ns_resize_scratch rs;
} worker_scratch;

typedef struct {
    const ns_load_request *req;
    float lut[3 * 256];
    worker_scratch *scratch[NS_POOL_MAX_THREADS];
    atomic_size_t first_bad; /* lowest failing index so far (count if none) */
    ns_error first_err;      /* error of first_bad; guarded by lock */
    atomic_flag lock;
    /* req->digest, fed in row order: done[i] is set once row i is written, rows [0, hashed)
     * are in the hash, and whichever worker holds hash_lock feeds it the next done rows */
    atomic_uchar *done;
    atomic_size_t hashed;
    atomic_flag hash_lock;
    size_t rows_per_task; /* consecutive rows per pool task */
} load_ctx;

/* The crop of req's ROI i inside a width x height image: origin (*x0, *y0), size *w x *h. */
static ns_status crop_of(const ns_load_request *req, size_t i, size_t width, size_t height,
                         size_t *x0, size_t *y0, size_t *w, size_t *h, ns_error *err) {
    *x0 = 0, *y0 = 0, *w = width, *h = height;
    if (!req->rois || req->rois[4 * i] < 0) return NS_OK;
    const int64_t *r = req->rois + 4 * i;
    if (r[1] < 0 || r[2] < r[0] || r[3] < r[1] || (uint64_t)r[2] >= width ||
        (uint64_t)r[3] >= height)
        return ns_set_error(err, NS_ERR_FORMAT,
                            "ROI (%lld, %lld, %lld, %lld) does not fit the %zux%zu image "
                            "(corners inclusive)",
                            (long long)r[0], (long long)r[1], (long long)r[2], (long long)r[3],
                            width, height);
    *x0 = (size_t)r[0], *y0 = (size_t)r[1];
    *w = (size_t)(r[2] - r[0]) + 1, *h = (size_t)(r[3] - r[1]) + 1;
    return NS_OK;
}

/* Resize the w x h image at src (row stride `stride` bytes) into output slot i of req, and for
 * float32 normalise it there (through the uint8 side array when the caller gave one). */
static ns_status resize_into(load_ctx *ctx, worker_scratch *ws, size_t i, const uint8_t *src,
                             size_t w, size_t h, size_t stride, ns_error *err) {
    const ns_load_request *req = ctx->req;
    const size_t plane = req->out_h * req->out_w * 3;
    if (req->layout == NS_LAYOUT_U8_NHWC)
        return ns_resize_u8c3(src, w, h, stride, (uint8_t *)req->out + i * plane, req->out_w,
                              req->out_h, &ws->rs, err);
    uint8_t *small = req->out_u8 ? req->out_u8 + i * plane : NULL;
    if (!small) {
        ns_status st = ns_buf_reserve(&ws->small, plane, "the resized image", err);
        if (st != NS_OK) return st;
        small = ws->small.data;
    }
    ns_status st = ns_resize_u8c3(src, w, h, stride, small, req->out_w, req->out_h, &ws->rs, err);
    if (st == NS_OK)
        ns_normalize_hwc_to_chw(small, req->out_h, req->out_w, ctx->lut,
                                (float *)req->out + i * plane);
    return st;
}

/* Image i, start to end: read, decode, crop, resize, normalise. */
static ns_status load_one(load_ctx *ctx, worker_scratch *ws, size_t i, ns_error *err) {
    const ns_load_request *req = ctx->req;
    const char *path = req->paths[i];
    size_t len;
    ns_status st = ns_read_file_cached(&ws->dir, path, req->max_file_bytes, &ws->file, &len, err);
    if (st != NS_OK) return st; /* message already names the path */
    const uint8_t *data = (const uint8_t *)ws->file.data;
    ns_ppm_info info;
    st = ns_ppm_parse_header(data, len, req->max_pixels, &info, err);
    const uint8_t *pix = NULL;
    if (st == NS_OK && ns_ppm_is_raw8(&info)) {
        pix = data + info.data_offset; /* 8-bit P6: resampled straight from the file buffer */
    } else if (st == NS_OK) {
        size_t bytes = info.width * info.height * 3; /* bounded by max_pixels */
        st = ns_buf_reserve(&ws->pixels, bytes, "decoded pixels", err);
        if (st == NS_OK) st = ns_ppm_decode_pixels(data, len, &info, ws->pixels.data, err);
        pix = ws->pixels.data;
    }
    size_t x0, y0, w, h;
    if (st == NS_OK) st = crop_of(req, i, info.width, info.height, &x0, &y0, &w, &h, err);
    if (st == NS_OK) {
        const size_t stride = info.width * 3;
        st = resize_into(ctx, ws, i, pix + y0 * stride + x0 * 3, w, h, stride, err);
    }
    if (st != NS_OK && st != NS_ERR_NOMEM) {
        /* prefix the path to messages from the decoder and resizer */
        char msg[NS_ERROR_MSG_LEN];
        memcpy(msg, err->msg, sizeof msg);
        ns_set_error(err, st, "%s: %s", path, msg);
    }
    return st;
}

static void zero_slot(const ns_load_request *req, size_t i) {
    size_t plane = req->out_h * req->out_w * 3;
    size_t elem = req->layout == NS_LAYOUT_U8_NHWC ? 1 : sizeof(float);
    memset((char *)req->out + i * plane * elem, 0, plane * elem);
    if (req->out_u8 && req->layout == NS_LAYOUT_F32_NCHW) memset(req->out_u8 + i * plane, 0, plane);
}

/* The uint8 row i that the digest covers. */
static const uint8_t *digest_row(const ns_load_request *req, size_t i, size_t plane) {
    const uint8_t *u8 = req->layout == NS_LAYOUT_U8_NHWC ? req->out : req->out_u8;
    return u8 + i * plane;
}

/* Feed the digest every row from `hashed` on that is done, in order; rows that finish while
 * another worker holds the lock are left to it. All accesses are sequentially consistent, so a
 * worker that finds the lock taken after marking its row done cannot be missed: the holder
 * checks done[] again after releasing the lock (and ns_load_images drains any rest). */
static void digest_rows(load_ctx *ctx) {
    const ns_load_request *req = ctx->req;
    const size_t plane = req->out_h * req->out_w * 3;
    for (;;) {
        size_t next = atomic_load(&ctx->hashed);
        if (next >= req->count || !atomic_load(&ctx->done[next])) return;
        if (atomic_flag_test_and_set(&ctx->hash_lock)) return;
        next = atomic_load(&ctx->hashed);
        for (; next < req->count && atomic_load(&ctx->done[next]); next++)
            ns_sha256_update(req->digest, digest_row(req, next, plane), plane);
        atomic_store(&ctx->hashed, next);
        atomic_flag_clear(&ctx->hash_lock);
    }
}

/* Row i is final (loaded, or zeroed after a failure). */
static void row_done(load_ctx *ctx, size_t i) {
    if (!ctx->done) return;
    atomic_store(&ctx->done[i], 1);
    digest_rows(ctx);
}

/* Row i, start to end (its output, ok flag, message and digest turn). */
static void load_row(load_ctx *ctx, size_t i, int worker) {
    const ns_load_request *req = ctx->req;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    if (!req->skip_bad && i > atomic_load_explicit(&ctx->first_bad, memory_order_relaxed)) {
        zero_slot(req, i); /* an earlier image failed: the call fails anyway */
        req->ok[i] = 0;
        return;
    }
    worker_scratch *ws = NULL;
    if (worker >= 0 && worker < NS_POOL_MAX_THREADS) {
        ws = ctx->scratch[worker];
        if (!ws) {
            ws = ctx->scratch[worker] = calloc(1, sizeof *ws);
            if (ws) {
                ws->rs.use_cache = 1; /* a split has few distinct sizes */
                ns_dir_cache_init(&ws->dir);
            }
        }
    }
    if (!ws)
        st = ns_set_error(&err, NS_ERR_NOMEM, "%s: cannot allocate loader scratch", req->paths[i]);
    else
        st = load_one(ctx, ws, i, &err);
    if (st == NS_OK) {
        req->ok[i] = 1;
        row_done(ctx, i);
        return;
    }
    req->ok[i] = 0;
    zero_slot(req, i);
    row_done(ctx, i);
    if (req->skip_bad && req->messages) req->messages[i] = strdup(err.msg); /* NULL if OOM */
    /* remember the lowest failing index and its error */
    while (atomic_flag_test_and_set_explicit(&ctx->lock, memory_order_acquire)) {}
    if (i < atomic_load_explicit(&ctx->first_bad, memory_order_relaxed)) {
        atomic_store_explicit(&ctx->first_bad, i, memory_order_relaxed);
        ctx->first_err = err;
    }
    atomic_flag_clear_explicit(&ctx->lock, memory_order_release);
}

/* Pool task t: rows [t * rows_per_task, ...). Consecutive rows per task keep each thread's
 * writes in its own stretch of the output (measured on 2 cores, 12,630 rows: 6-7 % less CPU
 * and wall time than one row per task, from fewer shared cache lines in ok[] and done[], fewer
 * faults of one fresh huge page by both threads at once and fewer hand-outs). */
static void load_task(void *vctx, size_t task, int worker) {
    load_ctx *ctx = vctx;
    const size_t first = task * ctx->rows_per_task, count = ctx->req->count;
    const size_t end = count - first < ctx->rows_per_task ? count : first + ctx->rows_per_task;
    for (size_t i = first; i < end; i++) load_row(ctx, i, worker);
}

/* Rows per pool task: up to 64, but at least 16 tasks per thread, so that threads that start
 * late or run slow (a shared machine) still get an even share. */
static size_t rows_per_task(ns_pool *pool, const ns_load_request *req) {
    size_t threads = (size_t)ns_pool_threads(pool);
    if (req->max_threads > 0 && (size_t)req->max_threads < threads)
        threads = (size_t)req->max_threads;
    size_t rows = req->count / (16 * threads);
    return rows < 1 ? 1 : rows > 64 ? 64 : rows;
}

ns_status ns_load_images(ns_pool *pool, const ns_load_request *req, ns_error *err) {
    if (!req || (req->count && (!req->paths || !req->out || !req->ok)))
        return ns_set_error(err, NS_ERR_INVALID, "load_images: NULL argument");
    if (req->out_h == 0 || req->out_w == 0 || req->out_h > NS_RESIZE_MAX_SIDE ||
        req->out_w > NS_RESIZE_MAX_SIDE)
        return ns_set_error(err, NS_ERR_INVALID, "load_images: bad output size %zux%zu", req->out_h,
                            req->out_w);
    if (req->layout != NS_LAYOUT_U8_NHWC && req->layout != NS_LAYOUT_F32_NCHW)
        return ns_set_error(err, NS_ERR_INVALID, "load_images: unknown layout %d",
                            (int)req->layout);
    if (req->layout == NS_LAYOUT_F32_NCHW)
        for (int c = 0; c < 3; c++)
            if (!(req->std[c] != 0.0f))
                return ns_set_error(err, NS_ERR_INVALID, "load_images: std[%d] must be non-zero",
                                    c);
    size_t plane, total;
    if (ns_mul_overflow(req->out_h, req->out_w, &plane) || ns_mul_overflow(plane, 3, &plane) ||
        ns_mul_overflow(plane, req->count, &total) || ns_mul_overflow(total, sizeof(float), &total))
        return ns_set_error(err, NS_ERR_LIMIT, "load_images: output of %zu images is too large",
                            req->count);
    if (req->digest && req->layout == NS_LAYOUT_F32_NCHW && !req->out_u8)
        return ns_set_error(err, NS_ERR_INVALID, "load_images: a digest needs the uint8 output");
    if (req->messages)
        for (size_t i = 0; i < req->count; i++) req->messages[i] = NULL;
    if (req->count == 0) return NS_OK;

    load_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx && req->digest && !(ctx->done = calloc(req->count, sizeof *ctx->done))) {
        free(ctx);
        ctx = NULL;
    }
    if (!ctx) return ns_set_error(err, NS_ERR_NOMEM, "load_images: cannot allocate its context");
    ctx->req = req;
    ns_normalize_lut(req->mean, req->std, ctx->lut);
    atomic_init(&ctx->first_bad, req->count);
    atomic_flag_clear(&ctx->lock);
    atomic_init(&ctx->hashed, 0);
    atomic_flag_clear(&ctx->hash_lock);
    ctx->rows_per_task = rows_per_task(pool, req);
    ns_pool_run(pool, load_task, ctx, (req->count - 1) / ctx->rows_per_task + 1, req->max_threads);
    if (ctx->done) digest_rows(ctx); /* every row is done now: feeds whatever is left */

    ns_status st = NS_OK;
    size_t bad = atomic_load(&ctx->first_bad);
    if (bad < req->count && !req->skip_bad) {
        st = ctx->first_err.status;
        if (err) *err = ctx->first_err;
    }
    for (int t = 0; t < NS_POOL_MAX_THREADS; t++) {
        if (!ctx->scratch[t]) continue;
        ns_buf_free(&ctx->scratch[t]->file);
        ns_buf_free(&ctx->scratch[t]->pixels);
        ns_buf_free(&ctx->scratch[t]->small);
        ns_resize_scratch_free(&ctx->scratch[t]->rs);
        ns_dir_cache_close(&ctx->scratch[t]->dir);
        free(ctx->scratch[t]);
    }
    free(ctx->done);
    free(ctx);
    return st;
}
