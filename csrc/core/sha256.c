#include "sha256.h"

#include <stdatomic.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n) {
    return (x >> n) | (x << (32 - n));
}

static uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void ns_sha256_blocks_ref(uint32_t state[8], const uint8_t *data, size_t blocks) {
    for (; blocks; blocks--, data += 64) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) w[t] = load_be32(data + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 =
                h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g, g = f, f = e, e = d + t1;
            d = c, c = b, b = a, a = t1 + t2;
        }
        state[0] += a, state[1] += b, state[2] += c, state[3] += d;
        state[4] += e, state[5] += f, state[6] += g, state[7] += h;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* SHA-NI keeps the state as two vectors, ABEF and CDGH; four rounds take one vector of
 * message words plus constants (two sha256rnds2 of two rounds each), and msg1/msg2 extend the
 * message schedule four words at a time. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
blocks_shani(uint32_t state[8], const uint8_t *data, size_t blocks) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);  /* EFGH */
    __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);                                           /* ABEF */
    s1 = _mm_blend_epi16(s1, tmp, 0xF0);                                                /* CDGH */
    for (; blocks; blocks--, data += 64) {
        const __m128i abef = s0, cdgh = s1;
        __m128i w[4];
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            __m128i *m = &w[g & 3];
            if (g < 4) {
                *m = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), bswap);
            } else { /* w[g&3] holds words 4g-16.., the others 4g-12.., 4g-8.., 4g-4.. */
                const __m128i prev = w[(g + 3) & 3];
                __m128i x = _mm_sha256msg1_epu32(*m, w[(g + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(prev, w[(g + 2) & 3], 4));
                *m = _mm_sha256msg2_epu32(x, prev);
            }
            __m128i msg = _mm_add_epi32(*m, _mm_loadu_si128((const __m128i *)&K[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));
        }
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    tmp = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);    /* DCHG */
    s0 = _mm_blend_epi16(tmp, s1, 0xF0); /* DCBA */
    s1 = _mm_alignr_epi8(s1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], s0);
    _mm_storeu_si128((__m128i *)&state[4], s1);
}

static int cpu_has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int sse = (c & bit_SSSE3) && (c & bit_SSE4_1);
    if (!sse || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1; /* CPUID.(EAX=7, ECX=0):EBX.SHA[bit 29] */
}
#else
static void blocks_shani(uint32_t state[8], const uint8_t *data, size_t blocks) {
    (void)state, (void)data, (void)blocks;
}
static int cpu_has_shani(void) {
    return 0;
}
#endif

/* AArch64 with the SHA2 instructions of the Crypto Extension, on Linux (HWCAP_SHA2 says whether
 * the CPU has them); the rest of the file stays baseline Armv8-A. GCC enables the extension per
 * function as "+crypto" (AES and SHA2: GCC 12's arm_neon.h has no "+sha2" for these intrinsics),
 * clang as "crypto"; clang declares the intrinsics for such functions only from clang 16 on
 * (before, only when the whole file targets SHA2, which defines __ARM_FEATURE_SHA2). */
#if defined(__aarch64__) && defined(__linux__) && defined(__GNUC__) &&                             \
    (!defined(__clang__) || __clang_major__ >= 16 || defined(__ARM_FEATURE_SHA2))
#include <arm_neon.h>
#include <sys/auxv.h>

#ifdef __clang__
#define TARGET_SHA2 __attribute__((target("crypto")))
#else
#define TARGET_SHA2 __attribute__((target("+crypto")))
#endif

#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6) /* Linux arch/arm64/include/uapi/asm/hwcap.h */
#endif

/* The state stays in natural order as two vectors, ABCD and EFGH. Four rounds take one vector
 * of message words plus constants: sha256h updates ABCD and sha256h2 EFGH (each from both old
 * halves); su0/su1 extend the message schedule four words at a time. */
TARGET_SHA2 static void blocks_armv8(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32x4_t abcd = vld1q_u32(&state[0]), efgh = vld1q_u32(&state[4]);
    for (; blocks; blocks--, data += 64) {
        const uint32x4_t abcd0 = abcd, efgh0 = efgh;
        uint32x4_t w[4];
        for (int i = 0; i < 4; i++)
            w[i] = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 16 * i)));
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            uint32x4_t *m = &w[g & 3]; /* words 4g.., the others 4g+4.., 4g+8.., 4g+12.. */
            const uint32x4_t wk = vaddq_u32(*m, vld1q_u32(&K[4 * g]));
            if (g < 12)
                *m = vsha256su1q_u32(vsha256su0q_u32(*m, w[(g + 1) & 3]), w[(g + 2) & 3],
                                     w[(g + 3) & 3]); /* now words 4g+16.. */
            const uint32x4_t prev = abcd;
            abcd = vsha256hq_u32(abcd, efgh, wk);
            efgh = vsha256h2q_u32(efgh, prev, wk);
        }
        abcd = vaddq_u32(abcd, abcd0);
        efgh = vaddq_u32(efgh, efgh0);
    }
    vst1q_u32(&state[0], abcd);
    vst1q_u32(&state[4], efgh);
}

static int cpu_has_sha2(void) {
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}
#else
static void blocks_armv8(uint32_t state[8], const uint8_t *data, size_t blocks) {
    (void)state, (void)data, (void)blocks;
}
static int cpu_has_sha2(void) {
    return 0;
}
#endif

enum { HW_NONE, HW_SHANI, HW_ARMV8 };

/* Which block function this CPU runs (HW_*); computed once, racing first calls agree. */
static int hardware(void) {
    static atomic_int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        v = cpu_has_shani() ? HW_SHANI : cpu_has_sha2() ? HW_ARMV8 : HW_NONE;
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v;
}

int ns_sha256_accelerated(void) {
    return hardware() != HW_NONE;
}

int ns_sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t blocks) {
    if (hardware() != HW_SHANI) return 0;
    blocks_shani(state, data, blocks);
    return 1;
}

int ns_sha256_blocks_armv8(uint32_t state[8], const uint8_t *data, size_t blocks) {
    if (hardware() != HW_ARMV8) return 0;
    blocks_armv8(state, data, blocks);
    return 1;
}

static void blocks(uint32_t state[8], const uint8_t *data, size_t n) {
    if (!ns_sha256_blocks_shani(state, data, n) && !ns_sha256_blocks_armv8(state, data, n))
        ns_sha256_blocks_ref(state, data, n);
}

void ns_sha256_init(ns_sha256 *h) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h->state, iv, sizeof iv);
    h->bytes = 0;
    h->block_len = 0;
}

void ns_sha256_update(ns_sha256 *h, const void *data, size_t len) {
    const uint8_t *p = data;
    h->bytes += len;
    if (h->block_len) { /* top up the partial block first */
        size_t take = 64 - h->block_len < len ? 64 - h->block_len : len;
        memcpy(h->block + h->block_len, p, take);
        h->block_len += take, p += take, len -= take;
        if (h->block_len < 64) return;
        blocks(h->state, h->block, 1);
        h->block_len = 0;
    }
    if (len >= 64) {
        blocks(h->state, p, len / 64);
        p += len / 64 * 64, len %= 64;
    }
    if (len) memcpy(h->block, p, len);
    h->block_len = len;
}

void ns_sha256_final(ns_sha256 *h, uint8_t out[32]) {
    const uint64_t bits = h->bytes * 8;
    uint8_t pad[72] = {0x80}; /* 0x80, zeros, then the 64-bit big-endian bit count */
    size_t zeros = (h->block_len < 56 ? 56 : 120) - h->block_len;
    for (int i = 0; i < 8; i++) pad[zeros + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    ns_sha256_update(h, pad, zeros + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h->state[i] >> 24), out[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h->state[i] >> 8), out[4 * i + 3] = (uint8_t)h->state[i];
    }
}
