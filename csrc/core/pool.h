/* One persistent pthread pool, shared by the loader and the engine.
 *
 * ns_pool_run(pool, fn, ctx, ntasks) calls fn(ctx, i, worker) once for every i in [0, ntasks),
 * spread over the pool's threads (the calling thread takes part as worker 0), and returns when
 * all calls have finished. Tasks are handed out dynamically, so a task must write only its own
 * part of the output: results are then identical for any thread count. `worker` is in
 * [0, ns_pool_threads(pool)) and is unique among concurrently running tasks, so it can index
 * per-thread scratch memory.
 *
 * A pool of 1 thread runs everything inline on the caller. Runs from several threads at once are
 * serialised (each run still uses the whole pool). After fork() the child runs tasks inline,
 * since the parent's worker threads do not exist there.
 */
#ifndef NS_POOL_H
#define NS_POOL_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ns_pool ns_pool;
typedef void (*ns_task_fn)(void *ctx, size_t index, int worker);

#define NS_POOL_MAX_THREADS 256

/* nthreads <= 0 means the number of online CPUs. */
ns_status ns_pool_create(ns_pool **out, int nthreads, ns_error *err);
void ns_pool_destroy(ns_pool *pool);
int ns_pool_threads(const ns_pool *pool);
/* Change the thread count (waits for a run in progress to finish). */
ns_status ns_pool_resize(ns_pool *pool, int nthreads, ns_error *err);
/* Run fn over [0, ntasks) using at most max_threads threads (<= 0: all of the pool's). */
void ns_pool_run(ns_pool *pool, ns_task_fn fn, void *ctx, size_t ntasks, int max_threads);
/* Number of online CPUs (>= 1). */
int ns_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif /* NS_POOL_H */
