/* lineprof/engine.c - the line profiler core behind %lprun and pyrometer.LineProfiler.
 *
 * Owns the target code objects and their per-line counters, the per-thread
 * tracer objects and the accounting (lineprof/backend.h). The events come
 * from the backend: a C trace function on 3.11 (backend_trace311.c), local
 * sys.monitoring events on 3.12+ (backend_monitoring.c).
 */
#include "lineprof/backend.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* ---- clock ------------------------------------------------------------- */

int lineprof_use_tsc;       /* set once at init */
static int64_t calib_tick0; /* ticks at init */
static int64_t calib_ns0;   /* CLOCK_MONOTONIC ns at init */

static void clock_init(void)
{
#ifdef LP_HAVE_TSC
    unsigned a, b, c, d;
    /* CPUID 0x80000007 EDX bit 8: invariant TSC (constant rate, never stops). */
    if (getenv("PYROMETER_NO_TSC") == NULL && __get_cpuid(0x80000000, &a, &b, &c, &d) &&
        a >= 0x80000007 && __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)))
        lineprof_use_tsc = 1;
#endif
    calib_ns0 = lp_mono_ns();
    calib_tick0 = lp_now();
}

/* Nanoseconds per tick, measured over the time since init (at least 20 ms,
 * spinning if the module is younger than that). */
static double ns_per_tick(void)
{
    if (!lineprof_use_tsc)
        return 1.0;
    int64_t ns, ticks;
    do {
        ns = lp_mono_ns();
        ticks = lp_now();
    } while (ns - calib_ns0 < 20000000);
    if (ticks <= calib_tick0)
        return 1.0;
    return (double)(ns - calib_ns0) / (double)(ticks - calib_tick0);
}

static PyTypeObject *LineProfiler_Type; /* owned; set by lineprof_module_exec */
PyTypeObject *lineprof_tracer_type;     /* owned */

/* ---- the code table -------------------------------------------------------- */

/* Rebuilds the table for p->ncodes entries. Returns 0, or -1 with
 * MemoryError set and the old table kept. */
static int rebuild_table(LineProfiler *p)
{
    size_t cap = 8;
    while (cap < (size_t)p->ncodes * 3)
        cap *= 2;
    PyObject **keys = calloc(cap, sizeof *keys);
    lp_code **vals = calloc(cap, sizeof *vals);
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        PyErr_NoMemory();
        return -1;
    }
    for (int n = 0; n < p->ncodes; n++) {
        size_t i = lp_ptr_hash(p->codes[n]->code) & (cap - 1);
        while (keys[i] != NULL)
            i = (i + 1) & (cap - 1);
        keys[i] = p->codes[n]->code;
        vals[i] = p->codes[n];
    }
    free(p->keys);
    free(p->vals);
    p->keys = keys;
    p->vals = vals;
    p->mask = cap - 1;
    return 0;
}

/* ---- accounting (backend-independent) ------------------------------------- */

/* Grows tr's stack. Returns 0, or -1 (no exception set: called from the hook). */
int lineprof_grow_stack(LineTracer *tr)
{
    int cap = tr->cap ? tr->cap * 2 : 64;
    lp_rec *s = realloc(tr->stack, (size_t)cap * sizeof *s);
    if (s == NULL)
        return -1;
    tr->stack = s;
    tr->cap = cap;
    tr->top = tr->depth ? &s[tr->depth - 1] : NULL;
    return 0;
}

/* An activation of target code c starts (or resumes, with `line` the index of
 * the line it was suspended on, else -1) in frame. */
void lineprof_enter(LineTracer *tr, void *frame, lp_code *c, int line, int64_t now)
{
    if (UNLIKELY(tr->depth == tr->cap) && lineprof_grow_stack(tr) < 0) {
        tr->prof->problems |= LP_PROBLEM_NOMEM;
        return;
    }
    lp_rec *r = &tr->stack[tr->depth];
    int prev = tr->top_of[c->index];
    if (prev >= 0) {
        /* Recursion: pause the outer activation of the same code. */
        lp_rec *o = &tr->stack[prev];
        if (o->cur != NULL)
            o->cur->ticks += now - o->t;
        o->t = now;
    }
    r->frame = frame;
    r->code = c;
    r->cur = line >= 0 ? &c->slots[line] : NULL;
    r->slots = c->slots;
    r->first_line = c->first_line;
    r->nlines = (unsigned)c->nlines;
    r->prev_same = prev;
    r->t = now;
    tr->top_of[c->index] = tr->depth;
    tr->depth++;
    tr->top = r;
}

PyObject *lineprof_tracer_new(LineProfiler *prof)
{
    LineTracer *tr = PyObject_New(LineTracer, lineprof_tracer_type);
    if (tr == NULL)
        return NULL;
    tr->prof = (LineProfiler *)Py_NewRef(prof);
    tr->stack = NULL;
    tr->top = NULL;
    tr->depth = tr->cap = 0;
    tr->ncodes = prof->ncodes;
    tr->top_of = malloc(sizeof(int) * (size_t)(prof->ncodes ? prof->ncodes : 1));
    if (tr->top_of == NULL || lineprof_grow_stack(tr) < 0) {
        Py_DECREF(tr);
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < prof->ncodes; i++)
        tr->top_of[i] = -1;
    return (PyObject *)tr;
}

static void tracer_dealloc(LineTracer *tr)
{
    PyTypeObject *tp = Py_TYPE(tr);
    free(tr->stack);
    free(tr->top_of);
    Py_XDECREF(tr->prof);
    PyObject_Free(tr);
    Py_DECREF(tp);
}

static PyType_Slot tracer_slots[] = {
    {Py_tp_dealloc, tracer_dealloc},
    {Py_tp_doc, "Per-thread state of a pyrometer.LineProfiler (internal)."},
    {0, NULL},
};

static PyType_Spec tracer_spec = {
    .name = "pyrometer._LineTracer",
    .basicsize = sizeof(LineTracer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tracer_slots,
};

PyObject *lineprof_import(const char *name)
{
    PyObject *top = PyImport_ImportModuleLevel(name, NULL, NULL, NULL, 0);
    if (top == NULL || strchr(name, '.') == NULL)
        return top;
    Py_DECREF(top);
    PyObject *key = PyUnicode_FromString(name);
    if (key == NULL)
        return NULL;
    PyObject *mod = PyImport_GetModule(key);
    if (mod == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ImportError, "no module named %R", key);
    Py_DECREF(key);
    return mod;
}

/* ---- public C API ------------------------------------------------------------ */

PyObject *lineprof_new(void)
{
    return PyObject_CallNoArgs((PyObject *)LineProfiler_Type);
}

/* The last line number of code (from co_lines()), or -1 with an exception. */
static int last_line(PyObject *code)
{
    int last = ((PyCodeObject *)code)->co_firstlineno;
    PyObject *it = PyObject_CallMethod(code, "co_lines", NULL);
    if (it == NULL)
        return -1;
    PyObject *iter = PyObject_GetIter(it);
    Py_DECREF(it);
    if (iter == NULL)
        return -1;
    PyObject *item;
    while ((item = PyIter_Next(iter)) != NULL) {
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 3 &&
            PyLong_Check(PyTuple_GET_ITEM(item, 2))) {
            long l = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
            if (l > last && l < INT_MAX)
                last = (int)l;
        }
        Py_DECREF(item);
    }
    Py_DECREF(iter);
    if (PyErr_Occurred())
        return -1;
    return last;
}

int lineprof_add_code(PyObject *prof, PyObject *code, PyObject *globals)
{
    LineProfiler *p = (LineProfiler *)prof;
    lp_code *c = NULL;

    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "lineprof_add_code: not a code object");
        return -1;
    }
    if (p->enabled) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot add functions while the line profiler is enabled");
        return -1;
    }
    if (lp_lookup(p, code) != NULL)
        return 0;
    int last = last_line(code);
    if (last < 0)
        return -1;
    if (p->ncodes == p->capcodes) {
        int cap = p->capcodes ? p->capcodes * 2 : 8;
        lp_code **codes = realloc(p->codes, (size_t)cap * sizeof *codes);
        if (codes == NULL)
            goto nomem;
        p->codes = codes;
        p->capcodes = cap;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        goto nomem;
    c->first_line = ((PyCodeObject *)code)->co_firstlineno;
    c->nlines = last - c->first_line + 1;
    c->hits = calloc((size_t)c->nlines, sizeof *c->hits);
    c->ns = calloc((size_t)c->nlines, sizeof *c->ns);
    c->slots = calloc((size_t)c->nlines, sizeof *c->slots);
    if (c->hits == NULL || c->ns == NULL || c->slots == NULL)
        goto nomem;
    c->code = Py_NewRef(code);
    c->globals = (globals && PyDict_Check(globals)) ? Py_NewRef(globals) : NULL;
    c->index = p->ncodes;
    p->codes[p->ncodes++] = c;
    if (rebuild_table(p) < 0) {
        p->ncodes--;
        Py_DECREF(c->code);
        Py_XDECREF(c->globals);
        free(c->hits);
        free(c->ns);
        free(c->slots);
        free(c);
        return -1;
    }
    return 1;
nomem:
    if (c != NULL) {
        free(c->hits);
        free(c->ns);
        free(c->slots);
        free(c);
    }
    PyErr_NoMemory();
    return -1;
}

int lineprof_enable(PyObject *prof)
{
    LineProfiler *p = (LineProfiler *)prof;
    if (p->enabled) {
        PyErr_SetString(PyExc_RuntimeError, "the line profiler is already enabled");
        return -1;
    }
    p->problems = 0;
    p->problem_msg[0] = '\0';
    return lineprof_backend_start(p);
}

/* Moves what the hook counted into hits[] and ns[]. Safe while enabled: the
 * hook runs under the GIL, and the slots just start again from zero. */
static void flush(LineProfiler *p)
{
    double k = ns_per_tick();
    for (int i = 0; i < p->ncodes; i++) {
        lp_code *c = p->codes[i];
        for (int l = 0; l < c->nlines; l++) {
            c->hits[l] += c->slots[l].hits;
            c->ns[l] += (int64_t)((double)c->slots[l].ticks * k + 0.5);
            c->slots[l].hits = 0;
            c->slots[l].ticks = 0;
        }
    }
}

void lineprof_disable(PyObject *prof)
{
    LineProfiler *p = (LineProfiler *)prof;
    if (!p->enabled)
        return;
    lineprof_backend_stop(p);
    flush(p);
}

Py_ssize_t lineprof_count(PyObject *prof)
{
    return ((LineProfiler *)prof)->ncodes;
}

int lineprof_get(PyObject *prof, Py_ssize_t i, lineprof_result *out)
{
    LineProfiler *p = (LineProfiler *)prof;
    if (i < 0 || i >= p->ncodes)
        return -1;
    if (p->enabled && i == 0)
        flush(p);
    lp_code *c = p->codes[i];
    out->code = c->code;
    out->globals = c->globals;
    out->first_line = c->first_line;
    out->nlines = c->nlines;
    out->hits = c->hits;
    out->ns = c->ns;
    return 0;
}

const char *lineprof_problem(PyObject *prof)
{
    LineProfiler *p = (LineProfiler *)prof;
    if (p->problems == 0)
        return NULL;
    snprintf(p->problem_msg, sizeof p->problem_msg, "%s%s%s",
             (p->problems & LP_PROBLEM_REPLACED) ? lineprof_backend_replaced : "",
             (p->problems & LP_PROBLEM_THREAD) ? "some threads could not be traced. " : "",
             (p->problems & LP_PROBLEM_NOMEM) ? "out of memory: some calls were not timed. " : "");
    return p->problem_msg;
}

/* ---- pyrometer.LineProfiler --------------------------------------------------- */

static PyObject *lp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    LineProfiler *p = (LineProfiler *)type->tp_alloc(type, 0);
    return (PyObject *)p;
}

static int lp_init(LineProfiler *self, PyObject *args, PyObject *kwds)
{
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "LineProfiler() takes no keyword arguments");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
        if (lprun_add_target((PyObject *)self, PyTuple_GET_ITEM(args, i), "LineProfiler") < 0)
            return -1;
    }
    return 0;
}

static int lp_traverse(LineProfiler *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < self->ncodes; i++) {
        Py_VISIT(self->codes[i]->code);
        Py_VISIT(self->codes[i]->globals);
    }
    Py_VISIT(self->prev_thread_hook);
    Py_VISIT(self->bootstrap);
    Py_VISIT(self->tracers);
    Py_VISIT(self->suspended);
    return 0;
}

static int lp_clear(LineProfiler *self)
{
    lineprof_disable((PyObject *)self);
    for (int i = 0; i < self->ncodes; i++)
        Py_CLEAR(self->codes[i]->globals);
    Py_CLEAR(self->prev_thread_hook);
    Py_CLEAR(self->bootstrap);
    Py_CLEAR(self->tracers);
    return 0;
}

static void lp_dealloc(LineProfiler *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    lp_clear(self);
    for (int i = 0; i < self->ncodes; i++) {
        lp_code *c = self->codes[i];
        Py_XDECREF(c->code);
        free(c->hits);
        free(c->ns);
        free(c->slots);
        free(c);
    }
    free(self->codes);
    free(self->keys);
    free(self->vals);
    lineprof_backend_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *lp_add_function(LineProfiler *self, PyObject *target)
{
    int n = lprun_add_target((PyObject *)self, target, "add_function");
    return n < 0 ? NULL : PyLong_FromLong(n);
}

static PyObject *lp_enable_meth(LineProfiler *self, PyObject *unused)
{
    if (lineprof_enable((PyObject *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *lp_disable_meth(LineProfiler *self, PyObject *unused)
{
    lineprof_disable((PyObject *)self);
    Py_RETURN_NONE;
}

static PyObject *lp_enter_meth(LineProfiler *self, PyObject *unused)
{
    if (lineprof_enable((PyObject *)self) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *lp_exit_meth(LineProfiler *self, PyObject *args)
{
    lineprof_disable((PyObject *)self);
    Py_RETURN_FALSE;
}

static PyObject *lp_runcall(LineProfiler *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "runcall() needs a callable");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL)
        return NULL;
    if (lineprof_enable((PyObject *)self) < 0) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *r = PyObject_Call(PyTuple_GET_ITEM(args, 0), rest, kwds);
    lineprof_disable((PyObject *)self);
    Py_DECREF(rest);
    return r;
}

static PyObject *lp_get_stats(LineProfiler *self, PyObject *unused)
{
    return lprun_stats_new((PyObject *)self);
}

static PyObject *lp_get_enabled(LineProfiler *self, void *closure)
{
    return PyBool_FromLong(self->enabled);
}

static PyObject *lp_get_codes(LineProfiler *self, void *closure)
{
    PyObject *l = PyList_New(self->ncodes);
    if (l == NULL)
        return NULL;
    for (int i = 0; i < self->ncodes; i++)
        PyList_SET_ITEM(l, i, Py_NewRef(self->codes[i]->code));
    return l;
}

static PyMethodDef lp_methods[] = {
    {"add_function", (PyCFunction)lp_add_function, METH_O,
     "add_function(target) -> int\n--\n\nProfile a function, method, property, class or module; "
     "returns how many code objects were added."},
    {"enable", (PyCFunction)lp_enable_meth, METH_NOARGS, "Start counting, on every thread."},
    {"disable", (PyCFunction)lp_disable_meth, METH_NOARGS,
     "Stop counting and restore the previous hooks."},
    {"__enter__", (PyCFunction)lp_enter_meth, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)lp_exit_meth, METH_VARARGS, NULL},
    {"runcall", (PyCFunction)(void (*)(void))lp_runcall, METH_VARARGS | METH_KEYWORDS,
     "runcall(func, *args, **kwargs)\n--\n\nCall func under the profiler and return its result."},
    {"get_stats", (PyCFunction)lp_get_stats, METH_NOARGS,
     "get_stats() -> pyrometer.LineStats\n--\n\nThe results so far, in line_profiler's layout."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lp_getset[] = {
    {"enabled", (getter)lp_get_enabled, NULL, "Whether the hook is installed.", NULL},
    {"code_objects", (getter)lp_get_codes, NULL, "The code objects being profiled.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot lp_slots[] = {
    {Py_tp_new, lp_new},
    {Py_tp_init, lp_init},
    {Py_tp_dealloc, lp_dealloc},
    {Py_tp_traverse, lp_traverse},
    {Py_tp_clear, lp_clear},
    {Py_tp_methods, lp_methods},
    {Py_tp_getset, lp_getset},
    {Py_tp_doc, "LineProfiler(*targets)\n--\n\n"
                "A native line profiler: per-line hits and time for the target functions, on every "
                "thread, with no decorator. Use as a context manager, or enable()/disable()."},
    {0, NULL},
};

static PyType_Spec lp_spec = {
    .name = "pyrometer.LineProfiler",
    .basicsize = sizeof(LineProfiler),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = lp_slots,
};

/* ---- init ------------------------------------------------------------------------ */
int lineprof_module_exec(PyObject *module)
{
    if (calib_ns0 == 0)
        clock_init();
    if (LineProfiler_Type == NULL) {
        LineProfiler_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &lp_spec, NULL);
        if (LineProfiler_Type == NULL)
            return -1;
        lineprof_tracer_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tracer_spec, NULL);
        if (lineprof_tracer_type == NULL) {
            Py_CLEAR(LineProfiler_Type);
            return -1;
        }
    }
    if (PyModule_AddObjectRef(module, "LineProfiler", (PyObject *)LineProfiler_Type) < 0)
        return -1;
    if (lineprof_backend_exec(module) < 0)
        return -1;
    return lprun_module_exec(module);
}
