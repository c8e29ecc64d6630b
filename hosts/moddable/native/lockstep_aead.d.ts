/** Types of the raw natives in lockstep_aead.js / lockstep_aead.c (see there for the contract). */
export function seal(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): ArrayBuffer;
export function open(
  key: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): ArrayBuffer | undefined;
export function random(bytes: Uint8Array): void;
export function cbc(encrypt: boolean, key: Uint8Array, iv: Uint8Array, data: Uint8Array): ArrayBuffer;
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): ArrayBuffer;
export function x25519Public(privateKey: Uint8Array): ArrayBuffer;
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): ArrayBuffer | undefined;
export function hkdf(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): ArrayBuffer;
