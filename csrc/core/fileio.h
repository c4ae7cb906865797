/* Reading whole files into a reused buffer, with a size cap checked before allocating. */
#ifndef NS_FILEIO_H
#define NS_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"

/* Read the regular file at `path` into buf (grown as needed); *len receives the byte count.
 * The file is opened without blocking and checked with fstat before anything is read: a
 * directory fails with NS_ERR_IO (EISDIR), anything else that is not a regular file (a FIFO, a
 * character device such as /dev/zero, also behind a symlink, a socket) with NS_ERR_IO (EINVAL),
 * and a file larger than max_bytes with NS_ERR_LIMIT, all before any allocation or read. A
 * missing file gives NS_ERR_NOTFOUND, other open/read failures NS_ERR_IO (err->sys_errno holds
 * errno). Messages start with the path. */
ns_status ns_read_file(const char *path, size_t max_bytes, ns_buf *buf, size_t *len, ns_error *err);

/* The same for `name` relative to the directory descriptor dirfd (AT_FDCWD: the current
 * directory); messages name `path`. */
ns_status ns_read_file_at(int dirfd, const char *name, const char *path, size_t max_bytes,
                          ns_buf *buf, size_t *len, ns_error *err);

/* An open descriptor of the directory of the last file read, so that files of one directory
 * are opened relative to it (one path component to look up instead of all). Per thread. */
typedef struct ns_dir_cache {
    int fd;    /* -1 when empty */
    char *dir; /* the directory part of the path, NUL-terminated */
    size_t len;
} ns_dir_cache;

void ns_dir_cache_init(ns_dir_cache *c);
void ns_dir_cache_close(ns_dir_cache *c);
/* ns_read_file through the cache (same results and messages). */
ns_status ns_read_file_cached(ns_dir_cache *c, const char *path, size_t max_bytes, ns_buf *buf,
                              size_t *len, ns_error *err);

#endif /* NS_FILEIO_H */
