#include "buf.h"

ns_status ns_buf_reserve(ns_buf *b, size_t size, const char *what, ns_error *err) {
    if (size <= b->cap && b->data) return NS_OK;
    /* grow geometrically so a sequence of slightly larger images does not reallocate each time */
    size_t want = size;
    if (b->cap <= SIZE_MAX / 2 && b->cap * 2 > want) want = b->cap * 2;
    if (want < 4096) want = 4096;
    void *p = ns_alloc_aligned(want, 64);
    if (!p && want > size) {
        want = size;
        p = ns_alloc_aligned(want, 64);
    }
    if (!p)
        return ns_set_error(err, NS_ERR_NOMEM, "cannot allocate %zu bytes for %s", size,
                            what ? what : "a scratch buffer");
    ns_free_aligned(b->data);
    b->data = p;
    b->cap = want;
    return NS_OK;
}

void ns_buf_free(ns_buf *b) {
    ns_free_aligned(b->data);
    b->data = NULL;
    b->cap = 0;
}
