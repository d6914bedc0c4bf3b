/* funcprof/backend_trace311.c - the function profiler's CPython 3.11 backend:
 * a C profile hook (PyEval_SetProfile's private per-thread form) on this
 * thread or on every thread, and the frame peeking that keeps it cheap.
 *
 * Built on 3.11 only; meson builds backend_monitoring.c on 3.12+, where
 * sys.monitoring replaces both the hook and the peeking.
 */
#include "funcprof/backend.h"

#include <frameobject.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "backend_trace311.c is for CPython 3.11; 3.12+ builds backend_monitoring.c"
#endif

const char funcprof_backend_name[] = "PyEval_SetProfile";

/* ---- reading a frame's code object --------------------------------------------
 * PyFrame_GetCode() is a call plus two refcount updates on every Python call;
 * the hook reads the field through mirrors of 3.11's layouts
 * (Include/internal/pycore_frame.h), once funcprof_backend_exec() has
 * checked them against PyFrame_GetCode(). */

typedef struct {
    PyObject *f_func, *f_globals, *f_builtins, *f_locals;
    PyCodeObject *f_code;
} fp_iframe311;

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    PyFrameObject *f_back;
    fp_iframe311 *f_frame;
} fp_frameobj311;

static int direct_code; /* set once at module exec */

static void check_direct_code(void)
{
    PyFrameObject *f = PyEval_GetFrame();
    if (f == NULL)
        return;
    PyCodeObject *code = PyFrame_GetCode(f);
    direct_code =
        ((fp_frameobj311 *)f)->f_frame != NULL && ((fp_frameobj311 *)f)->f_frame->f_code == code;
    Py_DECREF(code);
}

/* Returns the frame's code object, borrowed (the frame holds it). */
static inline PyObject *frame_code(PyFrameObject *frame)
{
    if (direct_code)
        return (PyObject *)((fp_frameobj311 *)frame)->f_frame->f_code;
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code);
    return (PyObject *)code;
}

/* ---- the hook ---------------------------------------------------------------------- */

/* Runs with the GIL held; no malloc (except when a table grows), no Python
 * call, no lock; never raises and never sets an exception. */
static int legacy_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    fp_thread *t = (fp_thread *)obj;
    if (__builtin_expect(t->off, 0))
        return 0;
    switch (what) {
    case PyTrace_CALL:
        fp_enter_code(t, frame_code(frame));
        break;
    case PyTrace_RETURN:
        fp_leave(t);
        break;
    case PyTrace_C_CALL:
        if (t->builtins && PyCFunction_Check(arg)) {
            PyCFunctionObject *fn = (PyCFunctionObject *)arg;
            fp_enter_c(t, fn->m_ml, fn->m_self, fn->m_module);
        }
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (t->builtins && PyCFunction_Check(arg))
            fp_leave(t);
        break;
    default:
        break;
    }
    return 0;
}

/* The thread object our hook runs with on ts, or NULL. Only attach() puts
 * legacy_hook on a thread, and always with an fp_thread. */
static fp_thread *owner(PyThreadState *ts)
{
    if (ts->c_profilefunc == legacy_hook && ts->c_profileobj != NULL)
        return (fp_thread *)ts->c_profileobj;
    return NULL;
}

/* Puts the hook on ts for p. keep_saved = 0 records "no hook before"
 * instead of the one ts has now. Returns 0, or -1 with an exception set. */
static int attach(fp_profile *p, PyThreadState *ts, int keep_saved)
{
    fp_thread *t = funcprof_thread_attach(p, ts);
    if (t == NULL)
        return -1;
    t->saved_func = keep_saved ? ts->c_profilefunc : NULL;
    Py_XSETREF(t->saved_obj, keep_saved ? Py_XNewRef(ts->c_profileobj) : NULL);
    if (_PyEval_SetProfile(ts, legacy_hook, (PyObject *)t) < 0) {
        t->prof = NULL;
        Py_CLEAR(t->saved_obj);
        return -1;
    }
    return 0;
}

/* ---- threads started while a --threads profile runs ---------------------------------- */

/* profile(frame, event, arg) installed with threading.setprofile() while a
 * --threads profile runs: on a new thread's first event it attaches the C
 * hook to that thread and hands it the event. */
static PyObject *installer_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    fp_profile *p = (fp_profile *)self;
    PyThreadState *ts = PyThreadState_Get();
    static const char *const names[] = {"call",   "exception",   "line",     "return",
                                        "c_call", "c_exception", "c_return", "opcode"};

    if (!p->enabled || funcprof_active != p) {
        if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
            PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (attach(p, ts, 0) < 0) {
        PyErr_Clear();
        p->failed = 1;
        if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
            PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (nargs == 3 && PyUnicode_Check(args[1])) {
        for (int what = 0; what < (int)(sizeof names / sizeof names[0]); what++) {
            if (PyUnicode_CompareWithASCIIString(args[1], names[what]) == 0) {
                PyObject *frame = what == PyTrace_CALL || what == PyTrace_RETURN ? args[0] : NULL;
                if (frame != NULL && !PyFrame_Check(frame))
                    break;
                fp_thread *t = owner(ts);
                if (t != NULL)
                    legacy_hook((PyObject *)t, (PyFrameObject *)frame, what, args[2]);
                break;
            }
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef installer_def = {
    "_pyrometer_thread_profile", (PyCFunction)(void (*)(void))installer_call, METH_FASTCALL, NULL};

/* threading.setprofile(fn); stores the previous hook in *saved when saved is
 * not NULL. Returns 0, or -1 with an exception set. */
static int set_threading_profile(PyObject *fn, PyObject **saved)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL)
        return -1;
    if (saved != NULL) {
        *saved = PyObject_CallMethod(threading, "getprofile", NULL);
        if (*saved == NULL) {
            Py_DECREF(threading);
            return -1;
        }
    }
    PyObject *r = PyObject_CallMethod(threading, "setprofile", "(O)", fn);
    Py_DECREF(threading);
    if (r == NULL) {
        if (saved != NULL)
            Py_CLEAR(*saved);
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---- the backend interface ------------------------------------------------------------ */

/* Takes p's hook off every thread it is on, putting back what each had. */
static void detach_all(fp_profile *p)
{
    PyThreadState *cur = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(cur);
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        fp_thread *t = owner(ts);
        if (t != NULL && t->prof == p) {
            if (_PyEval_SetProfile(ts, t->saved_func, t->saved_obj) < 0)
                PyErr_Clear();
        } else if (p->installer != NULL && ts->c_profileobj == p->installer) {
            if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
                PyErr_Clear();
        }
    }
}

int funcprof_backend_start(fp_profile *p)
{
    if (p->threads) {
        p->installer = PyCFunction_New(&installer_def, (PyObject *)p);
        if (p->installer == NULL)
            goto error;
        if (set_threading_profile(p->installer, &p->saved_threading) < 0)
            goto error;
        PyThreadState *cur = PyThreadState_Get();
        PyInterpreterState *interp = PyThreadState_GetInterpreter(cur);
        for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
             ts = PyThreadState_Next(ts)) {
            if (attach(p, ts, 1) < 0)
                goto error;
        }
    } else if (attach(p, PyThreadState_Get(), 1) < 0) {
        goto error;
    }
    return 0;
error:
    funcprof_backend_stop(p);
    return -1;
}

void funcprof_backend_stop(fp_profile *p)
{
    PyObject *exc, *val, *tb;
    PyErr_Fetch(&exc, &val, &tb);
    detach_all(p);
    if (p->installer != NULL) {
        if (set_threading_profile(p->saved_threading ? p->saved_threading : Py_None, NULL) < 0)
            PyErr_Clear();
    }
    Py_CLEAR(p->saved_threading);
    Py_CLEAR(p->installer);
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        Py_CLEAR(t->saved_obj);
        t->saved_func = NULL;
    }
    PyErr_Restore(exc, val, tb);
}

/* ---- benchmark helper ---------------------------------------------------------------- */

/* An empty C profile hook, for the benchmark: what CPython's tracing mode
 * alone costs (frame objects, unspecialised dispatch), below which no
 * PyEval_SetProfile profiler can go. */
static int empty_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    return 0;
}

static PyObject *set_empty_hook(PyObject *module, PyObject *on)
{
    int enable = PyObject_IsTrue(on);
    if (enable < 0)
        return NULL;
    if (enable && funcprof_active != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a pyrometer profile is running");
        return NULL;
    }
    if (_PyEval_SetProfile(PyThreadState_Get(), enable ? empty_hook : NULL, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef backend_functions[] = {
    {"_empty_profile_hook", set_empty_hook, METH_O,
     "_empty_profile_hook(on): install (or remove) a C profile hook that does nothing; for "
     "benchmarks."},
    {NULL, NULL, 0, NULL},
};

int funcprof_backend_exec(PyObject *module)
{
    check_direct_code();
    return PyModule_AddFunctions(module, backend_functions);
}
