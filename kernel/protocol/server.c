/* server.c - sockets and threads. The main thread owns shell and stdin, the
 * control thread owns control, the heartbeat thread echoes on its own
 * socket, and a capture thread turns bytes written to fd 1/2 into stream
 * messages. IOPub, shared by every thread, is iopub.c's.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "iopub.h"
#include "kthread.h"
#include "log.h"
#include "parent.h"

#define MAX_FRAMES   64
#define IDLE_HOOK_MS 10 /* quiet time on shell before the idle hook runs */

typedef struct {
    server *srv;
    void *sock; /* the ROUTER this publisher replies on */
} channel_pub;

struct server {
    wire_signer *signer; /* borrowed; immutable apart from its own locked guard */
    void *ctx;
    void *shell, *stdin_sock; /* Owned by the main thread. */
    void *control;            /* Owned by the control thread. */
    iopub *iopub;             /* the IOPub channel: any thread */
    void *hb;                 /* Owned by the heartbeat thread. */
    pthread_t main_thread, hb_thread, control_thread, capture_thread;
    int have_capture;
    server_handler on_control;
    void *on_control_arg;

    int wake_fd;   /* eventfd: wakes the main loop */
    int sig_fd[2]; /* pipe: Python's signal wakeup fd writes [1]; we poll [0] */
    atomic_int shutdown, main_busy;
    json_t *kernel_info; /* immutable once set */

    /* fd capture: read ends of the pipes behind fd 1 and 2. Reads are
     * serialised by cap_lock so that a sync sees every earlier write. */
    pthread_mutex_t cap_lock;
    int cap_fd[2];
    int cap_stop_fd;

    void (*idle_hook)(void *); /* Main thread only. */
    void *idle_arg;

    channel_pub shell_ch, control_ch;
    publisher shell_pub, control_pub;
};

/* ---- frames on zmq sockets ---------------------------------------------- */

/* Receives one multipart message into msgs (initialised here). Returns the
 * number of parts, or -1 (errno set; ETERM at shutdown). Extra parts beyond
 * MAX_FRAMES are read and dropped, and reported as MAX_FRAMES + 1. */
static int recv_parts(void *sock, zmq_msg_t msgs[MAX_FRAMES], int flags)
{
    int n = 0, more = 1, overflow = 0;
    while (more) {
        zmq_msg_t tmp, *m = n < MAX_FRAMES ? &msgs[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, n == 0 ? flags : 0) < 0) {
            int e = errno;
            zmq_msg_close(m);
            if (e == EINTR && n > 0)
                continue;
            for (int i = 0; i < n && i < MAX_FRAMES; i++)
                zmq_msg_close(&msgs[i]);
            errno = e;
            return -1;
        }
        more = zmq_msg_more(m);
        if (m == &tmp) {
            zmq_msg_close(&tmp);
            overflow = 1;
        } else {
            n++;
        }
    }
    if (overflow) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&msgs[i]);
        return MAX_FRAMES + 1;
    }
    return n;
}

/* Reads one message from sock and parses it. Returns 1 with *msg filled, 0 if
 * it was dropped (logged), -1 on socket error (errno set). */
static int recv_msg(server *s, void *sock, const char *channel, wire_msg *msg, int flags)
{
    zmq_msg_t parts[MAX_FRAMES];
    wire_frame frames[MAX_FRAMES];
    char err[256];

    int n = recv_parts(sock, parts, flags);
    if (n < 0)
        return -1;
    if (n > MAX_FRAMES) {
        log_msg("%s: dropped a message of more than %d frames", channel, MAX_FRAMES);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        frames[i].data = zmq_msg_data(&parts[i]);
        frames[i].len = zmq_msg_size(&parts[i]);
    }
    int rc = wire_parse(s->signer, frames, (size_t)n, msg, err, sizeof err);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    if (rc < 0) {
        log_msg("%s: dropped a message: %s", channel, err);
        return 0;
    }
    return 1;
}

static int send_msg(server *s, void *sock, const wire_frame *ids, size_t n_ids,
                    const char *msg_type, json_t *parent, json_t *metadata, json_t *content)
{
    size_t n;
    wire_frame *f = wire_build(s->signer, ids, n_ids, msg_type, parent, metadata, content, &n);
    if (f == NULL)
        return -1;
    int rc = wire_send(sock, f, n);
    wire_frames_free(f, n);
    return rc;
}

static void pub_iopub(void *self, const char *msg_type, json_t *content, json_t *parent)
{
    iopub_publish(((channel_pub *)self)->srv->iopub, msg_type, content, parent);
}

static void pub_iopub_ext(void *self, const char *msg_type, json_t *content, json_t *metadata,
                          const wire_frame *buffers, size_t n_buffers, json_t *parent)
{
    iopub_publish_ext(((channel_pub *)self)->srv->iopub, msg_type, content, metadata, buffers,
                      n_buffers, parent);
}

static void pub_announce(void *self, const char *msg_type, json_t *content, json_t *parent)
{
    iopub_announce(((channel_pub *)self)->srv->iopub, msg_type, content, parent);
}

void server_stream(server *s, const char *name, const char *data, size_t len, json_t *parent)
{
    iopub_stream(s->iopub, name, data, len, parent);
}

void server_set_stream_parent(server *s, json_t *parent)
{
    iopub_set_stream_parent(s->iopub, parent);
}

/* ---- heartbeat ------------------------------------------------------------ */

static void *hb_main(void *arg)
{
    server *s = arg;
    zmq_proxy(s->hb, s->hb, NULL); /* returns with ETERM at shutdown */
    int linger = 0;
    zmq_setsockopt(s->hb, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s->hb);
    return NULL;
}

/* ---- channel publishers (reply + input) ---------------------------------- */

static void pub_reply(void *self, const wire_msg *req, const char *msg_type, json_t *content,
                      json_t *metadata)
{
    channel_pub *ch = self;
    iopub_flush_before_reply(ch->srv->iopub); /* what the request announced goes first */
    if (send_msg(ch->srv, ch->sock, req->ids, req->n_ids, msg_type, req->header, metadata,
                 content) < 0)
        log_msg("reply %s: send failed: %s", msg_type, zmq_strerror(errno));
    json_decref(content);
    json_decref(metadata);
}

/* Empties the signal wakeup pipe; returns 1 if a signal had arrived. */
static int drain_signals(server *s)
{
    char buf[64];
    int got = 0;
    while (read(s->sig_fd[0], buf, sizeof buf) > 0)
        got = 1;
    return got;
}

static int pub_input(void *self, const wire_msg *req, const char *prompt, size_t prompt_len,
                     int password, char **out, size_t *out_len, char *err, size_t errlen)
{
    server *s = ((channel_pub *)self)->srv;
    wire_msg reply;

    *out = NULL;
    drain_signals(s); /* from here on, any signal ends the wait */
    /* Forget replies to an earlier, abandoned request. */
    while (recv_msg(s, s->stdin_sock, "stdin", &reply, ZMQ_DONTWAIT) >= 0)
        wire_msg_clear(&reply);
    json_t *content = json_pack("{s:s%, s:b}", "prompt", prompt, prompt_len, "password", password);
    if (content == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    iopub_flush(s->iopub);
    int rc = send_msg(s, s->stdin_sock, req->ids, req->n_ids, "input_request", req->header, NULL,
                      content);
    json_decref(content);
    if (rc < 0) {
        snprintf(err, errlen, "stdin: send failed: %s", zmq_strerror(errno));
        return -1;
    }
    for (;;) {
        zmq_pollitem_t items[3] = {{s->stdin_sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, s->wake_fd, ZMQ_POLLIN, 0},
                                   {NULL, s->sig_fd[0], ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 3, 100);
        if ((n < 0 && errno == EINTR) || (n > 0 && (items[2].revents & ZMQ_POLLIN))) {
            drain_signals(s);
            return 1;
        }
        if (n < 0) {
            snprintf(err, errlen, "stdin: %s", zmq_strerror(errno));
            return -1;
        }
        if (atomic_load(&s->shutdown)) {
            snprintf(err, errlen, "the kernel is shutting down");
            return -1;
        }
        if (n == 0 || !(items[0].revents & ZMQ_POLLIN))
            continue;
        rc = recv_msg(s, s->stdin_sock, "stdin", &reply, 0);
        if (rc < 0 && errno == EINTR)
            return 1;
        if (rc <= 0)
            continue;
        if (strcmp(reply.msg_type, "input_reply") != 0) {
            log_msg("stdin: ignored unexpected %s", reply.msg_type);
            wire_msg_clear(&reply);
            continue;
        }
        json_t *value = json_object_get(reply.content, "value");
        if (!json_is_string(value)) {
            log_msg("stdin: input_reply without a string value");
            wire_msg_clear(&reply);
            continue;
        }
        size_t len = json_string_length(value); /* it may hold NULs */
        *out = malloc(len + 1);
        if (*out != NULL) {
            memcpy(*out, json_string_value(value), len + 1);
            *out_len = len;
        }
        wire_msg_clear(&reply);
        if (*out == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
}

static int pub_no_input(void *self, const wire_msg *req, const char *prompt, size_t prompt_len,
                        int password, char **out, size_t *out_len, char *err, size_t errlen)
{
    *out = NULL;
    snprintf(err, errlen, "input is not available on this channel");
    return -1;
}

static void pub_stream(void *self, const char *name, const char *data, size_t len, json_t *parent)
{
    server_stream(((channel_pub *)self)->srv, name, data, len, parent);
}

static void pub_sync(void *self)
{
    server_sync_fds(((channel_pub *)self)->srv);
}

/* ---- control thread ------------------------------------------------------- */

static void *control_main(void *arg)
{
    server *s = arg;
    for (;;) {
        wire_msg msg;
        int rc = recv_msg(s, s->control, "control", &msg, 0);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        s->on_control(s, &msg, s->on_control_arg);
        wire_msg_clear(&msg);
        if (atomic_load(&s->shutdown)) {
            /* A cell may be running: it was interrupted; give it a moment,
             * then end the process so that no zombie remains. */
            for (int i = 0; i < 200 && atomic_load(&s->main_busy); i++)
                usleep(10000);
            if (atomic_load(&s->main_busy)) {
                log_msg("shutdown: the running cell did not stop; exiting now");
                usleep(100000); /* let the relay send what is queued */
                _exit(0);
            }
            break;
        }
    }
    int linger = 1000;
    zmq_setsockopt(s->control, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s->control);
    return NULL;
}

/* ---- fd capture ----------------------------------------------------------- */

/* Reads what is available on the capture pipes. Call with cap_lock held. */
static void capture_read_locked(server *s)
{
    static const char *const names[2] = {"stdout", "stderr"};
    char buf[65536];
    for (int i = 0; i < 2; i++) {
        for (;;) {
            ssize_t n = read(s->cap_fd[i], buf, sizeof buf);
            if (n > 0) {
                server_stream(s, names[i], buf, (size_t)n, NULL);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
    }
}

static void *capture_main(void *arg)
{
    server *s = arg;
    for (;;) {
        struct pollfd p[3] = {
            {s->cap_fd[0], POLLIN, 0}, {s->cap_fd[1], POLLIN, 0}, {s->cap_stop_fd, POLLIN, 0}};
        int rc = poll(p, 3, -1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || (p[2].revents & POLLIN))
            break;
        pthread_mutex_lock(&s->cap_lock);
        capture_read_locked(s);
        pthread_mutex_unlock(&s->cap_lock);
    }
    return NULL;
}

int server_capture_fds(server *s)
{
    int out[2], errp[2];
    int orig = dup(2);
    if (orig < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0)
        goto fail;
    if (pipe2(errp, O_CLOEXEC) < 0) {
        close(out[0]);
        close(out[1]);
        goto fail;
    }
    fflush(stdout);
    fflush(stderr);
    if (dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0) {
        close(out[0]);
        close(out[1]);
        close(errp[0]);
        close(errp[1]);
        goto fail;
    }
    close(out[1]);
    close(errp[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    s->cap_fd[0] = out[0];
    s->cap_fd[1] = errp[0];
    s->cap_stop_fd = eventfd(0, EFD_CLOEXEC);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = s->cap_stop_fd < 0 ? -1 : kthread_start(&s->capture_thread, capture_main, s);
    if (rc != 0)
        return orig; /* fd output is still drained by server_sync_fds */
    s->have_capture = 1;
    fcntl(orig, F_SETFD, FD_CLOEXEC);
    return orig;
fail:
    close(orig);
    return -1;
}

void server_sync_fds(server *s)
{
    if (s->cap_fd[0] <= 0)
        return;
    fflush(stdout);
    fflush(stderr);
    /* One poll asks both pipes, where reading each would cost a failed
     * read apiece when (as after most cells) nothing was written. Under
     * cap_lock, so that what the capture thread has read is published. */
    struct pollfd p[2] = {{s->cap_fd[0], POLLIN, 0}, {s->cap_fd[1], POLLIN, 0}};
    pthread_mutex_lock(&s->cap_lock);
    if (poll(p, 2, 0) != 0)
        capture_read_locked(s);
    pthread_mutex_unlock(&s->cap_lock);
}

/* ---- start, run, stop ----------------------------------------------------- */

/* libzmq's I/O thread should never preempt the thread that woke it: the
 * busy, reply and idle of a request then leave in one go, not one context
 * switch each (SCHED_BATCH: no wake-up preemption). libzmq starts its
 * threads with the first socket, and a new thread inherits its creator's
 * policy; so the calling thread takes SCHED_BATCH just around that first
 * socket (see server_start). ZMQ_THREAD_SCHED_POLICY would do the same but
 * aborts the process where the policy is refused (a seccomp filter), and
 * asking first cost a thread of its own at every start. Returns the
 * policy to restore, or -1 if nothing changed. */
static int sched_batch_begin(void)
{
    struct sched_param sp = {0}, old_sp;
    int old = SCHED_OTHER;
    if (pthread_getschedparam(pthread_self(), &old, &old_sp) != 0 || old != SCHED_OTHER)
        return -1; /* a policy someone chose on purpose: keep it */
    return pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) == 0 ? old : -1;
}

static void sched_batch_end(int old)
{
    struct sched_param sp = {0};
    if (old >= 0 && pthread_setschedparam(pthread_self(), old, &sp) != 0)
        log_msg("cannot restore the main thread's scheduling policy");
}

static void *make_socket(server *s, int type, const connection *c, int port, char *err,
                         size_t errlen)
{
    char ep[512];
    void *sock = zmq_socket(s->ctx, type);
    if (sock == NULL) {
        snprintf(err, errlen, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int linger = 1000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (type == ZMQ_ROUTER) {
        int handover = 1;
        zmq_setsockopt(sock, ZMQ_ROUTER_HANDOVER, &handover, sizeof handover);
    }
    if (type == ZMQ_XPUB) {
        int verbose = 1;
        zmq_setsockopt(sock, ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose);
    }
    if (connection_endpoint(c, port, ep, sizeof ep) < 0 || zmq_bind(sock, ep) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", ep, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* The process that started the kernel (JPY_PARENT_PID) has exited: stop
 * as a shutdown_request would (a running cell is interrupted), and be gone
 * within a second even if it does not stop. Runs on parent.c's thread. */
static void parent_gone(void *arg, pid_t pid)
{
    server *s = arg;
    log_msg("the parent process %d exited; shutting down", (int)pid);
    server_arm_exit_watchdog(s, 1);
    server_request_shutdown(s, 0);
}

server *server_start(const connection *conn, wire_signer *signer, server_handler on_control,
                     void *arg, char *err, size_t errlen)
{
    server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Only the main thread takes SIGINT: every thread started from here on,
     * libzmq's I/O threads included, blocks it. The main thread takes it
     * whatever the parent did: ignored or blocked, it would make Interrupt
     * do nothing. */
    sigset_t old;
    kthread_catch_sigint();
    kthread_block_sigint(&old);
    sigdelset(&old, SIGINT);
    s->signer = signer;
    s->on_control = on_control;
    s->on_control_arg = arg;
    s->main_thread = pthread_self();
    pthread_mutex_init(&s->cap_lock, NULL);
    s->cap_fd[0] = s->cap_fd[1] = -1;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->ctx = zmq_ctx_new();
    if (s->wake_fd < 0 || s->ctx == NULL || pipe2(s->sig_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "cannot create zmq context or eventfd");
        goto error;
    }
    int batch = sched_batch_begin(); /* libzmq's threads start with the first socket */
    s->shell = make_socket(s, ZMQ_ROUTER, conn, conn->shell_port, err, errlen);
    sched_batch_end(batch);
    if (!s->shell)
        goto error;
    s->control = make_socket(s, ZMQ_ROUTER, conn, conn->control_port, err, errlen);
    if (!s->control)
        goto error;
    s->stdin_sock = make_socket(s, ZMQ_ROUTER, conn, conn->stdin_port, err, errlen);
    if (!s->stdin_sock)
        goto error;
    s->hb = make_socket(s, ZMQ_ROUTER, conn, conn->hb_port, err, errlen);
    if (!s->hb)
        goto error;
    void *xpub = make_socket(s, ZMQ_XPUB, conn, conn->iopub_port, err, errlen);
    s->iopub = xpub ? iopub_start(xpub, signer, err, errlen) : NULL;
    if (!s->iopub)
        goto error;

    s->shell_ch = (channel_pub){s, s->shell};
    s->control_ch = (channel_pub){s, s->control};
    s->shell_pub = (publisher){&s->shell_ch, pub_iopub,  pub_announce, pub_reply,
                               pub_input,    pub_stream, pub_sync,     pub_iopub_ext};
    s->control_pub = (publisher){&s->control_ch, pub_iopub,  pub_announce, pub_reply,
                                 pub_no_input,   pub_stream, pub_sync,     pub_iopub_ext};

    int rc = pthread_create(&s->hb_thread, NULL, hb_main, s);
    rc = rc ? rc : pthread_create(&s->control_thread, NULL, control_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start threads: %s", strerror(rc));
        _exit(1); /* threads own sockets now; there is no clean partial undo */
    }
    if (parent_watch_start(parent_gone, s) < 0)
        log_msg("cannot watch the parent process (JPY_PARENT_PID)");
    return s;
error:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (s->shell)
        zmq_close(s->shell);
    if (s->control)
        zmq_close(s->control);
    if (s->stdin_sock)
        zmq_close(s->stdin_sock);
    if (s->hb)
        zmq_close(s->hb);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    free(s);
    return NULL;
}

publisher *server_shell_publisher(server *s)
{
    return &s->shell_pub;
}

publisher *server_control_publisher(server *s)
{
    return &s->control_pub;
}

void server_set_kernel_info(server *s, json_t *content)
{
    s->kernel_info = content;
}

json_t *server_kernel_info(server *s)
{
    return s->kernel_info;
}

int server_shutting_down(server *s)
{
    return atomic_load(&s->shutdown);
}

void server_interrupt_main(server *s)
{
    pthread_kill(s->main_thread, SIGINT);
}

static void *watchdog_main(void *arg)
{
    unsigned seconds = (unsigned)(uintptr_t)arg;
    sleep(seconds);
    log_msg("shutdown: still finishing after %u s (a thread that never ends?); exiting now",
            seconds);
    _exit(0);
    return NULL;
}

void server_arm_exit_watchdog(server *s, unsigned seconds)
{
    pthread_t t;
    if (kthread_start(&t, watchdog_main, (void *)(uintptr_t)seconds) == 0)
        pthread_detach(t);
}

int server_signal_fd(server *s)
{
    return s->sig_fd[1];
}

void server_request_shutdown(server *s, int restart)
{
    (void)restart; /* the kernel manager restarts us; we just exit */
    atomic_store(&s->shutdown, 1);
    kthread_wake(s->wake_fd);
    if (atomic_load(&s->main_busy))
        server_interrupt_main(s);
}

void server_set_idle_hook(server *s, void (*hook)(void *), void *arg)
{
    s->idle_hook = hook;
    s->idle_arg = arg;
}

/* Waits until the shell socket may have a message, a wake-up or a signal
 * arrives, or (with an idle hook) IDLE_HOOK_MS pass. Returns what poll
 * returned. shell_fd is the socket's ZMQ_FD: edge-triggered, and any zmq
 * call may take its edge, so ZMQ_EVENTS is asked first. This costs three
 * system calls where zmq_poll, which asks ZMQ_EVENTS before and after,
 * costs five or more. */
static int wait_shell(server *s, int shell_fd)
{
    int events = 0;
    size_t sz = sizeof events;
    if (zmq_getsockopt(s->shell, ZMQ_EVENTS, &events, &sz) < 0)
        return -1;
    if (events & ZMQ_POLLIN)
        return 1;
    struct pollfd p[3] = {
        {shell_fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}, {s->sig_fd[0], POLLIN, 0}};
    int rc = poll(p, 3, s->idle_hook ? IDLE_HOOK_MS : -1);
    if (rc > 0 && (p[2].revents & POLLIN))
        drain_signals(s); /* an interrupt while idle: nothing to stop */
    return rc;
}

int server_run(server *s, server_handler handle, void *arg)
{
    int shell_fd;
    size_t sz = sizeof shell_fd;
    if (zmq_getsockopt(s->shell, ZMQ_FD, &shell_fd, &sz) < 0) {
        log_msg("shell: no ZMQ_FD: %s", zmq_strerror(errno));
        return -1;
    }
    while (!atomic_load(&s->shutdown)) {
        /* A request already queued needs no poll. */
        wire_msg msg;
        int rc = recv_msg(s, s->shell, "shell", &msg, ZMQ_DONTWAIT);
        if (rc > 0) {
            atomic_store(&s->main_busy, 1);
            handle(s, &msg, arg);
            atomic_store(&s->main_busy, 0);
            wire_msg_clear(&msg);
            continue;
        }
        if (rc == 0 || errno == EINTR)
            continue; /* a bad message (dropped and logged), or a signal */
        if (errno != EAGAIN)
            break; /* the context is shutting down */
        rc = wait_shell(s, shell_fd);
        if (rc == 0 && s->idle_hook) {
            void (*hook)(void *) = s->idle_hook;
            s->idle_hook = NULL;
            hook(s->idle_arg);
        }
        if (rc < 0 && errno != EINTR)
            break;
    }
    return 0;
}

void server_drain_shell(server *s, server_handler fn, void *arg)
{
    for (;;) {
        wire_msg msg;
        int rc = recv_msg(s, s->shell, "shell", &msg, ZMQ_DONTWAIT);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return;
        if (rc == 0)
            continue;
        fn(s, &msg, arg);
        wire_msg_clear(&msg);
    }
}

void server_stop(server *s)
{
    /* Send what is queued, then let every blocking call return ETERM. */
    if (s->have_capture) {
        kthread_wake(s->cap_stop_fd);
        pthread_join(s->capture_thread, NULL);
    }
    iopub_close(s->iopub);
    zmq_close(s->shell);
    zmq_close(s->stdin_sock);
    zmq_ctx_shutdown(s->ctx);
    pthread_join(s->hb_thread, NULL);
    pthread_join(s->control_thread, NULL);
    zmq_ctx_term(s->ctx);
    iopub_free(s->iopub);
    close(s->wake_fd);
    close(s->sig_fd[0]);
    close(s->sig_fd[1]);
    if (s->cap_stop_fd > 0)
        close(s->cap_stop_fd);
    json_decref(s->kernel_info);
    pthread_mutex_destroy(&s->cap_lock);
    free(s);
}
