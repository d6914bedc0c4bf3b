/* lineprof/backend_monitoring.c - the line profiler's backend on CPython 3.12+:
 * sys.monitoring (PEP 669) events enabled as *local* events on the target
 * code objects only, so code outside the targets runs untouched.
 *
 * PY_START and PY_RESUME push an activation, LINE charges and counts (and
 * so does a JUMP backwards within one line, as sys.settrace reports it: a
 * one-line loop's next iteration), and PY_RETURN and PY_YIELD pop it; PY_THROW and PY_UNWIND
 * (global events before 3.15, which lets them be local) cover a generator thrown into and an
 * exception leaving a target. An activation is matched by its code object. Replaces
 * backend_trace311.c, whose f_trace_lines and f_lineno peeking has no use here: only target code
 * raises events, and the line number comes with them.
 */
#include "lineprof/backend.h"
#include "monitor.h"

#define TOOL      MONITOR_ID_LINEPROF
#define TOOL_NAME "pyrometer %lprun"

#define EV_START  MONITOR_BIT(PY_MONITORING_EVENT_PY_START)
#define EV_RESUME MONITOR_BIT(PY_MONITORING_EVENT_PY_RESUME)
#define EV_LEAVE                                                                                   \
    (MONITOR_BIT(PY_MONITORING_EVENT_PY_RETURN) | MONITOR_BIT(PY_MONITORING_EVENT_PY_YIELD))
#define EV_LINE   MONITOR_BIT(PY_MONITORING_EVENT_LINE)
#define EV_THROW  MONITOR_BIT(PY_MONITORING_EVENT_PY_THROW)
#define EV_UNWIND MONITOR_BIT(PY_MONITORING_EVENT_PY_UNWIND)
#define EV_JUMP   MONITOR_BIT(PY_MONITORING_EVENT_JUMP)
#define EV_ALL    (EV_START | EV_RESUME | EV_LEAVE | EV_LINE | EV_JUMP | EV_THROW | EV_UNWIND)

/* Exception events became local events in 3.15. */
#if PY_VERSION_HEX >= 0x030F0000
#define EV_LOCAL  EV_ALL
#define EV_GLOBAL 0
#else
#define EV_LOCAL  (EV_START | EV_RESUME | EV_LEAVE | EV_LINE | EV_JUMP)
#define EV_GLOBAL (EV_THROW | EV_UNWIND)
#endif

const char lineprof_backend_name[] = "sys.monitoring";
const char lineprof_backend_replaced[] =
    "the sys.monitoring tool id 3 was freed or taken while profiling "
    "(sys.monitoring.free_tool_id?); counts may stop there. ";

static int uninstall(LineProfiler *p);

/* The enabled profiler (at most one: it holds the tool id), or NULL; and a
 * counter bumped at every start and stop, so that a thread's cached tracer
 * from an earlier run is never used. Protected by the GIL. */
static LineProfiler *active;
static uint64_t generation = 1;

/* The thread's tracer for `active`, valid while tl_generation == generation.
 * active->tracers owns it. */
static __thread LineTracer *tl_tracer __attribute__((tls_model("initial-exec")));
static __thread uint64_t tl_generation __attribute__((tls_model("initial-exec")));

/* First event of a run on this thread: makes its tracer. Never raises. */
static __attribute__((noinline)) LineTracer *tracer_slow(void)
{
    LineProfiler *p = active;
    LineTracer *tr = NULL;
    if (p != NULL && p->enabled && p->tracers != NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *t = lineprof_tracer_new(p);
        if (t == NULL || PyList_Append(p->tracers, t) < 0) {
            PyErr_Clear();
            p->problems |= LP_PROBLEM_THREAD;
        } else {
            tr = (LineTracer *)t;
        }
        Py_XDECREF(t); /* p->tracers keeps it */
        PyErr_SetRaisedException(exc);
    }
    tl_tracer = tr;
    tl_generation = generation;
    return tr;
}

static inline LineTracer *current(void)
{
    return LIKELY(tl_generation == generation) ? tl_tracer : tracer_slow();
}

/* ---- the callbacks: (code, offset | line [, exception]) ------------------------------
 * Each runs with the GIL held; no malloc (except to grow a thread's stack
 * past its high-water mark), no Python call, no lock; never raises. */

/* The index of the line holding instruction `offset` of c, or -1. */
static int line_at(PyObject *code, lp_code *c, PyObject *offset)
{
    int line = PyCode_Addr2Line((PyCodeObject *)code, monitor_int(offset));
    unsigned idx = (unsigned)(line - c->first_line);
    return idx < (unsigned)c->nlines ? (int)idx : -1;
}

static PyObject *on_start(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    LineTracer *tr = current();
    lp_code *c;
    if (tr != NULL && (c = lp_lookup(tr->prof, args[0])) != NULL)
        lineprof_enter(tr, args[0], c, -1, lp_now());
    Py_RETURN_NONE;
}

/* PY_RESUME and PY_THROW: a generator or coroutine carries on from the line it
 * was suspended on. */
static PyObject *on_resume(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    LineTracer *tr = current();
    lp_code *c;
    if (tr != NULL && (c = lp_lookup(tr->prof, args[0])) != NULL)
        lineprof_enter(tr, args[0], c, line_at(args[0], c, args[1]), lp_now());
    Py_RETURN_NONE;
}

/* PY_RETURN, PY_YIELD and PY_UNWIND: the top activation leaves, if it is this
 * code's (a frame that started before the profiler did has none). */
static PyObject *on_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    LineTracer *tr = current();
    if (tr != NULL && tr->top != NULL && tr->top->frame == args[0])
        lp_leave(tr, lp_now());
    Py_RETURN_NONE;
}

/* A line of a target that is not the top activation: a frame that started
 * before the profiler did, or one whose leaving we missed. */
static __attribute__((noinline)) void line_slow(LineTracer *tr, PyObject *code, int lineno)
{
    lp_code *c = lp_lookup(tr->prof, code);
    if (c == NULL)
        return;
    int64_t now = lp_now();
    int i = tr->depth - 1;
    while (i >= 0 && tr->stack[i].frame != code)
        i--;
    if (i >= 0) {
        while (tr->depth - 1 > i)
            lp_leave(tr, now);
    } else {
        lineprof_enter(tr, code, c, -1, now);
        if (tr->top == NULL || tr->top->frame != code)
            return;
    }
    lp_line(tr->top, lineno, now);
}

/* The hot path: one line of the running target. */
static PyObject *on_line(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    LineTracer *tr = current();
    if (LIKELY(tr != NULL)) {
        lp_rec *top = tr->top;
        if (LIKELY(top != NULL && top->frame == args[0]))
            lp_line(top, monitor_int(args[1]), lp_now());
        else
            line_slow(tr, args[0], monitor_int(args[1]));
    }
    Py_RETURN_NONE;
}

/* A jump: a line event when it goes backwards within one line; any other
 * jump is disabled where it is. */
static PyObject *on_jump(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    int line = monitor_jump_line(args[0], args[1], args[2]);
    if (line == 0)
        return Py_NewRef(monitor_disable());
    LineTracer *tr = current();
    if (tr != NULL && tr->top != NULL && tr->top->frame == args[0])
        lp_line(tr->top, line, lp_now());
    Py_RETURN_NONE;
}

/* ---- the backend interface ------------------------------------------------------------ */

/* The target code objects, borrowed, for monitor_release(); NULL with an
 * exception when memory runs out. The caller frees it. */
static PyObject **code_array(LineProfiler *p)
{
    PyObject **codes = malloc(sizeof *codes * (size_t)(p->ncodes ? p->ncodes : 1));
    if (codes == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < p->ncodes; i++)
        codes[i] = p->codes[i]->code;
    return codes;
}

/* Claims the tool id and sets p's events. Returns 0, or -1 with an
 * exception set and nothing left installed. */
static int install(LineProfiler *p)
{
    if (monitor_claim(TOOL, TOOL_NAME, "%lprun") < 0)
        return -1;
    if (monitor_register(TOOL, EV_START, on_start) < 0 ||
        monitor_register(TOOL, EV_RESUME | EV_THROW, on_resume) < 0 ||
        monitor_register(TOOL, EV_LEAVE | EV_UNWIND, on_leave) < 0 ||
        monitor_register(TOOL, EV_LINE, on_line) < 0 ||
        monitor_register(TOOL, EV_JUMP, on_jump) < 0)
        goto error;
    for (int i = 0; i < p->ncodes; i++) {
        if (monitor_set_local_events(TOOL, p->codes[i]->code, EV_LOCAL) < 0)
            goto error;
    }
    if (EV_GLOBAL != 0 && monitor_set_events(TOOL, EV_GLOBAL) < 0)
        goto error;
    return 0;
error:
    uninstall(p);
    return -1;
}

/* Gives the tool id back. Returns 0 if someone freed or took it meanwhile. */
static int uninstall(LineProfiler *p)
{
    PyObject **codes = code_array(p);
    if (codes == NULL)
        PyErr_Clear();
    int ours = monitor_release(TOOL, TOOL_NAME, EV_ALL, codes, codes ? p->ncodes : 0);
    free(codes);
    return ours;
}

/* A profiler started while another runs (a nested %lprun) suspends it until
 * it stops, as a nested trace function did on 3.11. */
int lineprof_backend_start(LineProfiler *p)
{
    LineProfiler *outer = active;
    if (outer != NULL)
        uninstall(outer);
    monitor_jump_forget();
    p->tracers = PyList_New(0);
    if (p->tracers == NULL || install(p) < 0) {
        Py_CLEAR(p->tracers);
        PyObject *exc = PyErr_GetRaisedException();
        if (outer != NULL && install(outer) < 0) {
            PyErr_Clear();
            outer->problems |= LP_PROBLEM_REPLACED;
        }
        PyErr_SetRaisedException(exc);
        return -1;
    }
    p->suspended = (LineProfiler *)Py_XNewRef(outer);
    active = p;
    generation++;
    p->enabled = 1;
    return 0;
}

void lineprof_backend_stop(LineProfiler *p)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (active == p) {
        if (!uninstall(p))
            p->problems |= LP_PROBLEM_REPLACED;
        active = NULL;
    }
    generation++;
    p->enabled = 0;
    Py_CLEAR(p->tracers);
    LineProfiler *outer = p->suspended;
    p->suspended = NULL;
    if (outer != NULL) {
        if (outer->enabled && active == NULL) {
            if (install(outer) < 0) {
                PyErr_Clear();
                outer->problems |= LP_PROBLEM_REPLACED;
            } else {
                active = outer;
            }
        }
        Py_DECREF(outer);
    }
    PyErr_SetRaisedException(exc);
}

void lineprof_backend_clear(LineProfiler *p)
{
    Py_CLEAR(p->tracers);
    Py_CLEAR(p->suspended);
}

/* ---- test helpers: bare callbacks, for the benchmark ---------------------------------- */

static uint64_t bare_sink; /* Protected by the GIL. */

static PyObject *bare_nothing(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    Py_RETURN_NONE;
}

static PyObject *bare_timed_line(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    bare_sink += (uint64_t)lp_now() + (uint64_t)monitor_int(args[1]);
    Py_RETURN_NONE;
}

#define BARE_NAME "pyrometer bare callback"

/* The code objects bare callbacks were set on (owned tuple), or NULL for
 * global events. Protected by the GIL. */
static PyObject *bare_codes;

static void bare_off(void)
{
    PyObject **items = bare_codes ? PySequence_Fast_ITEMS(bare_codes) : NULL;
    monitor_release(TOOL, BARE_NAME, EV_ALL, items, bare_codes ? PyTuple_GET_SIZE(bare_codes) : 0);
    Py_CLEAR(bare_codes);
}

PyDoc_STRVAR(
    bare_trace_doc,
    "_lineprof_bare_trace(mode, codes=())\n--\n\n"
    "Benchmark helper: mode 1 sets sys.monitoring callbacks that do nothing on the events "
    "%lprun uses, mode 2 one that also reads the clock on every LINE event, mode 0 removes "
    "them. With code objects, as local events on those only; else globally.");

static PyObject *bare_trace_set(PyObject *module, PyObject *args)
{
    int mode;
    PyObject *codes = NULL;
    if (!PyArg_ParseTuple(args, "i|O!:_lineprof_bare_trace", &mode, &PyTuple_Type, &codes))
        return NULL;
    bare_off();
    if (mode == 0)
        Py_RETURN_NONE;
    if (monitor_claim(TOOL, BARE_NAME, "_lineprof_bare_trace") < 0)
        return NULL;
    if (codes != NULL && PyTuple_GET_SIZE(codes) > 0)
        bare_codes = Py_NewRef(codes);
    if (monitor_register(TOOL, EV_ALL & ~EV_LINE, bare_nothing) < 0 ||
        monitor_register(TOOL, EV_LINE, mode == 2 ? bare_timed_line : bare_nothing) < 0)
        goto error;
    if (bare_codes == NULL) {
        if (monitor_set_events(TOOL, EV_ALL) < 0)
            goto error;
    } else {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bare_codes); i++) {
            if (monitor_set_local_events(TOOL, PyTuple_GET_ITEM(bare_codes, i), EV_LOCAL) < 0)
                goto error;
        }
        if (EV_GLOBAL != 0 && monitor_set_events(TOOL, EV_GLOBAL) < 0)
            goto error;
    }
    Py_RETURN_NONE;
error:
    bare_off();
    return NULL;
}

static PyMethodDef helper_defs[] = {
    {"_lineprof_bare_trace", bare_trace_set, METH_VARARGS, bare_trace_doc},
    {NULL, NULL, 0, NULL},
};

int lineprof_backend_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, helper_defs);
}
