/* SHA-256 (FIPS 180-4), streaming, for the whole-split loader's data checksum.
 *
 * The loader hashes each image's uint8 resize in row order from its worker threads as rows
 * complete (loader.h: ns_load_request.digest), so the checksum costs no serial pass after the
 * load. The digest is the standard one: identical to hashlib.sha256 over the same bytes.
 *
 * Block functions: a portable scalar reference; on x86-64 one with the SHA extensions (SHA-NI:
 * sha256rnds2/msg1/msg2); on AArch64 Linux one with the Armv8 SHA2 instructions (sha256h/h2/
 * su0/su1, where HWCAP_SHA2 says the CPU has them). The hardware one is picked at run time.
 * Without hardware SHA the loader's callers hash with OpenSSL instead (ns_sha256_accelerated()
 * says which is faster).
 */
#ifndef NS_SHA256_H
#define NS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ns_sha256 {
    uint32_t state[8];
    uint64_t bytes;    /* total fed so far */
    uint8_t block[64]; /* a partial block */
    size_t block_len;  /* bytes in block, < 64 */
} ns_sha256;

void ns_sha256_init(ns_sha256 *h);
void ns_sha256_update(ns_sha256 *h, const void *data, size_t len);
/* The 32-byte digest; h must be initialised again before further use. */
void ns_sha256_final(ns_sha256 *h, uint8_t out[32]);

/* 1 when ns_sha256_update uses hardware SHA instructions, else 0 (the scalar reference). */
int ns_sha256_accelerated(void);

/* Block functions (tests): compress `blocks` 64-byte blocks at data (any alignment) into state.
 * The reference always exists; the SHA-NI and Armv8 ones return 0 without touching state where
 * the CPU (or the build) lacks them, else 1. At most one of them runs on a given CPU. */
void ns_sha256_blocks_ref(uint32_t state[8], const uint8_t *data, size_t blocks);
int ns_sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t blocks);
int ns_sha256_blocks_armv8(uint32_t state[8], const uint8_t *data, size_t blocks);

#ifdef __cplusplus
}
#endif
#endif /* NS_SHA256_H */
