/* dispatch.c - routes each verified message to its handler by msg_type
 * through a small table per channel, publishing status busy and idle
 * (parented to the request) around it. Unknown types are logged and dropped. */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "log.h"

typedef struct {
    const char *msg_type;
    dispatch_handler fn;
    int status; /* publish busy/idle around it */
} dispatch_entry;

static const dispatch_entry shell_table[] = {
    {"execute_request", handle_execute, 1},
    {"kernel_info_request", handle_kernel_info, 1},
    {"is_complete_request", handle_is_complete, 1},
    {"complete_request", handle_complete, 1},
    {"inspect_request", handle_inspect, 1},
    {"history_request", handle_history, 1},
    {"comm_info_request", handle_comm_info, 1},
    {"comm_open", handle_comm, 1},
    {"comm_msg", handle_comm, 1},
    {"comm_close", handle_comm, 1},
    {"shutdown_request", handle_shutdown, 1},
    {NULL, NULL, 0},
};

static const dispatch_entry control_table[] = {
    {"kernel_info_request", handle_kernel_info, 1},
    {"shutdown_request", handle_shutdown, 1},
    {"interrupt_request", handle_interrupt, 1},
    {NULL, NULL, 0},
};

/* busy is an announcement: a quick request's busy, reply and idle leave
 * together (see iopub.h). */
static void publish_busy(publisher *pub, const wire_msg *msg)
{
    pub->announce(pub->self, "status", json_pack("{s:s}", "execution_state", "busy"), msg->header);
}

static void publish_idle(publisher *pub, const wire_msg *msg)
{
    pub->iopub(pub->self, "status", json_pack("{s:s}", "execution_state", "idle"), msg->header);
}

static void run(server *s, publisher *pub, const dispatch_entry *table, const char *channel,
                wire_msg *msg)
{
    const dispatch_entry *e = table;
    while (e->msg_type && strcmp(e->msg_type, msg->msg_type) != 0)
        e++;
    if (e->msg_type == NULL) {
        log_msg("%s: ignored unknown message type \"%.64s\"", channel, msg->msg_type);
        return;
    }
    if (e->status)
        publish_busy(pub, msg);
    e->fn(s, pub, msg);
    if (e->status)
        publish_idle(pub, msg);
}

/* Set once at start-up, before server_run. Main thread only. */
static void (*interp_hook)(void *);
static void *interp_hook_arg;

void dispatch_set_interp_hook(void (*hook)(void *), void *arg)
{
    interp_hook = hook;
    interp_hook_arg = arg;
}

/* Requests that were queued behind a failed execute_request with
 * stop_on_error, taken off the socket before its reply was sent, in order
 * (owned). Main thread only. */
static wire_msg *behind;
static size_t n_behind, cap_behind;

/* Replies aborted to an execute_request, with its own busy and idle, as
 * ipykernel does: the content is {"status": "aborted"} alone, with no
 * execution_count, since the cell never ran. */
static void abort_one(server *s, const wire_msg *msg)
{
    publisher *pub = server_shell_publisher(s);
    server_set_stream_parent(s, msg->header);
    publish_busy(pub, msg);
    pub->reply(pub->self, msg, "execute_reply", json_pack("{s:s}", "status", "aborted"),
               json_pack("{s:s}", "status", "aborted"));
    publish_idle(pub, msg);
}

/* After the failed request's idle: aborts the execute_requests that were
 * queued behind it and handles the others normally, in their order. */
static void run_behind(server *s, void *arg)
{
    while (n_behind > 0) {
        wire_msg *list = behind;
        size_t n = n_behind;
        behind = NULL;
        n_behind = cap_behind = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(list[i].msg_type, "execute_request") == 0)
                abort_one(s, &list[i]);
            else
                dispatch_shell(s, &list[i], arg);
            wire_msg_clear(&list[i]);
        }
        free(list);
    }
}

void dispatch_shell(server *s, wire_msg *msg, void *arg)
{
    if (interp_hook && strcmp(msg->msg_type, "kernel_info_request") != 0)
        interp_hook(interp_hook_arg);
    server_set_stream_parent(s, msg->header);
    run(s, server_shell_publisher(s), shell_table, "shell", msg);
    if (n_behind > 0)
        run_behind(s, arg);
}

void dispatch_control(server *s, wire_msg *msg, void *arg)
{
    run(s, server_control_publisher(s), control_table, "control", msg);
}

/* server_handler: takes msg into the behind list (the server then clears
 * the emptied struct). Out of memory: replies aborted at once, out of
 * order but never lost. */
static void take_behind(server *s, wire_msg *msg, void *arg)
{
    if (n_behind == cap_behind) {
        size_t cap = cap_behind ? cap_behind * 2 : 8;
        wire_msg *nb = realloc(behind, cap * sizeof *nb);
        if (nb == NULL) {
            log_msg("shell: out of memory; aborting %s now", msg->msg_type);
            if (strcmp(msg->msg_type, "execute_request") == 0)
                abort_one(s, msg);
            return;
        }
        behind = nb;
        cap_behind = cap;
    }
    behind[n_behind++] = *msg;
    memset(msg, 0, sizeof *msg);
}

void dispatch_abort_queued(server *s)
{
    server_drain_shell(s, take_behind, NULL);
}
