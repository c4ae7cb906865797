/* neonsign C core: shared conventions.
 *
 * Pure C11, no Python.h. Every fallible function returns an ns_status and, on failure,
 * fills an ns_error with a human-readable message. Sizes are size_t and every
 * multiplication that sizes an allocation goes through ns_mul_overflow first.
 */
#ifndef NS_COMMON_H
#define NS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ns_status {
    NS_OK = 0,
    NS_ERR_INVALID = -1,    /* bad argument (caller bug or bad user value) -> ValueError */
    NS_ERR_FORMAT = -2,     /* malformed file contents (PPM, CSV, weights) -> DecodeError & co */
    NS_ERR_IO = -3,         /* open/read failed -> OSError / FileNotFoundError */
    NS_ERR_NOMEM = -4,      /* allocation failed -> MemoryError */
    NS_ERR_LIMIT = -5,      /* input exceeds a configured resource limit -> ResourceLimitError */
    NS_ERR_NOTFOUND = -6,   /* file does not exist -> FileNotFoundError */
    NS_ERR_UNSUPPORTED = -7 /* e.g. a kernel the CPU lacks -> ValueError */
} ns_status;

#define NS_ERROR_MSG_LEN 512

typedef struct ns_error {
    ns_status status;
    int sys_errno;              /* errno for NS_ERR_IO / NS_ERR_NOTFOUND, else 0 */
    char msg[NS_ERROR_MSG_LEN]; /* NUL-terminated, never empty on failure */
} ns_error;

/* Fill err (if non-NULL) and return status. printf-style. */
ns_status ns_set_error(ns_error *err, ns_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static inline void ns_error_clear(ns_error *err) {
    if (err) {
        err->status = NS_OK;
        err->sys_errno = 0;
        err->msg[0] = '\0';
    }
}

/* Returns 1 if a*b overflows size_t, else stores the product in *out and returns 0. */
static inline int ns_mul_overflow(size_t a, size_t b, size_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
#endif
}

/* Monotonic clock in nanoseconds. */
uint64_t ns_now_ns(void);

/* Aligned allocation (alignment a power of two >= sizeof(void*)); free with ns_free_aligned. */
void *ns_alloc_aligned(size_t size, size_t alignment);
void ns_free_aligned(void *p);

#ifdef __cplusplus
}
#endif
#endif /* NS_COMMON_H */
