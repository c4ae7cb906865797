#include "csv.h"

#include <stdlib.h>
#include <string.h>

static const char *const FIELDS[8] = {"Filename", "Width",  "Height", "Roi.X1",
                                      "Roi.Y1",   "Roi.X2", "Roi.Y2", "ClassId"};

/* Largest value accepted in a numeric field (GTSRB sizes are < 300; this only keeps the
 * arithmetic far from overflow while allowing big synthetic images). */
#define CSV_MAX_VALUE ((int64_t)1 << 31)

typedef struct {
    const char *p;
    size_t len;
} span;

/* Split one line (without its line end) at ';' into at most max fields; returns the count
 * (max + 1 if there are more). */
static size_t split(const char *line, size_t len, span *fields, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || line[i] == ';') {
            if (n < max) {
                fields[n].p = line + start;
                fields[n].len = i - start;
            }
            n++;
            start = i + 1;
            if (n > max) return n;
        }
    }
    return n;
}

static void quote(span s, char *out, size_t cap) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[n] = '\0';
}

static ns_status parse_int(span s, const char *source, size_t line, const char *field, int64_t *out,
                           ns_error *err) {
    char q[64];
    if (s.len == 0)
        return ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu, field %s: empty value", source, line,
                            field);
    int64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c < '0' || c > '9') {
            quote(s, q, sizeof q);
            return ns_set_error(err, NS_ERR_FORMAT,
                                "%s: line %zu, field %s: '%s' is not a non-negative integer",
                                source, line, field, q);
        }
        v = v * 10 + (c - '0');
        if (v > CSV_MAX_VALUE) {
            quote(s, q, sizeof q);
            return ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu, field %s: '%s' is too large",
                                source, line, field, q);
        }
    }
    *out = v;
    return NS_OK;
}

void ns_annotations_free(ns_annotations *a) {
    free(a->rows);
    a->rows = NULL;
    a->count = 0;
}

ns_status ns_csv_parse(const char *data, size_t len, const char *source, ns_annotations *out,
                       ns_error *err) {
    memset(out, 0, sizeof *out);
    if (!source) source = "<annotations>";
    size_t pos = 0;
    if (len >= 3 && (unsigned char)data[0] == 0xEF && (unsigned char)data[1] == 0xBB &&
        (unsigned char)data[2] == 0xBF)
        pos = 3;
    /* an upper bound on the number of rows: one per line end, plus one */
    size_t max_rows = 1;
    for (size_t i = pos; i < len; i++) max_rows += data[i] == '\n';
    size_t bytes;
    if (ns_mul_overflow(max_rows, sizeof(ns_annotation), &bytes))
        return ns_set_error(err, NS_ERR_LIMIT, "%s: too many lines", source);
    out->rows = malloc(bytes ? bytes : 1);
    if (!out->rows)
        return ns_set_error(err, NS_ERR_NOMEM, "%s: cannot allocate %zu rows", source, max_rows);

    size_t line_no = 0, nfields = 0;
    size_t blank_line = 0; /* first empty line seen (rows after it are an error) */
    ns_status st = NS_OK;
    char q[96];
    while (pos < len || line_no == 0) {
        size_t start = pos;
        while (pos < len && data[pos] != '\n') pos++;
        size_t end = pos;
        if (pos < len) pos++; /* skip '\n' */
        if (end > start && data[end - 1] == '\r') end--;
        line_no++;
        const char *line = data + start;
        size_t llen = end - start;
        if (memchr(line, '\0', llen)) {
            st = ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu: contains a NUL byte", source,
                              line_no);
            goto fail;
        }
        if (line_no == 1) {
            span f[9];
            size_t n = split(line, llen, f, 8);
            int ok = n == 7 || n == 8;
            for (size_t i = 0; ok && i < n; i++)
                ok = f[i].len == strlen(FIELDS[i]) && memcmp(f[i].p, FIELDS[i], f[i].len) == 0;
            if (!ok) {
                quote((span){line, llen}, q, sizeof q);
                st = ns_set_error(err, NS_ERR_FORMAT,
                                  "%s: line 1: bad header '%s'; expected "
                                  "'Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId' "
                                  "(ClassId optional)",
                                  source, q);
                goto fail;
            }
            nfields = n;
            out->has_class = n == 8;
            continue;
        }
        if (llen == 0) {
            if (!blank_line) blank_line = line_no;
            continue;
        }
        if (blank_line) {
            st = ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu: empty line inside the data",
                              source, blank_line);
            goto fail;
        }
        span f[9];
        size_t n = split(line, llen, f, 8);
        if (n != nfields) {
            st = ns_set_error(err, NS_ERR_FORMAT,
                              "%s: line %zu: expected %zu fields separated by ';', found %zu%s",
                              source, line_no, nfields, n > 8 ? (size_t)9 : n,
                              n > 8 ? " or more" : "");
            goto fail;
        }
        ns_annotation *a = &out->rows[out->count];
        if (f[0].len == 0) {
            st = ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu, field Filename: empty", source,
                              line_no);
            goto fail;
        }
        if (memchr(f[0].p, '/', f[0].len) || memchr(f[0].p, '\\', f[0].len) ||
            (f[0].len == 1 && f[0].p[0] == '.') ||
            (f[0].len == 2 && f[0].p[0] == '.' && f[0].p[1] == '.')) {
            quote(f[0], q, sizeof q);
            st = ns_set_error(err, NS_ERR_FORMAT,
                              "%s: line %zu, field Filename: '%s' is not a plain file name", source,
                              line_no, q);
            goto fail;
        }
        a->name_offset = (size_t)(f[0].p - data);
        a->name_len = f[0].len;
        int64_t v[7];
        for (size_t i = 1; i < nfields; i++)
            if ((st = parse_int(f[i], source, line_no, FIELDS[i], &v[i - 1], err)) != NS_OK)
                goto fail;
        a->width = v[0];
        a->height = v[1];
        a->x1 = v[2];
        a->y1 = v[3];
        a->x2 = v[4];
        a->y2 = v[5];
        a->class_id = nfields == 8 ? v[6] : -1;
        if (a->width < 1 || a->height < 1) {
            st = ns_set_error(err, NS_ERR_FORMAT, "%s: line %zu, field %s: must be >= 1", source,
                              line_no, a->width < 1 ? "Width" : "Height");
            goto fail;
        }
        const char *bad = NULL;
        if (a->x1 > a->x2)
            bad = "Roi.X1";
        else if (a->y1 > a->y2)
            bad = "Roi.Y1";
        if (bad) {
            st = ns_set_error(err, NS_ERR_FORMAT,
                              "%s: line %zu, field %s: ROI corners out of order (x1=%lld, y1=%lld, "
                              "x2=%lld, y2=%lld; need x1 <= x2 and y1 <= y2)",
                              source, line_no, bad, (long long)a->x1, (long long)a->y1,
                              (long long)a->x2, (long long)a->y2);
            goto fail;
        }
        if (a->x2 >= a->width)
            bad = "Roi.X2";
        else if (a->y2 >= a->height)
            bad = "Roi.Y2";
        if (bad) {
            st = ns_set_error(
                err, NS_ERR_FORMAT,
                "%s: line %zu, field %s: ROI (%lld, %lld, %lld, %lld) lies outside the "
                "%lldx%lld image (corners are inclusive)",
                source, line_no, bad, (long long)a->x1, (long long)a->y1, (long long)a->x2,
                (long long)a->y2, (long long)a->width, (long long)a->height);
            goto fail;
        }
        out->count++;
    }
    if (nfields == 0) {
        st = ns_set_error(err, NS_ERR_FORMAT, "%s: empty file: no header line", source);
        goto fail;
    }
    return NS_OK;
fail:
    ns_annotations_free(out);
    return st;
}
