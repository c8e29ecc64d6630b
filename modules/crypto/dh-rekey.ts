/**
 * The DH rekey mode's derivation (docs/PROTOCOL.md §11.3):
 *   Z   = X25519(own private, peer share)       all zero → BAD_KEY_SHARE
 *   K_n = HKDF-SHA-512(salt = K_{n-1}, IKM = Z,
 *                      info = "Lockstep v1 dh rekey" ‖ device id ‖ n ‖ H ‖ D, L = 64)
 * The primitives come from the host (KeyAgreementPrimitives); this file only
 * composes them and owns the checks every backend must share.
 */
import { LockstepError } from '../errors';
import { DEVICE_ID_BYTES, KEY_BYTES, KEY_SHARE_BYTES, X25519_PRIVATE_KEY_BYTES } from '../protocol/constants';
import type { KeyAgreementPrimitives, RandomSource } from './primitives';

/** "Lockstep v1 dh rekey" in ASCII (§11.3). */
export const DH_REKEY_LABEL = Uint8Array.of(0x4c, 0x6f, 0x63, 0x6b, 0x73, 0x74, 0x65, 0x70, 0x20, 0x76, 0x31, 0x20, 0x64, 0x68, 0x20, 0x72, 0x65, 0x6b, 0x65, 0x79);

export interface EphemeralKeyPair {
  /** 32 bytes; the owner wipes it (device: right after deriving; hub: in the promoting commit). */
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/**
 * A fresh ephemeral pair: from the backend's generator when it has one,
 * else a private key drawn from `random` (never Math.random) and its public key.
 */
export function drawEphemeral(primitives: KeyAgreementPrimitives, random: RandomSource): EphemeralKeyPair {
  if (primitives.x25519GenerateKeyPair !== undefined) {
    const pair = primitives.x25519GenerateKeyPair();
    if (pair.privateKey.length !== X25519_PRIVATE_KEY_BYTES || pair.publicKey.length !== KEY_SHARE_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'an X25519 pair is 32 + 32 bytes');
    return pair;
  }
  const privateKey = new Uint8Array(X25519_PRIVATE_KEY_BYTES);
  random.fill(privateKey);
  return { privateKey, publicKey: primitives.x25519PublicKey(privateKey) };
}

export interface DeriveInput {
  readonly previousKey: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly peerShare: Uint8Array;
  readonly deviceId: Uint8Array;
  readonly newKeyId: number;
  readonly hubShare: Uint8Array;
  readonly deviceShare: Uint8Array;
}

/** K_n (64 bytes). Throws BAD_KEY_SHARE for an all-zero or refused X25519 result; nothing else changes. */
export function deriveRekeyKey(primitives: KeyAgreementPrimitives, input: DeriveInput): Uint8Array {
  if (input.previousKey.length !== KEY_BYTES || input.privateKey.length !== X25519_PRIVATE_KEY_BYTES || input.deviceId.length !== DEVICE_ID_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'dh rekey: key 64, private key 32, device id 8 bytes');
  }
  if (input.peerShare.length !== KEY_SHARE_BYTES || input.hubShare.length !== KEY_SHARE_BYTES || input.deviceShare.length !== KEY_SHARE_BYTES) {
    throw new LockstepError('BAD_KEY_SHARE', 'a share is 32 bytes');
  }
  let shared: Uint8Array;
  try {
    shared = primitives.x25519(input.privateKey, input.peerShare);
  } catch {
    throw new LockstepError('BAD_KEY_SHARE', 'the X25519 backend refused the share');
  }
  try {
    // RFC 7748 §6.1: an all-zero result means a low-order share; checked in constant time.
    let any = 0;
    for (let i = 0; i < shared.length; i++) any |= shared[i] as number;
    if (shared.length !== 32 || any === 0) throw new LockstepError('BAD_KEY_SHARE', 'all-zero X25519 result');
    const info = new Uint8Array(DH_REKEY_LABEL.length + DEVICE_ID_BYTES + 4 + 2 * KEY_SHARE_BYTES);
    let at = 0;
    info.set(DH_REKEY_LABEL, at);
    at += DH_REKEY_LABEL.length;
    info.set(input.deviceId, at);
    at += DEVICE_ID_BYTES;
    new DataView(info.buffer).setUint32(at, input.newKeyId);
    at += 4;
    info.set(input.hubShare, at);
    info.set(input.deviceShare, at + KEY_SHARE_BYTES);
    return primitives.hkdfSha512(input.previousKey, shared, info, KEY_BYTES);
  } finally {
    shared.fill(0);
  }
}
