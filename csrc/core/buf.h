/* A growable byte buffer for per-thread scratch memory (reused across images, so the hot loop
 * allocates only when an image needs more than any before it). Pure C11. */
#ifndef NS_BUF_H
#define NS_BUF_H

#include <stddef.h>

#include "common.h"

typedef struct ns_buf {
    void *data; /* 64-byte aligned, or NULL */
    size_t cap; /* bytes available at data */
} ns_buf;

/* Make sure b holds at least `size` bytes (contents are NOT preserved when it grows). */
ns_status ns_buf_reserve(ns_buf *b, size_t size, const char *what, ns_error *err);
/* Free the memory and reset b to empty. */
void ns_buf_free(ns_buf *b);

#endif /* NS_BUF_H */
