/*
 * The raw natives of lockstep_aead.c (Moddable host-function syntax; compiled
 * by xsc, not by tsc or esbuild). Use native-aead.ts, not these, from the app.
 *
 * seal(key64, iv16, aad, plaintext) -> ArrayBuffer(ciphertext ‖ tag32)
 * open(key64, iv16, aad, ciphertext, tag32) -> ArrayBuffer(plaintext), or
 *     undefined for every authentication failure (RFC 7518 §5.2.2.2)
 * random(bytes) fills `bytes` from the platform's secure random source
 * cbc(encrypt, key32, iv16, data) -> ArrayBuffer: AES-256-CBC, no padding
 * hmac(key32, ...parts) -> ArrayBuffer(64): HMAC-SHA-512 (at most 8 parts)
 * x25519Public(private32) -> ArrayBuffer(32): X25519(k, 9) (RFC 7748)
 * x25519(private32, public32) -> ArrayBuffer(32), or undefined for a
 *     low-order public key (refused by the library, or an all-zero result)
 * hkdf(salt, ikm, info, length) -> ArrayBuffer(length): HKDF-SHA-512 (RFC 5869), 1 <= length <= 16320
 * Misuse (non-buffer, wrong key/IV length, detached/shared/host buffer,
 * input over 1 MiB) throws TypeError/RangeError "lockstep_aead: ...".
 */
function seal(key, iv, aad, plaintext) @ "xs_lockstep_aead_seal";
function open(key, iv, aad, ciphertext, tag) @ "xs_lockstep_aead_open";
function random(bytes) @ "xs_lockstep_aead_random";
function cbc(encrypt, key, iv, data) @ "xs_lockstep_aead_cbc";
function hmac(key, ...parts) @ "xs_lockstep_aead_hmac";
function x25519Public(privateKey) @ "xs_lockstep_aead_x25519_public";
function x25519(privateKey, publicKey) @ "xs_lockstep_aead_x25519";
function hkdf(salt, ikm, info, length) @ "xs_lockstep_aead_hkdf";

export { seal, open, random, cbc, hmac, x25519Public, x25519, hkdf };
