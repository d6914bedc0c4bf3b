/* lineprof/engine.c - the line profiler core behind %lprun and pyrometer.LineProfiler.
 *
 * Owns the trace hook, the per-thread tracer objects and the per-line
 * counters of every target code object. The hook sits behind a small backend
 * interface (struct lp_backend): on 3.11 it is a C trace function installed
 * with _PyEval_SetTrace on every thread; a sys.monitoring backend (3.12+)
 * would drive the same three accounting entry points (lp_enter, lp_line,
 * lp_leave) from PY_START/PY_RESUME, LINE and PY_RETURN/PY_YIELD events.
 *
 * Accounting: each thread keeps a stack of the target frames it is running.
 * A line event charges the time since the previous event to the line that
 * was running and counts a hit on the new one. When a target function
 * recurses, the outer activation's clock pauses while the inner one runs, so
 * a function's line times add up to its wall time exactly once. A resumed
 * generator or coroutine carries on charging the line it was suspended on.
 * Non-target frames get f_trace_lines switched off as they start (one byte
 * store) and back on as they leave, so their lines cost nothing more.
 */
#include "lineprof/lineprof.h"

#include "structmember.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- clock -------------------------------------------------------------
 *
 * The hook reads a raw tick counter: the TSC on x86-64 when the CPU says it is
 * invariant (about 12 ns here against 30 ns for clock_gettime), else
 * CLOCK_MONOTONIC in ns. Ticks are turned into ns when the profiler stops,
 * with a ratio measured against CLOCK_MONOTONIC since the module loaded. */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#define LP_HAVE_TSC 1
#endif

static int use_tsc;         /* set once at init */
static int64_t calib_tick0; /* ticks at init */
static int64_t calib_ns0;   /* CLOCK_MONOTONIC ns at init */

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t lp_now(void)
{
#ifdef LP_HAVE_TSC
    if (LIKELY(use_tsc))
        return (int64_t)__rdtsc();
#endif
    return mono_ns();
}

static void clock_init(void)
{
#ifdef LP_HAVE_TSC
    unsigned a, b, c, d;
    /* CPUID 0x80000007 EDX bit 8: invariant TSC (constant rate, never stops). */
    if (getenv("PYROMETER_NO_TSC") == NULL && __get_cpuid(0x80000000, &a, &b, &c, &d) &&
        a >= 0x80000007 && __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)))
        use_tsc = 1;
#endif
    calib_ns0 = mono_ns();
    calib_tick0 = lp_now();
}

/* Nanoseconds per tick, measured over the time since init (at least 20 ms,
 * spinning if the module is younger than that). */
static double ns_per_tick(void)
{
    if (!use_tsc)
        return 1.0;
    int64_t ns, ticks;
    do {
        ns = mono_ns();
        ticks = lp_now();
    } while (ns - calib_ns0 < 20000000);
    if (ticks <= calib_tick0)
        return 1.0;
    return (double)(ns - calib_ns0) / (double)(ticks - calib_tick0);
}

/* ---- data ---------------------------------------------------------------- */

/* One target code object and its counters. */
/* What the hook updates for one line while enabled. */
typedef struct {
    uint64_t hits;
    int64_t ticks;
} lp_slot;

typedef struct {
    PyObject *code;    /* owned */
    PyObject *globals; /* owned, may be NULL */
    int index;         /* position in LineProfiler.codes */
    int first_line;    /* co_firstlineno: hits[0] is this line */
    int nlines;
    lp_slot *slots; /* owned, nlines entries: what the hook counts, flushed below */
    uint64_t *hits; /* owned, nlines entries: hits so far */
    int64_t *ns;    /* owned, nlines entries: time so far, in ns */
} lp_code;

/* One running activation of a target code object on a thread's stack. */
typedef struct {
    PyFrameObject *frame; /* borrowed: alive while it runs; only compared */
    lp_code *code;
    lp_slot *cur;   /* the running line's slot, or NULL */
    lp_slot *slots; /* code->slots, code->first_line and code->nlines, */
    int first_line; /* copied here so that a line event reads one record */
    unsigned nlines;
    int prev_same; /* stack index of the next activation of the same code below, or -1 */
    int64_t t;     /* when `cur` started being charged */
} lp_rec;

typedef struct {
    PyThreadState *tstate; /* not owned; only compared against live thread states */
    PyObject *tracer;      /* owned: the tracer we installed there */
    Py_tracefunc func;     /* what was installed before */
    PyObject *obj;         /* owned, may be NULL */
} lp_saved;

enum {
    LP_PROBLEM_NOMEM = 1,    /* a stack could not grow: some activations were not timed */
    LP_PROBLEM_THREAD = 2,   /* the hook could not be installed on some thread */
    LP_PROBLEM_REPLACED = 4, /* someone replaced the hook while it was enabled */
};

/* pyrometer.LineProfiler. Protected by the GIL, like everything here. */
typedef struct {
    PyObject_HEAD
    lp_code **codes; /* owned, ncodes entries */
    int ncodes;
    int capcodes;
    /* Open-addressing table, code object pointer -> lp_code. */
    PyObject **keys; /* borrowed from codes[i]->code; NULL = empty */
    lp_code **vals;
    size_t mask;
    int enabled;
    int problems;    /* LP_PROBLEM_* seen since enable */
    lp_saved *saved; /* owned: one per thread we installed on at enable */
    int nsaved;
    PyObject *prev_thread_hook; /* owned: threading.gettrace() before enable */
    PyObject *bootstrap;        /* owned: threading.settrace() hook while enabled */
    char problem_msg[256];
} LineProfiler;

/* The per-thread state, passed to the hook as its `obj`. Owned by the thread
 * state it is installed on (c_traceobj); touched only by that thread. */
typedef struct {
    PyObject_HEAD
    LineProfiler *prof; /* owned */
    lp_rec *stack;      /* owned, cap entries */
    lp_rec *top;        /* &stack[depth - 1], or NULL */
    int depth;
    int cap;
    int *top_of; /* owned, prof->ncodes entries: topmost activation of each code, or -1 */
    int ncodes;
} LineTracer;

static PyTypeObject *LineProfiler_Type; /* owned; set by lineprof_module_exec */
static PyTypeObject *LineTracer_Type;   /* owned */

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

/* ---- the code table -------------------------------------------------------- */

static inline size_t ptr_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p >> 4;
    x *= (uintptr_t)0x9E3779B97F4A7C15ULL;
    return (size_t)(x ^ (x >> 29));
}

static inline lp_code *lookup(LineProfiler *p, PyObject *code)
{
    if (p->keys == NULL)
        return NULL;
    size_t i = ptr_hash(code) & p->mask;
    for (;;) {
        PyObject *k = p->keys[i];
        if (k == code)
            return p->vals[i];
        if (k == NULL)
            return NULL;
        i = (i + 1) & p->mask;
    }
}

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
        size_t i = ptr_hash(p->codes[n]->code) & (cap - 1);
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
static int grow_stack(LineTracer *tr)
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
static __attribute__((noinline)) void lp_enter(LineTracer *tr, PyFrameObject *frame, lp_code *c,
                                               int line, int64_t now)
{
    if (UNLIKELY(tr->depth == tr->cap) && grow_stack(tr) < 0) {
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

/* The top activation starts running line `lineno`. */
static inline void lp_line(lp_rec *r, int lineno, int64_t now)
{
    if (r->cur != NULL)
        r->cur->ticks += now - r->t;
    unsigned idx = (unsigned)(lineno - r->first_line);
    if (idx < r->nlines) {
        lp_slot *s = &r->slots[idx];
        s->hits++;
        r->cur = s;
    } else {
        r->cur = NULL;
    }
    r->t = now;
}

/* The top activation returns, yields or unwinds. */
static inline void lp_leave(LineTracer *tr, int64_t now)
{
    lp_rec *r = tr->top;
    lp_code *c = r->code;
    if (r->cur != NULL)
        r->cur->ticks += now - r->t;
    tr->top_of[c->index] = r->prev_same;
    if (r->prev_same >= 0)
        tr->stack[r->prev_same].t = now; /* the outer activation resumes */
    tr->depth--;
    tr->top = tr->depth ? &tr->stack[tr->depth - 1] : NULL;
}

/* ---- the 3.11 backend: a C trace function --------------------------------- */

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
    lp_code *c = lookup(tr->prof, frame_code(frame));
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
        lp_enter(tr, frame, c, -1, now);
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
        lp_code *c = lookup(tr->prof, code);
        if (c == NULL) {
            set_trace_lines(frame, 0);
            return 0;
        }
        if (UNLIKELY(lineno_direct == 0))
            check_lineno_direct(frame);
        lp_enter(tr, frame, c, resumed_line(frame, code, c), lp_now());
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
static PyObject *tracer_new(LineProfiler *prof)
{
    LineTracer *tr = PyObject_New(LineTracer, LineTracer_Type);
    if (tr == NULL)
        return NULL;
    tr->prof = (LineProfiler *)Py_NewRef(prof);
    tr->stack = NULL;
    tr->top = NULL;
    tr->depth = tr->cap = 0;
    tr->ncodes = prof->ncodes;
    tr->top_of = malloc(sizeof(int) * (size_t)(prof->ncodes ? prof->ncodes : 1));
    if (tr->top_of == NULL || grow_stack(tr) < 0) {
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

static int is_our_tracer(PyThreadState *ts, LineProfiler *prof)
{
    return ts->c_tracefunc == lp_trace && ts->c_traceobj != NULL &&
           Py_IS_TYPE(ts->c_traceobj, LineTracer_Type) &&
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
    PyObject *tr = tracer_new(prof);
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
    PyObject *r = arg ? PyObject_CallMethod(threading, name, "O", arg)
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
typedef struct {
    const char *name;
    int (*start)(LineProfiler *p); /* 0, or -1 with an exception and nothing installed */
    void (*stop)(LineProfiler *p); /* never fails */
} lp_backend;

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
            PyObject *tr = tracer_new(p);
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

static const lp_backend settrace_backend = {"settrace", settrace_start, settrace_stop};

/* A sys.monitoring backend for 3.12+ would go here and be chosen below; on
 * 3.12 the settrace backend still works (through the legacy-trace shim). */
static const lp_backend *backend = &settrace_backend;

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
    if (lookup(p, code) != NULL)
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
    if (trace_lines_off < 0) {
        PyErr_SetString(PyExc_RuntimeError, "pyrometer: frame.f_trace_lines not found; "
                                            "this Python is not supported by the line profiler");
        return -1;
    }
    p->problems = 0;
    p->problem_msg[0] = '\0';
    return backend->start(p);
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
    backend->stop(p);
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
    snprintf(
        p->problem_msg, sizeof p->problem_msg, "%s%s%s",
        (p->problems & LP_PROBLEM_REPLACED)
            ? "the trace hook was replaced while profiling (sys.settrace?); counts stop there. "
            : "",
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
    return 0;
}

static int lp_clear(LineProfiler *self)
{
    lineprof_disable((PyObject *)self);
    for (int i = 0; i < self->ncodes; i++)
        Py_CLEAR(self->codes[i]->globals);
    Py_CLEAR(self->prev_thread_hook);
    Py_CLEAR(self->bootstrap);
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
    free_saved(self);
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
             "_lineprof_bare_trace(mode)\n--\n\n"
             "Benchmark helper: mode 1 installs a bare C trace callback on this thread, mode 2 one "
             "that also reads the clock on every line event, mode 0 removes it.");

static PyObject *bare_trace_set(PyObject *module, PyObject *arg)
{
    long mode = PyLong_AsLong(arg);
    if (mode == -1 && PyErr_Occurred())
        return NULL;
    Py_tracefunc f = mode == 1 ? bare_trace : mode == 2 ? timed_trace : NULL;
    if (_PyEval_SetTrace(PyThreadState_Get(), f, f ? Py_None : NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef helper_defs[] = {
    {"_lineprof_bare_trace", bare_trace_set, METH_O, bare_trace_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- init ------------------------------------------------------------------------ */

static void find_trace_lines_offset(void)
{
    for (PyMemberDef *m = PyFrame_Type.tp_members; m && m->name; m++) {
        if (strcmp(m->name, "f_trace_lines") == 0 && m->type == T_BOOL) {
            trace_lines_off = m->offset;
            return;
        }
    }
}

int lineprof_module_exec(PyObject *module)
{
    find_trace_lines_offset();
    if (calib_ns0 == 0)
        clock_init();
    if (LineProfiler_Type == NULL) {
        LineProfiler_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &lp_spec, NULL);
        if (LineProfiler_Type == NULL)
            return -1;
        LineTracer_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tracer_spec, NULL);
        if (LineTracer_Type == NULL) {
            Py_CLEAR(LineProfiler_Type);
            return -1;
        }
    }
    if (PyModule_AddObjectRef(module, "LineProfiler", (PyObject *)LineProfiler_Type) < 0)
        return -1;
    if (PyModule_AddFunctions(module, helper_defs) < 0)
        return -1;
    return lprun_module_exec(module);
}
