/* monitor.h - what the three sys.monitoring backends (CPython 3.12+) share:
 * claiming and giving back a tool id, callbacks that are plain C functions,
 * and the global and local event sets. Built only for 3.12 and later.
 */
#ifndef PYROMETER_MONITOR_H
#define PYROMETER_MONITOR_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030C0000
#error "monitor.c is the sys.monitoring helper for CPython 3.12+; 3.11 uses the trace backends"
#endif

/* The tool id of each profiler: %prun takes PROFILER_ID as cProfile does;
 * %lprun and %mprun take two of the ids PEP 669 leaves unnamed, so that the
 * three can run nested, as on 3.11 (where they use different hooks). */
#define MONITOR_ID_FUNCPROF 2
#define MONITOR_ID_LINEPROF 3
#define MONITOR_ID_MEMPROF  4

/* The bit of an event (PY_MONITORING_EVENT_*) in an event set. */
#define MONITOR_BIT(ev) (1 << (ev))

/* A callback's C function: called with sys.monitoring's arguments for the
 * event (args[0] is the code object). It returns a new reference to None
 * (or, from a JUMP callback, monitor_disable()), never raises and never
 * calls Python. */
typedef PyObject *(*monitor_fn)(PyObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames);

/* sys.monitoring.use_tool_id(id, name). Returns 0, or -1 with
 * pyrometer.UsageError set, whose message starts with `magic` (e.g. "%prun")
 * and names the tool that holds the id, or another exception. */
int monitor_claim(int id, const char *name, const char *magic);

/* Registers fn as the callback of tool `id` for each event whose bit is in
 * `events`. Returns 0, or -1 with an exception set (the callbacks already
 * registered stay until monitor_release). */
int monitor_register(int id, int events, monitor_fn fn);

/* sys.monitoring.set_events(id, events). Returns 0, or -1 with an exception. */
int monitor_set_events(int id, int events);

/* sys.monitoring.set_local_events(id, code, events). Returns 0, or -1 with
 * an exception. */
int monitor_set_local_events(int id, PyObject *code, int events);

/* Gives the id back: clears its global events, the local events of each of
 * the n code objects, every callback named in `events`, and frees the id,
 * if it is still held under `name` (or was freed meanwhile). Returns 1 if
 * it was still held under `name`, 0 if someone freed or took it. Never
 * fails; a pending exception is kept. */
int monitor_release(int id, const char *name, int events, PyObject *const *codes, Py_ssize_t n);

/* sys.monitoring.MISSING (borrowed, immortal while the module lives), or
 * NULL with an exception set. */
PyObject *monitor_missing(void);

/* sys.monitoring.DISABLE (borrowed), valid once a tool id was claimed. */
PyObject *monitor_disable(void);

/* A JUMP event (code, from, to): returns the line number when it jumps
 * backwards within one line (a one-line loop, an inlined comprehension's
 * next iteration), which sys.settrace reports as a line event and so do
 * the profilers; 0 for any other jump, which the callback should then
 * disable (return monitor_disable()) as CPython's own settrace shim does.
 * Lines of a jump seen before come from a small cache. Never raises. */
int monitor_jump_line(PyObject *code, PyObject *from, PyObject *to);

/* Forgets the cache of monitor_jump_line (code objects may have died).
 * Called when a profiler starts. */
void monitor_jump_forget(void);

/* The value of a line number or offset argument: a small int, read without
 * a call. */
static inline int monitor_int(PyObject *v)
{
    if (PyUnstable_Long_IsCompact((PyLongObject *)v))
        return (int)PyUnstable_Long_CompactValue((PyLongObject *)v);
    return (int)PyLong_AsLong(v);
}

#endif
