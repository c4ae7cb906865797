/* Engine: the Net type (TrafficSignNet inference, csrc/core/net.c), the kernels, the facts
 * shared with Python (KERNELS, LAYER_NAMES, WEIGHT_SHAPES, INPUT_SHAPE, NUM_CLASSES) and the
 * per-layer test entry points. neonsign.engine.Engine is the documented API on top of these. */
#include "binding.h"

#include "core/int8_net.h"
#include "core/net.h"

/* ------------------------------------------------------------------------------------------ */
/* Facts                                                                                        */
/* ------------------------------------------------------------------------------------------ */

#define CONV_K   3 /* conv kernel side (ns_op_conv3x3) */
#define NWEIGHTS 8

/* TrafficSignNet's state_dict, in ns_net_weights order: PyTorch name and shape. The one list in
 * the binding; Python reads it as _native.WEIGHT_SHAPES. */
static const struct weight_info {
    const char *name;
    int ndim;
    npy_intp shape[4];
} weight_table[NWEIGHTS] = {
    {"conv1.weight", 4, {NS_NET_C1, NS_NET_IN_C, CONV_K, CONV_K}},
    {"conv1.bias", 1, {NS_NET_C1}},
    {"conv2.weight", 4, {NS_NET_C2, NS_NET_C1, CONV_K, CONV_K}},
    {"conv2.bias", 1, {NS_NET_C2}},
    {"fc1.weight", 2, {NS_NET_HIDDEN, NS_NET_FEATURES}},
    {"fc1.bias", 1, {NS_NET_HIDDEN}},
    {"fc2.weight", 2, {NS_NET_CLASSES, NS_NET_HIDDEN}},
    {"fc2.bias", 1, {NS_NET_CLASSES}},
};

/* ((name, shape), ...) */
static PyObject *weight_shapes(void) {
    PyObject *out = PyTuple_New(NWEIGHTS);
    for (int i = 0; out && i < NWEIGHTS; i++) {
        const struct weight_info *w = &weight_table[i];
        PyObject *shape = PyTuple_New(w->ndim);
        for (int d = 0; shape && d < w->ndim; d++) {
            PyObject *v = PyLong_FromSsize_t(w->shape[d]);
            if (!v)
                Py_CLEAR(shape);
            else
                PyTuple_SET_ITEM(shape, d, v);
        }
        PyObject *item = shape ? Py_BuildValue("(sN)", w->name, shape) : NULL;
        if (!item)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *kernel_names(void) {
    const char *names[NS_KERNEL_COUNT];
    for (int k = 0; k < NS_KERNEL_COUNT; k++) names[k] = ns_kernel_name((ns_kernel)k);
    return ns_str_tuple(names, NS_KERNEL_COUNT);
}

/* Add `value` (a new reference, may be NULL) to the module as `name`. */
static int add_fact(PyObject *module, const char *name, PyObject *value) {
    if (!value) return -1;
    int rc = PyModule_AddObjectRef(module, name, value);
    Py_DECREF(value);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Net                                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* A Net caches its module's state: it holds its type, which holds the module. */
typedef struct {
    PyObject_HEAD ns_net *net; /* never NULL: a Net is built whole by __new__ */
    ns_state *st;
} NetObject;

#define NET(self)       (((NetObject *)(self))->net)
#define NET_STATE(self) (((NetObject *)(self))->st)

/* weights[name] for every weight, checked (float32, shape); new references in arrays[]. */
static int net_weights(ns_state *st, PyObject *weights, PyObject **arrays, const float **ptr) {
    for (int i = 0; i < NWEIGHTS; i++) {
        const struct weight_info *w = &weight_table[i];
        arrays[i] = PyMapping_GetItemString(weights, w->name);
        if (!arrays[i]) {
            if (PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                ns_raise(st, "ModelError", "weights have no %s (need %d tensors: %s, ...)", w->name,
                         NWEIGHTS, weight_table[0].name);
            } else {
                ns_translate_error(st, "weights must be a mapping of name -> float32 array");
            }
            return 0;
        }
        PyArrayObject *a = ns_check_f32(st, arrays[i], w->name, w->ndim, w->shape, "ModelError");
        if (!a) return 0;
        ptr[i] = (const float *)PyArray_DATA(a);
    }
    return 1;
}

static const char *const net_new_args[] = {"weights", "kernel", NULL};
static const ns_argspec net_new_spec = NS_ARGSPEC("Net", net_new_args, 1);

static PyObject *net_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ns_state *st = ns_state_of_type(type);
    PyObject *a[2], *arrays[NWEIGHTS] = {NULL};
    const float *p[NWEIGHTS];
    const char *kernel;
    NetObject *self = NULL;
    if (!st || !ns_parse_tuple(st, &net_new_spec, args, kwds, a) ||
        !ns_conv_kernel_name(st, a[1], &kernel) || !net_weights(st, a[0], arrays, p))
        goto done;
    ns_net_weights w = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
    ns_net *net = NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_net_create(&w, kernel, &net, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        ns_raise_error(st, &err);
        goto done;
    }
    self = (NetObject *)type->tp_alloc(type, 0);
    if (!self) {
        ns_net_destroy(net);
        goto done;
    }
    self->net = net;
    self->st = st;
done:
    for (int i = 0; i < NWEIGHTS; i++) Py_XDECREF(arrays[i]);
    return (PyObject *)self;
}

static void net_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    ns_net_destroy(NET(self));
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *net_repr(PyObject *self) {
    return PyUnicode_FromFormat("<neonsign._native.Net kernel='%s'>",
                                ns_kernel_name(ns_net_kernel(NET(self))));
}

static const char *const forward_args[] = {"x", "threads", NULL};
static const ns_argspec forward_spec = NS_ARGSPEC("Net.forward", forward_args, 1);

static PyObject *net_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    static const npy_intp xshape[4] = {-1, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W};
    ns_state *st = NET_STATE(self);
    PyObject *a[2];
    PyArrayObject *x;
    int threads;
    if (!ns_parse_args(st, &forward_spec, args, nargs, kwnames, a) ||
        !ns_conv_threads(st, a[1], &threads) ||
        !(x = ns_check_f32(st, a[0], "input x", 4, xshape, "NeonsignValueError")))
        return NULL;
    ns_pool *pool = ns_state_pool(st);
    if (!pool) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    npy_intp oshape[2] = {n, NS_NET_CLASSES};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    const float *xp = (const float *)PyArray_DATA(x);
    float *op = (float *)PyArray_DATA(out);
    /* x stays alive while the GIL is released: the caller holds it for the call */
    Py_BEGIN_ALLOW_THREADS status =
        ns_net_forward(NET(self), pool, threads, xp, (size_t)n, op, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

static const char *const set_kernel_args[] = {"name", NULL};
static const ns_argspec set_kernel_spec = NS_ARGSPEC("Net.set_kernel", set_kernel_args, 1);

static PyObject *net_set_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    ns_state *st = NET_STATE(self);
    PyObject *a[1];
    const char *kernel;
    if (!ns_parse_args(st, &set_kernel_spec, args, nargs, kwnames, a) ||
        !ns_conv_kernel_name(st, a[0], &kernel))
        return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_net_set_kernel(NET(self), kernel, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) return ns_raise_error(st, &err);
    return PyUnicode_FromString(ns_kernel_name(ns_net_kernel(NET(self))));
}

static const char *const enable_timers_args[] = {"on", NULL};
static const ns_argspec enable_timers_spec = NS_ARGSPEC("Net.enable_timers", enable_timers_args, 0);

static PyObject *net_enable_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    ns_state *st = NET_STATE(self);
    PyObject *a[1];
    int on = 1;
    if (!ns_parse_args(st, &enable_timers_spec, args, nargs, kwnames, a) ||
        !ns_conv_bool(st, a[0], "on", &on))
        return NULL;
    /* waits for a forward call in progress (the net's mutex) */
    Py_BEGIN_ALLOW_THREADS ns_net_enable_timers(NET(self), on);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* {layer name: (nanoseconds, calls)} of a net's per-layer timers (Net and QNet share it). */
static PyObject *timers_dict(const uint64_t t[NS_NET_LAYERS], const uint64_t c[NS_NET_LAYERS]) {
    PyObject *d = PyDict_New();
    for (int l = 0; d && l < NS_NET_LAYERS; l++) {
        PyObject *v = Py_BuildValue("(KK)", (unsigned long long)t[l], (unsigned long long)c[l]);
        if (!v || PyDict_SetItemString(d, ns_net_layer_names[l], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *net_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(NET_STATE(self), "Net.timers", nargs, kwnames)) return NULL;
    uint64_t t[NS_NET_LAYERS], c[NS_NET_LAYERS];
    Py_BEGIN_ALLOW_THREADS ns_net_read_timers(NET(self), t, c);
    Py_END_ALLOW_THREADS return timers_dict(t, c);
}

static PyObject *net_reset_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(NET_STATE(self), "Net.reset_timers", nargs, kwnames)) return NULL;
    Py_BEGIN_ALLOW_THREADS ns_net_reset_timers(NET(self));
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *net_get_kernel(PyObject *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(ns_kernel_name(ns_net_kernel(NET(self))));
}

static PyObject *net_get_tile(PyObject *self, void *closure) {
    (void)closure;
    const char *tile = ns_kernel_tile(ns_net_kernel(NET(self)));
    return PyUnicode_FromString(tile ? tile : "");
}

static PyObject *net_get_layer_kernels(PyObject *self, void *closure) {
    (void)closure;
    PyObject *d = PyDict_New();
    for (int l = 0; d && l < NS_NET_LAYERS; l++) {
        const char *fn = ns_net_layer_kernel(NET(self), l);
        PyObject *v = fn ? PyUnicode_FromString(fn) : Py_NewRef(Py_None);
        if (!v || PyDict_SetItemString(d, ns_net_layer_names[l], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *net_get_timers_enabled(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(ns_net_timers_enabled(NET(self)));
}

static PyMethodDef net_methods[] = {
    {"forward", FASTCALL_KW(net_forward),
     "forward(x, threads=None) -> float32 (N, NUM_CLASSES)\n\nLogits of x: float32 (N, "
     "*INPUT_SHAPE), C-contiguous. threads: at most this many pool threads (None: all)."},
    {"set_kernel", FASTCALL_KW(net_set_kernel),
     "set_kernel(name) -> str\n\nRepack the weights for kernel `name` (None: $NEONSIGN_KERNEL or "
     "the best); returns the kernel now in use. On failure the net keeps its kernel."},
    {"enable_timers", FASTCALL_KW(net_enable_timers),
     "enable_timers(on=True)\n\nTurn the per-layer timers on or off."},
    {"timers", FASTCALL_KW(net_timers),
     "timers() -> dict[str, tuple[int, int]]\n\n{layer: (nanoseconds, calls)} for LAYER_NAMES."},
    {"reset_timers", FASTCALL_KW(net_reset_timers), "reset_timers()\n\nZero the timers."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef net_getset[] = {
    {"kernel", net_get_kernel, NULL, "The kernel in use (one of KERNELS).", NULL},
    {"tile", net_get_tile, NULL,
     "The register tile of the kernel in use, ISA and MR x NR ('avx512_12x32'; 'scalar' for ref).",
     NULL},
    {"layer_kernels", net_get_layer_kernels, NULL,
     "{layer: C function computing it} for LAYER_NAMES ('ns_conv_pool_avx512_12x32_as3'), chosen "
     "when the weights were packed; None for a layer fused into the one before it.",
     NULL},
    {"timers_enabled", net_get_timers_enabled, NULL, "Whether the per-layer timers run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot net_slots[] = {
    {Py_tp_doc, "Net(weights, kernel=None)\n\nTrafficSignNet on the native engine. weights: a "
                "mapping with the float32 arrays named in WEIGHT_SHAPES (PyTorch layouts; "
                "copied and packed for the kernel). kernel: one of KERNELS, 'auto', or None "
                "($NEONSIGN_KERNEL or the best available). Calls from several threads run one "
                "after another."},
    {Py_tp_new, net_new},
    {Py_tp_dealloc, net_dealloc},
    {Py_tp_repr, net_repr},
    {Py_tp_methods, net_methods},
    {Py_tp_getset, net_getset},
    {0, NULL},
};

static PyType_Spec net_spec = {
    .name = "neonsign._native.Net",
    .basicsize = sizeof(NetObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = net_slots,
};

/* ------------------------------------------------------------------------------------------ */
/* Kernels                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static PyObject *py_available_kernels(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "available_kernels", nargs, kwnames)) return NULL;
    PyObject *list = PyList_New(0);
    for (int k = 0; list && k < NS_KERNEL_COUNT; k++) {
        if (!ns_kernel_available((ns_kernel)k)) continue;
        PyObject *s = PyUnicode_FromString(ns_kernel_name((ns_kernel)k));
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static const char *const resolve_args[] = {"name", NULL};
static const ns_argspec resolve_spec = NS_ARGSPEC("resolve_kernel", resolve_args, 0);

static PyObject *py_resolve_kernel(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[1];
    const char *name;
    if (!ns_parse_args(st, &resolve_spec, args, nargs, kwnames, a) ||
        !ns_conv_kernel_name(st, a[0], &name))
        return NULL;
    ns_kernel k;
    ns_error err;
    ns_error_clear(&err);
    if (ns_kernel_resolve(name, &k, &err) != NS_OK) return ns_raise_error(st, &err);
    return PyUnicode_FromString(ns_kernel_name(k));
}

static PyObject *py_cpu_ghz(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "cpu_ghz", nargs, kwnames)) return NULL;
    double ghz;
    Py_BEGIN_ALLOW_THREADS ghz = ns_cpu_ghz_estimate();
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(ghz);
}

/* An explicit kernel name (the per-layer entry points): a str naming an available kernel. */
static int conv_explicit_kernel(ns_state *st, PyObject *obj, ns_kernel *k) {
    const char *name;
    if (!ns_conv_kernel_name(st, obj, &name)) return 0;
    ns_error err;
    ns_error_clear(&err);
    if (ns_kernel_resolve(name, k, &err) != NS_OK) {
        ns_raise_error(st, &err);
        return 0;
    }
    return 1;
}

static const char *const conv_args[] = {"kernel", "x", "weight", "bias", "relu", "pool", NULL};
static const ns_argspec conv_spec = NS_ARGSPEC("kernel_conv3x3", conv_args, 4);

static PyObject *py_kernel_conv3x3(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    static const npy_intp any4[4] = {-1, -1, -1, -1};
    ns_state *st = ns_state_of_module(module);
    PyObject *a[6];
    int relu = 1, pool = 0;
    ns_kernel k;
    PyArrayObject *x, *wa, *ba;
    if (!ns_parse_args(st, &conv_spec, args, nargs, kwnames, a) ||
        !ns_conv_bool(st, a[4], "relu", &relu) || !ns_conv_bool(st, a[5], "pool", &pool) ||
        !conv_explicit_kernel(st, a[0], &k) ||
        !(x = ns_check_f32(st, a[1], "x", 4, any4, "NeonsignValueError")))
        return NULL;
    const npy_intp n = PyArray_DIM(x, 0), cin = PyArray_DIM(x, 1), h = PyArray_DIM(x, 2),
                   w = PyArray_DIM(x, 3);
    const npy_intp wshape[4] = {-1, cin, CONV_K, CONV_K};
    if (!(wa = ns_check_f32(st, a[2], "weight", 4, wshape, "NeonsignValueError"))) return NULL;
    const npy_intp cout = PyArray_DIM(wa, 0);
    if (!(ba = ns_check_f32(st, a[3], "bias", 1, &cout, "NeonsignValueError"))) return NULL;
    const npy_intp minhw = pool ? 4 : 3;
    if (h < minhw || w < minhw)
        return ns_raise(st, "NeonsignValueError", "x must be at least %ldx%ld, got %ldx%ld",
                        (long)minhw, (long)minhw, (long)h, (long)w);
    npy_intp oshape[4] = {n, cout, pool ? (h - 2) / 2 : h - 2, pool ? (w - 2) / 2 : w - 2};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_op_conv3x3(
        k, PyArray_DATA(x), (size_t)n, (size_t)cin, (size_t)h, (size_t)w, PyArray_DATA(wa),
        PyArray_DATA(ba), (size_t)cout, relu, pool, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

static const char *const linear_args[] = {"kernel", "x", "weight", "bias", "relu", NULL};
static const ns_argspec linear_spec = NS_ARGSPEC("kernel_linear", linear_args, 4);

static PyObject *py_kernel_linear(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    static const npy_intp any2[2] = {-1, -1};
    ns_state *st = ns_state_of_module(module);
    PyObject *a[5];
    int relu = 0;
    ns_kernel k;
    PyArrayObject *x, *wa, *ba;
    if (!ns_parse_args(st, &linear_spec, args, nargs, kwnames, a) ||
        !ns_conv_bool(st, a[4], "relu", &relu) || !conv_explicit_kernel(st, a[0], &k) ||
        !(x = ns_check_f32(st, a[1], "x", 2, any2, "NeonsignValueError")))
        return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), kd = PyArray_DIM(x, 1);
    const npy_intp wshape[2] = {-1, kd};
    if (!(wa = ns_check_f32(st, a[2], "weight", 2, wshape, "NeonsignValueError"))) return NULL;
    const npy_intp nout = PyArray_DIM(wa, 0);
    if (!(ba = ns_check_f32(st, a[3], "bias", 1, &nout, "NeonsignValueError"))) return NULL;
    npy_intp oshape[2] = {rows, nout};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status =
        ns_op_linear(k, PyArray_DATA(x), (size_t)rows, (size_t)kd, PyArray_DATA(wa),
                     PyArray_DATA(ba), (size_t)nout, relu, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

/* ------------------------------------------------------------------------------------------ */
/* int8: the QNet type and the int8 per-layer test entry points                                 */
/* ------------------------------------------------------------------------------------------ */

/* obj as a C-contiguous aligned ndarray of typenum with shape (-1: any >= 1), or NULL + error. */
static PyArrayObject *check_typed(ns_state *st, PyObject *obj, const char *what, int typenum,
                                  const char *tname, int ndim, const npy_intp *shape) {
    if (!PyArray_Check(obj))
        return (PyArrayObject *)ns_raise(st, "NeonsignTypeError",
                                         "%s must be a numpy.ndarray, got %s", what,
                                         Py_TYPE(obj)->tp_name);
    PyArrayObject *a = (PyArrayObject *)obj;
    int bad = PyArray_TYPE(a) != typenum || PyArray_NDIM(a) != ndim;
    for (int i = 0; !bad && i < ndim; i++)
        bad = shape[i] < 0 ? PyArray_DIM(a, i) < 1 : PyArray_DIM(a, i) != shape[i];
    if (bad || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a))
        return (PyArrayObject *)ns_raise(
            st, "ModelError", "%s must be a C-contiguous %s array of %d dimensions%s", what, tname,
            ndim, ndim == 1 && shape[0] > 0 ? " with the layer's channel count" : "");
    return a;
}

typedef struct {
    PyObject_HEAD ns_qnet *net;
    ns_state *st;
} QNetObject;

#define QNET(self)       (((QNetObject *)(self))->net)
#define QNET_STATE(self) (((QNetObject *)(self))->st)

/* params[key] checked as typenum with shape; a new reference in *keep. */
static const void *qparam(ns_state *st, PyObject *params, const char *key, int typenum,
                          const char *tname, int ndim, const npy_intp *shape, PyObject **keep) {
    *keep = PyMapping_GetItemString(params, key);
    if (!*keep) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            ns_raise(st, "ModelError", "int8 parameters have no %s", key);
        }
        return NULL;
    }
    PyArrayObject *a = check_typed(st, *keep, key, typenum, tname, ndim, shape);
    return a ? PyArray_DATA(a) : NULL;
}

#define QKEYS 16
/* ns_qnet_params from a mapping {"conv1.weight": int8, "conv1.bias"/".mult"/".shift": int32,
 * ..., "fc2.scale": float32, "input.inv_scale": float32 (1,)}; references kept in keep[]. */
static int qnet_params(ns_state *st, PyObject *params, ns_qnet_params *p, PyObject **keep) {
    static const char *const layers[4] = {"conv1", "conv2", "fc1", "fc2"};
    ns_qlayer *out[4] = {&p->conv1, &p->conv2, &p->fc1, &p->fc2};
    int used = 0;
    for (int i = 0; i < 4; i++) {
        const struct weight_info *wi = &weight_table[2 * i];
        const npy_intp n[1] = {wi->shape[0]};
        char key[32];
        snprintf(key, sizeof key, "%s.weight", layers[i]);
        if (!(out[i]->w =
                  qparam(st, params, key, NPY_INT8, "int8", wi->ndim, wi->shape, &keep[used++])))
            return 0;
        snprintf(key, sizeof key, "%s.bias", layers[i]);
        if (!(out[i]->bias = qparam(st, params, key, NPY_INT32, "int32", 1, n, &keep[used++])))
            return 0;
        if (i == 3) {
            if (!(out[i]->scale =
                      qparam(st, params, "fc2.scale", NPY_FLOAT32, "float32", 1, n, &keep[used++])))
                return 0;
            continue;
        }
        snprintf(key, sizeof key, "%s.mult", layers[i]);
        if (!(out[i]->mult = qparam(st, params, key, NPY_INT32, "int32", 1, n, &keep[used++])))
            return 0;
        snprintf(key, sizeof key, "%s.shift", layers[i]);
        if (!(out[i]->shift = qparam(st, params, key, NPY_INT32, "int32", 1, n, &keep[used++])))
            return 0;
    }
    const npy_intp one[1] = {1};
    const float *inv =
        qparam(st, params, "input.inv_scale", NPY_FLOAT32, "float32", 1, one, &keep[used++]);
    if (!inv) return 0;
    p->input_inv_scale = inv[0];
    return 1;
}

static const char *const qnet_new_args[] = {"params", "kernel", NULL};
static const ns_argspec qnet_new_spec = NS_ARGSPEC("QNet", qnet_new_args, 1);

static PyObject *qnet_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ns_state *st = ns_state_of_type(type);
    PyObject *a[2], *keep[QKEYS] = {NULL};
    const char *kernel;
    ns_qnet_params p;
    memset(&p, 0, sizeof p);
    QNetObject *self = NULL;
    if (!st || !ns_parse_tuple(st, &qnet_new_spec, args, kwds, a) ||
        !ns_conv_kernel_name(st, a[1], &kernel) || !qnet_params(st, a[0], &p, keep))
        goto done;
    ns_qnet *net = NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_qnet_create(&p, kernel, &net, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        ns_raise_error(st, &err);
        goto done;
    }
    self = (QNetObject *)type->tp_alloc(type, 0);
    if (!self) {
        ns_qnet_destroy(net);
        goto done;
    }
    self->net = net;
    self->st = st;
done:
    for (int i = 0; i < QKEYS; i++) Py_XDECREF(keep[i]);
    return (PyObject *)self;
}

static void qnet_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    ns_qnet_destroy(QNET(self));
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *qnet_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    static const npy_intp xshape[4] = {-1, NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W};
    ns_state *st = QNET_STATE(self);
    PyObject *a[2];
    PyArrayObject *x;
    int threads;
    if (!ns_parse_args(st, &forward_spec, args, nargs, kwnames, a) ||
        !ns_conv_threads(st, a[1], &threads) ||
        !(x = ns_check_f32(st, a[0], "input x", 4, xshape, "NeonsignValueError")))
        return NULL;
    ns_pool *pool = ns_state_pool(st);
    if (!pool) return NULL;
    npy_intp n = PyArray_DIM(x, 0), oshape[2] = {n, NS_NET_CLASSES};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, oshape, NPY_FLOAT32);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    const float *xp = (const float *)PyArray_DATA(x);
    float *op = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS status =
        ns_qnet_forward(QNET(self), pool, threads, xp, (size_t)n, op, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

static PyObject *qnet_set_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    ns_state *st = QNET_STATE(self);
    PyObject *a[1];
    const char *kernel;
    if (!ns_parse_args(st, &set_kernel_spec, args, nargs, kwnames, a) ||
        !ns_conv_kernel_name(st, a[0], &kernel))
        return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_qnet_set_kernel(QNET(self), kernel, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) return ns_raise_error(st, &err);
    return PyUnicode_FromString(ns_qkernel_name(ns_qnet_kernel(QNET(self))));
}

static PyObject *qnet_enable_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
    PyObject *a[1];
    int on = 1;
    if (!ns_parse_args(QNET_STATE(self), &enable_timers_spec, args, nargs, kwnames, a) ||
        !ns_conv_bool(QNET_STATE(self), a[0], "on", &on))
        return NULL;
    Py_BEGIN_ALLOW_THREADS ns_qnet_enable_timers(QNET(self), on);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *qnet_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(QNET_STATE(self), "QNet.timers", nargs, kwnames)) return NULL;
    uint64_t t[NS_NET_LAYERS], c[NS_NET_LAYERS];
    Py_BEGIN_ALLOW_THREADS ns_qnet_read_timers(QNET(self), t, c);
    Py_END_ALLOW_THREADS return timers_dict(t, c);
}

static PyObject *qnet_reset_timers(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(QNET_STATE(self), "QNet.reset_timers", nargs, kwnames)) return NULL;
    Py_BEGIN_ALLOW_THREADS ns_qnet_reset_timers(QNET(self));
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *qnet_get_kernel(PyObject *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(ns_qkernel_name(ns_qnet_kernel(QNET(self))));
}

static PyObject *qnet_get_tile(PyObject *self, void *closure) {
    (void)closure;
    const ns_qisa *isa = ns_qkernel_isa(ns_qnet_kernel(QNET(self)));
    return PyUnicode_FromString(isa ? isa->tile : "");
}

static PyObject *qnet_get_layer_kernels(PyObject *self, void *closure) {
    (void)closure;
    PyObject *d = PyDict_New();
    for (int l = 0; d && l < NS_NET_LAYERS; l++) {
        const char *fn = ns_qnet_layer_kernel(QNET(self), l);
        PyObject *v = fn ? PyUnicode_FromString(fn) : Py_NewRef(Py_None);
        if (!v || PyDict_SetItemString(d, ns_net_layer_names[l], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *qnet_get_timers_enabled(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(ns_qnet_timers_enabled(QNET(self)));
}

static PyMethodDef qnet_methods[] = {
    {"forward", FASTCALL_KW(qnet_forward),
     "forward(x, threads=None) -> float32 (N, NUM_CLASSES)\n\nLogits of x in int8."},
    {"set_kernel", FASTCALL_KW(qnet_set_kernel),
     "set_kernel(name) -> str\n\nRepack for int8 kernel `name` (one of INT8_KERNELS)."},
    {"enable_timers", FASTCALL_KW(qnet_enable_timers), "enable_timers(on=True)"},
    {"timers", FASTCALL_KW(qnet_timers), "timers() -> dict[str, tuple[int, int]]"},
    {"reset_timers", FASTCALL_KW(qnet_reset_timers), "reset_timers()"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef qnet_getset[] = {
    {"kernel", qnet_get_kernel, NULL, "The int8 kernel in use (one of INT8_KERNELS).", NULL},
    {"tile", qnet_get_tile, NULL, "ISA and register tile ('avx512vnni_12x32', 'scalar').", NULL},
    {"layer_kernels", qnet_get_layer_kernels, NULL, "{layer: C function computing it}.", NULL},
    {"timers_enabled", qnet_get_timers_enabled, NULL, "Whether the per-layer timers run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot qnet_slots[] = {
    {Py_tp_doc, "QNet(params, kernel=None)\n\nTrafficSignNet in int8 (csrc/core/int8_net.h). "
                "params: the mapping neonsign.quantize.engine_params builds. kernel: one of "
                "INT8_KERNELS, 'auto' or None ($NEONSIGN_KERNEL if it names an int8 kernel, else "
                "the best)."},
    {Py_tp_new, qnet_new},
    {Py_tp_dealloc, qnet_dealloc},
    {Py_tp_methods, qnet_methods},
    {Py_tp_getset, qnet_getset},
    {0, NULL},
};

static PyType_Spec qnet_spec = {
    .name = "neonsign._native.QNet",
    .basicsize = sizeof(QNetObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = qnet_slots,
};

static PyObject *py_available_int8_kernels(PyObject *module, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "available_int8_kernels", nargs, kwnames))
        return NULL;
    PyObject *list = PyList_New(0);
    for (int k = 0; list && k < NS_QKERNEL_COUNT; k++) {
        if (!ns_qkernel_available((ns_qkernel)k)) continue;
        PyObject *s = PyUnicode_FromString(ns_qkernel_name((ns_qkernel)k));
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static int conv_qkernel(ns_state *st, PyObject *obj, ns_qkernel *k) {
    const char *name;
    if (!ns_conv_kernel_name(st, obj, &name)) return 0;
    ns_error err;
    ns_error_clear(&err);
    if (ns_qkernel_resolve(name, k, &err) != NS_OK) {
        ns_raise_error(st, &err);
        return 0;
    }
    return 1;
}

/* ns_qlayer from (weight, bias, mult, shift, scale) objects (mult/shift or scale may be None). */
static int qlayer_args(ns_state *st, PyObject *const *a, int wdim, const npy_intp *wshape,
                       ns_qlayer *L, npy_intp *nout) {
    PyArrayObject *w = check_typed(st, a[0], "weight", NPY_INT8, "int8", wdim, wshape);
    if (!w) return 0;
    *nout = PyArray_DIM(w, 0);
    PyArrayObject *b = check_typed(st, a[1], "bias", NPY_INT32, "int32", 1, nout);
    if (!b) return 0;
    *L = (ns_qlayer){PyArray_DATA(w), PyArray_DATA(b), NULL, NULL, NULL};
    if (a[4] && a[4] != Py_None) {
        PyArrayObject *s = check_typed(st, a[4], "scale", NPY_FLOAT32, "float32", 1, nout);
        if (!s) return 0;
        L->scale = PyArray_DATA(s);
        return 1;
    }
    PyArrayObject *m = a[2] ? check_typed(st, a[2], "mult", NPY_INT32, "int32", 1, nout) : NULL;
    PyArrayObject *sh =
        m && a[3] ? check_typed(st, a[3], "shift", NPY_INT32, "int32", 1, nout) : NULL;
    if (!sh) {
        if (!PyErr_Occurred()) ns_raise(st, "NeonsignValueError", "need mult and shift, or scale");
        return 0;
    }
    L->mult = PyArray_DATA(m);
    L->shift = PyArray_DATA(sh);
    for (npy_intp o = 0; o < *nout; o++)
        if (L->mult[o] < (INT32_C(1) << 30) || L->shift[o] < 0 || L->shift[o] > 30) {
            ns_raise(st, "NeonsignValueError", "mult/shift of channel %ld out of range", (long)o);
            return 0;
        }
    return 1;
}

static const char *const qconv_args[] = {"kernel", "x",     "weight", "bias",
                                         "mult",   "shift", "pool",   NULL};
static const ns_argspec qconv_spec = NS_ARGSPEC("qkernel_conv3x3", qconv_args, 6);

static PyObject *py_qkernel_conv3x3(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
    static const npy_intp any4[4] = {-1, -1, -1, -1};
    ns_state *st = ns_state_of_module(module);
    PyObject *a[7];
    int pool = 0;
    ns_qkernel k;
    PyArrayObject *x;
    if (!ns_parse_args(st, &qconv_spec, args, nargs, kwnames, a) ||
        !ns_conv_bool(st, a[6], "pool", &pool) || !conv_qkernel(st, a[0], &k) ||
        !(x = check_typed(st, a[1], "x", NPY_UINT8, "uint8", 4, any4)))
        return NULL;
    const npy_intp n = PyArray_DIM(x, 0), cin = PyArray_DIM(x, 1), h = PyArray_DIM(x, 2),
                   w = PyArray_DIM(x, 3);
    const npy_intp wshape[4] = {-1, cin, CONV_K, CONV_K};
    PyObject *la[5] = {a[2], a[3], a[4], a[5], NULL};
    ns_qlayer L;
    npy_intp cout;
    if (!qlayer_args(st, la, 4, wshape, &L, &cout)) return NULL;
    if (h < 4 || w < 4) return ns_raise(st, "NeonsignValueError", "x must be at least 4x4");
    npy_intp oshape[4] = {n, cout, pool ? (h - 2) / 2 : h - 2, pool ? (w - 2) / 2 : w - 2};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, oshape, NPY_UINT8);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status =
        ns_qop_conv3x3(k, PyArray_DATA(x), (size_t)n, (size_t)cin, (size_t)h, (size_t)w, &L,
                       (size_t)cout, pool, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

static const char *const qlinear_args[] = {"kernel", "x",     "weight", "bias",
                                           "mult",   "shift", "scale",  NULL};
static const ns_argspec qlinear_spec = NS_ARGSPEC("qkernel_linear", qlinear_args, 4);

static PyObject *py_qkernel_linear(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    static const npy_intp any2[2] = {-1, -1};
    ns_state *st = ns_state_of_module(module);
    PyObject *a[7];
    ns_qkernel k;
    PyArrayObject *x;
    if (!ns_parse_args(st, &qlinear_spec, args, nargs, kwnames, a) || !conv_qkernel(st, a[0], &k) ||
        !(x = check_typed(st, a[1], "x", NPY_UINT8, "uint8", 2, any2)))
        return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), kd = PyArray_DIM(x, 1);
    const npy_intp wshape[2] = {-1, kd};
    ns_qlayer L;
    npy_intp nout;
    if (!qlayer_args(st, a + 2, 2, wshape, &L, &nout)) return NULL;
    npy_intp oshape[2] = {rows, nout};
    PyArrayObject *out =
        (PyArrayObject *)PyArray_SimpleNew(2, oshape, L.scale ? NPY_FLOAT32 : NPY_UINT8);
    if (!out) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    void *op = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS status =
        ns_qop_linear(k, PyArray_DATA(x), (size_t)rows, (size_t)kd, &L, (size_t)nout,
                      L.scale ? NULL : op, L.scale ? op : NULL, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) {
        Py_DECREF(out);
        return ns_raise_error(st, &err);
    }
    return (PyObject *)out;
}

static PyObject *int8_kernel_names(void) {
    const char *names[NS_QKERNEL_COUNT];
    for (int k = 0; k < NS_QKERNEL_COUNT; k++) names[k] = ns_qkernel_name((ns_qkernel)k);
    return ns_str_tuple(names, NS_QKERNEL_COUNT);
}

PyMethodDef ns_engine_methods[] = {
    {"available_kernels", FASTCALL_KW(py_available_kernels),
     "available_kernels() -> list[str]\n\nKernels compiled in and supported by this CPU (a "
     "subset of KERNELS, 'ref' first)."},
    {"resolve_kernel", FASTCALL_KW(py_resolve_kernel),
     "resolve_kernel(name=None) -> str\n\nThe kernel a Net created with `name` would use."},
    {"cpu_ghz", FASTCALL_KW(py_cpu_ghz),
     "cpu_ghz() -> float\n\nEstimated core clock (GHz) from a dependent add chain "
     "(benchmarks)."},
    {"kernel_conv3x3", FASTCALL_KW(py_kernel_conv3x3),
     "kernel_conv3x3(kernel, x, weight, bias, relu=True, pool=False) -> NCHW float32\n\n"
     "One conv layer (test entry point)."},
    {"kernel_linear", FASTCALL_KW(py_kernel_linear),
     "kernel_linear(kernel, x, weight, bias, relu=False) -> float32\n\nOne linear layer (test "
     "entry point)."},
    {"available_int8_kernels", FASTCALL_KW(py_available_int8_kernels),
     "available_int8_kernels() -> list[str]\n\nint8 kernels compiled in and supported by this "
     "CPU (a subset of INT8_KERNELS, 'ref' first)."},
    {"qkernel_conv3x3", FASTCALL_KW(py_qkernel_conv3x3),
     "qkernel_conv3x3(kernel, x, weight, bias, mult, shift, pool=False) -> NCHW uint8\n\n"
     "One int8 conv layer (test entry point)."},
    {"qkernel_linear", FASTCALL_KW(py_qkernel_linear),
     "qkernel_linear(kernel, x, weight, bias, mult=None, shift=None, scale=None) -> uint8 or "
     "float32\n\nOne int8 linear layer (test entry point)."},
    {NULL, NULL, 0, NULL},
};

int ns_engine_exec(PyObject *module, ns_state *st) {
    if (!(st->net_type = ns_add_type(module, &net_spec))) return -1;
    if (add_fact(module, "KERNELS", kernel_names()) < 0) return -1;
    if (add_fact(module, "LAYER_NAMES", ns_str_tuple(ns_net_layer_names, NS_NET_LAYERS)) < 0)
        return -1;
    if (add_fact(module, "WEIGHT_SHAPES", weight_shapes()) < 0) return -1;
    if (add_fact(module, "INPUT_SHAPE",
                 Py_BuildValue("(iii)", NS_NET_IN_C, NS_NET_IN_H, NS_NET_IN_W)) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "NUM_CLASSES", NS_NET_CLASSES) < 0) return -1;
    /* the module's attribute keeps QNet alive (no state slot: module.c stays untouched) */
    PyTypeObject *qnet_type = ns_add_type(module, &qnet_spec);
    if (!qnet_type) return -1;
    Py_DECREF(qnet_type);
    if (add_fact(module, "INT8_KERNELS", int8_kernel_names()) < 0) return -1;
    return 0;
}
