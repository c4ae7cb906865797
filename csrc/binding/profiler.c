/* Profiler: the span recorder (csrc/core/prof.c) as the Recorder and Span types, and the clocks.
 *
 * Spans are microsecond-scale calls made with the GIL held (a recorder is single-threaded); the
 * GIL is not released here because each call does a few hundred nanoseconds of work. Recorder
 * is subclassable: neonsign.profiler.Recorder extends it in Python. */
#include "binding.h"

#include <string.h>

#include "core/prof.h"

/* Each instance caches its module's state: it holds its type, which holds the module, so the
 * pointer stays valid for the instance's lifetime (and costs nothing on the hot path). */
typedef struct {
    PyObject_HEAD ns_prof *prof; /* NULL until __init__ ran */
    ns_state *st;                /* set by __init__ */
} RecorderObject;

typedef struct {
    PyObject_HEAD RecorderObject *rec;
    uint32_t id;
} SpanObject;

/* The state of a recorder, also before __init__ ran (then by a walk of its type's MRO). */
static ns_state *rec_state(PyObject *self) {
    ns_state *st = ((RecorderObject *)self)->st;
    return st ? st : ns_state_of_type(Py_TYPE(self));
}

static int recorder_ready(RecorderObject *self) {
    if (!self->prof) {
        PyErr_SetString(PyExc_RuntimeError, "Recorder.__init__ was not called");
        return 0;
    }
    return 1;
}

/* Name argument: a str (interned on the fly) or an int id from intern(). */
static int recorder_name_id(ns_state *st, RecorderObject *self, PyObject *obj, uint32_t *id) {
    ns_error err;
    ns_error_clear(&err);
    if (PyLong_Check(obj)) {
        long long v;
        if (!ns_conv_i64(st, obj, "span name id", &v)) return 0;
        if (v < 0 || (unsigned long long)v >= ns_prof_name_count(self->prof)) {
            ns_raise(st, "NeonsignValueError",
                     "unknown span name id %lld (the recorder has %zu names)", v,
                     ns_prof_name_count(self->prof));
            return 0;
        }
        *id = (uint32_t)v;
        return 1;
    }
    if (!PyUnicode_Check(obj)) {
        ns_raise(st, "NeonsignTypeError", "span name must be str or int, not %.100s",
                 Py_TYPE(obj)->tp_name);
        return 0;
    }
    const char *s;
    if (!ns_conv_str(st, obj, "span name", &s)) return 0;
    if (ns_prof_intern(self->prof, s, id, &err) != NS_OK) {
        ns_raise_error(st, &err);
        return 0;
    }
    return 1;
}

/* The parsed name argument of a one-name method (intern, begin, span); 0 on error. */
static int one_name(ns_state *st, const ns_argspec *spec, RecorderObject *self,
                    PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, uint32_t *id) {
    PyObject *a[1];
    return recorder_ready(self) && ns_parse_args(st, spec, args, nargs, kwnames, a) &&
           recorder_name_id(st, self, a[0], id);
}

/* ---- Recorder: construction ------------------------------------------------------------- */

static const char *const init_args[] = {"capacity", "enabled", NULL};
static const ns_argspec init_spec = NS_ARGSPEC("Recorder", init_args, 0);

static int recorder_init(PyObject *op, PyObject *args, PyObject *kwds) {
    RecorderObject *self = (RecorderObject *)op;
    ns_state *st = ns_state_of_type(Py_TYPE(op));
    PyObject *a[2];
    long long capacity = 0;
    int enabled = 1;
    if (!st || !ns_parse_tuple(st, &init_spec, args, kwds, a) ||
        (a[0] && !ns_conv_i64(st, a[0], "capacity", &capacity)) ||
        !ns_conv_bool(st, a[1], "enabled", &enabled))
        return -1;
    if (capacity < 0) {
        ns_raise(st, "NeonsignValueError", "capacity must be >= 0, got %lld", capacity);
        return -1;
    }
    ns_error err;
    ns_error_clear(&err);
    ns_prof *p = NULL;
    if (ns_prof_create(&p, (size_t)capacity, &err) != NS_OK) {
        ns_raise_error(st, &err);
        return -1;
    }
    ns_prof_set_enabled(p, enabled);
    ns_prof_destroy(self->prof);
    self->prof = p;
    self->st = st;
    return 0;
}

static void recorder_dealloc(PyObject *op) {
    RecorderObject *self = (RecorderObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    ns_prof_destroy(self->prof);
    tp->tp_free(op);
    Py_DECREF(tp); /* instances of heap types own a reference to their type */
}

/* ---- Recorder: spans -------------------------------------------------------------------- */

static const char *const name_args[] = {"name", NULL};
static const ns_argspec intern_spec = NS_ARGSPEC("Recorder.intern", name_args, 1);
static const ns_argspec begin_spec = NS_ARGSPEC("Recorder.begin", name_args, 1);
static const ns_argspec span_spec = NS_ARGSPEC("Recorder.span", name_args, 1);
static const ns_argspec end_spec = NS_ARGSPEC("Recorder.end", name_args, 0);

static PyObject *recorder_intern(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    uint32_t id;
    if (!one_name(rec_state(self), &intern_spec, (RecorderObject *)self, args, nargs, kwnames, &id))
        return NULL;
    return PyLong_FromUnsignedLong(id);
}

static PyObject *recorder_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    ns_state *st = rec_state(self);
    RecorderObject *rec = (RecorderObject *)self;
    uint32_t id;
    if (!one_name(st, &begin_spec, rec, args, nargs, kwnames, &id)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_begin(rec->prof, id, &err) != NS_OK) return ns_raise_error(st, &err);
    Py_RETURN_NONE;
}

static PyObject *recorder_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    ns_state *st = rec_state(self);
    RecorderObject *rec = (RecorderObject *)self;
    PyObject *a[1];
    uint32_t id = NS_PROF_ANY_NAME;
    if (!recorder_ready(rec) || !ns_parse_args(st, &end_spec, args, nargs, kwnames, a)) return NULL;
    if (a[0] && a[0] != Py_None && !recorder_name_id(st, rec, a[0], &id)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_end(rec->prof, id, &err) != NS_OK) return ns_raise_error(st, &err);
    Py_RETURN_NONE;
}

static PyObject *recorder_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    ns_state *st = rec_state(self);
    uint32_t id;
    if (!one_name(st, &span_spec, (RecorderObject *)self, args, nargs, kwnames, &id)) return NULL;
    SpanObject *span = PyObject_GC_New(SpanObject, st->span_type);
    if (!span) return NULL;
    span->rec = (RecorderObject *)Py_NewRef(self);
    span->id = id;
    PyObject_GC_Track(span);
    return (PyObject *)span;
}

static const char *const add_args[] = {"name", "duration_ns", "calls", "parent", "start_ns", NULL};
static const ns_argspec add_spec = NS_ARGSPEC("Recorder.add", add_args, 2);

static PyObject *recorder_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    ns_state *st = rec_state(self);
    RecorderObject *rec = (RecorderObject *)self;
    PyObject *a[5];
    unsigned long long duration, calls = 1, start = 0;
    long long parent = NS_PROF_NO_PARENT;
    uint32_t id;
    /* unsigned conversions reject negative values and non-integers */
    if (!recorder_ready(rec) || !ns_parse_args(st, &add_spec, args, nargs, kwnames, a) ||
        !ns_conv_u64(st, a[1], "duration_ns", &duration) ||
        (a[2] && !ns_conv_u64(st, a[2], "calls", &calls)) ||
        (a[3] && !ns_conv_i64(st, a[3], "parent", &parent)) ||
        (a[4] && !ns_conv_u64(st, a[4], "start_ns", &start)) ||
        !recorder_name_id(st, rec, a[0], &id))
        return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_add(rec->prof, id, (int64_t)parent, start, duration, calls, &err) != NS_OK)
        return ns_raise_error(st, &err);
    Py_RETURN_NONE;
}

/* ---- Recorder: results ------------------------------------------------------------------ */

static PyObject *recorder_reset(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(rec_state(self), "Recorder.reset", nargs, kwnames)) return NULL;
    RecorderObject *rec = (RecorderObject *)self;
    if (!recorder_ready(rec)) return NULL;
    ns_prof_reset(rec->prof);
    Py_RETURN_NONE;
}

static PyObject *recorder_names(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(rec_state(self), "Recorder.names", nargs, kwnames)) return NULL;
    RecorderObject *rec = (RecorderObject *)self;
    if (!recorder_ready(rec)) return NULL;
    size_t n = ns_prof_name_count(rec->prof);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *s = PyUnicode_FromString(ns_prof_name(rec->prof, (uint32_t)i));
        if (!s) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    return list;
}

enum {
    REC_NAME,
    REC_PARENT,
    REC_DEPTH,
    REC_CALLS,
    REC_START,
    REC_END,
    REC_DUR,
    REC_CYC,
    REC_COMPLETE,
    REC_NKEYS
};
static const char *const record_keys[REC_NKEYS] = {
    "name", "parent", "depth", "calls", "start_ns", "end_ns", "duration_ns", "cycles", "complete"};
static const int record_types[REC_NKEYS] = {NPY_INT32,  NPY_INT64,  NPY_INT32,
                                            NPY_UINT64, NPY_UINT64, NPY_UINT64,
                                            NPY_UINT64, NPY_UINT64, NPY_BOOL};

static void fill_records(const ns_prof_record *rec, size_t n, PyArrayObject **arr) {
    int32_t *name = PyArray_DATA(arr[REC_NAME]), *depth = PyArray_DATA(arr[REC_DEPTH]);
    int64_t *parent = PyArray_DATA(arr[REC_PARENT]);
    uint64_t *calls = PyArray_DATA(arr[REC_CALLS]), *start = PyArray_DATA(arr[REC_START]),
             *end = PyArray_DATA(arr[REC_END]), *dur = PyArray_DATA(arr[REC_DUR]),
             *cyc = PyArray_DATA(arr[REC_CYC]);
    npy_bool *complete = PyArray_DATA(arr[REC_COMPLETE]);
    for (size_t i = 0; i < n; i++) {
        const ns_prof_record *r = &rec[i];
        int done = r->end_ns != 0;
        name[i] = (int32_t)r->name;
        parent[i] = r->parent;
        depth[i] = (int32_t)r->depth;
        calls[i] = r->calls;
        start[i] = r->start_ns;
        end[i] = r->end_ns;
        dur[i] = (done && r->end_ns >= r->start_ns) ? r->end_ns - r->start_ns : 0;
        cyc[i] = (done && r->end_cycles >= r->start_cycles) ? r->end_cycles - r->start_cycles : 0;
        complete[i] = (npy_bool)done;
    }
}

/* records() -> dict of 1-D arrays, one entry per record, in begin order. */
static PyObject *recorder_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(rec_state(self), "Recorder.records", nargs, kwnames)) return NULL;
    RecorderObject *rec = (RecorderObject *)self;
    if (!recorder_ready(rec)) return NULL;
    size_t n = ns_prof_count(rec->prof);
    PyArrayObject *arr[REC_NKEYS] = {NULL};
    PyObject *out = NULL;
    npy_intp dims[1] = {(npy_intp)n};
    for (int k = 0; k < REC_NKEYS; k++)
        if (!(arr[k] = (PyArrayObject *)PyArray_SimpleNew(1, dims, record_types[k]))) goto done;
    fill_records(ns_prof_records(rec->prof), n, arr);
    out = PyDict_New();
    for (int k = 0; out && k < REC_NKEYS; k++)
        if (PyDict_SetItemString(out, record_keys[k], (PyObject *)arr[k]) < 0) Py_CLEAR(out);
done:
    for (int k = 0; k < REC_NKEYS; k++) Py_XDECREF(arr[k]);
    return out;
}

/* ---- Recorder: attributes --------------------------------------------------------------- */

static PyObject *recorder_get_enabled(PyObject *self, void *closure) {
    (void)closure;
    RecorderObject *rec = (RecorderObject *)self;
    return recorder_ready(rec) ? PyBool_FromLong(ns_prof_enabled(rec->prof)) : NULL;
}

static int recorder_set_enabled(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    RecorderObject *rec = (RecorderObject *)self;
    if (!recorder_ready(rec)) return -1;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete 'enabled'");
        return -1;
    }
    int on = 0;
    if (!ns_conv_bool(rec->st, value, "enabled", &on)) return -1;
    ns_prof_set_enabled(rec->prof, on);
    return 0;
}

static PyObject *recorder_get_count(PyObject *self, void *closure) {
    (void)closure;
    RecorderObject *rec = (RecorderObject *)self;
    return recorder_ready(rec) ? PyLong_FromSize_t(ns_prof_count(rec->prof)) : NULL;
}

static PyObject *recorder_get_open(PyObject *self, void *closure) {
    (void)closure;
    RecorderObject *rec = (RecorderObject *)self;
    return recorder_ready(rec) ? PyLong_FromSize_t(ns_prof_open_spans(rec->prof)) : NULL;
}

static PyObject *recorder_get_dropped(PyObject *self, void *closure) {
    (void)closure;
    RecorderObject *rec = (RecorderObject *)self;
    return recorder_ready(rec) ? PyLong_FromUnsignedLongLong(ns_prof_dropped(rec->prof)) : NULL;
}

static PyMethodDef recorder_methods[] = {
    {"intern", FASTCALL_KW(recorder_intern),
     "intern(name) -> int\n\nId of a span name (added if new); begin/end accept it instead of the "
     "str."},
    {"begin", FASTCALL_KW(recorder_begin), "begin(name)\n\nOpen a span (str or id)."},
    {"span", FASTCALL_KW(recorder_span),
     "span(name) -> Span\n\nA context manager: `with rec.span(\"conv1\"): ...` times its body."},
    {"end", FASTCALL_KW(recorder_end),
     "end(name=None)\n\nClose the innermost open span; if given, name must match it."},
    {"add", FASTCALL_KW(recorder_add),
     "add(name, duration_ns, calls=1, parent=-1, start_ns=0)\n\n"
     "Attach a span timed elsewhere (same monotonic clock) under record `parent`."},
    {"reset", FASTCALL_KW(recorder_reset), "reset()\n\nDrop all records and open spans."},
    {"names", FASTCALL_KW(recorder_names), "names() -> list[str]\n\nNames by id."},
    {"records", FASTCALL_KW(recorder_records),
     "records() -> dict[str, ndarray]\n\nOne entry per record in begin order: name (int32 id), "
     "parent (int64 record index, -1 at top level), depth (int32), calls (uint64), start_ns, "
     "end_ns, duration_ns, cycles (uint64; cycles is 0 when no cycle counter), complete (bool)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef recorder_getset[] = {
    {"enabled", recorder_get_enabled, recorder_set_enabled,
     "Whether spans are recorded (while off, begin/end cost one integer update).", NULL},
    {"count", recorder_get_count, NULL, "Records held.", NULL},
    {"open_spans", recorder_get_open, NULL, "Recorded spans begun and not yet ended.", NULL},
    {"dropped", recorder_get_dropped, NULL, "Spans not stored because the buffer was full.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot recorder_slots[] = {
    {Py_tp_doc, "Recorder(capacity=0, enabled=True)\n\nNested named spans timed in C with the "
                "monotonic ns clock and the CPU cycle counter. Not thread-safe."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, recorder_init},
    {Py_tp_dealloc, recorder_dealloc},
    {Py_tp_methods, recorder_methods},
    {Py_tp_getset, recorder_getset},
    {0, NULL},
};

static PyType_Spec recorder_spec = {
    .name = "neonsign._native.Recorder",
    .basicsize = sizeof(RecorderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = recorder_slots,
};

/* ---- Span: the context manager Recorder.span(name) returns -------------------------------- */

/* __enter__/__exit__ call begin/end in C so that a `with` block costs about as little as a
 * begin/end pair. */
static PyObject *span_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    (void)args;
    ns_state *st = rec_state(self);
    SpanObject *span = (SpanObject *)self;
    if (!ns_no_args(st, "Span.__enter__", nargs, kwnames)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_begin(span->rec->prof, span->id, &err) != NS_OK) return ns_raise_error(st, &err);
    return Py_NewRef(self);
}

static const char *const exit_args[] = {"exc_type", "exc", "traceback", NULL};
static const ns_argspec exit_spec = NS_ARGSPEC("Span.__exit__", exit_args, 0);

static PyObject *span_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    ns_state *st = rec_state(self);
    SpanObject *span = (SpanObject *)self;
    PyObject *a[3];
    if (!ns_parse_args(st, &exit_spec, args, nargs, kwnames, a)) return NULL;
    ns_error err;
    ns_error_clear(&err);
    if (ns_prof_end(span->rec->prof, span->id, &err) != NS_OK) return ns_raise_error(st, &err);
    Py_RETURN_FALSE; /* never swallow the body's exception */
}

static int span_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((SpanObject *)self)->rec);
    return 0;
}

static int span_clear(PyObject *self) {
    Py_CLEAR(((SpanObject *)self)->rec);
    return 0;
}

static void span_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    span_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef span_methods[] = {
    {"__enter__", FASTCALL_KW(span_enter), "Open the span."},
    {"__exit__", FASTCALL_KW(span_exit), "Close the span (never suppresses the exception)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot span_slots[] = {
    {Py_tp_doc, "A span of a Recorder, as a context manager (made by Recorder.span)."},
    {Py_tp_dealloc, span_dealloc},
    {Py_tp_traverse, span_traverse},
    {Py_tp_clear, span_clear},
    {Py_tp_methods, span_methods},
    {0, NULL},
};

static PyType_Spec span_spec_type = {
    .name = "neonsign._native.Span",
    .basicsize = sizeof(SpanObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = span_slots,
};

/* ---- clocks ------------------------------------------------------------------------------ */

static PyObject *py_prof_now_ns(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "prof_now_ns", nargs, kwnames)) return NULL;
    return PyLong_FromUnsignedLongLong(ns_now_ns());
}

static PyObject *py_prof_cycles(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "prof_cycles", nargs, kwnames)) return NULL;
    return PyLong_FromUnsignedLongLong(ns_cycles_now());
}

static PyObject *py_prof_cycles_hz(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    (void)args;
    if (!ns_no_args(ns_state_of_module(module), "prof_cycles_hz", nargs, kwnames)) return NULL;
    if (!ns_cycles_available()) return PyFloat_FromDouble(0.0);
    double hz;
    Py_BEGIN_ALLOW_THREADS hz = ns_cycles_hz(0);
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(hz);
}

PyMethodDef ns_profiler_methods[] = {
    {"prof_now_ns", FASTCALL_KW(py_prof_now_ns),
     "prof_now_ns() -> int\n\nThe profiler's monotonic clock in nanoseconds."},
    {"prof_cycles", FASTCALL_KW(py_prof_cycles),
     "prof_cycles() -> int\n\nThe CPU cycle counter (0 if user code cannot read one)."},
    {"prof_cycles_hz", FASTCALL_KW(py_prof_cycles_hz),
     "prof_cycles_hz() -> float\n\nCycle counter frequency in Hz (x86: measured over ~2 ms; "
     "AArch64: cntfrq_el0; 0.0 if unavailable)."},
    {NULL, NULL, 0, NULL},
};

int ns_profiler_exec(PyObject *module, ns_state *st) {
    if (!(st->recorder_type = ns_add_type(module, &recorder_spec))) return -1;
    if (!(st->span_type = ns_add_type(module, &span_spec_type))) return -1;
    return 0;
}
