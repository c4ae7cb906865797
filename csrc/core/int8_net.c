/* TrafficSignNet int8 inference: packing, the forward pass, threads, timers. See int8_net.h. */
#define _POSIX_C_SOURCE 200809L
#include "int8_net.h"
#include "layer_timers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QALIGN   64
#define QCHUNK   256 /* images per chunk: bounds the scratch */
#define QFC_ROWS 48  /* fc1 rows per task (fixed: results never depend on threads) */
#define IN_PIX   (NS_NET_IN_H * NS_NET_IN_W)
#define IN_SIZE  (NS_NET_IN_C * IN_PIX)
#define P1_H     ((NS_NET_IN_H - 2) / 2) /* 15 */
#define P1_SIZE  (P1_H * P1_H * NS_NET_C1)
#define C2_H     (P1_H - 2)
#define P2_H     (C2_H / 2) /* 6 */
#define MAX_CPAD 8          /* input channels padded to the K group (4 or 8) */

/* One layer packed for an ISA: nb blocks of k x nr weights, and nb * nr of each output table. */
typedef struct qpacked {
    int8_t *w;
    int32_t *bias, *mult, *shift;
    float *scale; /* last layer only */
    size_t nb, k, nout;
} qpacked;

static void qpacked_free(qpacked *p) {
    ns_free_aligned(p->w);
    free(p->bias);
    free(p->mult);
    free(p->shift);
    free(p->scale);
    memset(p, 0, sizeof *p);
}

/* Pack layer L (nout x src_k int8, row stride src_k) as k packed columns through map. */
static ns_status qpack(qpacked *p, const ns_qisa *isa, const ns_qlayer *L, size_t nout,
                       size_t src_k, size_t k, const size_t *map, ns_error *err) {
    memset(p, 0, sizeof *p);
    const size_t nr = isa->nr, nb = (nout + nr - 1) / nr, cols = nb * nr;
    p->w = ns_alloc_aligned(cols * k, QALIGN);
    p->bias = calloc(cols, sizeof(int32_t));
    p->mult = calloc(cols, sizeof(int32_t));
    p->shift = calloc(cols, sizeof(int32_t));
    p->scale = L->scale ? calloc(cols, sizeof(float)) : NULL;
    if (!p->w || !p->bias || !p->mult || !p->shift || (L->scale && !p->scale)) {
        qpacked_free(p);
        return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate packed int8 weights");
    }
    ns_qpack_weights(isa, nout, k, L->w, src_k, map, L->bias, p->w, p->bias);
    for (size_t o = 0; o < nout; o++) {
        p->mult[o] = L->scale ? 0 : L->mult[o];
        p->shift[o] = L->scale ? 0 : L->shift[o];
        if (L->scale) p->scale[o] = L->scale[o];
    }
    p->nb = nb;
    p->k = k;
    p->nout = nout;
    return NS_OK;
}

/* Conv (cout, cin, 3, 3) -> packed K order (ky, kx, ci) over cpad >= cin channels. */
static ns_status qpack_conv(qpacked *p, const ns_qisa *isa, const ns_qlayer *L, size_t cout,
                            size_t cin, size_t cpad, ns_error *err) {
    const size_t k = 9 * cpad;
    size_t *map = malloc(k * sizeof *map);
    if (!map) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate a packing map");
    for (size_t ky = 0; ky < 3; ky++)
        for (size_t kx = 0; kx < 3; kx++)
            for (size_t ci = 0; ci < cpad; ci++)
                map[(ky * 3 + kx) * cpad + ci] = ci < cin ? ci * 9 + ky * 3 + kx : SIZE_MAX;
    ns_status st = qpack(p, isa, L, cout, 9 * cin, k, map, err);
    free(map);
    return st;
}

static ns_qout qout_of(const qpacked *p, size_t b, size_t nr) {
    return (ns_qout){p->bias + b * nr, p->mult + b * nr, p->shift + b * nr,
                     p->scale ? p->scale + b * nr : NULL};
}

static size_t round_up(size_t v, size_t m) {
    return (v + m - 1) / m * m;
}

/* ------------------------------------------------------------------------------------------ */

struct ns_qnet {
    pthread_mutex_t mu;
    ns_qkernel kernel;
    const ns_qisa *isa; /* NULL: the NCHW reference */
    size_t cpad;        /* conv1 input channels as packed */
    /* copies of the parameters (PyTorch layouts) */
    float inv_scale;
    void *orig;
    ns_qlayer L[4];
    qpacked P[4];
    /* scratch */
    uint8_t *work; /* per worker */
    size_t work_stride;
    int work_workers;
    uint8_t *arena; /* per chunk: features + hidden */
    size_t arena_rows;
    uint64_t *wtime;        /* per worker: conv1, conv2 thread time */
    ns_layer_timers timers; /* guarded by mu */
};

/* (out channels, weights per channel) of conv1, conv2, fc1, fc2 */
static const size_t qdims[4][2] = {{NS_NET_C1, NS_NET_IN_C * 9},
                                   {NS_NET_C2, NS_NET_C1 * 9},
                                   {NS_NET_HIDDEN, NS_NET_FEATURES},
                                   {NS_NET_CLASSES, NS_NET_HIDDEN}};

static void qunpack_all(ns_qnet *net) {
    for (int i = 0; i < 4; i++) qpacked_free(&net->P[i]);
}

static ns_status qpack_all(ns_qnet *net, const ns_qisa *isa, ns_error *err) {
    if (!isa) return NS_OK;
    net->cpad = round_up(NS_NET_IN_C, isa->kgroup);
    ns_status st = qpack_conv(&net->P[0], isa, &net->L[0], NS_NET_C1, NS_NET_IN_C, net->cpad, err);
    if (st == NS_OK)
        st = qpack_conv(&net->P[1], isa, &net->L[1], NS_NET_C2, NS_NET_C1, NS_NET_C1, err);
    if (st == NS_OK) { /* fc1 reads NHWC features (y, x, c); PyTorch's flatten is c*36 + y*6 + x */
        size_t *map = malloc(NS_NET_FEATURES * sizeof *map);
        if (!map) st = ns_set_error(err, NS_ERR_NOMEM, "cannot allocate a packing map");
        for (size_t i = 0; map && i < NS_NET_FEATURES; i++)
            map[i] = (i % NS_NET_C2) * P2_H * P2_H + i / NS_NET_C2;
        if (map)
            st = qpack(&net->P[2], isa, &net->L[2], NS_NET_HIDDEN, NS_NET_FEATURES, NS_NET_FEATURES,
                       map, err);
        free(map);
    }
    if (st == NS_OK)
        st = qpack(&net->P[3], isa, &net->L[3], NS_NET_CLASSES, NS_NET_HIDDEN, NS_NET_HIDDEN, NULL,
                   err);
    if (st != NS_OK) qunpack_all(net);
    return st;
}

/* Check the requantization parameters and copy everything into one block. */
static ns_status qcopy_params(ns_qnet *net, const ns_qnet_params *p, ns_error *err) {
    const ns_qlayer *src[4] = {&p->conv1, &p->conv2, &p->fc1, &p->fc2};
    static const char *const names[4] = {"conv1", "conv2", "fc1", "fc2"};
    size_t bytes = 0;
    for (int i = 0; i < 4; i++) {
        const size_t n = qdims[i][0];
        if (!src[i]->w || !src[i]->bias || (i < 3 && (!src[i]->mult || !src[i]->shift)) ||
            (i == 3 && !src[i]->scale))
            return ns_set_error(err, NS_ERR_INVALID, "int8 layer %s: a parameter is NULL",
                                names[i]);
        for (size_t o = 0; i < 3 && o < n; o++)
            if (src[i]->mult[o] < (INT32_C(1) << 30) || src[i]->shift[o] < 0 ||
                src[i]->shift[o] > 30)
                return ns_set_error(err, NS_ERR_INVALID,
                                    "int8 layer %s channel %zu: multiplier %ld / shift %ld out of "
                                    "range ([2^30, 2^31), [0, 30])",
                                    names[i], o, (long)src[i]->mult[o], (long)src[i]->shift[o]);
        bytes += round_up(n * qdims[i][1], 16) + 4 * n * sizeof(int32_t);
    }
    uint8_t *b = ns_alloc_aligned(bytes, QALIGN);
    if (!b) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate int8 parameters");
    net->orig = b;
    for (int i = 0; i < 4; i++) {
        const size_t n = qdims[i][0], nw = n * qdims[i][1];
        int32_t *t = (int32_t *)(void *)(b + round_up(nw, 16));
        memcpy(b, src[i]->w, nw);
        memcpy(t, src[i]->bias, n * sizeof *t);
        if (i < 3) {
            memcpy(t + n, src[i]->mult, n * sizeof *t);
            memcpy(t + 2 * n, src[i]->shift, n * sizeof *t);
        } else {
            memcpy(t + 3 * n, src[i]->scale, n * sizeof(float));
        }
        net->L[i] =
            (ns_qlayer){(const int8_t *)b, t, i < 3 ? t + n : NULL, i < 3 ? t + 2 * n : NULL,
                        i == 3 ? (const float *)(const void *)(t + 3 * n) : NULL};
        b += round_up(nw, 16) + 4 * n * sizeof(int32_t);
    }
    net->inv_scale = p->input_inv_scale;
    return NS_OK;
}

ns_status ns_qnet_create(const ns_qnet_params *p, const char *kernel, ns_qnet **out,
                         ns_error *err) {
    if (!out || !p) return ns_set_error(err, NS_ERR_INVALID, "ns_qnet_create: NULL argument");
    *out = NULL;
    if (!(p->input_inv_scale > 0.0f) || p->input_inv_scale > 1e30f)
        return ns_set_error(err, NS_ERR_INVALID, "int8 input scale must be positive and finite");
    ns_qkernel k;
    ns_status st = ns_qkernel_resolve(kernel, &k, err);
    if (st != NS_OK) return st;
    ns_qnet *net = calloc(1, sizeof *net);
    if (!net) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate the int8 net");
    st = qcopy_params(net, p, err);
    net->kernel = k;
    net->isa = k == NS_QKERNEL_REF ? NULL : ns_qkernel_isa(k);
    if (st == NS_OK) st = qpack_all(net, net->isa, err);
    if (st != NS_OK) {
        ns_free_aligned(net->orig);
        free(net);
        return st;
    }
    pthread_mutex_init(&net->mu, NULL);
    *out = net;
    return NS_OK;
}

static void free_scratch(ns_qnet *net) {
    ns_free_aligned(net->work);
    ns_free_aligned(net->arena);
    free(net->wtime);
    net->work = net->arena = NULL;
    net->wtime = NULL;
    net->work_workers = 0;
    net->arena_rows = 0;
}

void ns_qnet_destroy(ns_qnet *net) {
    if (!net) return;
    qunpack_all(net);
    free_scratch(net);
    ns_free_aligned(net->orig);
    pthread_mutex_destroy(&net->mu);
    free(net);
}

ns_qkernel ns_qnet_kernel(const ns_qnet *net) {
    return net->kernel;
}

ns_status ns_qnet_set_kernel(ns_qnet *net, const char *kernel, ns_error *err) {
    ns_qkernel k;
    ns_status st = ns_qkernel_resolve(kernel, &k, err);
    if (st != NS_OK) return st;
    pthread_mutex_lock(&net->mu);
    if (k != net->kernel) {
        ns_qnet tmp;
        memset(&tmp, 0, sizeof tmp);
        memcpy(tmp.L, net->L, sizeof tmp.L);
        const ns_qisa *isa = k == NS_QKERNEL_REF ? NULL : ns_qkernel_isa(k);
        st = qpack_all(&tmp, isa, err);
        if (st == NS_OK) {
            qunpack_all(net);
            memcpy(net->P, tmp.P, sizeof net->P);
            net->cpad = tmp.cpad;
            net->kernel = k;
            net->isa = isa;
            free_scratch(net); /* scratch sizes differ between kernels */
        }
    }
    pthread_mutex_unlock(&net->mu);
    return st;
}

const char *ns_qnet_layer_kernel(const ns_qnet *net, int layer) {
    switch (layer) {
    case NS_LAYER_CONV1:
    case NS_LAYER_CONV2:
        return net->isa ? net->isa->conv_pool_name : "ns_qref_conv3x3";
    case NS_LAYER_POOL1:
    case NS_LAYER_POOL2:
        return net->isa ? NULL : "ns_qref_maxpool2x2";
    case NS_LAYER_FC1:
    case NS_LAYER_FC2:
        return net->isa ? net->isa->gemm_name : "ns_qref_linear";
    default:
        return NULL; /* ReLU is the requantization's lower clamp; flatten is free */
    }
}

/* ---- scratch ----------------------------------------------------------------------------- */

/* Per worker: SIMD: quantized NHWC input (IN_PIX * cpad) + pool1 output + a pair-layout
 * buffer; ref: NCHW input,
 * conv1 output, pool1 output, conv2 output. */
static size_t work_bytes(const ns_qnet *net) {
    if (net->isa) { /* + the pair-layout copy of conv1's input, the larger one; fc1's row
                       pairs (paired ISAs) reuse the scratch between the conv and fc phases */
        const size_t conv = round_up(IN_PIX * MAX_CPAD, QALIGN) + round_up(P1_SIZE, QALIGN) +
                            round_up(IN_PIX * 2 * MAX_CPAD, QALIGN);
        const size_t fc = (QFC_ROWS + 1) * NS_NET_FEATURES;
        return conv > fc ? conv : fc;
    }
    return round_up(IN_PIX * NS_NET_IN_C * 2, QALIGN) +
           round_up(NS_NET_C1 * (NS_NET_IN_H - 2) * (NS_NET_IN_W - 2), QALIGN) +
           round_up(P1_SIZE, QALIGN) + round_up(NS_NET_C2 * C2_H * C2_H, QALIGN);
}

static ns_status ensure_scratch(ns_qnet *net, int workers, size_t rows, ns_error *err) {
    if (workers > net->work_workers) {
        ns_free_aligned(net->work);
        free(net->wtime);
        net->work_stride = work_bytes(net);
        net->work = ns_alloc_aligned((size_t)workers * net->work_stride, QALIGN);
        net->wtime = calloc((size_t)workers * 2, sizeof(uint64_t));
        net->work_workers = net->work && net->wtime ? workers : 0;
        if (!net->work_workers)
            return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate int8 engine scratch");
    }
    if (rows > net->arena_rows) {
        ns_free_aligned(net->arena);
        /* features, hidden, and hidden as row pairs (paired ISAs' fc2 input) */
        net->arena = ns_alloc_aligned(
            rows * (NS_NET_FEATURES + NS_NET_HIDDEN) + (rows + 1) * NS_NET_HIDDEN, QALIGN);
        net->arena_rows = net->arena ? rows : 0;
        if (!net->arena)
            return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate int8 engine scratch");
    }
    return NS_OK;
}

/* ---- forward ----------------------------------------------------------------------------- */

typedef struct qfwd {
    ns_qnet *net;
    const float *x;
    size_t m;
    uint8_t *feat, *hid;
    float *logits;
    int timers;
} qfwd;

/* Conv 3x3 + requant + 2x2 pool of one NHWC uint8 image in (h, w, cin) with packed layer P
 * into out (ph, pw, cout), pooled rows [r0, r1). A paired ISA (I8MM) reads the image in the pair
 * layout, written first into pairbuf (h * w * 2 * cin bytes). */
static void qconv_pool_rows(const ns_qisa *isa, const qpacked *P, size_t cin, size_t h, size_t w,
                            const uint8_t *in, size_t r0, size_t r1, uint8_t *out,
                            uint8_t *pairbuf) {
    const size_t nr = isa->nr, cout = P->nout, pw = (w - 2) / 2;
    size_t as = cin, rs = w * cin;
    if (isa->paired) {
        ns_qpair_image(in, h, w, cin, pairbuf);
        in = pairbuf;
        as = 2 * cin;
        rs = w * 2 * cin;
    }
    for (size_t py = r0; py < r1; py++)
        for (size_t b = 0; b < P->nb; b++) {
            const size_t nc = cout - b * nr < nr ? cout - b * nr : nr;
            const ns_qout q = qout_of(P, b, nr);
            isa->conv_pool(pw, nc, 3 * cin, in + 2 * py * rs, as, rs, P->w + b * P->k * nr, &q,
                           out + py * pw * cout + b * nr, cout);
        }
}

static void task_qimage(void *vctx, size_t i, int worker) {
    qfwd *f = vctx;
    ns_qnet *net = f->net;
    const ns_qisa *isa = net->isa;
    uint8_t *xin = net->work + (size_t)worker * net->work_stride;
    uint8_t *p1 = xin + round_up(IN_PIX * MAX_CPAD, QALIGN);
    uint8_t *pairs = p1 + round_up(P1_SIZE, QALIGN); /* paired ISAs' conv input */
    const uint64_t t0 = f->timers ? ns_now_ns() : 0;
    ns_qinput_nhwc(f->x + i * IN_SIZE, NS_NET_IN_C, IN_PIX, net->inv_scale, net->cpad,
                   isa->s8_act ? 0x80 : 0, xin);
    qconv_pool_rows(isa, &net->P[0], net->cpad, NS_NET_IN_H, NS_NET_IN_W, xin, 0, P1_H, p1, pairs);
    const uint64_t t1 = f->timers ? ns_now_ns() : 0;
    qconv_pool_rows(isa, &net->P[1], NS_NET_C1, P1_H, P1_H, p1, 0, P2_H,
                    f->feat + i * NS_NET_FEATURES, pairs);
    if (f->timers) {
        net->wtime[2 * worker] += t1 - t0;
        net->wtime[2 * worker + 1] += ns_now_ns() - t1;
    }
}

static void task_qimage_ref(void *vctx, size_t i, int worker) {
    qfwd *f = vctx;
    ns_qnet *net = f->net;
    uint8_t *nhwc = net->work + (size_t)worker * net->work_stride;
    uint8_t *x = nhwc + IN_PIX * NS_NET_IN_C;
    uint8_t *c1 = nhwc + round_up(IN_PIX * NS_NET_IN_C * 2, QALIGN);
    uint8_t *p1 = c1 + round_up(NS_NET_C1 * (NS_NET_IN_H - 2) * (NS_NET_IN_W - 2), QALIGN);
    uint8_t *c2 = p1 + round_up(P1_SIZE, QALIGN);
    const uint64_t t0 = f->timers ? ns_now_ns() : 0;
    ns_qinput_nhwc(f->x + i * IN_SIZE, NS_NET_IN_C, IN_PIX, net->inv_scale, NS_NET_IN_C, 0, nhwc);
    for (size_t c = 0; c < NS_NET_IN_C; c++) /* NHWC -> NCHW */
        for (size_t p = 0; p < IN_PIX; p++) x[c * IN_PIX + p] = nhwc[p * NS_NET_IN_C + c];
    const ns_qlayer *L = net->L;
    ns_qref_conv3x3(x, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W, L[0].w, L[0].bias, L[0].mult,
                    L[0].shift, NS_NET_C1, c1);
    ns_qref_maxpool2x2(c1, NS_NET_C1, NS_NET_IN_H - 2, NS_NET_IN_W - 2, p1);
    const uint64_t t1 = f->timers ? ns_now_ns() : 0;
    ns_qref_conv3x3(p1, NS_NET_C1, P1_H, P1_H, L[1].w, L[1].bias, L[1].mult, L[1].shift, NS_NET_C2,
                    c2);
    /* pool2 writes (64,6,6): PyTorch's flatten order, fc1's unpermuted weights apply */
    ns_qref_maxpool2x2(c2, NS_NET_C2, C2_H, C2_H, f->feat + i * NS_NET_FEATURES);
    if (f->timers) {
        net->wtime[2 * worker] += t1 - t0;
        net->wtime[2 * worker + 1] += ns_now_ns() - t1;
    }
}

static void task_qfc1(void *vctx, size_t t, int worker) {
    qfwd *f = vctx;
    ns_qnet *net = f->net;
    const size_t m0 = t * QFC_ROWS, m1 = m0 + QFC_ROWS < f->m ? m0 + QFC_ROWS : f->m;
    const ns_qlayer *L = &net->L[2];
    if (!net->isa) {
        ns_qref_linear(f->feat + m0 * NS_NET_FEATURES, m1 - m0, NS_NET_FEATURES, L->w, L->bias,
                       L->mult, L->shift, NULL, NS_NET_HIDDEN, f->hid + m0 * NS_NET_HIDDEN, NULL);
        return;
    }
    const qpacked *P = &net->P[2];
    const size_t nr = net->isa->nr;
    const uint8_t *x = f->feat + m0 * P->k;
    size_t as = P->k;
    if (net->isa->paired) { /* QFC_ROWS rows fit the worker's scratch as row pairs */
        uint8_t *pairs = net->work + (size_t)worker * net->work_stride;
        ns_qpair_rows(x, m1 - m0, P->k, pairs);
        x = pairs;
        as = 2 * P->k;
    }
    for (size_t b = 0; b < P->nb; b++) {
        const size_t nc = P->nout - b * nr < nr ? P->nout - b * nr : nr;
        const ns_qout q = qout_of(P, b, nr);
        net->isa->gemm(m1 - m0, nc, 1, P->k, x, as, 0, P->w + b * P->k * nr, &q,
                       f->hid + m0 * NS_NET_HIDDEN + b * nr, NS_NET_HIDDEN);
    }
}

static void qfc2(qfwd *f) {
    ns_qnet *net = f->net;
    const ns_qlayer *L = &net->L[3];
    if (!net->isa) {
        ns_qref_linear(f->hid, f->m, NS_NET_HIDDEN, L->w, L->bias, NULL, NULL, L->scale,
                       NS_NET_CLASSES, NULL, f->logits);
        return;
    }
    const qpacked *P = &net->P[3];
    const size_t nr = net->isa->nr;
    const uint8_t *x = f->hid;
    size_t as = P->k;
    if (net->isa->paired) {
        uint8_t *pairs = f->hid + f->m * NS_NET_HIDDEN; /* the arena's pair space */
        ns_qpair_rows(x, f->m, P->k, pairs);
        x = pairs;
        as = 2 * P->k;
    }
    for (size_t b = 0; b < P->nb; b++) {
        const size_t nc = P->nout - b * nr < nr ? P->nout - b * nr : nr;
        const ns_qout q = qout_of(P, b, nr);
        net->isa->gemm(f->m, nc, 1, P->k, x, as, 0, P->w + b * P->k * nr, &q, f->logits + b * nr,
                       NS_NET_CLASSES);
    }
}

/* Split a phase's wall time between conv1 and conv2 in proportion to the workers' time. */
static void apportion_conv(ns_qnet *net, int workers, uint64_t wall) {
    uint64_t s[2] = {0, 0};
    for (int w = 0; w < workers; w++)
        for (int l = 0; l < 2; l++) {
            s[l] += net->wtime[2 * w + l];
            net->wtime[2 * w + l] = 0;
        }
    if (s[0] + s[1] == 0) return;
    const double share = (double)s[0] / (double)(s[0] + s[1]);
    net->timers.ns[NS_LAYER_CONV1] += (uint64_t)((double)wall * share);
    net->timers.ns[NS_LAYER_CONV2] += wall - (uint64_t)((double)wall * share);
}

static void qforward_chunk(ns_qnet *net, ns_pool *pool, int threads, const float *x, size_t m,
                           float *logits) {
    qfwd f = {net, x, m, net->arena, net->arena + m * NS_NET_FEATURES, logits, net->timers.on};
    const uint64_t t0 = f.timers ? ns_now_ns() : 0;
    ns_pool_run(pool, net->isa ? task_qimage : task_qimage_ref, &f, m, threads);
    const uint64_t t1 = f.timers ? ns_now_ns() : 0;
    /* fewer images than threads: fc1 is a small GEMV, cheaper than a pool wake-up */
    ns_pool_run(pool, task_qfc1, &f, (m + QFC_ROWS - 1) / QFC_ROWS,
                m < (size_t)threads ? 1 : threads);
    const uint64_t t2 = f.timers ? ns_now_ns() : 0;
    qfc2(&f);
    if (f.timers) {
        apportion_conv(net, threads, t1 - t0);
        net->timers.ns[NS_LAYER_FC1] += t2 - t1;
        net->timers.ns[NS_LAYER_FC2] += ns_now_ns() - t2;
    }
}

ns_status ns_qnet_forward(ns_qnet *net, ns_pool *pool, int max_threads, const float *x, size_t n,
                          float *logits, ns_error *err) {
    if (!net || !x || !logits)
        return ns_set_error(err, NS_ERR_INVALID, "ns_qnet_forward: NULL argument");
    if (n == 0) return NS_OK;
    pthread_mutex_lock(&net->mu);
    int threads = pool ? ns_pool_threads(pool) : 1;
    if (max_threads > 0 && max_threads < threads) threads = max_threads;
    ns_status st = ensure_scratch(net, threads, n < QCHUNK ? n : QCHUNK, err);
    for (size_t off = 0; st == NS_OK && off < n; off += QCHUNK) {
        const size_t m = n - off < QCHUNK ? n - off : QCHUNK;
        qforward_chunk(net, pool, threads, x + off * IN_SIZE, m, logits + off * NS_NET_CLASSES);
    }
    if (st == NS_OK) ns_layer_timers_count_call(&net->timers);
    pthread_mutex_unlock(&net->mu);
    return st;
}

/* ---- timers ------------------------------------------------------------------------------ */

void ns_qnet_enable_timers(ns_qnet *net, int on) {
    pthread_mutex_lock(&net->mu);
    net->timers.on = on != 0;
    pthread_mutex_unlock(&net->mu);
}

int ns_qnet_timers_enabled(const ns_qnet *net) {
    return net->timers.on;
}

void ns_qnet_read_timers(ns_qnet *net, uint64_t ns[NS_NET_LAYERS], uint64_t calls[NS_NET_LAYERS]) {
    pthread_mutex_lock(&net->mu);
    ns_layer_timers_read(&net->timers, ns, calls);
    pthread_mutex_unlock(&net->mu);
}

void ns_qnet_reset_timers(ns_qnet *net) {
    pthread_mutex_lock(&net->mu);
    ns_layer_timers_reset(&net->timers);
    pthread_mutex_unlock(&net->mu);
}

/* ---- layer-level entry points ------------------------------------------------------------ */

static ns_status qop_check(ns_qkernel k, const ns_qisa **isa, ns_error *err) {
    if (!ns_qkernel_available(k))
        return ns_set_error(err, NS_ERR_UNSUPPORTED, "int8 kernel '%s' is not available",
                            ns_qkernel_name(k));
    *isa = k == NS_QKERNEL_REF ? NULL : ns_qkernel_isa(k);
    return NS_OK;
}

/* One image through the SIMD conv path: NCHW -> NHWC (cpad channels) -> conv (+ pool) -> NCHW. */
static void qop_conv_image(const ns_qisa *isa, const qpacked *P, const uint8_t *x, size_t cin,
                           size_t cpad, size_t h, size_t w, int pool, uint8_t *xin, uint8_t *o,
                           uint8_t *out, uint8_t *pairbuf) {
    const size_t cout = P->nout, nr = isa->nr, oh = pool ? (h - 2) / 2 : h - 2,
                 ow = pool ? (w - 2) / 2 : w - 2;
    const uint8_t flip = isa->s8_act ? 0x80 : 0; /* the ISA's activation storage */
    for (size_t p = 0; p < h * w; p++)
        for (size_t c = 0; c < cpad; c++)
            xin[p * cpad + c] = (c < cin ? x[c * h * w + p] : 0) ^ flip;
    if (pool) {
        qconv_pool_rows(isa, P, cpad, h, w, xin, 0, oh, o, pairbuf);
    } else { /* rows are the output pixels; a paired ISA reads pixel pairs of the pair image */
        const uint8_t *a = xin;
        size_t as = cpad, rs = w * cpad;
        if (isa->paired) {
            ns_qpair_image(xin, h, w, cpad, pairbuf);
            a = pairbuf;
            as = 4 * cpad; /* pixel pair (2p, 2p+1) = pair block 2p */
            rs = w * 2 * cpad;
        }
        for (size_t y = 0; y < oh; y++)
            for (size_t b = 0; b < P->nb; b++) {
                const size_t nc = cout - b * nr < nr ? cout - b * nr : nr;
                const ns_qout q = qout_of(P, b, nr);
                isa->gemm(ow, nc, 3, 3 * cpad, a + y * rs, as, rs, P->w + b * P->k * nr, &q,
                          o + y * ow * cout + b * nr, cout);
            }
    }
    for (size_t c = 0; c < cout; c++)
        for (size_t p = 0; p < oh * ow; p++) out[c * oh * ow + p] = o[p * cout + c] ^ flip;
}

ns_status ns_qop_conv3x3(ns_qkernel k, const uint8_t *x, size_t n, size_t cin, size_t h, size_t w,
                         const ns_qlayer *L, size_t cout, int pool, uint8_t *out, ns_error *err) {
    const ns_qisa *isa;
    ns_status st = qop_check(k, &isa, err);
    if (st != NS_OK) return st;
    if (!x || !L || !out || cin == 0 || cout == 0 || h < 4 || w < 4 || cin > 4096 || h > 4096 ||
        w > 4096 || cout > 4096)
        return ns_set_error(err, NS_ERR_INVALID, "int8 conv3x3: bad arguments");
    const size_t oh = pool ? (h - 2) / 2 : h - 2, ow = pool ? (w - 2) / 2 : w - 2;
    const size_t full = cout * (h - 2) * (w - 2);
    if (!isa) {
        uint8_t *c = malloc(full);
        if (!c) return ns_set_error(err, NS_ERR_NOMEM, "int8 conv3x3: out of memory");
        for (size_t i = 0; i < n; i++) {
            ns_qref_conv3x3(x + i * cin * h * w, cin, h, w, L->w, L->bias, L->mult, L->shift, cout,
                            pool ? c : out + i * full);
            if (pool) ns_qref_maxpool2x2(c, cout, h - 2, w - 2, out + i * cout * oh * ow);
        }
        free(c);
        return NS_OK;
    }
    const size_t cpad = round_up(cin, isa->kgroup);
    qpacked P;
    st = qpack_conv(&P, isa, L, cout, cin, cpad, err);
    if (st != NS_OK) return st;
    uint8_t *xin = malloc(h * w * cpad + 64), *o = malloc(full), *pairs = malloc(2 * h * w * cpad);
    if (!xin || !o || !pairs) st = ns_set_error(err, NS_ERR_NOMEM, "int8 conv3x3: out of memory");
    for (size_t i = 0; st == NS_OK && i < n; i++)
        qop_conv_image(isa, &P, x + i * cin * h * w, cin, cpad, h, w, pool, xin, o,
                       out + i * cout * oh * ow, pairs);
    free(pairs);
    free(xin);
    free(o);
    qpacked_free(&P);
    return st;
}

ns_status ns_qop_linear(ns_qkernel k, const uint8_t *x, size_t rows, size_t kdim,
                        const ns_qlayer *L, size_t nout, uint8_t *out, float *fout, ns_error *err) {
    const ns_qisa *isa;
    ns_status st = qop_check(k, &isa, err);
    if (st != NS_OK) return st;
    if (!x || !L || (L->scale ? !fout : !out) || kdim == 0 || nout == 0 || kdim > (1u << 20) ||
        nout > 65536)
        return ns_set_error(err, NS_ERR_INVALID, "int8 linear: bad arguments");
    if (!isa) {
        ns_qref_linear(x, rows, kdim, L->w, L->bias, L->mult, L->shift, L->scale, nout, out, fout);
        return NS_OK;
    }
    const size_t kp = round_up(kdim, isa->kgroup);
    size_t *map = malloc(kp * sizeof *map);
    uint8_t *xp = malloc(rows * kp + 64);
    if (!map || !xp) {
        free(map);
        free(xp);
        return ns_set_error(err, NS_ERR_NOMEM, "int8 linear: out of memory");
    }
    for (size_t i = 0; i < kp; i++) map[i] = i < kdim ? i : SIZE_MAX;
    const uint8_t flip = isa->s8_act ? 0x80 : 0; /* the ISA's activation storage */
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < kp; i++) xp[r * kp + i] = (i < kdim ? x[r * kdim + i] : 0) ^ flip;
    qpacked P;
    st = qpack(&P, isa, L, nout, kdim, kp, map, err);
    uint8_t *pairs = isa->paired ? malloc((rows + 1) * kp + 64) : NULL;
    if (isa->paired && !pairs && st == NS_OK) {
        qpacked_free(&P);
        st = ns_set_error(err, NS_ERR_NOMEM, "int8 linear: out of memory");
    }
    if (pairs) ns_qpair_rows(xp, rows, kp, pairs);
    for (size_t b = 0; st == NS_OK && b < P.nb; b++) {
        const size_t nr = isa->nr, nc = nout - b * nr < nr ? nout - b * nr : nr;
        const ns_qout q = qout_of(&P, b, nr);
        isa->gemm(rows, nc, 1, kp, pairs ? pairs : xp, pairs ? 2 * kp : kp, 0, P.w + b * kp * nr,
                  &q, L->scale ? (void *)(fout + b * nr) : (void *)(out + b * nr), nout);
    }
    free(pairs);
    if (st == NS_OK) qpacked_free(&P);
    for (size_t i = 0; flip && !L->scale && st == NS_OK && i < rows * nout; i++) out[i] ^= flip;
    free(map);
    free(xp);
    return st;
}
