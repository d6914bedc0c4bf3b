/* sampler/engine.c - the sampler thread, its safe memory reads and the call trie.
 *
 * A plain C thread (no thread state, never the GIL) wakes every interval,
 * reads the frame chain of the target thread (or of every thread) with
 * process_vm_readv on our own pid, which fails with EFAULT instead of
 * crashing when a frame changes under it, and adds the stack to a trie of
 * (code, instruction offset) nodes. Code objects are copied (names, first
 * line, line table) the first time a recording meets them, so a recording
 * can be read after its code is gone. Nothing here calls Python on the
 * sampler thread.
 */
#include "sampler/sampler.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH     2048        /* deeper stacks keep their innermost frames */
#define WINDOW        (64 * 1024) /* bytes of a thread's frame stack copied at once */
#define MAX_NODES     (4u << 20)  /* a recording stops growing its trie here */
#define MAX_STR       1024        /* longest name or file name copied */
#define MAX_LINETABLE (1 << 20)
#define NONE          UINT32_MAX

/* ---- one recording --------------------------------------------------------- */

typedef struct {
    uintptr_t ptr;  /* the code object's address when it was copied */
    char *filename; /* owned UTF-8 */
    char *qualname; /* owned UTF-8 */
    int firstlineno;
    int flags;          /* co_flags */
    uint8_t *linetable; /* owned copy of co_linetable */
    size_t linetable_len;
} code_info;

typedef struct {
    uint32_t parent; /* node index, NONE for a thread's root */
    uint32_t code;   /* index into codes, NONE for a thread's root */
    int32_t lasti;   /* byte offset of the instruction; the thread index for a root */
    uint32_t samples;
    double seconds;
} node;

typedef struct {
    uintptr_t tstate;
    long tid;
    long long last_cpu; /* ns of CPU time at the thread's previous sample, -1 unknown */
    uint32_t root;      /* its root node */
} thread_rec;

/* A recording. Written by the sampler thread under the session's mutex;
 * owned by whoever took it once detached. */
struct sampler_data {
    node *nodes;
    uint32_t nnodes, capnodes;
    uint32_t *nindex; /* open addressing: node index + 1, 0 empty */
    uint32_t nindex_cap;
    code_info *codes;
    uint32_t ncodes, capcodes;
    uint32_t *cindex; /* open addressing: code index + 1, 0 empty */
    uint32_t cindex_cap;
    thread_rec *threads;
    int nthreads, capthreads;
    long long t_begin, t_end, last_ts; /* CLOCK_MONOTONIC ns */
    long long sampler_cpu;             /* ns of CPU the sampler thread used for it */
    long samples;
    long errors;   /* frames or stacks that could not be read */
    int truncated; /* the trie reached MAX_NODES */
    int dirty;     /* to be cleared before its first sample */
    int used;      /* a recording happened into it */
    double interval;
    sampler_mode mode;
};

struct sampler_session {
    sampler_config cfg;
    sampler_layout layout;
    pid_t pid;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the sampler thread's tid is set */
    /* The sampler thread's clock: armed (one period, then every period)
     * only while recording, so between recordings, and in a cell shorter
     * than one period, the thread is never woken. */
    int timer_fd;
    /* Protected by mu. */
    int recording, quit;
    sampler_data *cur;  /* the recording in progress, or the one just ended */
    sampler_data *last; /* the recording before cur */
    uintptr_t target;   /* the PyThreadState of the recording thread */
    long target_tid;
    long long target_cpu;   /* its CPU clock at sampler_begin (cpu mode) */
    long sampler_tid;       /* the sampler thread's kernel tid (set before it runs) */
    long long sampler_cpu0; /* its CPU clock at sampler_begin */
    uintptr_t target_stop;  /* its innermost frame at sampler_begin: the walk stops
                               there (the magic's callers are left out), or 0 */
    PyInterpreterState *interp;
};

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The CPU clock of any thread of ours, by its kernel tid (what
 * pthread_getcpuclockid gives, without needing a live pthread_t). */
static long long thread_cpu_ns(long tid)
{
    clockid_t clk = (clockid_t)((~(unsigned long)tid << 3) | 6);
    struct timespec ts;
    if (clock_gettime(clk, &ts) < 0)
        return -1;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- safe reads ------------------------------------------------------------ */

/* Copies n bytes at address src of our own process into dst. Returns 0, or
 * -1 when any of it is not mapped (EFAULT) or cannot be read. */
static int mem_read(const sampler_session *s, void *dst, uintptr_t src, size_t n)
{
    struct iovec local = {dst, n}, remote = {(void *)src, n};
    if (src < 4096)
        return -1;
    return process_vm_readv(s->pid, &local, 1, &remote, 1, 0) == (ssize_t)n ? 0 : -1;
}

static int read_ptr(const sampler_session *s, uintptr_t src, uintptr_t *out)
{
    return mem_read(s, out, src, sizeof *out);
}

/* Appends code point c to out as UTF-8; returns the bytes written. */
static int put_utf8(char *out, uint32_t c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Copies the str at p as a new malloc'd UTF-8 string, or NULL when p is not
 * a compact str (code objects only hold compact ones). */
static char *read_str(const sampler_session *s, uintptr_t p)
{
    PyCompactUnicodeObject h;
    if (mem_read(s, &h, p, sizeof(PyASCIIObject)) < 0)
        return NULL;
    if (h._base.ob_base.ob_type != &PyUnicode_Type || !h._base.state.compact)
        return NULL;
    size_t len = (size_t)h._base.length, kind = 1, skip = sizeof(PyASCIIObject);
    if (len > MAX_STR)
        len = MAX_STR;
    if (!h._base.state.ascii) {
        if (mem_read(s, &h, p, sizeof h) < 0)
            return NULL;
        kind = h._base.state.kind;
        skip = sizeof(PyCompactUnicodeObject);
        if (kind != 1 && kind != 2 && kind != 4)
            return NULL;
    }
    uint8_t raw[MAX_STR * 4];
    char *out = malloc(len * 4 + 1);
    if (out == NULL || mem_read(s, raw, p + skip, len * kind) < 0) {
        free(out);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = raw[i];
        if (kind == 2) { /* raw may be unaligned for wider loads */
            uint16_t u;
            memcpy(&u, raw + 2 * i, sizeof u);
            c = u;
        } else if (kind == 4) {
            memcpy(&c, raw + 4 * i, sizeof c);
        }
        o += (size_t)put_utf8(out + o, c);
    }
    out[o] = '\0';
    return out;
}

/* ---- the code table ---------------------------------------------------------- */

static size_t hash_ptr(uintptr_t p)
{
    uint64_t x = (uint64_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int grow_index(uint32_t **index, uint32_t *cap, uint32_t n, size_t (*key)(void *, uint32_t),
                      void *ctx)
{
    if ((uint64_t)(n + 1) * 2 <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 1024;
    uint32_t *ni = calloc(ncap, sizeof *ni);
    if (ni == NULL)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        size_t h = key(ctx, i) & (ncap - 1);
        while (ni[h])
            h = (h + 1) & (ncap - 1);
        ni[h] = i + 1;
    }
    free(*index);
    *index = ni;
    *cap = ncap;
    return 0;
}

static size_t code_key(void *ctx, uint32_t i)
{
    return hash_ptr(((sampler_data *)ctx)->codes[i].ptr);
}

static void code_info_free(code_info *c)
{
    free(c->filename);
    free(c->qualname);
    free(c->linetable);
}

/* Copies what reports need of the code object at p. Returns 0, or -1 when p
 * is not a code object (a frame that changed under us) or cannot be read. */
static int read_code(const sampler_session *s, uintptr_t p, code_info *c)
{
    const sampler_layout *l = &s->layout;
    uint8_t hdr[512];
    uintptr_t type, fn, qn, lt;
    int first, flags;

    memset(c, 0, sizeof *c);
    if (l->co_read > sizeof hdr || mem_read(s, hdr, p, l->co_read) < 0)
        return -1;
    memcpy(&type, hdr + offsetof(PyObject, ob_type), sizeof type);
    if (type != (uintptr_t)&PyCode_Type)
        return -1;
    memcpy(&fn, hdr + l->co_filename, sizeof fn);
    memcpy(&qn, hdr + l->co_qualname, sizeof qn);
    memcpy(&lt, hdr + l->co_linetable, sizeof lt);
    memcpy(&first, hdr + l->co_firstlineno, sizeof first);
    memcpy(&flags, hdr + l->co_flags, sizeof flags);
    c->ptr = p;
    c->firstlineno = first;
    c->flags = flags;
    c->filename = read_str(s, fn);
    c->qualname = read_str(s, qn);
    if (c->filename == NULL || c->qualname == NULL)
        goto error;
    PyVarObject bh;
    if (mem_read(s, &bh, lt, sizeof bh) < 0 || bh.ob_base.ob_type != &PyBytes_Type ||
        bh.ob_size < 0 || bh.ob_size > MAX_LINETABLE)
        goto error;
    c->linetable_len = (size_t)bh.ob_size;
    c->linetable = malloc(c->linetable_len + 1);
    if (c->linetable == NULL ||
        mem_read(s, c->linetable, lt + offsetof(PyBytesObject, ob_sval), c->linetable_len) < 0)
        goto error;
    return 0;
error:
    code_info_free(c);
    memset(c, 0, sizeof *c);
    return -1;
}

/* Returns the index of the code object at p in d's table (copying it on
 * first sight), or NONE when it cannot be read. */
static uint32_t code_index(const sampler_session *s, sampler_data *d, uintptr_t p)
{
    if (d->cindex_cap) {
        size_t h = hash_ptr(p) & (d->cindex_cap - 1);
        for (; d->cindex[h]; h = (h + 1) & (d->cindex_cap - 1))
            if (d->codes[d->cindex[h] - 1].ptr == p)
                return d->cindex[h] - 1;
    }
    code_info c;
    if (read_code(s, p, &c) < 0)
        return NONE;
    if (d->ncodes == d->capcodes) {
        uint32_t cap = d->capcodes ? d->capcodes * 2 : 256;
        code_info *nc = realloc(d->codes, cap * sizeof *nc);
        if (nc == NULL) {
            code_info_free(&c);
            return NONE;
        }
        d->codes = nc;
        d->capcodes = cap;
    }
    if (grow_index(&d->cindex, &d->cindex_cap, d->ncodes, code_key, d) < 0) {
        code_info_free(&c);
        return NONE;
    }
    uint32_t i = d->ncodes++;
    d->codes[i] = c;
    size_t h = hash_ptr(p) & (d->cindex_cap - 1);
    while (d->cindex[h])
        h = (h + 1) & (d->cindex_cap - 1);
    d->cindex[h] = i + 1;
    return i;
}

/* ---- the trie ---------------------------------------------------------------- */

static size_t node_hash(uint32_t parent, uint32_t code, int32_t lasti)
{
    return hash_ptr(((uint64_t)parent << 32) ^ ((uint64_t)code << 20) ^ (uint32_t)lasti);
}

static size_t node_key(void *ctx, uint32_t i)
{
    const node *n = &((sampler_data *)ctx)->nodes[i];
    return node_hash(n->parent, n->code, n->lasti);
}

/* Returns the child (code, lasti) of parent, adding it; NONE when full. */
static uint32_t node_child(sampler_data *d, uint32_t parent, uint32_t code, int32_t lasti)
{
    if (d->nindex_cap) {
        size_t h = node_hash(parent, code, lasti) & (d->nindex_cap - 1);
        for (; d->nindex[h]; h = (h + 1) & (d->nindex_cap - 1)) {
            const node *n = &d->nodes[d->nindex[h] - 1];
            if (n->parent == parent && n->code == code && n->lasti == lasti)
                return d->nindex[h] - 1;
        }
    }
    if (d->nnodes >= MAX_NODES) {
        d->truncated = 1;
        return NONE;
    }
    if (d->nnodes == d->capnodes) {
        uint32_t cap = d->capnodes ? d->capnodes * 2 : 1024;
        node *nn = realloc(d->nodes, cap * sizeof *nn);
        if (nn == NULL)
            return NONE;
        d->nodes = nn;
        d->capnodes = cap;
    }
    if (grow_index(&d->nindex, &d->nindex_cap, d->nnodes, node_key, d) < 0)
        return NONE;
    uint32_t i = d->nnodes++;
    d->nodes[i] = (node){parent, code, lasti, 0, 0.0};
    size_t h = node_hash(parent, code, lasti) & (d->nindex_cap - 1);
    while (d->nindex[h])
        h = (h + 1) & (d->nindex_cap - 1);
    d->nindex[h] = i + 1;
    return i;
}

/* Returns d's record of the thread (tstate, tid), adding it; NULL on OOM. */
static thread_rec *thread_of(sampler_data *d, uintptr_t tstate, long tid)
{
    for (int i = 0; i < d->nthreads; i++)
        if (d->threads[i].tstate == tstate && d->threads[i].tid == tid)
            return &d->threads[i];
    if (d->nthreads == d->capthreads) {
        int cap = d->capthreads ? d->capthreads * 2 : 8;
        thread_rec *nt = realloc(d->threads, (size_t)cap * sizeof *nt);
        if (nt == NULL)
            return NULL;
        d->threads = nt;
        d->capthreads = cap;
    }
    uint32_t root = node_child(d, NONE, NONE, d->nthreads);
    if (root == NONE)
        return NULL;
    thread_rec *t = &d->threads[d->nthreads++];
    *t = (thread_rec){tstate, tid, -1, root};
    return t;
}

static void data_reset(sampler_data *d)
{
    for (uint32_t i = 0; i < d->ncodes; i++)
        code_info_free(&d->codes[i]);
    d->ncodes = d->nnodes = 0;
    d->nthreads = 0;
    if (d->nindex)
        memset(d->nindex, 0, d->nindex_cap * sizeof *d->nindex);
    if (d->cindex)
        memset(d->cindex, 0, d->cindex_cap * sizeof *d->cindex);
    d->samples = d->errors = 0;
    d->truncated = 0;
    d->dirty = 0;
}

void sampler_data_free(sampler_data *d)
{
    if (d == NULL)
        return;
    for (uint32_t i = 0; i < d->ncodes; i++)
        code_info_free(&d->codes[i]);
    free(d->codes);
    free(d->cindex);
    free(d->nodes);
    free(d->nindex);
    free(d->threads);
    free(d);
}

/* ---- taking a sample (sampler thread, mu held) -------------------------------- */

typedef struct {
    uintptr_t code;
    uintptr_t instr;
} raw_frame;

/* What a stack is read into: its frames, and a copy of the top of the
 * thread's frame stack (frames live there, one after the other), so that a
 * stack costs a few system calls however deep it is. */
typedef struct {
    raw_frame raw[MAX_DEPTH];
    uint8_t window[WINDOW];
} walker;

/* Reads the frame chain of tstate, innermost first, into w->raw, up to
 * the frame stop (not included; 0: to the outermost). Returns the number of
 * frames, or -1 when the thread state cannot be read. */
static int read_stack(const sampler_session *s, uintptr_t tstate, uintptr_t stop, walker *w,
                      long *errors)
{
    const sampler_layout *l = &s->layout;
    uintptr_t f = 0, chunk = 0, top = 0, lo = 0, hi = 0;
    struct iovec local[3] = {{&f, sizeof f}, {&chunk, sizeof chunk}, {&top, sizeof top}};
    struct iovec remote[3] = {{(void *)(tstate + l->ts_frame), sizeof f},
                              {(void *)(tstate + l->ts_chunk), sizeof chunk},
                              {(void *)(tstate + l->ts_top), sizeof top}};
    if (tstate < 4096 || process_vm_readv(s->pid, local, 3, remote, 3, 0) != 3 * sizeof f)
        return -1;
    if (l->ts_via_cframe && f != 0 && read_ptr(s, f + l->cframe_frame, &f) < 0)
        return -1;
    if (chunk != 0 && top > chunk && top - chunk < ((uintptr_t)1 << 30)) {
        lo = top - chunk > WINDOW ? top - WINDOW : chunk;
        if (stop > lo && stop < top) /* only what lies above the callers */
            lo = stop;
        hi = top;
        if (mem_read(s, w->window, lo, hi - lo) < 0)
            lo = hi = 0;
    }
    int n = 0;
    uint8_t buf[256];
    if (l->fr_read > sizeof buf)
        return -1;
    while (f != 0 && f != stop && n < MAX_DEPTH) {
        const uint8_t *fb = buf;
        if (f >= lo && f + l->fr_read <= hi)
            fb = w->window + (f - lo);
        else if (mem_read(s, buf, f, l->fr_read) < 0) {
            (*errors)++;
            break;
        }
        uintptr_t code, prev, instr;
        memcpy(&code, fb + l->fr_code, sizeof code);
        memcpy(&prev, fb + l->fr_previous, sizeof prev);
        memcpy(&instr, fb + l->fr_instr, sizeof instr);
        int owner = fb[l->fr_owner];
        if (l->owner_first_shim < 0 || owner < l->owner_first_shim)
            w->raw[n++] = (raw_frame){code & l->code_mask, instr};
        f = prev;
    }
    return n;
}

static void sample_thread(sampler_session *s, sampler_data *d, uintptr_t tstate, long tid,
                          long long now, walker *w)
{
    thread_rec *t = thread_of(d, tstate, tid);
    if (t == NULL) {
        d->errors++;
        return;
    }
    double wt;
    if (s->cfg.mode == SAMPLER_CPU) {
        long long cpu = thread_cpu_ns(tid);
        if (t->last_cpu < 0 && tstate == s->target)
            t->last_cpu = s->target_cpu;
        long long prev = t->last_cpu;
        t->last_cpu = cpu;
        if (cpu < 0 || prev < 0 || cpu <= prev)
            return;
        wt = (double)(cpu - prev) / 1e9;
    } else {
        wt = (double)(now - d->last_ts) / 1e9;
    }
    int n = read_stack(s, tstate, tstate == s->target ? s->target_stop : 0, w, &d->errors);
    raw_frame *raw = w->raw;
    if (n < 0) {
        d->errors++;
        return;
    }
    uint32_t at = t->root;
    for (int i = n - 1; i >= 0; i--) {
        uint32_t c = code_index(s, d, raw[i].code);
        if (c == NONE) {
            d->errors++;
            continue;
        }
        intptr_t off = (intptr_t)(raw[i].instr - (d->codes[c].ptr + s->layout.co_code));
        if (off < 0 || off > (1 << 26))
            off = -1;
        uint32_t child = node_child(d, at, c, (int32_t)off);
        if (child == NONE)
            break;
        at = child;
    }
    d->nodes[at].samples++;
    d->nodes[at].seconds += wt;
}

static void take_sample(sampler_session *s, sampler_data *d, walker *w)
{
    long long now = mono_ns();
    if (s->cfg.all_threads) {
        uintptr_t ts = 0;
        if (read_ptr(s, (uintptr_t)s->interp + s->layout.is_threads_head, &ts) < 0)
            d->errors++;
        for (int k = 0; ts != 0 && k < 4096; k++) {
            unsigned long tid = 0;
            if (mem_read(s, &tid, ts + s->layout.ts_native_tid, sizeof tid) < 0) {
                d->errors++;
                break;
            }
            sample_thread(s, d, ts, (long)tid, now, w);
            if (read_ptr(s, ts + s->layout.ts_next, &ts) < 0) {
                d->errors++;
                break;
            }
        }
    } else {
        sample_thread(s, d, s->target, s->target_tid, now, w);
    }
    d->samples++;
    d->last_ts = now;
}

/* Arms the session's timer: the first tick one period from now, then one
 * every period (interval 0: disarmed). */
static void arm_timer(sampler_session *s, long long first_ns, long long period_ns)
{
    struct itimerspec it = {{(time_t)(period_ns / 1000000000LL), (long)(period_ns % 1000000000LL)},
                            {(time_t)(first_ns / 1000000000LL), (long)(first_ns % 1000000000LL)}};
    timerfd_settime(s->timer_fd, 0, &it, NULL); /* cannot fail on a valid fd and values */
}

static long long period_ns(const sampler_session *s)
{
    long long period = (long long)(s->cfg.interval * 1e9);
    return period < 10000 ? 10000 : period;
}

static void *sampler_main(void *arg)
{
    sampler_session *s = arg;
    walker *w = malloc(sizeof *w);
    pthread_mutex_lock(&s->mu);
    s->sampler_tid = (long)syscall(SYS_gettid);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);

    for (;;) {
        /* Each tick (or several, when this thread was late: one sample,
         * weighted by the time since the last) while recording; nothing
         * between recordings. */
        uint64_t ticks;
        ssize_t n = read(s->timer_fd, &ticks, sizeof ticks);
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            break; /* the fd is gone: cannot happen before sampler_free */
        pthread_mutex_lock(&s->mu);
        if (s->quit) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (n == sizeof ticks && s->recording) {
            sampler_data *d = s->cur;
            if (d->dirty)
                data_reset(d);
            if (w != NULL)
                take_sample(s, d, w);
            else
                d->errors++;
        }
        pthread_mutex_unlock(&s->mu);
    }
    free(w);
    return NULL;
}

/* ---- sessions ------------------------------------------------------------------ */

sampler_session *sampler_new(const sampler_config *cfg)
{
    char err[256] = "";
    sampler_session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    s->cfg = *cfg;
    s->pid = getpid();
    s->interp = PyInterpreterState_Get();
    if (sampler_layout_init(&s->layout, err, sizeof err) < 0) {
        PyErr_Format(PyExc_RuntimeError, "%%sample: cannot read this interpreter's frames: %s",
                     err);
        free(s);
        return NULL;
    }
    /* Can we read our own memory? (A seccomp filter may refuse.) */
    uintptr_t probe = 0, self = (uintptr_t)&probe, got = 0;
    if (mem_read(s, &got, (uintptr_t)&self, sizeof got) < 0 || got != self) {
        PyErr_Format(PyExc_RuntimeError,
                     "%%sample: process_vm_readv on our own process failed (%s); a seccomp "
                     "filter may forbid it",
                     strerror(errno));
        free(s);
        return NULL;
    }
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (s->timer_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* The sampler thread takes no signals: SIGINT and timers stay with the
     * interpreter's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        close(s->timer_fd);
        free(s);
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    pthread_mutex_lock(&s->mu); /* its tid, for the CPU it uses */
    while (s->sampler_tid == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return s;
}

void sampler_begin(sampler_session *s, int skip_callers)
{
    PyThreadState *ts = PyThreadState_Get();
    long tid = (long)syscall(SYS_gettid);
    long long cpu = s->cfg.mode == SAMPLER_CPU ? thread_cpu_ns(tid) : -1;
    uintptr_t stop = 0;
    if (skip_callers) {
        const sampler_layout *l = &s->layout;
        uintptr_t f = 0;
        if (read_ptr(s, (uintptr_t)ts + l->ts_frame, &f) == 0 && l->ts_via_cframe && f != 0 &&
            read_ptr(s, f + l->cframe_frame, &f) < 0)
            f = 0;
        stop = f;
    }
    long long now = mono_ns();

    pthread_mutex_lock(&s->mu);
    if (s->cur != NULL && s->cur->used) { /* it becomes the last; the old last is reused */
        sampler_data *d = s->last;
        s->last = s->cur;
        s->cur = d;
    }
    if (s->cur == NULL)
        s->cur = calloc(1, sizeof *s->cur);
    if (s->cur != NULL) {
        s->cur->dirty = 1;
        s->cur->used = 1;
        s->cur->t_begin = s->cur->last_ts = now;
        s->cur->t_end = 0;
        s->cur->sampler_cpu = -1;
        s->cur->interval = s->cfg.interval;
        s->cur->mode = s->cfg.mode;
        s->target = (uintptr_t)ts;
        s->target_tid = tid;
        s->target_cpu = cpu;
        s->target_stop = stop;
        s->sampler_cpu0 = s->sampler_tid > 0 ? thread_cpu_ns(s->sampler_tid) : -1;
        s->recording = 1;
        arm_timer(s, period_ns(s), period_ns(s));
    }
    pthread_mutex_unlock(&s->mu);
}

void sampler_end(sampler_session *s)
{
    long long now = mono_ns();
    pthread_mutex_lock(&s->mu);
    if (s->recording && s->cur != NULL) {
        if (s->cur->dirty) /* no sample was taken */
            data_reset(s->cur);
        s->cur->t_end = now;
        long long cpu = s->sampler_tid > 0 ? thread_cpu_ns(s->sampler_tid) : -1;
        s->cur->sampler_cpu = cpu >= 0 && s->sampler_cpu0 >= 0 ? cpu - s->sampler_cpu0 : -1;
    }
    s->recording = 0;
    arm_timer(s, 0, 0);
    pthread_mutex_unlock(&s->mu);
}

int sampler_recording(sampler_session *s)
{
    pthread_mutex_lock(&s->mu);
    int r = s->recording;
    pthread_mutex_unlock(&s->mu);
    return r;
}

sampler_data *sampler_take_last(sampler_session *s)
{
    sampler_data *d = NULL;
    pthread_mutex_lock(&s->mu);
    if (!s->recording && s->cur != NULL && s->cur->used) {
        d = s->cur;
        s->cur = NULL;
    } else if (s->last != NULL && s->last->used) {
        d = s->last;
        s->last = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return d;
}

void sampler_free(sampler_session *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    s->recording = 0;
    arm_timer(s, 1, 0); /* one tick at once: the thread wakes, sees quit */
    pthread_mutex_unlock(&s->mu);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
    close(s->timer_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sampler_data_free(s->cur);
    sampler_data_free(s->last);
    free(s);
}

/* ---- reading a recording (GIL held) ------------------------------------------------ */

/* Reads a varint of the location table at *p (6 bits a byte, 0x40 = more). */
static unsigned read_varint(const uint8_t *t, size_t n, size_t *p)
{
    unsigned v = 0, shift = 0;
    while (*p < n) {
        uint8_t b = t[(*p)++];
        v |= (unsigned)(b & 63) << shift;
        shift += 6;
        if (!(b & 64))
            break;
    }
    return v;
}

static int read_svarint(const uint8_t *t, size_t n, size_t *p)
{
    unsigned v = read_varint(t, n, p);
    return (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
}

/* Walks the location table (CPython's Objects/locations.md) of c: calls
 * back with each entry's [start, end) byte range and line (-1: none).
 * Returns the value the callback stops with, or 0. */
static int walk_lines(const code_info *c, int (*cb)(void *, int, int, int), void *ctx)
{
    const uint8_t *t = c->linetable;
    size_t n = c->linetable_len, p = 0;
    int line = c->firstlineno, addr = 0;
    while (p < n) {
        uint8_t first = t[p++];
        int code = (first >> 3) & 15, len = ((first & 7) + 1) * 2;
        int entry_line;
        if (code == 15) {
            entry_line = -1;
        } else if (code == 14) {
            line += read_svarint(t, n, &p);
            entry_line = line;
            read_varint(t, n, &p);
            read_varint(t, n, &p);
            read_varint(t, n, &p);
        } else if (code == 13) {
            line += read_svarint(t, n, &p);
            entry_line = line;
        } else if (code >= 10) {
            line += code - 10;
            entry_line = line;
            p += 2;
        } else {
            entry_line = line;
            p += 1;
        }
        int r = cb(ctx, addr, addr + len, entry_line);
        if (r)
            return r;
        addr += len;
    }
    return 0;
}

typedef struct {
    int lasti, line, last;
} line_query;

static int find_line(void *ctx, int start, int end, int line)
{
    line_query *q = ctx;
    if (q->lasti >= start && q->lasti < end) {
        q->line = line;
        return 1;
    }
    return 0;
}

static int max_line(void *ctx, int start, int end, int line)
{
    (void)start;
    (void)end;
    line_query *q = ctx;
    if (line > q->last)
        q->last = line;
    return 0;
}

/* The line of the instruction at byte offset lasti (the first line when
 * unknown). */
static int code_line(const code_info *c, int lasti)
{
    line_query q = {lasti, -1, 0};
    if (lasti >= 0)
        walk_lines(c, find_line, &q);
    return q.line >= 0 ? q.line : c->firstlineno;
}

/* Returns a new dict {native_id: thread name} from threading, if imported. */
static PyObject *thread_names(void)
{
    PyObject *names = PyDict_New(), *list = NULL;
    if (names == NULL)
        return NULL;
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    PyObject *mod = modules ? PyDict_GetItemString(modules, "threading") : NULL;
    if (mod == NULL)
        return names;
    list = PyObject_CallMethod(mod, "enumerate", NULL);
    if (list == NULL)
        goto error;
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "threading.enumerate() did not return a list");
        goto error;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(list, i);
        PyObject *nid = PyObject_GetAttrString(t, "native_id");
        PyObject *name = nid ? PyObject_GetAttrString(t, "name") : NULL;
        int rc = name && nid != Py_None ? PyDict_SetItem(names, nid, name) : 0;
        Py_XDECREF(nid);
        Py_XDECREF(name);
        if (rc < 0 || name == NULL)
            goto error;
    }
    Py_DECREF(list);
    return names;
error:
    Py_XDECREF(list);
    Py_DECREF(names);
    return NULL;
}

PyObject *sampler_data_to_python(const sampler_data *d)
{
    PyObject *out = NULL, *stacks = NULL, *threads = NULL, *names = NULL, *funcs = NULL;
    PyObject **frames = NULL, **labels = NULL, *cache = NULL;
    PyObject *path = NULL;

    stacks = PyList_New(0);
    threads = PyDict_New();
    funcs = PyDict_New();
    cache = PyDict_New();
    names = thread_names();
    path = PyList_New(0);
    if (!stacks || !threads || !funcs || !cache || !names || !path)
        goto error;
    labels = calloc((size_t)d->nthreads + 1, sizeof *labels);
    if (labels == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (int i = 0; i < d->nthreads; i++) {
        PyObject *tid = PyLong_FromLong(d->threads[i].tid);
        if (tid == NULL)
            goto error;
        PyObject *name = PyDict_GetItemWithError(names, tid);
        if (name != NULL)
            labels[i] = PyUnicode_FromFormat("%U (%ld)", name, d->threads[i].tid);
        else if (!PyErr_Occurred())
            labels[i] = PyUnicode_FromFormat("Thread %ld", d->threads[i].tid);
        int rc = labels[i] ? PyDict_SetItem(threads, labels[i], tid) : -1;
        Py_DECREF(tid);
        if (rc < 0)
            goto error;
    }
    for (uint32_t i = 0; i < d->ncodes; i++) {
        const code_info *c = &d->codes[i];
        line_query q = {0, 0, c->firstlineno};
        walk_lines(c, max_line, &q);
        PyObject *k = Py_BuildValue("(ssi)", c->filename, c->qualname, c->firstlineno);
        PyObject *v = k ? Py_BuildValue("(ii)", c->firstlineno, q.last) : NULL;
        int rc = v ? PyDict_SetItem(funcs, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0)
            goto error;
    }
    /* One frame tuple per node, made when first needed: (filename, qualname,
     * firstlineno, line, is_coroutine). */
    frames = calloc((size_t)d->nnodes + 1, sizeof *frames);
    if (frames == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (uint32_t i = 0; i < d->nnodes; i++) {
        const node *n = &d->nodes[i];
        if (n->samples == 0 || n->code == NONE)
            continue;
        if (PyList_SetSlice(path, 0, PyList_GET_SIZE(path), NULL) < 0)
            goto error;
        uint32_t at = i;
        int thread = 0;
        while (at != NONE) {
            const node *m = &d->nodes[at];
            if (m->code == NONE) {
                thread = m->lasti;
                break;
            }
            if (frames[at] == NULL) {
                const code_info *c = &d->codes[m->code];
                PyObject *f = Py_BuildValue(
                    "(ssiiO)", c->filename, c->qualname, c->firstlineno, code_line(c, m->lasti),
                    (c->flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR))
                        ? Py_True
                        : Py_False);
                if (f == NULL)
                    goto error;
                /* equal frames share one tuple */
                PyObject *shared = PyDict_SetDefault(cache, f, f);
                frames[at] = shared ? Py_NewRef(shared) : NULL;
                Py_DECREF(f);
                if (frames[at] == NULL)
                    goto error;
            }
            if (PyList_Append(path, frames[at]) < 0)
                goto error;
            at = m->parent;
        }
        if (PyList_Reverse(path) < 0)
            goto error;
        PyObject *tup = PyList_AsTuple(path);
        PyObject *row =
            tup ? Py_BuildValue("(OOId)", labels[thread], tup, n->samples, n->seconds) : NULL;
        Py_XDECREF(tup);
        if (row == NULL || PyList_Append(stacks, row) < 0) {
            Py_XDECREF(row);
            goto error;
        }
        Py_DECREF(row);
    }
    long long end = d->t_end ? d->t_end : d->last_ts;
    out = Py_BuildValue("{s:d,s:O,s:d,s:l,s:d,s:s,s:O,s:l,s:O,s:O}", "sampler_cpu",
                        (double)d->sampler_cpu / 1e9, "stacks", stacks, "duration",
                        (double)(end - d->t_begin) / 1e9, "samples", d->samples, "interval",
                        d->interval, "mode", d->mode == SAMPLER_CPU ? "cpu" : "wall", "threads",
                        threads, "errors", d->errors, "truncated",
                        d->truncated ? Py_True : Py_False, "functions", funcs);
error:
    if (frames != NULL)
        for (uint32_t i = 0; i < d->nnodes; i++)
            Py_XDECREF(frames[i]);
    free(frames);
    if (labels != NULL)
        for (int i = 0; i < d->nthreads; i++)
            Py_XDECREF(labels[i]);
    free(labels);
    Py_XDECREF(stacks);
    Py_XDECREF(threads);
    Py_XDECREF(names);
    Py_XDECREF(funcs);
    Py_XDECREF(cache);
    Py_XDECREF(path);
    return out;
}
