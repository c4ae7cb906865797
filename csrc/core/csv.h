/* GTSRB annotation CSV parsing.
 *
 * Header `Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId` (training) or the same
 * without ClassId (GT-final_test.test.csv). LF or CRLF line ends, an optional UTF-8 BOM,
 * trailing empty lines. Each row: a plain file name (no path separators) and non-negative
 * integers; Width, Height >= 1; ROI corners inclusive with 0 <= x1 <= x2 < Width and
 * 0 <= y1 <= y2 < Height. Errors name the source, the line number and the field.
 */
#ifndef NS_CSV_H
#define NS_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct ns_annotation {
    size_t name_offset; /* file name at data + name_offset (not NUL-terminated) */
    size_t name_len;
    int64_t width, height, x1, y1, x2, y2;
    int64_t class_id; /* -1 when the file has no ClassId column */
} ns_annotation;

typedef struct ns_annotations {
    ns_annotation *rows; /* malloc'd; free with ns_annotations_free */
    size_t count;
    int has_class;
} ns_annotations;

/* Parse data[0..len). `source` names the file in messages. On success out->rows holds
 * out->count rows (possibly zero). */
ns_status ns_csv_parse(const char *data, size_t len, const char *source, ns_annotations *out,
                       ns_error *err);
void ns_annotations_free(ns_annotations *a);

#endif /* NS_CSV_H */
