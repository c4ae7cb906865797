/* libFuzzer target: GTSRB annotation CSV parsing on arbitrary bytes.
 *
 * sources: common.c csv.c
 *
 * Checks the documented row invariants on success (name inside the buffer, ROI inside the image).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    ns_annotations a;
    ns_error err;
    memset(&a, 0, sizeof a);
    ns_status st = ns_csv_parse(buf, size, "fuzz.csv", &a, &err);
    if (st == NS_OK) {
        for (size_t i = 0; i < a.count; i++) {
            const ns_annotation *r = &a.rows[i];
            if (r->name_len == 0 || r->name_offset > size || r->name_len > size - r->name_offset)
                abort();
            if (memchr(buf + r->name_offset, '/', r->name_len)) abort();
            if (r->width < 1 || r->height < 1 || r->x1 < 0 || r->y1 < 0 || r->x1 > r->x2 ||
                r->y1 > r->y2 || r->x2 >= r->width || r->y2 >= r->height)
                abort();
            if (a.has_class ? r->class_id < 0 : r->class_id != -1) abort();
        }
        ns_annotations_free(&a);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(buf);
    return 0;
}
