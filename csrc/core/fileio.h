/* Reading whole files into a reused buffer, with a size cap checked before allocating. */
#ifndef NS_FILEIO_H
#define NS_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"

/* Read the file at `path` into buf (grown as needed); *len receives the byte count.
 * Files larger than max_bytes fail with NS_ERR_LIMIT before any allocation. A missing file gives
 * NS_ERR_NOTFOUND, other open/read failures NS_ERR_IO (err->sys_errno holds errno). Messages
 * start with the path. */
ns_status ns_read_file(const char *path, size_t max_bytes, ns_buf *buf, size_t *len, ns_error *err);

#endif /* NS_FILEIO_H */
