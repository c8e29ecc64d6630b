/**
 * An independent receiver written from docs/PROTOCOL.md §2–§4, §6 and §12.2
 * alone, with @noble (AES-256-CBC without padding, HMAC-SHA-512) — none of
 * modules/protocol or modules/crypto — to check the vectors: every positive
 * frame opens, every negative one is rejected for the stated reason.
 *
 * The checks run in the order of §4 (length, header, direction and type in
 * state, device/session/seq, key id, tag then padding, body). `paddingFirst`
 * builds a deliberately broken variant that decrypts and checks the padding
 * before the tag and reports bad padding as its own error (a padding
 * oracle), for the test that shows the vectors catch one.
 */
import { cbc } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { x25519 } from '@noble/curves/ed25519.js';

export const TYPES = {
  CHALLENGE: 0x01,
  HELLO: 0x02,
  WELCOME: 0x03,
  NO_KEY: 0x04,
  RECOVER_INIT: 0x05,
  RECOVER_REPLY: 0x06,
  RECOVER_FINISH: 0x07,
  RECOVER_RESULT: 0x08,
  DATA: 0x10,
  DATA_ACK: 0x11,
  REKEY: 0x20,
  REKEY_ACK: 0x21,
  CONFIRM: 0x22,
  REKEY_DH: 0x23,
  ENROL: 0x24,
  ENROL_ACK: 0x25,
  PING: 0x30,
  PONG: 0x31,
  ERROR: 0x3f,
} as const;

const KNOWN = new Set<number>(Object.values(TYPES));
/** §6, §12.2: who sends what. */
const FROM_DEVICE = new Set<number>([TYPES.HELLO, TYPES.RECOVER_INIT, TYPES.RECOVER_FINISH, TYPES.DATA, TYPES.DATA_ACK, TYPES.REKEY_ACK, TYPES.ENROL_ACK, TYPES.PING, TYPES.PONG, TYPES.ERROR]);
const FROM_HUB = new Set<number>([TYPES.CHALLENGE, TYPES.WELCOME, TYPES.NO_KEY, TYPES.RECOVER_REPLY, TYPES.RECOVER_RESULT, TYPES.DATA, TYPES.DATA_ACK, TYPES.REKEY, TYPES.CONFIRM, TYPES.REKEY_DH, TYPES.ENROL, TYPES.PING, TYPES.PONG, TYPES.ERROR]);
/** Unsealed frames: CHALLENGE and the recovery frames (§4, §12.2), with their exact frame lengths. */
const UNSEALED_LENGTH = new Map<number, number>([
  [TYPES.CHALLENGE, 36],
  [TYPES.NO_KEY, 36],
  [TYPES.RECOVER_INIT, 128],
  [TYPES.RECOVER_REPLY, 104],
  [TYPES.RECOVER_FINISH, 68],
  [TYPES.RECOVER_RESULT, 74],
]);

/** §8: the types a receiver takes in each state. `any`: every type of its peer (for positive vectors out of a session's context). */
export function acceptedTypes(receiver: 'hub' | 'device', state: 'awaitingHello' | 'established' | 'awaitingChallenge' | 'awaitingWelcome' | 'any'): ReadonlySet<number> {
  if (state === 'any') return receiver === 'hub' ? FROM_DEVICE : FROM_HUB;
  if (state === 'awaitingChallenge') return new Set([TYPES.CHALLENGE]);
  if (receiver === 'hub') return state === 'awaitingHello' ? new Set([TYPES.HELLO]) : new Set([TYPES.DATA, TYPES.DATA_ACK, TYPES.PING, TYPES.PONG, TYPES.ERROR, TYPES.REKEY_ACK, TYPES.ENROL_ACK]);
  return state === 'awaitingWelcome' ? new Set([TYPES.WELCOME, TYPES.NO_KEY]) : new Set([TYPES.DATA, TYPES.DATA_ACK, TYPES.PING, TYPES.PONG, TYPES.ERROR, TYPES.REKEY, TYPES.REKEY_DH, TYPES.CONFIRM, TYPES.ENROL]);
}

export interface ReceiverModel {
  readonly receiver: 'hub' | 'device';
  readonly accepts: ReadonlySet<number>;
  /** A hub before the HELLO: a device id it does not know is UNKNOWN_DEVICE; in a session a different id is BAD_HEADER. */
  readonly beforeHello: boolean;
  readonly deviceId: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly sequence: number;
  readonly keys: ReadonlyMap<number, Uint8Array>;
  /** A device awaiting its WELCOME: the Nd it must echo. */
  readonly deviceNonce?: Uint8Array;
  /** A hub's dh pending key (§11.3): its id, the hub's ephemeral pair, and K_prev (the key of id − 1); its key comes from a frame's share. */
  readonly dhPending?: { readonly id: number; readonly privateKey: Uint8Array; readonly publicKey: Uint8Array; readonly previousKey: Uint8Array };
}

export type Verdict = { readonly accepted: true; readonly type: number; readonly keyId: number; readonly body: Uint8Array } | { readonly accepted: false; readonly error: string };

const u16 = (b: Uint8Array, at: number) => ((b[at] as number) << 8) | (b[at + 1] as number);
const u32 = (b: Uint8Array, at: number) => (((b[at] as number) << 24) | ((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) | (b[at + 3] as number)) >>> 0;
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** PKCS#7 (1–16 bytes); undefined when invalid. */
function unpad(plain: Uint8Array): Uint8Array | undefined {
  const n = plain[plain.length - 1] as number;
  if (plain.length === 0 || n < 1 || n > 16 || n > plain.length) return undefined;
  for (let i = plain.length - n; i < plain.length; i++) if (plain[i] !== n) return undefined;
  return plain.subarray(0, plain.length - n);
}

const reject = (error: string): Verdict => ({ accepted: false, error });

/** One whole write of the stream (u16 prefix ‖ frame, or an out-of-range prefix and its skipped bytes). */
export function receive(model: ReceiverModel, wire: Uint8Array, options: { paddingFirst?: boolean } = {}): Verdict {
  // §2: check the length before anything is allocated; an out-of-range one is skipped.
  if (wire.length < 2) throw new Error('a write starts with a u16 length');
  const length = u16(wire, 0);
  if (wire.length !== 2 + length) throw new Error(`the write holds ${wire.length - 2} bytes after a prefix of ${length}`);
  if (length < 36) return reject('FRAME_TOO_SHORT');
  if (length > 1280) return reject('FRAME_TOO_LONG');
  const frame = wire.subarray(2);
  // §3: the header.
  if (frame[0] !== 1) return reject('BAD_VERSION');
  const type = frame[1] as number;
  if (!KNOWN.has(type)) return reject('UNKNOWN_TYPE');
  const flags = u16(frame, 2);
  if ((flags & ~0x0003) !== 0) return reject('BAD_HEADER');
  const fromHub = (flags & 0x0001) !== 0;
  const hasShare = (flags & 0x0002) !== 0;
  if (hasShare && (fromHub || type === TYPES.CHALLENGE)) return reject('BAD_HEADER');
  if (hasShare && frame.length < 68) return reject('FRAME_TOO_SHORT');
  // §4 step 2: the direction bit says the peer sent it; the type is one the receiver takes now.
  if (fromHub !== (model.receiver === 'device')) return reject('BAD_HEADER');
  if (!model.accepts.has(type)) return reject('UNEXPECTED_MESSAGE');
  const deviceId = frame.subarray(4, 12);
  const keyId = u32(frame, 12);
  const sequence = u32(frame, 16);
  const sessionId = frame.subarray(20, 36);
  // §6.1, D-SESSION-1 (in place of step 3): a CHALLENGE is 36 bytes, key id 0, seq 0, device id zero; it sets the session.
  if (type === TYPES.CHALLENGE) {
    if (frame.length !== 36 || keyId !== 0 || sequence !== 0 || deviceId.some((b) => b !== 0)) return reject('BAD_HEADER');
    return { accepted: true, type, keyId, body: new Uint8Array(0) };
  }
  // Step 3: device, session, seq.
  if (!equal(deviceId, model.deviceId)) return reject(model.beforeHello ? 'UNKNOWN_DEVICE' : 'BAD_HEADER');
  if (!equal(sessionId, model.sessionId)) return reject('BAD_SESSION');
  if (sequence !== model.sequence) return reject('BAD_SEQUENCE');
  const unsealed = UNSEALED_LENGTH.get(type);
  if (unsealed !== undefined) {
    // §12.2: key id 0, no share, an exact length (its own tag is the recovery vectors' business).
    if (keyId !== 0 || hasShare) return reject('BAD_HEADER');
    if (frame.length !== unsealed) return reject('BAD_PAYLOAD');
    return { accepted: true, type, keyId, body: frame.subarray(36) };
  }
  // Step 4: a key the receiver holds; under a hub's dh pending key, the frame must carry the share it derives it from (HK8).
  const dh = model.dhPending !== undefined && keyId === model.dhPending.id ? model.dhPending : undefined;
  if (dh !== undefined && !hasShare) return reject('BAD_HEADER');
  if (dh === undefined && !model.keys.has(keyId)) return reject('UNKNOWN_KEY_ID');
  // Step 5: A = header (‖ share); the shape, the tag in constant time, then decryption and padding — all AUTH_FAILED.
  const aadLength = hasShare ? 68 : 36;
  if (frame.length < aadLength + 16 + 16 + 32) return reject('FRAME_TOO_SHORT');
  if ((frame.length - aadLength - 48) % 16 !== 0) return reject('AUTH_FAILED');
  let key = model.keys.get(keyId) as Uint8Array;
  if (dh !== undefined) {
    // §11.3: Z = X25519(h, D), all zero → BAD_KEY_SHARE; K = HKDF-SHA-512(salt = K_prev, Z, "Lockstep v1 dh rekey" ‖ id ‖ n ‖ H ‖ D).
    const share = frame.subarray(36, 68);
    let z: Uint8Array;
    try {
      z = x25519.getSharedSecret(dh.privateKey, share);
    } catch {
      return reject('BAD_KEY_SHARE');
    }
    if (z.every((b) => b === 0)) return reject('BAD_KEY_SHARE');
    const info = new Uint8Array([...new TextEncoder().encode('Lockstep v1 dh rekey'), ...model.deviceId, (keyId >>> 24) & 0xff, (keyId >>> 16) & 0xff, (keyId >>> 8) & 0xff, keyId & 0xff, ...dh.publicKey, ...share]);
    key = hkdf(sha512, z, dh.previousKey, info, 64);
  }
  const aad = frame.subarray(0, aadLength);
  const iv = frame.subarray(aadLength, aadLength + 16);
  const ciphertext = frame.subarray(aadLength + 16, frame.length - 32);
  const tag = frame.subarray(frame.length - 32);
  const al = new Uint8Array(8);
  al[6] = ((aadLength * 8) >>> 8) & 0xff;
  al[7] = (aadLength * 8) & 0xff;
  const decrypt = () => unpad(cbc(key.subarray(32), iv, { disablePadding: true }).decrypt(ciphertext));
  if (options.paddingFirst === true && decrypt() === undefined) return reject('BAD_PADDING');
  const expected = hmac(sha512, key.subarray(0, 32), new Uint8Array([...aad, ...iv, ...ciphertext, ...al])).subarray(0, 32);
  if (!constantTimeEqual(expected, tag)) return reject('AUTH_FAILED');
  const body = decrypt();
  if (body === undefined) return reject('AUTH_FAILED');
  // Step 6: the body (§6).
  const fixed: Record<number, number> = { [TYPES.HELLO]: 24, [TYPES.WELCOME]: 20, [TYPES.DATA_ACK]: 12, [TYPES.REKEY]: 68, [TYPES.REKEY_ACK]: 4, [TYPES.CONFIRM]: 4, [TYPES.REKEY_DH]: 36, [TYPES.ENROL]: 36, [TYPES.ENROL_ACK]: 36, [TYPES.PING]: 0, [TYPES.PONG]: 0, [TYPES.ERROR]: 6 };
  if (type === TYPES.DATA) {
    if (body.length < 12 || body.length > 12 + 1024) return reject('BAD_PAYLOAD');
  } else if (body.length !== fixed[type]) return reject('BAD_PAYLOAD');
  if ((type === TYPES.REKEY_ACK || type === TYPES.CONFIRM) && u32(body, 0) !== keyId) return reject('BAD_PAYLOAD');
  if (type === TYPES.WELCOME) {
    if (model.deviceNonce !== undefined && !equal(body.subarray(0, 16), model.deviceNonce)) return reject('BAD_SESSION');
    if (u32(body, 16) !== keyId) return reject('BAD_PAYLOAD');
  }
  return { accepted: true, type, keyId, body };
}

/** §6: a body's fields, as the vectors' `message` objects spell them (hex strings and numbers). */
export function describeBody(type: number, body: Uint8Array): Record<string, string | number> {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  switch (type) {
    case TYPES.HELLO:
      return { type, deviceNonce: hex(body.subarray(0, 16)), activeKeyId: u32(body, 16), futureKeyId: u32(body, 20) };
    case TYPES.WELCOME:
      return { type, deviceNonce: hex(body.subarray(0, 16)), hubKeyId: u32(body, 16) };
    case TYPES.DATA:
      return { type, streamId: hex(body.subarray(0, 8)), messageId: u32(body, 8), payload: hex(body.subarray(12)) };
    case TYPES.DATA_ACK:
      return { type, streamId: hex(body.subarray(0, 8)), messageId: u32(body, 8) };
    case TYPES.REKEY:
      return { type, newKeyId: u32(body, 0), newKey: hex(body.subarray(4)) };
    case TYPES.REKEY_ACK:
      return { type, newKeyId: u32(body, 0) };
    case TYPES.CONFIRM:
      return { type, keyId: u32(body, 0) };
    case TYPES.REKEY_DH:
      return { type, newKeyId: u32(body, 0), hubShare: hex(body.subarray(4)) };
    case TYPES.ENROL:
      return { type, hubStaticId: u32(body, 0), hubPublicKey: hex(body.subarray(4)) };
    case TYPES.ENROL_ACK:
      return { type, hubStaticId: u32(body, 0), devicePublicKey: hex(body.subarray(4)) };
    case TYPES.ERROR:
      return { type, code: u16(body, 0), detail: u32(body, 2) };
    default:
      return { type };
  }
}
