/* lineprof/backend.h - the contract between the line profiler's engine
 * (lineprof/engine.c: targets, counters, LineProfiler) and its interpreter
 * backend: backend_trace311.c (a C trace function, CPython 3.11) or
 * backend_monitoring.c (sys.monitoring local events, 3.12+); meson builds
 * one of them.
 *
 * Accounting: each thread keeps a stack of the target activations it runs.
 * A line event charges the time since the previous event to the line that
 * was running and counts a hit on the new one. When a target function
 * recurses, the outer activation's clock pauses while the inner one runs, so
 * a function's line times add up to its wall time exactly once. A resumed
 * generator or coroutine carries on charging the line it was suspended on.
 */
#ifndef PYROMETER_LINEPROF_BACKEND_H
#define PYROMETER_LINEPROF_BACKEND_H

#include "lineprof/lineprof.h"

#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define LP_HAVE_TSC 1
#endif

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- clock -------------------------------------------------------------
 *
 * The hook reads a raw tick counter: the TSC on x86-64 when the CPU says it is
 * invariant (about 12 ns here against 30 ns for clock_gettime), else
 * CLOCK_MONOTONIC in ns. Ticks are turned into ns when the profiler stops,
 * with a ratio measured against CLOCK_MONOTONIC since the module loaded. */

extern int lineprof_use_tsc; /* set once at init (engine.c) */

static inline int64_t lp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t lp_now(void)
{
#ifdef LP_HAVE_TSC
    if (LIKELY(lineprof_use_tsc))
        return (int64_t)__rdtsc();
#endif
    return lp_mono_ns();
}

/* ---- data ---------------------------------------------------------------- */

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
    void *frame; /* what identifies the activation, only compared: its frame on 3.11
                    (borrowed), its code object under sys.monitoring */
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
typedef struct LineProfiler {
    PyObject_HEAD
    lp_code **codes; /* owned, ncodes entries */
    int ncodes;
    int capcodes;
    /* Open-addressing table, code object pointer -> lp_code. */
    PyObject **keys; /* borrowed from codes[i]->code; NULL = empty */
    lp_code **vals;
    size_t mask;
    int enabled;
    int problems; /* LP_PROBLEM_* seen since enable */
    /* 3.11 backend */
    lp_saved *saved; /* owned: one per thread we installed on at enable */
    int nsaved;
    PyObject *prev_thread_hook; /* owned: threading.gettrace() before enable */
    PyObject *bootstrap;        /* owned: threading.settrace() hook while enabled */
    /* sys.monitoring backend */
    PyObject *tracers;              /* owned while enabled: list of the threads' LineTracers */
    struct LineProfiler *suspended; /* owned while enabled: the one this one interrupted */
    char problem_msg[256];
} LineProfiler;

/* The per-thread state: on 3.11 the hook's `obj`, owned by the thread state
 * it is installed on (c_traceobj); under sys.monitoring owned by
 * LineProfiler.tracers and found through a thread-local pointer. Touched
 * only by its thread. */
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

/* ---- engine.c: what the backends use ---------------------------------------------- */

extern PyTypeObject *lineprof_tracer_type; /* owned; set at module exec */

/* Returns a new LineTracer for prof with an empty stack, or NULL with an
 * exception set. */
PyObject *lineprof_tracer_new(LineProfiler *prof);

/* Grows tr's stack. Returns 0, or -1 (no exception set: called from hooks). */
int lineprof_grow_stack(LineTracer *tr);

/* An activation of target code c starts (or resumes, with `line` the index of
 * the line it was suspended on, else -1); frame identifies it (see lp_rec).
 * Never raises. */
void lineprof_enter(LineTracer *tr, void *frame, lp_code *c, int line, int64_t now);

/* The target code object's record, or NULL when code is not a target. */
static inline size_t lp_ptr_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p >> 4;
    x *= (uintptr_t)0x9E3779B97F4A7C15ULL;
    return (size_t)(x ^ (x >> 29));
}

static inline lp_code *lp_lookup(LineProfiler *p, PyObject *code)
{
    if (p->keys == NULL)
        return NULL;
    size_t i = lp_ptr_hash(code) & p->mask;
    for (;;) {
        PyObject *k = p->keys[i];
        if (k == code)
            return p->vals[i];
        if (k == NULL)
            return NULL;
        i = (i + 1) & p->mask;
    }
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

/* ---- the backend: backend_trace311.c or backend_monitoring.c -------------------- */

/* The backend's name, for messages; and the sentence reporting that its
 * hook was taken away while profiling (LP_PROBLEM_REPLACED). */
extern const char lineprof_backend_name[];
extern const char lineprof_backend_replaced[];

/* Starts counting on every thread of the interpreter (current, existing and
 * started later) and sets p->enabled. Returns 0, or -1 with an exception
 * set and nothing installed. */
int lineprof_backend_start(LineProfiler *p);

/* Stops counting on every thread, puts back what it replaced and clears
 * p->enabled. Never fails; a pending exception is kept. */
void lineprof_backend_stop(LineProfiler *p);

/* Frees what the backend keeps in p (at dealloc; p is not enabled). */
void lineprof_backend_clear(LineProfiler *p);

/* Checks the interpreter and adds the backend's module functions (benchmark
 * helpers). Returns 0, or -1 with an exception set. */
int lineprof_backend_exec(PyObject *module);

#endif
