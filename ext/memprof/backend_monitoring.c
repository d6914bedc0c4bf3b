/* memprof/backend_monitoring.c - the memory profiler's backend on CPython
 * 3.12+: sys.monitoring (PEP 669) events enabled as *local* events on the
 * target code objects (and those nested in them) only.
 *
 * Code outside the targets runs untouched, as the 3.11 backend's PEP 523
 * gate arranged: a callee of a target line raises no event, and what it
 * allocates is charged to that line. PY_START/PY_RESUME start an
 * activation, LINE moves it (so does a JUMP backwards within one line, as
 * sys.settrace and so memory_profiler see it: an inlined comprehension's
 * next iteration), PY_RETURN/PY_YIELD end it; PY_THROW and
 * PY_UNWIND (global events before 3.15) cover generators thrown into and
 * exceptions leaving a target. An activation is matched by its code object.
 */
#include "memprof/backend.h"
#include "monitor.h"

#define TOOL MONITOR_ID_MEMPROF

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
#define EV_EXC_LOCAL  (EV_THROW | EV_UNWIND)
#define EV_EXC_GLOBAL 0
#else
#define EV_EXC_LOCAL  0
#define EV_EXC_GLOBAL (EV_THROW | EV_UNWIND)
#endif

/* What is installed: the session's targets and the tool name it holds the id
 * under. Owned by the profiled thread (and the GIL). */
static memprof_targets *installed;
static const char *installed_name;

/* The line an instruction offset argument is on. */
static inline int line_at(PyObject *code, PyObject *offset)
{
    return PyCode_Addr2Line((PyCodeObject *)code, monitor_int(offset));
}

/* ---- the callbacks: (code, offset | line [, exception]) ------------------------------
 * The engine's event functions ignore other threads; none raises. */

static PyObject *lines_start(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    memprof_lines_on_start(args[0], args[0], line_at(args[0], args[1]));
    Py_RETURN_NONE;
}

static PyObject *lines_line(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    memprof_lines_on_line(args[0], monitor_int(args[1]));
    Py_RETURN_NONE;
}

static PyObject *lines_jump(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    int line = monitor_jump_line(args[0], args[1], args[2]);
    if (line == 0)
        return Py_NewRef(monitor_disable());
    memprof_lines_on_line(args[0], line);
    Py_RETURN_NONE;
}

static PyObject *lines_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    memprof_lines_on_leave(args[0], args[0]);
    Py_RETURN_NONE;
}

static PyObject *spans_start(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    memprof_spans_on_start(args[0], args[0]);
    Py_RETURN_NONE;
}

static PyObject *spans_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw)
{
    memprof_spans_on_leave(args[0]);
    Py_RETURN_NONE;
}

/* ---- installing --------------------------------------------------------------------- */

static void uninstall(void)
{
    if (installed == NULL)
        return;
    size_t n = memprof_targets_ncodes(installed);
    PyObject **codes = malloc(sizeof *codes * (n ? n : 1));
    if (codes != NULL) {
        for (size_t i = 0; i < n; i++)
            codes[i] = memprof_targets_code(installed, i);
    }
    monitor_release(TOOL, installed_name, EV_ALL, codes, codes ? (Py_ssize_t)n : 0);
    free(codes);
    installed = NULL;
}

/* Claims the tool id as name (for magic's messages), registers start/line/
 * jump/leave (line and jump may be NULL) and sets `local` on every code object of ts.
 * Returns 0, or -1 with an exception set and nothing installed. */
static int install(memprof_targets *ts, const char *name, const char *magic, int local,
                   monitor_fn start, monitor_fn line, monitor_fn jump, monitor_fn leave)
{
    if (monitor_claim(TOOL, name, magic) < 0)
        return -1;
    monitor_jump_forget();
    installed = ts;
    installed_name = name;
    if (monitor_register(TOOL, EV_START | EV_RESUME | EV_THROW, start) < 0 ||
        monitor_register(TOOL, EV_LEAVE | EV_UNWIND, leave) < 0 ||
        (line != NULL && monitor_register(TOOL, EV_LINE, line) < 0) ||
        (jump != NULL && monitor_register(TOOL, EV_JUMP, jump) < 0))
        goto error;
    size_t n = memprof_targets_ncodes(ts);
    for (size_t i = 0; i < n; i++) {
        if (monitor_set_local_events(TOOL, memprof_targets_code(ts, i), local | EV_EXC_LOCAL) < 0)
            goto error;
    }
    if (EV_EXC_GLOBAL != 0 && monitor_set_events(TOOL, EV_EXC_GLOBAL) < 0)
        goto error;
    return 0;
error:
    uninstall();
    return -1;
}

int memprof_backend_lines_start(memprof_targets *ts)
{
    return install(ts, "pyrometer %mprun", "%mprun",
                   EV_START | EV_RESUME | EV_LEAVE | EV_LINE | EV_JUMP, lines_start, lines_line,
                   lines_jump, lines_leave);
}

void memprof_backend_lines_stop(void)
{
    uninstall();
}

int memprof_backend_spans_start(memprof_targets *ts)
{
    return install(ts, "pyrometer %%mprof", "%%mprof", EV_START | EV_RESUME | EV_LEAVE, spans_start,
                   NULL, NULL, spans_leave);
}

void memprof_backend_spans_stop(void)
{
    uninstall();
}
