// Lockstep 1.1 wire format, written from docs/PROTOCOL.md alone (§2–§4, §6, §11.2–§11.3).
// Pure functions over Uint8Array/Buffer; node:crypto only.
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

export const HEADER_BYTES = 36;
export const MAX_FRAME_BYTES = 1280;
export const SHARE_BYTES = 32;
export const TAG_BYTES = 32;
export const IV_BYTES = 16;
export const KEY_BYTES = 64;
export const MAX_APP_PAYLOAD_BYTES = 1024;

export const FLAG_FROM_HUB = 0x0001;
export const FLAG_KEY_SHARE = 0x0002;

export const T = {
  CHALLENGE: 0x01, HELLO: 0x02, WELCOME: 0x03,
  NO_KEY: 0x04, RECOVER_INIT: 0x05, RECOVER_REPLY: 0x06, RECOVER_FINISH: 0x07, RECOVER_RESULT: 0x08,
  DATA: 0x10, DATA_ACK: 0x11,
  REKEY: 0x20, REKEY_ACK: 0x21, CONFIRM: 0x22, REKEY_DH: 0x23, ENROL: 0x24, ENROL_ACK: 0x25,
  PING: 0x30, PONG: 0x31, ERROR: 0x3f,
} as const;
/** Every type §6 and §12.2 define (W-HDR-2). */
export const DEFINED_TYPES: ReadonlySet<number> = new Set(Object.values(T));
/** Unsealed types (§4): CHALLENGE and the recovery frames. */
export const UNSEALED_TYPES: ReadonlySet<number> = new Set([T.CHALLENGE, T.NO_KEY, T.RECOVER_INIT, T.RECOVER_REPLY, T.RECOVER_FINISH, T.RECOVER_RESULT]);

/** Exact body lengths (§6, W-MSG-1); DATA is a range. */
export function bodyLengthValid(type: number, length: number): boolean {
  switch (type) {
    case T.HELLO: return length === 24;
    case T.WELCOME: return length === 20;
    case T.DATA: return length >= 12 && length <= 12 + MAX_APP_PAYLOAD_BYTES;
    case T.DATA_ACK: return length === 12;
    case T.REKEY: return length === 68;
    case T.REKEY_ACK: case T.CONFIRM: return length === 4;
    case T.REKEY_DH: case T.ENROL: case T.ENROL_ACK: return length === 36;
    case T.PING: case T.PONG: return length === 0;
    case T.ERROR: return length === 6;
    default: return false;
  }
}

/** Wire error codes (§9). */
export const WIRE_ERROR = {
  PROTOCOL: 1, REKEY_ID_NOT_NEWER: 2, REKEY_CONFLICT: 3, STORAGE_FAILURE: 4, UNEXPECTED_MESSAGE: 5,
  KEY_IDS_EXHAUSTED: 6, REKEY_ID_NOT_NEXT: 7, REKEY_MODE_MISMATCH: 8, BAD_KEY_SHARE: 9, STATIC_KEY_LOCKED: 10,
} as const;

/** Local rejection codes (§9); they never travel on the wire. */
export type RejectCode =
  | 'FRAME_TOO_SHORT' | 'FRAME_TOO_LONG' | 'BAD_VERSION' | 'UNKNOWN_TYPE' | 'BAD_HEADER' | 'UNEXPECTED_MESSAGE'
  | 'BAD_SESSION' | 'BAD_SEQUENCE' | 'UNKNOWN_DEVICE' | 'UNKNOWN_KEY_ID' | 'AUTH_FAILED' | 'BAD_PAYLOAD' | 'BAD_KEY_SHARE';

export class Rejection extends Error {
  /** For a HELLO: a failure HS9 may answer with NO_KEY (§4 step 3 unknown device, step 4, step 5). */
  readonly recoverable: boolean;
  constructor(readonly code: RejectCode, detail: string, recoverable = false) {
    super(`${code}: ${detail}`);
    this.recoverable = recoverable;
  }
}

export interface Header {
  version: number;
  type: number;
  flags: number;
  deviceId: Buffer; // 8 bytes
  keyId: number;
  seq: number;
  sessionId: Buffer; // 16 bytes
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b[0] = h.version;
  b[1] = h.type;
  b.writeUInt16BE(h.flags, 2);
  h.deviceId.copy(b, 4, 0, 8);
  b.writeUInt32BE(h.keyId >>> 0, 12);
  b.writeUInt32BE(h.seq >>> 0, 16);
  h.sessionId.copy(b, 20, 0, 16);
  return b;
}

export function decodeHeader(frame: Buffer): Header {
  return {
    version: frame[0]!,
    type: frame[1]!,
    flags: frame.readUInt16BE(2),
    deviceId: frame.subarray(4, 12),
    keyId: frame.readUInt32BE(12),
    seq: frame.readUInt32BE(16),
    sessionId: frame.subarray(20, 36),
  };
}

function u64be(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function macOf(key: Buffer, aad: Buffer, iv: Buffer, ciphertext: Buffer): Buffer {
  return createHmac('sha512', key.subarray(0, 32))
    .update(aad).update(iv).update(ciphertext).update(u64be(aad.length * 8))
    .digest().subarray(0, TAG_BYTES);
}

/** A256CBC-HS512 (RFC 7518 §5.2.2) sealing: returns IV ‖ E ‖ T. */
export function aeadSeal(key: Buffer, aad: Buffer, plaintext: Buffer, iv: Buffer = randomBytes(IV_BYTES)): Buffer {
  if (key.length !== KEY_BYTES || iv.length !== IV_BYTES) throw new Error('aeadSeal: bad key or IV length');
  const cipher = createCipheriv('aes-256-cbc', key.subarray(32, 64), iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, ciphertext, macOf(key, aad, iv, ciphertext)]);
}

/** Opens IV ‖ E ‖ T; every failure (length, tag, padding) is the one AUTH_FAILED (W-AEAD-4). */
export function aeadOpen(key: Buffer, aad: Buffer, sealed: Buffer): Buffer {
  const ciphertextLength = sealed.length - IV_BYTES - TAG_BYTES;
  if (ciphertextLength < 16 || ciphertextLength % 16 !== 0) throw new Rejection('AUTH_FAILED', 'ciphertext length');
  const iv = sealed.subarray(0, IV_BYTES);
  const ciphertext = sealed.subarray(IV_BYTES, IV_BYTES + ciphertextLength);
  const tag = sealed.subarray(IV_BYTES + ciphertextLength);
  // Tag first, in constant time, before anything is decrypted (W-AEAD-3).
  if (!timingSafeEqual(macOf(key, aad, iv, ciphertext), tag)) throw new Rejection('AUTH_FAILED', 'tag');
  try {
    const decipher = createDecipheriv('aes-256-cbc', key.subarray(32, 64), iv);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new Rejection('AUTH_FAILED', 'padding');
  }
}

/** A whole sealed frame with its u16 length prefix (§2, §4). */
export function sealFrame(h: Header, key: Buffer, body: Buffer, share?: Buffer, iv?: Buffer): Buffer {
  const header = encodeHeader(h);
  const aad = share ? Buffer.concat([header, share]) : header;
  const sealed = aeadSeal(key, aad, body, iv);
  const frame = Buffer.concat([aad, sealed]);
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(frame.length);
  return Buffer.concat([prefix, frame]);
}

export function unsealedFrame(h: Header, body: Buffer = Buffer.alloc(0)): Buffer {
  const frame = Buffer.concat([encodeHeader(h), body]);
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(frame.length);
  return Buffer.concat([prefix, frame]);
}

// ---- X25519 and the dh derivation (§11.3) ----

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

export function x25519Public(privateKey: Buffer): Buffer {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, privateKey]), format: 'der', type: 'pkcs8' });
  const der = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** X25519(priv, pub); null when the result is all zero (W-DH-2; OpenSSL refuses it too). */
export function x25519(privateKey: Buffer, publicKey: Buffer): Buffer | null {
  let z: Buffer;
  try {
    z = diffieHellman({
      privateKey: createPrivateKey({ key: Buffer.concat([PKCS8_X25519, privateKey]), format: 'der', type: 'pkcs8' }),
      publicKey: createPublicKey({ key: Buffer.concat([SPKI_X25519, publicKey]), format: 'der', type: 'spki' }),
    });
  } catch {
    return null; // OpenSSL fails the derivation of an all-zero (low-order) result
  }
  let acc = 0;
  for (const byte of z) acc |= byte; // constant time over the 32 bytes
  return acc === 0 ? null : z;
}

const DH_LABEL = Buffer.from('Lockstep v1 dh rekey', 'ascii');

export function deriveDhKey(previousKey: Buffer, z: Buffer, deviceId: Buffer, newId: number, hubShare: Buffer, deviceShare: Buffer): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(newId >>> 0);
  const info = Buffer.concat([DH_LABEL, deviceId, id, hubShare, deviceShare]);
  return Buffer.from(hkdfSync('sha512', z, previousKey, info, KEY_BYTES));
}
