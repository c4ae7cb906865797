/* C-level tests of csrc/core/sha256.c (the loader's data checksum, issue 15 part 3): the FIPS
 * 180-4 test vectors; each hardware block function (x86 SHA-NI, Armv8 SHA2) equal to the scalar
 * reference on random states and blocks at every alignment (where the CPU has it; reported
 * otherwise, and then it must leave the state alone); digests of every length 0..320 equal to
 * the reference block function's and to hashlib's; and streaming updates of every split of a
 * message, and of random chunks at odd addresses, equal to one update.
 *
 * NEONSIGN_EXPECT_SHA256=shani|armv8|scalar names the block function this CPU must run
 * (tools/arm/test.sh sets armv8 under qemu's "max" CPU, which has SHA2).
 *
 * sources: common.c sha256.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
    static const char *const four_blocks = /* 896 bits: the padding takes a block of its own */
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlm"
        "no"
        "pqrsmnopqrstnopqrstu";
    static const char *const four_blocks_digest =
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1";
    static const char *const million_a_digest =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char got[65];
    digest_of("abc", 3, got);
    EXPECT(strcmp(got, abc_digest) == 0, "sha256('abc') = %s", got);
    digest_of("", 0, got);
    EXPECT(strcmp(got, empty_digest) == 0, "sha256('') = %s", got);
    digest_of(two_blocks, strlen(two_blocks), got);
    EXPECT(strcmp(got, two_blocks_digest) == 0, "sha256(448-bit message) = %s", got);
    digest_of(four_blocks, strlen(four_blocks), got);
    EXPECT(strcmp(got, four_blocks_digest) == 0, "sha256(896-bit message) = %s", got);
    static uint8_t million[1000000];
    memset(million, 'a', sizeof million);
    digest_of(million, sizeof million, got);
    EXPECT(strcmp(got, million_a_digest) == 0, "sha256(10^6 x 'a') = %s", got);
}

/* The hardware block functions; at most one runs on a given CPU (the others return 0). */
typedef int (*blocks_fn)(uint32_t state[8], const uint8_t *data, size_t blocks);
static const struct {
    const char *name;
    blocks_fn fn;
} HARDWARE[] = {{"shani", ns_sha256_blocks_shani}, {"armv8", ns_sha256_blocks_armv8}};
enum { N_HARDWARE = sizeof HARDWARE / sizeof HARDWARE[0] };

/* The block function ns_sha256_update runs here: the hardware one that takes zero blocks. */
static const char *selected(void) {
    const char *name = "scalar";
    int taken = 0;
    for (int k = 0; k < N_HARDWARE; k++) {
        uint32_t state[8] = {0};
        if (HARDWARE[k].fn(state, NULL, 0)) name = HARDWARE[k].name, taken++;
    }
    EXPECT(taken <= 1, "%d hardware block functions run on this CPU", taken);
    EXPECT(ns_sha256_accelerated() == (taken == 1), "ns_sha256_accelerated() = %d, %d run",
           ns_sha256_accelerated(), taken);
    return name;
}

/* Random states and 0..37 random blocks at each offset 0..15 from an aligned buffer: the
 * hardware function equals the scalar reference, or refuses and leaves the state as it was. */
static void test_hardware_equals_reference(void) {
    enum { BLOCKS = 37 };
    static uint8_t buf[64 * BLOCKS + 16] __attribute__((aligned(64)));
    for (int k = 0; k < N_HARDWARE; k++) {
        int ran = 0;
        for (int round = 0; round < 2 * (BLOCKS + 1); round++) {
            for (size_t i = 0; i < sizeof buf; i++) buf[i] = next_byte();
            uint32_t ref[8], fast[8], before[8];
            for (int i = 0; i < 8; i++) {
                ref[i] = 0;
                for (int b = 0; b < 4; b++) ref[i] = ref[i] << 8 | next_byte();
                fast[i] = before[i] = ref[i];
            }
            const size_t blocks = (size_t)round % (BLOCKS + 1), offset = (size_t)round % 16;
            ns_sha256_blocks_ref(ref, buf + offset, blocks);
            if (!HARDWARE[k].fn(fast, buf + offset, blocks)) {
                EXPECT(!ran, "%s ran, then refused", HARDWARE[k].name);
                EXPECT(memcmp(fast, before, sizeof fast) == 0, "%s refused but wrote the state",
                       HARDWARE[k].name);
                continue;
            }
            ran = 1;
            EXPECT(memcmp(ref, fast, sizeof ref) == 0, "%s != reference: %zu blocks at +%zu",
                   HARDWARE[k].name, blocks, offset);
        }
        if (!ran) printf("SKIP %s equals the reference: not on this CPU\n", HARDWARE[k].name);
    }
}

/* sha256 of data[0..len) with the scalar reference block function and its own padding. */
static void ref_digest(const uint8_t *data, size_t len, uint8_t out[32]) {
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const size_t padded = (len + 8) / 64 * 64 + 64;
    uint8_t *msg = calloc(padded, 1);
    CHECK(msg);
    if (len) memcpy(msg, data, len);
    msg[len] = 0x80;
    for (int i = 0; i < 8; i++) msg[padded - 1 - (size_t)i] = (uint8_t)((uint64_t)len * 8 >> 8 * i);
    ns_sha256_blocks_ref(state, msg, padded / 64);
    free(msg);
    for (int i = 0; i < 32; i++) out[i] = (uint8_t)(state[i / 4] >> (24 - 8 * (i % 4)));
}

/* Every length 0..320 (each padding case) from offsets 0..3: the digest equals the one the
 * reference block function gives with its own padding; and at offset 0, sha256 of the 321
 * digests is hashlib's: hashlib.sha256(b"".join(hashlib.sha256(msg[:n]).digest() for n in
 * range(321))).hexdigest(), msg the 321 bytes of the xorshift64 stream below. */
static void test_every_length(void) {
    static const char *const all_lengths_digest =
        "01f2ff4968ecf4f98669298c0010ef22aa91a6980f282610e2311f38a0bc35fe";
    enum { LONGEST = 320 };
    uint8_t msg[LONGEST + 1], buf[LONGEST + 4];
    uint64_t x = 0x9E3779B97F4A7C15ull; /* next_byte's generator, from its start */
    for (size_t i = 0; i <= LONGEST; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        msg[i] = (uint8_t)x;
    }
    for (size_t offset = 0; offset < 4; offset++) {
        memcpy(buf + offset, msg, sizeof msg);
        ns_sha256 all;
        ns_sha256_init(&all);
        for (size_t len = 0; len <= LONGEST; len++) {
            ns_sha256 h;
            uint8_t got[32], want[32];
            ns_sha256_init(&h);
            ns_sha256_update(&h, buf + offset, len);
            ns_sha256_final(&h, got);
            ref_digest(buf + offset, len, want);
            EXPECT(memcmp(got, want, 32) == 0, "length %zu at +%zu != reference", len, offset);
            ns_sha256_update(&all, got, 32);
        }
        uint8_t d[32];
        char hexd[65];
        ns_sha256_final(&all, d);
        hex(d, hexd);
        EXPECT(strcmp(hexd, all_lengths_digest) == 0, "digests of lengths 0..320 at +%zu: %s",
               offset, hexd);
    }
}

/* A 5000-byte message fed in random chunks (0..199 bytes, so partial blocks, several blocks at
 * once and updates straddling blocks) from an odd address: the digest of one update. */
static void test_random_chunks(void) {
    static uint8_t buf[5001];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = next_byte();
    const uint8_t *msg = buf + 1;
    const size_t len = sizeof buf - 1;
    uint8_t want[32];
    ref_digest(msg, len, want);
    for (int round = 0; round < 20; round++) {
        ns_sha256 h;
        uint8_t got[32];
        ns_sha256_init(&h);
        for (size_t at = 0; at < len;) {
            size_t take = next_byte() % 200;
            if (take > len - at) take = len - at;
            ns_sha256_update(&h, msg + at, take);
            at += take;
        }
        ns_sha256_final(&h, got);
        EXPECT(memcmp(got, want, 32) == 0, "random chunks, round %d", round);
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
    const char *name = selected();
    printf("sha256 block function: %s\n", name);
    const char *want = getenv("NEONSIGN_EXPECT_SHA256");
    if (want && *want) EXPECT(strcmp(name, want) == 0, "NEONSIGN_EXPECT_SHA256=%s", want);
    test_vectors();
    test_hardware_equals_reference();
    test_every_length();
    test_random_chunks();
    test_streaming_splits();
    if (!failures) printf("test_sha256: ok\n");
    return failures ? 1 : 0;
}
