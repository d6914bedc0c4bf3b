/* test_wire.c - the wire format: serialize -> parse round trips, headers,
 * and the bad-input cases kept as data in wire_cases/<case>/.
 *
 * Each case folder holds frames.json:
 *   {"key": "...",          signer key (default "unit-test-key"; "" = no signing)
 *    "frames": [...],       each a string (its UTF-8 bytes), {"hex": "ff00"}
 *                           (raw bytes), or {"sign": true} (the hex HMAC of
 *                           the four frames after it, with "sign_key" or key)
 *    "sign_key": "...",     optional: sign with another key than the signer's
 *    "repeat": N}           optional: parse the same frames N times; the
 *                           first must be accepted, the later ones give
 *                           the expected error
 * and either `error` (the exact one-line reason wire_parse gives for the
 * last parse) or `accept.json` (fields the parsed message must have:
 * msg_type, ids and buffers as lists of frames, header/parent_header/metadata/
 * content compared as JSON).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "tap.h"
#include "wire.h"

#define CASES_DIR       "wire_cases"
#define DEFAULT_KEY     "unit-test-key"
#define MAX_CASE_FRAMES 32

/* ---- round trips through wire_serialize and wire_parse ---- */

static int frame_is(const wire_frame *f, const char *s)
{
    return f->len == strlen(s) && memcmp(f->data, s, f->len) == 0;
}

static void test_round_trip(void)
{
    wire_signer s;
    wire_msg m;
    char err[256] = "";
    size_t n = 0;
    wire_frame ids[2] = {{"id-one", 6}, {"\0\1\2binary", 9}};
    wire_frame frames[12];

    tap_ok(wire_signer_init(&s, (const unsigned char *)"round-trip-key", 14) == 0,
           "round trip: signer init");
    json_t *header = wire_header_new(&s, "execute_request");
    json_t *parent =
        json_pack("{s:s, s:s}", "msg_id", "parent-1", "msg_type", "kernel_info_request");
    json_t *meta = json_pack("{s:b}", "trusted", 1);
    json_t *content =
        json_pack("{s:s, s:b, s:[i,i], s:{}}", "code", "print('h\xc3\xa9 \xe2\x82\xac')", "silent",
                  0, "list", 1, 2, "empty");
    wire_frame *out = wire_serialize(&s, ids, 2, header, parent, meta, content, &n);
    if (!tap_ok(out != NULL, "round trip: serialize")) {
        wire_signer_free(&s);
        return;
    }
    tap_is_int((long long)n, 8, "round trip: 2 ids + delimiter + signature + 4 dicts");
    tap_ok(frame_is(&out[0], "id-one") && out[1].len == 9 &&
               memcmp(out[1].data, "\0\1\2binary", 9) == 0,
           "round trip: identities copied byte for byte");
    tap_ok(frame_is(&out[2], WIRE_DELIM), "round trip: delimiter");
    tap_is_int((long long)out[3].len, 64, "round trip: signature is 64 hex digits");
    tap_ok(memchr(out[7].data, 0xc3, out[7].len) == NULL,
           "round trip: content is serialized as ASCII (\\u escapes)");

    /* Two raw buffers after the dicts, as a client would send them. */
    memcpy(frames, out, n * sizeof *frames);
    frames[n] = (wire_frame){"buffer\0zero", 11};
    frames[n + 1] = (wire_frame){"", 0};
    int rc = wire_parse(&s, frames, n + 2, &m, err, sizeof err);
    if (!tap_ok(rc == 0, "round trip: parse"))
        tap_diag("error: %s", err);
    if (rc == 0) {
        tap_is_str(m.msg_type, "execute_request", "round trip: msg_type");
        tap_is_int((long long)m.n_ids, 2, "round trip: 2 identities");
        tap_ok(m.n_ids == 2 && frame_is(&m.ids[0], "id-one") && m.ids[1].len == 9 &&
                   memcmp(m.ids[1].data, "\0\1\2binary", 9) == 0,
               "round trip: identities");
        tap_ok(json_equal(m.header, header), "round trip: header");
        tap_ok(json_equal(m.parent_header, parent), "round trip: parent_header");
        tap_ok(json_equal(m.metadata, meta), "round trip: metadata");
        tap_ok(json_equal(m.content, content), "round trip: content (non-ASCII text)");
        tap_is_int((long long)m.n_buffers, 2, "round trip: 2 buffers");
        tap_ok(m.n_buffers == 2 && m.buffers[0].len == 11 &&
                   memcmp(m.buffers[0].data, "buffer\0zero", 11) == 0 && m.buffers[1].len == 0,
               "round trip: buffers byte for byte, empty one included");
        tap_ok(m.ids != ids && m.ids[0].data != out[0].data, "round trip: identities are copies");
        wire_msg_clear(&m);
        tap_ok(m.header == NULL && m.ids == NULL && m.n_ids == 0,
               "wire_msg_clear zeroes the message");
    }

    /* The same frames again are a replay. */
    rc = wire_parse(&s, frames, n, &m, err, sizeof err);
    tap_is_int(rc, -1, "round trip: the same frames again are refused");
    tap_is_str(err, "replayed signature", "round trip: replay reason");
    static const wire_msg zero;
    tap_ok(memcmp(&m, &zero, sizeof m) == 0, "refused: the message is left zeroed");

    /* A signer with another key refuses it. */
    {
        wire_signer other;
        wire_signer_init(&other, (const unsigned char *)"another-key", 11);
        rc = wire_parse(&other, out, n, &m, err, sizeof err);
        tap_is_int(rc, -1, "another key: refused");
        tap_is_str(err, "bad signature: HMAC mismatch", "another key: reason");
        wire_signer_free(&other);
    }

    /* The reason is cut to errlen, always terminated. */
    {
        char small[8];
        memset(small, 'x', sizeof small);
        rc = wire_parse(&s, out, n, &m, small, sizeof small);
        tap_is_str(small, "replaye", "reason truncated to errlen and terminated");
    }
    wire_frames_free(out, n);

    /* NULL dicts serialize as {}; no identities. */
    out = wire_serialize(&s, NULL, 0, header, NULL, NULL, NULL, &n);
    if (tap_ok(out != NULL && n == 6, "serialize without ids: 6 frames")) {
        tap_ok(frame_is(&out[3], "{}") && frame_is(&out[4], "{}") && frame_is(&out[5], "{}"),
               "NULL dicts are sent as {}");
        rc = wire_parse(&s, out, n, &m, err, sizeof err);
        tap_ok(rc == 0 && m.n_ids == 0 && m.n_buffers == 0 && json_object_size(m.content) == 0,
               "serialize without ids: parses back with no ids, no buffers");
        if (rc == 0)
            wire_msg_clear(&m);
    }
    wire_frames_free(out, n);

    json_decref(header);
    json_decref(parent);
    json_decref(meta);
    json_decref(content);
    wire_signer_free(&s);

    /* An unsigned signer writes an empty signature and accepts one. */
    {
        wire_signer u;
        wire_signer_init(&u, (const unsigned char *)"", 0);
        json_t *h = wire_header_new(&u, "kernel_info_request");
        out = wire_serialize(&u, NULL, 0, h, NULL, NULL, NULL, &n);
        tap_ok(out != NULL && out[1].len == 0, "empty key: empty signature frame");
        rc = wire_parse(&u, out, n, &m, err, sizeof err);
        tap_is_int(rc, 0, "empty key: accepted");
        if (rc == 0)
            wire_msg_clear(&m);
        rc = wire_parse(&u, out, n, &m, err, sizeof err);
        tap_is_int(rc, 0, "empty key: the same frames again are accepted (nothing to replay)");
        if (rc == 0)
            wire_msg_clear(&m);
        wire_frames_free(out, n);
        json_decref(h);
        wire_signer_free(&u);
    }

    /* The replay guard grows with what it remembers: every digest kept
     * through the table's doublings, and the table no bigger than needed. */
    {
        enum { N = 3000 };
        wire_signer g;
        wire_signer_init(&g, (const unsigned char *)"guard-key", 9);
        tap_ok(g.seen_cap < 1024, "replay guard: starts small");
        wire_frame **msgs = calloc(N, sizeof *msgs);
        size_t *lens = calloc(N, sizeof *lens);
        int accepted = 0, refused = 0;
        for (int i = 0; msgs && lens && i < N; i++) {
            json_t *h = wire_header_new(&g, "kernel_info_request");
            msgs[i] = wire_serialize(&g, NULL, 0, h, NULL, NULL, NULL, &lens[i]);
            json_decref(h);
            if (msgs[i] && wire_parse(&g, msgs[i], lens[i], &m, err, sizeof err) == 0) {
                accepted++;
                wire_msg_clear(&m);
            }
        }
        for (int i = 0; msgs && lens && i < N; i++)
            if (msgs[i] && wire_parse(&g, msgs[i], lens[i], &m, err, sizeof err) == -1 &&
                strcmp(err, "replayed signature") == 0)
                refused++;
        tap_is_int(accepted, N, "replay guard: 3000 distinct messages accepted");
        tap_is_int(refused, N, "replay guard: all 3000 refused when replayed, after growing");
        tap_ok(g.seen_cap >= 2 * N && g.seen_cap <= 8 * N,
               "replay guard: table sized to what it holds (at most half full)");
        for (int i = 0; msgs && lens && i < N; i++)
            wire_frames_free(msgs[i], lens[i]);
        free(msgs);
        free(lens);
        wire_signer_free(&g);
    }
}

/* ---- headers, uuids, dates ---- */

static int is_uuid4(const char *u)
{
    if (strlen(u) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (u[i] != '-')
                return 0;
        } else if (strchr("0123456789abcdef", u[i]) == NULL || u[i] == '\0') {
            return 0;
        }
    }
    return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

/* YYYY-MM-DDTHH:MM:SS.ffffffZ */
static int is_iso_utc(const char *d)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (strlen(d) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? (d[i] < '0' || d[i] > '9') : d[i] != shape[i])
            return 0;
    return 1;
}

static void test_headers(void)
{
    wire_signer a, b;
    char u1[37], u2[37], date[32];

    wire_signer_init(&a, (const unsigned char *)"k", 1);
    wire_signer_init(&b, (const unsigned char *)"k", 1);
    wire_uuid(u1);
    wire_uuid(u2);
    tap_ok(is_uuid4(u1), "wire_uuid: version 4 uuid (%s)", u1);
    tap_ok(strcmp(u1, u2) != 0, "wire_uuid: two calls differ");
    tap_ok(is_uuid4(a.session) && strcmp(a.session, b.session) != 0,
           "session id: a fresh uuid4 per signer");
    wire_now_iso(date);
    tap_ok(is_iso_utc(date), "wire_now_iso: ISO 8601 UTC with Z (%s)", date);

    json_t *h = wire_header_new(&a, "status");
    tap_is_int((long long)json_object_size(h), 6, "header: 6 fields");
    tap_is_str(json_string_value(json_object_get(h, "msg_type")), "status", "header: msg_type");
    tap_is_str(json_string_value(json_object_get(h, "version")), "5.3", "header: version 5.3");
    tap_is_str(json_string_value(json_object_get(h, "session")), a.session, "header: session");
    tap_ok(is_uuid4(json_string_value(json_object_get(h, "msg_id"))), "header: msg_id is a uuid4");
    tap_ok(is_iso_utc(json_string_value(json_object_get(h, "date"))), "header: date");
    tap_ok(json_is_string(json_object_get(h, "username")), "header: username");
    json_t *h2 = wire_header_new(&a, "status");
    tap_ok(!json_equal(json_object_get(h, "msg_id"), json_object_get(h2, "msg_id")),
           "header: msg_id fresh for each message");
    json_decref(h);
    json_decref(h2);
    wire_signer_free(&a);
    wire_signer_free(&b);
}

/* ---- data-driven cases ---- */

/* Frees the data of frames kept in a caller's array (wire_frames_free would
 * free the array too). */
static void free_frames(wire_frame *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(frames[i].data);
}

static int unhex_frame(const char *hex, wire_frame *f)
{
    size_t n = strlen(hex);
    unsigned char *out = malloc(n / 2 + 1);
    if (out == NULL || n % 2 != 0) {
        free(out);
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return -1;
        }
        out[i] = (unsigned char)v;
    }
    f->data = out;
    f->len = n / 2;
    return 0;
}

/* Builds the case's frames (each owning its data). Returns the count, or -1
 * with a reason in why. The signature is computed over the four frames
 * after {"sign": true} (missing ones count as empty). */
static int build_frames(json_t *spec, wire_frame *frames, char *why, size_t whylen)
{
    json_t *list = json_object_get(spec, "frames");
    const char *key = json_string_value(json_object_get(spec, "key"));
    const char *sign_key = json_string_value(json_object_get(spec, "sign_key"));
    size_t n = json_array_size(list);
    int sign_at = -1;

    if (!json_is_array(list) || n > MAX_CASE_FRAMES) {
        snprintf(why, whylen, "\"frames\" must be an array of at most %d", MAX_CASE_FRAMES);
        return -1;
    }
    if (sign_key == NULL)
        sign_key = key ? key : DEFAULT_KEY;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(list, i);
        frames[i].data = NULL;
        frames[i].len = 0;
        if (json_is_string(v)) {
            frames[i].len = json_string_length(v);
            frames[i].data = malloc(frames[i].len + 1);
            memcpy(frames[i].data, json_string_value(v), frames[i].len);
        } else if (json_is_string(json_object_get(v, "hex"))) {
            if (unhex_frame(json_string_value(json_object_get(v, "hex")), &frames[i]) < 0) {
                snprintf(why, whylen, "frame %zu: bad hex", i);
                free_frames(frames, i);
                return -1;
            }
        } else if (json_is_true(json_object_get(v, "sign")) && sign_at < 0) {
            sign_at = (int)i;
            frames[i].data = malloc(65);
        } else {
            snprintf(why, whylen, "frame %zu: not a string, {\"hex\"} or {\"sign\": true}", i);
            free_frames(frames, i);
            return -1;
        }
    }
    if (sign_at >= 0) {
        wire_signer s;
        const char *parts[4];
        size_t lens[4];
        for (size_t i = 0; i < 4; i++) {
            size_t j = (size_t)sign_at + 1 + i;
            parts[i] = j < n ? frames[j].data : "";
            lens[i] = j < n ? frames[j].len : 0;
        }
        wire_signer_init(&s, (const unsigned char *)sign_key, strlen(sign_key));
        wire_sign(&s, parts, lens, 4, frames[sign_at].data);
        frames[sign_at].len = strlen(frames[sign_at].data);
        wire_signer_free(&s);
    }
    return (int)n;
}

/* Compares expected frames (each a string or {"hex": ...}) with parsed ones. */
static int frames_match(json_t *want, const wire_frame *got, size_t n)
{
    if (json_array_size(want) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        json_t *w = json_array_get(want, i);
        wire_frame f = {NULL, 0};
        if (json_is_string(w)) {
            f.data = (void *)json_string_value(w);
            f.len = json_string_length(w);
        } else if (!json_is_string(json_object_get(w, "hex")) ||
                   unhex_frame(json_string_value(json_object_get(w, "hex")), &f) < 0) {
            return 0;
        }
        int same = got[i].len == f.len && memcmp(got[i].data, f.data, f.len) == 0;
        if (!json_is_string(w))
            free(f.data);
        if (!same)
            return 0;
    }
    return 1;
}

static void check_accepted(const char *name, json_t *want, const wire_msg *m)
{
    static const char *const dicts[] = {"header", "parent_header", "metadata", "content"};
    json_t *const got[] = {m->header, m->parent_header, m->metadata, m->content};
    json_t *v;

    if ((v = json_object_get(want, "msg_type")) != NULL)
        tap_is_str(m->msg_type, json_string_value(v), "%s: msg_type", name);
    if ((v = json_object_get(want, "ids")) != NULL)
        tap_ok(frames_match(v, m->ids, m->n_ids), "%s: identities (%zu)", name, m->n_ids);
    if ((v = json_object_get(want, "buffers")) != NULL)
        tap_ok(frames_match(v, m->buffers, m->n_buffers), "%s: buffers (%zu)", name, m->n_buffers);
    for (int i = 0; i < 4; i++) {
        if ((v = json_object_get(want, dicts[i])) == NULL)
            continue;
        if (!tap_ok(json_equal(v, got[i]), "%s: %s", name, dicts[i])) {
            char *txt = json_dumps(got[i], JSON_COMPACT);
            tap_diag("got %s", txt ? txt : "(null)");
            free(txt);
        }
    }
}

static void run_case(const char *name)
{
    char path[512], why[256], err[256];
    json_error_t jerr;
    wire_frame frames[MAX_CASE_FRAMES];
    wire_signer s;
    wire_msg m;

    snprintf(path, sizeof path, "%s/%s/frames.json", CASES_DIR, name);
    json_t *spec = json_load_file(path, 0, &jerr);
    if (!tap_ok(spec != NULL, "%s: frames.json loads", name)) {
        tap_diag("%s:%d: %s", path, jerr.line, jerr.text);
        return;
    }
    snprintf(path, sizeof path, "%s/%s/error", CASES_DIR, name);
    char *want_err = cases_read_text(path);
    snprintf(path, sizeof path, "%s/%s/accept.json", CASES_DIR, name);
    json_t *want_ok = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!tap_ok((want_err != NULL) != (want_ok != NULL), "%s: has either error or accept.json",
                name))
        goto done;

    int n = build_frames(spec, frames, why, sizeof why);
    if (!tap_ok(n >= 0, "%s: frames build", name)) {
        tap_diag("%s", why);
        goto done;
    }
    const char *key = json_string_value(json_object_get(spec, "key"));
    if (key == NULL)
        key = DEFAULT_KEY;
    wire_signer_init(&s, (const unsigned char *)key, strlen(key));
    /* With "repeat", the first parse is accepted; the later ones are
     * refused like the last (or all accepted, for an accept case). */
    json_int_t repeat = json_integer_value(json_object_get(spec, "repeat"));
    for (json_int_t r = 1; r < repeat; r++) {
        int rc = wire_parse(&s, frames, (size_t)n, &m, err, sizeof err);
        if (r == 1 || want_ok != NULL) {
            if (!tap_ok(rc == 0, "%s: parse %d of %d accepted", name, (int)r, (int)repeat))
                tap_diag("error: %s", err);
        } else {
            tap_ok(rc < 0 && strcmp(err, want_err) == 0, "%s: parse %d of %d refused", name, (int)r,
                   (int)repeat);
        }
        if (rc == 0)
            wire_msg_clear(&m);
    }
    strcpy(err, "(no error)");
    int rc = wire_parse(&s, frames, (size_t)n, &m, err, sizeof err);
    if (want_err != NULL) {
        static const wire_msg zero;
        tap_is_int(rc, -1, "%s: refused", name);
        tap_is_str(err, want_err, "%s: reason", name);
        tap_ok(strchr(err, '\n') == NULL, "%s: reason is one line", name);
        tap_ok(memcmp(&m, &zero, sizeof m) == 0, "%s: message left zeroed", name);
        if (rc == 0)
            wire_msg_clear(&m);
    } else if (tap_is_int(rc, 0, "%s: accepted", name)) {
        check_accepted(name, want_ok, &m);
        wire_msg_clear(&m);
    } else {
        tap_diag("error: %s", err);
    }
    wire_signer_free(&s);
    free_frames(frames, (size_t)n);
done:
    free(want_err);
    json_decref(want_ok);
    json_decref(spec);
}

static void test_cases(void)
{
    cases_run(CASES_DIR, "wire", 20, run_case);
}

int main(void)
{
    test_round_trip();
    test_headers();
    test_cases();
    return tap_done_testing();
}
