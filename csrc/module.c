/* neonsign._native: the one file that knows about Python and NumPy.
 *
 * It converts Python objects to plain C buffers, validates dtype/shape/contiguity before any
 * pointer reaches csrc/core, releases the GIL around work that takes more than microseconds,
 * and turns ns_error into Python exceptions from neonsign.errors.
 *
 * Layout: shared helpers first, then one section per subsystem (preprocessing, engine, ...).
 * Each section defines <SECTION>_METHODS (entries for the method table) and a
 * <section>_init(PyObject *module) hook called from module init.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define NPY_TARGET_VERSION    NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/prof.h"

/* ------------------------------------------------------------------------------------------ */
/* Shared helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static ns_pool *g_pool = NULL;    /* the process-wide thread pool */
static PyObject *g_errors = NULL; /* the neonsign.errors module */

static ns_pool *module_pool(void) {
    return g_pool;
}

/* Exception class neonsign.errors.<name>, or `fallback` if it cannot be found. Borrowed-like:
 * the returned reference is new and must be released by the caller. */
static PyObject *error_class(const char *name, PyObject *fallback) {
    if (g_errors) {
        PyObject *cls = PyObject_GetAttrString(g_errors, name);
        if (cls) return cls;
        PyErr_Clear();
    }
    Py_INCREF(fallback);
    return fallback;
}

/* Raise the Python exception that corresponds to err. `cls_name` (may be NULL) overrides the
 * class used for NS_ERR_FORMAT (e.g. "AnnotationError" for CSV). Always returns NULL. */
static PyObject *raise_ns_error_as(const ns_error *err, const char *cls_name) {
    const char *msg = (err && err->msg[0]) ? err->msg : "unknown error in neonsign._native";
    ns_status st = err ? err->status : NS_ERR_INVALID;
    PyObject *cls = NULL;
    switch (st) {
    case NS_ERR_FORMAT:
        cls = error_class(cls_name ? cls_name : "DecodeError", PyExc_ValueError);
        break;
    case NS_ERR_LIMIT:
        cls = error_class("ResourceLimitError", PyExc_ValueError);
        break;
    case NS_ERR_UNSUPPORTED:
        cls = error_class("UnsupportedError", PyExc_ValueError);
        break;
    case NS_ERR_NOMEM:
        PyErr_SetString(PyExc_MemoryError, msg);
        return NULL;
    case NS_ERR_NOTFOUND:
    case NS_ERR_IO: {
        int e = err->sys_errno ? err->sys_errno : (st == NS_ERR_NOTFOUND ? ENOENT : EIO);
        PyObject *args = Py_BuildValue("(is)", e, msg);
        if (args) {
            /* OSError(errno, msg) picks FileNotFoundError & co. from errno */
            PyErr_SetObject(PyExc_OSError, args);
            Py_DECREF(args);
        }
        return NULL;
    }
    case NS_ERR_INVALID:
    default:
        cls = error_class(cls_name ? cls_name : "NeonsignValueError", PyExc_ValueError);
        break;
    }
    PyErr_SetString(cls, msg);
    Py_DECREF(cls);
    return NULL;
}

static PyObject *raise_ns_error(const ns_error *err) {
    return raise_ns_error_as(err, NULL);
}

/* Threads argument: None -> 0 (the pool's size); otherwise a non-negative int. */
static int parse_threads(PyObject *obj, int *out) {
    if (obj == NULL || obj == Py_None) {
        *out = 0;
        return 1;
    }
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return 0;
    if (v < 0 || v > NS_POOL_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be between 0 and %d, got %ld",
                     NS_POOL_MAX_THREADS, v);
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Core: thread pool and build information                                                      */
/* ------------------------------------------------------------------------------------------ */

static PyObject *py_set_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > NS_POOL_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be between 0 (all CPUs) and %d, got %ld",
                     NS_POOL_MAX_THREADS, n);
        return NULL;
    }
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_pool_resize(g_pool, (int)n, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) return raise_ns_error(&err);
    return PyLong_FromLong(ns_pool_threads(g_pool));
}

static PyObject *py_get_threads(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromLong(ns_pool_threads(g_pool));
}

static PyObject *py_cpu_count(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromLong(ns_cpu_count());
}

static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
#if defined(__aarch64__)
    const char *arch = "aarch64";
#elif defined(__x86_64__)
    const char *arch = "x86_64";
#else
    const char *arch = "other";
#endif
#if defined(__clang__)
    const char *cc = "clang " __clang_version__;
#elif defined(__GNUC__)
    const char *cc = "gcc " __VERSION__;
#else
    const char *cc = "unknown";
#endif
    return Py_BuildValue("{s:s,s:s,s:I}", "arch", arch, "compiler", cc, "numpy_abi_version",
                         (unsigned int)NPY_ABI_VERSION);
}

#define CORE_METHODS                                                                               \
    {"set_threads", py_set_threads, METH_O,                                                        \
     "set_threads(n) -> int\n\nResize the shared thread pool (0 = one per CPU, 1 = no threads)."}, \
        {"get_threads", py_get_threads, METH_NOARGS,                                               \
         "get_threads() -> int\n\nThreads in the pool."},                                          \
        {"cpu_count", py_cpu_count, METH_NOARGS, "cpu_count() -> int\n\nOnline CPUs."},            \
        {"build_info", py_build_info, METH_NOARGS,                                                 \
         "build_info() -> dict\n\nHow this module was built."},

/* ------------------------------------------------------------------------------------------ */
/* Preprocessing: PPM, CSV, resize, normalise, whole-split loader                               */
/* ------------------------------------------------------------------------------------------ */

#include <stdatomic.h>

#include "core/csv.h"
#include "core/fileio.h"
#include "core/loader.h"
#include "core/ppm.h"
#include "core/resize.h"

/* A size_t from a Python int, >= minimum. */
static int pp_size_arg(PyObject *obj, const char *name, size_t minimum, size_t *out) {
    size_t v = PyLong_AsSize_t(obj);
    if (v == (size_t)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be an integer >= %zu", name, minimum);
        }
        return 0;
    }
    if (v < minimum) {
        PyErr_Format(PyExc_ValueError, "%s must be >= %zu, got %zu", name, minimum, v);
        return 0;
    }
    *out = v;
    return 1;
}

/* Three floats from a sequence. */
static int pp_triple(PyObject *obj, const char *name, float out[3]) {
    PyObject *seq = PySequence_Fast(obj, "must be a sequence of 3 numbers");
    if (!seq) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of 3 numbers", name);
        return 0;
    }
    if (PySequence_Fast_GET_SIZE(seq) != 3) {
        PyErr_Format(PyExc_ValueError, "%s must have 3 values (one per channel), got %zd", name,
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return 0;
        }
        out[i] = (float)v;
    }
    Py_DECREF(seq);
    return 1;
}

/* A C-contiguous uint8 array of shape (..., H, W, 3) with `ndim` dimensions. Sets an error
 * naming `name` and returns NULL otherwise. Borrowed check only: no conversion. */
static PyArrayObject *pp_rgb_array(PyObject *obj, const char *name, int ndim) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_UINT8 || PyArray_NDIM(a) != ndim || PyArray_DIM(a, ndim - 1) != 3 ||
        !PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a C-contiguous uint8 array with %d dimensions, the last of size 3",
                     name, ndim);
        return NULL;
    }
    for (int d = 0; d < ndim; d++)
        if (PyArray_DIM(a, d) < 1 && d != 0) {
            PyErr_Format(PyExc_ValueError, "%s has an empty dimension", name);
            return NULL;
        }
    return a;
}

/* Decode a PPM held in memory; returns a new (H, W, 3) uint8 array or NULL. */
static PyObject *pp_decode_buffer(const uint8_t *data, size_t len, size_t max_pixels,
                                  int release_gil) {
    ns_error err;
    ns_error_clear(&err);
    ns_ppm_info info;
    ns_status st = ns_ppm_parse_header(data, len, max_pixels, &info, &err);
    if (st != NS_OK) return raise_ns_error(&err);
    npy_intp dims[3] = {(npy_intp)info.height, (npy_intp)info.width, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) return NULL;
    uint8_t *dst = PyArray_DATA(out);
    if (release_gil) {
        Py_BEGIN_ALLOW_THREADS st = ns_ppm_decode_pixels(data, len, &info, dst, &err);
        Py_END_ALLOW_THREADS
    } else {
        st = ns_ppm_decode_pixels(data, len, &info, dst, &err);
    }
    if (st != NS_OK) {
        Py_DECREF(out);
        return raise_ns_error(&err);
    }
    return (PyObject *)out;
}

static PyObject *py_ppm_decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    PyObject *maxpx_obj;
    if (!PyArg_ParseTuple(args, "y*O:ppm_decode", &view, &maxpx_obj)) return NULL;
    size_t max_pixels;
    PyObject *res = NULL;
    if (pp_size_arg(maxpx_obj, "max_pixels", 1, &max_pixels))
        /* the buffer stays exported (and so unchanged in size) while the GIL is released */
        res = pp_decode_buffer(view.buf, (size_t)view.len, max_pixels, view.len > 65536);
    PyBuffer_Release(&view);
    return res;
}

static PyObject *py_ppm_read(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_bytes = NULL, *maxpx_obj, *maxb_obj;
    if (!PyArg_ParseTuple(args, "O&OO:ppm_read", PyUnicode_FSConverter, &path_bytes, &maxpx_obj,
                          &maxb_obj))
        return NULL;
    size_t max_pixels, max_bytes;
    PyObject *res = NULL;
    if (!pp_size_arg(maxpx_obj, "max_pixels", 1, &max_pixels) ||
        !pp_size_arg(maxb_obj, "max_file_bytes", 1, &max_bytes)) {
        Py_DECREF(path_bytes);
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_bytes);
    ns_buf buf = {NULL, 0};
    size_t len = 0;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_read_file(path, max_bytes, &buf, &len, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        raise_ns_error(&err);
    }
    else {
        res = pp_decode_buffer(buf.data, len, max_pixels, 1);
        if (!res && PyErr_Occurred()) {
            /* name the file in decoder errors */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyObject *s = value ? PyObject_Str(value) : NULL;
            if (s && PyObject_IsSubclass(type, PyExc_ValueError) == 1) {
                PyErr_Format(type, "%s: %U", path, s);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            } else {
                PyErr_Restore(type, value, tb);
            }
            Py_XDECREF(s);
        }
    }
    ns_buf_free(&buf);
    Py_DECREF(path_bytes);
    return res;
}

static PyObject *py_csv_parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    const char *source;
    if (!PyArg_ParseTuple(args, "y*s:csv_parse", &view, &source)) return NULL;
    ns_annotations ann;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_csv_parse(view.buf, (size_t)view.len, source, &ann, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        PyBuffer_Release(&view);
        return raise_ns_error_as(&err, "AnnotationError");
    }
    PyObject *list = PyList_New((Py_ssize_t)ann.count);
    for (size_t i = 0; list && i < ann.count; i++) {
        const ns_annotation *a = &ann.rows[i];
        PyObject *name = PyUnicode_DecodeUTF8((const char *)view.buf + a->name_offset,
                                              (Py_ssize_t)a->name_len, "surrogateescape");
        PyObject *cls =
            a->class_id < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLongLong(a->class_id);
        PyObject *row =
            (name && cls) ? Py_BuildValue("(NLL(LLLL)N)", name, (long long)a->width,
                                          (long long)a->height, (long long)a->x1, (long long)a->y1,
                                          (long long)a->x2, (long long)a->y2, cls)
                          : NULL;
        if (!row) {
            if (!(name && cls)) {
                Py_XDECREF(name);
                Py_XDECREF(cls);
            }
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

/* Parse an optional ROI tuple (x1, y1, x2, y2) inclusive, checked against a w x h image. */
static int pp_roi(PyObject *obj, size_t w, size_t h, size_t box[4]) {
    box[0] = 0, box[1] = 0, box[2] = w - 1, box[3] = h - 1;
    if (obj == Py_None) return 1;
    long long r[4];
    if (!PyArg_ParseTuple(obj, "LLLL;roi must be a tuple (x1, y1, x2, y2) of ints", &r[0], &r[1],
                          &r[2], &r[3]))
        return 0;
    if (r[0] < 0 || r[1] < 0 || r[0] > r[2] || r[1] > r[3] || (unsigned long long)r[2] >= w ||
        (unsigned long long)r[3] >= h) {
        PyErr_Format(PyExc_ValueError,
                     "roi (%lld, %lld, %lld, %lld) does not fit the %zux%zu image (need 0 <= x1 <= "
                     "x2 < width, 0 <= y1 <= y2 < height; corners inclusive)",
                     r[0], r[1], r[2], r[3], w, h);
        return 0;
    }
    for (int i = 0; i < 4; i++) box[i] = (size_t)r[i];
    return 1;
}

/* One warm resize scratch (buffers and coefficient cache) for single-image resizes, so that a
 * server resizing request after request neither allocates nor recomputes coefficients each time.
 * Taken with a try-lock (the GIL is released while resizing): a call that finds it busy uses a
 * fresh local scratch. Emptied after a call that grew it beyond PP_SCRATCH_KEEP bytes. */
static ns_resize_scratch g_resize_scratch;
static atomic_flag g_resize_busy = ATOMIC_FLAG_INIT;
#define PP_SCRATCH_KEEP ((size_t)16 << 20)

static ns_resize_scratch *pp_scratch_acquire(ns_resize_scratch *local) {
    memset(local, 0, sizeof *local);
    if (atomic_flag_test_and_set_explicit(&g_resize_busy, memory_order_acquire)) return local;
    g_resize_scratch.use_cache = 1;
    return &g_resize_scratch;
}

static void pp_scratch_release(ns_resize_scratch *s, ns_resize_scratch *local) {
    if (s == local) {
        ns_resize_scratch_free(local);
        return;
    }
    size_t bytes = s->coeffs_x.cap + s->coeffs_y.cap + s->tmp.cap + s->tr_in.cap + s->tr_out.cap;
    for (size_t i = 0; s->cache && i < NS_RESIZE_CACHE_SLOTS; i++) bytes += s->cache[i].buf.cap;
    if (bytes > PP_SCRATCH_KEEP) ns_resize_scratch_free(s);
    atomic_flag_clear_explicit(&g_resize_busy, memory_order_release);
}

static PyObject *py_resize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *img_obj, *oh_obj, *ow_obj, *roi_obj;
    if (!PyArg_ParseTuple(args, "OOOO:resize", &img_obj, &oh_obj, &ow_obj, &roi_obj)) return NULL;
    PyArrayObject *img = pp_rgb_array(img_obj, "image", 3);
    if (!img) return NULL;
    size_t oh, ow, box[4];
    if (!pp_size_arg(oh_obj, "height", 1, &oh) || !pp_size_arg(ow_obj, "width", 1, &ow))
        return NULL;
    size_t h = (size_t)PyArray_DIM(img, 0), w = (size_t)PyArray_DIM(img, 1);
    if (h == 0 || w == 0) {
        PyErr_SetString(PyExc_ValueError, "image must not be empty");
        return NULL;
    }
    if (!pp_roi(roi_obj, w, h, box)) return NULL;
    if (oh > NS_RESIZE_MAX_SIDE || ow > NS_RESIZE_MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "output size %zux%zu is too large", oh, ow);
        return NULL;
    }
    npy_intp dims[3] = {(npy_intp)oh, (npy_intp)ow, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    const uint8_t *src = (const uint8_t *)PyArray_DATA(img) + box[1] * w * 3 + box[0] * 3;
    Py_BEGIN_ALLOW_THREADS ns_resize_scratch local, *scratch = pp_scratch_acquire(&local);
    st = ns_resize_u8c3(src, box[2] - box[0] + 1, box[3] - box[1] + 1, w * 3, PyArray_DATA(out), ow,
                        oh, scratch, &err);
    pp_scratch_release(scratch, &local);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        Py_DECREF(out);
        return raise_ns_error(&err);
    }
    return (PyObject *)out;
}

static PyObject *py_normalize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *img_obj, *mean_obj, *std_obj;
    if (!PyArg_ParseTuple(args, "OOO:normalize", &img_obj, &mean_obj, &std_obj)) return NULL;
    PyArrayObject *img = pp_rgb_array(img_obj, "images", 4);
    if (!img) return NULL;
    float mean[3], stdv[3];
    if (!pp_triple(mean_obj, "mean", mean) || !pp_triple(std_obj, "std", stdv)) return NULL;
    for (int c = 0; c < 3; c++)
        if (!(stdv[c] != 0.0f) || stdv[c] != stdv[c]) {
            PyErr_Format(PyExc_ValueError, "std[%d] must be a non-zero number", c);
            return NULL;
        }
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

/* load_images(paths: list[str | bytes | os.PathLike], rois: int64 (N,4) array | None, out_h, out_w, layout,
 *             mean, std, max_pixels, max_file_bytes, skip_bad, threads)
 *   -> (images, ok: bool (N,), errors: list[(index, message)]) */
static PyObject *py_load_images(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *paths_obj, *rois_obj, *oh_obj, *ow_obj, *mean_obj, *std_obj, *maxpx_obj, *maxb_obj,
        *threads_obj;
    int layout, skip_bad;
    if (!PyArg_ParseTuple(args, "O!OOOiOOOOpO:load_images", &PyList_Type, &paths_obj, &rois_obj,
                          &oh_obj, &ow_obj, &layout, &mean_obj, &std_obj, &maxpx_obj, &maxb_obj,
                          &skip_bad, &threads_obj))
        return NULL;
    ns_load_request req;
    memset(&req, 0, sizeof req);
    int threads;
    if (!pp_size_arg(oh_obj, "height", 1, &req.out_h) ||
        !pp_size_arg(ow_obj, "width", 1, &req.out_w) || !pp_triple(mean_obj, "mean", req.mean) ||
        !pp_triple(std_obj, "std", req.std) ||
        !pp_size_arg(maxpx_obj, "max_pixels", 1, &req.max_pixels) ||
        !pp_size_arg(maxb_obj, "max_file_bytes", 1, &req.max_file_bytes) ||
        !parse_threads(threads_obj, &threads))
        return NULL;
    if (layout != NS_LAYOUT_U8_NHWC && layout != NS_LAYOUT_F32_NCHW) {
        PyErr_Format(PyExc_ValueError, "unknown layout %d", layout);
        return NULL;
    }
    if (req.out_h > NS_RESIZE_MAX_SIDE || req.out_w > NS_RESIZE_MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "output size %zux%zu is too large", req.out_h, req.out_w);
        return NULL;
    }
    for (int c = 0; layout == NS_LAYOUT_F32_NCHW && c < 3; c++)
        if (!(req.std[c] != 0.0f) || req.std[c] != req.std[c]) {
            PyErr_Format(PyExc_ValueError, "std[%d] must be a non-zero number", c);
            return NULL;
        }
    req.layout = (ns_layout)layout;
    req.skip_bad = skip_bad;
    req.max_threads = threads;
    Py_ssize_t n = PyList_GET_SIZE(paths_obj);
    req.count = (size_t)n;

    PyArrayObject *rois = NULL;
    if (rois_obj != Py_None) {
        if (!PyArray_Check(rois_obj) || PyArray_TYPE((PyArrayObject *)rois_obj) != NPY_INT64 ||
            PyArray_NDIM((PyArrayObject *)rois_obj) != 2 ||
            PyArray_DIM((PyArrayObject *)rois_obj, 0) != n ||
            PyArray_DIM((PyArrayObject *)rois_obj, 1) != 4 ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)rois_obj)) {
            PyErr_Format(PyExc_ValueError,
                         "rois must be a C-contiguous int64 array of shape (%zd, 4)", n);
            return NULL;
        }
        rois = (PyArrayObject *)rois_obj;
        req.rois = PyArray_DATA(rois);
    }

    /* output arrays (checked sizes: numpy raises on overflow / out of memory) */
    size_t plane, total;
    if (ns_mul_overflow(req.out_h, req.out_w, &plane) || ns_mul_overflow(plane, 3, &plane) ||
        ns_mul_overflow(plane, req.count, &total) || total > (size_t)NPY_MAX_INTP / sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "output array would be too large");
        return NULL;
    }
    npy_intp dims[4];
    dims[0] = n;
    if (layout == NS_LAYOUT_F32_NCHW) {
        dims[1] = 3, dims[2] = (npy_intp)req.out_h, dims[3] = (npy_intp)req.out_w;
    } else {
        dims[1] = (npy_intp)req.out_h, dims[2] = (npy_intp)req.out_w, dims[3] = 3;
    }
    PyArrayObject *images = (PyArrayObject *)PyArray_SimpleNew(
        4, dims, layout == NS_LAYOUT_F32_NCHW ? NPY_FLOAT32 : NPY_UINT8);
    npy_intp okdim = n;
    PyArrayObject *ok = images ? (PyArrayObject *)PyArray_SimpleNew(1, &okdim, NPY_BOOL) : NULL;
    const char **paths = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    char **messages = skip_bad ? PyMem_Calloc((size_t)n + 1, sizeof(char *)) : NULL;
    PyObject *result = NULL, *errors = NULL, **encoded = NULL;
    if (!images || !ok || !paths || (skip_bad && !messages)) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    /* str / bytes / os.PathLike -> file-system bytes (PyUnicode_FSConverter also refuses
     * embedded NUL bytes); the converted objects live until `done`. */
    encoded = PyMem_Calloc((size_t)n + 1, sizeof(PyObject *));
    if (!encoded) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_FSConverter(PyList_GET_ITEM(paths_obj, i), &encoded[i])) {
            encoded[i] = NULL;
            goto done;
        }
        paths[i] = PyBytes_AS_STRING(encoded[i]);
    }
    req.paths = paths;
    req.out = PyArray_DATA(images);
    req.ok = PyArray_DATA(ok);
    req.messages = messages;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    /* The list and arrays stay alive (we hold references through the arguments); the pool is
     * used with the GIL released. */
    Py_BEGIN_ALLOW_THREADS st = ns_load_images(module_pool(), &req, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        raise_ns_error(&err);
        goto done;
    }
    errors = PyList_New(0);
    if (!errors) goto done;
    for (Py_ssize_t i = 0; skip_bad && i < n; i++) {
        if (req.ok[i]) continue;
        PyObject *item = Py_BuildValue("(ns)", i, messages[i] ? messages[i] : "out of memory");
        if (!item || PyList_Append(errors, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    result = Py_BuildValue("(OOO)", images, ok, errors);
done:
    if (messages) {
        for (Py_ssize_t i = 0; i < n; i++) free(messages[i]);
        PyMem_Free(messages);
    }
    PyMem_Free(paths);
    if (encoded) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(encoded[i]);
        PyMem_Free(encoded);
    }
    Py_XDECREF(errors);
    Py_XDECREF(images);
    Py_XDECREF(ok);
    return result;
}

static PyObject *py_resize_simd(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(ns_resize_simd_name());
}

#define PREPROCESS_METHODS                                                                         \
    {"resize_simd", py_resize_simd, METH_NOARGS,                                                   \
     "resize_simd() -> str\n\nSIMD used by the resizer's transposes (neon, ssse3 or none)."},      \
        {"ppm_decode", py_ppm_decode, METH_VARARGS,                                                \
         "ppm_decode(data, max_pixels) -> uint8 (H, W, 3)"},                                       \
        {"ppm_read", py_ppm_read, METH_VARARGS,                                                    \
         "ppm_read(path, max_pixels, max_file_bytes) -> uint8 (H, W, 3)"},                         \
        {"csv_parse", py_csv_parse, METH_VARARGS,                                                  \
         "csv_parse(data, source) -> (rows, has_class); rows: (name, w, h, (x1, y1, x2, y2), "     \
         "cls)"},                                                                                  \
        {"resize", py_resize, METH_VARARGS,                                                        \
         "resize(image uint8 (H, W, 3), out_h, out_w, roi | None) -> uint8 (out_h, out_w, 3)"},    \
        {"normalize", py_normalize, METH_VARARGS,                                                  \
         "normalize(images uint8 (N, H, W, 3), mean, std) -> float32 (N, 3, H, W)"},               \
        {"load_images", py_load_images, METH_VARARGS,                                              \
         "load_images(paths, rois, out_h, out_w, layout, mean, std, max_pixels, max_file_bytes, "  \
         "skip_bad, threads) -> (images, ok, errors)"},

static int preprocess_init(PyObject *m) {
    if (PyModule_AddIntConstant(m, "LAYOUT_U8_NHWC", NS_LAYOUT_U8_NHWC) < 0) return -1;
    if (PyModule_AddIntConstant(m, "LAYOUT_F32_NCHW", NS_LAYOUT_F32_NCHW) < 0) return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Profiler: span recorder (csrc/core/prof.c) and the cycle counter                            */
/* ------------------------------------------------------------------------------------------ */

/* Spans are microsecond-scale calls made with the GIL held (a recorder is single-threaded); the
 * GIL is not released here because each call does a few hundred nanoseconds of work. */
typedef struct {
    PyObject_HEAD ns_prof *prof;
} RecorderObject;

/* Name argument: a str (interned on the fly) or an int id from intern(). */
static int recorder_name_id(RecorderObject *self, PyObject *obj, uint32_t *id) {
    ns_error err;
    ns_error_clear(&err);
    if (PyLong_Check(obj)) {
        long long v = PyLong_AsLongLong(obj);
        if (v == -1 && PyErr_Occurred()) return 0;
        if (v < 0 || (unsigned long long)v >= ns_prof_name_count(self->prof)) {
            PyErr_Format(PyExc_ValueError, "unknown span name id %lld (the recorder has %zu names)",
                         v, ns_prof_name_count(self->prof));
            return 0;
        }
        *id = (uint32_t)v;
        return 1;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "span name must be str or int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!s) return 0;
    if ((size_t)len != strlen(s)) {
        PyErr_SetString(PyExc_ValueError, "span name must not contain NUL characters");
        return 0;
    }
    if (ns_prof_intern(self->prof, s, id, &err) != NS_OK) {
        raise_ns_error(&err);
        return 0;
    }
    return 1;
}

static PyObject *recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    RecorderObject *self = (RecorderObject *)type->tp_alloc(type, 0);
    if (self) self->prof = NULL;
    return (PyObject *)self;
}

static int recorder_init(RecorderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"capacity", "enabled", NULL};
    Py_ssize_t capacity = 0;
    int enabled = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|np:Recorder", kwlist, &capacity, &enabled))
        return -1;
    if (capacity < 0) {
        PyErr_Format(PyExc_ValueError, "capacity must be >= 0, got %zd", capacity);
        return -1;
    }
    ns_error err;
    ns_error_clear(&err);
    ns_prof *p = NULL;
    if (ns_prof_create(&p, (size_t)capacity, &err) != NS_OK) {
        raise_ns_error(&err);
        return -1;
    }
    ns_prof_set_enabled(p, enabled);
    ns_prof_destroy(self->prof);
    self->prof = p;
    return 0;
}

static void recorder_dealloc(RecorderObject *self) {
    ns_prof_destroy(self->prof);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int recorder_ready(RecorderObject *self) {
    if (!self->prof) {
        PyErr_SetString(PyExc_RuntimeError, "Recorder.__init__ was not called");
        return 0;
    }
    return 1;
}

static PyObject *recorder_intern(RecorderObject *self, PyObject *name) {
    uint32_t id;
    if (!recorder_ready(self) || !recorder_name_id(self, name, &id)) return NULL;
    return PyLong_FromUnsignedLong(id);
}

static PyObject *recorder_begin(RecorderObject *self, PyObject *name) {
    uint32_t id;
    if (!recorder_ready(self) || !recorder_name_id(self, name, &id)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_begin(self->prof, id, &err) != NS_OK) return raise_ns_error(&err);
    Py_RETURN_NONE;
}

static PyObject *recorder_end(RecorderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!recorder_ready(self)) return NULL;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "end() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    uint32_t id = NS_PROF_ANY_NAME;
    if (nargs == 1 && args[0] != Py_None && !recorder_name_id(self, args[0], &id)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_end(self->prof, id, &err) != NS_OK) return raise_ns_error(&err);
    Py_RETURN_NONE;
}

static PyObject *recorder_add(RecorderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "duration_ns", "calls", "parent", "start_ns", NULL};
    PyObject *name, *duration_obj, *calls_obj = NULL, *start_obj = NULL;
    unsigned long long duration = 0, calls = 1, start = 0;
    long long parent = NS_PROF_NO_PARENT;
    if (!recorder_ready(self)) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OLO:add", kwlist, &name, &duration_obj,
                                     &calls_obj, &parent, &start_obj))
        return NULL;
    /* PyLong_AsUnsignedLongLong rejects negative values and non-integers (unlike "K") */
    duration = PyLong_AsUnsignedLongLong(duration_obj);
    if (duration == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (calls_obj) {
        calls = PyLong_AsUnsignedLongLong(calls_obj);
        if (calls == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    }
    if (start_obj) {
        start = PyLong_AsUnsignedLongLong(start_obj);
        if (start == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    }
    uint32_t id;
    if (!recorder_name_id(self, name, &id)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_add(self->prof, id, (int64_t)parent, start, duration, calls, &err) != NS_OK)
        return raise_ns_error(&err);
    Py_RETURN_NONE;
}

static PyObject *recorder_reset(RecorderObject *self, PyObject *noargs) {
    (void)noargs;
    if (!recorder_ready(self)) return NULL;
    ns_prof_reset(self->prof);
    Py_RETURN_NONE;
}

static PyObject *recorder_names(RecorderObject *self, PyObject *noargs) {
    (void)noargs;
    if (!recorder_ready(self)) return NULL;
    size_t n = ns_prof_name_count(self->prof);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(ns_prof_name(self->prof, (uint32_t)i));
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    return list;
}

/* records() -> dict of 1-D arrays, one entry per record, in begin order. */
static PyObject *recorder_records(RecorderObject *self, PyObject *noargs) {
    (void)noargs;
    if (!recorder_ready(self)) return NULL;
    size_t n = ns_prof_count(self->prof);
    const ns_prof_record *rec = ns_prof_records(self->prof);
    static const char *keys[] = {"name",   "parent",      "depth",  "calls",   "start_ns",
                                 "end_ns", "duration_ns", "cycles", "complete"};
    static const int types[] = {NPY_INT32,  NPY_INT64,  NPY_INT32,  NPY_UINT64, NPY_UINT64,
                                NPY_UINT64, NPY_UINT64, NPY_UINT64, NPY_BOOL};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    PyArrayObject *arr[NKEYS] = {NULL};
    PyObject *out = NULL;
    npy_intp dims[1] = {(npy_intp)n};
    for (int k = 0; k < NKEYS; k++) {
        arr[k] = (PyArrayObject *)PyArray_SimpleNew(1, dims, types[k]);
        if (!arr[k]) goto done;
    }
    {
        int32_t *name = PyArray_DATA(arr[0]);
        int64_t *parent = PyArray_DATA(arr[1]);
        int32_t *depth = PyArray_DATA(arr[2]);
        uint64_t *calls = PyArray_DATA(arr[3]);
        uint64_t *start = PyArray_DATA(arr[4]);
        uint64_t *end = PyArray_DATA(arr[5]);
        uint64_t *dur = PyArray_DATA(arr[6]);
        uint64_t *cyc = PyArray_DATA(arr[7]);
        npy_bool *complete = PyArray_DATA(arr[8]);
        for (size_t i = 0; i < n; i++) {
            const ns_prof_record *r = &rec[i];
            int done_ = r->end_ns != 0;
            name[i] = (int32_t)r->name;
            parent[i] = r->parent;
            depth[i] = (int32_t)r->depth;
            calls[i] = r->calls;
            start[i] = r->start_ns;
            end[i] = r->end_ns;
            dur[i] = (done_ && r->end_ns >= r->start_ns) ? r->end_ns - r->start_ns : 0;
            cyc[i] =
                (done_ && r->end_cycles >= r->start_cycles) ? r->end_cycles - r->start_cycles : 0;
            complete[i] = (npy_bool)done_;
        }
    }
    out = PyDict_New();
    if (!out) goto done;
    for (int k = 0; k < NKEYS; k++) {
        if (PyDict_SetItemString(out, keys[k], (PyObject *)arr[k]) < 0) {
            Py_CLEAR(out);
            goto done;
        }
    }
done:
    for (int k = 0; k < NKEYS; k++) Py_XDECREF(arr[k]);
    return out;
}

static PyObject *recorder_get_enabled(RecorderObject *self, void *closure) {
    (void)closure;
    if (!recorder_ready(self)) return NULL;
    return PyBool_FromLong(ns_prof_enabled(self->prof));
}

static int recorder_set_enabled(RecorderObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (!recorder_ready(self)) return -1;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete 'enabled'");
        return -1;
    }
    int on = PyObject_IsTrue(value);
    if (on < 0) return -1;
    ns_prof_set_enabled(self->prof, on);
    return 0;
}

static PyObject *recorder_get_count(RecorderObject *self, void *closure) {
    (void)closure;
    if (!recorder_ready(self)) return NULL;
    return PyLong_FromSize_t(ns_prof_count(self->prof));
}

static PyObject *recorder_get_open(RecorderObject *self, void *closure) {
    (void)closure;
    if (!recorder_ready(self)) return NULL;
    return PyLong_FromSize_t(ns_prof_open_spans(self->prof));
}

static PyObject *recorder_get_dropped(RecorderObject *self, void *closure) {
    (void)closure;
    if (!recorder_ready(self)) return NULL;
    return PyLong_FromUnsignedLongLong(ns_prof_dropped(self->prof));
}

/* Span: the context manager Recorder.span(name) returns; __enter__/__exit__ call begin/end in C
 * so that a `with` block costs about as little as a begin/end pair. */
typedef struct {
    PyObject_HEAD RecorderObject *rec;
    uint32_t id;
} SpanObject;

static void span_dealloc(SpanObject *self) {
    Py_XDECREF(self->rec);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *span_enter(SpanObject *self, PyObject *noargs) {
    (void)noargs;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_begin(self->rec->prof, self->id, &err) != NS_OK) return raise_ns_error(&err);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *span_exit(SpanObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)args;
    (void)nargs;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_end(self->rec->prof, self->id, &err) != NS_OK) return raise_ns_error(&err);
    Py_RETURN_FALSE; /* never swallow the body's exception */
}

static PyMethodDef span_methods[] = {
    {"__enter__", (PyCFunction)span_enter, METH_NOARGS, "Open the span."},
    {"__exit__", (PyCFunction)(void (*)(void))span_exit, METH_FASTCALL, "Close the span."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SpanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neonsign._native.Span",
    .tp_basicsize = sizeof(SpanObject),
    .tp_dealloc = (destructor)span_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A span of a Recorder, as a context manager (made by Recorder.span).",
    .tp_methods = span_methods,
};

static PyObject *recorder_span(RecorderObject *self, PyObject *name) {
    uint32_t id;
    if (!recorder_ready(self) || !recorder_name_id(self, name, &id)) return NULL;
    SpanObject *span = PyObject_New(SpanObject, &SpanType);
    if (!span) return NULL;
    Py_INCREF(self);
    span->rec = self;
    span->id = id;
    return (PyObject *)span;
}

static PyMethodDef recorder_methods[] = {
    {"intern", (PyCFunction)recorder_intern, METH_O,
     "intern(name) -> int\n\nId of a span name (added if new); begin/end accept it instead of the "
     "str."},
    {"begin", (PyCFunction)recorder_begin, METH_O, "begin(name)\n\nOpen a span (str or id)."},
    {"span", (PyCFunction)recorder_span, METH_O,
     "span(name) -> Span\n\nA context manager: `with rec.span(\"conv1\"): ...` times its body."},
    {"end", (PyCFunction)(void (*)(void))recorder_end, METH_FASTCALL,
     "end(name=None)\n\nClose the innermost open span; if given, name must match it."},
    {"add", (PyCFunction)(void (*)(void))recorder_add, METH_VARARGS | METH_KEYWORDS,
     "add(name, duration_ns, calls=1, parent=-1, start_ns=0)\n\n"
     "Attach a span timed elsewhere (same monotonic clock) under record `parent`."},
    {"reset", (PyCFunction)recorder_reset, METH_NOARGS,
     "reset()\n\nDrop all records and open spans."},
    {"names", (PyCFunction)recorder_names, METH_NOARGS, "names() -> list[str]\n\nNames by id."},
    {"records", (PyCFunction)recorder_records, METH_NOARGS,
     "records() -> dict[str, ndarray]\n\nOne entry per record in begin order: name (int32 id), "
     "parent (int64 record index, -1 at top level), depth (int32), calls (uint64), start_ns, "
     "end_ns, duration_ns, cycles (uint64; cycles is 0 when no cycle counter), complete (bool)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef recorder_getset[] = {
    {"enabled", (getter)recorder_get_enabled, (setter)recorder_set_enabled,
     "Whether spans are recorded (while off, begin/end cost one integer update).", NULL},
    {"count", (getter)recorder_get_count, NULL, "Records held.", NULL},
    {"open_spans", (getter)recorder_get_open, NULL, "Recorded spans begun and not yet ended.",
     NULL},
    {"dropped", (getter)recorder_get_dropped, NULL, "Spans not stored because the buffer was full.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neonsign._native.Recorder",
    .tp_basicsize = sizeof(RecorderObject),
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Recorder(capacity=0, enabled=True)\n\nNested named spans timed in C with the "
              "monotonic ns clock and the CPU cycle counter. Not thread-safe.",
    .tp_methods = recorder_methods,
    .tp_getset = recorder_getset,
    .tp_init = (initproc)recorder_init,
    .tp_new = recorder_new,
};

static PyObject *py_prof_now_ns(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromUnsignedLongLong(ns_now_ns());
}

static PyObject *py_prof_cycles(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromUnsignedLongLong(ns_cycles_now());
}

static PyObject *py_prof_cycles_hz(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    if (!ns_cycles_available()) return PyFloat_FromDouble(0.0);
    double hz;
    Py_BEGIN_ALLOW_THREADS hz = ns_cycles_hz(0);
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(hz);
}

#define PROFILER_METHODS                                                                           \
    {"prof_now_ns", py_prof_now_ns, METH_NOARGS,                                                   \
     "prof_now_ns() -> int\n\nThe profiler's monotonic clock in nanoseconds."},                    \
        {"prof_cycles", py_prof_cycles, METH_NOARGS,                                               \
         "prof_cycles() -> int\n\nThe CPU cycle counter (0 if user code cannot read one)."},       \
        {"prof_cycles_hz", py_prof_cycles_hz, METH_NOARGS,                                         \
         "prof_cycles_hz() -> float\n\nCycle counter frequency in Hz (x86: measured over ~2 ms; "  \
         "AArch64: cntfrq_el0; 0.0 if unavailable)."},

static int profiler_init(PyObject *m) {
    if (PyType_Ready(&SpanType) < 0) return -1;
    if (PyType_Ready(&RecorderType) < 0) return -1;
    Py_INCREF(&RecorderType);
    if (PyModule_AddObject(m, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(&RecorderType);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Engine: native TrafficSignNet inference                                                     */
/* ------------------------------------------------------------------------------------------ */

#include "core/net.h"

#define NET_CAPSULE "neonsign._native.Net"

/* A float32, C-contiguous, aligned ndarray of exactly `ndim` dims with the given shape
 * (-1: any size >= 1). Raises `cls_name` (neonsign.errors) naming `what` otherwise. */
static PyArrayObject *check_f32(PyObject *obj, const char *what, int ndim, const npy_intp *shape,
                                const char *cls_name) {
    PyObject *cls = error_class(cls_name, PyExc_ValueError);
    PyArrayObject *a = NULL;
    if (!PyArray_Check(obj)) {
        PyErr_Format(cls, "%s must be a numpy.ndarray, got %s", what, Py_TYPE(obj)->tp_name);
        goto done;
    }
    a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        PyErr_Format(cls, "%s must have dtype float32, got %S", what, (PyObject *)PyArray_DESCR(a));
        a = NULL;
        goto done;
    }
    int bad = PyArray_NDIM(a) != ndim;
    for (int i = 0; !bad && i < ndim; i++)
        bad = shape[i] < 0 ? PyArray_DIM(a, i) < 1 : PyArray_DIM(a, i) != shape[i];
    if (bad) {
        char want[128] = "(", got[128] = "(";
        for (int i = 0; i < ndim; i++) {
            size_t l = strlen(want);
            if (shape[i] < 0)
                snprintf(want + l, sizeof want - l, "%sN", i ? ", " : "");
            else
                snprintf(want + l, sizeof want - l, "%s%ld", i ? ", " : "", (long)shape[i]);
        }
        for (int i = 0; i < PyArray_NDIM(a); i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%ld", i ? ", " : "", (long)PyArray_DIM(a, i));
        }
        PyErr_Format(cls, "%s must have shape %s), got %s)", what, want, got);
        a = NULL;
        goto done;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(cls, "%s must be C-contiguous and aligned", what);
        a = NULL;
    }
done:
    Py_DECREF(cls);
    return a;
}

static ns_net *net_from_capsule(PyObject *cap) {
    return (ns_net *)PyCapsule_GetPointer(cap, NET_CAPSULE);
}

static void net_capsule_free(PyObject *cap) {
    ns_net *net = (ns_net *)PyCapsule_GetPointer(cap, NET_CAPSULE);
    if (net) ns_net_destroy(net);
}

/* Kernel argument: None -> NULL (env var / best), else a str. */
static int parse_kernel_name(PyObject *obj, const char **out) {
    if (obj == NULL || obj == Py_None) {
        *out = NULL;
        return 1;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "kernel must be a str or None, got %s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    *out = PyUnicode_AsUTF8(obj);
    return *out != NULL;
}

static const char *const weight_names[8] = {"conv1.weight", "conv1.bias", "conv2.weight",
                                            "conv2.bias",   "fc1.weight", "fc1.bias",
                                            "fc2.weight",   "fc2.bias"};

static PyObject *py_net_create(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc1_w",
                             "fc1_b",   "fc2_w",   "fc2_b",   "kernel",  NULL};
    PyObject *o[8], *kobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOO|O:net_create", kwlist, &o[0], &o[1],
                                     &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &kobj))
        return NULL;
    static const npy_intp shapes[8][4] = {{NS_NET_C1, NS_NET_IN_C, 3, 3},   {NS_NET_C1},
                                          {NS_NET_C2, NS_NET_C1, 3, 3},     {NS_NET_C2},
                                          {NS_NET_HIDDEN, NS_NET_FEATURES}, {NS_NET_HIDDEN},
                                          {NS_NET_CLASSES, NS_NET_HIDDEN},  {NS_NET_CLASSES}};
    static const int ndims[8] = {4, 1, 4, 1, 2, 1, 2, 1};
    const float *p[8];
    for (int i = 0; i < 8; i++) {
        PyArrayObject *a = check_f32(o[i], weight_names[i], ndims[i], shapes[i], "ModelError");
        if (!a) return NULL;
        p[i] = (const float *)PyArray_DATA(a);
    }
    const char *kname;
    if (!parse_kernel_name(kobj, &kname)) return NULL;
    ns_net_weights w = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
    ns_net *net = NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_net_create(&w, kname, &net, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) return raise_ns_error(&err);
    PyObject *cap = PyCapsule_New(net, NET_CAPSULE, net_capsule_free);
    if (!cap) ns_net_destroy(net);
    return cap;
}

static PyObject *py_net_forward(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"net", "x", "threads", NULL};
    PyObject *cap, *xobj, *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:net_forward", kwlist, &cap, &xobj, &tobj))
        return NULL;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    int threads;
    if (!parse_threads(tobj, &threads)) return NULL;
    static const npy_intp xshape[4] = {-1, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W};
    PyArrayObject *x = check_f32(xobj, "input x", 4, xshape, "NeonsignValueError");
    if (!x) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    npy_intp oshape[2] = {n, NS_NET_CLASSES};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    const float *xp = (const float *)PyArray_DATA(x);
    float *op = (float *)PyArray_DATA(out);
    Py_INCREF(x); /* keep the input alive while the GIL is released */
    Py_BEGIN_ALLOW_THREADS st =
        ns_net_forward(net, module_pool(), threads, xp, (size_t)n, op, &err);
    Py_END_ALLOW_THREADS Py_DECREF(x);
    if (st != NS_OK) {
        Py_DECREF(out);
        return raise_ns_error(&err);
    }
    return (PyObject *)out;
}

static PyObject *py_net_set_kernel(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *kobj;
    if (!PyArg_ParseTuple(args, "OO:net_set_kernel", &cap, &kobj)) return NULL;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    const char *kname;
    if (!parse_kernel_name(kobj, &kname)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_net_set_kernel(net, kname, &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) return raise_ns_error(&err);
    return PyUnicode_FromString(ns_kernel_name(ns_net_kernel(net)));
}

static PyObject *py_net_kernel(PyObject *self, PyObject *cap) {
    (void)self;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    return PyUnicode_FromString(ns_kernel_name(ns_net_kernel(net)));
}

static PyObject *py_net_enable_timers(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int on;
    if (!PyArg_ParseTuple(args, "Op:net_enable_timers", &cap, &on)) return NULL;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    Py_BEGIN_ALLOW_THREADS ns_net_enable_timers(net, on);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *py_net_timers(PyObject *self, PyObject *cap) {
    (void)self;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    uint64_t t[NS_NET_LAYERS], c[NS_NET_LAYERS];
    Py_BEGIN_ALLOW_THREADS ns_net_read_timers(net, t, c);
    Py_END_ALLOW_THREADS PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int l = 0; l < NS_NET_LAYERS; l++) {
        PyObject *v = Py_BuildValue("(KK)", (unsigned long long)t[l], (unsigned long long)c[l]);
        if (!v || PyDict_SetItemString(d, ns_net_layer_names[l], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *py_net_reset_timers(PyObject *self, PyObject *cap) {
    (void)self;
    ns_net *net = net_from_capsule(cap);
    if (!net) return NULL;
    Py_BEGIN_ALLOW_THREADS ns_net_reset_timers(net);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *py_available_kernels(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    PyObject *l = PyList_New(0);
    if (!l) return NULL;
    for (int k = 0; k < NS_KERNEL_COUNT; k++) {
        if (!ns_kernel_available((ns_kernel)k)) continue;
        PyObject *s = PyUnicode_FromString(ns_kernel_name((ns_kernel)k));
        if (!s || PyList_Append(l, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(l);
            return NULL;
        }
        Py_DECREF(s);
    }
    return l;
}

static PyObject *py_resolve_kernel(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *kobj = Py_None;
    if (!PyArg_ParseTuple(args, "|O:resolve_kernel", &kobj)) return NULL;
    const char *kname;
    if (!parse_kernel_name(kobj, &kname)) return NULL;
    ns_kernel k;
    ns_error err;
    ns_error_clear(&err);
    if (ns_kernel_resolve(kname, &k, &err) != NS_OK) return raise_ns_error(&err);
    return PyUnicode_FromString(ns_kernel_name(k));
}

static PyObject *py_cpu_ghz(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    double ghz;
    Py_BEGIN_ALLOW_THREADS ghz = ns_cpu_ghz_estimate();
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(ghz);
}

/* Resolve an explicit kernel name (tests' per-layer entry points). */
static int parse_explicit_kernel(PyObject *obj, ns_kernel *k) {
    const char *kname;
    if (!parse_kernel_name(obj, &kname)) return 0;
    ns_error err;
    ns_error_clear(&err);
    if (ns_kernel_resolve(kname, k, &err) != NS_OK) {
        raise_ns_error(&err);
        return 0;
    }
    return 1;
}

static PyObject *py_kernel_conv3x3(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"kernel", "x", "weight", "bias", "relu", "pool", NULL};
    PyObject *kobj, *xo, *wo, *bo;
    int relu = 1, pool = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|pp:kernel_conv3x3", kwlist, &kobj, &xo, &wo,
                                     &bo, &relu, &pool))
        return NULL;
    ns_kernel k;
    if (!parse_explicit_kernel(kobj, &k)) return NULL;
    static const npy_intp any4[4] = {-1, -1, -1, -1};
    PyArrayObject *x = check_f32(xo, "x", 4, any4, "NeonsignValueError");
    if (!x) return NULL;
    const npy_intp n = PyArray_DIM(x, 0), cin = PyArray_DIM(x, 1), h = PyArray_DIM(x, 2),
                   w = PyArray_DIM(x, 3);
    PyArrayObject *wa =
        check_f32(wo, "weight", 4, (npy_intp[4]){-1, cin, 3, 3}, "NeonsignValueError");
    if (!wa) return NULL;
    const npy_intp cout = PyArray_DIM(wa, 0);
    PyArrayObject *ba = check_f32(bo, "bias", 1, (npy_intp[1]){cout}, "NeonsignValueError");
    if (!ba) return NULL;
    const npy_intp minhw = pool ? 4 : 3;
    if (h < minhw || w < minhw) {
        PyErr_Format(PyExc_ValueError, "x must be at least %ldx%ld, got %ldx%ld", (long)minhw,
                     (long)minhw, (long)h, (long)w);
        return NULL;
    }
    npy_intp oshape[4] = {n, cout, pool ? (h - 2) / 2 : h - 2, pool ? (w - 2) / 2 : w - 2};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st = ns_op_conv3x3(k, PyArray_DATA(x), (size_t)n, (size_t)cin, (size_t)h,
                                              (size_t)w, PyArray_DATA(wa), PyArray_DATA(ba),
                                              (size_t)cout, relu, pool, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        Py_DECREF(out);
        return raise_ns_error(&err);
    }
    return (PyObject *)out;
}

static PyObject *py_kernel_linear(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"kernel", "x", "weight", "bias", "relu", NULL};
    PyObject *kobj, *xo, *wo, *bo;
    int relu = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|p:kernel_linear", kwlist, &kobj, &xo, &wo,
                                     &bo, &relu))
        return NULL;
    ns_kernel k;
    if (!parse_explicit_kernel(kobj, &k)) return NULL;
    static const npy_intp any2[2] = {-1, -1};
    PyArrayObject *x = check_f32(xo, "x", 2, any2, "NeonsignValueError");
    if (!x) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), kd = PyArray_DIM(x, 1);
    PyArrayObject *wa = check_f32(wo, "weight", 2, (npy_intp[2]){-1, kd}, "NeonsignValueError");
    if (!wa) return NULL;
    const npy_intp nout = PyArray_DIM(wa, 0);
    PyArrayObject *ba = check_f32(bo, "bias", 1, (npy_intp[1]){nout}, "NeonsignValueError");
    if (!ba) return NULL;
    npy_intp oshape[2] = {rows, nout};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status st;
    Py_BEGIN_ALLOW_THREADS st =
        ns_op_linear(k, PyArray_DATA(x), (size_t)rows, (size_t)kd, PyArray_DATA(wa),
                     PyArray_DATA(ba), (size_t)nout, relu, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (st != NS_OK) {
        Py_DECREF(out);
        return raise_ns_error(&err);
    }
    return (PyObject *)out;
}

#define ENGINE_METHODS                                                                             \
    {"net_create", (PyCFunction)(void (*)(void))py_net_create, METH_VARARGS | METH_KEYWORDS,       \
     "net_create(conv1_w, conv1_b, conv2_w, conv2_b, fc1_w, fc1_b, fc2_w, fc2_b, kernel=None)"     \
     " -> capsule\n\nCopy and pack TrafficSignNet weights (float32, PyTorch layouts)."},           \
        {"net_forward", (PyCFunction)(void (*)(void))py_net_forward, METH_VARARGS | METH_KEYWORDS, \
         "net_forward(net, x, threads=None) -> (N,43) float32\n\nx: (N,3,32,32) float32 "          \
         "C-order."},                                                                              \
        {"net_set_kernel", py_net_set_kernel, METH_VARARGS,                                        \
         "net_set_kernel(net, name) -> str\n\nRepack the weights for another kernel."},            \
        {"net_kernel", py_net_kernel, METH_O, "net_kernel(net) -> str"},                           \
        {"net_enable_timers", py_net_enable_timers, METH_VARARGS, "net_enable_timers(net, on)"},   \
        {"net_timers", py_net_timers, METH_O, "net_timers(net) -> {layer: (ns, calls)}"},          \
        {"net_reset_timers", py_net_reset_timers, METH_O, "net_reset_timers(net)"},                \
        {"available_kernels", py_available_kernels, METH_NOARGS,                                   \
         "available_kernels() -> list[str]\n\nKernels compiled in and supported by this CPU."},    \
        {"resolve_kernel", py_resolve_kernel, METH_VARARGS,                                        \
         "resolve_kernel(name=None) -> str\n\nThe kernel a net created with `name` would use."},   \
        {"cpu_ghz", py_cpu_ghz, METH_NOARGS,                                                       \
         "cpu_ghz() -> float\n\nEstimated core clock (GHz) from a dependent add chain "            \
         "(benchmarks)."},                                                                         \
        {"kernel_conv3x3", (PyCFunction)(void (*)(void))py_kernel_conv3x3,                         \
         METH_VARARGS | METH_KEYWORDS,                                                             \
         "kernel_conv3x3(kernel, x, weight, bias, relu=True, pool=False) -> NCHW float32\n\n"      \
         "One conv layer (test entry point)."},                                                    \
        {"kernel_linear", (PyCFunction)(void (*)(void))py_kernel_linear,                           \
         METH_VARARGS | METH_KEYWORDS,                                                             \
         "kernel_linear(kernel, x, weight, bias, relu=False) -> float32\n\nOne linear layer."},

static int engine_init(PyObject *m) {
    (void)m;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Module definition                                                                            */
/* ------------------------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    CORE_METHODS PREPROCESS_METHODS PROFILER_METHODS ENGINE_METHODS{NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "neonsign._native",
    "neonsign's C core: preprocessing, the native inference engine and the thread pool.\n"
    "Private: use the documented API in neonsign.data, neonsign.engine and friends.",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    import_array();
    PyObject *m = PyModule_Create(&native_module);
    if (!m) return NULL;
    g_errors = PyImport_ImportModule("neonsign.errors");
    if (!g_errors) goto fail;
    if (!g_pool) {
        int n = 0;
        const char *env = getenv("NEONSIGN_THREADS");
        if (env && *env) {
            char *end = NULL;
            long v = strtol(env, &end, 10);
            if (*end != '\0' || v < 0 || v > NS_POOL_MAX_THREADS) {
                PyErr_Format(PyExc_ValueError,
                             "NEONSIGN_THREADS must be an integer between 0 and %d, got '%s'",
                             NS_POOL_MAX_THREADS, env);
                goto fail;
            }
            n = (int)v;
        }
        ns_error err;
        ns_error_clear(&err);
        if (ns_pool_create(&g_pool, n, &err) != NS_OK) {
            raise_ns_error(&err);
            goto fail;
        }
    }
    if (preprocess_init(m) < 0) goto fail;
    if (profiler_init(m) < 0) goto fail;
    if (engine_init(m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
