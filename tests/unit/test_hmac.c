/* test_hmac.c - wire_sign against the HMAC-SHA256 vectors of RFC 4231
 * (test cases 1-7; case 5 is truncated to 128 bits), signing over split
 * parts, and the empty key that turns signing off. */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "wire.h"

typedef struct {
    int number;
    unsigned char key[131];
    size_t key_len;
    const char *data; /* NULL: data_byte repeated data_len times */
    unsigned char data_byte;
    size_t data_len;
    const char *digest; /* hex; case 5 gives only the first 128 bits */
} rfc4231_case;

static rfc4231_case cases[7];

/* The keys are runs of one byte (or 0x01..0x19), so they are filled in
 * rather than spelled out. */
static void fill_cases(void)
{
    static const char *const text7 =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";
    rfc4231_case *c = cases;

    c[0] = (rfc4231_case){1,
                          {0},
                          20,
                          "Hi There",
                          0,
                          0,
                          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"};
    memset(c[0].key, 0x0b, 20);
    c[1] = (rfc4231_case){2,
                          "Jefe",
                          4,
                          "what do ya want for nothing?",
                          0,
                          0,
                          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"};
    c[2] = (rfc4231_case){3,
                          {0},
                          20,
                          NULL,
                          0xdd,
                          50,
                          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"};
    memset(c[2].key, 0xaa, 20);
    c[3] = (rfc4231_case){4,
                          {0},
                          25,
                          NULL,
                          0xcd,
                          50,
                          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"};
    for (int i = 0; i < 25; i++)
        c[3].key[i] = (unsigned char)(i + 1);
    c[4] = (rfc4231_case){
        5, {0}, 20, "Test With Truncation", 0, 0, "a3b6167473100ee06e0c796c2955552b"};
    memset(c[4].key, 0x0c, 20);
    c[5] = (rfc4231_case){6,
                          {0},
                          131,
                          "Test Using Larger Than Block-Size Key - Hash Key First",
                          0,
                          0,
                          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"};
    memset(c[5].key, 0xaa, 131);
    c[6] = (rfc4231_case){7,
                          {0},
                          131,
                          text7,
                          0,
                          0,
                          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"};
    memset(c[6].key, 0xaa, 131);
}

/* Signs the case's data with its key, the data given as one part, or cut
 * into `pieces` consecutive parts; writes the hex digest to out. */
static int sign_case(const rfc4231_case *c, size_t pieces, char out[65])
{
    wire_signer s;
    char buf[256];
    const char *data = c->data;
    size_t len = c->data ? strlen(c->data) : c->data_len;
    const char *parts[8];
    size_t lens[8];

    if (data == NULL) {
        memset(buf, c->data_byte, c->data_len);
        data = buf;
    }
    if (wire_signer_init(&s, c->key, c->key_len) < 0)
        return -1;
    for (size_t i = 0, at = 0; i < pieces; i++) {
        size_t end = (i + 1 == pieces) ? len : len * (i + 1) / pieces;
        parts[i] = data + at;
        lens[i] = end - at;
        at = end;
    }
    wire_sign(&s, parts, lens, pieces, out);
    wire_signer_free(&s);
    return 0;
}

int main(void)
{
    char got[65];
    wire_signer s;

    fill_cases();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const rfc4231_case *c = &cases[i];
        size_t want = strlen(c->digest);
        if (!tap_ok(sign_case(c, 1, got) == 0, "RFC 4231 case %d: signer init", c->number))
            continue;
        tap_is_int((long long)strlen(got), 64, "RFC 4231 case %d: 64 hex digits", c->number);
        got[want] = '\0'; /* case 5 compares the 128-bit prefix */
        tap_is_str(got, c->digest, "RFC 4231 case %d: HMAC-SHA256", c->number);
        /* The four JSON dicts are signed as consecutive parts: splitting
         * must not change the digest. */
        sign_case(c, 4, got);
        got[want] = '\0';
        tap_is_str(got, c->digest, "RFC 4231 case %d: same digest over 4 parts", c->number);
    }

    /* Parts of length zero contribute nothing. */
    {
        const char *parts[] = {"", "Hi There", "", ""};
        size_t lens[] = {0, 8, 0, 0};
        tap_ok(wire_signer_init(&s, cases[0].key, cases[0].key_len) == 0,
               "signer init, case 1 key");
        wire_sign(&s, parts, lens, 4, got);
        tap_is_str(got, cases[0].digest, "empty parts around the data do not change the digest");
        wire_signer_free(&s);
    }

    /* An empty key means no signing: the signature is "". */
    {
        const char *parts[] = {"{}", "{}", "{}", "{}"};
        size_t lens[] = {2, 2, 2, 2};
        memset(got, 'x', sizeof got);
        tap_ok(wire_signer_init(&s, (const unsigned char *)"", 0) == 0, "signer init, empty key");
        wire_sign(&s, parts, lens, 4, got);
        tap_is_str(got, "", "empty key signs as \"\"");
        wire_signer_free(&s);
    }

    /* The key is raw bytes: a NUL inside it counts. */
    {
        const char *parts[] = {"data"};
        size_t lens[] = {4};
        char with_nul[65], without[65];
        tap_ok(wire_signer_init(&s, (const unsigned char *)"ab\0cd", 5) == 0, "key with a NUL");
        wire_sign(&s, parts, lens, 1, with_nul);
        wire_signer_free(&s);
        tap_ok(wire_signer_init(&s, (const unsigned char *)"ab", 2) == 0, "key \"ab\"");
        wire_sign(&s, parts, lens, 1, without);
        wire_signer_free(&s);
        tap_ok(strcmp(with_nul, without) != 0, "bytes after a NUL in the key are used");
        /* Python: hmac.new(b"ab\0cd", b"data", "sha256").hexdigest() */
        tap_is_str(with_nul, "7cb03ff8579d6fbef233685fe8c36d991bc6d1f4f7e5cae371dc3f6816a6ebad",
                   "key with a NUL: digest");
    }

    /* Keys beyond the signer's buffer are refused, not truncated. */
    {
        static unsigned char big[1025];
        memset(big, 'k', sizeof big);
        tap_ok(wire_signer_init(&s, big, 1024) == 0, "a 1024-byte key is accepted");
        wire_signer_free(&s);
        tap_ok(wire_signer_init(&s, big, 1025) < 0, "a 1025-byte key is refused");
    }
    return tap_done_testing();
}
