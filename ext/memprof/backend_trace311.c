/* memprof/backend_trace311.c - the memory profiler's CPython 3.11 backend: a C
 * trace function (%mprun) or profile function (%%mprof) on the profiled
 * thread, and for %mprun a PEP 523 frame evaluator (the gate) that switches
 * tracing on only in target frames.
 *
 * Built on 3.11 only; meson builds backend_monitoring.c on 3.12+, where
 * local sys.monitoring events do what the gate does here: code outside the
 * targets runs untraced.
 */
#include "memprof/backend.h"

#include <frameobject.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "backend_trace311.c is for CPython 3.11; 3.12+ builds backend_monitoring.c"
#endif

/* Owned by the profiled thread (and the GIL). */
static memprof_targets *lines_ts; /* while the line trace function is on */
static Py_tracefunc saved_trace;
static PyObject *saved_traceobj; /* owned while installed */
static Py_tracefunc saved_profile;
static PyObject *saved_profileobj; /* owned while installed */

/* ---- %mprun: the trace function ------------------------------------------------ */

static int lines_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    switch (what) {
    case PyTrace_CALL: {
        PyCodeObject *code = PyFrame_GetCode(frame);
        memprof_lines_on_start(frame, (PyObject *)code, PyFrame_GetLineNumber(frame));
        Py_DECREF(code);
        return 0;
    }
    case PyTrace_LINE:
        memprof_lines_on_line(frame, PyFrame_GetLineNumber(frame));
        return 0;
    case PyTrace_RETURN: {
        PyCodeObject *code = PyFrame_GetCode(frame);
        memprof_lines_on_leave(frame, (PyObject *)code);
        Py_DECREF(code);
        return 0;
    }
    default:
        return 0;
    }
}

/* ---- %mprun: the gate -------------------------------------------------------------
 * The interpreter pays for tracing on every instruction of every frame while
 * a trace function is set. A PEP 523 frame evaluator lets us switch tracing
 * on only for frames of target code: other frames (library code called from
 * a target line) run untraced, while their allocations still go to the
 * target's current line. The evaluator reads the code object from the head
 * of 3.11's _PyInterpreterFrame, whose layout gate_on() checks against a
 * live frame first. */

typedef struct {
    PyObject *f_func, *f_globals, *f_builtins, *f_locals;
    PyCodeObject *f_code;
} frame311_head;

typedef struct {
    PyObject_HEAD
    PyFrameObject *f_back;
    struct _PyInterpreterFrame *f_frame;
} frameobject311_head;

static PyThreadState *gate_tstate; /* the traced thread, while the gate is on */
static _PyFrameEvalFunction saved_eval;

static PyObject *gate_eval(PyThreadState *ts, struct _PyInterpreterFrame *frame, int throwflag)
{
    if (ts != gate_tstate || lines_ts == NULL)
        return _PyEval_EvalFrameDefault(ts, frame, throwflag);
    PyCodeObject *code = ((frame311_head *)frame)->f_code;
    _PyCFrame *cf = ts->cframe;
    uint8_t saved = cf->use_tracing;
    /* The callee's _PyCFrame copies its use_tracing from ours. */
    cf->use_tracing = memprof_targets_has(lines_ts, code) ? 255 : 0;
    PyObject *res = _PyEval_EvalFrameDefault(ts, frame, throwflag);
    cf->use_tracing = saved;
    return res;
}

/* Installs the gate if no other frame evaluator is set and the frame layout
 * is the one we know. */
static void gate_on(PyThreadState *tstate)
{
    PyInterpreterState *interp = PyThreadState_GetInterpreter(tstate);
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed; NULL when called from C */
    if (_PyInterpreterState_GetEvalFrameFunc(interp) != _PyEval_EvalFrameDefault)
        return;
    if (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        int ok = ((frame311_head *)((frameobject311_head *)f)->f_frame)->f_code == code;
        Py_DECREF(code);
        if (!ok)
            return;
    }
    saved_eval = _PyEval_EvalFrameDefault;
    gate_tstate = tstate;
    _PyInterpreterState_SetEvalFrameFunc(interp, gate_eval);
}

static void gate_off(void)
{
    if (gate_tstate == NULL)
        return;
    _PyInterpreterState_SetEvalFrameFunc(PyThreadState_GetInterpreter(gate_tstate), saved_eval);
    gate_tstate = NULL;
}

int memprof_backend_lines_start(memprof_targets *ts)
{
    PyThreadState *tstate = PyThreadState_Get();
    lines_ts = ts;
    saved_trace = tstate->c_tracefunc;
    saved_traceobj = Py_XNewRef(tstate->c_traceobj);
    PyEval_SetTrace(lines_trace, NULL);
    gate_on(tstate);
    return 0;
}

void memprof_backend_lines_stop(void)
{
    gate_off();
    PyEval_SetTrace(saved_trace, saved_traceobj);
    Py_CLEAR(saved_traceobj);
    saved_trace = NULL;
    lines_ts = NULL;
}

/* ---- %%mprof: the profile function -------------------------------------------------- */

static int spans_profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what == PyTrace_CALL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        memprof_spans_on_start(frame, (PyObject *)code);
        Py_DECREF(code);
    } else if (what == PyTrace_RETURN) {
        memprof_spans_on_leave(frame);
    }
    return 0;
}

int memprof_backend_spans_start(memprof_targets *ts)
{
    PyThreadState *tstate = PyThreadState_Get();
    saved_profile = tstate->c_profilefunc;
    saved_profileobj = Py_XNewRef(tstate->c_profileobj);
    PyEval_SetProfile(spans_profile, NULL);
    return 0;
}

void memprof_backend_spans_stop(void)
{
    PyEval_SetProfile(saved_profile, saved_profileobj);
    Py_CLEAR(saved_profileobj);
    saved_profile = NULL;
}
