/* neonsign span recorder: the profiler's clock and records.
 *
 * A recorder holds named spans timed with the monotonic nanosecond clock (ns_now_ns) and, where
 * the OS lets user code read it, the CPU's cycle counter (x86-64: rdtsc; AArch64: cntvct_el0,
 * whose frequency is cntfrq_el0). Spans nest: begin() pushes onto a stack and end() pops, so
 * every record knows its parent record and its depth. Records are stored in begin order
 * (pre-order), so a parent always precedes its children.
 *
 * Names are interned once (ns_prof_intern) and spans refer to them by id, so begin/end do no
 * string work. While the recorder is disabled, begin/end only count the nesting of the spans
 * they skip (one integer increment), which keeps begin/end pairs matched when the recorder is
 * switched on or off in the middle of a span.
 *
 * External timings (e.g. the native engine's own per-layer timers, which use the same
 * ns_now_ns clock) can be attached under an existing record with ns_prof_add.
 *
 * A recorder is not thread-safe: use one per thread (the Python binding holds the GIL).
 */
#ifndef NS_PROF_H
#define NS_PROF_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NS_PROF_NAME_MAX    128        /* bytes per name, including the terminating NUL */
#define NS_PROF_MAX_NAMES   4096       /* distinct names per recorder */
#define NS_PROF_MAX_DEPTH   64         /* nesting depth of open spans */
#define NS_PROF_MAX_RECORDS (1u << 24) /* records kept; later spans are counted as dropped */
#define NS_PROF_NO_PARENT   (-1)
#define NS_PROF_ANY_NAME    UINT32_MAX /* ns_prof_end: do not check the name */

typedef struct ns_prof_record {
    uint32_t name;         /* id from ns_prof_intern */
    uint32_t depth;        /* 0 for top-level spans */
    int64_t parent;        /* index of the enclosing record, or NS_PROF_NO_PARENT */
    uint64_t calls;        /* 1 for a timed span; the call count of an attached aggregate */
    uint64_t start_ns;     /* ns_now_ns() at begin */
    uint64_t end_ns;       /* ns_now_ns() at end; 0 while the span is open */
    uint64_t start_cycles; /* cycle counter at begin (0 when not available) */
    uint64_t end_cycles;   /* cycle counter at end (0 when not available or open) */
} ns_prof_record;

typedef struct ns_prof ns_prof;

/* capacity: records to preallocate (0 = a small default); the buffer grows on demand. */
ns_status ns_prof_create(ns_prof **out, size_t capacity, ns_error *err);
void ns_prof_destroy(ns_prof *p);

void ns_prof_set_enabled(ns_prof *p, int enabled);
int ns_prof_enabled(const ns_prof *p);

/* Id of `name` (a NUL-terminated, non-empty string shorter than NS_PROF_NAME_MAX), added to
 * the name table if new. */
ns_status ns_prof_intern(ns_prof *p, const char *name, uint32_t *id, ns_error *err);
size_t ns_prof_name_count(const ns_prof *p);
/* The name with this id, or NULL if the id is unknown. */
const char *ns_prof_name(const ns_prof *p, uint32_t id);

/* Open a span. Fails with NS_ERR_LIMIT past NS_PROF_MAX_DEPTH open spans. When the record
 * buffer has reached NS_PROF_MAX_RECORDS the span is still tracked for nesting but not stored
 * (see ns_prof_dropped). */
ns_status ns_prof_begin(ns_prof *p, uint32_t name, ns_error *err);
/* Close the innermost open span. `name` must be its name (or NS_PROF_ANY_NAME). */
ns_status ns_prof_end(ns_prof *p, uint32_t name, ns_error *err);

/* Attach a completed span measured elsewhere: `calls` (>= 1) calls that took `duration_ns` in total,
 * starting at `start_ns`, as a child of record `parent` (or top-level with NS_PROF_NO_PARENT).
 * Ignored (NS_OK) while disabled. */
ns_status ns_prof_add(ns_prof *p, uint32_t name, int64_t parent, uint64_t start_ns,
                      uint64_t duration_ns, uint64_t calls, ns_error *err);

/* Drop every record and open span (names are kept). */
void ns_prof_reset(ns_prof *p);

size_t ns_prof_count(const ns_prof *p);
const ns_prof_record *ns_prof_records(const ns_prof *p);
size_t ns_prof_open_spans(const ns_prof *p); /* spans begun and not yet ended (recorded ones) */
uint64_t ns_prof_dropped(const ns_prof *p);  /* spans not stored because the buffer was full */

/* The CPU cycle counter: 1 if user code can read one here. */
int ns_cycles_available(void);
/* Current value of the cycle counter, or 0 if not available. */
uint64_t ns_cycles_now(void);
/* Counter frequency in Hz: cntfrq_el0 on AArch64; on x86-64 the TSC rate measured against
 * ns_now_ns over about `calibrate_ns` nanoseconds (0 if unavailable). */
double ns_cycles_hz(uint64_t calibrate_ns);

#ifdef __cplusplus
}
#endif
#endif /* NS_PROF_H */
