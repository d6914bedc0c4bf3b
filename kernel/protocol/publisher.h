/* publisher.h - how handlers and the interpreter talk to the outside world.
 *
 * A struct of function pointers (as xeus's xserver or SQLite's method tables):
 * server.c provides one per thread that handles requests, and unit tests can
 * provide a mock. Nothing behind this interface needs the GIL.
 */
#ifndef PYROMETER_PUBLISHER_H
#define PYROMETER_PUBLISHER_H

#include <jansson.h>
#include <stddef.h>

#include "wire.h"

typedef struct publisher publisher;
struct publisher {
    void *self;
    /* Publishes msg_type on iopub with content (stolen) and parent header
     * (borrowed; NULL for none). Ordered after every earlier publish and
     * stream write of any thread. */
    void (*iopub)(void *self, const char *msg_type, json_t *content, json_t *parent);
    /* The same, for a message that announces what follows (status busy,
     * execute_input): it may wait up to 10 ms for the next message on any
     * channel, so that a quick request's messages leave together. */
    void (*announce)(void *self, const char *msg_type, json_t *content, json_t *parent);
    /* Sends a reply to req on the channel it came from. content and metadata
     * are stolen (metadata may be NULL). */
    void (*reply)(void *self, const wire_msg *req, const char *msg_type, json_t *content,
                  json_t *metadata);
    /* Asks the frontend of req for a line of input over stdin, showing the
     * prompt_len bytes of prompt. Returns 0 with *out a malloc'ed string of
     * *out_len bytes (it may hold NULs; a NUL follows it), 1 if interrupted
     * (check signals), or -1 with a reason in err. Blocks; the caller must
     * not hold the GIL. */
    int (*input)(void *self, const wire_msg *req, const char *prompt, size_t prompt_len,
                 int password, char **out, size_t *out_len, char *err, size_t errlen);
    /* Appends text to stream name ("stdout"/"stderr"), parented to parent
     * (borrowed), or to the request being handled when parent is NULL. Any
     * thread. */
    void (*stream)(void *self, const char *name, const char *data, size_t len, json_t *parent);
    /* Delivers what C code and subprocesses wrote to fd 1/2 so far, so that
     * it is published before anything published after this call. */
    void (*sync)(void *self);
    /* iopub, with metadata (stolen; NULL for {}) and binary buffers
     * (borrowed, copied) after the four JSON frames: comm messages. */
    void (*iopub_ext)(void *self, const char *msg_type, json_t *content, json_t *metadata,
                      const wire_frame *buffers, size_t n_buffers, json_t *parent);
};

#endif
