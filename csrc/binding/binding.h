/* neonsign._native: what the files of the binding share.
 *
 * csrc/binding/ is the only place that includes Python.h and NumPy; csrc/core stays pure C.
 * The binding converts Python objects to plain C buffers, validates dtype/shape/contiguity
 * before any pointer reaches csrc/core, releases the GIL around work that takes more than
 * microseconds, and raises neonsign.errors classes.
 *
 *   module.c      the one PyModuleDef (multi-phase init), the module state, the facts shared
 *                 with Python (KERNELS, LAYER_NAMES, WEIGHT_SHAPES, ...), the thread pool
 *   convert.c     argument parsing, conversions and checks, ns_error -> neonsign.errors
 *   preprocess.c  PPM, CSV, resize, normalise, the whole-split loader
 *   profiler.c    Recorder / Span (the span recorder) and the clocks
 *   engine.c      Net (TrafficSignNet inference), kernels and per-layer test entry points
 *
 * Each subsystem file exports a method table (ns_<subsystem>_methods, added to the module by
 * module.c's exec slot) and an exec hook that adds its types and constants.
 *
 * Module state, not C globals: every piece of state (the thread pool, the neonsign.errors
 * module, the type objects, the resize scratch) lives in an ns_state reached from the module
 * (module functions: PyModule_GetState) or from a type (constructors: ns_state_of_type, which
 * walks the MRO so that Python subclasses such as profiler.Recorder work). Instances cache the
 * pointer when they are built (they hold their type, which holds the module). The types are
 * heap types made with PyType_FromModuleAndSpec. The one process-wide pointer is NumPy's C-API table (PY_ARRAY_UNIQUE_SYMBOL below).
 *
 * ARGUMENT PARSING, the one convention of the binding:
 *   - every function and method is METH_FASTCALL | METH_KEYWORDS (FASTCALL_KW) and binds its
 *     arguments with ns_parse_args() against a static ns_argspec: every parameter is
 *     positional-or-keyword, the first `required` are mandatory, the others are NULL when
 *     omitted;
 *   - the parser only binds objects (borrowed references); the typed converters below
 *     (ns_conv_*, ns_check_*) turn them into C values and raise neonsign.errors classes that
 *     name the parameter;
 *   - a function without parameters is declared the same way and checks with ns_no_args(), so
 *     that every arity error is a NeonsignTypeError too;
 *   - the slots CPython calls with a tuple and a dict (Net.__new__, Recorder.__init__) use
 *     ns_parse_tuple(), the same binder.
 * Methods do not use METH_METHOD (PEP 573's defining class): CPython 3.11+ specialises calls of
 * FASTCALL method descriptors but not of METH_METHOD ones (a disabled Recorder.begin(id) cost
 * 38 ns of CPU with it, 18 ns without, 16 ns as the former METH_O function); the state comes
 * from the instance instead, and ns_parse_args is inline for positional calls.
 */
#ifndef NS_BINDING_H
#define NS_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API  NPY_1_7_API_VERSION
#define NPY_TARGET_VERSION     NPY_1_22_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL ns_numpy_api
#ifndef NS_BINDING_IMPORTS_NUMPY
#define NO_IMPORT_ARRAY /* only module.c calls import_array(); the others share its table */
#endif
#include <numpy/arrayobject.h>

#include <stdatomic.h>
#include <stddef.h>

#include "core/common.h"
#include "core/pool.h"
#include "core/resize.h"

/* ---- module state ------------------------------------------------------------------------ */

typedef struct ns_state {
    PyObject *errors;            /* the neonsign.errors module */
    PyTypeObject *net_type;      /* neonsign._native.Net */
    PyTypeObject *recorder_type; /* neonsign._native.Recorder */
    PyTypeObject *span_type;     /* neonsign._native.Span */
    /* The shared thread pool, created on first use (ns_state_pool) so that a bad
     * NEONSIGN_THREADS cannot break `import neonsign`. Created and resized with the GIL held;
     * used with it released. */
    ns_pool *pool;
    /* One warm resize scratch for single-image resizes (see preprocess.c), taken with a
     * try-lock because the GIL is released while resizing. */
    ns_resize_scratch resize_scratch;
    atomic_int resize_busy;
} ns_state;

extern struct PyModuleDef ns_module_def;

static inline ns_state *ns_state_of_module(PyObject *module) {
    return (ns_state *)PyModule_GetState(module);
}

/* State of the module that defined `tp` or one of its bases (instances of Python subclasses
 * included). Sets a TypeError and returns NULL if there is none. */
ns_state *ns_state_of_type(PyTypeObject *tp);

/* A heap type made from spec for `module` (PyType_FromModuleAndSpec), added to the module under
 * its short name. A new reference (kept in the state), or NULL. */
PyTypeObject *ns_add_type(PyObject *module, PyType_Spec *spec);

/* The pool, created on first call with NEONSIGN_THREADS threads (unset or empty: one per CPU).
 * NULL with neonsign.errors.ConfigError set if the variable is not an integer in
 * [0, NS_POOL_MAX_THREADS]; NULL with an error set if the pool cannot be created. */
ns_pool *ns_state_pool(ns_state *st);

/* ---- argument parsing (see the convention above) ---------------------------------------- */

/* A method table entry (module function or method): the one calling convention. */
#define FASTCALL_KW(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

typedef struct ns_argspec {
    const char *fname;        /* as the caller sees it, for messages: "Net.forward" */
    const char *const *names; /* parameter names, NULL-terminated */
    int required;             /* how many leading parameters are mandatory */
    int count;                /* how many parameters */
} ns_argspec;

/* A static ns_argspec from a NULL-terminated array of names (its size gives the count). */
#define NS_ARGSPEC(fname, names, required)                                                         \
    {(fname), (names), (required), (int)(sizeof(names) / sizeof((names)[0])) - 1}

int ns_parse_args_slow(ns_state *st, const ns_argspec *spec, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames, PyObject **out);

/* Bind FASTCALL arguments to out[0..spec->count) (borrowed; NULL if omitted). 0 on error.
 * Inline for the common call with positional arguments only (the profiler's hot path). */
static inline int ns_parse_args(ns_state *st, const ns_argspec *spec, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames, PyObject **out) {
    if (kwnames || nargs < spec->required || nargs > spec->count)
        return ns_parse_args_slow(st, spec, args, nargs, kwnames, out);
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    for (Py_ssize_t i = nargs; i < spec->count; i++) out[i] = NULL;
    return 1;
}

/* A function without parameters: 1 if called without arguments, else 0 with
 * NeonsignTypeError. */
int ns_no_args_error(ns_state *st, const char *fname, Py_ssize_t nargs, PyObject *kwnames);
static inline int ns_no_args(ns_state *st, const char *fname, Py_ssize_t nargs, PyObject *kwnames) {
    if (nargs == 0 && (!kwnames || PyTuple_GET_SIZE(kwnames) == 0)) return 1;
    return ns_no_args_error(st, fname, nargs, kwnames);
}

/* ns_parse_args for a tuple and an optional dict (tp_new / tp_init slots). */
int ns_parse_tuple(ns_state *st, const ns_argspec *spec, PyObject *args, PyObject *kwds,
                   PyObject **out);

/* ---- errors ------------------------------------------------------------------------------ */

/* Raise neonsign.errors.<cls> with a printf-style message (PyUnicode_FromFormat codes).
 * Always returns NULL. */
PyObject *ns_raise(ns_state *st, const char *cls, const char *fmt, ...);
/* Raise the neonsign.errors class for err: NS_ERR_INVALID NeonsignValueError, NS_ERR_FORMAT
 * DecodeError (or `format_cls`, e.g. "AnnotationError"), NS_ERR_LIMIT ResourceLimitError,
 * NS_ERR_UNSUPPORTED UnsupportedError, NS_ERR_IO / NS_ERR_NOTFOUND
 * errors.os_error_class(errno)(msg, errno, filename) (NeonsignFileNotFoundError,
 * NeonsignPermissionError, DiskFullError, ...), NS_ERR_NOMEM MemoryError. `filename` may be
 * NULL. Always returns NULL. */
PyObject *ns_raise_error_ex(ns_state *st, const ns_error *err, const char *format_cls,
                            const char *filename);
static inline PyObject *ns_raise_error(ns_state *st, const ns_error *err) {
    return ns_raise_error_ex(st, err, NULL, NULL);
}
/* Turn a pending built-in TypeError / OverflowError / ValueError (from a CPython or NumPy
 * conversion) into NeonsignTypeError / NeonsignOverflowError / NeonsignValueError, prefixing the
 * message with `what` ("threads: ..."), the original as __cause__. Other exceptions
 * (MemoryError, neonsign errors) are left as they are. */
void ns_translate_error(ns_state *st, const char *what);

/* ---- converters: 1 on success, 0 with a neonsign.errors exception set ------------------- */

/* An int >= minimum as size_t ("height", "max_pixels"). */
int ns_conv_size(ns_state *st, PyObject *obj, const char *name, size_t minimum, size_t *out);
/* Any int that fits a C long long / unsigned long long (no floats, no negatives for u64). */
int ns_conv_i64(ns_state *st, PyObject *obj, const char *name, long long *out);
int ns_conv_u64(ns_state *st, PyObject *obj, const char *name, unsigned long long *out);
/* Truth value of any object (like the "p" format); NULL (omitted) leaves *out unchanged. */
int ns_conv_bool(ns_state *st, PyObject *obj, const char *name, int *out);
/* threads: None or omitted -> 0 (the whole pool), else an int in [0, NS_POOL_MAX_THREADS]. */
int ns_conv_threads(ns_state *st, PyObject *obj, int *out);
/* A sequence of 3 numbers (per-channel mean / std). */
int ns_conv_triple(ns_state *st, PyObject *obj, const char *name, float out[3]);
/* A str without NUL characters; *out points into obj (valid while obj lives). */
int ns_conv_str(ns_state *st, PyObject *obj, const char *name, const char **out);
/* A kernel name: None or omitted -> NULL ($NEONSIGN_KERNEL or the best), else a str. */
int ns_conv_kernel_name(ns_state *st, PyObject *obj, const char **out);
/* str, bytes or os.PathLike -> a new bytes object in the file-system encoding. */
int ns_conv_path(ns_state *st, PyObject *obj, const char *name, PyObject **out);
/* A bytes-like object (simple contiguous buffer); release with PyBuffer_Release. */
int ns_conv_buffer(ns_state *st, PyObject *obj, const char *name, Py_buffer *view);

/* A C-contiguous uint8 ndarray of `ndim` dimensions, the last of size 3 (RGB). Borrowed. */
PyArrayObject *ns_check_rgb(ns_state *st, PyObject *obj, const char *name, int ndim);
/* A float32, C-contiguous, aligned ndarray of exactly `ndim` dims with the given shape (-1: any
 * size >= 1). Raises neonsign.errors.<cls> naming `what` otherwise (NeonsignTypeError if obj is
 * not an ndarray at all). Borrowed. */
PyArrayObject *ns_check_f32(ns_state *st, PyObject *obj, const char *what, int ndim,
                            const npy_intp *shape, const char *cls);
/* The same for any dtype (NPY_* typenum), and writeable when `writeable`. Borrowed. */
PyArrayObject *ns_check_array(ns_state *st, PyObject *obj, const char *what, int typenum, int ndim,
                              const npy_intp *shape, int writeable, const char *cls);

/* A (kernel-independent) tuple of str from a C array. */
PyObject *ns_str_tuple(const char *const *items, size_t n);

/* ---- subsystems -------------------------------------------------------------------------- */

/* Method table entries (module-level functions) of each subsystem. */
extern PyMethodDef ns_core_methods[];
extern PyMethodDef ns_preprocess_methods[];
extern PyMethodDef ns_profiler_methods[];
extern PyMethodDef ns_engine_methods[];
extern PyMethodDef ns_trainops_methods[];

/* Exec hooks: add the subsystem's types and constants to the module. -1 on error. */
int ns_preprocess_exec(PyObject *module, ns_state *st);
int ns_profiler_exec(PyObject *module, ns_state *st);
int ns_engine_exec(PyObject *module, ns_state *st);
/* Cleanup of the preprocessing state (m_free). */
void ns_preprocess_free(ns_state *st);

#endif /* NS_BINDING_H */
