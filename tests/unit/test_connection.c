/* test_connection.c - connection files, good and malformed, kept as data in
 * connection_cases/<case>/: connection.json, and either `error` (a substring
 * the one-line reason must contain) or expect.json (fields of the parsed
 * struct, plus "endpoints" by channel). A `todo` file marks the case's
 * key-secrecy check as TODO, its content the reason (a known bug, reported).
 *
 * Every key in the cases is or contains SECRET: no reason may contain it.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connection.h"
#include "cases.h"
#include "tap.h"

#define CASES_DIR   "connection_cases"
#define SECRET      "S3cr3tK3y"
#define SECRET_PART "S3cr3t" /* catches a key cut short in a reason too */

static void check_no_secret(const char *name, const char *err, const char *todo)
{
    if (todo != NULL)
        tap_todo(todo);
    tap_ok(strstr(err, SECRET_PART) == NULL, "%s: the key is not in the reason", name);
    tap_todo_end();
}

static void check_expect(const char *name, const connection *c, json_t *want)
{
    static const char *const chan[] = {"shell", "iopub", "stdin", "control", "hb"};
    const int port[] = {c->shell_port, c->iopub_port, c->stdin_port, c->control_port, c->hb_port};
    const char *const strs[][2] = {{"transport", c->transport},
                                   {"ip", c->ip},
                                   {"signature_scheme", c->signature_scheme},
                                   {"kernel_name", c->kernel_name}};
    json_t *v;

    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if ((v = json_object_get(want, strs[i][0])) != NULL)
            tap_is_str(strs[i][1], json_string_value(v), "%s: %s", name, strs[i][0]);
    if ((v = json_object_get(want, "key")) != NULL) {
        tap_ok(c->key_len == json_string_length(v) &&
                   memcmp(c->key, json_string_value(v), c->key_len) == 0,
               "%s: key bytes (%zu)", name, c->key_len);
    }
    for (int i = 0; i < 5; i++) {
        char field[32], ep[300];
        snprintf(field, sizeof field, "%s_port", chan[i]);
        if ((v = json_object_get(want, field)) != NULL)
            tap_is_int(port[i], json_integer_value(v), "%s: %s", name, field);
        if ((v = json_object_get(json_object_get(want, "endpoints"), chan[i])) != NULL) {
            int rc = connection_endpoint(c, port[i], ep, sizeof ep);
            tap_ok(rc == 0, "%s: %s endpoint fits", name, chan[i]);
            tap_is_str(rc == 0 ? ep : NULL, json_string_value(v), "%s: %s endpoint", name, chan[i]);
        }
    }
}

static void run_case(const char *name)
{
    char path[512], err[512];
    json_error_t jerr;
    connection c;

    snprintf(path, sizeof path, "%s/%s/error", CASES_DIR, name);
    char *want_err = cases_read_text(path);
    snprintf(path, sizeof path, "%s/%s/todo", CASES_DIR, name);
    char *todo = cases_read_text(path);
    snprintf(path, sizeof path, "%s/%s/expect.json", CASES_DIR, name);
    json_t *want = json_load_file(path, 0, &jerr);
    if (!tap_ok((want_err != NULL) != (want != NULL), "%s: has either error or expect.json", name))
        goto done;

    snprintf(path, sizeof path, "%s/%s/connection.json", CASES_DIR, name);
    strcpy(err, "(no error)");
    memset(&c, 0xAB, sizeof c);
    int rc = connection_load(path, &c, err, sizeof err);
    if (want_err != NULL) {
        tap_is_int(rc, -1, "%s: refused", name);
        tap_like(err, want_err, "%s: reason", name);
        tap_ok(strchr(err, '\n') == NULL, "%s: reason is one line", name);
        check_no_secret(name, err, todo);
    } else if (tap_is_int(rc, 0, "%s: accepted", name)) {
        check_expect(name, &c, want);
    } else {
        tap_diag("error: %s", err);
    }
done:
    free(want_err);
    free(todo);
    json_decref(want);
}

static void test_cases(void)
{
    cases_run(CASES_DIR, "connection", 30, run_case);
}

/* Files that cannot be read at all. */
static void test_unreadable(void)
{
    char err[512], dir[] = "/tmp/pyrometer-unit-XXXXXX", path[600];
    connection c;

    int rc = connection_load("connection_cases/no-such-file.json", &c, err, sizeof err);
    tap_is_int(rc, -1, "missing file: refused");
    tap_is_str(err,
               "cannot open connection file connection_cases/no-such-file.json: "
               "No such file or directory",
               "missing file: reason names the path and errno");

    if (!tap_ok(mkdtemp(dir) != NULL, "mkdtemp"))
        return;
    /* A file larger than the reader's buffer: padded, otherwise valid. */
    snprintf(path, sizeof path, "%s/big.json", dir);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f,
                "{\"ip\": \"127.0.0.1\", \"key\": \"%s\", \"shell_port\": 1, \"iopub_port\": 2, "
                "\"stdin_port\": 3, \"control_port\": 4, \"hb_port\": 5",
                SECRET);
        for (int i = 0; i < 70000; i++)
            fputc(' ', f);
        fputs("}\n", f);
        fclose(f);
    }
    rc = connection_load(path, &c, err, sizeof err);
    tap_is_int(rc, -1, "file over 64 KiB: refused");
    tap_like(err, "is larger than 65536 bytes", "file over 64 KiB: reason");
    unlink(path);

    /* A directory opens with fopen but cannot be read. */
    rc = connection_load(dir, &c, err, sizeof err);
    tap_is_int(rc, -1, "directory: refused");
    tap_like(err, "Is a directory", "directory: reason says why (EISDIR)");

    /* Unreadable for permissions (skipped as root). */
    snprintf(path, sizeof path, "%s/secret.json", dir);
    f = fopen(path, "w");
    if (f != NULL)
        fclose(f);
    chmod(path, 0);
    if (geteuid() != 0) {
        rc = connection_load(path, &c, err, sizeof err);
        tap_ok(rc == -1 && strstr(err, "Permission denied") != NULL,
               "unreadable file: refused with Permission denied");
    } else {
        tap_skip("unreadable file", "running as root");
    }
    unlink(path);
    rmdir(dir);
}

/* connection_endpoint refuses buffers too small, never truncates. */
static void test_endpoint_buffer(void)
{
    char err[256], ep[64];
    static const char text[] = "{\"ip\": \"127.0.0.1\", \"shell_port\": 50001, \"iopub_port\": 2, "
                               "\"stdin_port\": 3, \"control_port\": 4, \"hb_port\": 5}";
    connection c;

    int rc = connection_parse(text, sizeof text - 1, &c, err, sizeof err);
    if (!tap_is_int(rc, 0, "connection_parse from text"))
        tap_diag("%s", err);
    tap_is_int(connection_endpoint(&c, 50001, ep, sizeof "tcp://127.0.0.1:50001"), 0,
               "endpoint: exact-size buffer fits");
    tap_is_str(ep, "tcp://127.0.0.1:50001", "endpoint: text");
    tap_is_int(connection_endpoint(&c, 50001, ep, sizeof "tcp://127.0.0.1:50001" - 1), -1,
               "endpoint: one byte short is refused");
    tap_is_int(c.key_len, 0, "no key: key_len 0 (no signing)");

    /* A reason is cut to errlen and terminated. */
    char small[12];
    memset(small, 'x', sizeof small);
    rc = connection_parse("[]", 2, &c, small, sizeof small);
    tap_ok(rc == -1 && strlen(small) == sizeof small - 1, "reason truncated to errlen");
}

int main(void)
{
    test_cases();
    test_unreadable();
    test_endpoint_buffer();
    return tap_done_testing();
}
