/* funcprof/engine.c - deterministic function profiler: its tables, the
 * `pyrometer.Profile` type and cProfile's stats dict.
 *
 * Owns the per-thread state (an open-addressing table of functions keyed by
 * code object or PyMethodDef pointer, a table of caller->callee edges, a
 * call stack), the clock calibration, and the conversion of all that into
 * cProfile's stats dict. The events come from the backend
 * (funcprof/backend.h: backend_trace311.c or backend_monitoring.c);
 * rendering and the magics live in funcprof/magic.c.
 *
 * Counting follows cProfile: a call is counted when it returns; a call made
 * while the same function (or the same caller->callee edge) is already on
 * the thread's stack is a recursive call, and its time is not added to
 * cumtime again; each resumption of a generator or coroutine is a call.
 */
#include "funcprof/backend.h"
#include "module.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <marshal.h>

#if FP_HAVE_TSC
#include <cpuid.h>
#endif

int funcprof_use_tsc;       /* set once at module exec */
static double fp_cal_ns;    /* best calibration so far: ns over ticks; */
static double fp_cal_ticks; /* protected by the GIL */

static int tsc_is_invariant(void)
{
#if FP_HAVE_TSC
    unsigned int a, b, c, d;
    const char *env = getenv("PYROMETER_CLOCK");
    if (env != NULL && strcmp(env, "monotonic") == 0)
        return 0;
    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007)
        return 0;
    if (!__get_cpuid(0x80000007, &a, &b, &c, &d))
        return 0;
    return (d >> 8) & 1;
#else
    return 0;
#endif
}

/* Protected by the GIL. */
fp_profile *funcprof_active;
static PyTypeObject *fp_thread_type;  /* owned */
static PyTypeObject *fp_profile_type; /* owned */

static int table_grow(fp_slot **slots, uint32_t *mask, uint32_t used)
{
    uint32_t cap = *mask ? (*mask + 1) * 2 : 256;
    if (used * 2 < (*mask + 1) && *slots != NULL)
        return 0;
    fp_slot *ns = calloc(cap, sizeof(fp_slot));
    if (ns == NULL)
        return -1;
    if (*slots != NULL) {
        for (uint32_t i = 0; i <= *mask; i++) {
            fp_slot s = (*slots)[i];
            if (s.idx == 0)
                continue;
            uint32_t j = fp_hash64(s.key) & (cap - 1);
            while (ns[j].idx != 0)
                j = (j + 1) & (cap - 1);
            ns[j] = s;
        }
        free(*slots);
    }
    *slots = ns;
    *mask = cap - 1;
    return 0;
}

uint32_t funcprof_new_entry(fp_thread *t, void *key, PyObject *code, const char *cname,
                            PyObject *ctype, PyObject *cmodule)
{
    if (t->n_entries + 1 >= (t->emask + 1) / 2 &&
        table_grow(&t->eslots, &t->emask, t->n_entries + 1) < 0)
        return NO_IDX;
    if (t->n_entries == t->cap_entries) {
        uint32_t cap = t->cap_entries ? t->cap_entries * 2 : 128;
        fp_entry *ne = realloc(t->entries, cap * sizeof(fp_entry));
        if (ne == NULL)
            return NO_IDX;
        t->entries = ne;
        t->cap_entries = cap;
    }
    uint32_t idx = t->n_entries++;
    fp_entry *e = &t->entries[idx];
    memset(e, 0, sizeof *e);
    e->last_callee = NO_IDX;
    e->key = key;
    e->code = Py_XNewRef(code);
    e->cname = cname;
    e->ctype = Py_XNewRef(ctype);
    e->cmodule = Py_XNewRef(cmodule);
    uint32_t j = fp_hash64((uint64_t)(uintptr_t)key) & t->emask;
    while (t->eslots[j].idx != 0)
        j = (j + 1) & t->emask;
    t->eslots[j].key = (uint64_t)(uintptr_t)key;
    t->eslots[j].idx = idx + 1;
    return idx;
}

uint32_t funcprof_new_edge(fp_thread *t, uint64_t key, uint32_t caller, uint32_t callee)
{
    if (t->n_edges + 1 >= (t->xmask + 1) / 2 &&
        table_grow(&t->xslots, &t->xmask, t->n_edges + 1) < 0)
        return NO_IDX;
    if (t->n_edges == t->cap_edges) {
        uint32_t cap = t->cap_edges ? t->cap_edges * 2 : 256;
        fp_edge *ne = realloc(t->edges, cap * sizeof(fp_edge));
        if (ne == NULL)
            return NO_IDX;
        t->edges = ne;
        t->cap_edges = cap;
    }
    uint32_t idx = t->n_edges++;
    fp_edge *x = &t->edges[idx];
    memset(x, 0, sizeof *x);
    x->caller = caller;
    x->callee = callee;
    uint32_t j = fp_hash64(key) & t->xmask;
    while (t->xslots[j].idx != 0)
        j = (j + 1) & t->xmask;
    t->xslots[j].key = key;
    t->xslots[j].idx = idx + 1;
    return idx;
}

int funcprof_grow_stack(fp_thread *t)
{
    uint32_t cap = t->cap_stack ? t->cap_stack * 2 : 256;
    fp_frame *ns = realloc(t->stack, cap * sizeof(fp_frame));
    if (ns == NULL)
        return -1;
    t->stack = ns;
    t->cap_stack = cap;
    return 0;
}

/* ---- the thread object type ---------------------------------------------- */

static void thread_release_tables(fp_thread *t)
{
    for (uint32_t i = 0; i < t->n_entries; i++) {
        Py_CLEAR(t->entries[i].code);
        Py_CLEAR(t->entries[i].ctype);
        Py_CLEAR(t->entries[i].cmodule);
    }
    free(t->entries);
    free(t->eslots);
    free(t->edges);
    free(t->xslots);
    free(t->stack);
    t->entries = NULL;
    t->eslots = t->xslots = NULL;
    t->edges = NULL;
    t->stack = NULL;
    t->n_entries = t->cap_entries = t->emask = 0;
    t->n_edges = t->cap_edges = t->xmask = 0;
    t->depth = t->cap_stack = 0;
    t->last_key = NULL;
}

static void thread_dealloc(fp_thread *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    thread_release_tables(t);
    Py_CLEAR(t->saved_obj);
    tp->tp_free((PyObject *)t);
    Py_DECREF(tp);
}

static PyObject *thread_get_profile(fp_thread *t, void *closure)
{
    return Py_NewRef(t->prof ? (PyObject *)t->prof : Py_None);
}

static PyGetSetDef thread_getset[] = {
    {"profile", (getter)thread_get_profile, NULL,
     "The pyrometer.Profile this hook records into (None once it stopped); "
     "sys.getprofile().profile.disable() stops it.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot thread_slots[] = {
    {Py_tp_dealloc, thread_dealloc},
    {Py_tp_getset, thread_getset},
    {Py_tp_doc, "Per-thread state of a pyrometer.Profile (internal)."},
    {0, NULL},
};

static PyType_Spec thread_spec = {
    .name = "pyrometer._ProfileThread",
    .basicsize = sizeof(fp_thread),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = thread_slots,
};

/* Returns a new thread object with empty tables, or NULL with an exception. */
static fp_thread *thread_new(fp_profile *p, PyThreadState *ts)
{
    fp_thread *t = PyObject_New(fp_thread, fp_thread_type);
    if (t == NULL)
        return NULL;
    memset((char *)t + sizeof(PyObject), 0, sizeof(fp_thread) - sizeof(PyObject));
    t->builtins = p->builtins;
    t->tstate = ts;
    if (table_grow(&t->eslots, &t->emask, 0) < 0 || table_grow(&t->xslots, &t->xmask, 0) < 0 ||
        funcprof_grow_stack(t) < 0) {
        Py_DECREF(t);
        PyErr_NoMemory();
        return NULL;
    }
    return t;
}
fp_thread *funcprof_thread_attach(fp_profile *p, PyThreadState *ts)
{
    fp_thread *t = NULL;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *c = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        if (c->tstate == ts && c->prof == NULL) {
            t = c;
            break;
        }
    }
    if (t == NULL) {
        t = thread_new(p, ts);
        if (t == NULL)
            return NULL;
        int rc = PyList_Append(p->thread_list, (PyObject *)t);
        Py_DECREF(t);
        if (rc < 0)
            return NULL;
    }
    t->prof = p;
    t->off = 0;
    t->depth = 0;
    return t;
}

/* ---- the Profile type ---------------------------------------------------- */

int funcprof_is_active(void)
{
    return funcprof_active != NULL;
}

int funcprof_enable(PyObject *self)
{
    fp_profile *p = (fp_profile *)self;

    if (p->enabled)
        return 0;
    if (funcprof_active != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another pyrometer profile is already running in this process; "
                        "disable it first");
        return -1;
    }
    p->failed = 0;
    p->enabled = 1;
    funcprof_active = p; /* a strong reference while enabled, as a tstate holds cProfile's */
    Py_INCREF(p);
    if (funcprof_backend_start(p) < 0) {
        Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
        for (Py_ssize_t i = 0; i < n; i++)
            ((fp_thread *)PyList_GET_ITEM(p->thread_list, i))->prof = NULL;
        p->enabled = 0;
        funcprof_active = NULL;
        Py_DECREF(p);
        return -1;
    }
    p->start_ns = fp_mono_ns();
    p->start_ticks = fp_now();
    return 0;
}

/* Stops p; drops funcprof_active's reference to p when drop_ref (the caller
 * must still hold one). */
static int disable_impl(fp_profile *p, int drop_ref)
{
    PyObject *exc, *val, *tb;

    if (!p->enabled)
        return 0;
    int64_t now = fp_now();
    int64_t now_ns = fp_mono_ns();
    PyErr_Fetch(&exc, &val, &tb);
    funcprof_backend_stop(p);
    /* Calls still open are charged up to now, as cProfile does. */
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        while (t->depth > 0)
            fp_pop(t, now);
        t->prof = NULL;
    }
    p->run_ticks += now - p->start_ticks;
    p->run_ns += now_ns - p->start_ns;
    p->enabled = 0;
    funcprof_active = NULL;
    if (drop_ref)
        Py_DECREF(p);
    if (exc == NULL && p->failed) {
        p->failed = 0;
        PyErr_SetString(PyExc_MemoryError,
                        "pyrometer: the profiler could not grow its tables; the stats are partial");
        return -1;
    }
    PyErr_Restore(exc, val, tb);
    return 0;
}

int funcprof_disable(PyObject *self)
{
    return disable_impl((fp_profile *)self, 1);
}

/* Seconds per tick. */
static double seconds_per_tick(fp_profile *p)
{
    if (!funcprof_use_tsc)
        return 1e-9;
    if (p->run_ns >= 1000000 && p->run_ticks > 0) {
        if ((double)p->run_ns > fp_cal_ns) {
            fp_cal_ns = (double)p->run_ns;
            fp_cal_ticks = (double)p->run_ticks;
        }
        return (double)p->run_ns / (double)p->run_ticks * 1e-9;
    }
    if (fp_cal_ticks <= 0) {
        /* A short run: measure the tick rate once over 2 ms. */
        int64_t n0 = fp_mono_ns(), t0 = fp_now(), n1, t1;
        do {
            n1 = fp_mono_ns();
            t1 = fp_now();
        } while (n1 - n0 < 2000000);
        fp_cal_ns = (double)(n1 - n0);
        fp_cal_ticks = (double)(t1 - t0);
    }
    return fp_cal_ns / fp_cal_ticks * 1e-9;
}

/* What _PyType_Lookup finds, through public API: name in the dict of the
 * first class along type's MRO that has it. Returns a new reference, or
 * NULL (with an exception set only if a lookup failed). */
static PyObject *type_lookup(PyTypeObject *type, PyObject *name)
{
    PyObject *mro = type->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *base = PyTuple_GET_ITEM(mro, i);
        if (!PyType_Check(base))
            continue;
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *dict = PyType_GetDict((PyTypeObject *)base);
#else
        PyObject *dict = Py_XNewRef(((PyTypeObject *)base)->tp_dict);
#endif
        if (dict == NULL)
            continue;
        PyObject *v = PyDict_GetItemWithError(dict, name);
        Py_XINCREF(v);
        Py_DECREF(dict);
        if (v != NULL || PyErr_Occurred())
            return v;
    }
    return NULL;
}

/* Returns a new str naming a C function as cProfile does:
 * "<built-in method builtins.len>", "<method 'append' of 'list' objects>". */
static PyObject *c_function_name(const fp_entry *e)
{
    if (e->ctype == NULL) {
        PyObject *modname = NULL, *res;
        if (e->cmodule != NULL && PyUnicode_Check(e->cmodule)) {
            modname = Py_NewRef(e->cmodule);
        } else if (e->cmodule != NULL && PyModule_Check(e->cmodule)) {
            modname = PyModule_GetNameObject(e->cmodule);
            if (modname == NULL)
                PyErr_Clear();
        }
        if (modname != NULL && PyUnicode_CompareWithASCIIString(modname, "builtins") != 0)
            res = PyUnicode_FromFormat("<%U.%s>", modname, e->cname);
        else
            res = PyUnicode_FromFormat("<%s>", e->cname);
        Py_XDECREF(modname);
        return res;
    }
    PyObject *name = PyUnicode_FromString(e->cname);
    if (name == NULL)
        return NULL;
    PyObject *descr = type_lookup((PyTypeObject *)e->ctype, name);
    Py_DECREF(name);
    if (descr != NULL) {
        PyObject *r = PyObject_Repr(descr);
        Py_DECREF(descr);
        if (r != NULL)
            return r;
        PyErr_Clear();
    }
    if (e->cmodule != NULL && PyUnicode_Check(e->cmodule))
        return PyUnicode_FromFormat("<built-in method %U.%s>", e->cmodule, e->cname);
    return PyUnicode_FromFormat("<built-in method %s>", e->cname);
}

/* Returns a new (file, line, name) label for an entry. */
static PyObject *entry_label(const fp_entry *e)
{
    if (e->code != NULL) {
        PyCodeObject *co = (PyCodeObject *)e->code;
        return Py_BuildValue("(OiO)", co->co_filename, co->co_firstlineno, co->co_name);
    }
    PyObject *name = c_function_name(e);
    if (name == NULL)
        return NULL;
    PyObject *r = Py_BuildValue("(siN)", "~", 0, name);
    return r;
}

typedef struct {
    uint64_t nc, cc;
    double tt, ct;
    PyObject *callers; /* owned dict */
} fp_acc;

/* Adds (nc, cc, tt, ct) to callers[key]. Returns 0 or -1. */
static int add_caller(PyObject *callers, PyObject *key, uint64_t nc, uint64_t cc, double tt,
                      double ct)
{
    PyObject *prev = PyDict_GetItemWithError(callers, key);
    if (prev == NULL && PyErr_Occurred())
        return -1;
    if (prev != NULL) {
        nc += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(prev, 0));
        cc += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(prev, 1));
        tt += PyFloat_AsDouble(PyTuple_GET_ITEM(prev, 2));
        ct += PyFloat_AsDouble(PyTuple_GET_ITEM(prev, 3));
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *v = Py_BuildValue("(KKdd)", (unsigned long long)nc, (unsigned long long)cc, tt, ct);
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItem(callers, key, v);
    Py_DECREF(v);
    return rc;
}

PyObject *funcprof_snapshot(PyObject *self)
{
    fp_profile *p = (fp_profile *)self;
    PyObject *index = NULL, *stats = NULL, *labels = NULL;
    fp_acc *acc = NULL;
    size_t n_acc = 0, cap_acc = 0;
    double spt = seconds_per_tick(p);

    index = PyDict_New(); /* label -> position in acc */
    if (index == NULL)
        goto error;
    Py_ssize_t nthreads = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t ti = 0; ti < nthreads; ti++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, ti);
        labels = PyList_New(t->n_entries);
        if (labels == NULL)
            goto error;
        for (uint32_t i = 0; i < t->n_entries; i++) {
            const fp_entry *e = &t->entries[i];
            PyObject *label = entry_label(e);
            if (label == NULL)
                goto error;
            PyList_SET_ITEM(labels, i, label);
            if (e->nc == 0)
                continue; /* seen, but never returned while profiling */
            PyObject *pos = PyDict_GetItemWithError(index, label);
            size_t k;
            if (pos == NULL) {
                if (PyErr_Occurred())
                    goto error;
                if (n_acc == cap_acc) {
                    size_t cap = cap_acc ? cap_acc * 2 : 64;
                    fp_acc *na = realloc(acc, cap * sizeof *na);
                    if (na == NULL) {
                        PyErr_NoMemory();
                        goto error;
                    }
                    acc = na;
                    cap_acc = cap;
                }
                k = n_acc;
                memset(&acc[k], 0, sizeof acc[k]);
                acc[k].callers = PyDict_New();
                if (acc[k].callers == NULL)
                    goto error;
                n_acc++;
                PyObject *kobj = PyLong_FromSize_t(k);
                if (kobj == NULL || PyDict_SetItem(index, label, kobj) < 0) {
                    Py_XDECREF(kobj);
                    goto error;
                }
                Py_DECREF(kobj);
            } else {
                k = PyLong_AsSize_t(pos);
            }
            acc[k].nc += e->nc;
            acc[k].cc += e->nc - e->nrec;
            acc[k].tt += (double)e->tt * spt;
            acc[k].ct += (double)e->ct * spt;
        }
        for (uint32_t i = 0; i < t->n_edges; i++) {
            const fp_edge *x = &t->edges[i];
            if (x->nc == 0)
                continue;
            PyObject *callee = PyList_GET_ITEM(labels, x->callee);
            PyObject *caller = PyList_GET_ITEM(labels, x->caller);
            PyObject *pos = PyDict_GetItemWithError(index, callee);
            if (pos == NULL) {
                if (PyErr_Occurred())
                    goto error;
                continue;
            }
            size_t k = PyLong_AsSize_t(pos);
            if (add_caller(acc[k].callers, caller, x->nc, x->nc - x->nrec, (double)x->tt * spt,
                           (double)x->ct * spt) < 0)
                goto error;
        }
        Py_CLEAR(labels);
    }
    stats = PyDict_New();
    if (stats == NULL)
        goto error;
    PyObject *label, *pos;
    Py_ssize_t it = 0;
    while (PyDict_Next(index, &it, &label, &pos)) {
        size_t k = PyLong_AsSize_t(pos);
        PyObject *v =
            Py_BuildValue("(KKddO)", (unsigned long long)acc[k].cc, (unsigned long long)acc[k].nc,
                          acc[k].tt, acc[k].ct, acc[k].callers);
        if (v == NULL || PyDict_SetItem(stats, label, v) < 0) {
            Py_XDECREF(v);
            goto error;
        }
        Py_DECREF(v);
    }
    for (size_t k = 0; k < n_acc; k++)
        Py_XDECREF(acc[k].callers);
    free(acc);
    Py_DECREF(index);
    return stats;
error:
    for (size_t k = 0; k < n_acc; k++)
        Py_XDECREF(acc[k].callers);
    free(acc);
    Py_XDECREF(index);
    Py_XDECREF(labels);
    Py_XDECREF(stats);
    return NULL;
}

PyObject *funcprof_profile_new(int threads, int builtins)
{
    fp_profile *p = PyObject_New(fp_profile, fp_profile_type);
    if (p == NULL)
        return NULL;
    memset((char *)p + sizeof(PyObject), 0, sizeof(fp_profile) - sizeof(PyObject));
    p->threads = threads;
    p->builtins = builtins;
    p->thread_list = PyList_New(0);
    p->stats = PyDict_New();
    if (p->thread_list == NULL || p->stats == NULL) {
        Py_DECREF(p);
        return NULL;
    }
    return (PyObject *)p;
}

static PyObject *profile_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"threads", "builtins", NULL};
    int threads = 0, builtins = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pp:Profile", kwlist, &threads, &builtins))
        return NULL;
    return funcprof_profile_new(threads, builtins);
}

static void profile_dealloc(fp_profile *p)
{
    PyTypeObject *tp = Py_TYPE(p);
    if (p->enabled) { /* only at interpreter teardown: funcprof_active holds a reference */
        if (disable_impl(p, 0) < 0)
            PyErr_WriteUnraisable(NULL);
    }
    Py_CLEAR(p->thread_list);
    Py_CLEAR(p->installer);
    Py_CLEAR(p->saved_threading);
    Py_CLEAR(p->stats);
    tp->tp_free((PyObject *)p);
    Py_DECREF(tp);
}

static PyObject *profile_enable(PyObject *self, PyObject *unused)
{
    if (funcprof_enable(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *profile_disable(PyObject *self, PyObject *unused)
{
    if (funcprof_disable(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *profile_create_stats(PyObject *self, PyObject *unused)
{
    fp_profile *p = (fp_profile *)self;
    if (funcprof_disable(self) < 0)
        return NULL;
    PyObject *stats = funcprof_snapshot(self);
    if (stats == NULL)
        return NULL;
    Py_XSETREF(p->stats, stats);
    Py_RETURN_NONE;
}

static PyObject *profile_clear(PyObject *self, PyObject *unused)
{
    fp_profile *p = (fp_profile *)self;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        if (t->depth > 0 || t->prof != NULL) {
            PyErr_SetString(PyExc_RuntimeError, "cannot clear a running Profile; disable it first");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        thread_release_tables(t);
        if (table_grow(&t->eslots, &t->emask, 0) < 0 || table_grow(&t->xslots, &t->xmask, 0) < 0 ||
            funcprof_grow_stack(t) < 0)
            return PyErr_NoMemory();
    }
    p->run_ticks = p->run_ns = 0;
    Py_RETURN_NONE;
}

/* Runs code (a code object, or a str compiled as "<string>") in globals and
 * locals under the profile. Returns the result of the evaluation. */
static PyObject *run_code(PyObject *self, PyObject *cmd, PyObject *globals, PyObject *locals)
{
    PyObject *code;
    if (PyUnicode_Check(cmd)) {
        const char *src = PyUnicode_AsUTF8(cmd);
        if (src == NULL)
            return NULL;
        code = Py_CompileString(src, "<string>", Py_file_input);
        if (code == NULL)
            return NULL;
    } else if (PyCode_Check(cmd)) {
        code = Py_NewRef(cmd);
    } else {
        PyErr_SetString(PyExc_TypeError, "runctx() needs a str or a code object");
        return NULL;
    }
    if (funcprof_enable(self) < 0) {
        Py_DECREF(code);
        return NULL;
    }
    PyObject *r = PyEval_EvalCode(code, globals, locals);
    Py_DECREF(code);
    if (funcprof_disable(self) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *profile_runctx(PyObject *self, PyObject *args)
{
    PyObject *cmd, *globals, *locals = Py_None;
    if (!PyArg_ParseTuple(args, "OO!|O:runctx", &cmd, &PyDict_Type, &globals, &locals))
        return NULL;
    if (locals == Py_None)
        locals = globals;
    PyObject *r = run_code(self, cmd, globals, locals);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *profile_run(PyObject *self, PyObject *cmd)
{
    PyObject *main = PyImport_AddModule("__main__");
    if (main == NULL)
        return NULL;
    PyObject *d = PyModule_GetDict(main);
    PyObject *r = run_code(self, cmd, d, d);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *profile_runcall(PyObject *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "runcall() needs a callable");
        return NULL;
    }
    PyObject *fn = PyTuple_GET_ITEM(args, 0);
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL)
        return NULL;
    if (funcprof_enable(self) < 0) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *r = PyObject_Call(fn, rest, kwargs);
    Py_DECREF(rest);
    if (funcprof_disable(self) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *profile_dump_stats(PyObject *self, PyObject *file)
{
    PyObject *path = NULL, *data = NULL, *stats = NULL;
    if (!PyUnicode_FSConverter(file, &path))
        return NULL;
    if (funcprof_disable(self) < 0)
        goto error;
    stats = funcprof_snapshot(self);
    if (stats == NULL)
        goto error;
    data = PyMarshal_WriteObjectToString(stats, Py_MARSHAL_VERSION);
    if (data == NULL)
        goto error;
    FILE *f = fopen(PyBytes_AS_STRING(path), "wb");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
        goto error;
    }
    size_t n = (size_t)PyBytes_GET_SIZE(data);
    int bad = fwrite(PyBytes_AS_STRING(data), 1, n, f) != n;
    if (fclose(f) != 0 || bad) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
        goto error;
    }
    Py_DECREF(path);
    Py_DECREF(data);
    Py_DECREF(stats);
    Py_RETURN_NONE;
error:
    Py_XDECREF(path);
    Py_XDECREF(data);
    Py_XDECREF(stats);
    return NULL;
}

static PyObject *profile_print_stats(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"sort", NULL};
    PyObject *sort = NULL, *pstats = NULL, *st = NULL, *r = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:print_stats", kwlist, &sort))
        return NULL;
    pstats = PyImport_ImportModule("pstats");
    if (pstats == NULL)
        return NULL;
    st = PyObject_CallMethod(pstats, "Stats", "(O)", self);
    if (st == NULL)
        goto done;
    r = PyObject_CallMethod(st, "strip_dirs", NULL);
    if (r == NULL)
        goto done;
    Py_SETREF(r, PyObject_CallMethod(st, "sort_stats", "(O)", sort ? sort : Py_None));
    if (r == NULL)
        goto done;
    Py_SETREF(r, PyObject_CallMethod(st, "print_stats", NULL));
done:
    Py_XDECREF(pstats);
    Py_XDECREF(st);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *profile_enter(PyObject *self, PyObject *unused)
{
    if (funcprof_enable(self) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *profile_exit(PyObject *self, PyObject *args)
{
    if (funcprof_disable(self) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *profile_repr(fp_profile *p)
{
    uint64_t calls = 0;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        for (uint32_t k = 0; k < t->n_entries; k++)
            calls += t->entries[k].nc;
    }
    return PyUnicode_FromFormat("<pyrometer.Profile %s, %llu calls recorded, %zd thread(s)>",
                                p->enabled ? "enabled" : "disabled", (unsigned long long)calls, n);
}

static PyObject *profile_get_stats(fp_profile *p, void *closure)
{
    return Py_NewRef(p->stats);
}

static int profile_set_stats(fp_profile *p, PyObject *v, void *closure)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete stats");
        return -1;
    }
    Py_XSETREF(p->stats, Py_NewRef(v));
    return 0;
}

static PyObject *profile_get_enabled(fp_profile *p, void *closure)
{
    return PyBool_FromLong(p->enabled);
}

static PyObject *profile_get_clock(fp_profile *p, void *closure)
{
    return PyUnicode_FromString(funcprof_use_tsc ? "tsc" : "monotonic");
}

static PyGetSetDef profile_getset[] = {
    {"stats", (getter)profile_get_stats, (setter)profile_set_stats,
     "The last create_stats() result, in cProfile's shape (pstats.Stats reads it).", NULL},
    {"enabled", (getter)profile_get_enabled, NULL, "True while profiling.", NULL},
    {"clock", (getter)profile_get_clock, NULL, "The clock used: 'tsc' or 'monotonic'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef profile_methods[] = {
    {"enable", profile_enable, METH_NOARGS,
     "Start profiling this thread (or every thread, with threads=True)."},
    {"disable", profile_disable, METH_NOARGS,
     "Stop profiling and restore the previous profile hooks."},
    {"create_stats", profile_create_stats, METH_NOARGS,
     "Disable, then set .stats (pstats.Stats(profile) calls this)."},
    {"clear", profile_clear, METH_NOARGS, "Forget everything recorded so far."},
    {"runctx", profile_runctx, METH_VARARGS,
     "runctx(cmd, globals, locals=None): profile exec of cmd; returns self."},
    {"run", profile_run, METH_O, "run(cmd): profile cmd in __main__; returns self."},
    {"runcall", (PyCFunction)(void (*)(void))profile_runcall, METH_VARARGS | METH_KEYWORDS,
     "runcall(func, *args, **kwargs): profile one call; returns its result."},
    {"dump_stats", profile_dump_stats, METH_O,
     "dump_stats(file): write a marshal dump pstats can load."},
    {"print_stats", (PyCFunction)(void (*)(void))profile_print_stats, METH_VARARGS | METH_KEYWORDS,
     "print_stats(sort=-1): print through pstats."},
    {"__enter__", profile_enter, METH_NOARGS, NULL},
    {"__exit__", profile_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot profile_slots[] = {
    {Py_tp_new, profile_tp_new},
    {Py_tp_dealloc, profile_dealloc},
    {Py_tp_repr, profile_repr},
    {Py_tp_methods, profile_methods},
    {Py_tp_getset, profile_getset},
    {Py_tp_doc, "Profile(threads=False, builtins=True)\n--\n\n"
                "A deterministic function profiler, a drop-in for cProfile.Profile:\n"
                "enable()/disable(), runctx(), runcall(), create_stats() and .stats,\n"
                "so pstats.Stats(profile) works. threads=True profiles every Python thread."},
    {0, NULL},
};

static PyType_Spec profile_spec = {
    .name = "pyrometer.Profile",
    .basicsize = sizeof(fp_profile),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = profile_slots,
};

int funcprof_module_exec(PyObject *module)
{
    /* The hook compares types by pointer, so the types are made once per
     * process and shared if the module is executed again. */
    if (fp_profile_type == NULL) {
        funcprof_use_tsc = tsc_is_invariant();
        PyObject *tt = PyType_FromModuleAndSpec(module, &thread_spec, NULL);
        if (tt == NULL)
            return -1;
        PyObject *pt = PyType_FromModuleAndSpec(module, &profile_spec, NULL);
        if (pt == NULL) {
            Py_DECREF(tt);
            return -1;
        }
        fp_thread_type = (PyTypeObject *)tt;
        fp_profile_type = (PyTypeObject *)pt;
    }
    if (PyModule_AddObjectRef(module, "Profile", (PyObject *)fp_profile_type) < 0)
        return -1;
    if (funcprof_backend_exec(module) < 0)
        return -1;
    return prun_module_exec(module);
}
