/* wire.h - Jupyter wire format: frames <-> message.
 *
 * A message on the wire is: identities, "<IDS|MSG>", HMAC-SHA256 hex signature,
 * header, parent_header, metadata, content (JSON), then raw buffers. The signer
 * holds the key, the session id and a replay guard of recently seen
 * signatures.
 */
#ifndef PYROMETER_WIRE_H
#define PYROMETER_WIRE_H

#include <jansson.h>
#include <sodium.h>
#include <pthread.h>
#include <stddef.h>

#define WIRE_DELIM            "<IDS|MSG>"
#define WIRE_PROTOCOL_VERSION "5.3"

typedef struct {
    void *data; /* owned by whoever owns the array it sits in */
    size_t len;
} wire_frame;

typedef struct {
    unsigned char key[1024];
    size_t key_len;                     /* 0: no signing, no checking */
    crypto_auth_hmacsha256_state keyed; /* HMAC-SHA256 keyed once; only
                                         * ever copied, so any thread may sign */
    char session[37];                   /* fresh uuid4 at each start */
    /* Replay guard: open-addressing set of raw digests. Protected by lock. */
    pthread_mutex_t lock;
    unsigned char (*seen)[32];
    size_t seen_cap, seen_count;
} wire_signer;

typedef struct {
    wire_frame *ids; /* owned copies of the routing identities */
    size_t n_ids;
    json_t *header;        /* owned; always an object with a string msg_type */
    json_t *parent_header; /* owned object */
    json_t *metadata;      /* owned object */
    json_t *content;       /* owned object */
    wire_frame *buffers;   /* owned copies */
    size_t n_buffers;
    const char *msg_type; /* borrowed from header */
} wire_msg;

/* Returns 0, or -1 if out of memory. The key is copied. */
int wire_signer_init(wire_signer *s, const unsigned char *key, size_t key_len);
void wire_signer_free(wire_signer *s);

/* Hex HMAC-SHA256 over the given parts into out (65 bytes). Writes "" when the
 * signer has no key. */
void wire_sign(const wire_signer *s, const char *const parts[], const size_t lens[], size_t n,
               char out[65]);

/* Parses and verifies frames (borrowed). Returns 0 with *out filled (caller
 * frees with wire_msg_clear), or -1 with a one-line reason in err and *out
 * left zeroed. Each accepted signature is remembered: a replay is refused. */
int wire_parse(wire_signer *s, const wire_frame *frames, size_t n, wire_msg *out, char *err,
               size_t errlen);

void wire_msg_clear(wire_msg *m);

/* Serialises a message to frames: ids (borrowed, copied), delimiter,
 * signature, the four JSON dicts (NULL means {}). Returns a malloc'ed array
 * of *n frames each owning its data (free with wire_frames_free), or NULL. */
wire_frame *wire_serialize(const wire_signer *s, const wire_frame *ids, size_t n_ids,
                           json_t *header, json_t *parent, json_t *metadata, json_t *content,
                           size_t *n);
void wire_frames_free(wire_frame *frames, size_t n);

/* wire_serialize for a new message of msg_type: with a fresh header
 * (wire_header_new). Returns the frames, or NULL. */
wire_frame *wire_build(const wire_signer *s, const wire_frame *ids, size_t n_ids,
                       const char *msg_type, json_t *parent, json_t *metadata, json_t *content,
                       size_t *n);

/* Sends n frames (borrowed) as one multipart message on a zmq socket,
 * retrying on EINTR. Returns 0, or -1 with errno set. */
int wire_send(void *sock, const wire_frame *f, size_t n);

/* Frees the calling thread's cache of the last parent header it serialised
 * (it is freed at thread exit anyway; the main thread calls this before it
 * returns from main, where no thread-exit destructor runs). */
void wire_thread_cleanup(void);

/* Returns a new header object for msg_type: msg_id, session, username,
 * date, msg_type, version. NULL if out of memory. */
json_t *wire_header_new(const wire_signer *s, const char *msg_type);

/* Writes a fresh random uuid4 string into out (37 bytes). */
void wire_uuid(char out[37]);

/* Writes the current UTC time as ISO 8601 with microseconds and "Z". */
void wire_now_iso(char out[32]);

#endif
