/* funcprof/backend_monitoring.c - the function profiler's backend on CPython
 * 3.12+: sys.monitoring (PEP 669) events, the ones cProfile itself uses there.
 *
 * PY_START, PY_RESUME and PY_THROW enter a Python function; PY_RETURN,
 * PY_YIELD and PY_UNWIND leave it. CALL enters a C function (a builtin, or a
 * method descriptor called with its self, named as the bound method cProfile
 * makes of it); C_RETURN and C_RAISE leave it. Each callback is a C function
 * (monitor.h) that finds its thread's tables through a thread-local pointer.
 * Replaces backend_trace311.c, whose frame peeking has no use here: the code
 * object comes with every event.
 */
#include "funcprof/backend.h"
#include "monitor.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)

#define TOOL      MONITOR_ID_FUNCPROF
#define TOOL_NAME "pyrometer %prun"

#define EV_ENTER                                                                                   \
    (MONITOR_BIT(PY_MONITORING_EVENT_PY_START) | MONITOR_BIT(PY_MONITORING_EVENT_PY_RESUME) |      \
     MONITOR_BIT(PY_MONITORING_EVENT_PY_THROW))
#define EV_LEAVE                                                                                   \
    (MONITOR_BIT(PY_MONITORING_EVENT_PY_RETURN) | MONITOR_BIT(PY_MONITORING_EVENT_PY_YIELD) |      \
     MONITOR_BIT(PY_MONITORING_EVENT_PY_UNWIND))
#define EV_C_ENTER MONITOR_BIT(PY_MONITORING_EVENT_CALL)
#define EV_C_LEAVE                                                                                 \
    (MONITOR_BIT(PY_MONITORING_EVENT_C_RETURN) | MONITOR_BIT(PY_MONITORING_EVENT_C_RAISE))
#define EV_ALL (EV_ENTER | EV_LEAVE | EV_C_ENTER | EV_C_LEAVE)

const char funcprof_backend_name[] = "sys.monitoring";

/* Bumped at every start and stop, so a thread's cached pointer from an
 * earlier run is never used. Protected by the GIL. */
static uint64_t generation = 1;
/* sys.monitoring.MISSING (borrowed), set at start. Protected by the GIL. */
static PyObject *missing;

/* The thread's tables for the running profile, or NULL when this thread is
 * not profiled; valid while tl_generation == generation. Owned by the
 * thread (p->thread_list holds the reference). */
static __thread fp_thread *tl_thread __attribute__((tls_model("initial-exec")));
static __thread uint64_t tl_generation __attribute__((tls_model("initial-exec")));

/* First event of a run on this thread: with --threads, the thread gets its
 * own tables; otherwise only the thread that started the profile counts.
 * Never raises (a failure sets p->failed). */
static __attribute__((noinline)) fp_thread *thread_slow(void)
{
    fp_profile *p = funcprof_active;
    fp_thread *t = NULL;
    if (p != NULL && p->enabled && p->threads) {
        PyObject *exc = PyErr_GetRaisedException();
        t = funcprof_thread_attach(p, PyThreadState_Get());
        if (t == NULL) {
            PyErr_Clear();
            p->failed = 1;
        }
        PyErr_SetRaisedException(exc);
    }
    tl_thread = t;
    tl_generation = generation;
    return t;
}

static inline fp_thread *current(void)
{
    fp_thread *t = LIKELY(tl_generation == generation) ? tl_thread : thread_slow();
    return t != NULL && LIKELY(!t->off) ? t : NULL;
}

/* ---- the callbacks: (code, offset[, callable, arg0]) ----------------------------
 * Each runs with the GIL held; no malloc (except when a table grows), no
 * Python call, no lock; never raises. */

static PyObject *on_enter(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    fp_thread *t = current();
    if (t != NULL)
        fp_enter_code(t, args[0]);
    Py_RETURN_NONE;
}

static PyObject *on_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    fp_thread *t = current();
    if (t != NULL)
        fp_leave(t);
    Py_RETURN_NONE;
}

/* The C function a CALL event's callable stands for, as cProfile sees it:
 * a builtin function or method, or a method descriptor called with an
 * instance of its class (cProfile binds it). Sets *ml, *self, *module and
 * returns 1, or returns 0 for anything else. */
static inline int c_function(PyObject *callable, PyObject *arg0, PyMethodDef **ml, PyObject **self,
                             PyObject **module)
{
    if (PyCFunction_Check(callable)) {
        PyCFunctionObject *fn = (PyCFunctionObject *)callable;
        *ml = fn->m_ml;
        *self = fn->m_self;
        *module = fn->m_module;
        return 1;
    }
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type) && arg0 != missing) {
        PyMethodDescrObject *d = (PyMethodDescrObject *)callable;
        if (!PyObject_TypeCheck(arg0, d->d_common.d_type))
            return 0;
        *ml = d->d_method;
        *self = arg0;
        *module = NULL;
        return 1;
    }
    return 0;
}

static PyObject *on_c_enter(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    fp_thread *t = current();
    PyMethodDef *ml;
    PyObject *bound, *module;
    if (t != NULL && c_function(args[2], args[3], &ml, &bound, &module))
        fp_enter_c(t, ml, bound, module);
    Py_RETURN_NONE;
}

static PyObject *on_c_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    fp_thread *t = current();
    PyMethodDef *ml;
    PyObject *bound, *module;
    if (t != NULL && c_function(args[2], args[3], &ml, &bound, &module))
        fp_leave(t);
    Py_RETURN_NONE;
}

/* ---- the backend interface ------------------------------------------------------------ */

int funcprof_backend_start(fp_profile *p)
{
    missing = monitor_missing();
    if (missing == NULL)
        return -1;
    if (monitor_claim(TOOL, TOOL_NAME, "%prun") < 0)
        return -1;
    int events = EV_ENTER | EV_LEAVE | (p->builtins ? EV_C_ENTER | EV_C_LEAVE : 0);
    if (monitor_register(TOOL, EV_ENTER, on_enter) < 0 ||
        monitor_register(TOOL, EV_LEAVE, on_leave) < 0)
        goto error;
    if (p->builtins && (monitor_register(TOOL, EV_C_ENTER, on_c_enter) < 0 ||
                        monitor_register(TOOL, EV_C_LEAVE, on_c_leave) < 0))
        goto error;
    generation++;
    if (!p->threads) {
        fp_thread *t = funcprof_thread_attach(p, PyThreadState_Get());
        if (t == NULL)
            goto error;
        tl_thread = t;
        tl_generation = generation;
    }
    if (monitor_set_events(TOOL, events) < 0)
        goto error;
    return 0;
error:
    funcprof_backend_stop(p);
    return -1;
}

void funcprof_backend_stop(fp_profile *p)
{
    monitor_release(TOOL, TOOL_NAME, EV_ALL, NULL, 0);
    generation++;
}

/* ---- benchmark helper ---------------------------------------------------------------- */

/* Callbacks that do nothing, on the same events: what sys.monitoring's
 * dispatch alone costs, below which no monitoring profiler can go. */
static PyObject *on_nothing(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    Py_RETURN_NONE;
}

static PyObject *set_empty_hook(PyObject *module, PyObject *on)
{
    int enable = PyObject_IsTrue(on);
    if (enable < 0)
        return NULL;
    if (!enable) {
        monitor_release(TOOL, "pyrometer empty hook", EV_ALL, NULL, 0);
        Py_RETURN_NONE;
    }
    if (monitor_claim(TOOL, "pyrometer empty hook", "_empty_profile_hook") < 0)
        return NULL;
    if (monitor_register(TOOL, EV_ALL, on_nothing) < 0 || monitor_set_events(TOOL, EV_ALL) < 0) {
        monitor_release(TOOL, "pyrometer empty hook", EV_ALL, NULL, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef backend_functions[] = {
    {"_empty_profile_hook", set_empty_hook, METH_O,
     "_empty_profile_hook(on): install (or remove) sys.monitoring callbacks that do nothing, on "
     "the events %prun uses; for benchmarks."},
    {NULL, NULL, 0, NULL},
};

int funcprof_backend_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, backend_functions);
}
