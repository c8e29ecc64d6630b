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
 * Misuse (non-buffer, wrong key/IV length, detached/shared/host buffer,
 * input over 1 MiB) throws TypeError/RangeError "lockstep_aead: ...".
 */
function seal(key, iv, aad, plaintext) @ "xs_lockstep_aead_seal";
function open(key, iv, aad, ciphertext, tag) @ "xs_lockstep_aead_open";
function random(bytes) @ "xs_lockstep_aead_random";
function cbc(encrypt, key, iv, data) @ "xs_lockstep_aead_cbc";
function hmac(key, ...parts) @ "xs_lockstep_aead_hmac";

export { seal, open, random, cbc, hmac };
