/**
 * The dh rekey derivation of docs/PROTOCOL.md §11.3, written from the spec
 * with node:crypto's X25519 (RFC 7748) and HKDF-SHA-512 (RFC 5869) — what an
 * attacker holding one ephemeral private key and the previous key computes.
 *
 *   Z    = X25519(private, peer public)                   (all zero → refused)
 *   info = "Lockstep v1 dh rekey" ‖ device id (8) ‖ n (u32 BE) ‖ H (32) ‖ D (32)
 *   K_n  = HKDF-SHA-512(salt = K_{n−1}, IKM = Z, info, L = 64)
 */
import { createPrivateKey, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto';

const LABEL = Buffer.from('Lockstep v1 dh rekey', 'ascii');
// RFC 8410 encodings of a raw X25519 key (OID 1.3.101.110).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyObject(privateKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, privateKey]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

/** X25519(k, 9): the public key of a 32-byte private key. */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(privateKey)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(der.length - 32));
}

/** X25519(k, u); undefined for an all-zero result or a share the backend refuses (RFC 7748 §6.1). */
export function x25519(privateKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array | undefined {
  if (privateKey.length !== 32 || peerPublicKey.length !== 32) return undefined;
  try {
    const z = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(peerPublicKey) }));
    return z.every((b) => b === 0) ? undefined : z;
  } catch {
    return undefined;
  }
}

/** K_n of §11.3, or undefined when Z is refused. */
export function deriveDhKey(input: {
  readonly previousKey: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly peerPublicKey: Uint8Array;
  readonly deviceId: string;
  readonly keyId: number;
  readonly hubShare: Uint8Array;
  readonly deviceShare: Uint8Array;
}): Uint8Array | undefined {
  const z = x25519(input.privateKey, input.peerPublicKey);
  if (z === undefined) return undefined;
  const id = Buffer.alloc(4);
  id.writeUInt32BE(input.keyId >>> 0);
  const info = Buffer.concat([LABEL, Buffer.from(input.deviceId, 'hex'), id, input.hubShare, input.deviceShare]);
  const key = new Uint8Array(hkdfSync('sha512', z, input.previousKey, info, 64));
  z.fill(0);
  return key;
}
