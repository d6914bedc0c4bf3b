/* memprof/backend.h - the contract between the memory profiler's engine
 * (memprof/engine.c: allocator hooks, line and span records) and its
 * interpreter backend, which tells the engine when target code starts,
 * moves to a line and leaves: backend_trace311.c (a C trace function, and
 * a PEP 523 gate, on CPython 3.11) or backend_monitoring.c (local
 * sys.monitoring events, 3.12+); meson builds one of them.
 */
#ifndef PYROMETER_MEMPROF_BACKEND_H
#define PYROMETER_MEMPROF_BACKEND_H

#include "memprof/memprof.h"

/* ---- engine.c: the events ------------------------------------------------------
 * `frame` identifies an activation and is only compared: its frame on 3.11,
 * its code object under sys.monitoring. They do nothing on a thread other
 * than the one that started the session, never raise and never call Python. */

/* %mprun: an activation of code starts or resumes at line number `line`. */
void memprof_lines_on_start(void *frame, PyObject *code, int line);
/* %mprun: the top activation moves to line number `line`. */
void memprof_lines_on_line(void *frame, int line);
/* %mprun: an activation of code returns, yields or unwinds. */
void memprof_lines_on_leave(void *frame, PyObject *code);

/* %%mprof: an activation of code starts or resumes; the top one leaves. */
void memprof_spans_on_start(void *frame, PyObject *code);
void memprof_spans_on_leave(void *frame);

/* The code objects of the targets, with those nested in them (borrowed). */
size_t memprof_targets_ncodes(const memprof_targets *ts);
PyObject *memprof_targets_code(const memprof_targets *ts, size_t i);
/* 1 if code is one of them (a hash lookup), else 0. */
int memprof_targets_has(const memprof_targets *ts, const void *code);

/* ---- the backend ------------------------------------------------------------------ */

/* Starts feeding the line events of ts's code on this thread. Returns 0,
 * or -1 with an exception set and nothing installed. */
int memprof_backend_lines_start(memprof_targets *ts);
/* Stops it and puts back what it replaced. Never fails. */
void memprof_backend_lines_stop(void);

/* The same for the start and leave events of %%mprof. */
int memprof_backend_spans_start(memprof_targets *ts);
void memprof_backend_spans_stop(void);

#endif
