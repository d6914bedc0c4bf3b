/* connection.c - reads a Jupyter connection file (JSON, via Jansson) into a
 * connection struct: transport, ip, the five ports, key and scheme. */
#include "connection.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const port_names[] = {"shell_port", "iopub_port", "stdin_port", "control_port",
                                         "hb_port"};

static int copy_str(json_t *root, const char *name, char *dst, size_t dstlen, const char *dflt,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(root, name);
    const char *s = dflt;
    if (v != NULL) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "connection file: \"%s\" must be a string", name);
            return -1;
        }
        s = json_string_value(v);
    }
    if (s == NULL) {
        snprintf(err, errlen, "connection file: missing \"%s\"", name);
        return -1;
    }
    if (strlen(s) >= dstlen) {
        snprintf(err, errlen, "connection file: \"%s\" is too long", name);
        return -1;
    }
    strcpy(dst, s);
    return 0;
}

int connection_parse(const char *text, size_t len, connection *c, char *err, size_t errlen)
{
    json_error_t jerr;
    int *ports[] = {&c->shell_port, &c->iopub_port, &c->stdin_port, &c->control_port, &c->hb_port};
    int rc = -1;

    memset(c, 0, sizeof *c);
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (root == NULL) {
        /* Jansson quotes the token near the error: that may be the key. */
        char *near = strstr(jerr.text, " near ");
        if (near != NULL)
            *near = '\0';
        snprintf(err, errlen, "connection file: invalid JSON at line %d: %s", jerr.line, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "connection file: top level must be an object");
        goto done;
    }
    if (copy_str(root, "transport", c->transport, sizeof c->transport, "tcp", err, errlen) < 0 ||
        copy_str(root, "ip", c->ip, sizeof c->ip, NULL, err, errlen) < 0 ||
        copy_str(root, "signature_scheme", c->signature_scheme, sizeof c->signature_scheme,
                 "hmac-sha256", err, errlen) < 0 ||
        copy_str(root, "kernel_name", c->kernel_name, sizeof c->kernel_name, "", err, errlen) < 0)
        goto done;
    if (strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0) {
        snprintf(err, errlen, "connection file: unsupported transport \"%s\" (tcp or ipc)",
                 c->transport);
        goto done;
    }
    if (strcmp(c->signature_scheme, "hmac-sha256") != 0) {
        snprintf(err, errlen, "connection file: unsupported signature_scheme \"%s\"",
                 c->signature_scheme);
        goto done;
    }
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        json_t *v = json_object_get(root, port_names[i]);
        if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 65535) {
            snprintf(err, errlen, "connection file: \"%s\" must be an integer in 1..65535",
                     port_names[i]);
            goto done;
        }
        *ports[i] = (int)json_integer_value(v);
    }
    json_t *key = json_object_get(root, "key");
    if (key != NULL && !json_is_string(key)) {
        snprintf(err, errlen, "connection file: \"key\" must be a string");
        goto done;
    }
    if (key != NULL) {
        size_t klen = json_string_length(key);
        if (klen > sizeof c->key) {
            snprintf(err, errlen, "connection file: \"key\" is longer than %zu bytes",
                     sizeof c->key);
            goto done;
        }
        memcpy(c->key, json_string_value(key), klen);
        c->key_len = klen;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int connection_load(const char *path, connection *c, char *err, size_t errlen)
{
    char buf[65536];
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open connection file %s: %m", path);
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    int read_errno = ferror(f) ? errno : 0;
    int too_big = !read_errno && !feof(f);
    fclose(f);
    if (read_errno != 0) {
        errno = read_errno;
        snprintf(err, errlen, "cannot read connection file %s: %m", path);
        return -1;
    }
    if (too_big) {
        snprintf(err, errlen, "connection file %s is larger than %zu bytes", path, sizeof buf);
        return -1;
    }
    return connection_parse(buf, n, c, err, errlen);
}

int connection_endpoint(const connection *c, int port, char *buf, size_t len)
{
    int n;
    if (strcmp(c->transport, "ipc") == 0)
        n = snprintf(buf, len, "ipc://%s-%d", c->ip, port);
    else if (strchr(c->ip, ':') != NULL) /* IPv6 literal */
        n = snprintf(buf, len, "tcp://[%s]:%d", c->ip, port);
    else
        n = snprintf(buf, len, "tcp://%s:%d", c->ip, port);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}
