/* echo_kernel.c - the floor of bench_kernel.py's round trip: the least a
 * kernel in C can do for a request on the same libraries as pyrometer
 * (libzmq, Jansson, libsodium). It verifies the request's signature, parses
 * it, and answers every shell request with status busy, execute_input (for
 * an execute_request), the reply and status idle, all signed, running no
 * code at all. Only shell and IOPub are bound; no heartbeat, no control.
 *
 * usage: echo_kernel -f CONNECTION_FILE     (a benchmark tool, not installed) */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define DELIM     "<IDS|MSG>"
#define MAX_PARTS 32

static crypto_auth_hmacsha256_state keyed; /* HMAC-SHA256 with the key, copied per message */
static int has_key;
static char session[40];

/* Hex HMAC-SHA256 of the four parts into hex[65] ("" without a key). */
static void sign(const char *const part[4], const size_t len[4], char hex[65])
{
    unsigned char mac[32];
    hex[0] = '\0';
    if (!has_key)
        return;
    crypto_auth_hmacsha256_state c = keyed;
    int ok = 1;
    for (int i = 0; ok && i < 4; i++)
        ok = crypto_auth_hmacsha256_update(&c, (const unsigned char *)part[i], len[i]) == 0;
    ok = ok && crypto_auth_hmacsha256_final(&c, mac) == 0;
    if (ok)
        sodium_bin2hex(hex, 65, mac, sizeof mac);
}

/* Sends ids, then a signed message of msg_type with parent and content. */
static void send_msg(void *sock, zmq_msg_t *ids, int n_ids, const char *msg_type,
                     const char *parent, size_t parent_len, json_t *content)
{
    static unsigned long counter;
    char id[64], date[40], hex[65];
    struct timespec ts;
    struct tm tm;
    snprintf(id, sizeof id, "%s_%lu", session, ++counter);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t d = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(date + d, sizeof date - d, ".%06ldZ", ts.tv_nsec / 1000);
    json_t *header =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", session, "username",
                  "echo", "date", date, "msg_type", msg_type, "version", "5.3");
    char *h = json_dumps(header, JSON_COMPACT), *c = json_dumps(content, JSON_COMPACT);
    json_decref(header);
    if (h == NULL || c == NULL) {
        fprintf(stderr, "echo_kernel: out of memory\n");
        exit(1);
    }
    const char *part[4] = {h, parent, "{}", c};
    size_t len[4] = {strlen(h), parent_len, 2, strlen(c)};
    sign(part, len, hex);
    for (int i = 0; i < n_ids; i++)
        zmq_send(sock, zmq_msg_data(&ids[i]), zmq_msg_size(&ids[i]), ZMQ_SNDMORE);
    zmq_send(sock, DELIM, strlen(DELIM), ZMQ_SNDMORE);
    zmq_send(sock, hex, strlen(hex), ZMQ_SNDMORE);
    for (int i = 0; i < 4; i++)
        zmq_send(sock, part[i], len[i], i < 3 ? ZMQ_SNDMORE : 0);
    free(h);
    free(c);
}

static void *bind_socket(void *ctx, int type, json_t *info, const char *port_name)
{
    char ep[300];
    void *s = zmq_socket(ctx, type);
    snprintf(ep, sizeof ep, "%s://%s:%lld", json_string_value(json_object_get(info, "transport")),
             json_string_value(json_object_get(info, "ip")),
             (long long)json_integer_value(json_object_get(info, port_name)));
    if (s == NULL || zmq_bind(s, ep) != 0) {
        fprintf(stderr, "echo_kernel: cannot bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        exit(1);
    }
    return s;
}

/* Answers one request whose frames are f[0..n). */
static void answer(void *shell, void *iopub, zmq_msg_t *f, int n, long *count)
{
    int d = 0;
    while (d < n && !(zmq_msg_size(&f[d]) == strlen(DELIM) &&
                      memcmp(zmq_msg_data(&f[d]), DELIM, strlen(DELIM)) == 0))
        d++;
    if (n - d < 6) {
        fprintf(stderr, "echo_kernel: short message dropped\n");
        return;
    }
    const char *part[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        part[i] = zmq_msg_data(&f[d + 2 + i]);
        len[i] = zmq_msg_size(&f[d + 2 + i]);
    }
    char hex[65];
    sign(part, len, hex);
    if (zmq_msg_size(&f[d + 1]) != strlen(hex) ||
        sodium_memcmp(hex, zmq_msg_data(&f[d + 1]), strlen(hex)) != 0) {
        fprintf(stderr, "echo_kernel: bad signature, dropped\n");
        return;
    }
    json_t *header = json_loadb(part[0], len[0], 0, NULL);
    json_t *content = json_loadb(part[3], len[3], 0, NULL);
    const char *type = json_string_value(json_object_get(header, "msg_type"));
    if (type != NULL && json_is_object(content)) {
        char reply_type[80];
        json_t *busy = json_pack("{s:s}", "execution_state", "busy");
        json_t *idle = json_pack("{s:s}", "execution_state", "idle");
        json_t *reply;
        snprintf(reply_type, sizeof reply_type, "%.*s_reply",
                 (int)(strlen(type) > 8 ? strlen(type) - 8 : 0), type); /* minus _request */
        send_msg(iopub, NULL, 0, "status", part[0], len[0], busy);
        if (strcmp(type, "execute_request") == 0) {
            ++*count;
            json_t *input = json_pack("{s:O, s:I}", "code", json_object_get(content, "code"),
                                      "execution_count", (json_int_t)*count);
            send_msg(iopub, NULL, 0, "execute_input", part[0], len[0], input);
            json_decref(input);
            reply = json_pack("{s:s, s:I, s:{}, s:[]}", "status", "ok", "execution_count",
                              (json_int_t)*count, "user_expressions", "payload");
        } else {
            reply = json_pack("{s:s, s:s, s:s, s:s}", "status", "ok", "protocol_version", "5.3",
                              "implementation", "echo", "implementation_version", "0");
        }
        send_msg(shell, f, d, reply_type, part[0], len[0], reply);
        send_msg(iopub, NULL, 0, "status", part[0], len[0], idle);
        json_decref(reply);
        json_decref(busy);
        json_decref(idle);
    }
    json_decref(header);
    json_decref(content);
}

int main(int argc, char **argv)
{
    json_error_t err;
    json_t *info =
        argc == 3 && strcmp(argv[1], "-f") == 0 ? json_load_file(argv[2], 0, &err) : NULL;
    if (info == NULL) {
        fprintf(stderr, "usage: echo_kernel -f CONNECTION_FILE\n");
        return 2;
    }
    const char *key = json_string_value(json_object_get(info, "key"));
    if (key != NULL && *key != '\0') {
        if (sodium_init() < 0 ||
            crypto_auth_hmacsha256_init(&keyed, (const unsigned char *)key, strlen(key)) != 0) {
            fprintf(stderr, "echo_kernel: HMAC-SHA256 is unavailable\n");
            return 1;
        }
        has_key = 1;
    }
    snprintf(session, sizeof session, "echo%ld", (long)time(NULL));
    void *ctx = zmq_ctx_new();
    void *shell = bind_socket(ctx, ZMQ_ROUTER, info, "shell_port");
    void *iopub = bind_socket(ctx, ZMQ_PUB, info, "iopub_port");
    long count = 0;
    for (;;) {
        zmq_msg_t f[MAX_PARTS];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, shell, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            if (n < MAX_PARTS)
                f[n++] = part;
            else
                zmq_msg_close(&part);
        }
        answer(shell, iopub, f, n, &count);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
}
