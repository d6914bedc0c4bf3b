/* handlers.c - one function per request type. Each reads the request's
 * content, asks interp/introspect/history for the answer, and replies
 * through its publisher; none touches a socket. */
#include <string.h>
#include <time.h>

#include "comms.h"
#include "dispatch.h"
#include "exiter.h"
#include "history.h"
#include "interp.h"
#include "introspect.h"
#include "log.h"

static const char *str_field(const wire_msg *msg, const char *name)
{
    const char *v = json_string_value(json_object_get(msg->content, name));
    return v ? v : "";
}

static long int_field(const wire_msg *msg, const char *name, long dflt)
{
    json_t *v = json_object_get(msg->content, name);
    return json_is_integer(v) ? (long)json_integer_value(v) : dflt;
}

void handle_kernel_info(server *s, publisher *pub, const wire_msg *msg)
{
    json_t *info = server_kernel_info(s);
    pub->reply(pub->self, msg, "kernel_info_reply", info ? json_deep_copy(info) : json_object(),
               NULL);
}

/* exit() ends the kernel this long after its reply: jupyter console reads
 * the reply (and its ask_exit) only while the kernel is alive, then shuts
 * the kernel down itself. ipykernel waits 0.1 s. */
#define EXIT_DELAY_NS 300000000LL

/* When an exit() is due (CLOCK_MONOTONIC, ns). Main thread only. */
static long long exit_due_ns;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The idle hook while an exit is due: re-armed until the time comes. */
static void exit_when_due(void *arg)
{
    server *s = arg;
    if (now_ns() >= exit_due_ns)
        server_request_shutdown(s, 0);
    else
        server_set_idle_hook(s, exit_when_due, s);
}

void handle_execute(server *s, publisher *pub, const wire_msg *msg)
{
    int failed = 0;
    json_t *reply = interp_execute(pub, msg, &failed);
    json_t *md = json_pack("{s:s}", "status", failed ? "error" : "ok");
    json_t *soe = json_object_get(msg->content, "stop_on_error");
    /* Take what was queued behind the error off the socket before
     * replying, so that a request sent after the client saw the error is
     * not aborted; the aborted replies follow this one and its idle. */
    if (failed && (soe == NULL || json_is_true(soe)))
        dispatch_abort_queued(s);
    pub->reply(pub->self, msg, "execute_reply", reply, md);
    if (exiter_take_request()) { /* exit(): the kernel ends, as ipykernel's does */
        exit_due_ns = now_ns() + EXIT_DELAY_NS;
        server_set_idle_hook(s, exit_when_due, s);
    }
}

void handle_is_complete(server *s, publisher *pub, const wire_msg *msg)
{
    pub->reply(pub->self, msg, "is_complete_reply", interp_is_complete(str_field(msg, "code")),
               NULL);
}

void handle_complete(server *s, publisher *pub, const wire_msg *msg)
{
    const char *code = str_field(msg, "code");
    long pos = int_field(msg, "cursor_pos", (long)strlen(code));
    pub->reply(pub->self, msg, "complete_reply", introspect_complete(code, pos), NULL);
}

void handle_inspect(server *s, publisher *pub, const wire_msg *msg)
{
    const char *code = str_field(msg, "code");
    long pos = int_field(msg, "cursor_pos", (long)strlen(code));
    int level = (int)int_field(msg, "detail_level", 0);
    pub->reply(pub->self, msg, "inspect_reply", introspect_inspect(code, pos, level), NULL);
}

void handle_history(server *s, publisher *pub, const wire_msg *msg)
{
    pub->reply(pub->self, msg, "history_reply", history_reply(msg->content), NULL);
}

void handle_comm_info(server *s, publisher *pub, const wire_msg *msg)
{
    const char *target = json_string_value(json_object_get(msg->content, "target_name"));
    pub->reply(pub->self, msg, "comm_info_reply", comms_info(target), NULL);
}

void handle_comm(server *s, publisher *pub, const wire_msg *msg)
{
    comms_handle(pub, msg);
}

void handle_shutdown(server *s, publisher *pub, const wire_msg *msg)
{
    int restart = json_is_true(json_object_get(msg->content, "restart"));
    pub->reply(pub->self, msg, "shutdown_reply",
               json_pack("{s:s, s:b}", "status", "ok", "restart", restart), NULL);
    server_request_shutdown(s, restart);
}

void handle_interrupt(server *s, publisher *pub, const wire_msg *msg)
{
    server_interrupt_main(s);
    pub->reply(pub->self, msg, "interrupt_reply", json_pack("{s:s}", "status", "ok"), NULL);
}
