/* Training-step kernels (csrc/core/trainops.c) for neonsign._trainops' autograd functions.
 * Outputs are the caller's arrays (views of freshly allocated torch tensors), so no array is
 * allocated here. float32 arrays are float32 tensors; uint16 arrays are the bits of bfloat16
 * tensors (NumPy has no bfloat16). */
#include "binding.h"

#include <string.h>

#include "core/trainops.h"

/* The element type of x (float32 or uint16 = bfloat16 bits); -1 with an error otherwise. */
static int tensor_dtype(ns_state *st, PyObject *x, const char *what, ns_tdtype *dt, int *typenum) {
    if (!PyArray_Check(x)) {
        ns_raise(st, "NeonsignTypeError", "%s must be a numpy.ndarray, got %s", what,
                 Py_TYPE(x)->tp_name);
        return -1;
    }
    int t = PyArray_TYPE((PyArrayObject *)x);
    if (t != NPY_FLOAT32 && t != NPY_UINT16) {
        ns_raise(st, "NeonsignValueError",
                 "%s must have dtype float32 or uint16 (bfloat16 bits), got %S", what,
                 (PyObject *)PyArray_DESCR((PyArrayObject *)x));
        return -1;
    }
    *dt = t == NPY_FLOAT32 ? NS_TD_F32 : NS_TD_BF16;
    *typenum = t;
    return 0;
}

/* The input's (n, h, w, c) (NHWC, h, w >= 2) and the output shapes it implies. */
typedef struct pool_shapes {
    npy_intp n, h, w, c;
    npy_intp x[4], y[4], arg[4];
} pool_shapes;

static int pool_shapes_of(ns_state *st, npy_intp n, npy_intp h, npy_intp w, npy_intp c, int nchw,
                          pool_shapes *s) {
    if (h < 2 || w < 2) {
        ns_raise(st, "NeonsignValueError", "2x2 pooling needs at least 2x2 pixels, got %zdx%zd", h,
                 w);
        return -1;
    }
    npy_intp oh = h / 2, ow = w / 2;
    *s = (pool_shapes){n, h, w, c, {n, h, w, c}, {n, oh, ow, c}, {n, oh, ow, c}};
    if (nchw) {
        s->y[1] = c;
        s->y[2] = oh;
        s->y[3] = ow;
    }
    return 0;
}

/* The three arrays of a pooling call: `full` (N, H, W, C), `half` (the pooled layout: NHWC, or
 * NCHW with nchw) and `arg` (N, H/2, W/2, C) uint8. In the forward the half array and arg are
 * written (full_written 0); in the backward the full array is (full_written 1). Sets *dt and
 * *s; 0 with an error naming the array otherwise. */
static int check_pool_arrays(ns_state *st, PyObject *full, const char *full_name, PyObject *half,
                             const char *half_name, PyObject *arg, int nchw, int full_written,
                             ns_tdtype *dt, pool_shapes *s) {
    int typenum;
    if (tensor_dtype(st, full, full_name, dt, &typenum) < 0) return 0;
    PyArrayObject *f = (PyArrayObject *)full;
    if (PyArray_NDIM(f) != 4) {
        ns_raise(st, "NeonsignValueError", "%s must be (N, H, W, C), got %d dimensions", full_name,
                 PyArray_NDIM(f));
        return 0;
    }
    npy_intp any[4] = {-1, -1, -1, -1};
    return ns_check_array(st, full, full_name, typenum, 4, any, full_written,
                          "NeonsignValueError") &&
           pool_shapes_of(st, PyArray_DIM(f, 0), PyArray_DIM(f, 1), PyArray_DIM(f, 2),
                          PyArray_DIM(f, 3), nchw, s) == 0 &&
           ns_check_array(st, half, half_name, typenum, 4, s->y, !full_written,
                          "NeonsignValueError") &&
           ns_check_array(st, arg, "arg", NPY_UINT8, 4, s->arg, !full_written,
                          "NeonsignValueError");
}

/* A kernel name (see trainops_kernels()) -> its index; -1 with an error if unknown here. */
static int kernel_index(ns_state *st, PyObject *name, int *out) {
    const char *s;
    if (!ns_conv_str(st, name, "kernel", &s)) return -1;
    for (int k = 0; ns_trainops_kernel_name(k); k++)
        if (strcmp(ns_trainops_kernel_name(k), s) == 0 && ns_trainops_kernel_supported(k)) {
            *out = k;
            return 0;
        }
    ns_raise(st, "NeonsignValueError",
             "kernel %R is not one this CPU runs (see trainops_kernels())", name);
    return -1;
}

static PyObject *py_trainops_kernels(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
    if (!ns_no_args(ns_state_of_module(module), "trainops_kernels", nargs, kwnames)) return NULL;
    const char *names[8];
    size_t n = 0;
    for (int k = 0; ns_trainops_kernel_name(k) && n < 8; k++)
        if (ns_trainops_kernel_supported(k)) names[n++] = ns_trainops_kernel_name(k);
    return ns_str_tuple(names, n);
}

/* dropout: a float in [0, 1) ("dropout"); 0 with an error otherwise. */
static int conv_dropout(ns_state *st, PyObject *obj, double *p) {
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        ns_raise(st, "NeonsignTypeError", "dropout must be a float, not %s", Py_TYPE(obj)->tp_name);
        return 0;
    }
    if (!(v >= 0.0 && v < 1.0)) {
        ns_raise(st, "NeonsignValueError", "dropout must be in [0, 1), got %R", obj);
        return 0;
    }
    *p = v;
    return 1;
}

static const char *const fwd_args[] = {"x", "y", "arg", "nchw", "kernel", "dropout", "seed", NULL};
static const ns_argspec fwd_spec = NS_ARGSPEC("pool2_relu", fwd_args, 3);

static PyObject *py_pool2_relu(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[7];
    ns_tdtype dt;
    pool_shapes s;
    int nchw = 0, kernel = -1;
    double p = 0.0;
    unsigned long long seed = 0;
    if (!ns_parse_args(st, &fwd_spec, args, nargs, kwnames, a) ||
        (a[3] && !ns_conv_bool(st, a[3], "nchw", &nchw)) ||
        (a[4] && a[4] != Py_None && kernel_index(st, a[4], &kernel) < 0) ||
        (a[5] && !conv_dropout(st, a[5], &p)) || (a[6] && !ns_conv_u64(st, a[6], "seed", &seed)) ||
        !check_pool_arrays(st, a[0], "x", a[1], "y", a[2], nchw, 0, &dt, &s))
        return NULL;
    const void *xp = PyArray_DATA((PyArrayObject *)a[0]);
    void *yp = PyArray_DATA((PyArrayObject *)a[1]);
    uint8_t *ap = PyArray_DATA((PyArrayObject *)a[2]);
    size_t count = (size_t)PyArray_SIZE((PyArrayObject *)a[2]);
    if (p > 0.0 && count > UINT32_MAX)
        return ns_raise(st, "NeonsignValueError", "dropout masks at most 2^32 outputs");
    /* the caller references the arrays for the whole call: safe without the GIL */
    Py_BEGIN_ALLOW_THREADS if (p > 0.0) ns_dropout_keep(seed, p, count, ap, kernel);
    ns_pool2_relu_fwd(dt, xp, (size_t)s.n, (size_t)s.h, (size_t)s.w, (size_t)s.c, yp, nchw, ap,
                      p > 0.0, kernel);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static const char *const bwd_args[] = {"grad_y", "arg", "grad_x", "nchw", "kernel", NULL};
static const ns_argspec bwd_spec = NS_ARGSPEC("pool2_relu_backward", bwd_args, 3);

static PyObject *py_pool2_relu_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[5];
    ns_tdtype dt;
    pool_shapes s;
    int nchw = 0, kernel = -1;
    if (!ns_parse_args(st, &bwd_spec, args, nargs, kwnames, a) ||
        (a[3] && !ns_conv_bool(st, a[3], "nchw", &nchw)) ||
        (a[4] && a[4] != Py_None && kernel_index(st, a[4], &kernel) < 0) ||
        !check_pool_arrays(st, a[2], "grad_x", a[0], "grad_y", a[1], nchw, 1, &dt, &s))
        return NULL;
    const void *gyp = PyArray_DATA((PyArrayObject *)a[0]);
    const uint8_t *ap = PyArray_DATA((PyArrayObject *)a[1]);
    void *gxp = PyArray_DATA((PyArrayObject *)a[2]);
    Py_BEGIN_ALLOW_THREADS ns_pool2_relu_bwd(dt, gyp, nchw, ap, (size_t)s.n, (size_t)s.h,
                                             (size_t)s.w, (size_t)s.c, gxp, kernel);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static const char *const keep_args[] = {"seed", "p", "n", "kernel", NULL};
static const ns_argspec keep_spec = NS_ARGSPEC("dropout_keep", keep_args, 3);

static PyObject *py_dropout_keep(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[4];
    unsigned long long seed;
    double p;
    size_t n;
    int kernel = -1;
    if (!ns_parse_args(st, &keep_spec, args, nargs, kwnames, a) ||
        !ns_conv_u64(st, a[0], "seed", &seed) || !conv_dropout(st, a[1], &p) ||
        !ns_conv_size(st, a[2], "n", 0, &n) ||
        (a[3] && a[3] != Py_None && kernel_index(st, a[3], &kernel) < 0))
        return NULL;
    if (n > UINT32_MAX) return ns_raise(st, "NeonsignValueError", "n must be < 2^32");
    npy_intp dims[1] = {(npy_intp)n};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_UINT8);
    if (!out) return NULL;
    uint8_t *keep = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS ns_dropout_keep(seed, p, n, keep, kernel);
    Py_END_ALLOW_THREADS return (PyObject *)out;
}

PyMethodDef ns_trainops_methods[] = {
    {"dropout_keep", FASTCALL_KW(py_dropout_keep),
     "dropout_keep(seed, p, n, kernel=None) -> uint8 (n,)\n\nThe keep mask pool2_relu's dropout "
     "uses: 1 with probability 1 - p, a hash of (seed, index)."},
    {"trainops_kernels", FASTCALL_KW(py_trainops_kernels),
     "trainops_kernels() -> tuple of str\n\nThe pool2_relu kernels this CPU runs, the scalar "
     "reference 'ref' first and the one used by default last."},
    {"pool2_relu", FASTCALL_KW(py_pool2_relu),
     "pool2_relu(x, y, arg, nchw=False, kernel=None, dropout=0.0, seed=0) -> "
     "None\n\nrelu(max_pool2d(x, 2)) of "
     "x (N, H, W, C) NHWC, float32 or uint16 (bfloat16 bits), into y (N, H//2, W//2, C), or "
     "(N, C, H//2, W//2) with nchw; arg uint8 (N, H//2, W//2, C) receives each maximum's "
     "window position (0-3) or 255 (no gradient). kernel: a name of trainops_kernels() (None: "
     "the last, the fastest). dropout p > 0: outputs where dropout_keep(seed, p, arg.size) is 0 "
     "are 0 with no gradient too (the 1 / (1 - p) scale is the caller's)."},
    {"pool2_relu_backward", FASTCALL_KW(py_pool2_relu_backward),
     "pool2_relu_backward(grad_y, arg, grad_x, nchw=False, kernel=None) -> None\n\nThe "
     "gradient of pool2_relu: grad_y (layout of y) and the forward's arg into grad_x "
     "(N, H, W, C), every element written."},
    {NULL, NULL, 0, NULL},
};
