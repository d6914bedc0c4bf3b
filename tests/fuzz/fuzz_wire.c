/* fuzz_wire.c - libFuzzer target: frames -> wire_parse, keyed and unkeyed.
 *
 * Input: one mode byte, then frames separated by FUZZ_SEP. Mode bit 0: the
 * signer has a key; bit 1: a signature frame that reads "SIGN" is replaced
 * by the true HMAC of the four frames after it, so mutated JSON gets past
 * the signature check; bit 2: the same frames are parsed twice (the replay
 * guard must refuse the second when keyed). A parsed message is serialised
 * again and must parse back under a fresh signer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define FUZZ_SEP        "\n--\n"
#define FUZZ_MAX_FRAMES 64

static const unsigned char key[] = "fuzz-key";

static size_t split(const uint8_t *data, size_t size, wire_frame *f)
{
    size_t n = 0, start = 0, sep = strlen(FUZZ_SEP);
    for (size_t i = 0; i + sep <= size && n < FUZZ_MAX_FRAMES - 1; i++) {
        if (memcmp(data + i, FUZZ_SEP, sep) == 0) {
            f[n++] = (wire_frame){(void *)(data + start), i - start};
            start = i + sep;
            i += sep - 1;
        }
    }
    f[n++] = (wire_frame){(void *)(data + start), size - start};
    return n;
}

/* Replaces a "SIGN" frame right after the delimiter by the HMAC of the
 * (up to) four frames after it. */
static void sign_in_place(wire_signer *s, wire_frame *f, size_t n, char sig[65])
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (f[i].len != 9 || memcmp(f[i].data, WIRE_DELIM, 9) != 0)
            continue;
        if (f[i + 1].len == 4 && memcmp(f[i + 1].data, "SIGN", 4) == 0) {
            const char *parts[4];
            size_t lens[4];
            for (size_t k = 0; k < 4; k++) {
                int have = i + 2 + k < n;
                parts[k] = have ? (const char *)f[i + 2 + k].data : "";
                lens[k] = have ? f[i + 2 + k].len : 0;
            }
            wire_sign(s, parts, lens, 4, sig);
            f[i + 1] = (wire_frame){sig, 64};
        }
        return;
    }
}

static void round_trip(const wire_msg *m)
{
    wire_signer s2;
    size_t n = 0;
    if (wire_signer_init(&s2, key, sizeof key - 1) != 0)
        return;
    wire_frame *out = wire_serialize(&s2, m->ids, m->n_ids, m->header, m->parent_header,
                                     m->metadata, m->content, &n);
    if (out != NULL) {
        wire_msg back;
        char err[256];
        if (wire_parse(&s2, out, n, &back, err, sizeof err) != 0)
            abort(); /* what we wrote must read back */
        if (strcmp(back.msg_type, m->msg_type) != 0)
            abort();
        wire_msg_clear(&back);
        wire_frames_free(out, n);
    }
    wire_signer_free(&s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    wire_frame f[FUZZ_MAX_FRAMES];
    char sig[65];
    size_t n = split(data + 1, size - 1, f);
    wire_signer s;
    if (wire_signer_init(&s, key, (mode & 1) ? sizeof key - 1 : 0) != 0)
        return 0;
    if (mode & 2)
        sign_in_place(&s, f, n, sig);
    for (int round = 0; round < ((mode & 4) ? 2 : 1); round++) {
        wire_msg m;
        char err[256];
        err[0] = '\0';
        if (wire_parse(&s, f, n, &m, err, sizeof err) == 0) {
            if (round == 1 && (mode & 1))
                abort(); /* a keyed replay must be refused */
            round_trip(&m);
            wire_msg_clear(&m);
        } else if (err[0] == '\0' || memchr(err, '\n', strlen(err)) != NULL) {
            abort(); /* every refusal has a one-line reason */
        }
    }
    wire_signer_free(&s);
    return 0;
}
