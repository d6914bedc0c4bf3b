/* iopub.c - the IOPub channel: the XPUB socket, the ordered queue in front
 * of it, stream coalescing, announcements held until the next message, and
 * the relay thread that sends what is due while nobody else publishes and
 * welcomes subscribers. See iopub.h.
 */
#include "iopub.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kthread.h"
#include "log.h"

#define STREAM_HOLD_MS 20         /* a lone stream item waits this long for more text */
#define STREAM_MAX     (1 << 16)  /* ... unless it already holds this many bytes */
#define ANNOUNCE_MS    10         /* an announcement waits this long for the next message */
#define HOLD_S         10.0       /* until a first subscriber, messages are held this long */
#define HOLD_MAX       (16 << 20) /* ... unless they already take this many bytes */

/* A queued message (an announcement) or stream text. Either is sent as soon
 * as anything follows it in the queue, or when it is due. */
typedef struct item {
    struct item *next;
    wire_frame *frames; /* owned: a serialised announcement; NULL for stream text */
    size_t n_frames;
    double due; /* when it must go out at the latest */
    /* stream items only */
    char name[8];
    char *text; /* owned */
    size_t len, cap;
    json_t *parent; /* owned */
} item;

/* A message sent before the first subscriber joined, kept for it. */
typedef struct held {
    struct held *next;
    wire_frame *frames; /* owned copies */
    size_t n_frames;
} held;

/* Lock order: q_lock, then io_lock. Whoever takes items off the queue, or
 * finds the queue empty, takes io_lock before releasing q_lock, so messages
 * reach the socket in the order they were published. */
struct iopub {
    const wire_signer *signer; /* borrowed */
    char topic[64];            /* "kernel.<session>." - immutable */

    /* The queue and the current stream parent. Protected by q_lock. */
    pthread_mutex_t q_lock;
    item *head, *tail;
    json_t *stream_parent;
    int relay_asleep; /* the relay is (about to be) waiting in poll */
    int timer_armed;  /* timer_fd will wake the relay: armed by an announcement,
                       * left armed when it is sent, cleared when it fires */

    /* The XPUB socket. Protected by io_lock. */
    pthread_mutex_t io_lock;
    void *sock;
    int closed; /* the relay has closed sock: later messages are dropped */
    /* Before anyone subscribes, what is sent would be lost: a client that
     * executes as soon as kernel_info is answered, before its SUB socket
     * has joined (`jupyter run`), saw no output and waited for ever. Such
     * messages are held for the first subscriber, for HOLD_S after the
     * start and up to HOLD_MAX bytes. */
    int holding; /* no subscriber yet and still within the limits */
    double hold_until;
    held *held_head, *held_tail;
    size_t held_bytes;

    int sock_fd;     /* ZMQ_FD of sock: polled by the relay, never read */
    int wake_fd;     /* eventfd: wakes the relay */
    int timer_fd;    /* timerfd: wakes the relay when an announcement is due */
    atomic_int stop; /* set by iopub_close: send what is queued and exit */
    pthread_t relay;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void item_free(item *it)
{
    wire_frames_free(it->frames, it->n_frames);
    free(it->text);
    json_decref(it->parent);
    free(it);
}

/* Serialises a message with its topic frame. Returns frames (owned by the
 * caller) or NULL; content and parent are borrowed. */
static wire_frame *serialize(const iopub *io, const char *msg_type, json_t *content, json_t *parent,
                             size_t *n)
{
    char tbuf[128];
    snprintf(tbuf, sizeof tbuf, "%s%s", io->topic, msg_type);
    wire_frame topic = {tbuf, strlen(tbuf)};
    return wire_build(io->signer, &topic, 1, msg_type, parent, NULL, content, n);
}

/* ---- the socket (io_lock held) --------------------------------------------- */

static void held_free_all(iopub *io)
{
    while (io->held_head) {
        held *h = io->held_head;
        io->held_head = h->next;
        wire_frames_free(h->frames, h->n_frames);
        free(h);
    }
    io->held_tail = NULL;
    io->held_bytes = 0;
}

/* Ends the hold: sends what was held (to the first subscriber), or drops
 * it when nobody joined in time. */
static void release_locked(iopub *io, int send)
{
    io->holding = 0;
    size_t count = 0;
    for (held *h = io->held_head; h; h = h->next, count++)
        if (send && !io->closed && wire_send(io->sock, h->frames, h->n_frames) < 0)
            log_msg("iopub: send failed: %s", zmq_strerror(errno));
    if (!send && count > 0)
        log_msg(
            "iopub: nobody subscribed within %.0f s; the %zu messages published until then were "
            "dropped",
            HOLD_S, count);
    held_free_all(io);
}

/* Keeps a copy of f for the first subscriber. Returns 0, or -1 when the
 * hold is over (by time or size) and f should simply be sent. */
static int hold_locked(iopub *io, const wire_frame *f, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += f[i].len;
    if (now_s() >= io->hold_until || io->held_bytes + bytes > HOLD_MAX) {
        release_locked(io, 0);
        return -1;
    }
    held *h = calloc(1, sizeof *h);
    wire_frame *copy = h ? calloc(n, sizeof *copy) : NULL;
    if (copy == NULL) {
        free(h);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        copy[i].data = malloc(f[i].len ? f[i].len : 1);
        if (copy[i].data == NULL) {
            wire_frames_free(copy, i);
            free(h);
            return -1;
        }
        memcpy(copy[i].data, f[i].data, f[i].len);
        copy[i].len = f[i].len;
    }
    h->frames = copy;
    h->n_frames = n;
    if (io->held_tail)
        io->held_tail->next = h;
    else
        io->held_head = h;
    io->held_tail = h;
    io->held_bytes += bytes;
    return 0;
}

static void send_locked(iopub *io, const wire_frame *f, size_t n)
{
    if (io->closed)
        return;
    if (io->holding && hold_locked(io, f, n) == 0)
        return;
    if (wire_send(io->sock, f, n) < 0)
        log_msg("iopub: send failed: %s", zmq_strerror(errno));
}

/* Answers every pending subscription with iopub_welcome. Any call on the
 * socket may consume the edge of ZMQ_FD, so whoever has used the socket
 * asks ZMQ_EVENTS before letting go of it. */
static void welcome_locked(iopub *io)
{
    while (!io->closed) {
        int events = 0;
        size_t sz = sizeof events;
        if (zmq_getsockopt(io->sock, ZMQ_EVENTS, &events, &sz) < 0 || !(events & ZMQ_POLLIN))
            return;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, io->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const unsigned char *d = zmq_msg_data(&m);
        size_t len = zmq_msg_size(&m);
        if (len >= 1 && d[0] == 1) { /* 1 subscribes, 0 unsubscribes */
            json_t *content = json_pack("{s:s%}", "subscription", (const char *)d + 1, len - 1);
            size_t n = 0;
            wire_frame *f = content ? serialize(io, "iopub_welcome", content, NULL, &n) : NULL;
            if (f != NULL && !io->closed && wire_send(io->sock, f, n) < 0)
                log_msg("iopub: send failed: %s", zmq_strerror(errno));
            wire_frames_free(f, n);
            json_decref(content);
            if (io->holding) /* the first subscriber: what waited for it follows */
                release_locked(io, 1);
        }
        zmq_msg_close(&m);
    }
}

/* ---- the queue ---------------------------------------------------------- */

static void set_timer(iopub *io, long ms)
{
    struct itimerspec t = {{0, 0}, {ms / 1000, (ms % 1000) * 1000000L}};
    if (timerfd_settime(io->timer_fd, 0, &t, NULL) < 0)
        log_msg("iopub: timerfd: %s", strerror(errno));
}

/* Takes the whole queue (q_lock held). */
static item *take_all_locked(iopub *io)
{
    item *all = io->head;
    io->head = io->tail = NULL;
    return all;
}

static void append_locked(iopub *io, item *it)
{
    if (io->tail)
        io->tail->next = it;
    else
        io->head = it;
    io->tail = it;
}

static void send_item_locked(iopub *io, item *it);

/* Sends items in order and frees them (io_lock held, q_lock not). */
static void send_items_locked(iopub *io, item *it)
{
    while (it) {
        item *next = it->next;
        send_item_locked(io, it);
        item_free(it);
        it = next;
    }
}

/* ---- publishing (any thread) ---------------------------------------------- */

/* Sends everything queued and then f (may be NULL) on the calling thread;
 * then, if welcome, answers new subscribers (any zmq call may have taken
 * the edge of ZMQ_FD that would wake the relay for them). */
static void send_now(iopub *io, wire_frame *f, size_t n, int welcome)
{
    pthread_mutex_lock(&io->q_lock);
    item *queued = io->head ? take_all_locked(io) : NULL;
    pthread_mutex_lock(&io->io_lock);
    pthread_mutex_unlock(&io->q_lock);
    send_items_locked(io, queued);
    if (f != NULL)
        send_locked(io, f, n);
    if (welcome)
        welcome_locked(io);
    pthread_mutex_unlock(&io->io_lock);
}

void iopub_publish(iopub *io, const char *msg_type, json_t *content, json_t *parent)
{
    size_t n = 0;
    /* Serialise outside the locks; the header's date is the publish time. */
    wire_frame *f = serialize(io, msg_type, content, parent, &n);
    json_decref(content);
    if (f == NULL) {
        log_msg("iopub: out of memory, dropped %s", msg_type);
        return;
    }
    send_now(io, f, n, 1);
    wire_frames_free(f, n);
}

void iopub_publish_ext(iopub *io, const char *msg_type, json_t *content, json_t *metadata,
                       const wire_frame *buffers, size_t n_buffers, json_t *parent)
{
    char tbuf[128];
    size_t n = 0;
    snprintf(tbuf, sizeof tbuf, "%s%s", io->topic, msg_type);
    wire_frame topic = {tbuf, strlen(tbuf)};
    wire_frame *f = wire_build(io->signer, &topic, 1, msg_type, parent, metadata, content, &n);
    json_decref(content);
    json_decref(metadata);
    wire_frame *all = f && n_buffers ? realloc(f, (n + n_buffers) * sizeof *f) : f;
    if (all == NULL) {
        log_msg("iopub: out of memory, dropped %s", msg_type);
        wire_frames_free(f, n);
        return;
    }
    f = all;
    for (size_t i = 0; i < n_buffers; i++) { /* not signed: the signature covers the JSON */
        f[n].len = buffers[i].len;
        f[n].data = malloc(buffers[i].len ? buffers[i].len : 1);
        if (f[n].data == NULL) {
            log_msg("iopub: out of memory, dropped %s", msg_type);
            wire_frames_free(f, n);
            return;
        }
        memcpy(f[n].data, buffers[i].data, buffers[i].len);
        n++;
    }
    send_now(io, f, n, 1);
    wire_frames_free(f, n);
}

void iopub_announce(iopub *io, const char *msg_type, json_t *content, json_t *parent)
{
    size_t n = 0;
    wire_frame *f = serialize(io, msg_type, content, parent, &n);
    item *it = f ? calloc(1, sizeof *it) : NULL;
    json_decref(content);
    if (it == NULL) {
        log_msg("iopub: out of memory, dropped %s", msg_type);
        wire_frames_free(f, n);
        return;
    }
    it->frames = f;
    it->n_frames = n;
    it->due = now_s() + ANNOUNCE_MS / 1000.0;
    pthread_mutex_lock(&io->q_lock);
    append_locked(io, it);
    /* No wake-up: a timer rouses the relay if nothing else sends it first.
     * The timer stays armed when the announcement leaves with the next
     * message, and the relay then finds nothing due: in a run of quick
     * requests it is armed once per ANNOUNCE_MS instead of armed and
     * disarmed for each, two system calls fewer a request. */
    if (!io->timer_armed) {
        io->timer_armed = 1;
        set_timer(io, ANNOUNCE_MS);
    }
    pthread_mutex_unlock(&io->q_lock);
}

void iopub_flush(iopub *io)
{
    send_now(io, NULL, 0, 1);
}

void iopub_flush_before_reply(iopub *io)
{
    send_now(io, NULL, 0, 0);
}

void iopub_stream(iopub *io, const char *name, const char *data, size_t len, json_t *parent)
{
    if (len == 0)
        return;
    pthread_mutex_lock(&io->q_lock);
    if (parent == NULL)
        parent = io->stream_parent;
    item *it = io->tail;
    int need_wake = 0;
    if (it == NULL || it->frames != NULL || strcmp(it->name, name) != 0 || it->parent != parent) {
        it = calloc(1, sizeof *it);
        if (it == NULL)
            goto oom;
        snprintf(it->name, sizeof it->name, "%s", name);
        it->parent = json_incref(parent);
        it->due = now_s() + STREAM_HOLD_MS / 1000.0;
        append_locked(io, it);
        /* A relay that is awake sends everything due before it sleeps, so
         * one wake-up per sleep is enough. */
        need_wake = io->relay_asleep;
        io->relay_asleep = 0;
    }
    if (it->len + len + 1 > it->cap) {
        size_t cap = it->cap ? it->cap : 256;
        while (cap < it->len + len + 1)
            cap *= 2;
        char *p = realloc(it->text, cap);
        if (p == NULL)
            goto oom;
        it->text = p;
        it->cap = cap;
    }
    memcpy(it->text + it->len, data, len);
    it->len += len;
    it->text[it->len] = '\0';
    pthread_mutex_unlock(&io->q_lock);
    if (need_wake)
        kthread_wake(io->wake_fd);
    return;
oom:
    pthread_mutex_unlock(&io->q_lock);
    log_msg("iopub: out of memory, dropped %zu bytes of %s", len, name);
}

void iopub_set_stream_parent(iopub *io, json_t *parent)
{
    /* A parsed header is never modified: sharing it is enough. */
    json_t *ref = json_incref(parent);
    pthread_mutex_lock(&io->q_lock);
    json_decref(io->stream_parent);
    io->stream_parent = ref;
    pthread_mutex_unlock(&io->q_lock);
}

/* ---- the relay thread ------------------------------------------------------ */

/* Returns a malloc'ed NUL-terminated copy of s[0:len] in which every byte
 * that does not start a well-formed UTF-8 sequence is replaced by U+FFFD. */
static char *utf8_sanitize(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(len * 3 + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        size_t k = c < 0x80                   ? 1
                   : (c >= 0xc2 && c <= 0xdf) ? 2
                   : (c & 0xf0) == 0xe0       ? 3
                   : (c >= 0xf0 && c <= 0xf4) ? 4
                                              : 0;
        int ok = k > 0 && i + k <= len;
        for (size_t j = 1; ok && j < k; j++)
            ok = (u[i + j] & 0xc0) == 0x80;
        if (ok && k == 3) {
            unsigned cp = ((c & 0x0fu) << 12) | ((u[i + 1] & 0x3fu) << 6) | (u[i + 2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && k == 4) {
            unsigned cp = ((c & 0x07u) << 18) | ((u[i + 1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

/* Sends a queued item; io_lock held. */
static void send_item_locked(iopub *io, item *it)
{
    if (it->frames) {
        send_locked(io, it->frames, it->n_frames);
        return;
    }
    /* Invalid UTF-8 from fd capture becomes U+FFFD, one per bad byte. */
    json_t *text = json_stringn(it->text, it->len);
    if (text == NULL) {
        char *fixed = utf8_sanitize(it->text, it->len);
        text = fixed ? json_string(fixed) : NULL;
        free(fixed);
    }
    json_t *content = text ? json_pack("{s:s, s:o}", "name", it->name, "text", text) : NULL;
    size_t n = 0;
    wire_frame *f = content ? serialize(io, "stream", content, it->parent, &n) : NULL;
    if (f != NULL)
        send_locked(io, f, n);
    else
        log_msg("iopub: out of memory, dropped %zu bytes of %s", it->len, it->name);
    wire_frames_free(f, n);
    json_decref(content);
}

/* Sends every item that is due: in order, each one that has a successor, is
 * due by the clock, or is large stream text. Returns the poll timeout in ms
 * until the next item is due, or -1 when the queue is empty. */
static long relay_flush(iopub *io)
{
    for (;;) {
        pthread_mutex_lock(&io->q_lock);
        item *it = io->head;
        if (it == NULL) {
            io->relay_asleep = 1;
            pthread_mutex_unlock(&io->q_lock);
            return -1;
        }
        int big = it->frames == NULL && it->len >= STREAM_MAX;
        if (it->next == NULL && !big && !atomic_load(&io->stop)) {
            double left = it->due - now_s();
            if (left > 0) {
                io->relay_asleep = 1;
                pthread_mutex_unlock(&io->q_lock);
                return (long)(left * 1000.0) + 1;
            }
        }
        io->head = it->next;
        if (io->head == NULL)
            io->tail = NULL;
        it->next = NULL;
        pthread_mutex_lock(&io->io_lock);
        pthread_mutex_unlock(&io->q_lock);
        send_item_locked(io, it);
        welcome_locked(io);
        pthread_mutex_unlock(&io->io_lock);
        item_free(it);
    }
}

static void *relay_main(void *arg)
{
    iopub *io = arg;
    long timeout = -1;
    for (;;) {
        /* Plain fds only: the socket itself is touched under io_lock. */
        zmq_pollitem_t items[3] = {{NULL, io->sock_fd, ZMQ_POLLIN, 0},
                                   {NULL, io->wake_fd, ZMQ_POLLIN, 0},
                                   {NULL, io->timer_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 3, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            pthread_mutex_lock(&io->io_lock);
            welcome_locked(io);
            pthread_mutex_unlock(&io->io_lock);
        }
        for (int i = 1; i < 3; i++) {
            uint64_t v;
            if (rc > 0 && (items[i].revents & ZMQ_POLLIN) && read(items[i].fd, &v, sizeof v) < 0)
                v = 0; /* already read: nothing to do */
        }
        if (rc > 0 && (items[2].revents & ZMQ_POLLIN)) {
            pthread_mutex_lock(&io->q_lock);
            io->timer_armed = 0; /* it fired; the next announcement re-arms it */
            pthread_mutex_unlock(&io->q_lock);
        }
        timeout = relay_flush(io);
        if (atomic_load(&io->stop) && timeout < 0)
            break;
        pthread_mutex_lock(&io->io_lock);
        if (io->holding) { /* wake when the hold ends, to drop what it kept */
            double left = io->hold_until - now_s();
            long ms = (long)(left * 1000.0) + 1;
            if (left <= 0)
                release_locked(io, 0);
            else if (timeout < 0 || ms < timeout)
                timeout = ms;
        }
        pthread_mutex_unlock(&io->io_lock);
    }
    relay_flush(io);
    pthread_mutex_lock(&io->io_lock);
    held_free_all(io); /* nobody subscribed before the end */
    int linger = 2000;
    zmq_setsockopt(io->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(io->sock);
    io->closed = 1;
    pthread_mutex_unlock(&io->io_lock);
    return NULL;
}

/* ---- start and stop -------------------------------------------------------- */

iopub *iopub_start(void *sock, const wire_signer *signer, char *err, size_t errlen)
{
    iopub *io = calloc(1, sizeof *io);
    size_t sz = sizeof io->sock_fd;
    if (io == NULL || zmq_getsockopt(sock, ZMQ_FD, &io->sock_fd, &sz) < 0) {
        snprintf(err, errlen, "iopub: cannot set up the channel");
        goto error;
    }
    io->signer = signer;
    io->sock = sock;
    snprintf(io->topic, sizeof io->topic, "kernel.%.8s.", signer->session);
    io->relay_asleep = 1; /* until its first drain, the relay waits on wake_fd */
    io->holding = 1;
    io->hold_until = now_s() + HOLD_S;
    io->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    io->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (io->wake_fd < 0 || io->timer_fd < 0) {
        snprintf(err, errlen, "iopub: eventfd/timerfd: %s", strerror(errno));
        if (io->wake_fd >= 0)
            close(io->wake_fd);
        if (io->timer_fd >= 0)
            close(io->timer_fd);
        goto error;
    }
    pthread_mutex_init(&io->q_lock, NULL);
    pthread_mutex_init(&io->io_lock, NULL);
    int rc = pthread_create(&io->relay, NULL, relay_main, io);
    if (rc != 0) {
        snprintf(err, errlen, "iopub: cannot start the relay thread: %s", strerror(rc));
        pthread_mutex_destroy(&io->q_lock);
        pthread_mutex_destroy(&io->io_lock);
        close(io->wake_fd);
        close(io->timer_fd);
        goto error;
    }
    return io;
error:
    zmq_close(sock);
    free(io);
    return NULL;
}

void iopub_close(iopub *io)
{
    atomic_store(&io->stop, 1);
    kthread_wake(io->wake_fd);
    pthread_join(io->relay, NULL);
}

void iopub_free(iopub *io)
{
    while (io->head) { /* published after iopub_close: dropped */
        item *it = io->head;
        io->head = it->next;
        item_free(it);
    }
    close(io->wake_fd);
    close(io->timer_fd);
    json_decref(io->stream_parent);
    pthread_mutex_destroy(&io->q_lock);
    pthread_mutex_destroy(&io->io_lock);
    free(io);
}
