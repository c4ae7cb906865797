#define _POSIX_C_SOURCE 200809L
#include "prof.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <x86intrin.h>
#define NS_HAVE_RDTSC 1
#endif

#define NS_PROF_DEFAULT_CAPACITY 256

struct ns_prof {
    int enabled;
    size_t skipped;                   /* spans begun while disabled and not yet ended */
    size_t depth;                     /* open spans on the stack */
    int64_t stack[NS_PROF_MAX_DEPTH]; /* record index of each open span, -1 if dropped */
    uint32_t stack_name[NS_PROF_MAX_DEPTH];
    ns_prof_record *records;
    size_t count;
    size_t capacity;
    uint64_t dropped;
    char (*names)[NS_PROF_NAME_MAX];
    size_t name_count;
    size_t name_capacity;
};

/* ---------------------------------------------------------------------------------------- */
/* Cycle counter                                                                               */

int ns_cycles_available(void) {
#if defined(NS_HAVE_RDTSC) || defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

uint64_t ns_cycles_now(void) {
#if defined(NS_HAVE_RDTSC)
    return (uint64_t)__rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("isb\n\tmrs %0, cntvct_el0" : "=r"(v) : : "memory");
    return v;
#else
    return 0;
#endif
}

double ns_cycles_hz(uint64_t calibrate_ns) {
#if defined(__aarch64__)
    (void)calibrate_ns;
    uint64_t f;
    __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(f));
    return (double)f;
#elif defined(NS_HAVE_RDTSC)
    if (calibrate_ns == 0) calibrate_ns = 2000000u; /* 2 ms */
    uint64_t t0 = ns_now_ns();
    uint64_t c0 = ns_cycles_now();
    uint64_t t1 = t0;
    while (t1 - t0 < calibrate_ns) t1 = ns_now_ns();
    uint64_t c1 = ns_cycles_now();
    if (t1 <= t0 || c1 <= c0) return 0.0;
    return (double)(c1 - c0) * 1e9 / (double)(t1 - t0);
#else
    (void)calibrate_ns;
    return 0.0;
#endif
}

/* ---------------------------------------------------------------------------------------- */
/* Recorder                                                                                    */

ns_status ns_prof_create(ns_prof **out, size_t capacity, ns_error *err) {
    if (!out) return ns_set_error(err, NS_ERR_INVALID, "ns_prof_create: out is NULL");
    *out = NULL;
    if (capacity == 0) capacity = NS_PROF_DEFAULT_CAPACITY;
    if (capacity > NS_PROF_MAX_RECORDS)
        return ns_set_error(err, NS_ERR_LIMIT,
                            "recorder capacity %zu exceeds the limit of %u records", capacity,
                            (unsigned)NS_PROF_MAX_RECORDS);
    size_t bytes;
    if (ns_mul_overflow(capacity, sizeof(ns_prof_record), &bytes))
        return ns_set_error(err, NS_ERR_LIMIT, "recorder capacity %zu is too large", capacity);
    ns_prof *p = calloc(1, sizeof *p);
    if (!p) return ns_set_error(err, NS_ERR_NOMEM, "out of memory allocating a recorder");
    p->records = malloc(bytes);
    if (!p->records) {
        free(p);
        return ns_set_error(err, NS_ERR_NOMEM, "out of memory allocating %zu profiler records",
                            capacity);
    }
    p->capacity = capacity;
    p->enabled = 1;
    *out = p;
    return NS_OK;
}

void ns_prof_destroy(ns_prof *p) {
    if (!p) return;
    free(p->records);
    free(p->names);
    free(p);
}

void ns_prof_set_enabled(ns_prof *p, int enabled) {
    if (p) p->enabled = enabled ? 1 : 0;
}

int ns_prof_enabled(const ns_prof *p) {
    return p ? p->enabled : 0;
}

ns_status ns_prof_intern(ns_prof *p, const char *name, uint32_t *id, ns_error *err) {
    if (!p || !name || !id)
        return ns_set_error(err, NS_ERR_INVALID, "ns_prof_intern: NULL argument");
    size_t len = strnlen(name, NS_PROF_NAME_MAX);
    if (len == 0) return ns_set_error(err, NS_ERR_INVALID, "span name must not be empty");
    if (len >= NS_PROF_NAME_MAX)
        return ns_set_error(err, NS_ERR_INVALID, "span name is longer than %d bytes",
                            NS_PROF_NAME_MAX - 1);
    for (size_t i = 0; i < p->name_count; i++) {
        if (strcmp(p->names[i], name) == 0) {
            *id = (uint32_t)i;
            return NS_OK;
        }
    }
    if (p->name_count >= NS_PROF_MAX_NAMES)
        return ns_set_error(err, NS_ERR_LIMIT,
                            "recorder already holds the maximum of %d span names",
                            NS_PROF_MAX_NAMES);
    if (p->name_count == p->name_capacity) {
        size_t cap = p->name_capacity ? p->name_capacity * 2 : 16;
        if (cap > NS_PROF_MAX_NAMES) cap = NS_PROF_MAX_NAMES;
        size_t bytes;
        if (ns_mul_overflow(cap, sizeof *p->names, &bytes))
            return ns_set_error(err, NS_ERR_LIMIT, "name table too large");
        void *nn = realloc(p->names, bytes);
        if (!nn)
            return ns_set_error(err, NS_ERR_NOMEM, "out of memory growing the span name table");
        p->names = nn;
        p->name_capacity = cap;
    }
    memcpy(p->names[p->name_count], name, len + 1);
    *id = (uint32_t)p->name_count++;
    return NS_OK;
}

size_t ns_prof_name_count(const ns_prof *p) {
    return p ? p->name_count : 0;
}

const char *ns_prof_name(const ns_prof *p, uint32_t id) {
    if (!p || id >= p->name_count) return NULL;
    return p->names[id];
}

/* Make room for one more record; returns 0 if the record must be dropped (limit or no memory). */
static int reserve_record(ns_prof *p) {
    if (p->count < p->capacity) return 1;
    if (p->capacity >= NS_PROF_MAX_RECORDS) return 0;
    size_t cap = p->capacity * 2;
    if (cap > NS_PROF_MAX_RECORDS) cap = NS_PROF_MAX_RECORDS;
    size_t bytes;
    if (ns_mul_overflow(cap, sizeof(ns_prof_record), &bytes)) return 0;
    ns_prof_record *nr = realloc(p->records, bytes);
    if (!nr) return 0;
    p->records = nr;
    p->capacity = cap;
    return 1;
}

ns_status ns_prof_begin(ns_prof *p, uint32_t name, ns_error *err) {
    if (!p) return ns_set_error(err, NS_ERR_INVALID, "ns_prof_begin: recorder is NULL");
    if (!p->enabled || p->skipped) {
        /* Disabled, or inside a span that began while disabled: only track the nesting. */
        p->skipped++;
        return NS_OK;
    }
    if (name >= p->name_count)
        return ns_set_error(err, NS_ERR_INVALID, "unknown span name id %u", (unsigned)name);
    if (p->depth >= NS_PROF_MAX_DEPTH)
        return ns_set_error(err, NS_ERR_LIMIT, "span '%s' would nest deeper than %d levels",
                            p->names[name], NS_PROF_MAX_DEPTH);
    int64_t parent = NS_PROF_NO_PARENT;
    for (size_t d = p->depth; d > 0; d--) {
        if (p->stack[d - 1] >= 0) {
            parent = p->stack[d - 1];
            break;
        }
    }
    int64_t index = -1;
    if (reserve_record(p)) {
        index = (int64_t)p->count++;
        ns_prof_record *r = &p->records[index];
        r->name = name;
        r->depth = (uint32_t)p->depth;
        r->parent = parent;
        r->calls = 1;
        r->end_ns = 0;
        r->end_cycles = 0;
        r->start_cycles = ns_cycles_now();
        r->start_ns = ns_now_ns();
    } else {
        p->dropped++;
    }
    p->stack[p->depth] = index;
    p->stack_name[p->depth] = name;
    p->depth++;
    return NS_OK;
}

ns_status ns_prof_end(ns_prof *p, uint32_t name, ns_error *err) {
    if (!p) return ns_set_error(err, NS_ERR_INVALID, "ns_prof_end: recorder is NULL");
    uint64_t t = ns_now_ns();
    uint64_t c = ns_cycles_now();
    if (p->skipped) {
        p->skipped--;
        return NS_OK;
    }
    if (p->depth == 0) {
        if (!p->enabled) return NS_OK; /* a span opened before a reset or while disabled */
        return ns_set_error(err, NS_ERR_INVALID, "end() without a matching begin()");
    }
    uint32_t top = p->stack_name[p->depth - 1];
    if (name != NS_PROF_ANY_NAME && name != top) {
        const char *want = name < p->name_count ? p->names[name] : "?";
        return ns_set_error(err, NS_ERR_INVALID,
                            "end('%s') does not match the innermost open span '%s'", want,
                            p->names[top]);
    }
    p->depth--;
    int64_t index = p->stack[p->depth];
    if (index >= 0) {
        p->records[index].end_ns = t;
        p->records[index].end_cycles = c;
    }
    return NS_OK;
}

ns_status ns_prof_add(ns_prof *p, uint32_t name, int64_t parent, uint64_t start_ns,
                      uint64_t duration_ns, uint64_t calls, ns_error *err) {
    if (!p) return ns_set_error(err, NS_ERR_INVALID, "ns_prof_add: recorder is NULL");
    if (!p->enabled) return NS_OK;
    if (name >= p->name_count)
        return ns_set_error(err, NS_ERR_INVALID, "unknown span name id %u", (unsigned)name);
    if (parent != NS_PROF_NO_PARENT && (parent < 0 || (uint64_t)parent >= p->count))
        return ns_set_error(err, NS_ERR_INVALID, "parent record %lld does not exist (%zu records)",
                            (long long)parent, p->count);
    if (calls == 0) return ns_set_error(err, NS_ERR_INVALID, "an attached span needs calls >= 1");
    if (duration_ns > UINT64_MAX - start_ns)
        return ns_set_error(err, NS_ERR_INVALID, "span start + duration overflows the clock");
    uint32_t depth = 0;
    if (parent != NS_PROF_NO_PARENT) {
        depth = p->records[parent].depth + 1;
        if (depth >= NS_PROF_MAX_DEPTH)
            return ns_set_error(err, NS_ERR_LIMIT, "span '%s' would nest deeper than %d levels",
                                p->names[name], NS_PROF_MAX_DEPTH);
    }
    if (!reserve_record(p)) {
        p->dropped++;
        return NS_OK;
    }
    ns_prof_record *r = &p->records[p->count++];
    r->name = name;
    r->depth = depth;
    r->parent = parent;
    r->calls = calls;
    r->start_ns = start_ns;
    r->end_ns = start_ns + duration_ns;
    r->start_cycles = 0;
    r->end_cycles = 0;
    return NS_OK;
}

void ns_prof_reset(ns_prof *p) {
    if (!p) return;
    p->count = 0;
    p->depth = 0;
    p->skipped = 0;
    p->dropped = 0;
}

size_t ns_prof_count(const ns_prof *p) {
    return p ? p->count : 0;
}

const ns_prof_record *ns_prof_records(const ns_prof *p) {
    return p ? p->records : NULL;
}

size_t ns_prof_open_spans(const ns_prof *p) {
    if (!p) return 0;
    size_t n = 0;
    for (size_t d = 0; d < p->depth; d++)
        if (p->stack[d] >= 0) n++;
    return n;
}

uint64_t ns_prof_dropped(const ns_prof *p) {
    return p ? p->dropped : 0;
}
