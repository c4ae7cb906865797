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
    if (engine_init(m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
