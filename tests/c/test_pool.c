/* C-level tests of the shared thread pool (csrc/core/pool.c): every task runs exactly once,
 * worker ids stay in range and are never shared by two running tasks, resizing works, and
 * concurrent runs from several threads are serialised safely.
 *
 * sources: common.c pool.c
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "pool.h"

#include "check.h"

typedef struct {
    atomic_int *hits;
    atomic_int busy[NS_POOL_MAX_THREADS];
    int nthreads;
    atomic_int bad_worker;
} ctx_t;

static void task(void *p, size_t i, int worker) {
    ctx_t *c = p;
    if (worker < 0 || worker >= c->nthreads)
        atomic_store(&c->bad_worker, 1);
    else if (atomic_fetch_add(&c->busy[worker], 1) != 0)
        atomic_store(&c->bad_worker, 1);
    atomic_fetch_add(&c->hits[i], 1);
    if (worker >= 0 && worker < c->nthreads) atomic_fetch_sub(&c->busy[worker], 1);
}

static void run_and_check(ns_pool *pool, size_t n, int max_threads) {
    ctx_t *c = calloc(1, sizeof *c);
    CHECK(c);
    c->hits = calloc(n ? n : 1, sizeof(atomic_int));
    CHECK(c->hits);
    c->nthreads = ns_pool_threads(pool);
    ns_pool_run(pool, task, c, n, max_threads);
    for (size_t i = 0; i < n; i++) CHECK(atomic_load(&c->hits[i]) == 1);
    CHECK(atomic_load(&c->bad_worker) == 0);
    free(c->hits);
    free(c);
}

static ns_pool *shared;

static void *concurrent_runner(void *arg) {
    (void)arg;
    for (int r = 0; r < 50; r++) run_and_check(shared, 97, 0);
    return NULL;
}

int main(void) {
    ns_error err;
    ns_pool *pool = NULL;
    CHECK(ns_pool_create(&pool, 1, &err) == NS_OK);
    CHECK(ns_pool_threads(pool) == 1);
    run_and_check(pool, 0, 0);
    run_and_check(pool, 1000, 0);
    for (int t = 2; t <= 5; t++) {
        CHECK(ns_pool_resize(pool, t, &err) == NS_OK);
        CHECK(ns_pool_threads(pool) == t);
        for (size_t n = 1; n < 40; n += 7) run_and_check(pool, n, 0);
        run_and_check(pool, 10000, 0);
        run_and_check(pool, 100, 2); /* capped at 2 threads */
    }
    CHECK(ns_pool_resize(pool, NS_POOL_MAX_THREADS + 1, &err) == NS_ERR_INVALID);
    CHECK(err.msg[0] != '\0');
    CHECK(ns_pool_resize(pool, 3, &err) == NS_OK);

    shared = pool;
    pthread_t th[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, concurrent_runner, NULL) == 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);

    ns_pool_destroy(pool);
    puts("test_pool: ok");
    return 0;
}
