/**
 * The attacker's reading of the wire, written from docs/PROTOCOL.md alone
 * (§2 framing, §3 header, §4 frames and the AEAD, §6 bodies, §11.2 the
 * KEY_SHARE extension) with node:crypto: no import from modules/, so that a
 * codec bug the project shares with its own tests cannot hide here.
 *
 * Everything here is what a passive observer of a byte stream can do: split
 * it into frames by the u16 length prefix, read the clear header (type, key
 * id, device id, share), and — given a 64-byte key — check the tag and
 * decrypt.
 */
import { createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

/** §3: 36 bytes of clear, authenticated header. */
export const HEADER_BYTES = 36;
/** §2: a frame is at most this long. */
export const MAX_FRAME_BYTES = 1280;
/** §3 flags. */
export const FLAG_FROM_HUB = 0x0001;
export const FLAG_KEY_SHARE = 0x0002;
const SHARE_BYTES = 32;
const IV_BYTES = 16;
const TAG_BYTES = 32;

/** §6 message types. */
export const MESSAGE_TYPES: Readonly<Record<number, string>> = {
  0x01: 'CHALLENGE',
  0x02: 'HELLO',
  0x03: 'WELCOME',
  0x04: 'NO_KEY',
  0x05: 'RECOVER_INIT',
  0x06: 'RECOVER_REPLY',
  0x07: 'RECOVER_FINISH',
  0x08: 'RECOVER_RESULT',
  0x10: 'DATA',
  0x11: 'DATA_ACK',
  0x20: 'REKEY',
  0x21: 'REKEY_ACK',
  0x22: 'CONFIRM',
  0x23: 'REKEY_DH',
  0x24: 'ENROL',
  0x25: 'ENROL_ACK',
  0x30: 'PING',
  0x31: 'PONG',
  0x3f: 'ERROR',
};

export type Direction = 'up' | 'down';

/** One frame as it travels, before any key is applied. */
export interface WireFrame {
  /** Index of the recorded connection, and of the frame within its direction. */
  readonly connection: number;
  readonly index: number;
  readonly direction: Direction;
  /** Time (ms, the recorder's clock) at which the frame's last byte was seen. */
  readonly at: number;
  readonly bytes: Uint8Array;
  readonly version: number;
  readonly type: number;
  readonly typeName: string;
  readonly flags: number;
  /** 16 hex digits (all zero in CHALLENGE). */
  readonly deviceId: string;
  readonly keyId: number;
  readonly seq: number;
  /** §11.2: the device's ephemeral public key sent in clear with KEY_SHARE, else undefined. */
  readonly share: Uint8Array | undefined;
  /** Whether the frame is sealed (everything but CHALLENGE). */
  readonly sealed: boolean;
  /** Why the frame cannot be a well-formed one (then nothing is tried on it). */
  readonly malformed: string | undefined;
}

/** Splits one direction's byte stream into frames (§2); a trailing partial frame is dropped. */
export function splitFrames(
  chunks: readonly { readonly at: number; readonly bytes: Uint8Array }[],
  connection: number,
  direction: Direction,
): WireFrame[] {
  const frames: WireFrame[] = [];
  let held = new Uint8Array(0);
  for (const chunk of chunks) {
    const joined = new Uint8Array(held.length + chunk.bytes.length);
    joined.set(held, 0);
    joined.set(chunk.bytes, held.length);
    let at = 0;
    while (joined.length - at >= 2) {
      const length = (joined[at]! << 8) | joined[at + 1]!;
      if (joined.length - at - 2 < length) break;
      frames.push(parseFrame(joined.slice(at + 2, at + 2 + length), connection, frames.length, direction, chunk.at));
      at += 2 + length;
    }
    held = joined.slice(at);
  }
  return frames;
}

function parseFrame(bytes: Uint8Array, connection: number, index: number, direction: Direction, at: number): WireFrame {
  const base = { connection, index, direction, at, bytes };
  if (bytes.length < HEADER_BYTES || bytes.length > MAX_FRAME_BYTES) {
    return { ...base, version: 0, type: 0, typeName: '?', flags: 0, deviceId: '', keyId: 0, seq: 0, share: undefined, sealed: false, malformed: `length ${bytes.length}` };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = bytes[1]!;
  const flags = view.getUint16(2);
  const header = {
    version: bytes[0]!,
    type,
    typeName: MESSAGE_TYPES[type] ?? `0x${type.toString(16)}`,
    flags,
    deviceId: Buffer.from(bytes.subarray(4, 12)).toString('hex'),
    keyId: view.getUint32(12),
    seq: view.getUint32(16),
  };
  const hasShare = (flags & FLAG_KEY_SHARE) !== 0;
  const sealed = type !== 0x01;
  const aadBytes = HEADER_BYTES + (hasShare ? SHARE_BYTES : 0);
  let malformed: string | undefined;
  if (sealed) {
    const body = bytes.length - aadBytes - IV_BYTES - TAG_BYTES;
    if (body <= 0 || body % 16 !== 0) malformed = `sealed frame of ${bytes.length} bytes`;
  } else if (bytes.length !== HEADER_BYTES || hasShare) {
    malformed = 'CHALLENGE with a body or a share';
  }
  const share = hasShare && bytes.length >= HEADER_BYTES + SHARE_BYTES ? bytes.slice(HEADER_BYTES, HEADER_BYTES + SHARE_BYTES) : undefined;
  return { ...base, ...header, share, sealed, malformed };
}

/**
 * §4 (and §11.2 for a frame with a share): checks T = HMAC-SHA-512(MAC_KEY,
 * A ‖ IV ‖ E ‖ AL)[0..32] and decrypts E with AES-256-CBC under ENC_KEY,
 * PKCS#7. Returns the body, or undefined when the key does not open the frame.
 */
export function openFrame(frame: WireFrame, key: Uint8Array): Uint8Array | undefined {
  if (!frame.sealed || frame.malformed !== undefined || key.length !== 64) return undefined;
  const bytes = frame.bytes;
  const aadLength = HEADER_BYTES + (frame.share === undefined ? 0 : SHARE_BYTES);
  const aad = bytes.subarray(0, aadLength);
  const iv = bytes.subarray(aadLength, aadLength + IV_BYTES);
  const ciphertext = bytes.subarray(aadLength + IV_BYTES, bytes.length - TAG_BYTES);
  const tag = bytes.subarray(bytes.length - TAG_BYTES);
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(aadLength * 8));
  const mac = createHmac('sha512', key.subarray(0, 32)).update(aad).update(iv).update(ciphertext).update(al).digest().subarray(0, TAG_BYTES);
  if (!timingSafeEqual(mac, tag)) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-cbc', key.subarray(32, 64), iv);
    return new Uint8Array(Buffer.concat([decipher.update(ciphertext), decipher.final()]));
  } catch {
    return undefined;
  }
}

/** §6 bodies, decoded for the report (a body of the wrong length is shown as raw hex). */
export type Body =
  | { readonly kind: 'HELLO'; readonly activeId: number; readonly futureId: number }
  | { readonly kind: 'WELCOME'; readonly keyId: number }
  | { readonly kind: 'DATA'; readonly streamId: string; readonly messageId: number; readonly payload: Uint8Array }
  | { readonly kind: 'DATA_ACK'; readonly streamId: string; readonly messageId: number }
  | { readonly kind: 'REKEY'; readonly keyId: number; readonly key: Uint8Array }
  | { readonly kind: 'REKEY_DH'; readonly keyId: number; readonly hubShare: Uint8Array }
  | { readonly kind: 'REKEY_ACK' | 'CONFIRM'; readonly keyId: number }
  | { readonly kind: 'ERROR'; readonly code: number; readonly detail: number }
  | { readonly kind: 'EMPTY' }
  | { readonly kind: 'RAW'; readonly hex: string };

export function decodeBody(type: number, body: Uint8Array): Body {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const hex = (from: number, to: number) => Buffer.from(body.subarray(from, to)).toString('hex');
  switch (type) {
    case 0x02:
      if (body.length === 24) return { kind: 'HELLO', activeId: view.getUint32(16), futureId: view.getUint32(20) };
      break;
    case 0x03:
      if (body.length === 20) return { kind: 'WELCOME', keyId: view.getUint32(16) };
      break;
    case 0x10:
      if (body.length >= 12 && body.length <= 1036) return { kind: 'DATA', streamId: hex(0, 8), messageId: view.getUint32(8), payload: body.slice(12) };
      break;
    case 0x11:
      if (body.length === 12) return { kind: 'DATA_ACK', streamId: hex(0, 8), messageId: view.getUint32(8) };
      break;
    case 0x20:
      if (body.length === 68) return { kind: 'REKEY', keyId: view.getUint32(0), key: body.slice(4, 68) };
      break;
    case 0x21:
    case 0x22:
      if (body.length === 4) return { kind: type === 0x21 ? 'REKEY_ACK' : 'CONFIRM', keyId: view.getUint32(0) };
      break;
    case 0x23:
      if (body.length === 36) return { kind: 'REKEY_DH', keyId: view.getUint32(0), hubShare: body.slice(4, 36) };
      break;
    case 0x30:
    case 0x31:
      if (body.length === 0) return { kind: 'EMPTY' };
      break;
    case 0x3f:
      if (body.length === 6) return { kind: 'ERROR', code: view.getUint16(0), detail: view.getUint32(2) };
      break;
  }
  return { kind: 'RAW', hex: hex(0, body.length) };
}
