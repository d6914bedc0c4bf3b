/* fuzz_connection.c - libFuzzer target: connection-file text ->
 * connection_parse. An accepted file must give in-range ports, a known
 * transport and endpoints that fit; a refused one a one-line reason that
 * never contains the key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    connection c;
    char err[256], ep[512];
    err[0] = '\0';
    if (connection_parse((const char *)data, size, &c, err, sizeof err) == 0) {
        int ports[5] = {c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port};
        if (strcmp(c.transport, "tcp") != 0 && strcmp(c.transport, "ipc") != 0)
            abort();
        for (int i = 0; i < 5; i++) {
            if (ports[i] < 0 || ports[i] > 65535)
                abort();
            (void)connection_endpoint(&c, ports[i], ep, sizeof ep);
        }
        if (c.key_len > sizeof c.key)
            abort();
    } else {
        size_t len = strlen(err);
        if (len == 0 || memchr(err, '\n', len) != NULL)
            abort();
        if (c.key_len != 0)
            abort(); /* *c is zeroed on failure */
    }
    return 0;
}
