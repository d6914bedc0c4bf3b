/* dispatch.h - msg_type -> handler tables for shell and control, with
 * status busy/idle published around every request. The handlers live in
 * handlers.c; they talk to the world only through their publisher. */
#ifndef PYROMETER_DISPATCH_H
#define PYROMETER_DISPATCH_H

#include "publisher.h"
#include "server.h"
#include "wire.h"

typedef void (*dispatch_handler)(server *s, publisher *pub, const wire_msg *msg);

/* Sets the function dispatch_shell calls before any request but
 * kernel_info_request (it starts the interpreter if it is not running). */
void dispatch_set_interp_hook(void (*hook)(void *), void *arg);

/* server_handler for the shell channel (main thread). */
void dispatch_shell(server *s, wire_msg *msg, void *arg);

/* server_handler for the control channel (control thread; never takes the
 * GIL). */
void dispatch_control(server *s, wire_msg *msg, void *arg);

/* handlers.c: one function per request type. */
void handle_kernel_info(server *s, publisher *pub, const wire_msg *msg);
void handle_execute(server *s, publisher *pub, const wire_msg *msg);
void handle_is_complete(server *s, publisher *pub, const wire_msg *msg);
void handle_complete(server *s, publisher *pub, const wire_msg *msg);
void handle_inspect(server *s, publisher *pub, const wire_msg *msg);
void handle_history(server *s, publisher *pub, const wire_msg *msg);
void handle_comm_info(server *s, publisher *pub, const wire_msg *msg);
void handle_comm(server *s, publisher *pub, const wire_msg *msg);
void handle_shutdown(server *s, publisher *pub, const wire_msg *msg);
void handle_interrupt(server *s, publisher *pub, const wire_msg *msg);

/* stop_on_error: takes every request already queued on shell off the
 * socket. Once the current request's reply and idle have gone out,
 * dispatch_shell replies "aborted" to each execute_request among them and
 * handles the others normally, in their order. */
void dispatch_abort_queued(server *s);

#endif
