/* lineprof/backend_trace311.c - the line profiler's CPython 3.11 backend: a C
 * trace function installed with _PyEval_SetTrace on every thread, and the
 * frame peeking (f_trace_lines, f_lineno) that keeps it cheap.
 *
 * Non-target frames get f_trace_lines switched off as they start (one byte
 * store) and back on as they leave, so their lines cost nothing more.
 * Built on 3.11 only; meson builds backend_monitoring.c on 3.12+, where
 * local sys.monitoring events replace the hook and the peeking.
 */
#include "lineprof/backend.h"

#include "structmember.h"

#include <string.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "backend_trace311.c is for CPython 3.11; 3.12+ builds backend_monitoring.c"
#endif

const char lineprof_backend_name[] = "settrace";
const char lineprof_backend_replaced[] =
    "the trace hook was replaced while profiling (sys.settrace?); counts stop there. ";

/* Offset of PyFrameObject.f_trace_lines (a T_BOOL member), found at init
 * from the frame type's member table; -1 if not found. */
static Py_ssize_t trace_lines_off = -1;

/* PyFrameObject.f_lineno, which CPython sets just before it calls a trace
 * function, sits right before f_trace_lines in 3.11's layout. The hook reads
 * it directly once it has checked, on a target's first call event, that the
 * field holds what PyFrame_GetLineNumber() returns: 1 checked, -1 not usable,
 * 0 not checked yet. */
static int lineno_direct;

static inline int frame_lineno(PyFrameObject *frame)
{
    if (LIKELY(lineno_direct > 0))
        return *(int *)((char *)frame + trace_lines_off - (Py_ssize_t)sizeof(int));
    return PyFrame_GetLineNumber(frame);
}

static __attribute__((noinline)) void check_lineno_direct(PyFrameObject *frame)
{
    int api = PyFrame_GetLineNumber(frame);
    int direct = *(int *)((char *)frame + trace_lines_off - (Py_ssize_t)sizeof(int));
    lineno_direct = (api > 0 && api == direct) ? 1 : -1;
}

static inline void set_trace_lines(PyFrameObject *frame, char on)
{
    if (LIKELY(trace_lines_off >= 0))
        *((char *)frame + trace_lines_off) = on;
}

static inline PyObject *frame_code(PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code); /* the frame keeps it alive */
    return (PyObject *)code;
}

/* Index of the line a resumed generator/coroutine frame was suspended on, or
 * -1 for a fresh start or a plain function. */
static int resumed_line(PyFrameObject *frame, PyObject *code, lp_code *c)
{
    PyCodeObject *co = (PyCodeObject *)code;
    if (!(co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
        return -1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyFrame_GetLasti(frame) / (int)sizeof(_Py_CODEUNIT) <= co->_co_firsttraceable)
        return -1;
#endif
    unsigned idx = (unsigned)(PyFrame_GetLineNumber(frame) - c->first_line);
    return idx < (unsigned)c->nlines ? (int)idx : -1;
}

static int lp_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);

/* Removes a tracer whose profiler was disabled from the current thread. */
static __attribute__((noinline)) void remove_stale(LineTracer *tr)
{
    PyObject *exc, *val, *tb;
    PyErr_Fetch(&exc, &val, &tb);
    Py_INCREF(tr);
    if (_PyEval_SetTrace(PyThreadState_Get(), NULL, NULL) < 0)
        PyErr_Clear();
    Py_DECREF(tr);
    PyErr_Restore(exc, val, tb);
}

/* A line event from a frame that is not on top of our stack: a frame that
 * started before the hook was installed, or one whose return we missed. */
static __attribute__((noinline)) int line_slow(LineTracer *tr, PyFrameObject *frame)
{
    lp_code *c = lp_lookup(tr->prof, frame_code(frame));
    if (c == NULL)
        return 0;
    int64_t now = lp_now();
    int i = tr->depth - 1;
    while (i >= 0 && tr->stack[i].frame != frame)
        i--;
    if (i >= 0) {
        while (tr->depth - 1 > i)
            lp_leave(tr, now);
    } else {
        lineprof_enter(tr, frame, c, -1, now);
        if (tr->top == NULL || tr->top->frame != frame)
            return 0;
    }
    lp_line(tr->top, PyFrame_GetLineNumber(frame), now);
    return 0;
}

/* Call and return events, and line events off the fast path. */
static __attribute__((noinline)) int lp_trace_other(LineTracer *tr, PyFrameObject *frame, int what)
{
    lp_rec *top = tr->top;

    switch (what) {
    case PyTrace_LINE:
        return line_slow(tr, frame);
    case PyTrace_CALL: {
        if (UNLIKELY(!tr->prof->enabled)) {
            remove_stale(tr);
            return 0;
        }
        PyObject *code = frame_code(frame);
        lp_code *c = lp_lookup(tr->prof, code);
        if (c == NULL) {
            set_trace_lines(frame, 0);
            return 0;
        }
        if (UNLIKELY(lineno_direct == 0))
            check_lineno_direct(frame);
        lineprof_enter(tr, frame, c, resumed_line(frame, code, c), lp_now());
        return 0;
    }
    case PyTrace_RETURN:
        if (LIKELY(top == NULL || top->frame != frame)) {
            set_trace_lines(frame, 1);
            return 0;
        }
        lp_leave(tr, lp_now());
        return 0;
    default:
        return 0;
    }
}

/* The hook. Never raises, never calls Python, never allocates (except to grow
 * a thread's stack past its high-water mark). The line event of the running
 * target frame is the hot path and stays small; everything else is a call. */
static int lp_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    LineTracer *tr = (LineTracer *)obj;
    lp_rec *top = tr->top;

    if (LIKELY(what == PyTrace_LINE && top != NULL && top->frame == frame)) {
        lp_line(top, frame_lineno(frame), lp_now());
        return 0;
    }
    return lp_trace_other(tr, frame, what);
}

/* Returns a new tracer for prof, or NULL with an exception set. */
static int is_our_tracer(PyThreadState *ts, LineProfiler *prof)
{
    return ts->c_tracefunc == lp_trace && ts->c_traceobj != NULL &&
           Py_IS_TYPE(ts->c_traceobj, lineprof_tracer_type) &&
           ((LineTracer *)ts->c_traceobj)->prof == prof;
}

/* threading.settrace() hook: runs once in each new thread, as sys.settrace's
 * trampoline calls it for the thread's first frame; swaps itself for the C
 * hook and lets the C hook see that first call. */
static PyObject *bootstrap(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    LineProfiler *prof = (LineProfiler *)self;
    PyThreadState *ts = PyThreadState_Get();

    if (!prof->enabled) {
        if (_PyEval_SetTrace(ts, NULL, NULL) < 0)
            PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *tr = lineprof_tracer_new(prof);
    if (tr == NULL || _PyEval_SetTrace(ts, lp_trace, tr) < 0) {
        PyErr_Clear();
        prof->problems |= LP_PROBLEM_THREAD;
        if (_PyEval_SetTrace(ts, NULL, NULL) < 0)
            PyErr_Clear();
        Py_XDECREF(tr);
        Py_RETURN_NONE;
    }
    if (nargs >= 2 && PyFrame_Check(args[0]) && PyUnicode_Check(args[1]) &&
        PyUnicode_CompareWithASCIIString(args[1], "call") == 0)
        lp_trace(tr, (PyFrameObject *)args[0], PyTrace_CALL, Py_None);
    Py_DECREF(tr); /* the thread state owns it now */
    Py_RETURN_NONE;
}

static PyMethodDef bootstrap_def = {"_lineprof_thread_start",
                                    (PyCFunction)(void (*)(void))bootstrap, METH_FASTCALL, NULL};

/* Calls threading.<name>(arg) (arg may be NULL for no argument). Returns a
 * new reference, or NULL with an exception set. */
static PyObject *call_threading(const char *name, PyObject *arg)
{
    PyObject *threading = lineprof_import("threading");
    if (threading == NULL)
        return NULL;
    PyObject *r = arg ? PyObject_CallMethod(threading, name, "(O)", arg)
                      : PyObject_CallMethod(threading, name, NULL);
    Py_DECREF(threading);
    return r;
}

static void free_saved(LineProfiler *p)
{
    for (int i = 0; i < p->nsaved; i++) {
        Py_XDECREF(p->saved[i].tracer);
        Py_XDECREF(p->saved[i].obj);
    }
    free(p->saved);
    p->saved = NULL;
    p->nsaved = 0;
}

/* struct lp_backend: how the hook is put on and taken off every thread. */
static void settrace_stop(LineProfiler *p);

static int settrace_start(LineProfiler *p)
{
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(me);
    int n = 0;

    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts))
        n++;
    p->saved = calloc((size_t)n, sizeof *p->saved);
    if (p->saved == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->prev_thread_hook = call_threading("gettrace", NULL);
    if (p->prev_thread_hook == NULL)
        goto error;
    p->bootstrap = PyCFunction_New(&bootstrap_def, (PyObject *)p);
    if (p->bootstrap == NULL)
        goto error;
    p->enabled = 1;
    PyObject *r = call_threading("settrace", p->bootstrap);
    if (r == NULL)
        goto error;
    Py_DECREF(r);
    /* The current thread first: failing there is an error; elsewhere, a flag. */
    for (int pass = 0; pass < 2; pass++) {
        for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts && p->nsaved < n;
             ts = PyThreadState_Next(ts)) {
            if ((ts == me) != (pass == 0))
                continue;
            PyObject *tr = lineprof_tracer_new(p);
            if (tr == NULL)
                goto error;
            lp_saved *s = &p->saved[p->nsaved];
            s->tstate = ts;
            s->func = ts->c_tracefunc;
            s->obj = Py_XNewRef(ts->c_traceobj);
            s->tracer = tr;
            p->nsaved++;
            if (_PyEval_SetTrace(ts, lp_trace, tr) < 0) {
                if (ts == me)
                    goto error;
                PyErr_Clear();
                p->problems |= LP_PROBLEM_THREAD;
            }
        }
    }
    return 0;
error:
    settrace_stop(p);
    return -1;
}

static void settrace_stop(LineProfiler *p)
{
    PyObject *exc, *val, *tb;
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(me);

    PyErr_Fetch(&exc, &val, &tb);
    p->enabled = 0;
    if (p->nsaved > 0 && !is_our_tracer(me, p))
        p->problems |= LP_PROBLEM_REPLACED;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
         ts = PyThreadState_Next(ts)) {
        if (!is_our_tracer(ts, p))
            continue;
        Py_tracefunc func = NULL;
        PyObject *obj = NULL;
        for (int i = 0; i < p->nsaved; i++) {
            if (p->saved[i].tstate == ts && p->saved[i].tracer == ts->c_traceobj) {
                func = p->saved[i].func;
                obj = p->saved[i].obj;
                break;
            }
        }
        if (_PyEval_SetTrace(ts, func, obj) < 0)
            PyErr_Clear(); /* that thread's tracer removes itself at its next call */
    }
    if (p->bootstrap != NULL) {
        PyObject *r =
            call_threading("settrace", p->prev_thread_hook ? p->prev_thread_hook : Py_None);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    Py_CLEAR(p->bootstrap);
    Py_CLEAR(p->prev_thread_hook);
    free_saved(p);
    PyErr_Restore(exc, val, tb);
}

int lineprof_backend_start(LineProfiler *p)
{
    if (trace_lines_off < 0) {
        PyErr_SetString(PyExc_RuntimeError, "pyrometer: frame.f_trace_lines not found; "
                                            "this Python is not supported by the line profiler");
        return -1;
    }
    return settrace_start(p);
}

void lineprof_backend_stop(LineProfiler *p)
{
    settrace_stop(p);
}

void lineprof_backend_clear(LineProfiler *p)
{
    free_saved(p);
}

/* ---- test helpers: a bare C trace callback, for the benchmark ---------------- */

static int bare_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    return 0;
}

static uint64_t bare_sink; /* Protected by the GIL. */

static int timed_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what == PyTrace_LINE)
        bare_sink += (uint64_t)lp_now();
    return 0;
}

PyDoc_STRVAR(bare_trace_doc,
             "_lineprof_bare_trace(mode, codes=())\n--\n\n"
             "Benchmark helper: mode 1 installs a bare C trace callback on this thread, mode 2 one "
             "that also reads the clock on every line event, mode 0 removes it.");

static PyObject *bare_trace_set(PyObject *module, PyObject *args)
{
    int mode;
    PyObject *codes = NULL; /* accepted for the 3.12+ signature; a trace function sees all code */
    if (!PyArg_ParseTuple(args, "i|O!:_lineprof_bare_trace", &mode, &PyTuple_Type, &codes))
        return NULL;
    Py_tracefunc f = mode == 1 ? bare_trace : mode == 2 ? timed_trace : NULL;
    if (_PyEval_SetTrace(PyThreadState_Get(), f, f ? Py_None : NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef helper_defs[] = {
    {"_lineprof_bare_trace", bare_trace_set, METH_VARARGS, bare_trace_doc},
    {NULL, NULL, 0, NULL},
};

static void find_trace_lines_offset(void)
{
    for (PyMemberDef *m = PyFrame_Type.tp_members; m && m->name; m++) {
        if (strcmp(m->name, "f_trace_lines") == 0 && m->type == T_BOOL) {
            trace_lines_off = m->offset;
            return;
        }
    }
}

int lineprof_backend_exec(PyObject *module)
{
    find_trace_lines_offset();
    return PyModule_AddFunctions(module, helper_defs);
}
