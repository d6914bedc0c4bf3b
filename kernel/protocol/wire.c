/* wire.c - the Jupyter wire format: splitting and joining frames, HMAC-SHA256
 * signing and constant-time verification (libsodium), replay refusal,
 * headers with uuid message ids and ISO 8601 dates, and sending frames on
 * zmq. */
#include "wire.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SEEN_MAX (1u << 16) /* remembered signatures before the guard is reset */
#define SEEN_MIN 64         /* slots of the guard's first table (2 KiB) */

int wire_signer_init(wire_signer *s, const unsigned char *key, size_t key_len)
{
    memset(s, 0, sizeof *s);
    if (key_len > sizeof s->key)
        return -1;
    memcpy(s->key, key, key_len);
    s->key_len = key_len;
    wire_uuid(s->session);
    /* libsodium's HMAC-SHA256 takes a key of any length (longer than a
     * block: hashed first, as RFC 2104 says). sodium_init only picks the
     * fastest code for this CPU; it is safe to call more than once. */
    if (key_len > 0 &&
        (sodium_init() < 0 || crypto_auth_hmacsha256_init(&s->keyed, s->key, key_len) != 0))
        return -1;
    pthread_mutex_init(&s->lock, NULL);
    s->seen_cap = SEEN_MIN;
    s->seen = calloc(s->seen_cap, sizeof *s->seen);
    return s->seen ? 0 : -1;
}

void wire_signer_free(wire_signer *s)
{
    sodium_memzero(s->key, sizeof s->key);
    sodium_memzero(&s->keyed, sizeof s->keyed);
    free(s->seen);
    s->seen = NULL;
    pthread_mutex_destroy(&s->lock);
}

/* HMAC-SHA256 of the concatenated parts into out: the keyed state is
 * copied, so any thread may sign at once. On a failure out is zeroed, so
 * verification fails closed. */
static void raw_hmac(const wire_signer *s, const char *const parts[], const size_t lens[], size_t n,
                     unsigned char out[32])
{
    crypto_auth_hmacsha256_state st = s->keyed;
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = crypto_auth_hmacsha256_update(&st, (const unsigned char *)parts[i], lens[i]) == 0;
    ok = ok && crypto_auth_hmacsha256_final(&st, out) == 0;
    sodium_memzero(&st, sizeof st);
    if (!ok)
        memset(out, 0, 32);
}

void wire_sign(const wire_signer *s, const char *const parts[], const size_t lens[], size_t n,
               char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[32];
    if (s->key_len == 0) {
        out[0] = '\0';
        return;
    }
    raw_hmac(s, parts, lens, n, mac);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

static int unhex(const char *in, size_t len, unsigned char out[32])
{
    if (len != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = in[2 * i + (size_t)j];
            int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static const unsigned char zero_digest[32];

/* The slot of d in a table of cap (a power of two) slots: the slot that
 * holds d, or the empty slot where it belongs. The table is never full. */
static size_t seen_slot(unsigned char (*table)[32], size_t cap, const unsigned char d[32])
{
    size_t h;
    memcpy(&h, d, sizeof h); /* the digest is already uniformly random */
    size_t i = h & (cap - 1);
    while (memcmp(table[i], zero_digest, 32) != 0 && memcmp(table[i], d, 32) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

/* Replaces the guard's table by an empty one of cap slots (keep: move the
 * digests over). On allocation failure the old table stays, and is emptied
 * unless keep is set. Returns 0, or -1 when no new table was made. Under
 * s->lock. */
static int seen_resize(wire_signer *s, size_t cap, int keep)
{
    unsigned char(*table)[32] = calloc(cap, sizeof *table);
    if (table == NULL) {
        if (!keep) {
            memset(s->seen, 0, s->seen_cap * sizeof *s->seen);
            s->seen_count = 0;
        }
        return -1;
    }
    for (size_t i = 0; keep && i < s->seen_cap; i++)
        if (memcmp(s->seen[i], zero_digest, 32) != 0)
            memcpy(table[seen_slot(table, cap, s->seen[i])], s->seen[i], 32);
    free(s->seen);
    s->seen = table;
    s->seen_cap = cap;
    if (!keep)
        s->seen_count = 0;
    return 0;
}

/* Records digest; returns 1 if it had been seen before. Takes s->lock.
 * The table starts small and doubles at half full, so its memory follows
 * the number of messages received (a digest lands on a random slot: a table
 * made at full size would have a page touched per message); after SEEN_MAX
 * digests the guard starts again from a small table. */
static int seen_before(wire_signer *s, const unsigned char d[32])
{
    pthread_mutex_lock(&s->lock);
    if (s->seen_count >= SEEN_MAX)
        seen_resize(s, SEEN_MIN, 0);
    else if ((s->seen_count + 1) * 2 > s->seen_cap && seen_resize(s, s->seen_cap * 2, 1) < 0 &&
             s->seen_count + 1 >= s->seen_cap)
        seen_resize(s, s->seen_cap, 0); /* no memory to grow, and no room left: forget */
    size_t i = seen_slot(s->seen, s->seen_cap, d);
    int seen = memcmp(s->seen[i], d, 32) == 0;
    if (!seen) {
        memcpy(s->seen[i], d, 32);
        s->seen_count++;
    }
    pthread_mutex_unlock(&s->lock);
    return seen;
}

static json_t *load_dict(const wire_frame *f, const char *what, char *err, size_t errlen)
{
    json_error_t jerr;
    /* \u0000 is a valid escape: strings may hold NULs (object keys cannot,
     * in Jansson); whoever reads one takes its length, not strlen. */
    json_t *v = json_loadb(f->data, f->len, JSON_ALLOW_NUL, &jerr);
    if (v == NULL) {
        snprintf(err, errlen, "malformed JSON in %s: %s", what, jerr.text);
        /* Jansson quotes the bad token, which may hold control characters:
         * the reason stays one line in the log (found by fuzz_wire). */
        for (char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20)
                *c = ' ';
        return NULL;
    }
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s is not a JSON object", what);
        json_decref(v);
        return NULL;
    }
    return v;
}

static int copy_frames(const wire_frame *src, size_t n, wire_frame **dst)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    *dst = calloc(n, sizeof **dst);
    if (*dst == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        (*dst)[i].data = malloc(src[i].len ? src[i].len : 1);
        if ((*dst)[i].data == NULL)
            return -1;
        memcpy((*dst)[i].data, src[i].data, src[i].len);
        (*dst)[i].len = src[i].len;
    }
    return 0;
}

int wire_parse(wire_signer *s, const wire_frame *frames, size_t n, wire_msg *out, char *err,
               size_t errlen)
{
    size_t d;
    static const char *const names[] = {"header", "parent_header", "metadata", "content"};
    json_t **slots[] = {&out->header, &out->parent_header, &out->metadata, &out->content};

    memset(out, 0, sizeof *out);
    for (d = 0; d < n; d++)
        if (frames[d].len == sizeof WIRE_DELIM - 1 &&
            memcmp(frames[d].data, WIRE_DELIM, frames[d].len) == 0)
            break;
    if (d == n) {
        snprintf(err, errlen, "missing <IDS|MSG> delimiter");
        return -1;
    }
    if (n - d - 1 < 5) {
        snprintf(err, errlen,
                 "missing frames: %zu of the 5 after <IDS|MSG> (signature, header, "
                 "parent_header, metadata, content)",
                 n - d - 1);
        return -1;
    }
    const wire_frame *sig = &frames[d + 1];
    const wire_frame *parts = &frames[d + 2];
    if (s->key_len > 0) {
        unsigned char got[32], want[32];
        const char *pp[4];
        size_t pl[4];
        if (sig->len == 0) {
            snprintf(err, errlen, "bad signature: missing (empty frame)");
            return -1;
        }
        if (sig->len != 64) {
            snprintf(err, errlen, "bad signature: %zu characters, not 64 hex digits", sig->len);
            return -1;
        }
        if (unhex(sig->data, sig->len, got) < 0) {
            snprintf(err, errlen, "bad signature: not hex digits");
            return -1;
        }
        for (int i = 0; i < 4; i++) {
            pp[i] = parts[i].data;
            pl[i] = parts[i].len;
        }
        raw_hmac(s, pp, pl, 4, want);
        if (sodium_memcmp(got, want, 32) != 0) {
            snprintf(err, errlen, "bad signature: HMAC mismatch");
            return -1;
        }
        if (seen_before(s, got)) {
            snprintf(err, errlen, "replayed signature");
            return -1;
        }
    }
    for (int i = 0; i < 4; i++) {
        *slots[i] = load_dict(&parts[i], names[i], err, errlen);
        if (*slots[i] == NULL)
            goto error;
    }
    json_t *mt = json_object_get(out->header, "msg_type");
    if (!json_is_string(mt) || json_string_length(mt) == 0) {
        snprintf(err, errlen, "header has no msg_type string");
        goto error;
    }
    if (strlen(json_string_value(mt)) != json_string_length(mt)) {
        snprintf(err, errlen, "unknown message type (it holds a NUL)");
        goto error;
    }
    out->msg_type = json_string_value(mt);
    if (copy_frames(frames, d, &out->ids) < 0) {
        out->n_ids = d;
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    out->n_ids = d;
    if (copy_frames(parts + 4, n - d - 6, &out->buffers) < 0) {
        out->n_buffers = n - d - 6;
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    out->n_buffers = n - d - 6;
    return 0;
error:
    wire_msg_clear(out);
    return -1;
}

void wire_frames_free(wire_frame *frames, size_t n)
{
    if (frames == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(frames[i].data);
    free(frames);
}

wire_frame *wire_build(const wire_signer *s, const wire_frame *ids, size_t n_ids,
                       const char *msg_type, json_t *parent, json_t *metadata, json_t *content,
                       size_t *n)
{
    json_t *header = wire_header_new(s, msg_type);
    if (header == NULL)
        return NULL;
    wire_frame *f = wire_serialize(s, ids, n_ids, header, parent, metadata, content, n);
    json_decref(header);
    return f;
}

int wire_send(void *sock, const wire_frame *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int flags = i + 1 < n ? ZMQ_SNDMORE : 0;
        while (zmq_send(sock, f[i].data, f[i].len, flags) < 0) {
            if (errno != EINTR)
                return -1;
        }
    }
    return 0;
}

void wire_msg_clear(wire_msg *m)
{
    wire_frames_free(m->ids, m->n_ids);
    wire_frames_free(m->buffers, m->n_buffers);
    json_decref(m->header);
    json_decref(m->parent_header);
    json_decref(m->metadata);
    json_decref(m->content);
    memset(m, 0, sizeof *m);
}

/* Every message a request causes carries that request's header as its
 * parent: each thread keeps the last parent it serialised (a reference, so
 * the pointer cannot be reused) and its text. Freed at thread exit. */
typedef struct {
    json_t *parent; /* owned reference */
    char *text;     /* owned */
} parent_cache;

static pthread_key_t parent_key;
static pthread_once_t parent_once = PTHREAD_ONCE_INIT;

static void parent_cache_free(void *p)
{
    parent_cache *c = p;
    json_decref(c->parent);
    free(c->text);
    free(c);
}

static void parent_key_init(void)
{
    pthread_key_create(&parent_key, parent_cache_free);
}

/* Returns a malloc'ed compact dump of parent, or NULL. */
static char *dump_parent(json_t *parent)
{
    pthread_once(&parent_once, parent_key_init);
    parent_cache *c = pthread_getspecific(parent_key);
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL || pthread_setspecific(parent_key, c) != 0) {
            free(c);
            return json_dumps(parent, JSON_COMPACT | JSON_ENSURE_ASCII);
        }
    }
    if (c->parent != parent) {
        char *text = json_dumps(parent, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (text == NULL)
            return NULL;
        json_decref(c->parent);
        free(c->text);
        c->parent = json_incref(parent);
        c->text = text;
    }
    return strdup(c->text);
}

void wire_thread_cleanup(void)
{
    pthread_once(&parent_once, parent_key_init);
    parent_cache *c = pthread_getspecific(parent_key);
    if (c != NULL) {
        pthread_setspecific(parent_key, NULL);
        parent_cache_free(c);
    }
}

wire_frame *wire_serialize(const wire_signer *s, const wire_frame *ids, size_t n_ids,
                           json_t *header, json_t *parent, json_t *metadata, json_t *content,
                           size_t *n)
{
    json_t *dicts[4] = {header, parent, metadata, content};
    size_t total = n_ids + 6;
    wire_frame *f = calloc(total, sizeof *f);
    if (f == NULL)
        return NULL;
    for (size_t i = 0; i < n_ids; i++) {
        f[i].data = malloc(ids[i].len ? ids[i].len : 1);
        if (f[i].data == NULL)
            goto error;
        memcpy(f[i].data, ids[i].data, ids[i].len);
        f[i].len = ids[i].len;
    }
    f[n_ids].data = strdup(WIRE_DELIM);
    f[n_ids].len = sizeof WIRE_DELIM - 1;
    const char *pp[4];
    size_t pl[4];
    for (int i = 0; i < 4; i++) {
        char *txt = i == 1 && dicts[i] ? dump_parent(dicts[i])
                    : dicts[i]         ? json_dumps(dicts[i], JSON_COMPACT | JSON_ENSURE_ASCII)
                                       : strdup("{}");
        if (txt == NULL)
            goto error;
        f[n_ids + 2 + (size_t)i].data = txt;
        f[n_ids + 2 + (size_t)i].len = strlen(txt);
        pp[i] = txt;
        pl[i] = strlen(txt);
    }
    char sig[65];
    wire_sign(s, pp, pl, 4, sig);
    f[n_ids + 1].data = strdup(sig);
    f[n_ids + 1].len = strlen(sig);
    if (f[n_ids].data == NULL || f[n_ids + 1].data == NULL)
        goto error;
    *n = total;
    return f;
error:
    wire_frames_free(f, total);
    return NULL;
}

json_t *wire_header_new(const wire_signer *s, const char *msg_type)
{
    char id[37], date[32];
    wire_uuid(id);
    wire_now_iso(date);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", s->session,
                     "username", "pyrometer", "date", date, "msg_type", msg_type, "version",
                     WIRE_PROTOCOL_VERSION);
}

/* Message ids need uniqueness, not secrecy: a per-thread splitmix64
 * generator, seeded once from getrandom(2), saves a system call per
 * message. Thread-local. */
static __thread uint64_t rng_state;
static __thread int rng_seeded;

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
        }
        rng_state ^= (uint64_t)(uintptr_t)&rng_state; /* differs per thread */
        rng_seeded = 1;
    }
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void wire_uuid(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t r0 = rng_next(), r1 = rng_next();
    memcpy(b, &r0, 8);
    memcpy(b + 8, &r1, 8);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

void wire_now_iso(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}
