/* TrafficSignNet inference: weight packing, the layer plan, scratch buffers, threads, timers.
 * See net.h for the design. */
#define _POSIX_C_SOURCE 200809L
#include "net.h"
#include "layer_timers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const char *const ns_net_layer_names[NS_NET_LAYERS] = {
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2",
};

#define NS_ALIGN         64
#define CHUNK_IMAGES     256 /* images per outer chunk: bounds the scratch memory */
#define FC_ROWS          48  /* rows per fc task (fixed: results do not depend on threads) */
#define C1_ROWS_PER_TASK 3   /* pooled conv1 rows per task when splitting one image */

/* Geometry of the net (input 32x32). */
#define IN_PIX  (NS_NET_IN_H * NS_NET_IN_W) /* 1024 */
#define IN_SIZE (NS_NET_IN_C * IN_PIX)      /* 3072 */
#define C1_H    (NS_NET_IN_H - 2)           /* 30 */
#define P1_H    (C1_H / 2)                  /* 15 */
#define P1_SIZE (P1_H * P1_H * NS_NET_C1)   /* 7200 */
#define C2_H    (P1_H - 2)                  /* 13 */
#define P2_H    (C2_H / 2)                  /* 6 */

/* ------------------------------------------------------------------------------------------ */
/* Packed weights                                                                               */

/* One layer's plan: its packed weights and the micro-kernels chosen for its A row stride. */
typedef struct packed {
    float *w;  /* [nb][K][nr], zero padded past nout */
    float *b;  /* [nb * nr], zero padded */
    size_t nb; /* blocks of nr output channels */
    size_t k;  /* reduction length */
    size_t nout;
    const ns_gemm_kernel *gemm;           /* for the layer's row stride */
    const ns_conv_pool_kernel *conv_pool; /* conv layers of ISAs that fuse the pool, else NULL */
} packed;

static void packed_free(packed *p) {
    ns_free_aligned(p->w);
    ns_free_aligned(p->b);
    memset(p, 0, sizeof *p);
}

/* Pack src (nout rows of k floats; the packed column kk reads src column map[kk], or kk if
 * map is NULL) into isa->nr-wide blocks, and choose the GEMM kernel for A rows as floats apart
 * (the model fact that decides which specialisation runs). */
static ns_status pack(packed *p, const ns_isa *isa, size_t as, size_t nout, size_t k,
                      const float *src, const size_t *map, const float *bias, ns_error *err) {
    memset(p, 0, sizeof *p);
    const size_t nr = isa->nr;
    p->gemm = ns_isa_gemm(isa, as);
    size_t nb = (nout + nr - 1) / nr, wn, wbytes, bbytes;
    if (ns_mul_overflow(nb * nr, k, &wn) || ns_mul_overflow(wn, sizeof(float), &wbytes) ||
        ns_mul_overflow(nb * nr, sizeof(float), &bbytes))
        return ns_set_error(err, NS_ERR_LIMIT, "packed weight size overflows");
    p->w = ns_alloc_aligned(wbytes, NS_ALIGN);
    p->b = ns_alloc_aligned(bbytes, NS_ALIGN);
    if (!p->w || !p->b) {
        packed_free(p);
        return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate %zu bytes of packed weights",
                            wbytes + bbytes);
    }
    memset(p->w, 0, wbytes);
    memset(p->b, 0, bbytes);
    for (size_t b = 0; b < nb; b++) {
        for (size_t kk = 0; kk < k; kk++) {
            const size_t col = map ? map[kk] : kk;
            float *dst = p->w + (b * k + kk) * nr;
            for (size_t j = 0; j < nr && b * nr + j < nout; j++)
                dst[j] = src[(b * nr + j) * k + col];
        }
    }
    for (size_t o = 0; o < nout; o++) p->b[o] = bias[o];
    p->nb = nb;
    p->k = k;
    p->nout = nout;
    return NS_OK;
}

/* Conv weights (cout,cin,3,3) -> packed K order (ky, kx, ci); a conv's GEMM rows are NHWC
 * pixels, cin floats apart. */
static ns_status pack_conv(packed *p, const ns_isa *isa, size_t cout, size_t cin, const float *w,
                           const float *bias, ns_error *err) {
    size_t k = 9 * cin;
    size_t *map = malloc(k * sizeof *map);
    if (!map) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate a packing map");
    for (size_t ky = 0; ky < 3; ky++)
        for (size_t kx = 0; kx < 3; kx++)
            for (size_t ci = 0; ci < cin; ci++)
                map[(ky * 3 + kx) * cin + ci] = ci * 9 + ky * 3 + kx;
    ns_status st = pack(p, isa, cin, cout, k, w, map, bias, err);
    free(map);
    if (st == NS_OK) p->conv_pool = ns_isa_conv_pool(isa, cin);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Layer building blocks shared by the net and the layer-level entry points                    */

/* NHWC (h,w,c) -> NCHW (c,h,w) (layer-level entry point only). */
static void to_nchw(const float *src, size_t c, size_t h, size_t w, float *dst) {
    for (size_t ch = 0; ch < c; ch++)
        for (size_t i = 0; i < h * w; i++) dst[ch * h * w + i] = src[i * c + ch];
}

/* Conv 3x3 valid + bias (+ ReLU) on an NHWC image in (h,w,cin) for output-channel blocks
 * [b0,b1), with the kernels packing chose for L. Without pool: output rows [r0,r1) of out
 * (h-2, w-2, cout). With pool: pooled rows [r0,r1) of out ((h-2)/2, (w-2)/2, cout): with a
 * conv_pool kernel the pool happens in registers; otherwise each pooled row computes its two
 * conv rows (only the columns the pool keeps) into rowbuf (2 * 2*((w-2)/2) * cout floats) and
 * pools them. */
static void conv_rows(const ns_isa *isa, const packed *L, size_t cin, size_t h, size_t w,
                      const float *in, int relu, int pool, size_t r0, size_t r1, size_t b0,
                      size_t b1, float *out, float *rowbuf) {
    (void)h;
    const size_t nr = isa->nr, cout = L->nout, kc = 3 * cin, rs = w * cin;
    if (!pool) {
        const size_t ow = w - 2;
        for (size_t y = r0; y < r1; y++)
            for (size_t b = b0; b < b1; b++) {
                const size_t nc = cout - b * nr < nr ? cout - b * nr : nr;
                L->gemm->fn(ow, nc, 3, kc, in + y * rs, cin, rs, L->w + b * L->k * nr,
                            L->b + b * nr, out + y * ow * cout + b * nr, cout, relu);
            }
        return;
    }
    const size_t pw = (w - 2) / 2, cw = 2 * pw;
    if (L->conv_pool) { /* pooled in the micro-kernel's registers */
        for (size_t py = r0; py < r1; py++)
            for (size_t b = b0; b < b1; b++) {
                const size_t nc = cout - b * nr < nr ? cout - b * nr : nr;
                L->conv_pool->fn(pw, nc, kc, in + 2 * py * rs, cin, rs, L->w + b * L->k * nr,
                                 L->b + b * nr, out + py * pw * cout + b * nr, cout, relu);
            }
        return;
    }
    for (size_t py = r0; py < r1; py++) {
        for (size_t b = b0; b < b1; b++) {
            const size_t nc = cout - b * nr < nr ? cout - b * nr : nr;
            for (size_t dy = 0; dy < 2; dy++)
                L->gemm->fn(cw, nc, 3, kc, in + (2 * py + dy) * rs, cin, rs, L->w + b * L->k * nr,
                            L->b + b * nr, rowbuf + dy * cw * cout + b * nr, cout, relu);
            isa->pool2x2(rowbuf, cw, cout, b * nr, b * nr + nc, out + py * pw * cout);
        }
    }
}

/* Linear rows [m0,m1), block b: out (rows, nout) row-major. */
static void linear_block(const ns_isa *isa, const packed *L, const float *x, size_t m0, size_t m1,
                         size_t b, int relu, float *out) {
    const size_t nr = isa->nr;
    const size_t nc = L->nout - b * nr < nr ? L->nout - b * nr : nr;
    L->gemm->fn(m1 - m0, nc, 1, L->k, x + m0 * L->k, L->k, 0, L->w + b * L->k * nr, L->b + b * nr,
                out + m0 * L->nout + b * nr, L->nout, relu);
}

/* ------------------------------------------------------------------------------------------ */
/* The net                                                                                       */

struct ns_net {
    pthread_mutex_t mu;
    ns_kernel kernel;
    const ns_isa *isa; /* NULL for ref */
    float *orig;       /* copy of the PyTorch-layout weights */
    ns_net_weights w;  /* pointers into orig */
    packed c1, c2, f1, f2;
    /* scratch, reused across calls */
    float *work; /* per worker: work_stride floats */
    size_t work_stride;
    int work_workers;
    uint64_t *wtime;    /* per worker: NS_NET_LAYERS thread-time accumulators */
    float *arena;       /* per chunk: features, hidden, and split-mode buffers */
    size_t arena_rows;  /* images the arena holds features + hidden for */
    size_t arena_split; /* images it holds split-mode buffers for */
    /* Small batches (fewer images than threads): split each image's conv layers between the
     * threads, or run whole images in parallel? It depends on the machine (pool wake-up cost
     * vs per-image work: on a 2-core AVX-512 VM a batch-1 split was 2.3x slower), so the first
     * small-batch calls alternate between the two and keep the faster. The outputs are
     * bit-identical either way. Reset when the thread count or the kernel changes. */
    int small_threads;      /* thread count the choice was measured for (0: none yet) */
    int small_split;        /* -1 measuring, 0 whole images, 1 split */
    unsigned small_calls;   /* calls measured so far */
    uint64_t small_best[2]; /* fastest conv phase seen per mode, ns */
    /* timers */
    ns_layer_timers timers; /* guarded by mu */
};

static const size_t weight_sizes[8] = {
    NS_NET_C1 * NS_NET_IN_C * 9,     NS_NET_C1,     NS_NET_C2 * NS_NET_C1 * 9,      NS_NET_C2,
    NS_NET_HIDDEN * NS_NET_FEATURES, NS_NET_HIDDEN, NS_NET_CLASSES * NS_NET_HIDDEN, NS_NET_CLASSES,
};

static void unpack_all(ns_net *net) {
    packed_free(&net->c1);
    packed_free(&net->c2);
    packed_free(&net->f1);
    packed_free(&net->f2);
}

static ns_status pack_all(ns_net *net, const ns_isa *isa, ns_error *err) {
    if (!isa) return NS_OK;
    ns_status st =
        pack_conv(&net->c1, isa, NS_NET_C1, NS_NET_IN_C, net->w.conv1_w, net->w.conv1_b, err);
    if (st == NS_OK)
        st = pack_conv(&net->c2, isa, NS_NET_C2, NS_NET_C1, net->w.conv2_w, net->w.conv2_b, err);
    if (st == NS_OK) {
        /* fc1 reads the NHWC features (y, x, c); PyTorch's flatten is c*36 + y*6 + x */
        size_t *map = malloc(NS_NET_FEATURES * sizeof *map);
        if (!map)
            st = ns_set_error(err, NS_ERR_NOMEM, "cannot allocate a packing map");
        else {
            for (size_t y = 0; y < P2_H; y++)
                for (size_t x = 0; x < P2_H; x++)
                    for (size_t c = 0; c < NS_NET_C2; c++)
                        map[(y * P2_H + x) * NS_NET_C2 + c] = c * P2_H * P2_H + y * P2_H + x;
            st = pack(&net->f1, isa, NS_NET_FEATURES, NS_NET_HIDDEN, NS_NET_FEATURES, net->w.fc1_w,
                      map, net->w.fc1_b, err);
            free(map);
        }
    }
    if (st == NS_OK)
        st = pack(&net->f2, isa, NS_NET_HIDDEN, NS_NET_CLASSES, NS_NET_HIDDEN, net->w.fc2_w, NULL,
                  net->w.fc2_b, err);
    if (st != NS_OK) unpack_all(net);
    return st;
}

ns_status ns_net_create(const ns_net_weights *w, const char *kernel, ns_net **out, ns_error *err) {
    if (!out) return ns_set_error(err, NS_ERR_INVALID, "ns_net_create: out is NULL");
    *out = NULL;
    if (!w) return ns_set_error(err, NS_ERR_INVALID, "ns_net_create: weights are NULL");
    const float *src[8] = {w->conv1_w, w->conv1_b, w->conv2_w, w->conv2_b,
                           w->fc1_w,   w->fc1_b,   w->fc2_w,   w->fc2_b};
    static const char *const wn[8] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                      "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias"};
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        if (!src[i]) return ns_set_error(err, NS_ERR_INVALID, "weight %s is NULL", wn[i]);
        total += weight_sizes[i];
    }
    ns_kernel k;
    ns_status st = ns_kernel_resolve(kernel, &k, err);
    if (st != NS_OK) return st;
    ns_net *net = calloc(1, sizeof *net);
    if (!net) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate the net");
    net->orig = ns_alloc_aligned(total * sizeof(float), NS_ALIGN);
    if (!net->orig) {
        free(net);
        return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate %zu bytes of weights",
                            total * sizeof(float));
    }
    float *dst[8];
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        dst[i] = net->orig + off;
        memcpy(dst[i], src[i], weight_sizes[i] * sizeof(float));
        off += weight_sizes[i];
    }
    net->w = (ns_net_weights){dst[0], dst[1], dst[2], dst[3], dst[4], dst[5], dst[6], dst[7]};
    net->kernel = k;
    net->isa = ns_kernel_isa(k);
    st = pack_all(net, net->isa, err);
    if (st != NS_OK) {
        ns_free_aligned(net->orig);
        free(net);
        return st;
    }
    pthread_mutex_init(&net->mu, NULL);
    *out = net;
    return NS_OK;
}

void ns_net_destroy(ns_net *net) {
    if (!net) return;
    unpack_all(net);
    ns_free_aligned(net->orig);
    ns_free_aligned(net->work);
    free(net->wtime);
    ns_free_aligned(net->arena);
    pthread_mutex_destroy(&net->mu);
    free(net);
}

ns_kernel ns_net_kernel(const ns_net *net) {
    return net->kernel;
}

const char *ns_net_layer_kernel(const ns_net *net, int layer) {
    if (!net->isa) {
        switch (layer) {
        case NS_LAYER_CONV1:
        case NS_LAYER_CONV2:
            return "ns_ref_conv3x3";
        case NS_LAYER_RELU1:
        case NS_LAYER_RELU2:
        case NS_LAYER_RELU3:
            return "ns_ref_relu";
        case NS_LAYER_POOL1:
        case NS_LAYER_POOL2:
            return "ns_ref_maxpool2x2";
        case NS_LAYER_FC1:
        case NS_LAYER_FC2:
            return "ns_ref_linear";
        default:
            return NULL; /* flatten: pool2 writes PyTorch's order */
        }
    }
    const packed *conv = layer == NS_LAYER_CONV1 ? &net->c1 : &net->c2;
    switch (layer) {
    case NS_LAYER_CONV1:
    case NS_LAYER_CONV2:
        return conv->conv_pool ? conv->conv_pool->name : conv->gemm->name;
    case NS_LAYER_FC1:
        return net->f1.gemm->name;
    case NS_LAYER_FC2:
        return net->f2.gemm->name;
    default:
        return NULL; /* fused into the layer before it */
    }
}

ns_status ns_net_set_kernel(ns_net *net, const char *kernel, ns_error *err) {
    ns_kernel k;
    ns_status st = ns_kernel_resolve(kernel, &k, err);
    if (st != NS_OK) return st;
    pthread_mutex_lock(&net->mu);
    if (k != net->kernel) {
        ns_net tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.w = net->w;
        const ns_isa *isa = ns_kernel_isa(k);
        st = pack_all(&tmp, isa, err);
        if (st == NS_OK) {
            unpack_all(net);
            net->c1 = tmp.c1;
            net->c2 = tmp.c2;
            net->f1 = tmp.f1;
            net->f2 = tmp.f2;
            net->kernel = k;
            net->small_threads = 0; /* measure the small-batch mode again for this kernel */
            net->isa = isa;
            /* per-worker scratch sizes differ between ref and SIMD: re-size on next call */
            ns_free_aligned(net->work);
            net->work = NULL;
            net->work_workers = 0;
        }
    }
    pthread_mutex_unlock(&net->mu);
    return st;
}

void ns_net_enable_timers(ns_net *net, int on) {
    pthread_mutex_lock(&net->mu);
    net->timers.on = on ? 1 : 0;
    pthread_mutex_unlock(&net->mu);
}

int ns_net_timers_enabled(const ns_net *net) {
    return net->timers.on;
}

void ns_net_read_timers(ns_net *net, uint64_t ns[NS_NET_LAYERS], uint64_t calls[NS_NET_LAYERS]) {
    pthread_mutex_lock(&net->mu);
    ns_layer_timers_read(&net->timers, ns, calls);
    pthread_mutex_unlock(&net->mu);
}

void ns_net_reset_timers(ns_net *net) {
    pthread_mutex_lock(&net->mu);
    ns_layer_timers_reset(&net->timers);
    pthread_mutex_unlock(&net->mu);
}

/* ---- scratch ------------------------------------------------------------------------------ */

#define RUP16(n) (((n) + 15u) & ~(size_t)15u)
/* per-worker floats: SIMD: NHWC input + pooled conv1 + conv row pair; ref: conv1, pool1, conv2 */
#define WORK_SIMD                                                                                  \
    (RUP16(IN_SIZE) + RUP16(P1_SIZE) +                                                             \
     RUP16(2 * C1_H * NS_NET_C1 > 2 * 12 * NS_NET_C2 ? 2 * C1_H * NS_NET_C1 : 2 * 12 * NS_NET_C2))
#define WORK_REF (RUP16(NS_NET_C1 * C1_H * C1_H) + RUP16(P1_SIZE) + RUP16(NS_NET_C2 * C2_H * C2_H))
/* per-chunk-row floats: features and hidden; plus, for the images of a small batch whose
 * conv layers are split between threads (fewer images than threads), NHWC input + pool1 */
#define ARENA_ROW       (NS_NET_FEATURES + NS_NET_HIDDEN)
#define ARENA_SPLIT_ROW (IN_SIZE + P1_SIZE)

static ns_status ensure_scratch(ns_net *net, int workers, size_t rows, ns_error *err) {
    if (workers > net->work_workers || !net->work) {
        const size_t stride = net->isa ? WORK_SIMD : WORK_REF;
        ns_free_aligned(net->work);
        free(net->wtime);
        net->work_workers = 0;
        net->wtime = calloc((size_t)workers * NS_NET_LAYERS, sizeof(uint64_t));
        net->work = ns_alloc_aligned((size_t)workers * stride * sizeof(float), NS_ALIGN);
        if (!net->work || !net->wtime)
            return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate engine scratch for %d threads",
                                workers);
        net->work_stride = stride;
        net->work_workers = workers;
    }
    /* split mode only ever holds fewer images than threads */
    const size_t split = workers > 1 ? (rows < (size_t)workers ? rows : (size_t)workers - 1) : 0;
    if (rows > net->arena_rows || split > net->arena_split) {
        const size_t r = rows > net->arena_rows ? rows : net->arena_rows;
        const size_t sp = split > net->arena_split ? split : net->arena_split;
        ns_free_aligned(net->arena);
        net->arena_rows = net->arena_split = 0;
        net->arena =
            ns_alloc_aligned((r * ARENA_ROW + sp * ARENA_SPLIT_ROW) * sizeof(float), NS_ALIGN);
        if (!net->arena)
            return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate engine scratch for %zu images",
                                r);
        net->arena_rows = r;
        net->arena_split = sp;
    }
    return NS_OK;
}

/* ---- forward ------------------------------------------------------------------------------ */

typedef struct fwd {
    ns_net *net;
    const float *x; /* (m, 3, 32, 32) */
    size_t m;
    float *feat, *hid, *xin, *p1; /* arena parts */
    float *logits;
    int timers;
    /* fc task description */
    const packed *fc;
    const float *fc_in;
    float *fc_out;
    int fc_relu;
} fwd;

static inline uint64_t tnow(int on) {
    return on ? ns_now_ns() : 0;
}

static float *worker_work(ns_net *net, int worker) {
    return net->work + (size_t)worker * net->work_stride;
}

/* SIMD, one whole image per task */
static void task_image(void *vctx, size_t i, int worker) {
    fwd *f = vctx;
    ns_net *net = f->net;
    const ns_isa *isa = net->isa;
    float *xin = worker_work(net, worker), *p1 = xin + RUP16(IN_SIZE), *rb = p1 + RUP16(P1_SIZE);
    uint64_t t0 = tnow(f->timers);
    isa->to_nhwc(f->x + i * IN_SIZE, NS_NET_IN_C, IN_PIX, xin);
    conv_rows(isa, &net->c1, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W, xin, 1, 1, 0, P1_H, 0,
              net->c1.nb, p1, rb);
    uint64_t t1 = tnow(f->timers);
    conv_rows(isa, &net->c2, NS_NET_C1, P1_H, P1_H, p1, 1, 1, 0, P2_H, 0, net->c2.nb,
              f->feat + i * NS_NET_FEATURES, rb);
    if (f->timers) {
        uint64_t t2 = ns_now_ns();
        uint64_t *wt = net->wtime + (size_t)worker * NS_NET_LAYERS;
        wt[NS_LAYER_CONV1] += t1 - t0;
        wt[NS_LAYER_CONV2] += t2 - t1;
    }
}

/* SIMD, small batches: conv1 split by pooled-row groups */
#define C1_TASKS ((P1_H + C1_ROWS_PER_TASK - 1) / C1_ROWS_PER_TASK)
static void task_conv1_rows(void *vctx, size_t t, int worker) {
    fwd *f = vctx;
    ns_net *net = f->net;
    size_t i = t / C1_TASKS, r0 = (t % C1_TASKS) * C1_ROWS_PER_TASK;
    size_t r1 = r0 + C1_ROWS_PER_TASK < P1_H ? r0 + C1_ROWS_PER_TASK : P1_H;
    float *rb = worker_work(net, worker) + RUP16(IN_SIZE) + RUP16(P1_SIZE);
    conv_rows(net->isa, &net->c1, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W, f->xin + i * IN_SIZE, 1, 1,
              r0, r1, 0, net->c1.nb, f->p1 + i * P1_SIZE, rb);
}

/* SIMD, small batches: conv2 split by pooled rows x channel blocks */
static void task_conv2_rows(void *vctx, size_t t, int worker) {
    fwd *f = vctx;
    ns_net *net = f->net;
    const size_t nb = net->c2.nb, per_image = P2_H * nb;
    size_t i = t / per_image, r = (t % per_image) / nb, b = t % nb;
    float *rb = worker_work(net, worker) + RUP16(IN_SIZE) + RUP16(P1_SIZE);
    conv_rows(net->isa, &net->c2, NS_NET_C1, P1_H, P1_H, f->p1 + i * P1_SIZE, 1, 1, r, r + 1, b,
              b + 1, f->feat + i * NS_NET_FEATURES, rb);
}

/* fc layers: tasks over (row chunk, output block) */
static void task_fc(void *vctx, size_t t, int worker) {
    (void)worker;
    fwd *f = vctx;
    const packed *L = f->fc;
    size_t chunk = t / L->nb, b = t % L->nb;
    size_t m0 = chunk * FC_ROWS, m1 = m0 + FC_ROWS < f->m ? m0 + FC_ROWS : f->m;
    linear_block(f->net->isa, L, f->fc_in, m0, m1, b, f->fc_relu, f->fc_out);
}

/* ref: one whole image per task, every layer separately */
static void task_image_ref(void *vctx, size_t i, int worker) {
    fwd *f = vctx;
    ns_net *net = f->net;
    float *c1 = worker_work(net, worker), *p1 = c1 + RUP16(NS_NET_C1 * C1_H * C1_H),
          *c2 = p1 + RUP16(P1_SIZE);
    uint64_t *wt = net->wtime + (size_t)worker * NS_NET_LAYERS;
    uint64_t t[7];
    t[0] = tnow(f->timers);
    ns_ref_conv3x3(f->x + i * IN_SIZE, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W, net->w.conv1_w,
                   net->w.conv1_b, NS_NET_C1, 0, c1);
    t[1] = tnow(f->timers);
    ns_ref_relu(c1, NS_NET_C1 * C1_H * C1_H);
    t[2] = tnow(f->timers);
    ns_ref_maxpool2x2(c1, NS_NET_C1, C1_H, C1_H, p1);
    t[3] = tnow(f->timers);
    ns_ref_conv3x3(p1, NS_NET_C1, P1_H, P1_H, net->w.conv2_w, net->w.conv2_b, NS_NET_C2, 0, c2);
    t[4] = tnow(f->timers);
    ns_ref_relu(c2, NS_NET_C2 * C2_H * C2_H);
    t[5] = tnow(f->timers);
    /* pool2 writes (64,6,6) = PyTorch's flatten order: flatten is free */
    ns_ref_maxpool2x2(c2, NS_NET_C2, C2_H, C2_H, f->feat + i * NS_NET_FEATURES);
    t[6] = tnow(f->timers);
    if (f->timers)
        for (int l = 0; l < 6; l++) wt[l] += t[l + 1] - t[l];
}

static void task_fc_ref(void *vctx, size_t t, int worker) {
    (void)worker;
    fwd *f = vctx;
    size_t m0 = t * FC_ROWS, m1 = m0 + FC_ROWS < f->m ? m0 + FC_ROWS : f->m;
    const int first = f->fc == &f->net->f1;
    const float *w = first ? f->net->w.fc1_w : f->net->w.fc2_w;
    const float *b = first ? f->net->w.fc1_b : f->net->w.fc2_b;
    const size_t k = first ? NS_NET_FEATURES : NS_NET_HIDDEN;
    const size_t n = first ? NS_NET_HIDDEN : NS_NET_CLASSES;
    ns_ref_linear(f->fc_in + m0 * k, m1 - m0, k, w, b, n, 0, f->fc_out + m0 * n);
}

/* Add the wall time of a phase to its layers in proportion to the threads' time in each. */
static void apportion(ns_net *net, int workers, uint64_t wall, int l0, int l1) {
    uint64_t sum[NS_NET_LAYERS] = {0}, total = 0;
    for (int wk = 0; wk < workers; wk++)
        for (int l = l0; l < l1; l++) {
            sum[l] += net->wtime[(size_t)wk * NS_NET_LAYERS + l];
            net->wtime[(size_t)wk * NS_NET_LAYERS + l] = 0;
        }
    for (int l = l0; l < l1; l++) total += sum[l];
    if (total == 0) return;
    for (int l = l0; l < l1; l++)
        net->timers.ns[l] += (uint64_t)((double)wall * (double)sum[l] / (double)total);
}

static void run_fc(fwd *f, ns_pool *pool, int threads, const packed *L, const float *in, float *out,
                   int relu, int ref) {
    f->fc = L;
    f->fc_in = in;
    f->fc_out = out;
    f->fc_relu = relu;
    const size_t chunks = (f->m + FC_ROWS - 1) / FC_ROWS;
    if (ref)
        ns_pool_run(pool, task_fc_ref, f, chunks, threads);
    else
        ns_pool_run(pool, task_fc, f, chunks * L->nb, threads);
}

#define SMALL_TUNE_CALLS 8 /* measured calls per mode before choosing */

/* The small-batch mode for this call: while measuring, alternate; then the faster one. */
static int small_mode(ns_net *net, int threads) {
    if (net->small_threads != threads) {
        net->small_threads = threads;
        net->small_split = -1;
        net->small_calls = 0;
        net->small_best[0] = net->small_best[1] = UINT64_MAX;
    }
    return net->small_split >= 0 ? net->small_split : (int)(net->small_calls & 1u);
}

static void small_record(ns_net *net, int split, uint64_t ns) {
    if (ns < net->small_best[split]) net->small_best[split] = ns;
    if (++net->small_calls >= 2 * SMALL_TUNE_CALLS)
        net->small_split = net->small_best[1] < net->small_best[0];
}

static void forward_chunk(ns_net *net, ns_pool *pool, int threads, const float *x, size_t m,
                          float *logits) {
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.x = x;
    f.m = m;
    f.feat = net->arena;
    f.hid = f.feat + m * NS_NET_FEATURES;
    f.xin = f.feat + net->arena_rows * ARENA_ROW; /* split mode: m <= arena_split images */
    f.p1 = f.xin + net->arena_split * IN_SIZE;
    f.logits = logits;
    f.timers = net->timers.on;
    const int on = f.timers, ref = net->isa == NULL;
    uint64_t t0 = tnow(on);
    if (ref) {
        ns_pool_run(pool, task_image_ref, &f, m, threads);
        uint64_t t1 = tnow(on);
        if (on) apportion(net, threads, t1 - t0, NS_LAYER_CONV1, NS_LAYER_FLATTEN);
        run_fc(&f, pool, threads, &net->f1, f.feat, f.hid, 0, 1);
        uint64_t t2 = tnow(on);
        ns_ref_relu(f.hid, m * NS_NET_HIDDEN);
        uint64_t t3 = tnow(on);
        run_fc(&f, pool, 1, &net->f2, f.hid, logits, 0, 1);
        if (on) {
            uint64_t t4 = ns_now_ns();
            net->timers.ns[NS_LAYER_FC1] += t2 - t1;
            net->timers.ns[NS_LAYER_RELU3] += t3 - t2;
            net->timers.ns[NS_LAYER_FC2] += t4 - t3;
        }
        return;
    }
    const int small = threads > 1 && m < (size_t)threads;
    const int split = small && small_mode(net, threads);
    const int measuring = small && net->small_split < 0;
    const uint64_t ts = measuring ? ns_now_ns() : 0;
    if (split) {
        /* few images: split each image's conv layers between the threads */
        for (size_t i = 0; i < m; i++)
            net->isa->to_nhwc(x + i * IN_SIZE, NS_NET_IN_C, IN_PIX, f.xin + i * IN_SIZE);
        ns_pool_run(pool, task_conv1_rows, &f, m * C1_TASKS, threads);
        uint64_t t1 = tnow(on);
        ns_pool_run(pool, task_conv2_rows, &f, m * P2_H * net->c2.nb, threads);
        if (on) {
            uint64_t t2 = ns_now_ns();
            net->timers.ns[NS_LAYER_CONV1] += t1 - t0;
            net->timers.ns[NS_LAYER_CONV2] += t2 - t1;
        }
    } else {
        ns_pool_run(pool, task_image, &f, m, threads);
        if (on) apportion(net, threads, ns_now_ns() - t0, NS_LAYER_CONV1, NS_LAYER_FLATTEN);
    }
    if (measuring) small_record(net, split, ns_now_ns() - ts);
    uint64_t t2 = tnow(on);
    /* with fewer images than threads fc1 is a small GEMV: one pool wake-up costs about what
     * splitting it saves, so it runs on the calling thread */
    run_fc(&f, pool, m < (size_t)threads ? 1 : threads, &net->f1, f.feat, f.hid, 1, 0);
    uint64_t t3 = tnow(on);
    /* fc2 (5.5 K multiply-adds per image) runs on the calling thread: cheaper than waking
     * the pool for it */
    run_fc(&f, pool, 1, &net->f2, f.hid, logits, 0, 0);
    if (on) {
        uint64_t t4 = ns_now_ns();
        net->timers.ns[NS_LAYER_FC1] += t3 - t2;
        net->timers.ns[NS_LAYER_FC2] += t4 - t3;
    }
}

ns_status ns_net_forward(ns_net *net, ns_pool *pool, int max_threads, const float *x, size_t n,
                         float *logits, ns_error *err) {
    if (!net || !x || !logits)
        return ns_set_error(err, NS_ERR_INVALID, "ns_net_forward: NULL argument");
    if (n == 0) return NS_OK;
    pthread_mutex_lock(&net->mu);
    int threads = pool ? ns_pool_threads(pool) : 1;
    if (max_threads > 0 && max_threads < threads) threads = max_threads;
    const size_t rows = n < CHUNK_IMAGES ? n : CHUNK_IMAGES;
    ns_status st = ensure_scratch(net, threads, rows, err);
    if (st == NS_OK) {
        for (size_t off = 0; off < n; off += CHUNK_IMAGES) {
            const size_t m = n - off < CHUNK_IMAGES ? n - off : CHUNK_IMAGES;
            forward_chunk(net, pool, threads, x + off * IN_SIZE, m, logits + off * NS_NET_CLASSES);
        }
        ns_layer_timers_count_call(&net->timers);
    }
    pthread_mutex_unlock(&net->mu);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Layer-level entry points                                                                     */

ns_status ns_op_conv3x3(ns_kernel k, const float *x, size_t n, size_t cin, size_t h, size_t w,
                        const float *weight, const float *bias, size_t cout, int relu, int pool,
                        float *out, ns_error *err) {
    if (!x || !weight || !bias || !out)
        return ns_set_error(err, NS_ERR_INVALID, "conv3x3: NULL argument");
    if (cin == 0 || cout == 0 || h < (pool ? 4u : 3u) || w < (pool ? 4u : 3u))
        return ns_set_error(err, NS_ERR_INVALID,
                            "conv3x3: need cin, cout >= 1 and h, w >= %d, got cin=%zu cout=%zu "
                            "h=%zu w=%zu",
                            pool ? 4 : 3, cin, cout, h, w);
    if (!ns_kernel_available(k))
        return ns_set_error(err, NS_ERR_UNSUPPORTED, "kernel '%s' is not available",
                            ns_kernel_name(k));
    size_t in_sz, out_sz, tmp;
    const size_t oh = pool ? (h - 2) / 2 : h - 2, ow = pool ? (w - 2) / 2 : w - 2;
    if (ns_mul_overflow(cin, h * w, &in_sz) || ns_mul_overflow(cout, oh * ow, &out_sz) ||
        ns_mul_overflow(cout, (h - 2) * (w - 2), &tmp) ||
        ns_mul_overflow(tmp, sizeof(float), &tmp) || ns_mul_overflow(in_sz, sizeof(float), &tmp))
        return ns_set_error(err, NS_ERR_LIMIT, "conv3x3: sizes overflow");
    const ns_isa *isa = ns_kernel_isa(k);
    const size_t full = cout * (h - 2) * (w - 2);
    if (!isa) {
        float *c = malloc(full * sizeof(float));
        if (!c) return ns_set_error(err, NS_ERR_NOMEM, "conv3x3: out of memory");
        for (size_t i = 0; i < n; i++) {
            ns_ref_conv3x3(x + i * in_sz, cin, h, w, weight, bias, cout, relu, c);
            if (pool)
                ns_ref_maxpool2x2(c, cout, h - 2, w - 2, out + i * out_sz);
            else
                memcpy(out + i * out_sz, c, full * sizeof(float));
        }
        free(c);
        return NS_OK;
    }
    packed L;
    ns_status st = pack_conv(&L, isa, cout, cin, weight, bias, err);
    if (st != NS_OK) return st;
    float *xin = malloc(in_sz * sizeof(float));
    float *o = malloc(out_sz * sizeof(float));
    float *rb = malloc(2 * w * cout * sizeof(float));
    if (!xin || !o || !rb) st = ns_set_error(err, NS_ERR_NOMEM, "conv3x3: out of memory");
    for (size_t i = 0; st == NS_OK && i < n; i++) {
        isa->to_nhwc(x + i * in_sz, cin, h * w, xin);
        conv_rows(isa, &L, cin, h, w, xin, relu, pool, 0, oh, 0, L.nb, o, rb);
        to_nchw(o, cout, oh, ow, out + i * out_sz);
    }
    free(xin);
    free(o);
    free(rb);
    packed_free(&L);
    return st;
}

ns_status ns_op_linear(ns_kernel k, const float *x, size_t rows, size_t kdim, const float *weight,
                       const float *bias, size_t nout, int relu, float *out, ns_error *err) {
    if (!x || !weight || !bias || !out)
        return ns_set_error(err, NS_ERR_INVALID, "linear: NULL argument");
    if (kdim == 0 || nout == 0)
        return ns_set_error(err, NS_ERR_INVALID, "linear: need k, n >= 1, got k=%zu n=%zu", kdim,
                            nout);
    if (!ns_kernel_available(k))
        return ns_set_error(err, NS_ERR_UNSUPPORTED, "kernel '%s' is not available",
                            ns_kernel_name(k));
    const ns_isa *isa = ns_kernel_isa(k);
    if (!isa) {
        ns_ref_linear(x, rows, kdim, weight, bias, nout, relu, out);
        return NS_OK;
    }
    packed L;
    ns_status st = pack(&L, isa, kdim, nout, kdim, weight, NULL, bias, err);
    if (st != NS_OK) return st;
    for (size_t b = 0; b < L.nb; b++) linear_block(isa, &L, x, 0, rows, b, relu, out);
    packed_free(&L);
    return NS_OK;
}
