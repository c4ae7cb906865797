#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct ns_pool {
    int nthreads;             /* total, including the calling thread */
    pthread_t *threads;       /* nthreads - 1 workers */
    pid_t pid;                /* process that owns the workers */
    pthread_mutex_t run_lock; /* serialises runs and resizes */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned long generation;
    int shutdown;
    /* the current run */
    ns_task_fn fn;
    void *ctx;
    size_t ntasks;
    int run_threads; /* workers (ids 1..run_threads-1) that take part in this run */
    atomic_size_t next;
    int active; /* workers that have not finished the current generation */
};

typedef struct {
    ns_pool *pool;
    int id;
    unsigned long seen; /* generation at creation: a run started before the thread first
                           locks the mutex must still be seen as new work */
} worker_arg;

int ns_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > NS_POOL_MAX_THREADS ? NS_POOL_MAX_THREADS : (int)n);
}

static void drain(ns_pool *p, int worker) {
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->ntasks) break;
        p->fn(p->ctx, i, worker);
    }
}

static void *worker_main(void *argp) {
    worker_arg arg = *(worker_arg *)argp;
    free(argp);
    ns_pool *p = arg.pool;
    unsigned long seen = arg.seen;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        int takes_part = arg.id < p->run_threads;
        pthread_mutex_unlock(&p->mu);
        if (takes_part) drain(p, arg.id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void stop_workers(ns_pool *p) {
    if (!p->threads) return;
    if (p->pid == getpid()) {
        pthread_mutex_lock(&p->mu);
        p->shutdown = 1;
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    p->threads = NULL;
    p->shutdown = 0;
}

static ns_status start_workers(ns_pool *p, int nthreads, ns_error *err) {
    if (nthreads <= 0) nthreads = ns_cpu_count();
    if (nthreads > NS_POOL_MAX_THREADS)
        return ns_set_error(err, NS_ERR_INVALID, "thread count %d exceeds the maximum of %d",
                            nthreads, NS_POOL_MAX_THREADS);
    p->nthreads = 1;
    p->pid = getpid();
    if (nthreads == 1) return NS_OK;
    p->threads = calloc((size_t)nthreads - 1, sizeof(pthread_t));
    if (!p->threads) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate the thread pool");
    for (int i = 0; i < nthreads - 1; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            p->nthreads = 1 + i;
            stop_workers(p);
            p->nthreads = 1;
            return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate the thread pool");
        }
        a->pool = p;
        a->id = i + 1;
        a->seen = p->generation; /* no run is in progress: callers hold run_lock or own p */
        if (pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            p->nthreads = 1 + i;
            stop_workers(p);
            p->nthreads = 1;
            return ns_set_error(err, NS_ERR_NOMEM, "cannot start thread %d of the pool", i + 1);
        }
    }
    p->nthreads = nthreads;
    return NS_OK;
}

ns_status ns_pool_create(ns_pool **out, int nthreads, ns_error *err) {
    *out = NULL;
    ns_pool *p = calloc(1, sizeof *p);
    if (!p) return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate the thread pool");
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->next, 0);
    ns_status st = start_workers(p, nthreads, err);
    if (st != NS_OK) {
        ns_pool_destroy(p);
        return st;
    }
    *out = p;
    return NS_OK;
}

void ns_pool_destroy(ns_pool *p) {
    if (!p) return;
    stop_workers(p);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

int ns_pool_threads(const ns_pool *p) {
    return p ? p->nthreads : 1;
}

ns_status ns_pool_resize(ns_pool *p, int nthreads, ns_error *err) {
    if (nthreads <= 0) nthreads = ns_cpu_count();
    pthread_mutex_lock(&p->run_lock);
    ns_status st = NS_OK;
    if (nthreads != p->nthreads || p->pid != getpid()) {
        stop_workers(p);
        p->nthreads = 1;
        st = start_workers(p, nthreads, err);
    }
    pthread_mutex_unlock(&p->run_lock);
    return st;
}

void ns_pool_run(ns_pool *p, ns_task_fn fn, void *ctx, size_t ntasks, int max_threads) {
    if (ntasks == 0) return;
    int use = p ? p->nthreads : 1;
    if (max_threads > 0 && max_threads < use) use = max_threads;
    if ((size_t)use > ntasks) use = (int)ntasks;
    if (!p || use <= 1 || p->pid != getpid()) {
        for (size_t i = 0; i < ntasks; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    p->run_threads = use;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->active = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    drain(p, 0);

    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->run_lock);
}
