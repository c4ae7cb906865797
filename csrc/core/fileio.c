#define _GNU_SOURCE
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ns_status io_error(ns_error *err, const char *path, const char *what, int e) {
    ns_status st = (e == ENOENT || e == ENOTDIR) ? NS_ERR_NOTFOUND : NS_ERR_IO;
    ns_set_error(err, st, "%s: %s: %s", path, what, strerror(e));
    if (err) err->sys_errno = e;
    return st;
}

ns_status ns_read_file(const char *path, size_t max_bytes, ns_buf *buf, size_t *len,
                       ns_error *err) {
    return ns_read_file_at(AT_FDCWD, path, path, max_bytes, buf, len, err);
}

ns_status ns_read_file_at(int dirfd, const char *name, const char *path, size_t max_bytes,
                          ns_buf *buf, size_t *len, ns_error *err) {
    *len = 0;
    int fd;
    do {
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return io_error(err, path, "cannot open", errno);

    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return io_error(err, path, "cannot stat", e);
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return io_error(err, path, "cannot read", EISDIR);
    }
    ns_status st;
    size_t used = 0;
    if (S_ISREG(sb.st_mode)) {
        if ((uintmax_t)sb.st_size > (uintmax_t)max_bytes) {
            close(fd);
            return ns_set_error(err, NS_ERR_LIMIT,
                                "%s: file is %jd bytes, more than the limit of %zu bytes", path,
                                (intmax_t)sb.st_size, max_bytes);
        }
        /* one byte more than the size so that a file that grew is noticed below */
        size_t want = (size_t)sb.st_size + 1;
        st = ns_buf_reserve(buf, want, "a file buffer", err);
        if (st != NS_OK) {
            close(fd);
            return st;
        }
    } else if (buf->cap == 0) {
        st = ns_buf_reserve(buf, 65536, "a file buffer", err);
        if (st != NS_OK) {
            close(fd);
            return st;
        }
    }
    for (;;) {
        if (used == buf->cap) {
            /* a file that is not regular, or grew since fstat: grow the buffer, keep contents */
            if (used >= max_bytes) {
                close(fd);
                return ns_set_error(err, NS_ERR_LIMIT,
                                    "%s: file is more than the limit of %zu bytes", path,
                                    max_bytes);
            }
            ns_buf bigger = {NULL, 0};
            size_t want = used > max_bytes / 2 ? max_bytes + 1 : used * 2;
            st = ns_buf_reserve(&bigger, want, "a file buffer", err);
            if (st != NS_OK) {
                close(fd);
                return st;
            }
            memcpy(bigger.data, buf->data, used);
            ns_buf_free(buf);
            *buf = bigger;
        }
        ssize_t n = read(fd, (char *)buf->data + used, buf->cap - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return io_error(err, path, "cannot read", e);
        }
        if (n == 0) break;
        used += (size_t)n;
        if (S_ISREG(sb.st_mode) && used == (size_t)sb.st_size && used < buf->cap) {
            /* the common case: we read exactly the size fstat gave; skip the EOF read */
            break;
        }
    }
    close(fd);
    if (used > max_bytes)
        return ns_set_error(err, NS_ERR_LIMIT, "%s: file is more than the limit of %zu bytes", path,
                            max_bytes);
    *len = used;
    return NS_OK;
}

void ns_dir_cache_init(ns_dir_cache *c) {
    c->fd = -1;
    c->dir = NULL;
    c->len = 0;
}

void ns_dir_cache_close(ns_dir_cache *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->dir);
    ns_dir_cache_init(c);
}

ns_status ns_read_file_cached(ns_dir_cache *c, const char *path, size_t max_bytes, ns_buf *buf,
                              size_t *len, ns_error *err) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash[1] == '\0') return ns_read_file(path, max_bytes, buf, len, err);
    size_t dlen = slash == path ? 1 : (size_t)(slash - path); /* "/name" -> directory "/" */
    if (!(c->fd >= 0 && c->len == dlen && memcmp(c->dir, path, dlen) == 0)) {
        ns_dir_cache_close(c);
        char *dir = malloc(dlen + 1);
        if (!dir) return ns_read_file(path, max_bytes, buf, len, err);
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
        int fd;
        do {
            fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) { /* let the full path produce the error (or succeed) */
            free(dir);
            return ns_read_file(path, max_bytes, buf, len, err);
        }
        c->fd = fd;
        c->dir = dir;
        c->len = dlen;
    }
    return ns_read_file_at(c->fd, slash + 1, path, max_bytes, buf, len, err);
}
