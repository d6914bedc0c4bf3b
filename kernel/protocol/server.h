/* server.h - sockets and threads: the shell+stdin loop on the main thread,
 * the control thread, the heartbeat and fd 1/2 capture; IOPub is iopub.h's,
 * reached through the publishers and server_stream.
 */
#ifndef PYROMETER_SERVER_H
#define PYROMETER_SERVER_H

#include <jansson.h>

#include "connection.h"
#include "publisher.h"
#include "wire.h"

typedef struct server server;

typedef void (*server_handler)(server *s, wire_msg *msg, void *arg);

/* Binds every socket named by conn and starts the heartbeat, IOPub relay
 * and control threads; control messages go to on_control on the control thread
 * (which must not wait for the GIL). Must be called from the main thread.
 * Returns a new server, or NULL with a reason in err. */
server *server_start(const connection *conn, wire_signer *signer, server_handler on_control,
                     void *arg, char *err, size_t errlen);

/* The publisher for handlers on the control thread. */
publisher *server_control_publisher(server *s);

/* The publisher for request handlers on the main (shell) thread. */
publisher *server_shell_publisher(server *s);

/* Appends text to stream name ("stdout"/"stderr") for parent (borrowed), or
 * for the current stream parent when NULL. Any thread; batched and ordered
 * with every other iopub message. */
void server_stream(server *s, const char *name, const char *data, size_t len, json_t *parent);

/* Sets the parent header that streams attach to (a reference is kept; the
 * header must not be modified afterwards). */
void server_set_stream_parent(server *s, json_t *parent);

/* Runs the shell loop on the calling (main) thread until shutdown, without
 * holding the GIL while it waits. handle is called for each verified shell
 * message. Returns 0. */
int server_run(server *s, server_handler handle, void *arg);

/* Makes server_run call hook(arg) once, the first time the shell queue is
 * empty. */
void server_set_idle_hook(server *s, void (*hook)(void *), void *arg);

/* Drains queued shell messages without blocking, passing each to fn (used to
 * abort requests queued behind an error). */
void server_drain_shell(server *s, server_handler fn, void *arg);

/* 1 once a shutdown was requested (any thread). */
int server_shutting_down(server *s);

/* Sends SIGINT to the main thread (any thread; async-signal-safe path). */
void server_interrupt_main(server *s);

/* The kernel_info_reply content (borrowed), or NULL before it is set. */
json_t *server_kernel_info(server *s);

/* Makes fd 1 and 2 feed `stream` messages. Returns a dup of the original
 * fd 2 for logging, or -1. */
int server_capture_fds(server *s);

/* Delivers everything written to fd 1/2 so far into the stream queue. */
void server_sync_fds(server *s);

/* The write end of a non-blocking pipe for PySignal_SetWakeupFd: a signal
 * that arrives while input() waits is then never missed. */
int server_signal_fd(server *s);

/* Set by the control thread; server_run returns soon after. */
void server_request_shutdown(server *s, int restart);

/* The kernel_info_reply content, built once with the GIL held at start-up;
 * stolen. The control thread answers kernel_info_request from it. */
void server_set_kernel_info(server *s, json_t *content);

/* Ends the process with status 0 if it is still running in `seconds`:
 * finalisation may wait for a user thread that never ends. */
void server_arm_exit_watchdog(server *s, unsigned seconds);

/* Stops threads, closes sockets and frees s. */
void server_stop(server *s);

#endif
