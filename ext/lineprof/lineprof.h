/* lineprof/lineprof.h - the line profiler: its core (lineprof/engine.c: the hook, the
 * per-line counters, pyrometer.LineProfiler) and the %lprun magic (lineprof/magic.c:
 * target resolution, rendering, pyrometer.LineStats). Shared declarations.
 */
#ifndef PYROMETER_LINEPROF_H
#define PYROMETER_LINEPROF_H

#include "module.h"

#include <stdint.h>

/* ---- lineprof/engine.c ------------------------------------------------------------ */

/* What the profiler measured for one target code object. Read only after
 * lineprof_disable(); every pointer is borrowed from the profiler. */
typedef struct {
    PyObject *code;       /* the code object */
    PyObject *globals;    /* the defining function's __globals__, or NULL */
    int first_line;       /* co_firstlineno */
    int nlines;           /* hits[i], ns[i] belong to line first_line + i */
    const uint64_t *hits; /* line events seen on that line */
    const int64_t *ns;    /* time charged to that line, in nanoseconds */
} lineprof_result;

/* Returns a new, empty, disabled pyrometer.LineProfiler, or NULL with an
 * exception set. */
PyObject *lineprof_new(void);

/* Adds a code object to profile; globals (may be NULL) is kept to find its
 * source through linecache. Returns 1 if added, 0 if it was already there, or
 * -1 with an exception set (also while the profiler is enabled). */
int lineprof_add_code(PyObject *prof, PyObject *code, PyObject *globals);

/* Installs the hook on every thread of the interpreter (current, existing and
 * future threading.Thread ones) and counts from now on. Returns 0, or -1 with
 * an exception set and nothing installed. */
int lineprof_enable(PyObject *prof);

/* Removes the hook from every thread and puts back what was there before.
 * Never fails; safe to call when not enabled. A pending exception is kept. */
void lineprof_disable(PyObject *prof);

/* The number of target code objects, and the results of the i-th one (in the
 * order they were added). lineprof_get returns 0, or -1 if i is out of range. */
Py_ssize_t lineprof_count(PyObject *prof);
int lineprof_get(PyObject *prof, Py_ssize_t i, lineprof_result *out);

/* A sentence describing what the hook could not do while enabled (it never
 * raises), or NULL if all went well. Borrowed, valid until the next enable. */
const char *lineprof_problem(PyObject *prof);

/* Imports a module by its absolute dotted name and returns it (a new
 * reference), or NULL with an exception set. Unlike PyImport_ImportModule it
 * does not look for __builtins__ in the calling frame's globals, so it works
 * when the magic runs from code exec'd in a bare dict. */
PyObject *lineprof_import(const char *name);

/* Registers pyrometer.LineProfiler and the test helpers, then %lprun. */
int lineprof_module_exec(PyObject *module);

/* ---- lineprof/magic.c --------------------------------------------------------------- */

/* Registers %lprun and pyrometer.LineStats. Returns 0, or -1 with an
 * exception set. */
int lprun_module_exec(PyObject *module);

/* Resolves a profiling target (function, method, classmethod, staticmethod,
 * property, class, module, functools.partial or wraps-decorated function,
 * code object) and adds its code objects to prof. what names the target in
 * error messages. Returns the number of code objects added (>= 1), or -1
 * with pyrometer.UsageError (or another exception) set. */
int lprun_add_target(PyObject *prof, PyObject *target, const char *what);

/* Returns a new pyrometer.LineStats holding prof's results (timings in
 * line_profiler's layout, unit 1e-9), or NULL with an exception set. */
PyObject *lprun_stats_new(PyObject *prof);

#endif
