/* C-level tests of csrc/core/sha256.c (the loader's data checksum, issue 15 part 3): the FIPS
 * 180-4 test vectors, the SHA-NI block function equal to the scalar reference on random
 * blocks (when the CPU has SHA-NI; reported otherwise), and streaming updates of every split
 * of a message equal to one update.
 *
 * sources: common.c sha256.c
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sha256.h"

#include "check.h"

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void digest_of(const void *data, size_t len, char out[65]) {
    ns_sha256 h;
    uint8_t d[32];
    ns_sha256_init(&h);
    ns_sha256_update(&h, data, len);
    ns_sha256_final(&h, d);
    hex(d, out);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint8_t next_byte(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint8_t)rng;
}

static void test_vectors(void) {
    static const char *const abc_digest =
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char *const empty_digest =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    static const char *const two_blocks =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char *const two_blocks_digest =
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    static const char *const million_a_digest =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char got[65];
    digest_of("abc", 3, got);
    EXPECT(strcmp(got, abc_digest) == 0, "sha256('abc') = %s", got);
    digest_of("", 0, got);
    EXPECT(strcmp(got, empty_digest) == 0, "sha256('') = %s", got);
    digest_of(two_blocks, strlen(two_blocks), got);
    EXPECT(strcmp(got, two_blocks_digest) == 0, "sha256(448-bit message) = %s", got);
    static uint8_t million[1000000];
    memset(million, 'a', sizeof million);
    digest_of(million, sizeof million, got);
    EXPECT(strcmp(got, million_a_digest) == 0, "sha256(10^6 x 'a') = %s", got);
}

static void test_shani_equals_reference(void) {
    enum { BLOCKS = 37 };
    static uint8_t data[64 * BLOCKS];
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof data; i++) data[i] = next_byte();
        uint32_t ref[8], fast[8];
        for (int i = 0; i < 8; i++) ref[i] = fast[i] = (uint32_t)next_byte() * 0x01010101u;
        size_t blocks = 1 + (size_t)round % BLOCKS;
        ns_sha256_blocks_ref(ref, data, blocks);
        if (!ns_sha256_blocks_shani(fast, data, blocks)) {
            EXPECT(!ns_sha256_accelerated(), "SHA-NI reported but its block function refused");
            printf("SKIP SHA-NI equals the reference: this CPU has no SHA-NI\n");
            return;
        }
        EXPECT(memcmp(ref, fast, sizeof ref) == 0, "SHA-NI != reference, %zu blocks", blocks);
    }
}

static void test_streaming_splits(void) {
    static uint8_t msg[300];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = next_byte();
    for (size_t len = 0; len <= sizeof msg; len += 13) {
        char whole[65];
        digest_of(msg, len, whole);
        for (size_t cut = 0; cut <= len; cut += 7) {
            ns_sha256 h;
            uint8_t d[32];
            char got[65];
            ns_sha256_init(&h);
            ns_sha256_update(&h, msg, cut);
            ns_sha256_update(&h, msg + cut, 0);
            ns_sha256_update(&h, msg + cut, len - cut);
            ns_sha256_final(&h, d);
            hex(d, got);
            EXPECT(strcmp(got, whole) == 0, "split %zu | %zu differs", cut, len - cut);
        }
    }
}

int main(void) {
    test_vectors();
    test_shani_equals_reference();
    test_streaming_splits();
    printf("block function: %s\n", ns_sha256_accelerated() ? "SHA-NI" : "scalar");
    if (!failures) printf("test_sha256: ok\n");
    return failures ? 1 : 0;
}
