/* funcprof/backend.h - the contract between the function profiler's engine
 * (funcprof/engine.c: tables, Profile type, stats) and its interpreter
 * backend: backend_trace311.c (a PyEval_SetProfile hook, CPython 3.11) or
 * backend_monitoring.c (sys.monitoring, 3.12+); meson builds one of them.
 *
 * It holds the per-thread state and the accounting every backend feeds:
 * fp_enter_code / fp_enter_c on a call, fp_leave on a return. They are
 * inline, so a backend's hook pays no call for them.
 */
#ifndef PYROMETER_FUNCPROF_BACKEND_H
#define PYROMETER_FUNCPROF_BACKEND_H

#include "funcprof/funcprof.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define FP_HAVE_TSC 1
#else
#define FP_HAVE_TSC 0
#endif

#define NO_IDX UINT32_MAX

/* ---- the clock ------------------------------------------------------------
 * On x86 with an invariant TSC, rdtsc (about 11 ns here, against 28 ns for
 * clock_gettime). Ticks are converted to seconds once, when stats are built,
 * with the ratio measured against CLOCK_MONOTONIC over the profiled run. */

extern int funcprof_use_tsc; /* set once at module exec (engine.c) */

static inline int64_t fp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t fp_now(void)
{
#if FP_HAVE_TSC
    if (funcprof_use_tsc)
        return (int64_t)__rdtsc();
#endif
    return fp_mono_ns();
}

/* ---- per-thread state ---------------------------------------------------- */

typedef struct {
    /* hot: touched on every call and return */
    int64_t tt, ct;       /* ticks: own time, time including callees */
    uint64_t nc, nrec;    /* calls, of which recursive */
    uint32_t rec;         /* how many times it is on the stack now */
    uint32_t last_callee; /* one-entry cache: the function this one called last, */
    uint32_t last_edge;   /* and that edge */
    /* cold */
    void *key;         /* code object or PyMethodDef pointer */
    PyObject *code;    /* owned: the code object, or NULL for C functions */
    PyObject *ctype;   /* owned: type(m_self) of a C method, or NULL */
    PyObject *cmodule; /* owned: m_module of a C function, or NULL */
    const char *cname; /* ml_name of a C function */
} fp_entry;

typedef struct {
    uint32_t caller, callee;
    uint32_t rec;
    int64_t tt, ct;
    uint64_t nc, nrec;
} fp_edge;

typedef struct {
    uint64_t key;
    uint32_t idx; /* index + 1; 0 marks an empty slot */
} fp_slot;

typedef struct {
    int64_t t0, subt; /* start tick; ticks spent in callees */
    uint32_t entry, edge;
} fp_frame;

struct fp_profile;

/* The object a thread's hook receives. Protected by the GIL: the hook only
 * runs with the GIL held, and only on its own thread. */
typedef struct {
    PyObject ob_base;        /* PyObject_HEAD */
    struct fp_profile *prof; /* borrowed; NULL while not attached */
    int off;                 /* 1 once this thread's tables failed to grow */
    int builtins;
    PyThreadState *tstate;   /* borrowed, only compared */
    Py_tracefunc saved_func; /* 3.11 backend: the hook this thread had before */
    PyObject *saved_obj;     /* owned: its argument */
    fp_entry *entries;
    uint32_t n_entries, cap_entries;
    fp_slot *eslots;
    uint32_t emask;
    fp_edge *edges;
    uint32_t n_edges, cap_edges;
    fp_slot *xslots;
    uint32_t xmask;
    fp_frame *stack;
    uint32_t depth, cap_stack;
    void *last_key; /* the last function entered, and its entry */
    uint32_t last_entry;
} fp_thread;

typedef struct fp_profile {
    PyObject ob_base; /* PyObject_HEAD */
    int threads, builtins;
    int enabled;
    int failed;                /* a hook could not grow its tables */
    PyObject *thread_list;     /* owned: list of fp_thread */
    PyObject *installer;       /* 3.11 backend: owned while enabled with threads */
    PyObject *saved_threading; /* 3.11 backend: owned while enabled with threads */
    int64_t start_ticks, start_ns;
    int64_t run_ticks, run_ns; /* summed over enable/disable periods */
    PyObject *stats;           /* owned: the `stats` attribute */
} fp_profile;

/* ---- engine.c: what the backends call ---------------------------------------- */

/* The enabled profile, or NULL. Protected by the GIL. */
extern fp_profile *funcprof_active;

/* Returns p's thread object for ts (borrowed; p->thread_list owns it),
 * reusing one from an earlier run of p, marked attached (prof = p, empty
 * stack), or NULL with an exception set. */
fp_thread *funcprof_thread_attach(fp_profile *p, PyThreadState *ts);

/* Cold paths of the accounting below. They never raise: NO_IDX or -1 when
 * memory runs out. */
uint32_t funcprof_new_entry(fp_thread *t, void *key, PyObject *code, const char *cname,
                            PyObject *ctype, PyObject *cmodule);
uint32_t funcprof_new_edge(fp_thread *t, uint64_t key, uint32_t caller, uint32_t callee);
int funcprof_grow_stack(fp_thread *t);

/* ---- the backend: backend_trace311.c or backend_monitoring.c -------------------- */

/* The backend's name, for messages ("PyEval_SetProfile", "sys.monitoring"). */
extern const char funcprof_backend_name[];

/* Starts delivering events to p: on this thread, or on every thread (those
 * running now and those started later) when p->threads. Returns 0, or -1
 * with an exception set and nothing left installed. */
int funcprof_backend_start(fp_profile *p);

/* Stops delivering events to p and puts back what it replaced. Never fails;
 * a pending exception is kept. */
void funcprof_backend_stop(fp_profile *p);

/* Adds the backend's module functions (benchmark helpers). Returns 0, or -1
 * with an exception set. */
int funcprof_backend_exec(PyObject *module);

/* ---- accounting ------------------------------------------------------------------- */

static inline uint32_t fp_hash64(uint64_t k)
{
    return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32);
}

static inline void fp_thread_fail(fp_thread *t)
{
    t->off = 1;
    if (t->prof != NULL)
        t->prof->failed = 1;
}

/* Returns the entry of key, or NO_IDX if there is none yet. */
static inline uint32_t fp_find_entry(fp_thread *t, void *key)
{
    if (key == t->last_key)
        return t->last_entry;
    uint64_t k = (uint64_t)(uintptr_t)key;
    uint32_t j = fp_hash64(k) & t->emask;
    for (;;) {
        fp_slot *s = &t->eslots[j];
        if (s->key == k && s->idx != 0) {
            t->last_key = key;
            t->last_entry = s->idx - 1;
            return s->idx - 1;
        }
        if (s->idx == 0)
            return NO_IDX;
        j = (j + 1) & t->emask;
    }
}

/* Returns the edge caller->callee, made if new, or NO_IDX. */
static inline uint32_t fp_find_edge(fp_thread *t, uint32_t caller, uint32_t callee)
{
    uint64_t k = ((uint64_t)caller << 32) | callee;
    uint32_t j = fp_hash64(k) & t->xmask;
    for (;;) {
        fp_slot *s = &t->xslots[j];
        if (s->key == k && s->idx != 0)
            return s->idx - 1;
        if (s->idx == 0)
            return funcprof_new_edge(t, k, caller, callee);
        j = (j + 1) & t->xmask;
    }
}

/* Pushes a call of entry ei. Never raises. */
static inline void fp_push(fp_thread *t, uint32_t ei)
{
    if (t->depth == t->cap_stack && funcprof_grow_stack(t) < 0) {
        fp_thread_fail(t);
        return;
    }
    fp_frame *f = &t->stack[t->depth];
    uint32_t edge = NO_IDX;
    if (t->depth > 0) {
        fp_entry *caller = &t->entries[f[-1].entry];
        if (caller->last_callee == ei) {
            edge = caller->last_edge;
        } else {
            edge = fp_find_edge(t, f[-1].entry, ei);
            if (edge == NO_IDX) {
                fp_thread_fail(t);
                return;
            }
            caller->last_callee = ei;
            caller->last_edge = edge;
        }
        t->edges[edge].rec++;
    }
    t->entries[ei].rec++;
    f->entry = ei;
    f->edge = edge;
    f->subt = 0;
    t->depth++;
    f->t0 = fp_now();
}

/* Pops the innermost call, charging it up to tick now. Never raises. */
static inline void fp_pop(fp_thread *t, int64_t now)
{
    fp_frame *f = &t->stack[--t->depth];
    int64_t tt = now - f->t0;
    int64_t it = tt - f->subt;
    if (t->depth > 0)
        f[-1].subt += tt;
    fp_entry *e = &t->entries[f->entry];
    e->nc++;
    e->tt += it;
    if (--e->rec == 0)
        e->ct += tt;
    else
        e->nrec++;
    if (f->edge != NO_IDX) {
        fp_edge *x = &t->edges[f->edge];
        x->nc++;
        x->tt += it;
        if (--x->rec == 0)
            x->ct += tt;
        else
            x->nrec++;
    }
}

/* A Python function (its code object) is called or resumed. Never raises. */
static inline void fp_enter_code(fp_thread *t, PyObject *code)
{
    uint32_t ei = fp_find_entry(t, code);
    if (ei == NO_IDX) {
        ei = funcprof_new_entry(t, code, code, NULL, NULL, NULL);
        if (ei == NO_IDX) {
            fp_thread_fail(t);
            return;
        }
    }
    fp_push(t, ei);
}

/* A C function (its PyMethodDef) is called: bound to self (may be NULL),
 * defined in module (may be NULL). Never raises. */
static inline void fp_enter_c(fp_thread *t, PyMethodDef *ml, PyObject *self, PyObject *module)
{
    uint32_t ei = fp_find_entry(t, ml);
    if (ei == NO_IDX) {
        ei = funcprof_new_entry(t, ml, NULL, ml->ml_name,
                                self != NULL ? (PyObject *)Py_TYPE(self) : NULL, module);
        if (ei == NO_IDX) {
            fp_thread_fail(t);
            return;
        }
    }
    fp_push(t, ei);
}

/* The innermost call returns, yields or unwinds. Never raises. */
static inline void fp_leave(fp_thread *t)
{
    int64_t now = fp_now();
    if (t->depth > 0)
        fp_pop(t, now);
}

#endif
