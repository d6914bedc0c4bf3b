/* memprof/engine.c - the memory profiler's engine: hooks on PyMem's three domains
 * and on NumPy's data handler feeding a pointer->size table, the line
 * attribution of %mprun, the span recorder of %%mprof (both fed by the
 * interpreter backend, memprof/backend.h), and RSS probes (/proc/self/statm, VmHWM, a sampling
 * thread).
 *
 * Locking: the MEM and OBJ domains' table and counters are protected by the
 * GIL; the RAW domain's and NumPy's (called without the GIL at times) by
 * `raw_lock`, a spinlock. Line statistics are owned by the thread that runs
 * the traced statement (tl_traced).
 */
#include "memprof/backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define TLS __thread __attribute__((tls_model("initial-exec")))

/* Set while this thread runs inside an allocator hook: the previous
 * allocator may call another domain (pymalloc -> PyMem_RawMalloc), and that
 * inner block must not be counted twice. */
static TLS int tl_busy;
/* Set on the thread whose lines %mprun attributes, and on the thread whose
 * target calls %%mprof records. */
static TLS int tl_traced;
static TLS int tl_spans;

/* ---- pointer tables --------------------------------------------------------
 *
 * A table maps each tracked block's address to its size. Most blocks are
 * small and 16-byte aligned, and blocks allocated together sit together
 * (pymalloc pools, malloc's heap), so the table is a page map: each 4 KiB
 * page holding the start of a tracked block gets a record with one uint16_t
 * per 16-byte granule, the block's size + 1 (0 = untracked, BIG = look in the
 * `big` hash table, which also takes unaligned addresses). Records are found
 * through a small hash keyed by page number behind a direct-mapped cache, so
 * consecutive allocations touch a few hot cache lines, not a random slot of
 * a large table.
 *
 * There are two tables. `gil_tab` serves the MEM and OBJ domains, whose
 * functions run with the GIL held: the GIL protects it, no lock. `raw_tab`
 * serves the RAW domain and NumPy's handler, which may run without the GIL:
 * protected by raw_lock. A block is freed through the domain that allocated
 * it, so each block lives in one table.
 */

typedef struct {
    uintptr_t key; /* block address; 0 = empty slot */
    size_t size;
} slot;

#define PAGE_SHIFT         12
#define GRAN_SHIFT         4
#define GRANS              (1 << (PAGE_SHIFT - GRAN_SHIFT))
#define BIG                0xFFFFu
#define CHUNK_RECS         2048 /* records per mmap'ed chunk (1 MiB) */
#define PCACHE             64   /* direct-mapped page cache entries */
#define BIG_INITIAL_SLOTS  ((size_t)1 << 10)
#define PMAP_INITIAL_SLOTS ((size_t)1 << 12)

typedef struct {
    uint16_t size1[GRANS];
} page_rec;

typedef struct {
    uintptr_t page; /* 0 = empty */
    page_rec *rec;
} page_slot;

typedef struct rec_chunk {
    struct rec_chunk *next;
    size_t used;
    page_rec recs[CHUNK_RECS];
} rec_chunk;

typedef struct {
    slot *big; /* mmap'ed, big_mask + 1 slots */
    size_t big_mask, big_count, big_bytes;
    page_slot *pmap; /* mmap'ed, pmap_mask + 1 slots */
    size_t pmap_mask, pmap_count, pmap_bytes;
    rec_chunk *chunks; /* newest first; freed only by tab_fini */
    size_t nrecs;
    uintptr_t cache_page[PCACHE];
    page_rec *cache_rec[PCACHE];
    int lost; /* a block went untracked: out of memory */
} table;

/* Live bytes of one table's blocks. Written by the table's owner (GIL or
 * raw_lock holder) with relaxed atomic stores, readable from any thread. */
typedef struct {
    int64_t live;
} group;

static table gil_tab, raw_tab;
static group gil_grp, raw_grp;
static atomic_flag raw_lock = ATOMIC_FLAG_INIT;
static int64_t peak_live; /* highest gil_grp.live + raw_grp.live; atomic max */

/* 1 between memprof_start and memprof_stop. Changed with the GIL and
 * raw_lock held. */
static atomic_int tracking;

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static inline void lock(void)
{
    int spins = 0;
    while (atomic_flag_test_and_set_explicit(&raw_lock, memory_order_acquire)) {
        if (++spins > 64) {
            sched_yield();
            spins = 0;
        }
    }
}

static inline void unlock(void)
{
    atomic_flag_clear_explicit(&raw_lock, memory_order_release);
}

static void *map_zeroed(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Home slot of an address (blocks are at least 16-byte aligned): a
 * multiply-xorshift mix, so that evenly spaced blocks scatter. */
static inline size_t home(uintptr_t key, size_t mask)
{
    uint64_t x = (uint64_t)(key >> 4) * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 32;
    return (size_t)x & mask;
}

static inline size_t page_home(uintptr_t page, size_t mask)
{
    uint64_t x = (uint64_t)page * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 32;
    return (size_t)x & mask;
}

/* Doubles t's big table. Returns 0, or -1 (unchanged). */
static int big_grow(table *t)
{
    size_t nslots = (t->big_mask + 1) * 2, mask = nslots - 1, bytes = nslots * sizeof(slot);
    slot *nt = map_zeroed(bytes);
    if (nt == NULL)
        return -1;
    for (size_t i = 0; i <= t->big_mask; i++) {
        if (t->big[i].key == 0)
            continue;
        size_t j = home(t->big[i].key, mask);
        while (nt[j].key != 0)
            j = (j + 1) & mask;
        nt[j] = t->big[i];
    }
    munmap(t->big, t->big_bytes);
    t->big = nt;
    t->big_mask = mask;
    t->big_bytes = bytes;
    return 0;
}

/* Records key -> size in the big table; returns the size of a stale entry it
 * replaced, else 0. */
static size_t big_put(table *t, uintptr_t key, size_t size)
{
    if ((t->big_count + 1) * 8 > (t->big_mask + 1) * 5 && big_grow(t) < 0) {
        t->lost = 1;
        return 0;
    }
    size_t i = home(key, t->big_mask);
    while (t->big[i].key != 0) {
        if (t->big[i].key == key) {
            size_t old = t->big[i].size;
            t->big[i].size = size;
            return old;
        }
        i = (i + 1) & t->big_mask;
    }
    t->big[i].key = key;
    t->big[i].size = size;
    t->big_count++;
    return 0;
}

/* Removes key from the big table. Returns 1 and its size, or 0. Deletion
 * shifts the following cluster back (no tombstones). */
static int big_take(table *t, uintptr_t key, size_t *size)
{
    size_t mask = t->big_mask, i = home(key, mask);
    for (;;) {
        if (t->big[i].key == 0)
            return 0;
        if (t->big[i].key == key)
            break;
        i = (i + 1) & mask;
    }
    *size = t->big[i].size;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->big[j].key == 0)
            break;
        size_t k = home(t->big[j].key, mask);
        /* Move j into the hole at i unless its home lies in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            t->big[i] = t->big[j];
            i = j;
        }
    }
    t->big[i].key = 0;
    t->big_count--;
    return 1;
}

static int pmap_grow(table *t)
{
    size_t nslots = (t->pmap_mask + 1) * 2, mask = nslots - 1, bytes = nslots * sizeof(page_slot);
    page_slot *nt = map_zeroed(bytes);
    if (nt == NULL)
        return -1;
    for (size_t i = 0; i <= t->pmap_mask; i++) {
        if (t->pmap[i].page == 0)
            continue;
        size_t j = page_home(t->pmap[i].page, mask);
        while (nt[j].page != 0)
            j = (j + 1) & mask;
        nt[j] = t->pmap[i];
    }
    munmap(t->pmap, t->pmap_bytes);
    t->pmap = nt;
    t->pmap_mask = mask;
    t->pmap_bytes = bytes;
    return 0;
}

/* The record of a page, created if `create`; NULL if absent or out of
 * memory. */
static page_rec *page_get_slow(table *t, uintptr_t page, int create)
{
    size_t c = page & (PCACHE - 1);
    size_t i = page_home(page, t->pmap_mask);
    while (t->pmap[i].page != 0) {
        if (t->pmap[i].page == page) {
            t->cache_page[c] = page;
            t->cache_rec[c] = t->pmap[i].rec;
            return t->pmap[i].rec;
        }
        i = (i + 1) & t->pmap_mask;
    }
    if (!create)
        return NULL;
    if ((t->pmap_count + 1) * 2 > t->pmap_mask + 1) {
        if (pmap_grow(t) < 0)
            return NULL;
        i = page_home(page, t->pmap_mask);
        while (t->pmap[i].page != 0)
            i = (i + 1) & t->pmap_mask;
    }
    if (t->chunks == NULL || t->chunks->used == CHUNK_RECS) {
        rec_chunk *ch = map_zeroed(sizeof(rec_chunk));
        if (ch == NULL)
            return NULL;
        ch->next = t->chunks;
        t->chunks = ch;
    }
    page_rec *r = &t->chunks->recs[t->chunks->used++];
    t->nrecs++;
    t->pmap[i].page = page;
    t->pmap[i].rec = r;
    t->pmap_count++;
    t->cache_page[c] = page;
    t->cache_rec[c] = r;
    return r;
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE page_rec *page_get(table *t, uintptr_t page, int create)
{
    size_t c = page & (PCACHE - 1);
    if (t->cache_page[c] == page)
        return t->cache_rec[c];
    return page_get_slow(t, page, create);
}

/* Records key -> size. Returns the size of a stale entry it replaced (a
 * block freed behind our back), else 0. Sets t->lost if it cannot. */
ALWAYS_INLINE size_t tab_put(table *t, uintptr_t key, size_t size)
{
    size_t stale = 0;
    if ((key & ((1u << GRAN_SHIFT) - 1)) != 0)
        return big_put(t, key, size); /* unaligned: a custom allocator */
    page_rec *r = page_get(t, key >> PAGE_SHIFT, 1);
    if (r == NULL) {
        t->lost = 1;
        return 0;
    }
    uint16_t *g = &r->size1[(key >> GRAN_SHIFT) & (GRANS - 1)];
    if (*g == BIG)
        big_take(t, key, &stale);
    else if (*g != 0)
        stale = *g - 1u;
    if (size < BIG - 1) {
        *g = (uint16_t)(size + 1);
    } else {
        *g = BIG;
        big_put(t, key, size);
    }
    return stale;
}

/* Removes key. Returns 1 and its size in *size, or 0 if untracked. */
ALWAYS_INLINE int tab_take(table *t, uintptr_t key, size_t *size)
{
    if ((key & ((1u << GRAN_SHIFT) - 1)) != 0)
        return big_take(t, key, size);
    page_rec *r = page_get(t, key >> PAGE_SHIFT, 0);
    if (r == NULL)
        return 0;
    uint16_t *g = &r->size1[(key >> GRAN_SHIFT) & (GRANS - 1)];
    if (*g == 0)
        return 0;
    if (*g == BIG) {
        *g = 0;
        return big_take(t, key, size);
    }
    *size = *g - 1u;
    *g = 0;
    return 1;
}

/* Allocates an empty table. Returns 0, or -1 (t left empty). */
static int tab_init(table *t)
{
    memset(t, 0, sizeof *t);
    t->big_bytes = BIG_INITIAL_SLOTS * sizeof(slot);
    t->pmap_bytes = PMAP_INITIAL_SLOTS * sizeof(page_slot);
    t->big = map_zeroed(t->big_bytes);
    t->pmap = map_zeroed(t->pmap_bytes);
    if (t->big == NULL || t->pmap == NULL) {
        if (t->big != NULL)
            munmap(t->big, t->big_bytes);
        if (t->pmap != NULL)
            munmap(t->pmap, t->pmap_bytes);
        memset(t, 0, sizeof *t);
        return -1;
    }
    t->big_mask = BIG_INITIAL_SLOTS - 1;
    t->pmap_mask = PMAP_INITIAL_SLOTS - 1;
    /* Page 0 is never a heap page: it marks empty cache entries. */
    return 0;
}

static void tab_fini(table *t)
{
    if (t->big != NULL)
        munmap(t->big, t->big_bytes);
    if (t->pmap != NULL)
        munmap(t->pmap, t->pmap_bytes);
    while (t->chunks != NULL) {
        rec_chunk *next = t->chunks->next;
        munmap(t->chunks, sizeof(rec_chunk));
        t->chunks = next;
    }
    memset(t, 0, sizeof *t);
}

/* ---- line attribution state (owned by the traced thread) ------------------ */

static memprof_line *cur_line; /* line charged for allocations, or NULL */
static int64_t cur_start_live; /* total live bytes when cur_line started */

ALWAYS_INLINE void charge_alloc(size_t size, int64_t live)
{
    memprof_line *l = cur_line;
    if (l == NULL)
        return;
    l->allocated += size;
    int64_t rise = live - cur_start_live;
    if (rise > l->peak)
        l->peak = rise;
}

ALWAYS_INLINE void charge_free(size_t size)
{
    if (cur_line != NULL)
        cur_line->freed += size;
}

/* ---- accounting ------------------------------------------------------------
 *
 * `raw` selects raw_tab (taking raw_lock) or gil_tab (the GIL held). */

/* Raises peak_live to live. The raw side may race with other raw threads
 * and with the GIL holder: compare-and-swap. The GIL side stores plainly
 * (a lost race can only under-report by one concurrent raw block). */
ALWAYS_INLINE void bump_peak(const int raw, int64_t live)
{
    int64_t p = LOAD(peak_live);
    if (!raw) {
        if (live > p)
            STORE(peak_live, live);
        return;
    }
    while (live > p && !__atomic_compare_exchange_n(&peak_live, &p, live, 1, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED))
        ;
}

ALWAYS_INLINE int enter(const int raw)
{
    if (raw)
        lock();
    if (!atomic_load_explicit(&tracking, memory_order_relaxed)) {
        if (raw)
            unlock();
        return 0;
    }
    return 1;
}

/* Accounts a change of the group's live bytes; returns the total live. */
ALWAYS_INLINE int64_t account(const int raw, int64_t delta)
{
    group *g = raw ? &raw_grp : &gil_grp;
    group *other = raw ? &gil_grp : &raw_grp;
    int64_t live = g->live + delta;
    STORE(g->live, live);
    return live + LOAD(other->live);
}

ALWAYS_INLINE void on_alloc(const int raw, void *p, size_t size)
{
    if (!enter(raw))
        return;
    table *t = raw ? &raw_tab : &gil_tab;
    size_t stale = tab_put(t, (uintptr_t)p, size);
    int64_t total = account(raw, (int64_t)size - (int64_t)stale);
    if (raw)
        unlock();
    bump_peak(raw, total);
    if (tl_traced)
        charge_alloc(size, total);
}

/* Forgets p before it is freed (so another thread may reuse the address).
 * Returns 1 and the size if p was tracked. */
ALWAYS_INLINE int on_free(const int raw, void *p, size_t *size)
{
    if (!enter(raw))
        return 0;
    int found = tab_take(raw ? &raw_tab : &gil_tab, (uintptr_t)p, size);
    if (found)
        account(raw, -(int64_t)*size);
    if (raw)
        unlock();
    if (found && tl_traced)
        charge_free(*size);
    return found;
}

/* After a realloc moved or resized a block: `old` bytes (0 if untracked)
 * became `size` bytes at q. Growth counts as allocated, shrinkage as freed. */
ALWAYS_INLINE void on_realloc(const int raw, void *q, size_t old, size_t size)
{
    if (!enter(raw))
        return;
    size_t stale = tab_put(raw ? &raw_tab : &gil_tab, (uintptr_t)q, size);
    int64_t total = account(raw, (int64_t)size - (int64_t)old - (int64_t)stale);
    if (raw)
        unlock();
    bump_peak(raw, total);
    if (tl_traced) {
        if (size >= old)
            charge_alloc(size - old, total);
        else
            charge_free(old - size);
    }
}

/* Removes p from the table for a realloc, leaving the counters alone
 * (on_realloc accounts the change). Returns 1 and its size if tracked. */
ALWAYS_INLINE int take_for_realloc(const int raw, void *p, size_t *size)
{
    if (!enter(raw))
        return 0;
    int found = tab_take(raw ? &raw_tab : &gil_tab, (uintptr_t)p, size);
    if (raw)
        unlock();
    return found;
}

/* Puts back a block whose realloc failed. */
ALWAYS_INLINE void put_back(const int raw, void *p, size_t size)
{
    if (!enter(raw))
        return;
    tab_put(raw ? &raw_tab : &gil_tab, (uintptr_t)p, size);
    if (raw)
        unlock();
}

/* ---- PyMem hooks ------------------------------------------------------------ */

typedef struct {
    PyMemAllocatorEx prev; /* the allocator we chain to */
    PyMemAllocatorDomain domain;
    int raw;    /* 1 for the RAW domain: raw_tab, no GIL */
    int active; /* 0 once uninstalled or stranded: pass through */
} hook_ctx;

/* The contexts of the running session's hooks (NULL when not installed).
 * A context stays allocated forever if someone else hooked the domain after
 * us and we could not unhook (it is then "stranded", passing through). */
static hook_ctx *hooks[3];

/* A thread racing with PyMem_SetAllocator() (raw domain, no GIL) may call
 * our function with the default allocator's NULL context: the default raw
 * allocator is libc's, so each hook falls back to it. */

ALWAYS_INLINE void *do_malloc(hook_ctx *c, size_t size, const int raw)
{
    void *p;
    if (raw && c == NULL)
        return malloc(size ? size : 1);
    /* Only the raw domain can be re-entered (from pymalloc). */
    if ((raw && tl_busy) || !c->active)
        return c->prev.malloc(c->prev.ctx, size);
    tl_busy = 1;
    p = c->prev.malloc(c->prev.ctx, size);
    tl_busy = 0;
    if (p != NULL)
        on_alloc(raw, p, size);
    return p;
}

ALWAYS_INLINE void *do_calloc(hook_ctx *c, size_t nelem, size_t elsize, const int raw)
{
    void *p;
    if (raw && c == NULL)
        return calloc(nelem ? nelem : 1, elsize ? elsize : 1);
    if ((raw && tl_busy) || !c->active)
        return c->prev.calloc(c->prev.ctx, nelem, elsize);
    tl_busy = 1;
    p = c->prev.calloc(c->prev.ctx, nelem, elsize);
    tl_busy = 0;
    if (p != NULL)
        on_alloc(raw, p, nelem * elsize);
    return p;
}

ALWAYS_INLINE void *do_realloc(hook_ctx *c, void *ptr, size_t size, const int raw)
{
    size_t old = 0;
    int had = 0;
    void *q;
    if (raw && c == NULL)
        return realloc(ptr, size ? size : 1);
    if ((raw && tl_busy) || !c->active)
        return c->prev.realloc(c->prev.ctx, ptr, size);
    if (ptr != NULL)
        had = take_for_realloc(raw, ptr, &old);
    tl_busy = 1;
    q = c->prev.realloc(c->prev.ctx, ptr, size);
    tl_busy = 0;
    if (q == NULL) {
        if (had)
            put_back(raw, ptr, old);
        return NULL;
    }
    on_realloc(raw, q, old, size);
    return q;
}

ALWAYS_INLINE void do_free(hook_ctx *c, void *ptr, const int raw)
{
    size_t size;
    if (raw && c == NULL) {
        free(ptr);
        return;
    }
    if (ptr != NULL && !(raw && tl_busy) && c->active)
        on_free(raw, ptr, &size);
    c->prev.free(c->prev.ctx, ptr);
}

/* The MEM and OBJ domains (GIL held) and the RAW domain. */
static void *gil_malloc(void *ctx, size_t size)
{
    return do_malloc(ctx, size, 0);
}

static void *gil_calloc(void *ctx, size_t nelem, size_t elsize)
{
    return do_calloc(ctx, nelem, elsize, 0);
}

static void *gil_realloc(void *ctx, void *ptr, size_t size)
{
    return do_realloc(ctx, ptr, size, 0);
}

static void gil_free(void *ctx, void *ptr)
{
    do_free(ctx, ptr, 0);
}

static void *raw_malloc(void *ctx, size_t size)
{
    return do_malloc(ctx, size, 1);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    return do_calloc(ctx, nelem, elsize, 1);
}

static void *raw_realloc(void *ctx, void *ptr, size_t size)
{
    return do_realloc(ctx, ptr, size, 1);
}

static void raw_free(void *ctx, void *ptr)
{
    do_free(ctx, ptr, 1);
}

static const PyMemAllocatorDomain domain_ids[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM,
                                                   PYMEM_DOMAIN_OBJ};

/* Hooks every domain. Returns 0, or -1 with MemoryError set (nothing
 * installed). GIL held. */
/* The raw domain's context once unhooked: a thread that raced with the
 * unhooking may still be using it, so it is never freed, only reused by the
 * next session (its prev is then rewritten under the GIL, between calls that
 * all pass through to the same default allocator). */
static hook_ctx *raw_spare;

/* Hooks every domain. Returns 0, or -1 with MemoryError set (nothing
 * installed). GIL held. */
static int hooks_install(void)
{
    hook_ctx *made[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        if (domain_ids[i] == PYMEM_DOMAIN_RAW && raw_spare != NULL) {
            made[i] = raw_spare;
            continue;
        }
        made[i] = calloc(1, sizeof(hook_ctx));
        if (made[i] == NULL) {
            for (int j = 0; j < i; j++)
                if (made[j] != raw_spare)
                    free(made[j]);
            PyErr_NoMemory();
            return -1;
        }
    }
    raw_spare = NULL;
    for (int i = 0; i < 3; i++) {
        made[i]->domain = domain_ids[i];
        made[i]->raw = domain_ids[i] == PYMEM_DOMAIN_RAW;
        PyMemAllocatorEx ours =
            made[i]->raw
                ? (PyMemAllocatorEx){made[i], raw_malloc, raw_calloc, raw_realloc, raw_free}
                : (PyMemAllocatorEx){made[i], gil_malloc, gil_calloc, gil_realloc, gil_free};
        PyMem_GetAllocator(domain_ids[i], &made[i]->prev);
        made[i]->active = 1;
        PyMem_SetAllocator(domain_ids[i], &ours);
        hooks[i] = made[i];
    }
    return 0;
}

/* Unhooks every domain. A domain that someone hooked after us keeps our
 * (now pass-through) hook in its chain, and its context is never freed. */
static void hooks_remove(void)
{
    for (int i = 2; i >= 0; i--) {
        hook_ctx *c = hooks[i];
        PyMemAllocatorEx cur;
        if (c == NULL)
            continue;
        hooks[i] = NULL;
        c->active = 0;
        PyMem_GetAllocator(domain_ids[i], &cur);
        if (cur.ctx == c && (cur.malloc == gil_malloc || cur.malloc == raw_malloc)) {
            PyMem_SetAllocator(domain_ids[i], &c->prev);
            if (c->raw)
                raw_spare = c;
            else
                free(c);
        }
    }
}

/* ---- NumPy's data handler ----------------------------------------------------
 *
 * NumPy (>= 1.22) allocates array data through a "mem_handler" capsule held
 * in a context variable (PyDataMem_SetHandler, NEP 49); each array keeps a
 * reference to the handler that allocated it and frees through it. We wrap
 * the current handler, found through NumPy's C-API capsule, so no NumPy
 * headers are needed at build time. The layouts below are NumPy's
 * PyDataMemAllocator and PyDataMem_Handler (version 1).
 */

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} np_allocator;

typedef struct {
    char name[127];
    uint8_t version;
    np_allocator allocator;
} np_handler;

typedef struct {
    np_handler handler; /* ours: allocator.ctx points at `prev` */
    np_allocator prev;  /* a copy of the wrapped handler's allocator */
} np_wrap;

#define NP_CAPSULE             "mem_handler"
#define NP_API_FEATURE_VERSION 211 /* PyArray_GetNDArrayCFeatureVersion */
#define NP_API_SET_HANDLER     304 /* PyDataMem_SetHandler */
#define NP_API_GET_HANDLER     305 /* PyDataMem_GetHandler */
#define NP_FEATURE_1_22        0x0f

static PyObject *np_restore; /* owned: handler to put back; GIL */
static PyObject *(*np_set_handler)(PyObject *);

static void *np_malloc(void *ctx, size_t size)
{
    np_allocator *prev = ctx;
    void *p;
    if (tl_busy || !atomic_load_explicit(&tracking, memory_order_relaxed))
        return prev->malloc(prev->ctx, size);
    tl_busy = 1;
    p = prev->malloc(prev->ctx, size);
    tl_busy = 0;
    if (p != NULL)
        on_alloc(1, p, size);
    return p;
}

static void *np_calloc(void *ctx, size_t nelem, size_t elsize)
{
    np_allocator *prev = ctx;
    void *p;
    if (tl_busy || !atomic_load_explicit(&tracking, memory_order_relaxed))
        return prev->calloc(prev->ctx, nelem, elsize);
    tl_busy = 1;
    p = prev->calloc(prev->ctx, nelem, elsize);
    tl_busy = 0;
    if (p != NULL)
        on_alloc(1, p, nelem * elsize);
    return p;
}

static void *np_realloc(void *ctx, void *ptr, size_t size)
{
    np_allocator *prev = ctx;
    size_t old = 0;
    int had = 0;
    void *q;
    if (tl_busy || !atomic_load_explicit(&tracking, memory_order_relaxed))
        return prev->realloc(prev->ctx, ptr, size);
    if (ptr != NULL)
        had = take_for_realloc(1, ptr, &old);
    tl_busy = 1;
    q = prev->realloc(prev->ctx, ptr, size);
    tl_busy = 0;
    if (q == NULL) {
        if (had)
            put_back(1, ptr, old);
        return NULL;
    }
    on_realloc(1, q, old, size);
    return q;
}

static void np_free(void *ctx, void *ptr, size_t size)
{
    np_allocator *prev = ctx;
    size_t tracked;
    if (ptr != NULL && !tl_busy && atomic_load_explicit(&tracking, memory_order_relaxed))
        on_free(1, ptr, &tracked);
    prev->free(prev->ctx, ptr, size);
}

static void np_capsule_free(PyObject *capsule)
{
    np_wrap *w = PyCapsule_GetPointer(capsule, NP_CAPSULE);
    PyObject *prev = PyCapsule_GetContext(capsule);
    if (w == NULL || (prev == NULL && PyErr_Occurred()))
        PyErr_Clear();
    Py_XDECREF(prev);
    free(w);
}

/* NumPy's C-API table if NumPy (>= 1.22) is already imported, else NULL.
 * Never raises. */
static void **numpy_api(void)
{
    static const char *names[] = {"numpy.core._multiarray_umath", "numpy._core._multiarray_umath"};
    PyObject *modules = PyImport_GetModuleDict();
    PyObject *mod = NULL;
    void **api = NULL;

    for (size_t i = 0; i < sizeof names / sizeof names[0] && mod == NULL; i++)
        mod = PyDict_GetItemString(modules, names[i]);
    if (mod == NULL)
        return NULL;
    PyObject *cap = PyObject_GetAttrString(mod, "_ARRAY_API");
    if (cap == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyCapsule_CheckExact(cap))
        api = PyCapsule_GetPointer(cap, PyCapsule_GetName(cap));
    Py_DECREF(cap);
    if (api == NULL) {
        PyErr_Clear();
        return NULL;
    }
    unsigned int (*feature)(void) = (unsigned int (*)(void))api[NP_API_FEATURE_VERSION];
    if (feature() < NP_FEATURE_1_22)
        return NULL;
    return api;
}

/* Wraps NumPy's current data handler. Returns 1 if installed, 0 if NumPy is
 * absent or too old. Never raises. GIL held. */
static int numpy_install(void)
{
    void **api = numpy_api();
    PyObject *prev = NULL, *ours = NULL;
    np_wrap *w = NULL;

    if (api == NULL)
        return 0;
    PyObject *(*get_handler)(void) = (PyObject * (*)(void)) api[NP_API_GET_HANDLER];
    np_set_handler = (PyObject * (*)(PyObject *)) api[NP_API_SET_HANDLER];
    prev = get_handler();
    if (prev == NULL)
        goto error;
    np_handler *ph = PyCapsule_GetPointer(prev, NP_CAPSULE);
    if (ph == NULL || ph->version != 1)
        goto error;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        goto error;
    w->prev = ph->allocator;
    snprintf(w->handler.name, sizeof w->handler.name, "pyrometer(%.100s)", ph->name);
    w->handler.version = 1;
    w->handler.allocator = (np_allocator){&w->prev, np_malloc, np_calloc, np_realloc, np_free};
    ours = PyCapsule_New(w, NP_CAPSULE, np_capsule_free);
    if (ours == NULL) {
        free(w);
        goto error;
    }
    /* The capsule keeps the wrapped handler (and its ctx) alive as long as
     * any array allocated through us does. */
    if (PyCapsule_SetContext(ours, Py_NewRef(prev)) < 0) {
        Py_DECREF(prev);
        goto error;
    }
    np_restore = np_set_handler(ours);
    if (np_restore == NULL)
        goto error;
    Py_DECREF(ours);
    Py_DECREF(prev);
    return 1;
error:
    PyErr_Clear();
    Py_XDECREF(ours);
    Py_XDECREF(prev);
    return 0;
}

static void numpy_remove(void)
{
    if (np_restore == NULL)
        return;
    PyObject *ours = np_set_handler(np_restore);
    if (ours == NULL)
        PyErr_Clear();
    Py_XDECREF(ours);
    Py_CLEAR(np_restore);
}

/* ---- session ------------------------------------------------------------------- */

static int session_numpy;

/* fork() while another thread holds raw_lock would leave the child's copy
 * locked forever: hold it across fork, release it on both sides. */
static void atfork_prepare(void)
{
    lock();
}

static void atfork_release(void)
{
    unlock();
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

int memprof_start(void)
{
    pthread_once(&atfork_once, atfork_register);
    if (atomic_load(&tracking)) {
        PyErr_SetString(PyExc_RuntimeError, "the memory profiler is already running");
        return -1;
    }
    if (tab_init(&gil_tab) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    lock();
    int rc = tab_init(&raw_tab);
    memset(&gil_grp, 0, sizeof gil_grp);
    memset(&raw_grp, 0, sizeof raw_grp);
    STORE(peak_live, 0);
    unlock();
    if (rc < 0 || hooks_install() < 0) {
        lock();
        tab_fini(&raw_tab);
        unlock();
        tab_fini(&gil_tab);
        if (rc < 0)
            PyErr_NoMemory();
        return -1;
    }
    lock();
    atomic_store(&tracking, 1);
    unlock();
    session_numpy = numpy_install();
    return 0;
}

void memprof_stop(void)
{
    if (!atomic_load(&tracking))
        return;
    numpy_remove();
    session_numpy = 0;
    lock();
    atomic_store(&tracking, 0);
    tab_fini(&raw_tab);
    unlock();
    tab_fini(&gil_tab);
    hooks_remove();
}

int memprof_busy(void)
{
    return atomic_load(&tracking);
}

int memprof_numpy_tracked(void)
{
    return session_numpy;
}

int memprof_lost(void)
{
    return gil_tab.lost || raw_tab.lost;
}

void memprof_get(memprof_counters *out)
{
    out->live = LOAD(gil_grp.live) + LOAD(raw_grp.live);
    out->peak = LOAD(peak_live);
    if (out->peak < out->live)
        out->peak = out->live;
}

void memprof_reset_peak(void)
{
    STORE(peak_live, LOAD(gil_grp.live) + LOAD(raw_grp.live));
}

static inline int64_t live_now(void)
{
    return LOAD(gil_grp.live) + LOAD(raw_grp.live);
}

/* ---- process memory --------------------------------------------------------------- */

static int statm_fd = -1; /* opened once, shared by threads (pread) */
static long page_size;

static int64_t statm_rss_of(int fd)
{
    char buf[128];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long long size, resident;
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "%lld %lld", &size, &resident) != 2)
        return -1;
    return (int64_t)resident * page_size;
}

/* Resident bytes of [addr, addr + bytes), per mincore(); 0 on error. */
static int64_t resident(void *addr, size_t bytes)
{
    unsigned char small[256];
    size_t n = (bytes + (size_t)page_size - 1) / (size_t)page_size;
    unsigned char *vec = n <= sizeof small ? small : malloc(n);
    int64_t pages = 0;
    if (vec == NULL)
        return (int64_t)bytes;
    if (mincore(addr, bytes, vec) == 0) {
        for (size_t i = 0; i < n; i++)
            pages += vec[i] & 1;
    }
    if (vec != small)
        free(vec);
    return pages * page_size;
}

static int64_t tab_resident(const table *t)
{
    int64_t total = 0;
    if (t->big != NULL)
        total += resident(t->big, t->big_bytes);
    if (t->pmap != NULL)
        total += resident(t->pmap, t->pmap_bytes);
    for (rec_chunk *c = t->chunks; c != NULL; c = c->next)
        total += resident(c, sizeof(rec_chunk));
    return total;
}

/* Resident bytes of our own tables (not the user's memory). Called with the
 * GIL from the profiled thread, or from the sampling thread while the
 * tables stay allocated (mincore() of a region just unmapped by a growing
 * table fails harmlessly and counts nothing). */
static int64_t table_resident(void)
{
    int64_t total;
    if (!atomic_load(&tracking))
        return 0;
    total = tab_resident(&gil_tab);
    lock();
    total += tab_resident(&raw_tab);
    unlock();
    return total;
}

static pthread_once_t rss_once = PTHREAD_ONCE_INIT;

static void rss_init(void)
{
    page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;
    statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

int64_t memprof_overhead(void)
{
    return table_resident();
}

int64_t memprof_rss(void)
{
    pthread_once(&rss_once, rss_init);
    if (statm_fd < 0)
        return -1;
    int64_t rss = statm_rss_of(statm_fd);
    if (rss < 0)
        return -1;
    return rss - table_resident();
}

static int64_t pid_rss(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/statm", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int64_t rss = statm_rss_of(fd);
    close(fd);
    return rss < 0 ? 0 : rss;
}

/* Appends the children of every thread of pid to pids. */
static void add_children(long pid, long *pids, size_t *n, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/children", pid, e->d_name);
        FILE *f = fopen(path, "re");
        if (f == NULL)
            continue;
        long child;
        while (*n < cap && fscanf(f, "%ld", &child) == 1)
            pids[(*n)++] = child;
        fclose(f);
    }
    closedir(d);
}

int64_t memprof_children_rss(void)
{
    enum { CAP = 1024 };
    long pids[CAP];
    size_t n = 0;
    int64_t total = 0;
    pthread_once(&rss_once, rss_init);
    add_children((long)getpid(), pids, &n, CAP);
    for (size_t i = 0; i < n; i++) {
        total += pid_rss(pids[i]);
        add_children(pids[i], pids, &n, CAP);
    }
    return total;
}

int memprof_hwm_reset(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, "5", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

int64_t memprof_hwm(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strstr(buf, "VmHWM:");
    long long kb;
    if (p == NULL || sscanf(p + 6, "%lld", &kb) != 1)
        return -1;
    return (int64_t)kb * 1024;
}

double memprof_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double memprof_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- sampling thread ---------------------------------------------------------------- */

struct memprof_sampler {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    /* Protected by mu. */
    int stop;
    /* Set before start, read-only after. */
    double interval, end_mono;
    int children, keep;
    /* Owned by the thread until joined. */
    int expired;
    int64_t max_rss, heap_peak;
    memprof_sample *samples;
    size_t n, cap;
};

static void take_sample(memprof_sampler *s)
{
    memprof_sample smp;
    smp.t = memprof_wall();
    smp.rss = memprof_rss();
    if (s->children)
        smp.rss += memprof_children_rss();
    smp.heap = live_now();
    if (smp.rss > s->max_rss)
        s->max_rss = smp.rss;
    if (!s->keep)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        memprof_sample *p = realloc(s->samples, cap * sizeof *p);
        if (p == NULL)
            return;
        s->samples = p;
        s->cap = cap;
    }
    s->samples[s->n++] = smp;
}

static void *sampler_main(void *arg)
{
    memprof_sampler *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        take_sample(s);
        double now = memprof_mono();
        pthread_mutex_lock(&s->mu);
        if (s->end_mono > 0 && now >= s->end_mono) {
            memprof_counters c;
            memprof_get(&c);
            s->heap_peak = c.peak;
            s->expired = 1;
            break;
        }
        double wake = now + s->interval;
        if (s->end_mono > 0 && wake > s->end_mono)
            wake = s->end_mono;
        struct timespec ts = {(time_t)wake, (long)((wake - (double)(time_t)wake) * 1e9)};
        while (!s->stop) {
            int rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            if (rc == ETIMEDOUT)
                break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

memprof_sampler *memprof_sampler_start(double interval, int children, int keep, double duration)
{
    pthread_condattr_t attr;
    memprof_sampler *s = calloc(1, sizeof *s);
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    s->interval = interval > 1e-4 ? interval : 1e-4;
    s->children = children;
    s->keep = keep;
    s->end_mono = duration > 0 ? memprof_mono() + duration : 0;
    s->max_rss = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    if (rc != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return s;
}

void memprof_sampler_stop(memprof_sampler *s, int64_t *max_rss, int64_t *heap_peak_at_end,
                          memprof_sample **samples, size_t *nsamples)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
    if (!s->expired) {
        memprof_counters c;
        take_sample(s);
        memprof_get(&c);
        s->heap_peak = c.peak;
    }
    if (max_rss != NULL)
        *max_rss = s->max_rss;
    if (heap_peak_at_end != NULL)
        *heap_peak_at_end = s->heap_peak;
    if (samples != NULL) {
        *samples = s->samples;
        *nsamples = s->n;
    } else {
        free(s->samples);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- targets ------------------------------------------------------------------------ */

typedef struct {
    PyObject *code; /* owned */
    int target;     /* index into items */
    int nested;     /* 1 for code nested in a target (comprehensions, ...) */
} code_entry;

struct memprof_targets {
    memprof_target *items;
    size_t n, cap;
    code_entry *codes;
    size_t ncodes, capcodes;
    int32_t *slots; /* open addressing: index + 1 into codes, 0 = empty */
    size_t slot_mask;
};

memprof_targets *memprof_targets_new(void)
{
    memprof_targets *ts = calloc(1, sizeof *ts);
    if (ts == NULL)
        PyErr_NoMemory();
    return ts;
}

void memprof_targets_free(memprof_targets *ts)
{
    if (ts == NULL)
        return;
    for (size_t i = 0; i < ts->n; i++) {
        Py_XDECREF(ts->items[i].code);
        free(ts->items[i].lines);
        free(ts->items[i].spans);
    }
    for (size_t i = 0; i < ts->ncodes; i++)
        Py_XDECREF(ts->codes[i].code);
    free(ts->items);
    free(ts->codes);
    free(ts->slots);
    free(ts);
}

size_t memprof_targets_count(const memprof_targets *ts)
{
    return ts->n;
}

memprof_target *memprof_targets_get(memprof_targets *ts, size_t i)
{
    return i < ts->n ? &ts->items[i] : NULL;
}

size_t memprof_targets_ncodes(const memprof_targets *ts)
{
    return ts->ncodes;
}

PyObject *memprof_targets_code(const memprof_targets *ts, size_t i)
{
    return i < ts->ncodes ? ts->codes[i].code : NULL;
}

static inline size_t code_slot(const void *code, size_t mask)
{
    return (size_t)(((uint64_t)(uintptr_t)code >> 4) * 0x9E3779B97F4A7C15ULL >> 40) & mask;
}

static int rebuild_slots(memprof_targets *ts)
{
    size_t n = 16;
    while (n < ts->ncodes * 4)
        n *= 2;
    int32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < ts->ncodes; i++) {
        size_t j = code_slot(ts->codes[i].code, n - 1);
        while (slots[j] != 0)
            j = (j + 1) & (n - 1);
        slots[j] = (int32_t)i + 1;
    }
    free(ts->slots);
    ts->slots = slots;
    ts->slot_mask = n - 1;
    return 0;
}

static inline code_entry *lookup_code(const memprof_targets *ts, const void *code)
{
    if (ts->slots == NULL)
        return NULL;
    size_t j = code_slot(code, ts->slot_mask);
    for (;;) {
        int32_t k = ts->slots[j];
        if (k == 0)
            return NULL;
        if (ts->codes[k - 1].code == code)
            return &ts->codes[k - 1];
        j = (j + 1) & ts->slot_mask;
    }
}

int memprof_targets_has(const memprof_targets *ts, const void *code)
{
    return lookup_code(ts, code) != NULL;
}

/* Registers code and, recursively, the code objects in its co_consts. */
static int add_code(memprof_targets *ts, PyObject *code, int target, int nested, int depth)
{
    if (lookup_code(ts, code) != NULL || depth > 50)
        return 0;
    for (size_t i = 0; i < ts->ncodes; i++)
        if (ts->codes[i].code == code)
            return 0;
    if (ts->ncodes == ts->capcodes) {
        size_t cap = ts->capcodes ? ts->capcodes * 2 : 8;
        code_entry *p = realloc(ts->codes, cap * sizeof *p);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ts->codes = p;
        ts->capcodes = cap;
    }
    ts->codes[ts->ncodes++] = (code_entry){Py_NewRef(code), target, nested};
    PyObject *consts = PyObject_GetAttrString(code, "co_consts");
    if (consts == NULL)
        return -1;
    if (PyTuple_Check(consts)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
            PyObject *c = PyTuple_GET_ITEM(consts, i);
            if (PyCode_Check(c) && add_code(ts, c, target, 1, depth + 1) < 0) {
                Py_DECREF(consts);
                return -1;
            }
        }
    }
    Py_DECREF(consts);
    return 0;
}

int memprof_targets_add(memprof_targets *ts, PyObject *code, int first, int last)
{
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "memprof_targets_add: not a code object");
        return -1;
    }
    for (size_t i = 0; i < ts->n; i++)
        if (ts->items[i].code == code)
            return (int)i;
    if (lookup_code(ts, code) != NULL) {
        PyErr_SetString(PyExc_ValueError, "this function is nested in another target");
        return -1;
    }
    if (last < first)
        last = first;
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 4;
        memprof_target *p = realloc(ts->items, cap * sizeof *p);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ts->items = p;
        ts->cap = cap;
    }
    memprof_target *t = &ts->items[ts->n];
    memset(t, 0, sizeof *t);
    t->lines = calloc((size_t)(last - first + 1), sizeof *t->lines);
    if (t->lines == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->code = Py_NewRef(code);
    t->first = first;
    t->nlines = last - first + 1;
    int index = (int)ts->n++;
    if (add_code(ts, code, index, 0, 0) < 0 || rebuild_slots(ts) < 0)
        return -1;
    return index;
}

/* ---- line attribution (%mprun) -------------------------------------------------------
 *
 * The backend (memprof/backend.h) feeds the events of target code on the
 * profiled thread. A stack of the running target activations is kept; the
 * top one's current line is cur_line, charged by
 * the allocator hooks. Like memory_profiler, each line "finishes" at the
 * next line or return event of its frame, recording RSS then: Mem usage is
 * the highest RSS seen when it finished, Increment the summed RSS change
 * from the previous recorded point. RSS is re-read when the coarse clock
 * ticks (a few ms) or the heap moved by RSS_HEAP_STEP; otherwise reused.
 */

#define MAX_DEPTH     1024
#define RSS_HEAP_STEP ((int64_t)256 * 1024)

typedef struct {
    void *frame; /* its frame (3.11) or code object (sys.monitoring); only compared */
    memprof_target *t;
    memprof_line *cur;
    int64_t start_live;
} tframe;

/* All of this is owned by the traced thread (and the GIL). */
static memprof_targets *lines_ts;
static tframe lines_stack[MAX_DEPTH];
static int lines_depth, lines_overflow;
static int lines_children;
static int64_t rss_value, rss_live, rss_last_point;
static long long rss_stamp; /* TICKS() of the last RSS read */
static int trace_dropped;

/* A cheap clock for "has a few milliseconds passed": the TSC on x86-64
 * (at least 1 GHz there), else the coarse monotonic clock in ns. */
#if defined(__x86_64__)
#define TICKS()   ((long long)__rdtsc())
#define RSS_TICKS 4000000LL
#else
static long long coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#define TICKS()   coarse_ns()
#define RSS_TICKS 1LL
#endif

static int64_t rss_cached(void)
{
    long long now = TICKS();
    int64_t live = live_now();
    if (now - rss_stamp >= RSS_TICKS || live - rss_live >= RSS_HEAP_STEP ||
        rss_live - live >= RSS_HEAP_STEP) {
        int64_t rss = memprof_rss();
        if (rss >= 0) {
            if (lines_children)
                rss += memprof_children_rss();
            rss_value = rss;
        }
        rss_stamp = TICKS();
        rss_live = live;
    }
    return rss_value;
}

static inline memprof_line *line_of(memprof_target *t, int line)
{
    int i = line - t->first;
    return i >= 0 && i < t->nlines ? &t->lines[i] : NULL;
}

static void finish_line(memprof_line *l)
{
    int64_t rss = rss_cached();
    if (l != NULL) {
        if (l->occurrences == 0 || rss > l->mem)
            l->mem = rss;
        l->occurrences++;
        l->inc += rss - rss_last_point;
    }
    rss_last_point = rss;
}

static inline void set_current(void)
{
    if (lines_depth > 0) {
        cur_line = lines_stack[lines_depth - 1].cur;
        cur_start_live = lines_stack[lines_depth - 1].start_live;
    } else {
        cur_line = NULL;
    }
}

/* The events, fed by the backend on the traced thread. `frame` identifies
 * an activation (its frame on 3.11, its code object under sys.monitoring);
 * `line` is the line number it is at. Never raise. */

void memprof_lines_on_start(void *frame, PyObject *code, int line)
{
    if (!tl_traced)
        return;
    code_entry *e = lookup_code(lines_ts, code);
    if (e == NULL)
        return;
    if (lines_depth == MAX_DEPTH) {
        lines_overflow++;
        trace_dropped = 1;
        return;
    }
    tframe *top = &lines_stack[lines_depth++];
    top->frame = frame;
    top->t = &lines_ts->items[e->target];
    top->cur = line_of(top->t, line);
    /* A comprehension's frame continues its caller's line. */
    if (lines_depth > 1 && top[-1].cur == top->cur)
        top->start_live = top[-1].start_live;
    else
        top->start_live = live_now();
    set_current();
}

void memprof_lines_on_line(void *frame, int line)
{
    if (!tl_traced || lines_depth == 0 || lines_stack[lines_depth - 1].frame != frame)
        return;
    tframe *top = &lines_stack[lines_depth - 1];
    finish_line(top->cur);
    memprof_line *l = line_of(top->t, line);
    /* A line that runs again at once (a one-line loop, a comprehension's
     * iterations) keeps its start: its peak spans the whole run. */
    if (l != top->cur) {
        top->cur = l;
        top->start_live = live_now();
    }
    set_current();
}

void memprof_lines_on_leave(void *frame, PyObject *code)
{
    if (!tl_traced)
        return;
    if (lines_depth == 0 || lines_stack[lines_depth - 1].frame != frame) {
        if (lines_overflow > 0 && lookup_code(lines_ts, code) != NULL)
            lines_overflow--;
        return;
    }
    finish_line(lines_stack[lines_depth - 1].cur);
    lines_depth--;
    set_current();
}

int memprof_lines_start(memprof_targets *ts, int children)
{
    if (!memprof_busy()) {
        PyErr_SetString(PyExc_RuntimeError, "memprof_lines_start: the allocator hooks are off");
        return -1;
    }
    lines_ts = ts;
    lines_depth = lines_overflow = 0;
    lines_children = children;
    trace_dropped = 0;
    rss_stamp = 0;
    rss_live = live_now();
    rss_value = memprof_rss();
    if (children)
        rss_value += memprof_children_rss();
    rss_last_point = rss_value;
    cur_line = NULL;
    tl_traced = 1;
    if (memprof_backend_lines_start(ts) < 0) {
        tl_traced = 0;
        lines_ts = NULL;
        return -1;
    }
    return 0;
}

void memprof_lines_stop(void)
{
    memprof_backend_lines_stop();
    tl_traced = 0;
    cur_line = NULL;
    lines_depth = 0;
    lines_ts = NULL;
}

int memprof_trace_lost(void)
{
    return trace_dropped;
}

/* ---- spans (%%mprof) ------------------------------------------------------------------ */

typedef struct {
    void *frame; /* its frame (3.11) or code object (sys.monitoring); only compared */
    memprof_target *t;
    size_t span; /* index into t->spans */
} sframe;

/* Owned by the profiled thread (and the GIL). */
static memprof_targets *spans_ts;
static sframe spans_stack[MAX_DEPTH];
static int spans_depth;

void memprof_spans_on_start(void *frame, PyObject *code)
{
    if (!tl_spans)
        return;
    code_entry *e = lookup_code(spans_ts, code);
    if (e == NULL || e->nested)
        return;
    memprof_target *t = &spans_ts->items[e->target];
    if (spans_depth == MAX_DEPTH) {
        trace_dropped = 1;
        return;
    }
    if (t->nspans == t->capspans) {
        size_t cap = t->capspans ? t->capspans * 2 : 16;
        memprof_span *p = realloc(t->spans, cap * sizeof *p);
        if (p == NULL) {
            trace_dropped = 1;
            return;
        }
        t->spans = p;
        t->capspans = cap;
    }
    memprof_span *s = &t->spans[t->nspans];
    s->start_t = memprof_wall();
    s->start_mem = memprof_rss();
    s->end_t = s->start_t;
    s->end_mem = s->start_mem;
    s->level = spans_depth;
    t->open_spans++;
    spans_stack[spans_depth++] = (sframe){frame, t, t->nspans++};
}

void memprof_spans_on_leave(void *frame)
{
    if (!tl_spans || spans_depth == 0 || spans_stack[spans_depth - 1].frame != frame)
        return;
    sframe *f = &spans_stack[--spans_depth];
    memprof_span *s = &f->t->spans[f->span];
    s->end_t = memprof_wall();
    s->end_mem = memprof_rss();
    f->t->open_spans--;
}

int memprof_spans_start(memprof_targets *ts)
{
    spans_ts = ts;
    spans_depth = 0;
    trace_dropped = 0;
    tl_spans = 1;
    if (memprof_backend_spans_start(ts) < 0) {
        tl_spans = 0;
        spans_ts = NULL;
        return -1;
    }
    return 0;
}

void memprof_spans_stop(void)
{
    double now = memprof_wall();
    int64_t rss = memprof_rss();
    memprof_backend_spans_stop();
    tl_spans = 0;
    /* Spans left open (an exception escaped through a frame we missed, or
     * the statement was interrupted) end now. */
    while (spans_depth > 0) {
        sframe *f = &spans_stack[--spans_depth];
        f->t->spans[f->span].end_t = now;
        f->t->spans[f->span].end_mem = rss;
        f->t->open_spans--;
    }
    spans_ts = NULL;
}

/* ---- module hook ------------------------------------------------------------------------ */

int memprof_module_exec(PyObject *module)
{
    return mprun_module_exec(module);
}
