/* funcprof/engine.c - deterministic function profiler: the hook, its tables and
 * the `pyrometer.Profile` type.
 *
 * Owns the per-thread state (an open-addressing table of functions keyed by
 * code object or PyMethodDef pointer, a table of caller->callee edges, a
 * call stack), the clock, and the conversion of all that into cProfile's
 * stats dict. Rendering and the magics live in funcprof/magic.c.
 *
 * Counting follows cProfile: a call is counted when it returns; a call made
 * while the same function (or the same caller->callee edge) is already on
 * the thread's stack is a recursive call, and its time is not added to
 * cumtime again; each resumption of a generator or coroutine is a call.
 */
#include "funcprof/funcprof.h"
#include "module.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <marshal.h>
#include <frameobject.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
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

static int fp_use_tsc;      /* set once at module exec */
static double fp_cal_ns;    /* best calibration so far: ns over ticks; */
static double fp_cal_ticks; /* protected by the GIL */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t fp_now(void)
{
#if FP_HAVE_TSC
    if (fp_use_tsc)
        return (int64_t)__rdtsc();
#endif
    return mono_ns();
}

static int tsc_is_invariant(void)
{
#if FP_HAVE_TSC
    unsigned int a, b, c, d;
    const char *env = getenv("PYROMETER_CLOCK");
    if (env != NULL && strcmp(env, "monotonic") == 0)
        return 0;
    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007)
        return 0;
    if (!__get_cpuid(0x80000007, &a, &b, &c, &d))
        return 0;
    return (d >> 8) & 1;
#else
    return 0;
#endif
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
    Py_tracefunc saved_func; /* the hook this thread had before */
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
    PyObject *installer;       /* owned while enabled with threads */
    PyObject *saved_threading; /* owned while enabled with threads */
    int64_t start_ticks, start_ns;
    int64_t run_ticks, run_ns; /* summed over enable/disable periods */
    PyObject *stats;           /* owned: the `stats` attribute */
} fp_profile;

/* Protected by the GIL. */
static fp_profile *fp_active;
static PyTypeObject *fp_thread_type;  /* owned */
static PyTypeObject *fp_profile_type; /* owned */

static inline uint32_t hash64(uint64_t k)
{
    return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32);
}

static int table_grow(fp_slot **slots, uint32_t *mask, uint32_t used)
{
    uint32_t cap = *mask ? (*mask + 1) * 2 : 256;
    if (used * 2 < (*mask + 1) && *slots != NULL)
        return 0;
    fp_slot *ns = calloc(cap, sizeof(fp_slot));
    if (ns == NULL)
        return -1;
    if (*slots != NULL) {
        for (uint32_t i = 0; i <= *mask; i++) {
            fp_slot s = (*slots)[i];
            if (s.idx == 0)
                continue;
            uint32_t j = hash64(s.key) & (cap - 1);
            while (ns[j].idx != 0)
                j = (j + 1) & (cap - 1);
            ns[j] = s;
        }
        free(*slots);
    }
    *slots = ns;
    *mask = cap - 1;
    return 0;
}

static void thread_fail(fp_thread *t)
{
    t->off = 1;
    if (t->prof != NULL)
        t->prof->failed = 1;
}

/* Cold path: adds an entry for key. Returns its index, or NO_IDX. */
static __attribute__((noinline)) uint32_t new_entry(fp_thread *t, void *key, PyObject *code,
                                                    PyCFunctionObject *fn)
{
    if (t->n_entries + 1 >= (t->emask + 1) / 2 &&
        table_grow(&t->eslots, &t->emask, t->n_entries + 1) < 0)
        return NO_IDX;
    if (t->n_entries == t->cap_entries) {
        uint32_t cap = t->cap_entries ? t->cap_entries * 2 : 128;
        fp_entry *ne = realloc(t->entries, cap * sizeof(fp_entry));
        if (ne == NULL)
            return NO_IDX;
        t->entries = ne;
        t->cap_entries = cap;
    }
    uint32_t idx = t->n_entries++;
    fp_entry *e = &t->entries[idx];
    memset(e, 0, sizeof *e);
    e->last_callee = NO_IDX;
    e->key = key;
    if (code != NULL) {
        e->code = Py_NewRef(code);
    } else {
        e->cname = fn->m_ml->ml_name;
        e->ctype = fn->m_self ? Py_NewRef((PyObject *)Py_TYPE(fn->m_self)) : NULL;
        e->cmodule = Py_XNewRef(fn->m_module);
    }
    uint32_t j = hash64((uint64_t)(uintptr_t)key) & t->emask;
    while (t->eslots[j].idx != 0)
        j = (j + 1) & t->emask;
    t->eslots[j].key = (uint64_t)(uintptr_t)key;
    t->eslots[j].idx = idx + 1;
    return idx;
}

static inline uint32_t find_entry(fp_thread *t, void *key)
{
    if (key == t->last_key)
        return t->last_entry;
    uint64_t k = (uint64_t)(uintptr_t)key;
    uint32_t j = hash64(k) & t->emask;
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

/* Cold path: adds the edge caller->callee. Returns its index, or NO_IDX. */
static __attribute__((noinline)) uint32_t new_edge(fp_thread *t, uint64_t key, uint32_t caller,
                                                   uint32_t callee)
{
    if (t->n_edges + 1 >= (t->xmask + 1) / 2 &&
        table_grow(&t->xslots, &t->xmask, t->n_edges + 1) < 0)
        return NO_IDX;
    if (t->n_edges == t->cap_edges) {
        uint32_t cap = t->cap_edges ? t->cap_edges * 2 : 256;
        fp_edge *ne = realloc(t->edges, cap * sizeof(fp_edge));
        if (ne == NULL)
            return NO_IDX;
        t->edges = ne;
        t->cap_edges = cap;
    }
    uint32_t idx = t->n_edges++;
    fp_edge *x = &t->edges[idx];
    memset(x, 0, sizeof *x);
    x->caller = caller;
    x->callee = callee;
    uint32_t j = hash64(key) & t->xmask;
    while (t->xslots[j].idx != 0)
        j = (j + 1) & t->xmask;
    t->xslots[j].key = key;
    t->xslots[j].idx = idx + 1;
    return idx;
}

static inline uint32_t find_edge(fp_thread *t, uint32_t caller, uint32_t callee)
{
    uint64_t k = ((uint64_t)caller << 32) | callee;
    uint32_t j = hash64(k) & t->xmask;
    for (;;) {
        fp_slot *s = &t->xslots[j];
        if (s->key == k && s->idx != 0)
            return s->idx - 1;
        if (s->idx == 0)
            return new_edge(t, k, caller, callee);
        j = (j + 1) & t->xmask;
    }
}

static __attribute__((noinline)) int grow_stack(fp_thread *t)
{
    uint32_t cap = t->cap_stack ? t->cap_stack * 2 : 256;
    fp_frame *ns = realloc(t->stack, cap * sizeof(fp_frame));
    if (ns == NULL)
        return -1;
    t->stack = ns;
    t->cap_stack = cap;
    return 0;
}

/* Pushes a call of entry ei. Never raises. */
static inline void fp_push(fp_thread *t, uint32_t ei)
{
    if (t->depth == t->cap_stack && grow_stack(t) < 0) {
        thread_fail(t);
        return;
    }
    fp_frame *f = &t->stack[t->depth];
    uint32_t edge = NO_IDX;
    if (t->depth > 0) {
        fp_entry *caller = &t->entries[f[-1].entry];
        if (caller->last_callee == ei) {
            edge = caller->last_edge;
        } else {
            edge = find_edge(t, f[-1].entry, ei);
            if (edge == NO_IDX) {
                thread_fail(t);
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

/* Reading a frame's code object. PyFrame_GetCode() is a call plus two
 * refcount updates on every Python call; on 3.11 the hook reads the field
 * through mirrors of CPython's layouts (Include/internal/pycore_frame.h),
 * after module exec has checked them against PyFrame_GetCode(). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
typedef struct {
    PyObject *f_func, *f_globals, *f_builtins, *f_locals;
    PyCodeObject *f_code;
} fp_iframe311;

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    PyFrameObject *f_back;
    fp_iframe311 *f_frame;
} fp_frameobj311;

static int fp_direct_code; /* set once at module exec */

static void check_direct_code(void)
{
    PyFrameObject *f = PyEval_GetFrame();
    if (f == NULL)
        return;
    PyCodeObject *code = PyFrame_GetCode(f);
    fp_direct_code =
        ((fp_frameobj311 *)f)->f_frame != NULL && ((fp_frameobj311 *)f)->f_frame->f_code == code;
    Py_DECREF(code);
}
#else
#define fp_direct_code 0
static void check_direct_code(void)
{
}
#endif

/* Returns the frame's code object, borrowed (the frame holds it). */
static inline PyCodeObject *frame_code(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    if (fp_direct_code)
        return ((fp_frameobj311 *)frame)->f_frame->f_code;
#endif
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code);
    return code;
}

static inline void fp_enter_py(fp_thread *t, PyFrameObject *frame)
{
    PyCodeObject *code = frame_code(frame);
    uint32_t ei = find_entry(t, code);
    if (ei == NO_IDX) {
        ei = new_entry(t, code, (PyObject *)code, NULL);
        if (ei == NO_IDX) {
            thread_fail(t);
            return;
        }
    }
    fp_push(t, ei);
}

static inline void fp_enter_c(fp_thread *t, PyCFunctionObject *fn)
{
    uint32_t ei = find_entry(t, fn->m_ml);
    if (ei == NO_IDX) {
        ei = new_entry(t, fn->m_ml, NULL, fn);
        if (ei == NO_IDX) {
            thread_fail(t);
            return;
        }
    }
    fp_push(t, ei);
}

static inline void fp_leave(fp_thread *t)
{
    int64_t now = fp_now();
    if (t->depth > 0)
        fp_pop(t, now);
}

/* ---- backend: the PyEval_SetProfile hook (3.11; also 3.12's shim) ---------
 * A backend attaches a thread object to a thread state, detaches it, and
 * feeds fp_enter_py / fp_enter_c / fp_leave. A sys.monitoring backend for
 * 3.12+ (PY_START/PY_RESUME, PY_RETURN/PY_YIELD/PY_UNWIND, CALL, C_RETURN,
 * C_RAISE) would provide these three functions and reuse everything else. */

typedef struct {
    const char *name;
    int (*attach)(PyThreadState *ts, fp_thread *t);
    int (*detach)(PyThreadState *ts, fp_thread *t);
    fp_thread *(*owner)(PyThreadState *ts);
} fp_backend;

/* The hook. Runs with the GIL held; no malloc (except when a table grows),
 * no Python call, no lock; never raises and never sets an exception. */
static int legacy_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    fp_thread *t = (fp_thread *)obj;
    if (__builtin_expect(t->off, 0))
        return 0;
    switch (what) {
    case PyTrace_CALL:
        fp_enter_py(t, frame);
        break;
    case PyTrace_RETURN:
        fp_leave(t);
        break;
    case PyTrace_C_CALL:
        if (t->builtins && PyCFunction_Check(arg))
            fp_enter_c(t, (PyCFunctionObject *)arg);
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

static int legacy_attach(PyThreadState *ts, fp_thread *t)
{
    return _PyEval_SetProfile(ts, legacy_hook, (PyObject *)t);
}

static int legacy_detach(PyThreadState *ts, fp_thread *t)
{
    return _PyEval_SetProfile(ts, t->saved_func, t->saved_obj);
}

static fp_thread *legacy_owner(PyThreadState *ts)
{
    if (ts->c_profilefunc == legacy_hook && ts->c_profileobj != NULL &&
        Py_IS_TYPE(ts->c_profileobj, fp_thread_type))
        return (fp_thread *)ts->c_profileobj;
    return NULL;
}

static const fp_backend legacy_backend = {"PyEval_SetProfile", legacy_attach, legacy_detach,
                                          legacy_owner};
static const fp_backend *backend = &legacy_backend;

/* ---- the thread object type ---------------------------------------------- */

static void thread_release_tables(fp_thread *t)
{
    for (uint32_t i = 0; i < t->n_entries; i++) {
        Py_CLEAR(t->entries[i].code);
        Py_CLEAR(t->entries[i].ctype);
        Py_CLEAR(t->entries[i].cmodule);
    }
    free(t->entries);
    free(t->eslots);
    free(t->edges);
    free(t->xslots);
    free(t->stack);
    t->entries = NULL;
    t->eslots = t->xslots = NULL;
    t->edges = NULL;
    t->stack = NULL;
    t->n_entries = t->cap_entries = t->emask = 0;
    t->n_edges = t->cap_edges = t->xmask = 0;
    t->depth = t->cap_stack = 0;
    t->last_key = NULL;
}

static void thread_dealloc(fp_thread *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    thread_release_tables(t);
    Py_CLEAR(t->saved_obj);
    tp->tp_free((PyObject *)t);
    Py_DECREF(tp);
}

static PyObject *thread_get_profile(fp_thread *t, void *closure)
{
    return Py_NewRef(t->prof ? (PyObject *)t->prof : Py_None);
}

static PyGetSetDef thread_getset[] = {
    {"profile", (getter)thread_get_profile, NULL,
     "The pyrometer.Profile this hook records into (None once it stopped); "
     "sys.getprofile().profile.disable() stops it.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot thread_slots[] = {
    {Py_tp_dealloc, thread_dealloc},
    {Py_tp_getset, thread_getset},
    {Py_tp_doc, "Per-thread state of a pyrometer.Profile (internal)."},
    {0, NULL},
};

static PyType_Spec thread_spec = {
    .name = "pyrometer._ProfileThread",
    .basicsize = sizeof(fp_thread),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = thread_slots,
};

/* Returns a new thread object with empty tables, or NULL with an exception. */
static fp_thread *thread_new(fp_profile *p, PyThreadState *ts)
{
    fp_thread *t = PyObject_New(fp_thread, fp_thread_type);
    if (t == NULL)
        return NULL;
    memset((char *)t + sizeof(PyObject), 0, sizeof(fp_thread) - sizeof(PyObject));
    t->builtins = p->builtins;
    t->tstate = ts;
    if (table_grow(&t->eslots, &t->emask, 0) < 0 || table_grow(&t->xslots, &t->xmask, 0) < 0 ||
        grow_stack(t) < 0) {
        Py_DECREF(t);
        PyErr_NoMemory();
        return NULL;
    }
    return t;
}

/* Attaches p to thread state ts: reuses ts's thread object from an earlier
 * run of p, or makes one. keep_saved = 0 records "no hook before" instead of
 * the one ts has now. Returns 0, or -1 with an exception set. */
static int attach_thread(fp_profile *p, PyThreadState *ts, int keep_saved)
{
    fp_thread *t = NULL;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *c = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        if (c->tstate == ts && c->prof == NULL) {
            t = c;
            Py_INCREF(t);
            break;
        }
    }
    if (t == NULL) {
        t = thread_new(p, ts);
        if (t == NULL)
            return -1;
        if (PyList_Append(p->thread_list, (PyObject *)t) < 0) {
            Py_DECREF(t);
            return -1;
        }
    }
    t->saved_func = keep_saved ? ts->c_profilefunc : NULL;
    Py_XSETREF(t->saved_obj, keep_saved ? Py_XNewRef(ts->c_profileobj) : NULL);
    t->prof = p;
    t->off = 0;
    t->depth = 0;
    if (backend->attach(ts, t) < 0) {
        t->prof = NULL;
        Py_CLEAR(t->saved_obj);
        Py_DECREF(t);
        return -1;
    }
    Py_DECREF(t);
    return 0;
}

/* ---- the Profile type ---------------------------------------------------- */

/* profile(frame, event, arg) installed with threading.setprofile() while a
 * --threads profile runs: on a new thread's first event it attaches the C
 * hook to that thread and hands it the event. */
static PyObject *installer_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    fp_profile *p = (fp_profile *)self;
    PyThreadState *ts = PyThreadState_Get();
    static const char *const names[] = {"call",   "exception",   "line",     "return",
                                        "c_call", "c_exception", "c_return", "opcode"};

    if (!p->enabled || fp_active != p) {
        if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
            PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (attach_thread(p, ts, 0) < 0) {
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
                fp_thread *t = backend->owner(ts);
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
    PyObject *r = PyObject_CallMethod(threading, "setprofile", "O", fn);
    Py_DECREF(threading);
    if (r == NULL) {
        if (saved != NULL)
            Py_CLEAR(*saved);
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int funcprof_is_active(void)
{
    return fp_active != NULL;
}

static void detach_all(fp_profile *p)
{
    PyThreadState *cur = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(cur);
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        fp_thread *t = backend->owner(ts);
        if (t != NULL && t->prof == p) {
            if (backend->detach(ts, t) < 0)
                PyErr_Clear();
        } else if (p->installer != NULL && ts->c_profileobj == p->installer) {
            if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
                PyErr_Clear();
        }
    }
}

int funcprof_enable(PyObject *self)
{
    fp_profile *p = (fp_profile *)self;

    if (p->enabled)
        return 0;
    if (fp_active != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another pyrometer profile is already running in this process; "
                        "disable it first");
        return -1;
    }
    p->failed = 0;
    p->enabled = 1;
    fp_active = p; /* a strong reference while enabled, as a tstate holds cProfile's */
    Py_INCREF(p);
    if (p->threads) {
        p->installer = PyCFunction_New(&installer_def, self);
        if (p->installer == NULL)
            goto error;
        if (set_threading_profile(p->installer, &p->saved_threading) < 0)
            goto error;
        PyThreadState *cur = PyThreadState_Get();
        PyInterpreterState *interp = PyThreadState_GetInterpreter(cur);
        for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
             ts = PyThreadState_Next(ts)) {
            if (attach_thread(p, ts, 1) < 0)
                goto error;
        }
    } else if (attach_thread(p, PyThreadState_Get(), 1) < 0) {
        goto error;
    }
    p->start_ns = mono_ns();
    p->start_ticks = fp_now();
    return 0;
error : {
    PyObject *exc, *val, *tb;
    PyErr_Fetch(&exc, &val, &tb);
    detach_all(p);
    if (p->saved_threading != NULL) {
        if (set_threading_profile(p->saved_threading, NULL) < 0)
            PyErr_Clear();
    }
    Py_CLEAR(p->saved_threading);
    Py_CLEAR(p->installer);
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++)
        ((fp_thread *)PyList_GET_ITEM(p->thread_list, i))->prof = NULL;
    p->enabled = 0;
    fp_active = NULL;
    PyErr_Restore(exc, val, tb);
    Py_DECREF(p);
    return -1;
}
}

/* Stops p; drops fp_active's reference to p when drop_ref (the caller must
 * still hold one). */
static int disable_impl(fp_profile *p, int drop_ref)
{
    PyObject *exc, *val, *tb;

    if (!p->enabled)
        return 0;
    int64_t now = fp_now();
    int64_t now_ns = mono_ns();
    PyErr_Fetch(&exc, &val, &tb);
    detach_all(p);
    if (p->threads) {
        if (set_threading_profile(p->saved_threading ? p->saved_threading : Py_None, NULL) < 0)
            PyErr_Clear();
        Py_CLEAR(p->saved_threading);
        Py_CLEAR(p->installer);
    }
    /* Calls still open are charged up to now, as cProfile does. */
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        while (t->depth > 0)
            fp_pop(t, now);
        t->prof = NULL;
        Py_CLEAR(t->saved_obj);
        t->saved_func = NULL;
    }
    p->run_ticks += now - p->start_ticks;
    p->run_ns += now_ns - p->start_ns;
    p->enabled = 0;
    fp_active = NULL;
    if (drop_ref)
        Py_DECREF(p);
    if (exc == NULL && p->failed) {
        p->failed = 0;
        PyErr_SetString(PyExc_MemoryError,
                        "pyrometer: the profiler could not grow its tables; the stats are partial");
        return -1;
    }
    PyErr_Restore(exc, val, tb);
    return 0;
}

int funcprof_disable(PyObject *self)
{
    return disable_impl((fp_profile *)self, 1);
}

/* Seconds per tick. */
static double seconds_per_tick(fp_profile *p)
{
    if (!fp_use_tsc)
        return 1e-9;
    if (p->run_ns >= 1000000 && p->run_ticks > 0) {
        if ((double)p->run_ns > fp_cal_ns) {
            fp_cal_ns = (double)p->run_ns;
            fp_cal_ticks = (double)p->run_ticks;
        }
        return (double)p->run_ns / (double)p->run_ticks * 1e-9;
    }
    if (fp_cal_ticks <= 0) {
        /* A short run: measure the tick rate once over 2 ms. */
        int64_t n0 = mono_ns(), t0 = fp_now(), n1, t1;
        do {
            n1 = mono_ns();
            t1 = fp_now();
        } while (n1 - n0 < 2000000);
        fp_cal_ns = (double)(n1 - n0);
        fp_cal_ticks = (double)(t1 - t0);
    }
    return fp_cal_ns / fp_cal_ticks * 1e-9;
}

/* Returns a new str naming a C function as cProfile does:
 * "<built-in method builtins.len>", "<method 'append' of 'list' objects>". */
static PyObject *c_function_name(const fp_entry *e)
{
    if (e->ctype == NULL) {
        PyObject *modname = NULL, *res;
        if (e->cmodule != NULL && PyUnicode_Check(e->cmodule)) {
            modname = Py_NewRef(e->cmodule);
        } else if (e->cmodule != NULL && PyModule_Check(e->cmodule)) {
            modname = PyModule_GetNameObject(e->cmodule);
            if (modname == NULL)
                PyErr_Clear();
        }
        if (modname != NULL && PyUnicode_CompareWithASCIIString(modname, "builtins") != 0)
            res = PyUnicode_FromFormat("<%U.%s>", modname, e->cname);
        else
            res = PyUnicode_FromFormat("<%s>", e->cname);
        Py_XDECREF(modname);
        return res;
    }
    PyObject *name = PyUnicode_FromString(e->cname);
    if (name == NULL)
        return NULL;
    PyObject *descr = _PyType_Lookup((PyTypeObject *)e->ctype, name);
    Py_DECREF(name);
    if (descr != NULL) {
        Py_INCREF(descr);
        PyObject *r = PyObject_Repr(descr);
        Py_DECREF(descr);
        if (r != NULL)
            return r;
        PyErr_Clear();
    }
    if (e->cmodule != NULL && PyUnicode_Check(e->cmodule))
        return PyUnicode_FromFormat("<built-in method %U.%s>", e->cmodule, e->cname);
    return PyUnicode_FromFormat("<built-in method %s>", e->cname);
}

/* Returns a new (file, line, name) label for an entry. */
static PyObject *entry_label(const fp_entry *e)
{
    if (e->code != NULL) {
        PyCodeObject *co = (PyCodeObject *)e->code;
        return Py_BuildValue("(OiO)", co->co_filename, co->co_firstlineno, co->co_name);
    }
    PyObject *name = c_function_name(e);
    if (name == NULL)
        return NULL;
    PyObject *r = Py_BuildValue("(siN)", "~", 0, name);
    return r;
}

typedef struct {
    uint64_t nc, cc;
    double tt, ct;
    PyObject *callers; /* owned dict */
} fp_acc;

/* Adds (nc, cc, tt, ct) to callers[key]. Returns 0 or -1. */
static int add_caller(PyObject *callers, PyObject *key, uint64_t nc, uint64_t cc, double tt,
                      double ct)
{
    PyObject *prev = PyDict_GetItemWithError(callers, key);
    if (prev == NULL && PyErr_Occurred())
        return -1;
    if (prev != NULL) {
        nc += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(prev, 0));
        cc += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(prev, 1));
        tt += PyFloat_AsDouble(PyTuple_GET_ITEM(prev, 2));
        ct += PyFloat_AsDouble(PyTuple_GET_ITEM(prev, 3));
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *v = Py_BuildValue("(KKdd)", (unsigned long long)nc, (unsigned long long)cc, tt, ct);
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItem(callers, key, v);
    Py_DECREF(v);
    return rc;
}

PyObject *funcprof_snapshot(PyObject *self)
{
    fp_profile *p = (fp_profile *)self;
    PyObject *index = NULL, *stats = NULL, *labels = NULL;
    fp_acc *acc = NULL;
    size_t n_acc = 0, cap_acc = 0;
    double spt = seconds_per_tick(p);

    index = PyDict_New(); /* label -> position in acc */
    if (index == NULL)
        goto error;
    Py_ssize_t nthreads = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t ti = 0; ti < nthreads; ti++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, ti);
        labels = PyList_New(t->n_entries);
        if (labels == NULL)
            goto error;
        for (uint32_t i = 0; i < t->n_entries; i++) {
            const fp_entry *e = &t->entries[i];
            PyObject *label = entry_label(e);
            if (label == NULL)
                goto error;
            PyList_SET_ITEM(labels, i, label);
            if (e->nc == 0)
                continue; /* seen, but never returned while profiling */
            PyObject *pos = PyDict_GetItemWithError(index, label);
            size_t k;
            if (pos == NULL) {
                if (PyErr_Occurred())
                    goto error;
                if (n_acc == cap_acc) {
                    size_t cap = cap_acc ? cap_acc * 2 : 64;
                    fp_acc *na = realloc(acc, cap * sizeof *na);
                    if (na == NULL) {
                        PyErr_NoMemory();
                        goto error;
                    }
                    acc = na;
                    cap_acc = cap;
                }
                k = n_acc;
                memset(&acc[k], 0, sizeof acc[k]);
                acc[k].callers = PyDict_New();
                if (acc[k].callers == NULL)
                    goto error;
                n_acc++;
                PyObject *kobj = PyLong_FromSize_t(k);
                if (kobj == NULL || PyDict_SetItem(index, label, kobj) < 0) {
                    Py_XDECREF(kobj);
                    goto error;
                }
                Py_DECREF(kobj);
            } else {
                k = PyLong_AsSize_t(pos);
            }
            acc[k].nc += e->nc;
            acc[k].cc += e->nc - e->nrec;
            acc[k].tt += (double)e->tt * spt;
            acc[k].ct += (double)e->ct * spt;
        }
        for (uint32_t i = 0; i < t->n_edges; i++) {
            const fp_edge *x = &t->edges[i];
            if (x->nc == 0)
                continue;
            PyObject *callee = PyList_GET_ITEM(labels, x->callee);
            PyObject *caller = PyList_GET_ITEM(labels, x->caller);
            PyObject *pos = PyDict_GetItemWithError(index, callee);
            if (pos == NULL) {
                if (PyErr_Occurred())
                    goto error;
                continue;
            }
            size_t k = PyLong_AsSize_t(pos);
            if (add_caller(acc[k].callers, caller, x->nc, x->nc - x->nrec, (double)x->tt * spt,
                           (double)x->ct * spt) < 0)
                goto error;
        }
        Py_CLEAR(labels);
    }
    stats = PyDict_New();
    if (stats == NULL)
        goto error;
    PyObject *label, *pos;
    Py_ssize_t it = 0;
    while (PyDict_Next(index, &it, &label, &pos)) {
        size_t k = PyLong_AsSize_t(pos);
        PyObject *v =
            Py_BuildValue("(KKddO)", (unsigned long long)acc[k].cc, (unsigned long long)acc[k].nc,
                          acc[k].tt, acc[k].ct, acc[k].callers);
        if (v == NULL || PyDict_SetItem(stats, label, v) < 0) {
            Py_XDECREF(v);
            goto error;
        }
        Py_DECREF(v);
    }
    for (size_t k = 0; k < n_acc; k++)
        Py_XDECREF(acc[k].callers);
    free(acc);
    Py_DECREF(index);
    return stats;
error:
    for (size_t k = 0; k < n_acc; k++)
        Py_XDECREF(acc[k].callers);
    free(acc);
    Py_XDECREF(index);
    Py_XDECREF(labels);
    Py_XDECREF(stats);
    return NULL;
}

PyObject *funcprof_profile_new(int threads, int builtins)
{
    fp_profile *p = PyObject_New(fp_profile, fp_profile_type);
    if (p == NULL)
        return NULL;
    memset((char *)p + sizeof(PyObject), 0, sizeof(fp_profile) - sizeof(PyObject));
    p->threads = threads;
    p->builtins = builtins;
    p->thread_list = PyList_New(0);
    p->stats = PyDict_New();
    if (p->thread_list == NULL || p->stats == NULL) {
        Py_DECREF(p);
        return NULL;
    }
    return (PyObject *)p;
}

static PyObject *profile_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"threads", "builtins", NULL};
    int threads = 0, builtins = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pp:Profile", kwlist, &threads, &builtins))
        return NULL;
    return funcprof_profile_new(threads, builtins);
}

static void profile_dealloc(fp_profile *p)
{
    PyTypeObject *tp = Py_TYPE(p);
    if (p->enabled) { /* only at interpreter teardown: fp_active holds a reference */
        if (disable_impl(p, 0) < 0)
            PyErr_WriteUnraisable(NULL);
    }
    Py_CLEAR(p->thread_list);
    Py_CLEAR(p->installer);
    Py_CLEAR(p->saved_threading);
    Py_CLEAR(p->stats);
    tp->tp_free((PyObject *)p);
    Py_DECREF(tp);
}

static PyObject *profile_enable(PyObject *self, PyObject *unused)
{
    if (funcprof_enable(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *profile_disable(PyObject *self, PyObject *unused)
{
    if (funcprof_disable(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *profile_create_stats(PyObject *self, PyObject *unused)
{
    fp_profile *p = (fp_profile *)self;
    if (funcprof_disable(self) < 0)
        return NULL;
    PyObject *stats = funcprof_snapshot(self);
    if (stats == NULL)
        return NULL;
    Py_XSETREF(p->stats, stats);
    Py_RETURN_NONE;
}

static PyObject *profile_clear(PyObject *self, PyObject *unused)
{
    fp_profile *p = (fp_profile *)self;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        if (t->depth > 0 || t->prof != NULL) {
            PyErr_SetString(PyExc_RuntimeError, "cannot clear a running Profile; disable it first");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        thread_release_tables(t);
        if (table_grow(&t->eslots, &t->emask, 0) < 0 || table_grow(&t->xslots, &t->xmask, 0) < 0 ||
            grow_stack(t) < 0)
            return PyErr_NoMemory();
    }
    p->run_ticks = p->run_ns = 0;
    Py_RETURN_NONE;
}

/* Runs code (a code object, or a str compiled as "<string>") in globals and
 * locals under the profile. Returns the result of the evaluation. */
static PyObject *run_code(PyObject *self, PyObject *cmd, PyObject *globals, PyObject *locals)
{
    PyObject *code;
    if (PyUnicode_Check(cmd)) {
        const char *src = PyUnicode_AsUTF8(cmd);
        if (src == NULL)
            return NULL;
        code = Py_CompileString(src, "<string>", Py_file_input);
        if (code == NULL)
            return NULL;
    } else if (PyCode_Check(cmd)) {
        code = Py_NewRef(cmd);
    } else {
        PyErr_SetString(PyExc_TypeError, "runctx() needs a str or a code object");
        return NULL;
    }
    if (funcprof_enable(self) < 0) {
        Py_DECREF(code);
        return NULL;
    }
    PyObject *r = PyEval_EvalCode(code, globals, locals);
    Py_DECREF(code);
    if (funcprof_disable(self) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *profile_runctx(PyObject *self, PyObject *args)
{
    PyObject *cmd, *globals, *locals = Py_None;
    if (!PyArg_ParseTuple(args, "OO!|O:runctx", &cmd, &PyDict_Type, &globals, &locals))
        return NULL;
    if (locals == Py_None)
        locals = globals;
    PyObject *r = run_code(self, cmd, globals, locals);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *profile_run(PyObject *self, PyObject *cmd)
{
    PyObject *main = PyImport_AddModule("__main__");
    if (main == NULL)
        return NULL;
    PyObject *d = PyModule_GetDict(main);
    PyObject *r = run_code(self, cmd, d, d);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *profile_runcall(PyObject *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "runcall() needs a callable");
        return NULL;
    }
    PyObject *fn = PyTuple_GET_ITEM(args, 0);
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL)
        return NULL;
    if (funcprof_enable(self) < 0) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *r = PyObject_Call(fn, rest, kwargs);
    Py_DECREF(rest);
    if (funcprof_disable(self) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *profile_dump_stats(PyObject *self, PyObject *file)
{
    PyObject *path = NULL, *data = NULL, *stats = NULL;
    if (!PyUnicode_FSConverter(file, &path))
        return NULL;
    if (funcprof_disable(self) < 0)
        goto error;
    stats = funcprof_snapshot(self);
    if (stats == NULL)
        goto error;
    data = PyMarshal_WriteObjectToString(stats, Py_MARSHAL_VERSION);
    if (data == NULL)
        goto error;
    FILE *f = fopen(PyBytes_AS_STRING(path), "wb");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
        goto error;
    }
    size_t n = (size_t)PyBytes_GET_SIZE(data);
    int bad = fwrite(PyBytes_AS_STRING(data), 1, n, f) != n;
    if (fclose(f) != 0 || bad) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
        goto error;
    }
    Py_DECREF(path);
    Py_DECREF(data);
    Py_DECREF(stats);
    Py_RETURN_NONE;
error:
    Py_XDECREF(path);
    Py_XDECREF(data);
    Py_XDECREF(stats);
    return NULL;
}

static PyObject *profile_print_stats(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"sort", NULL};
    PyObject *sort = NULL, *pstats = NULL, *st = NULL, *r = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:print_stats", kwlist, &sort))
        return NULL;
    pstats = PyImport_ImportModule("pstats");
    if (pstats == NULL)
        return NULL;
    st = PyObject_CallMethod(pstats, "Stats", "O", self);
    if (st == NULL)
        goto done;
    r = PyObject_CallMethod(st, "strip_dirs", NULL);
    if (r == NULL)
        goto done;
    Py_SETREF(r, PyObject_CallMethod(st, "sort_stats", "O", sort ? sort : Py_None));
    if (r == NULL)
        goto done;
    Py_SETREF(r, PyObject_CallMethod(st, "print_stats", NULL));
done:
    Py_XDECREF(pstats);
    Py_XDECREF(st);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *profile_enter(PyObject *self, PyObject *unused)
{
    if (funcprof_enable(self) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *profile_exit(PyObject *self, PyObject *args)
{
    if (funcprof_disable(self) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *profile_repr(fp_profile *p)
{
    uint64_t calls = 0;
    Py_ssize_t n = PyList_GET_SIZE(p->thread_list);
    for (Py_ssize_t i = 0; i < n; i++) {
        fp_thread *t = (fp_thread *)PyList_GET_ITEM(p->thread_list, i);
        for (uint32_t k = 0; k < t->n_entries; k++)
            calls += t->entries[k].nc;
    }
    return PyUnicode_FromFormat("<pyrometer.Profile %s, %llu calls recorded, %zd thread(s)>",
                                p->enabled ? "enabled" : "disabled", (unsigned long long)calls, n);
}

static PyObject *profile_get_stats(fp_profile *p, void *closure)
{
    return Py_NewRef(p->stats);
}

static int profile_set_stats(fp_profile *p, PyObject *v, void *closure)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete stats");
        return -1;
    }
    Py_XSETREF(p->stats, Py_NewRef(v));
    return 0;
}

static PyObject *profile_get_enabled(fp_profile *p, void *closure)
{
    return PyBool_FromLong(p->enabled);
}

static PyObject *profile_get_clock(fp_profile *p, void *closure)
{
    return PyUnicode_FromString(fp_use_tsc ? "tsc" : "monotonic");
}

static PyGetSetDef profile_getset[] = {
    {"stats", (getter)profile_get_stats, (setter)profile_set_stats,
     "The last create_stats() result, in cProfile's shape (pstats.Stats reads it).", NULL},
    {"enabled", (getter)profile_get_enabled, NULL, "True while profiling.", NULL},
    {"clock", (getter)profile_get_clock, NULL, "The clock used: 'tsc' or 'monotonic'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef profile_methods[] = {
    {"enable", profile_enable, METH_NOARGS,
     "Start profiling this thread (or every thread, with threads=True)."},
    {"disable", profile_disable, METH_NOARGS,
     "Stop profiling and restore the previous profile hooks."},
    {"create_stats", profile_create_stats, METH_NOARGS,
     "Disable, then set .stats (pstats.Stats(profile) calls this)."},
    {"clear", profile_clear, METH_NOARGS, "Forget everything recorded so far."},
    {"runctx", profile_runctx, METH_VARARGS,
     "runctx(cmd, globals, locals=None): profile exec of cmd; returns self."},
    {"run", profile_run, METH_O, "run(cmd): profile cmd in __main__; returns self."},
    {"runcall", (PyCFunction)(void (*)(void))profile_runcall, METH_VARARGS | METH_KEYWORDS,
     "runcall(func, *args, **kwargs): profile one call; returns its result."},
    {"dump_stats", profile_dump_stats, METH_O,
     "dump_stats(file): write a marshal dump pstats can load."},
    {"print_stats", (PyCFunction)(void (*)(void))profile_print_stats, METH_VARARGS | METH_KEYWORDS,
     "print_stats(sort=-1): print through pstats."},
    {"__enter__", profile_enter, METH_NOARGS, NULL},
    {"__exit__", profile_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot profile_slots[] = {
    {Py_tp_new, profile_tp_new},
    {Py_tp_dealloc, profile_dealloc},
    {Py_tp_repr, profile_repr},
    {Py_tp_methods, profile_methods},
    {Py_tp_getset, profile_getset},
    {Py_tp_doc, "Profile(threads=False, builtins=True)\n--\n\n"
                "A deterministic function profiler, a drop-in for cProfile.Profile:\n"
                "enable()/disable(), runctx(), runcall(), create_stats() and .stats,\n"
                "so pstats.Stats(profile) works. threads=True profiles every Python thread."},
    {0, NULL},
};

static PyType_Spec profile_spec = {
    .name = "pyrometer.Profile",
    .basicsize = sizeof(fp_profile),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = profile_slots,
};

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
    if (enable && fp_active != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a pyrometer profile is running");
        return NULL;
    }
    if (_PyEval_SetProfile(PyThreadState_Get(), enable ? empty_hook : NULL, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef funcprof_functions[] = {
    {"_empty_profile_hook", set_empty_hook, METH_O,
     "_empty_profile_hook(on): install (or remove) a C profile hook that does nothing; for "
     "benchmarks."},
    {NULL, NULL, 0, NULL},
};

int funcprof_module_exec(PyObject *module)
{
    if (PyModule_AddFunctions(module, funcprof_functions) < 0)
        return -1;
    /* The hook compares types by pointer, so the types are made once per
     * process and shared if the module is executed again. */
    if (fp_profile_type == NULL) {
        fp_use_tsc = tsc_is_invariant();
        check_direct_code();
        PyObject *tt = PyType_FromModuleAndSpec(module, &thread_spec, NULL);
        if (tt == NULL)
            return -1;
        PyObject *pt = PyType_FromModuleAndSpec(module, &profile_spec, NULL);
        if (pt == NULL) {
            Py_DECREF(tt);
            return -1;
        }
        fp_thread_type = (PyTypeObject *)tt;
        fp_profile_type = (PyTypeObject *)pt;
    }
    if (PyModule_AddObjectRef(module, "Profile", (PyObject *)fp_profile_type) < 0)
        return -1;
    return prun_module_exec(module);
}
