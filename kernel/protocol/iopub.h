/* iopub.h - the IOPub channel: one ordered stream of messages from every
 * thread onto the XPUB socket.
 *
 * A publishing thread sends on its own thread: first whatever is queued,
 * then its message, so a request costs no thread hand-off. Two kinds of
 * message may wait in the queue: stream text, held up to 20 ms to coalesce
 * consecutive writes, and announcements (status busy, execute_input), held
 * up to 10 ms so that a quick request's messages leave together. The relay
 * thread sends what falls due while nobody else publishes, and answers each
 * subscription with iopub_welcome. What is published before anyone has
 * subscribed is held for the first subscriber (up to 10 s after the start
 * and 16 MiB), so a client that executes before its SUB socket has joined
 * loses nothing.
 */
#ifndef PYROMETER_IOPUB_H
#define PYROMETER_IOPUB_H

#include <jansson.h>
#include <stddef.h>

#include "wire.h"

typedef struct iopub iopub;

/* Takes ownership of sock (a bound XPUB socket) and starts the relay
 * thread; signer is borrowed and must outlive the channel. Call with SIGINT
 * blocked (the relay inherits the mask). Returns a new channel, or NULL with
 * a reason in err (sock is then closed). */
iopub *iopub_start(void *sock, const wire_signer *signer, char *err, size_t errlen);

/* Publishes msg_type with content (stolen) and parent header (borrowed; NULL
 * for none). Any thread; ordered after every earlier publish and stream
 * write of any thread. */
void iopub_publish(iopub *io, const char *msg_type, json_t *content, json_t *parent);

/* iopub_publish with metadata (stolen; NULL for {}) and buffers (borrowed,
 * copied) sent as extra frames after the content. */
void iopub_publish_ext(iopub *io, const char *msg_type, json_t *content, json_t *metadata,
                       const wire_frame *buffers, size_t n_buffers, json_t *parent);

/* Like iopub_publish, for a message that announces what follows: it leaves
 * with the next message published or flushed, or after at most 10 ms. */
void iopub_announce(iopub *io, const char *msg_type, json_t *content, json_t *parent);

/* Sends everything queued now (before a reply on another channel). */
void iopub_flush(iopub *io);

/* The same, before a request's reply: it leaves the check for new
 * subscribers (two system calls in libzmq) to the request's idle status,
 * which the same thread always publishes next. */
void iopub_flush_before_reply(iopub *io);

/* Appends text to stream name ("stdout"/"stderr") for parent (borrowed), or
 * for the current stream parent when NULL. Any thread. Consecutive writes to
 * one stream with one parent become one message (held at most 20 ms). */
void iopub_stream(iopub *io, const char *name, const char *data, size_t len, json_t *parent);

/* Sets the parent header that streams attach to (a reference is kept; the
 * header must not be modified afterwards). */
void iopub_set_stream_parent(iopub *io, json_t *parent);

/* Sends everything queued, stops the relay and closes the socket (before
 * the zmq context is shut down). Later messages are dropped. */
void iopub_close(iopub *io);

/* Frees io, once no thread can publish any more. */
void iopub_free(iopub *io);

#endif
