/* neonsign._native: the module definition (multi-phase init), its state, the thread pool and
 * build information. See binding.h for the layout of the binding and its conventions. */
#define NS_BINDING_IMPORTS_NUMPY
#include "binding.h"

#include <stdlib.h>
#include <string.h>

#ifndef NS_VERSION
#error "NS_VERSION must be defined (meson.build passes the project version)"
#endif

/* ------------------------------------------------------------------------------------------ */
/* The thread pool                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* NEONSIGN_THREADS, read when the pool is first needed: this and NEONSIGN_KERNEL (read by the
 * C core when a kernel is resolved without a name) are the library's only environment reads. */
#define THREADS_ENV "NEONSIGN_THREADS"

static int threads_from_env(ns_state *st, int *out) {
    const char *env = getenv(THREADS_ENV);
    *out = 0;
    if (!env || !*env) return 1;
    char *end = NULL;
    long v = strtol(env, &end, 10);
    if (*end != '\0' || v < 0 || v > NS_POOL_MAX_THREADS) {
        ns_raise(st, "ConfigError",
                 "%s must be an integer between 0 (one thread per CPU) and %d, got '%s'",
                 THREADS_ENV, NS_POOL_MAX_THREADS, env);
        return 0;
    }
    *out = (int)v;
    return 1;
}

ns_pool *ns_state_pool(ns_state *st) {
    if (st->pool) return st->pool;
    int n;
    if (!threads_from_env(st, &n)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_pool_create(&st->pool, n, &err) != NS_OK) {
        st->pool = NULL;
        ns_raise_error(st, &err);
        return NULL;
    }
    return st->pool;
}

PyTypeObject *ns_add_type(PyObject *module, PyType_Spec *spec) {
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (tp && PyModule_AddType(module, tp) < 0) Py_CLEAR(tp);
    return tp;
}

static const char *const set_threads_args[] = {"n", NULL};
static const ns_argspec set_threads_spec = NS_ARGSPEC("set_threads", set_threads_args, 1);

static PyObject *py_set_threads(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    ns_state *st = ns_state_of_module(module);
    PyObject *a[1];
    int n;
    if (!ns_parse_args(st, &set_threads_spec, args, nargs, kwnames, a)) return NULL;
    if (a[0] == Py_None)
        return ns_raise(st, "NeonsignTypeError", "set_threads() needs an int, not None");
    if (!ns_conv_threads(st, a[0], &n)) return NULL;
    ns_pool *pool = ns_state_pool(st);
    if (!pool) return NULL;
    ns_error err;
    ns_error_clear(&err);
    ns_status status;
    Py_BEGIN_ALLOW_THREADS status = ns_pool_resize(pool, n, &err);
    Py_END_ALLOW_THREADS if (status != NS_OK) return ns_raise_error(st, &err);
    return PyLong_FromLong(ns_pool_threads(pool));
}

static PyObject *py_get_threads(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    ns_state *st = ns_state_of_module(module);
    if (!ns_no_args(st, "get_threads", nargs, kwnames)) return NULL;
    ns_pool *pool = ns_state_pool(st);
    return pool ? PyLong_FromLong(ns_pool_threads(pool)) : NULL;
}

static PyObject *py_cpu_count(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "cpu_count", nargs, kwnames)) return NULL;
    return PyLong_FromLong(ns_cpu_count());
}

static PyObject *py_build_info(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "build_info", nargs, kwnames)) return NULL;
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

static PyMethodDef module_methods[] = {
    {"set_threads", FASTCALL_KW(py_set_threads),
     "set_threads(n) -> int\n\nResize the shared thread pool (0 = one per CPU, 1 = no threads); "
     "returns the new size."},
    {"get_threads", FASTCALL_KW(py_get_threads),
     "get_threads() -> int\n\nThreads in the pool (the pool is created on first use with "
     "$NEONSIGN_THREADS threads, or one per CPU)."},
    {"cpu_count", FASTCALL_KW(py_cpu_count), "cpu_count() -> int\n\nOnline CPUs."},
    {"build_info", FASTCALL_KW(py_build_info),
     "build_info() -> dict\n\nHow this module was built (arch, compiler, NumPy ABI)."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------------------------ */
/* Module definition                                                                            */
/* ------------------------------------------------------------------------------------------ */

static int module_exec(PyObject *module) {
    ns_state *st = ns_state_of_module(module);
    atomic_init(&st->resize_busy, 0);
    if (_import_array() < 0) return -1; /* NumPy's C API (ns_numpy_api) */
    st->errors = PyImport_ImportModule("neonsign.errors");
    if (!st->errors) return -1;
    if (PyModule_AddStringConstant(module, "__version__", NS_VERSION) < 0) return -1;
    PyMethodDef *tables[] = {ns_preprocess_methods, ns_profiler_methods, ns_engine_methods,
                             ns_trainops_methods};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (PyModule_AddFunctions(module, tables[i]) < 0) return -1;
    if (ns_preprocess_exec(module, st) < 0) return -1;
    if (ns_profiler_exec(module, st) < 0) return -1;
    if (ns_engine_exec(module, st) < 0) return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg) {
    ns_state *st = ns_state_of_module(module);
    if (!st) return 0;
    Py_VISIT(st->errors);
    Py_VISIT(st->net_type);
    Py_VISIT(st->recorder_type);
    Py_VISIT(st->span_type);
    return 0;
}

static int module_clear(PyObject *module) {
    ns_state *st = ns_state_of_module(module);
    if (!st) return 0;
    Py_CLEAR(st->errors);
    Py_CLEAR(st->net_type);
    Py_CLEAR(st->recorder_type);
    Py_CLEAR(st->span_type);
    return 0;
}

static void module_free(void *module) {
    ns_state *st = ns_state_of_module((PyObject *)module);
    if (!st) return;
    module_clear((PyObject *)module);
    ns_preprocess_free(st);
    /* Every Net and Recorder holds its type, which holds the module: no call can still be
     * running on the pool when the module is freed. */
    ns_pool_destroy(st->pool);
    st->pool = NULL;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
    {0, NULL},
};

struct PyModuleDef ns_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "neonsign._native",
    .m_doc = "neonsign's C core: preprocessing, the native inference engine, the profiler's span "
             "recorder and the thread pool.\nPrivate: use the documented API in neonsign.data, "
             "neonsign.engine and friends; typed in _native.pyi.",
    .m_size = sizeof(ns_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__native(void) {
    return PyModuleDef_Init(&ns_module_def);
}
