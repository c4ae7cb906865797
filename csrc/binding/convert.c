/* Conversions shared by the binding: argument binding, typed converters, array checks, and
 * ns_error -> neonsign.errors. See binding.h for the conventions. */
#include "binding.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Module state from a type                                                                     */
/* ------------------------------------------------------------------------------------------ */

ns_state *ns_state_of_type(PyTypeObject *tp) {
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *module = PyType_GetModuleByDef(tp, &ns_module_def);
    return module ? ns_state_of_module(module) : NULL;
#else
    /* Python 3.10 has no PyType_GetModuleByDef: walk the MRO for a heap type of ours. */
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) continue;
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module && PyModule_GetDef(module) == &ns_module_def) return ns_state_of_module(module);
    }
    PyErr_Format(PyExc_TypeError, "%s is not a neonsign._native type", tp->tp_name);
    return NULL;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* A message for an exception: UTF-8, undecodable bytes (file names) shown as \xNN escapes. */
static PyObject *message_object(const char *msg) {
    return PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
}

/* neonsign.errors.<name> (new reference), or NULL with SystemError set: a missing class is a bug
 * of the binding, reported as such together with the message it was to carry. */
static PyObject *error_class(ns_state *st, const char *name, PyObject *msg) {
    PyObject *cls = st && st->errors ? PyObject_GetAttrString(st->errors, name) : NULL;
    if (cls) return cls;
    PyErr_Clear();
    PyErr_Format(PyExc_SystemError, "neonsign.errors has no class %s (while raising: %S)", name,
                 msg);
    return NULL;
}

static void set_error(ns_state *st, const char *cls_name, PyObject *msg) {
    PyObject *cls = error_class(st, cls_name, msg);
    if (!cls) return;
    PyErr_SetObject(cls, msg);
    Py_DECREF(cls);
}

PyObject *ns_raise(ns_state *st, const char *cls, const char *fmt, ...) {
    va_list va;
    va_start(va, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (!msg) return NULL;
    set_error(st, cls, msg);
    Py_DECREF(msg);
    return NULL;
}

/* errors.os_error_class(code)(msg, code, filename): NeonsignFileNotFoundError & co. */
static void set_os_error(ns_state *st, int code, PyObject *msg, const char *filename) {
    PyObject *fname = NULL, *cls = NULL, *exc = NULL;
    if (filename) {
        fname = PyUnicode_DecodeFSDefault(filename);
        if (!fname) return;
    } else {
        fname = Py_NewRef(Py_None);
    }
    cls = PyObject_CallMethod(st->errors, "os_error_class", "i", code);
    if (cls) exc = PyObject_CallFunction(cls, "OiO", msg, code, fname);
    if (exc) PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_XDECREF(exc);
    Py_XDECREF(cls);
    Py_DECREF(fname);
}

PyObject *ns_raise_error_ex(ns_state *st, const ns_error *err, const char *format_cls,
                            const char *filename) {
    ns_status status = err ? err->status : NS_ERR_INVALID;
    PyObject *msg =
        message_object((err && err->msg[0]) ? err->msg : "unknown error in neonsign._native");
    if (!msg) return NULL;
    switch (status) {
    case NS_ERR_NOMEM:
        PyErr_SetObject(PyExc_MemoryError, msg);
        break;
    case NS_ERR_NOTFOUND:
    case NS_ERR_IO: {
        int code = err->sys_errno ? err->sys_errno : (status == NS_ERR_NOTFOUND ? ENOENT : EIO);
        set_os_error(st, code, msg, filename);
        break;
    }
    case NS_ERR_FORMAT:
        set_error(st, format_cls ? format_cls : "DecodeError", msg);
        break;
    case NS_ERR_LIMIT:
        set_error(st, "ResourceLimitError", msg);
        break;
    case NS_ERR_UNSUPPORTED:
        set_error(st, "UnsupportedError", msg);
        break;
    case NS_ERR_INVALID:
    default:
        set_error(st, "NeonsignValueError", msg);
        break;
    }
    Py_DECREF(msg);
    return NULL;
}

void ns_translate_error(ns_state *st, const char *what) {
    const char *cls_name;
    if (!PyErr_Occurred()) return;
    if (PyErr_ExceptionMatches(PyExc_TypeError))
        cls_name = "NeonsignTypeError";
    else if (PyErr_ExceptionMatches(PyExc_OverflowError))
        cls_name = "NeonsignOverflowError";
    else if (PyErr_ExceptionMatches(PyExc_ValueError))
        cls_name = "NeonsignValueError";
    else
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *base = PyObject_GetAttrString(st->errors, "NeonsignError");
    int ours = base && value ? PyObject_IsInstance(value, base) : 0;
    Py_XDECREF(base);
    if (ours != 0) { /* already a neonsign error (1), or the check itself failed (-1) */
        if (ours < 0) PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return;
    }
    if (tb && value) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *msg = value ? PyUnicode_FromFormat("%s: %S", what, value) : NULL;
    PyObject *cls = msg ? error_class(st, cls_name, msg) : NULL;
    PyObject *exc = cls ? PyObject_CallOneArg(cls, msg) : NULL;
    if (exc) {
        PyException_SetCause(exc, value); /* steals value */
        value = NULL;
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    Py_XDECREF(value);
    Py_XDECREF(cls);
    Py_XDECREF(msg);
}

/* ------------------------------------------------------------------------------------------ */
/* Argument binding                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int bind_positional(ns_state *st, const ns_argspec *spec, int n, PyObject *const *args,
                           Py_ssize_t nargs, PyObject **out) {
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (nargs > n) {
        ns_raise(st, "NeonsignTypeError", "%s() takes at most %d argument%s (%zd given)",
                 spec->fname, n, n == 1 ? "" : "s", nargs);
        return 0;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    return 1;
}

static int bind_keyword(ns_state *st, const ns_argspec *spec, int n, PyObject *key, PyObject *value,
                        PyObject **out) {
    for (int i = 0; i < n; i++) {
        if (!PyUnicode_Check(key) || PyUnicode_CompareWithASCIIString(key, spec->names[i]) != 0)
            continue;
        if (out[i]) {
            ns_raise(st, "NeonsignTypeError", "%s() got multiple values for argument '%s'",
                     spec->fname, spec->names[i]);
            return 0;
        }
        out[i] = value;
        return 1;
    }
    ns_raise(st, "NeonsignTypeError", "%s() got an unexpected keyword argument '%S'", spec->fname,
             key);
    return 0;
}

static int check_required(ns_state *st, const ns_argspec *spec, PyObject **out) {
    for (int i = 0; i < spec->required; i++) {
        if (out[i]) continue;
        ns_raise(st, "NeonsignTypeError", "%s() missing required argument '%s' (pos %d)",
                 spec->fname, spec->names[i], i + 1);
        return 0;
    }
    return 1;
}

int ns_no_args_error(ns_state *st, const char *fname, Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs == 0 && nkw > 0)
        ns_raise(st, "NeonsignTypeError", "%s() takes no keyword arguments", fname);
    else
        ns_raise(st, "NeonsignTypeError", "%s() takes no arguments (%zd given)", fname,
                 nargs + nkw);
    return 0;
}

int ns_parse_args_slow(ns_state *st, const ns_argspec *spec, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames, PyObject **out) {
    int n = spec->count;
    if (!bind_positional(st, spec, n, args, nargs, out)) return 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++)
        if (!bind_keyword(st, spec, n, PyTuple_GET_ITEM(kwnames, j), args[nargs + j], out))
            return 0;
    return check_required(st, spec, out);
}

int ns_parse_tuple(ns_state *st, const ns_argspec *spec, PyObject *args, PyObject *kwds,
                   PyObject **out) {
    int n = spec->count;
    PyObject *const *items = args ? PySequence_Fast_ITEMS(args) : NULL;
    if (!bind_positional(st, spec, n, items, args ? PyTuple_GET_SIZE(args) : 0, out)) return 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (kwds && PyDict_Next(kwds, &pos, &key, &value))
        if (!bind_keyword(st, spec, n, key, value, out)) return 0;
    return check_required(st, spec, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Scalars, strings, buffers                                                                    */
/* ------------------------------------------------------------------------------------------ */

int ns_conv_size(ns_state *st, PyObject *obj, const char *name, size_t minimum, size_t *out) {
    size_t v = PyLong_AsSize_t(obj);
    if (v == (size_t)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            ns_raise(st, "NeonsignValueError", "%s must be an integer >= %zu", name, minimum);
        }
        return 0;
    }
    if (v < minimum) {
        ns_raise(st, "NeonsignValueError", "%s must be >= %zu, got %zu", name, minimum, v);
        return 0;
    }
    *out = v;
    return 1;
}

int ns_conv_i64(ns_state *st, PyObject *obj, const char *name, long long *out) {
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        ns_translate_error(st, name);
        return 0;
    }
    *out = v;
    return 1;
}

int ns_conv_u64(ns_state *st, PyObject *obj, const char *name, unsigned long long *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        ns_translate_error(st, name);
        return 0;
    }
    *out = v;
    return 1;
}

int ns_conv_bool(ns_state *st, PyObject *obj, const char *name, int *out) {
    if (!obj) return 1;
    int v = PyObject_IsTrue(obj);
    if (v < 0) {
        ns_translate_error(st, name);
        return 0;
    }
    *out = v;
    return 1;
}

int ns_conv_threads(ns_state *st, PyObject *obj, int *out) {
    if (obj == NULL || obj == Py_None) {
        *out = 0;
        return 1;
    }
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        ns_translate_error(st, "threads");
        return 0;
    }
    if (v < 0 || v > NS_POOL_MAX_THREADS) {
        ns_raise(st, "NeonsignValueError", "threads must be between 0 (all CPUs) and %d, got %ld",
                 NS_POOL_MAX_THREADS, v);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int ns_conv_triple(ns_state *st, PyObject *obj, const char *name, float out[3]) {
    PyObject *seq = PySequence_Fast(obj, "not a sequence");
    if (!seq) {
        PyErr_Clear();
        ns_raise(st, "NeonsignTypeError", "%s must be a sequence of 3 numbers, got %s", name,
                 Py_TYPE(obj)->tp_name);
        return 0;
    }
    int ok = 1;
    if (PySequence_Fast_GET_SIZE(seq) != 3) {
        ns_raise(st, "NeonsignValueError", "%s must have 3 values (one per channel), got %zd", name,
                 PySequence_Fast_GET_SIZE(seq));
        ok = 0;
    }
    for (int i = 0; ok && i < 3; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1.0 && PyErr_Occurred()) {
            ns_translate_error(st, name);
            ok = 0;
        }
        out[i] = (float)v;
    }
    Py_DECREF(seq);
    return ok;
}

int ns_conv_str(ns_state *st, PyObject *obj, const char *name, const char **out) {
    if (!PyUnicode_Check(obj)) {
        ns_raise(st, "NeonsignTypeError", "%s must be a str, not %s", name, Py_TYPE(obj)->tp_name);
        return 0;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!s) {
        ns_translate_error(st, name);
        return 0;
    }
    if ((size_t)len != strlen(s)) {
        ns_raise(st, "NeonsignValueError", "%s must not contain NUL characters", name);
        return 0;
    }
    *out = s;
    return 1;
}

int ns_conv_kernel_name(ns_state *st, PyObject *obj, const char **out) {
    if (obj == NULL || obj == Py_None) {
        *out = NULL;
        return 1;
    }
    if (!PyUnicode_Check(obj)) {
        ns_raise(st, "NeonsignTypeError", "kernel must be a str or None, got %s",
                 Py_TYPE(obj)->tp_name);
        return 0;
    }
    return ns_conv_str(st, obj, "kernel", out);
}

int ns_conv_path(ns_state *st, PyObject *obj, const char *name, PyObject **out) {
    /* PyUnicode_FSConverter also refuses embedded NUL bytes (ValueError) */
    if (!PyUnicode_FSConverter(obj, out)) {
        *out = NULL;
        ns_translate_error(st, name);
        return 0;
    }
    return 1;
}

int ns_conv_buffer(ns_state *st, PyObject *obj, const char *name, Py_buffer *view) {
    if (PyUnicode_Check(obj)) { /* str exposes no buffer, but say what is wanted */
        ns_raise(st, "NeonsignTypeError", "%s must be a bytes-like object, not str", name);
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        ns_translate_error(st, name);
        return 0;
    }
    return 1;
}

PyObject *ns_str_tuple(const char *const *items, size_t n) {
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t && i < n; i++) {
        PyObject *s = PyUnicode_FromString(items[i]);
        if (!s) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, s);
    }
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* Arrays                                                                                       */
/* ------------------------------------------------------------------------------------------ */

PyArrayObject *ns_check_rgb(ns_state *st, PyObject *obj, const char *name, int ndim) {
    if (!PyArray_Check(obj)) {
        ns_raise(st, "NeonsignTypeError", "%s must be a numpy.ndarray, got %s", name,
                 Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_UINT8 || PyArray_NDIM(a) != ndim || PyArray_DIM(a, ndim - 1) != 3 ||
        !PyArray_IS_C_CONTIGUOUS(a)) {
        ns_raise(st, "NeonsignValueError",
                 "%s must be a C-contiguous uint8 array with %d dimensions, the last of size 3",
                 name, ndim);
        return NULL;
    }
    for (int d = 1; d < ndim; d++)
        if (PyArray_DIM(a, d) < 1) {
            ns_raise(st, "NeonsignValueError", "%s has an empty dimension", name);
            return NULL;
        }
    return a;
}

/* "(N, 3, 32, 32)" for a wanted shape (-1: N) or an array's shape. */
static void format_shape(char *buf, size_t size, int ndim, const npy_intp *shape) {
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && len < size; i++) {
        const char *sep = i ? ", " : "";
        if (shape[i] < 0)
            len += (size_t)snprintf(buf + len, size - len, "%sN", sep);
        else
            len += (size_t)snprintf(buf + len, size - len, "%s%ld", sep, (long)shape[i]);
    }
    if (len < size) snprintf(buf + len, size - len, ")");
}

PyArrayObject *ns_check_array(ns_state *st, PyObject *obj, const char *what, int typenum, int ndim,
                              const npy_intp *shape, int writeable, const char *cls) {
    if (!PyArray_Check(obj)) {
        ns_raise(st, "NeonsignTypeError", "%s must be a numpy.ndarray, got %s", what,
                 Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != typenum || !PyArray_ISNOTSWAPPED(a)) {
        PyArray_Descr *want = PyArray_DescrFromType(typenum);
        ns_raise(st, cls, "%s must have dtype %S, got %S", what, (PyObject *)want,
                 (PyObject *)PyArray_DESCR(a));
        Py_XDECREF(want);
        return NULL;
    }
    int bad = PyArray_NDIM(a) != ndim;
    for (int i = 0; !bad && i < ndim; i++)
        bad = shape[i] < 0 ? PyArray_DIM(a, i) < 1 : PyArray_DIM(a, i) != shape[i];
    if (bad) {
        char want[128], got[128];
        format_shape(want, sizeof want, ndim, shape);
        format_shape(got, sizeof got, PyArray_NDIM(a), PyArray_DIMS(a));
        ns_raise(st, cls, "%s must have shape %s, got %s", what, want, got);
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        ns_raise(st, cls, "%s must be C-contiguous and aligned", what);
        return NULL;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        ns_raise(st, cls, "%s must be writeable", what);
        return NULL;
    }
    return a;
}

PyArrayObject *ns_check_f32(ns_state *st, PyObject *obj, const char *what, int ndim,
                            const npy_intp *shape, const char *cls) {
    return ns_check_array(st, obj, what, NPY_FLOAT32, ndim, shape, 0, cls);
}
