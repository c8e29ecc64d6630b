/*
 * The seam between the shared glue (lockstep_aead.c) and a platform backend.
 *
 * A backend provides exactly six primitives; everything else (the
 * AES_256_CBC_HMAC_SHA_512 composition of RFC 7518 §5.2.2, PKCS#7, the
 * constant-time tag check, the all-zero X25519 check, argument checking) is
 * shared and lives in lockstep_aead.c. Backends:
 *   backend_esp32.c    ESP-IDF v6 (AES accelerator, PSA HMAC on the SHA accelerator, hardware RNG,
 *                      PSA X25519 and HKDF-SHA-512)
 *   backend_mbedtls.c  mbedTLS 2.28 as packaged by Debian (the XS test host)
 *
 * Rules for every backend function:
 * - returns 0 on success and nonzero on any failure; on failure the caller
 *   discards every output byte;
 * - never keeps a pointer after returning and wipes its own key schedules,
 *   contexts and copies of the IV before returning;
 * - is never called with a length above LOCKSTEP_AEAD_MAX_INPUT_BYTES + 64.
 */
#ifndef LOCKSTEP_AEAD_BACKEND_H
#define LOCKSTEP_AEAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define LOCKSTEP_AES_BLOCK_BYTES 16
#define LOCKSTEP_AES_KEY_BYTES 32
#define LOCKSTEP_HMAC_KEY_BYTES 32
#define LOCKSTEP_SHA512_BYTES 64

/** A read-only run of bytes; `data` may be NULL only when `length` is 0. */
typedef struct {
	const uint8_t *data;
	size_t length;
} lockstep_span;

/**
 * AES-256-CBC without padding over `length` bytes (a nonzero multiple of 16).
 * `input` and `output` are either the same pointer (in place) or do not
 * overlap; they may be unaligned. `iv` is not modified.
 */
int lockstep_backend_aes256_cbc(int encrypt, const uint8_t key[LOCKSTEP_AES_KEY_BYTES],
	const uint8_t iv[LOCKSTEP_AES_BLOCK_BYTES], const uint8_t *input, uint8_t *output, size_t length);

/** HMAC-SHA-512 (RFC 2104, FIPS 180-4) with a 32-byte key over the concatenation of `parts`. */
int lockstep_backend_hmac_sha512(const uint8_t key[LOCKSTEP_HMAC_KEY_BYTES],
	const lockstep_span *parts, size_t count, uint8_t mac[LOCKSTEP_SHA512_BYTES]);

#define LOCKSTEP_X25519_BYTES 32
/** RFC 5869 §2.3: L ≤ 255 · HashLen. */
#define LOCKSTEP_HKDF_SHA512_MAX_BYTES (255 * LOCKSTEP_SHA512_BYTES)

/** What an X25519 call returns besides 0 when the library refuses the peer key (a low-order point). */
#define LOCKSTEP_BACKEND_REFUSED 1

/**
 * X25519(k, 9) (RFC 7748 §5): the public key of a 32-byte private key,
 * which the backend clamps (on a copy; `private_key` is not modified).
 */
int lockstep_backend_x25519_public(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	uint8_t public_key[LOCKSTEP_X25519_BYTES]);

/**
 * X25519(k, u) (RFC 7748 §5): clamps k, masks the top bit of u and accepts a
 * non-canonical u. Returns LOCKSTEP_BACKEND_REFUSED when the library itself
 * refuses a low-order u; the caller also refuses an all-zero result.
 */
int lockstep_backend_x25519(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	const uint8_t peer_public_key[LOCKSTEP_X25519_BYTES], uint8_t shared[LOCKSTEP_X25519_BYTES]);

/** HKDF-SHA-512 (RFC 5869 §2): extract with `salt` (may be empty), expand with `info` to 1..16320 bytes. */
int lockstep_backend_hkdf_sha512(const lockstep_span *salt, const lockstep_span *ikm, const lockstep_span *info,
	uint8_t *output, size_t length);

/** Fills `output` from a cryptographically secure source. */
int lockstep_backend_random(uint8_t *output, size_t length);

/** Overwrites `length` bytes with zeros in a way the compiler may not elide. */
void lockstep_wipe(void *data, size_t length);

#endif
