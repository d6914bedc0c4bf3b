/* memprof/memprof.h - the memory profiler's engine: allocator hooks, line
 * attribution, function spans and RSS probes behind %memit, %mprun and
 * %%mprof (whose magics live in memprof/magic.c).
 *
 * One profiling session at a time per process: memprof_start() fails with
 * memprof_busy() set while another session runs (nested memory magics).
 */
#ifndef PYROMETER_MEMPROF_H
#define PYROMETER_MEMPROF_H

#include "module.h"

#include <stdint.h>

/* ---- allocator hooks ------------------------------------------------------ */

typedef struct {
    int64_t live; /* bytes allocated since start and not yet freed */
    int64_t peak; /* highest `live` since start or memprof_reset_peak() */
} memprof_counters;

/* Installs the hooks on PyMem's RAW, MEM and OBJ domains (chaining to the
 * current allocators) and, if NumPy is already imported, a NumPy data
 * handler. Counters start at zero. Returns 0, or -1 with an exception set
 * (nothing installed). Needs the GIL. */
int memprof_start(void);

/* Removes the hooks (restores the previous allocators and NumPy handler).
 * Safe to call when not started. Needs the GIL. */
void memprof_stop(void);

/* 1 while a session (memprof_start .. memprof_stop) is running. */
int memprof_busy(void);

/* 1 if the running session also tracks NumPy's data buffers. */
int memprof_numpy_tracked(void);

/* 1 if a pointer table could not grow (out of memory) and some blocks went
 * untracked during the last session. */
int memprof_lost(void);

/* Copies the counters; callable from any thread. */
void memprof_get(memprof_counters *out);

/* Sets peak = live, for measuring a peak from now on. */
void memprof_reset_peak(void);

/* ---- process memory ------------------------------------------------------- */

/* Resident set size in bytes from /proc/self/statm, minus the resident pages
 * of the profiler's own pointer tables; -1 if /proc is unreadable. Any
 * thread. */
int64_t memprof_rss(void);

/* Resident bytes of the profiler's own pointer tables (0 between sessions). */
int64_t memprof_overhead(void);

/* Summed RSS of all descendant processes, in bytes (0 if none). */
int64_t memprof_children_rss(void);

/* Resets the kernel's peak-RSS mark (VmHWM) by writing "5" to
 * /proc/self/clear_refs. Returns 0, or -1 if the kernel refuses. */
int memprof_hwm_reset(void);

/* VmHWM from /proc/self/status in bytes, or -1. */
int64_t memprof_hwm(void);

/* Wall-clock time (seconds since the epoch) and monotonic time. */
double memprof_wall(void);
double memprof_mono(void);

/* ---- sampling thread -------------------------------------------------------- */

typedef struct {
    double t;     /* wall-clock time */
    int64_t rss;  /* bytes (with children when asked) */
    int64_t heap; /* memprof counters' live bytes */
} memprof_sample;

typedef struct memprof_sampler memprof_sampler;

/* Starts a thread sampling RSS (plus children's if `children`) and the heap
 * every `interval` seconds. If `keep`, every sample is kept. If
 * `duration` > 0, sampling stops after that many seconds. Returns NULL with
 * an exception set on failure. Needs the GIL (only to raise). */
memprof_sampler *memprof_sampler_start(double interval, int children, int keep, double duration);

/* Stops and joins the thread, takes a last sample (unless past `duration`)
 * and reports: the highest RSS seen, the heap peak seen by the thread's
 * last sample (only meaningful with a duration), and the kept samples (the
 * caller owns *samples, free() it). Frees the sampler. */
void memprof_sampler_stop(memprof_sampler *s, int64_t *max_rss, int64_t *heap_peak_at_end,
                          memprof_sample **samples, size_t *nsamples);

/* ---- targets: line attribution (%mprun) and spans (%%mprof) --------------- */

typedef struct {
    uint64_t occurrences; /* times the line finished running */
    int64_t mem;          /* highest RSS seen when the line finished (bytes) */
    int64_t inc;          /* summed RSS change across the line's runs (bytes) */
    uint64_t allocated;   /* bytes allocated while the line ran, callees included */
    uint64_t freed;       /* bytes freed while the line ran */
    int64_t peak;         /* highest heap rise above the line's start, in one run */
} memprof_line;

typedef struct {
    double start_t, end_t;      /* wall clock */
    int64_t start_mem, end_mem; /* RSS bytes */
    int level;                  /* nesting depth among the targets, from 0 */
} memprof_span;

typedef struct {
    PyObject *code;      /* owned: the function's code object */
    int first;           /* first line number covered by `lines` */
    int nlines;          /* lines [first, first + nlines) */
    memprof_line *lines; /* owned (calloc) */
    memprof_span *spans; /* owned (malloc), nspans used of capspans */
    size_t nspans, capspans;
    int open_spans; /* spans started but not ended */
} memprof_target;

typedef struct memprof_targets memprof_targets;

/* A new, empty set of targets, or NULL with MemoryError set. */
memprof_targets *memprof_targets_new(void);
void memprof_targets_free(memprof_targets *ts);

/* Adds a function's code object (and the code objects nested in it, such as
 * comprehensions, which share its line table) covering lines
 * [first, last]. Returns the target index, or -1 with an exception set. */
int memprof_targets_add(memprof_targets *ts, PyObject *code, int first, int last);

size_t memprof_targets_count(const memprof_targets *ts);
memprof_target *memprof_targets_get(memprof_targets *ts, size_t i);

/* Line attribution: from now on, on this thread, each allocation is charged
 * to the running line of the innermost target activation, and RSS is
 * recorded per line like memory_profiler. Only target code raises events
 * (local sys.monitoring events on 3.12+; on 3.11 a trace function that a
 * PEP 523 frame evaluator turns on only in target frames), so their callees
 * run untraced. Needs memprof_start() first. `children` adds children's
 * RSS. Returns 0, or -1 with an exception set (pyrometer.UsageError naming
 * the holder when another tool holds the sys.monitoring tool id). */
int memprof_lines_start(memprof_targets *ts, int children);
/* Stops it and puts back what the backend replaced. */
void memprof_lines_stop(void);

/* Spans: from now on, on this thread, records when each target is entered
 * and left, with RSS. Returns 0, or -1 with an exception set. */
int memprof_spans_start(memprof_targets *ts);
void memprof_spans_stop(void);

/* Failures the hooks could not raise ("hooks never raise"), reported after
 * a session: 1 if the line or span recorder dropped data (out of memory,
 * recursion deeper than it follows). */
int memprof_trace_lost(void);

/* memprof/magic.c: registers %memit, %mprun and %%mprof. Returns 0, or -1 with an
 * exception set. */
int mprun_module_exec(PyObject *module);

#endif
