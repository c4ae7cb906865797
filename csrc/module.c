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
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/prof.h"

/* ------------------------------------------------------------------------------------------ */
/* Shared helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static ns_pool *g_pool = NULL;      /* the process-wide thread pool */
static PyObject *g_errors = NULL;   /* the neonsign.errors module */

static ns_pool *module_pool(void) { return g_pool; }

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
    case NS_ERR_FORMAT: cls = error_class(cls_name ? cls_name : "DecodeError", PyExc_ValueError); break;
    case NS_ERR_LIMIT: cls = error_class("ResourceLimitError", PyExc_ValueError); break;
    case NS_ERR_UNSUPPORTED: cls = error_class("UnsupportedError", PyExc_ValueError); break;
    case NS_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, msg); return NULL;
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
    default: cls = error_class(cls_name ? cls_name : "NeonsignValueError", PyExc_ValueError); break;
    }
    PyErr_SetString(cls, msg);
    Py_DECREF(cls);
    return NULL;
}

static PyObject *raise_ns_error(const ns_error *err) { return raise_ns_error_as(err, NULL); }

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
    Py_BEGIN_ALLOW_THREADS
    st = ns_pool_resize(g_pool, (int)n, &err);
    Py_END_ALLOW_THREADS
    if (st != NS_OK) return raise_ns_error(&err);
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

#define CORE_METHODS                                                                            \
    {"set_threads", py_set_threads, METH_O,                                                     \
     "set_threads(n) -> int\n\nResize the shared thread pool (0 = one per CPU, 1 = no threads)."}, \
    {"get_threads", py_get_threads, METH_NOARGS, "get_threads() -> int\n\nThreads in the pool."}, \
    {"cpu_count", py_cpu_count, METH_NOARGS, "cpu_count() -> int\n\nOnline CPUs."},             \
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict\n\nHow this module was built."},

/* ------------------------------------------------------------------------------------------ */
/* Preprocessing: PPM, CSV, resize, normalise, whole-split loader                               */
/* ------------------------------------------------------------------------------------------ */

#define PREPROCESS_METHODS

static int preprocess_init(PyObject *m) {
    (void)m;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Profiler: span recorder (csrc/core/prof.c) and the cycle counter                            */
/* ------------------------------------------------------------------------------------------ */

/* Spans are microsecond-scale calls made with the GIL held (a recorder is single-threaded); the
 * GIL is not released here because each call does a few hundred nanoseconds of work. */
typedef struct {
    PyObject_HEAD
    ns_prof *prof;
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
    PyObject *name;
    unsigned long long duration = 0, calls = 1, start = 0;
    long long parent = NS_PROF_NO_PARENT;
    if (!recorder_ready(self)) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OK|KLK:add", kwlist, &name, &duration, &calls,
                                     &parent, &start))
        return NULL;
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
    static const char *keys[] = {"name", "parent", "depth", "calls", "start_ns", "end_ns",
                                 "duration_ns", "cycles", "complete"};
    static const int types[] = {NPY_INT32, NPY_INT64, NPY_INT32, NPY_UINT64, NPY_UINT64,
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
            cyc[i] = (done_ && r->end_cycles >= r->start_cycles) ? r->end_cycles - r->start_cycles : 0;
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
    PyObject_HEAD
    RecorderObject *rec;
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
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "neonsign._native.Span",
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
     "intern(name) -> int\n\nId of a span name (added if new); begin/end accept it instead of the str."},
    {"begin", (PyCFunction)recorder_begin, METH_O, "begin(name)\n\nOpen a span (str or id)."},
    {"span", (PyCFunction)recorder_span, METH_O,
     "span(name) -> Span\n\nA context manager: `with rec.span(\"conv1\"): ...` times its body."},
    {"end", (PyCFunction)(void (*)(void))recorder_end, METH_FASTCALL,
     "end(name=None)\n\nClose the innermost open span; if given, name must match it."},
    {"add", (PyCFunction)(void (*)(void))recorder_add, METH_VARARGS | METH_KEYWORDS,
     "add(name, duration_ns, calls=1, parent=-1, start_ns=0)\n\n"
     "Attach a span timed elsewhere (same monotonic clock) under record `parent`."},
    {"reset", (PyCFunction)recorder_reset, METH_NOARGS, "reset()\n\nDrop all records and open spans."},
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
    {"open_spans", (getter)recorder_get_open, NULL, "Recorded spans begun and not yet ended.", NULL},
    {"dropped", (getter)recorder_get_dropped, NULL, "Spans not stored because the buffer was full.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "neonsign._native.Recorder",
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
    Py_BEGIN_ALLOW_THREADS
    hz = ns_cycles_hz(0);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(hz);
}

#define PROFILER_METHODS                                                                        \
    {"prof_now_ns", py_prof_now_ns, METH_NOARGS,                                                \
     "prof_now_ns() -> int\n\nThe profiler's monotonic clock in nanoseconds."},                 \
    {"prof_cycles", py_prof_cycles, METH_NOARGS,                                                \
     "prof_cycles() -> int\n\nThe CPU cycle counter (0 if user code cannot read one)."},        \
    {"prof_cycles_hz", py_prof_cycles_hz, METH_NOARGS,                                          \
     "prof_cycles_hz() -> float\n\nCycle counter frequency in Hz (x86: measured over ~2 ms; "   \
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

#define ENGINE_METHODS

static int engine_init(PyObject *m) {
    (void)m;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Module definition                                                                            */
/* ------------------------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    CORE_METHODS
    PREPROCESS_METHODS
    PROFILER_METHODS
    ENGINE_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "neonsign._native",
    "neonsign's C core: preprocessing, the native inference engine and the thread pool.\n"
    "Private: use the documented API in neonsign.data, neonsign.engine and friends.",
    -1,
    module_methods,
    NULL, NULL, NULL, NULL,
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
