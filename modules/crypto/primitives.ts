/**
 * The platform seam for cryptography. Hosts implement these with a vetted
 * library (node:crypto, the Moddable SDK's crypt modules, mbedTLS/ESP-IDF in
 * the native module, @noble/*); nothing in modules/ implements a primitive.
 */

/** The two primitives A256CBC-HS512 is composed of (RFC 7518 §5.2.2). */
export interface CipherPrimitives {
  /** AES-256-CBC without padding: `data.length` is a multiple of 16. */
  aes256CbcEncrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  /** AES-256-CBC without padding removal: `data.length` is a multiple of 16. */
  aes256CbcDecrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  /** HMAC-SHA-512 over the concatenation of `parts`; returns 64 bytes. */
  hmacSha512(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array;
}

/**
 * A whole AEAD: AES_256_CBC_HMAC_SHA_512 (RFC 7518 §5.2.2 and §5.2.5).
 * Implemented either by composing CipherPrimitives (modules/crypto/a256cbc-hs512.ts)
 * or natively (hosts/moddable/native, the xsmc module).
 */
export interface Aead {
  readonly name: string;
  /** Returns ciphertext ‖ tag (tag = last 32 bytes). `key` is 64 bytes, `iv` 16. */
  seal(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /**
   * Verifies the 32-byte tag in constant time before decrypting; throws
   * LockstepError('AUTH_FAILED') for any failure (tag, length, padding).
   */
  open(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array;
}

/** A cryptographically secure random source. Never Math.random. */
export interface RandomSource {
  fill(bytes: Uint8Array): void;
}

/**
 * X25519 (RFC 7748) and HKDF-SHA-512 (RFC 5869): what the DH rekey mode
 * needs (docs/PROTOCOL.md §11). Private keys are 32 bytes the core draws from
 * its RandomSource (so a simulation is deterministic); the function clamps
 * them (RFC 7748 §5). Implemented by node:crypto, @noble/curves with
 * @noble/hashes, and the native module (PSA on the ESP32, mbedTLS on Linux).
 */
export interface KeyAgreementPrimitives {
  readonly name: string;
  /** X25519(k, 9): the 32-byte public key of a 32-byte private key. */
  x25519PublicKey(privateKey: Uint8Array): Uint8Array;
  /**
   * X25519(k, u), 32 bytes. For a low-order `u` a backend either returns all
   * zero or throws; modules/crypto/dh-rekey.ts turns both into BAD_KEY_SHARE
   * (RFC 7748 §6.1), so no caller relies on a backend's own check.
   */
  x25519(privateKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array;
  /** HKDF-SHA-512 extract then expand (RFC 5869 §2); `length` ≤ 255 · 64. */
  hkdfSha512(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /**
   * Optional: a fresh pair from the backend's own CSPRNG, for backends where
   * importing a raw private key costs more than generating one (OpenSSL 3's
   * decoders). Without it — and in the simulation, which needs the injected
   * random source to stay deterministic — the core draws 32 bytes itself.
   */
  x25519GenerateKeyPair?(): { privateKey: Uint8Array; publicKey: Uint8Array };
}
