/* Per-layer wall-time counters of a network (ns_net and ns_qnet share them).
 *
 * The owning network guards them with its own mutex (the one its forward pass holds), so these
 * helpers take no lock: the caller holds it.
 */
#ifndef NS_LAYER_TIMERS_H
#define NS_LAYER_TIMERS_H

#include <stdint.h>
#include <string.h>

#include "net.h"

typedef struct ns_layer_timers {
    int on;                        /* forward passes add to the counters */
    uint64_t ns[NS_NET_LAYERS];    /* nanoseconds per layer */
    uint64_t calls[NS_NET_LAYERS]; /* forward calls counted per layer */
} ns_layer_timers;

static inline void ns_layer_timers_read(const ns_layer_timers *t, uint64_t ns[NS_NET_LAYERS],
                                        uint64_t calls[NS_NET_LAYERS]) {
    memcpy(ns, t->ns, sizeof t->ns);
    memcpy(calls, t->calls, sizeof t->calls);
}

static inline void ns_layer_timers_reset(ns_layer_timers *t) {
    memset(t->ns, 0, sizeof t->ns);
    memset(t->calls, 0, sizeof t->calls);
}

/* One forward call done: every layer ran once (fused layers report 0 ns, not 0 calls). */
static inline void ns_layer_timers_count_call(ns_layer_timers *t) {
    if (t->on)
        for (int l = 0; l < NS_NET_LAYERS; l++) t->calls[l]++;
}

#endif
