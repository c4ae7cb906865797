/* Preprocessing: PPM, CSV, resize, normalise and the whole-split loader (csrc/core/ppm.c,
 * csv.c, resize.c, loader.c). neonsign.preprocess is the documented API on top of these. */
#include "binding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/augment.h"
#include "core/csv.h"
#include "core/fileio.h"
#include "core/loader.h"
#include "core/png.h"
#include "core/ppm.h"
#include "core/sha256.h"

/* ------------------------------------------------------------------------------------------ */
/* PPM                                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Decode a PPM held in memory; a new (H, W, 3) uint8 array or NULL. `path` (may be NULL) is
 * prefixed to the decoder's messages. */
static PyObject *decode_buffer(ns_state *st, const uint8_t *data, size_t len, size_t max_pixels,
                               int release_gil, const char *path) {
    ns_error err;
    ns_error_clear(&err);
    ns_ppm_info info;
    PyArrayObject *out = NULL;
    ns_status status = ns_ppm_parse_header(data, len, max_pixels, &info, &err);
    if (status == NS_OK) {
        npy_intp dims[3] = {(npy_intp)info.height, (npy_intp)info.width, 3};
        out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
        if (!out) return NULL;
        uint8_t *dst = PyArray_DATA(out);
        if (release_gil) {
            Py_BEGIN_ALLOW_THREADS status = ns_ppm_decode_pixels(data, len, &info, dst, &err);
            Py_END_ALLOW_THREADS
        } else {
            status = ns_ppm_decode_pixels(data, len, &info, dst, &err);
        }
    }
    if (status == NS_OK) return (PyObject *)out;
    Py_XDECREF(out);
    if (path && status != NS_ERR_NOMEM) { /* name the file in decoder errors */
        ns_error named = err;
        snprintf(named.msg, sizeof named.msg, "%s: %s", path, err.msg);
        return ns_raise_error(st, &named);
    }
    return ns_raise_error(st, &err);
}

static const char *const ppm_decode_args[] = {"data", "max_pixels", NULL};
static const ns_argspec ppm_decode_spec = NS_ARGSPEC("ppm_decode", ppm_decode_args, 2);

static PyObject *py_ppm_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[2];
    size_t max_pixels;
    Py_buffer view;
    if (!ns_parse_args(st, &ppm_decode_spec, args, nargs, kwnames, a) ||
        !ns_conv_size(st, a[1], "max_pixels", 1, &max_pixels) ||
        !ns_conv_buffer(st, a[0], "data", &view))
        return NULL;
    /* the buffer stays exported (and so unchanged in size) while the GIL is released */
    PyObject *res =
        decode_buffer(st, view.buf, (size_t)view.len, max_pixels, view.len > 65536, NULL);
    PyBuffer_Release(&view);
    return res;
}

static const char *const ppm_read_args[] = {"path", "max_pixels", "max_file_bytes", NULL};
static const ns_argspec ppm_read_spec = NS_ARGSPEC("ppm_read", ppm_read_args, 3);

static PyObject *py_ppm_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[3], *path_bytes;
    size_t max_pixels, max_bytes;
    if (!ns_parse_args(st, &ppm_read_spec, args, nargs, kwnames, a) ||
        !ns_conv_size(st, a[1], "max_pixels", 1, &max_pixels) ||
        !ns_conv_size(st, a[2], "max_file_bytes", 1, &max_bytes) ||
        !ns_conv_path(st, a[0], "path", &path_bytes))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_bytes);
    ns_buf buf = {NULL, 0};
    size_t len = 0;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    PyObject *res = NULL;
    Py_BEGIN_ALLOW_THREADS status = ns_read_file(path, max_bytes, &buf, &len, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) ns_raise_error_ex(st, &err, NULL, path);
    else res = decode_buffer(st, buf.data, len, max_pixels, 1, path);
    ns_buf_free(&buf);
    Py_DECREF(path_bytes);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* PNG rows                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static const char *const png_unfilter_args[] = {"data", "width", "height", "channels", NULL};
static const ns_argspec png_unfilter_spec = NS_ARGSPEC("png_unfilter", png_unfilter_args, 4);

static PyObject *py_png_unfilter(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[4];
    size_t width, height, channels;
    Py_buffer view;
    if (!ns_parse_args(st, &png_unfilter_spec, args, nargs, kwnames, a) ||
        !ns_conv_size(st, a[1], "width", 1, &width) ||
        !ns_conv_size(st, a[2], "height", 1, &height) ||
        !ns_conv_size(st, a[3], "channels", 1, &channels))
        return NULL;
    if (channels > 4 || ns_png_data_size(width, height, (int)channels) == 0) {
        ns_error bad;
        ns_set_error(&bad, NS_ERR_INVALID, "png_unfilter: no %zux%zu image of %zu channels", width,
                     height, channels);
        return ns_raise_error(st, &bad);
    }
    if (!ns_conv_buffer(st, a[0], "data", &view)) return NULL;
    npy_intp dims[3] = {(npy_intp)height, (npy_intp)width, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) {
        PyBuffer_Release(&view);
        return NULL;
    }
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    const uint8_t *in = view.buf;
    uint8_t *dst = PyArray_DATA(out);
    size_t len = (size_t)view.len;
    if (len > 65536) { /* the buffer stays exported (unchanged) while the GIL is released */
        Py_BEGIN_ALLOW_THREADS status =
            ns_png_unfilter_rgb(in, len, width, height, (int)channels, dst, &err);
        Py_END_ALLOW_THREADS
    } else {
        status = ns_png_unfilter_rgb(in, len, width, height, (int)channels, dst, &err);
    }
    PyBuffer_Release(&view);
    if (status == NS_OK) return (PyObject *)out;
    Py_DECREF(out);
    return ns_raise_error(st, &err);
}

/* ------------------------------------------------------------------------------------------ */
/* CSV                                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* One annotation row: (name, width, height, (x1, y1, x2, y2), class_id | None). */
static PyObject *annotation_row(const Py_buffer *view, const ns_annotation *a) {
    PyObject *name = PyUnicode_DecodeUTF8((const char *)view->buf + a->name_offset,
                                          (Py_ssize_t)a->name_len, "surrogateescape");
    if (!name) return NULL;
    PyObject *cls = a->class_id < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(a->class_id);
    if (!cls) {
        Py_DECREF(name);
        return NULL;
    }
    return Py_BuildValue("(NLL(LLLL)N)", name, (long long)a->width, (long long)a->height,
                         (long long)a->x1, (long long)a->y1, (long long)a->x2, (long long)a->y2,
                         cls);
}

/* Parse the CSV in the bytes-like `data` (`source` names it in errors) without the GIL: 1 with
 * *view held and *ann filled (release both), or 0 with AnnotationError or the buffer's error. */
static int parse_csv_buffer(ns_state *st, PyObject *data, const char *source, Py_buffer *view,
                            ns_annotations *ann) {
    if (!ns_conv_buffer(st, data, "data", view)) return 0;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_csv_parse(view->buf, (size_t)view->len, source, ann, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        PyBuffer_Release(view);
        ns_raise_error_ex(st, &err, "AnnotationError", NULL);
        return 0;
    }
    return 1;
}

static const char *const csv_parse_args[] = {"data", "source", NULL};
static const ns_argspec csv_parse_spec = NS_ARGSPEC("csv_parse", csv_parse_args, 2);

static PyObject *py_csv_parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[2];
    const char *source;
    Py_buffer view;
    ns_annotations ann;
    if (!ns_parse_args(st, &csv_parse_spec, args, nargs, kwnames, a) ||
        !ns_conv_str(st, a[1], "source", &source) ||
        !parse_csv_buffer(st, a[0], source, &view, &ann))
        return NULL;
    PyObject *list = PyList_New((Py_ssize_t)ann.count);
    for (size_t i = 0; list && i < ann.count; i++) {
        PyObject *row = annotation_row(&view, &ann.rows[i]);
        if (!row) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, row);
    }
    int has_class = ann.has_class;
    ns_annotations_free(&ann);
    PyBuffer_Release(&view);
    if (!list) return NULL;
    return Py_BuildValue("(NO)", list, has_class ? Py_True : Py_False);
}

/* The columns of a parsed CSV: `prefix` + each file name (a list of str) and an int64 (n, 7)
 * array of width, height, x1, y1, x2, y2, class_id (-1 without a ClassId column). */
static PyObject *annotation_columns(const Py_buffer *view, const ns_annotations *ann,
                                    PyObject *prefix) {
    npy_intp dims[2] = {(npy_intp)ann->count, 7};
    PyArrayObject *numbers = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    PyObject *paths = numbers ? PyList_New((Py_ssize_t)ann->count) : NULL;
    if (!paths) {
        Py_XDECREF(numbers);
        return NULL;
    }
    int64_t *num = PyArray_DATA(numbers);
    for (size_t i = 0; i < ann->count; i++) {
        const ns_annotation *a = &ann->rows[i];
        PyObject *name = PyUnicode_DecodeUTF8((const char *)view->buf + a->name_offset,
                                              (Py_ssize_t)a->name_len, "surrogateescape");
        PyObject *path = name ? PyUnicode_Concat(prefix, name) : NULL;
        Py_XDECREF(name);
        if (!path) {
            Py_DECREF(paths);
            Py_DECREF(numbers);
            return NULL;
        }
        PyList_SET_ITEM(paths, (Py_ssize_t)i, path);
        int64_t *row = num + 7 * i;
        row[0] = a->width, row[1] = a->height, row[2] = a->x1, row[3] = a->y1;
        row[4] = a->x2, row[5] = a->y2, row[6] = a->class_id;
    }
    return Py_BuildValue("(NNO)", paths, numbers, ann->has_class ? Py_True : Py_False);
}

static const char *const csv_columns_args[] = {"data", "source", "prefix", NULL};
static const ns_argspec csv_columns_spec = NS_ARGSPEC("csv_columns", csv_columns_args, 3);

/* csv_parse by column: no Python object per row but the path, for whole splits. */
static PyObject *py_csv_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[3];
    const char *source;
    Py_buffer view;
    if (!ns_parse_args(st, &csv_columns_spec, args, nargs, kwnames, a) ||
        !ns_conv_str(st, a[1], "source", &source))
        return NULL;
    if (!PyUnicode_Check(a[2]))
        return ns_raise(st, "NeonsignTypeError", "prefix must be a str, not %s",
                        Py_TYPE(a[2])->tp_name);
    ns_annotations ann;
    if (!parse_csv_buffer(st, a[0], source, &view, &ann)) return NULL;
    PyObject *result = annotation_columns(&view, &ann, a[2]);
    ns_annotations_free(&ann);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Resize and normalise                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* An optional ROI tuple (x1, y1, x2, y2), corners inclusive, checked against a w x h image. */
static int conv_roi(ns_state *st, PyObject *obj, size_t w, size_t h, size_t box[4]) {
    box[0] = 0, box[1] = 0, box[2] = w - 1, box[3] = h - 1;
    if (obj == NULL || obj == Py_None) return 1;
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 4) {
        ns_raise(st, "NeonsignValueError", "roi must be a tuple (x1, y1, x2, y2) of ints");
        return 0;
    }
    long long r[4];
    for (int i = 0; i < 4; i++)
        if (!ns_conv_i64(st, PyTuple_GET_ITEM(obj, i), "roi", &r[i])) return 0;
    if (r[0] < 0 || r[1] < 0 || r[0] > r[2] || r[1] > r[3] || (unsigned long long)r[2] >= w ||
        (unsigned long long)r[3] >= h) {
        ns_raise(st, "NeonsignValueError",
                 "roi (%lld, %lld, %lld, %lld) does not fit the %zux%zu image (need 0 <= x1 <= "
                 "x2 < width, 0 <= y1 <= y2 < height; corners inclusive)",
                 r[0], r[1], r[2], r[3], w, h);
        return 0;
    }
    for (int i = 0; i < 4; i++) box[i] = (size_t)r[i];
    return 1;
}

/* The module's warm resize scratch (buffers and coefficient cache) for single-image resizes, so
 * that a server resizing request after request neither allocates nor recomputes coefficients
 * each time. Taken with a try-lock (the GIL is released while resizing): a call that finds it
 * busy uses a fresh local scratch. Emptied after a call that grew it beyond SCRATCH_KEEP. */
#define SCRATCH_KEEP ((size_t)16 << 20)

static ns_resize_scratch *scratch_acquire(ns_state *st, ns_resize_scratch *local) {
    memset(local, 0, sizeof *local);
    if (atomic_exchange_explicit(&st->resize_busy, 1, memory_order_acquire)) return local;
    st->resize_scratch.use_cache = 1;
    return &st->resize_scratch;
}

static void scratch_release(ns_state *st, ns_resize_scratch *s, ns_resize_scratch *local) {
    if (s == local) {
        ns_resize_scratch_free(local);
        return;
    }
    size_t bytes = s->coeffs_x.cap + s->coeffs_y.cap + s->tmp.cap + s->tr_in.cap + s->tr_out.cap;
    for (size_t i = 0; s->cache && i < NS_RESIZE_CACHE_SLOTS; i++) bytes += s->cache[i].buf.cap;
    if (bytes > SCRATCH_KEEP) ns_resize_scratch_free(s);
    atomic_store_explicit(&st->resize_busy, 0, memory_order_release);
}

void ns_preprocess_free(ns_state *st) {
    ns_resize_scratch_free(&st->resize_scratch);
}

static const char *const resize_args[] = {"image", "height", "width", "roi", NULL};
static const ns_argspec resize_spec = NS_ARGSPEC("resize", resize_args, 3);

static PyObject *py_resize(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[4];
    PyArrayObject *img;
    size_t oh, ow, box[4];
    if (!ns_parse_args(st, &resize_spec, args, nargs, kwnames, a) ||
        !(img = ns_check_rgb(st, a[0], "image", 3)) || !ns_conv_size(st, a[1], "height", 1, &oh) ||
        !ns_conv_size(st, a[2], "width", 1, &ow))
        return NULL;
    size_t h = (size_t)PyArray_DIM(img, 0), w = (size_t)PyArray_DIM(img, 1);
    if (h == 0 || w == 0) return ns_raise(st, "NeonsignValueError", "image must not be empty");
    if (!conv_roi(st, a[3], w, h, box)) return NULL;
    if (oh > NS_RESIZE_MAX_SIDE || ow > NS_RESIZE_MAX_SIDE)
        return ns_raise(st, "NeonsignValueError", "output size %zux%zu is too large", oh, ow);
    npy_intp dims[3] = {(npy_intp)oh, (npy_intp)ow, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    const uint8_t *src = (const uint8_t *)PyArray_DATA(img) + box[1] * w * 3 + box[0] * 3;
    uint8_t *dst = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS ns_resize_scratch local, *scratch = scratch_acquire(st, &local);
    status = ns_resize_u8c3(src, box[2] - box[0] + 1, box[3] - box[1] + 1, w * 3, dst, ow, oh,
                            scratch, &err);
    scratch_release(st, scratch, &local);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

/* Per-channel std values must be non-zero numbers (not NaN). */
static int check_std(ns_state *st, const float std[3]) {
    for (int c = 0; c < 3; c++)
        if (!(std[c] != 0.0f) || std[c] != std[c]) {
            ns_raise(st, "NeonsignValueError", "std[%d] must be a non-zero number", c);
            return 0;
        }
    return 1;
}

static const char *const normalize_args[] = {"images", "mean", "std", NULL};
static const ns_argspec normalize_spec = NS_ARGSPEC("normalize", normalize_args, 3);

static PyObject *py_normalize(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[3];
    PyArrayObject *img;
    float mean[3], stdv[3];
    if (!ns_parse_args(st, &normalize_spec, args, nargs, kwnames, a) ||
        !(img = ns_check_rgb(st, a[0], "images", 4)) || !ns_conv_triple(st, a[1], "mean", mean) ||
        !ns_conv_triple(st, a[2], "std", stdv) || !check_std(st, stdv))
        return NULL;
    npy_intp n = PyArray_DIM(img, 0), h = PyArray_DIM(img, 1), w = PyArray_DIM(img, 2);
    npy_intp dims[4] = {n, 3, h, w};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!out) return NULL;
    const uint8_t *src = PyArray_DATA(img);
    float *dst = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS float lut[3 * 256];
    ns_normalize_lut(mean, stdv, lut);
    size_t plane = (size_t)h * (size_t)w;
    for (npy_intp i = 0; i < n; i++)
        ns_normalize_hwc_to_chw(src + (size_t)i * plane * 3, (size_t)h, (size_t)w, lut,
                                dst + (size_t)i * plane * 3);
    Py_END_ALLOW_THREADS return (PyObject *)out;
}

/* ------------------------------------------------------------------------------------------ */
/* Training augmentation                                                                        */
/* ------------------------------------------------------------------------------------------ */

static const char *const augment_args[] = {"images", "theta", "bright", "contrast",
                                           "mean",   "std",   NULL};
static const ns_argspec augment_spec = NS_ARGSPEC("augment", augment_args, 6);

static PyObject *py_augment(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[6];
    PyArrayObject *img, *theta, *bright, *contrast;
    ns_augment_params p;
    if (!ns_parse_args(st, &augment_spec, args, nargs, kwnames, a) ||
        !(img = ns_check_rgb(st, a[0], "images", 4)))
        return NULL;
    npy_intp n = PyArray_DIM(img, 0), h = PyArray_DIM(img, 1), w = PyArray_DIM(img, 2);
    npy_intp theta_shape[3] = {n, 2, 3}, factor_shape[1] = {n};
    if (!(theta = ns_check_f32(st, a[1], "theta", 3, theta_shape, "NeonsignValueError")) ||
        !(bright = ns_check_f32(st, a[2], "bright", 1, factor_shape, "NeonsignValueError")) ||
        !(contrast = ns_check_f32(st, a[3], "contrast", 1, factor_shape, "NeonsignValueError")) ||
        !ns_conv_triple(st, a[4], "mean", p.mean) || !ns_conv_triple(st, a[5], "std", p.std) ||
        !check_std(st, p.std))
        return NULL;
    if ((size_t)h * (size_t)w > ((size_t)1 << 28))
        return ns_raise(st, "NeonsignValueError", "images of %zdx%zd pixels are too large", h, w);
    npy_intp dims[4] = {n, h, w, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *scratch = PyMem_RawMalloc(ns_augment_scratch_floats((size_t)h, (size_t)w) * 4);
    if (!scratch) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    p.theta = PyArray_DATA(theta);
    p.bright = PyArray_DATA(bright);
    p.contrast = PyArray_DATA(contrast);
    const uint8_t *src = PyArray_DATA(img);
    float *dst = PyArray_DATA(out);
    /* the caller references the arguments for the whole call: safe without the GIL */
    Py_BEGIN_ALLOW_THREADS ns_augment_u8c3(src, (size_t)n, (size_t)h, (size_t)w, &p, scratch, dst);
    Py_END_ALLOW_THREADS PyMem_RawFree(scratch);
    return (PyObject *)out;
}

/* ------------------------------------------------------------------------------------------ */
/* Whole-split loader                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Scalar settings of load_images -> req. */
static int load_request(ns_state *st, PyObject **a, ns_load_request *req) {
    long long layout;
    int skip_bad = 0, threads;
    if (!ns_conv_size(st, a[2], "height", 1, &req->out_h) ||
        !ns_conv_size(st, a[3], "width", 1, &req->out_w) ||
        !ns_conv_i64(st, a[4], "layout", &layout) || !ns_conv_triple(st, a[5], "mean", req->mean) ||
        !ns_conv_triple(st, a[6], "std", req->std) ||
        !ns_conv_size(st, a[7], "max_pixels", 1, &req->max_pixels) ||
        !ns_conv_size(st, a[8], "max_file_bytes", 1, &req->max_file_bytes) ||
        !ns_conv_bool(st, a[9], "skip_bad", &skip_bad) || !ns_conv_threads(st, a[10], &threads))
        return 0;
    if (layout != NS_LAYOUT_U8_NHWC && layout != NS_LAYOUT_F32_NCHW) {
        ns_raise(st, "NeonsignValueError", "unknown layout %lld", layout);
        return 0;
    }
    if (req->out_h > NS_RESIZE_MAX_SIDE || req->out_w > NS_RESIZE_MAX_SIDE) {
        ns_raise(st, "NeonsignValueError", "output size %zux%zu is too large", req->out_h,
                 req->out_w);
        return 0;
    }
    if (layout == NS_LAYOUT_F32_NCHW && !check_std(st, req->std)) return 0;
    req->layout = (ns_layout)layout;
    req->skip_bad = skip_bad;
    req->max_threads = threads;
    return 1;
}

/* rois: None or a C-contiguous int64 (n, 4) array. */
static int load_rois(ns_state *st, PyObject *obj, Py_ssize_t n, ns_load_request *req) {
    if (obj == Py_None) return 1;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!PyArray_Check(obj) || PyArray_TYPE(a) != NPY_INT64 || PyArray_NDIM(a) != 2 ||
        PyArray_DIM(a, 0) != n || PyArray_DIM(a, 1) != 4 || !PyArray_IS_C_CONTIGUOUS(a)) {
        ns_raise(st, "NeonsignValueError",
                 "rois must be a C-contiguous int64 array of shape (%zd, 4)", n);
        return 0;
    }
    req->rois = PyArray_DATA(a);
    return 1;
}

/* `given` as an output array of `type` and shape dims (ndim 4), or a new one when it is None:
 * a new reference. A given array must be exactly that: C-contiguous, aligned and writeable. */
static PyArrayObject *output_array(ns_state *st, PyObject *given, const npy_intp *dims, int type,
                                   const char *name) {
    if (!given || given == Py_None) /* omitted or None: a new array */
        return (PyArrayObject *)PyArray_SimpleNew(4, (npy_intp *)dims, type);
    PyArrayObject *a = (PyArrayObject *)given;
    if (!PyArray_Check(given) || PyArray_TYPE(a) != type || PyArray_NDIM(a) != 4 ||
        memcmp(PyArray_DIMS(a), dims, 4 * sizeof(npy_intp)) != 0 || !PyArray_IS_C_CONTIGUOUS(a) ||
        !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        ns_raise(st, "NeonsignValueError",
                 "%s must be a writeable C-contiguous %s array of shape (%zd, %zd, %zd, %zd)", name,
                 type == NPY_FLOAT32 ? "float32" : "uint8", (Py_ssize_t)dims[0],
                 (Py_ssize_t)dims[1], (Py_ssize_t)dims[2], (Py_ssize_t)dims[3]);
        return NULL;
    }
    Py_INCREF(given);
    return a;
}

/* The output images array for req: (n, 3, h, w) float32 or (n, h, w, 3) uint8; `given` (the
 * caller's) or new. */
static PyArrayObject *load_output(ns_state *st, const ns_load_request *req, Py_ssize_t n,
                                  PyObject *given) {
    size_t plane, total;
    if (ns_mul_overflow(req->out_h, req->out_w, &plane) || ns_mul_overflow(plane, 3, &plane) ||
        ns_mul_overflow(plane, req->count, &total) ||
        total > (size_t)NPY_MAX_INTP / sizeof(float)) {
        ns_raise(st, "NeonsignValueError", "output array would be too large");
        return NULL;
    }
    npy_intp dims[4] = {n, (npy_intp)req->out_h, (npy_intp)req->out_w, 3};
    if (req->layout == NS_LAYOUT_F32_NCHW)
        dims[1] = 3, dims[2] = (npy_intp)req->out_h, dims[3] = (npy_intp)req->out_w;
    return output_array(st, given, dims,
                        req->layout == NS_LAYOUT_F32_NCHW ? NPY_FLOAT32 : NPY_UINT8, "out");
}

/* The (index, message) list of the images skipped. */
static PyObject *load_errors(const ns_load_request *req, Py_ssize_t n) {
    PyObject *errors = PyList_New(0);
    for (Py_ssize_t i = 0; errors && req->skip_bad && i < n; i++) {
        if (req->ok[i]) continue;
        const char *msg = req->messages[i] ? req->messages[i] : "out of memory";
        PyObject *item = Py_BuildValue("(ns)", i, msg);
        if (!item || PyList_Append(errors, item) < 0) Py_CLEAR(errors);
        Py_XDECREF(item);
    }
    return errors;
}

/* What load_images owns while it runs; released by load_cleanup. */
typedef struct {
    PyObject *paths_tuple; /* a snapshot of the paths argument (safe from mutation by __fspath__) */
    Py_ssize_t n;
    PyObject **encoded; /* file-system bytes of each path */
    const char **paths;
    char **messages;
    PyArrayObject *images, *ok;
    PyArrayObject *images_u8; /* the uint8 side output of a float32 load, when asked for */
} load_job;

static void load_cleanup(load_job *job) {
    if (job->messages) {
        for (Py_ssize_t i = 0; i < job->n; i++) free(job->messages[i]);
        PyMem_Free(job->messages);
    }
    if (job->encoded) {
        for (Py_ssize_t i = 0; i < job->n; i++) Py_XDECREF(job->encoded[i]);
        PyMem_Free(job->encoded);
    }
    PyMem_Free(job->paths);
    Py_XDECREF(job->images);
    Py_XDECREF(job->images_u8);
    Py_XDECREF(job->ok);
    Py_XDECREF(job->paths_tuple);
}

/* The paths argument as a tuple: any sequence of paths, but not a single path (a str or bytes
 * is a sequence too). */
static PyObject *paths_snapshot(ns_state *st, PyObject *obj) {
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj) ||
        PyObject_HasAttrString(obj, "__fspath__"))
        return ns_raise(st, "NeonsignTypeError",
                        "paths must be a sequence of paths, not a single path (%s)",
                        Py_TYPE(obj)->tp_name);
    if (!PySequence_Check(obj))
        return ns_raise(st, "NeonsignTypeError", "paths must be a sequence of paths, not %s",
                        Py_TYPE(obj)->tp_name);
    PyObject *tuple = PySequence_Tuple(obj);
    if (!tuple) ns_translate_error(st, "paths");
    return tuple;
}

/* str / bytes / os.PathLike -> file-system bytes, kept alive in job->encoded. */
static int load_paths(ns_state *st, load_job *job) {
    job->encoded = PyMem_Calloc((size_t)job->n + 1, sizeof(PyObject *));
    job->paths = PyMem_Calloc((size_t)job->n + 1, sizeof(char *));
    if (!job->encoded || !job->paths) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < job->n; i++) {
        PyObject *item = PyTuple_GET_ITEM(job->paths_tuple, i);
        if (!ns_conv_path(st, item, "paths", &job->encoded[i])) return 0;
        job->paths[i] = PyBytes_AS_STRING(job->encoded[i]);
    }
    return 1;
}

static const char *const load_images_args[] = {
    "paths", "rois",       "height",         "width",         "layout",  "mean",
    "std",   "max_pixels", "max_file_bytes", "skip_bad",      "threads", "keep_uint8",
    "out",   "out_uint8",  "digest_prefix",  "digest_suffix", NULL};
static const ns_argspec load_images_spec = NS_ARGSPEC("load_images", load_images_args, 11);

/* For a float32 load with keep_uint8: the (n, h, w, 3) uint8 array the resizes are kept in
 * (`given`, the caller's, or new); it must not overlap the float32 output. */
static int load_side_output(ns_state *st, PyObject *keep, PyObject *given, load_job *job,
                            ns_load_request *req) {
    int want = 0;
    if (keep && !ns_conv_bool(st, keep, "keep_uint8", &want)) return 0;
    if (!want || req->layout != NS_LAYOUT_F32_NCHW) return 1;
    npy_intp dims[4] = {job->n, (npy_intp)req->out_h, (npy_intp)req->out_w, 3};
    job->images_u8 = output_array(st, given, dims, NPY_UINT8, "out_uint8");
    if (!job->images_u8) return 0;
    const char *u8 = PyArray_DATA(job->images_u8), *f = PyArray_DATA(job->images);
    if (u8 < f + PyArray_NBYTES(job->images) && f < u8 + PyArray_NBYTES(job->images_u8) &&
        PyArray_NBYTES(job->images_u8) > 0) {
        ns_raise(st, "NeonsignValueError", "out and out_uint8 must not overlap");
        return 0;
    }
    req->out_u8 = PyArray_DATA(job->images_u8);
    return 1;
}

/* digest_prefix / digest_suffix: with a prefix, the loader's workers compute sha256(prefix +
 * the uint8 rows + suffix) as the rows complete (the uint8 array must then exist). */
typedef struct {
    int want;
    Py_buffer prefix, suffix; /* suffix.buf NULL when omitted */
    ns_sha256 hash;
} load_digest;

static int digest_begin(ns_state *st, PyObject *prefix, PyObject *suffix, load_digest *d) {
    if (!prefix || prefix == Py_None) return 1;
    if (!ns_conv_buffer(st, prefix, "digest_prefix", &d->prefix)) return 0;
    d->want = 1;
    if (suffix && suffix != Py_None && !ns_conv_buffer(st, suffix, "digest_suffix", &d->suffix))
        return 0;
    ns_sha256_init(&d->hash);
    ns_sha256_update(&d->hash, d->prefix.buf, (size_t)d->prefix.len);
    return 1;
}

/* The digest's 32 bytes once the rows are in (a new reference), or None without a digest. */
static PyObject *digest_end(load_digest *d) {
    if (!d->want) return Py_NewRef(Py_None);
    if (d->suffix.buf) ns_sha256_update(&d->hash, d->suffix.buf, (size_t)d->suffix.len);
    uint8_t out[32];
    ns_sha256_final(&d->hash, out);
    return PyBytes_FromStringAndSize((const char *)out, sizeof out);
}

static void digest_release(load_digest *d) {
    if (d->prefix.buf) PyBuffer_Release(&d->prefix);
    if (d->suffix.buf) PyBuffer_Release(&d->suffix);
}

static PyObject *py_load_images(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[16];
    ns_load_request req;
    memset(&req, 0, sizeof req);
    if (!ns_parse_args(st, &load_images_spec, args, nargs, kwnames, a)) return NULL;
    PyObject *result = NULL;
    load_job job = {NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    load_digest digest;
    memset(&digest, 0, sizeof digest);
    if (!(job.paths_tuple = paths_snapshot(st, a[0]))) return NULL;
    job.n = PyTuple_GET_SIZE(job.paths_tuple);
    req.count = (size_t)job.n;
    ns_pool *pool = NULL;
    if (!load_request(st, a, &req) || !load_rois(st, a[1], job.n, &req) ||
        !(pool = ns_state_pool(st)))
        goto done;
    job.images = load_output(st, &req, job.n, a[12]);
    npy_intp okdim = job.n;
    job.ok = job.images ? (PyArrayObject *)PyArray_SimpleNew(1, &okdim, NPY_BOOL) : NULL;
    if (!job.ok || !load_side_output(st, a[11], a[13], &job, &req) ||
        !digest_begin(st, a[14], a[15], &digest))
        goto done;
    if (digest.want && req.layout == NS_LAYOUT_F32_NCHW && !job.images_u8) {
        ns_raise(st, "NeonsignValueError", "a float32 load with a digest needs keep_uint8");
        goto done;
    }
    req.digest = digest.want ? &digest.hash : NULL;
    if (req.skip_bad && !(job.messages = PyMem_Calloc((size_t)job.n + 1, sizeof(char *)))) {
        PyErr_NoMemory();
        goto done;
    }
    if (!load_paths(st, &job)) goto done;
    req.paths = job.paths;
    req.out = PyArray_DATA(job.images);
    req.ok = PyArray_DATA(job.ok);
    req.messages = job.messages;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    /* The paths are our own bytes objects and we hold references to the arrays (a caller's
     * array cannot be resized or freed while referenced): nothing the loader reads or writes
     * can go away while the GIL is released. */
    Py_BEGIN_ALLOW_THREADS status = ns_load_images(pool, &req, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        ns_raise_error(st, &err);
        goto done;
    }
    PyObject *errors = load_errors(&req, job.n);
    PyObject *side = job.images_u8 ? (PyObject *)job.images_u8 : Py_None;
    PyObject *hash = errors ? digest_end(&digest) : NULL;
    if (hash)
        result = Py_BuildValue("(OONON)", job.images, job.ok, errors, side, hash);
    else
        Py_XDECREF(errors);
done:
    digest_release(&digest);
    load_cleanup(&job);
    return result;
}

static PyObject *py_sha256_accelerated(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "sha256_accelerated", nargs, kwnames)) return NULL;
    return PyBool_FromLong(ns_sha256_accelerated());
}

static PyObject *py_resize_simd(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "resize_simd", nargs, kwnames)) return NULL;
    return PyUnicode_FromString(ns_resize_simd_name());
}

PyMethodDef ns_preprocess_methods[] = {
    {"sha256_accelerated", FASTCALL_KW(py_sha256_accelerated),
     "sha256_accelerated() -> bool\n\nWhether load_images' digest uses hardware SHA "
     "instructions (else hashlib is faster)."},
    {"resize_simd", FASTCALL_KW(py_resize_simd),
     "resize_simd() -> str\n\nSIMD used by the resizer's transposes (neon, ssse3 or none)."},
    {"ppm_decode", FASTCALL_KW(py_ppm_decode),
     "ppm_decode(data, max_pixels) -> uint8 (H, W, 3)\n\nDecode a binary PPM (P6) held in "
     "memory."},
    {"ppm_read", FASTCALL_KW(py_ppm_read),
     "ppm_read(path, max_pixels, max_file_bytes) -> uint8 (H, W, 3)\n\nRead and decode a PPM "
     "file."},
    {"png_unfilter", FASTCALL_KW(py_png_unfilter),
     "png_unfilter(data, width, height, channels) -> uint8 (height, width, 3)\n\nReconstruct the "
     "inflated rows of a non-interlaced 8-bit PNG (channels 1-4) as RGB, alpha on white."},
    {"csv_parse", FASTCALL_KW(py_csv_parse),
     "csv_parse(data, source) -> (rows, has_class)\n\nrows: (name, w, h, (x1, y1, x2, y2), cls); "
     "`source` names the file in errors."},
    {"csv_columns", FASTCALL_KW(py_csv_columns),
     "csv_columns(data, source, prefix) -> (paths, numbers, has_class)\n\npaths: prefix + "
     "each file name; numbers: int64 (n, 7) width, height, x1, y1, x2, y2, class_id (-1: none)."},
    {"resize", FASTCALL_KW(py_resize),
     "resize(image, height, width, roi=None) -> uint8 (height, width, 3)\n\nimage: uint8 (H, W, "
     "3); roi: (x1, y1, x2, y2) inclusive."},
    {"normalize", FASTCALL_KW(py_normalize),
     "normalize(images, mean, std) -> float32 (N, 3, H, W)\n\nimages: uint8 (N, H, W, 3)."},
    {"augment", FASTCALL_KW(py_augment),
     "augment(images, theta, bright, contrast, mean, std) -> float32 (N, H, W, 3)\n\nThe "
     "training augmentation in one pass on the calling thread: images uint8 (N, H, W, 3) "
     "resampled through theta float32 (N, 2, 3) (affine_grid + grid_sample bilinear, border, "
     "align_corners=False), brightness/contrast float32 (N,) around each image's mean, clamped "
     "to [0, 1], normalised by mean/std; NHWC (a channels_last NCHW tensor to PyTorch)."},
    {"load_images", FASTCALL_KW(py_load_images),
     "load_images(paths, rois, height, width, layout, mean, std, max_pixels, max_file_bytes, "
     "skip_bad, threads, keep_uint8, out, out_uint8, digest_prefix, digest_suffix) -> (images, "
     "ok, errors, images_u8, digest)\n\n"
     "images_u8: with keep_uint8 and the float32 layout, the uint8 (N, H, W, 3) resizes the "
     "float32 images were normalised from (filled in the same pass); else None. out / "
     "out_uint8: None, or the caller's arrays to fill (exact dtype and shape, C-contiguous). "
     "digest: with digest_prefix, sha256(prefix + the uint8 rows in order + digest_suffix) "
     "computed by the workers as rows complete (float32 needs keep_uint8); else None."},
    {NULL, NULL, 0, NULL},
};

int ns_preprocess_exec(PyObject *module, ns_state *st) {
    (void)st;
    if (PyModule_AddIntConstant(module, "LAYOUT_U8_NHWC", NS_LAYOUT_U8_NHWC) < 0) return -1;
    if (PyModule_AddIntConstant(module, "LAYOUT_F32_NCHW", NS_LAYOUT_F32_NCHW) < 0) return -1;
    return 0;
}
