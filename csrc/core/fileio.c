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

/* What a non-regular file is, for the message that refuses it. */
static const char *file_kind(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

ns_status ns_read_file_at(int dirfd, const char *name, const char *path, size_t max_bytes,
                          ns_buf *buf, size_t *len, ns_error *err) {
    *len = 0;
    int fd;
    /* O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of waiting for a
     * writer (it is refused below); on a regular file the flag changes nothing. */
    do {
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
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
    if (!S_ISREG(sb.st_mode)) { /* a FIFO, /dev/zero (also through a symlink), a socket... */
        close(fd);
        ns_set_error(err, NS_ERR_IO, "%s: is %s, not a regular file; refusing to read it", path,
                     file_kind(sb.st_mode));
        if (err) err->sys_errno = EINVAL;
        return NS_ERR_IO;
    }
    if ((uintmax_t)sb.st_size > (uintmax_t)max_bytes) {
        close(fd);
        return ns_set_error(err, NS_ERR_LIMIT,
                            "%s: file is %jd bytes, more than the limit of %zu bytes", path,
                            (intmax_t)sb.st_size, max_bytes);
    }
    /* one byte more than the size so that a file that grew since fstat is noticed below */
    ns_status st = ns_buf_reserve(buf, (size_t)sb.st_size + 1, "a file buffer", err);
    if (st != NS_OK) {
        close(fd);
        return st;
    }
    size_t used = 0;
    for (;;) {
        if (used == buf->cap) {
            /* the file grew since fstat: grow the buffer up to the limit, keep the contents */
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
        /* the common case: exactly the size fstat gave was read; skip the EOF read */
        if (used == (size_t)sb.st_size && used < buf->cap) break;
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
