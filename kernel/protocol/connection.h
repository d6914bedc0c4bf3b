/* connection.h - the Jupyter connection file, parsed into a struct.
 *
 * Fields follow jupyter_client's connection-file format; the key is kept as
 * raw bytes and never logged.
 */
#ifndef PYROMETER_CONNECTION_H
#define PYROMETER_CONNECTION_H

#include <stddef.h>

typedef struct {
    char transport[16]; /* "tcp" or "ipc" */
    char ip[256];       /* address for tcp, path prefix for ipc */
    int shell_port, iopub_port, stdin_port, control_port, hb_port;
    unsigned char key[1024]; /* HMAC key bytes, used as given */
    size_t key_len;          /* 0: messages are neither signed nor checked */
    char signature_scheme[32];
    char kernel_name[128];
} connection;

/* Loads and validates a connection file. Returns 0, or -1 with a one-line
 * reason in err (never containing the key); *c is zeroed first. */
int connection_load(const char *path, connection *c, char *err, size_t errlen);

/* Parses connection JSON text; same contract as connection_load. */
int connection_parse(const char *text, size_t len, connection *c, char *err, size_t errlen);

/* Writes the zmq endpoint for a port ("tcp://ip:port" or "ipc://ip-port").
 * Returns 0, or -1 if buf is too small. */
int connection_endpoint(const connection *c, int port, char *buf, size_t len);

#endif
