/* C-level engine test: every available SIMD kernel against the scalar reference, per layer on
 * odd shapes and for the whole net (batches 1, 3, 17, 29), thread-count invariance, and the
 * kernel-name errors. No Python.
 *
 * sources: common.c pool.c net.c kernels/ref.c kernels/dispatch.c
 *
 * Run by tests/test_c_core.py with the host compiler (ref kernel only, under ASan/UBSan). The
 * SIMD kernels are checked by building with them, e.g. for AArch64 under qemu-user:
 *   aarch64-linux-gnu-gcc -std=c11 -O2 -static -DNS_HAVE_NEON -Icsrc -Icsrc/core \
 *     tests/c/test_net.c csrc/core/{common,pool,net}.c \
 *     csrc/core/kernels/{ref,dispatch,neon}.c -o /tmp/test_net -lpthread -lm
 *   qemu-aarch64 /tmp/test_net
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#include "check.h"

static unsigned long long rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}
static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

static void test_conv(ns_kernel k) {
    static const size_t shapes[][5] = {/* n, cin, h, w, cout */
                                       {1, 3, 32, 32, 32}, {2, 32, 15, 15, 64}, {1, 1, 3, 3, 1},
                                       {3, 5, 7, 9, 13},   {1, 3, 32, 17, 43},  {2, 7, 11, 30, 70},
                                       {1, 16, 4, 4, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t n = shapes[s][0], cin = shapes[s][1], h = shapes[s][2], w = shapes[s][3],
                     cout = shapes[s][4];
        float *x = rand_buf(n * cin * h * w, 1.0f);
        float *wt = rand_buf(cout * cin * 9, 1.0f / sqrtf((float)(9 * cin)));
        float *b = rand_buf(cout, 0.1f);
        const size_t osz = n * cout * (h - 2) * (w - 2);
        float *o1 = malloc(osz * sizeof(float)), *o2 = malloc(osz * sizeof(float));
        for (int mode = 0; mode < 3; mode++) {
            const int relu = mode > 0, pool = mode == 2;
            if (pool && (h < 4 || w < 4)) continue;
            ns_error err;
            ns_status a =
                ns_op_conv3x3(NS_KERNEL_REF, x, n, cin, h, w, wt, b, cout, relu, pool, o1, &err);
            ns_status c = ns_op_conv3x3(k, x, n, cin, h, w, wt, b, cout, relu, pool, o2, &err);
            EXPECT(a == NS_OK && c == NS_OK, "conv status %d %d", a, c);
            const size_t m = pool ? n * cout * ((h - 2) / 2) * ((w - 2) / 2) : osz;
            double d = max_diff(o1, o2, m);
            EXPECT(d <= 1e-4, "%s conv n%zu cin%zu %zux%zu cout%zu relu%d pool%d: max diff %g",
                   ns_kernel_name(k), n, cin, h, w, cout, relu, pool, d);
        }
        free(x), free(wt), free(b), free(o1), free(o2);
    }
}

static void test_linear(ns_kernel k) {
    static const size_t shapes[][3] = {{1, 2304, 128}, {64, 2304, 128}, {17, 128, 43},
                                       {1, 1, 1},      {13, 5, 33},     {100, 31, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t rows = shapes[s][0], kd = shapes[s][1], no = shapes[s][2];
        float *x = rand_buf(rows * kd, 1.0f), *w = rand_buf(no * kd, 1.0f / sqrtf((float)kd));
        float *b = rand_buf(no, 0.5f);
        float *o1 = malloc(rows * no * sizeof(float)), *o2 = malloc(rows * no * sizeof(float));
        for (int relu = 0; relu < 2; relu++) {
            ns_error err;
            ns_status a = ns_op_linear(NS_KERNEL_REF, x, rows, kd, w, b, no, relu, o1, &err);
            ns_status c = ns_op_linear(k, x, rows, kd, w, b, no, relu, o2, &err);
            EXPECT(a == NS_OK && c == NS_OK, "linear status %d %d", a, c);
            double d = max_diff(o1, o2, rows * no);
            EXPECT(d <= 1e-4, "%s linear %zux%zu -> %zu relu%d: max diff %g", ns_kernel_name(k),
                   rows, kd, no, relu, d);
        }
        free(x), free(w), free(b), free(o1), free(o2);
    }
}

static void test_net(ns_kernel k, ns_pool *pool, size_t nbatches) {
    static const size_t sizes[8] = {32 * 27, 32, 64 * 288, 64, 128 * 2304, 128, 43 * 128, 43};
    static const float scales[8] = {0.19f, 0.19f, 0.059f, 0.059f, 0.021f, 0.021f, 0.088f, 0.088f};
    float *wb[8];
    for (int i = 0; i < 8; i++) wb[i] = rand_buf(sizes[i], scales[i]);
    ns_net_weights w = {wb[0], wb[1], wb[2], wb[3], wb[4], wb[5], wb[6], wb[7]};
    ns_net *ref = NULL, *net = NULL;
    ns_error err;
    EXPECT(ns_net_create(&w, "ref", &ref, &err) == NS_OK, "create ref: %s", err.msg);
    EXPECT(ns_net_create(&w, ns_kernel_name(k), &net, &err) == NS_OK, "create: %s", err.msg);
    if (!ref || !net) return;
    EXPECT(ns_net_kernel(net) == k, "kernel");
    static const size_t batches[] = {1, 3, 17, 29};
    float *x = rand_buf(64 * 3 * 32 * 32, 1.0f);
    float *a = malloc(64 * 43 * sizeof(float)), *b = malloc(64 * 43 * sizeof(float)),
          *c = malloc(64 * 43 * sizeof(float));
    for (size_t i = 0; i < nbatches; i++) {
        const size_t n = batches[i];
        EXPECT(ns_net_forward(ref, NULL, 1, x, n, a, &err) == NS_OK, "forward ref: %s", err.msg);
        EXPECT(ns_net_forward(net, NULL, 1, x, n, b, &err) == NS_OK, "forward: %s", err.msg);
        EXPECT(ns_net_forward(net, pool, 0, x, n, c, &err) == NS_OK, "forward pool: %s", err.msg);
        double d = max_diff(a, b, n * 43);
        EXPECT(d <= 1e-4, "%s net batch %zu: max diff vs ref %g", ns_kernel_name(k), n, d);
        EXPECT(memcmp(b, c, n * 43 * sizeof(float)) == 0, "%s batch %zu: 1 vs 3 threads differ",
               ns_kernel_name(k), n);
    }
    /* repack to ref and back gives the same result */
    EXPECT(ns_net_forward(ref, NULL, 1, x, 17, a, &err) == NS_OK, "forward");
    EXPECT(ns_net_forward(net, NULL, 1, x, 17, b, &err) == NS_OK, "forward");
    EXPECT(ns_net_set_kernel(net, "ref", &err) == NS_OK, "set ref");
    EXPECT(ns_net_forward(net, pool, 0, x, 17, c, &err) == NS_OK, "forward");
    EXPECT(max_diff(a, c, 17 * 43) <= 1e-4, "after repack to ref");
    EXPECT(ns_net_set_kernel(net, ns_kernel_name(k), &err) == NS_OK, "set back");
    EXPECT(ns_net_forward(net, pool, 0, x, 17, c, &err) == NS_OK, "forward");
    EXPECT(memcmp(b, c, 17 * 43 * sizeof(float)) == 0, "after repack back");
    /* timers */
    ns_net_enable_timers(net, 1);
    EXPECT(ns_net_forward(net, pool, 0, x, 29, c, &err) == NS_OK, "forward");
    uint64_t t[NS_NET_LAYERS], calls[NS_NET_LAYERS];
    ns_net_read_timers(net, t, calls);
    EXPECT(calls[NS_LAYER_FC2] == 1 && t[NS_LAYER_CONV2] > 0, "timers");
    ns_net_destroy(ref);
    ns_net_destroy(net);
    for (int i = 0; i < 8; i++) free(wb[i]);
    free(x), free(a), free(b), free(c);
}

int main(void) {
    ns_error err;
    ns_kernel k;
    EXPECT(ns_kernel_resolve("bogus", &k, &err) == NS_ERR_INVALID, "bogus name");
    EXPECT(strstr(err.msg, "ref") != NULL, "message lists kernels: %s", err.msg);
#if defined(__aarch64__)
    EXPECT(ns_kernel_resolve("avx512", &k, &err) == NS_ERR_UNSUPPORTED, "avx512 on arm");
#else
    EXPECT(ns_kernel_resolve("neon", &k, &err) == NS_ERR_UNSUPPORTED, "neon on x86");
#endif
    ns_pool *pool = NULL;
    EXPECT(ns_pool_create(&pool, 3, &err) == NS_OK, "pool");
    int simd = 0;
    for (int i = NS_KERNEL_REF + 1; i < NS_KERNEL_COUNT; i++) {
        if (!ns_kernel_available((ns_kernel)i)) continue;
        printf("kernel %s\n", ns_kernel_name((ns_kernel)i));
        test_conv((ns_kernel)i);
        test_linear((ns_kernel)i);
        test_net((ns_kernel)i, pool, 4);
        simd++;
    }
    if (!simd) { /* built without SIMD kernels: still run the ref paths (under sanitizers) */
        printf("kernel ref only\n");
        test_net(NS_KERNEL_REF, pool, 2); /* batches 1 and 3: the scalar net is slow under ASan */
    }
    ns_pool_destroy(pool);
    if (failures) {
        printf("test_net: %d failures\n", failures);
        return 1;
    }
    printf("test_net: ok\n");
    return 0;
}
