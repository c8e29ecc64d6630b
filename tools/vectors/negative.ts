/**
 * Negative vectors (docs/PROTOCOL.md Appendix A, docs/vectors/negative-vectors.json):
 * frames a receiver MUST reject, each with the local error code it must
 * report (modules/errors.ts) and the requirement it exercises
 * (tools/conformance/requirements.ts). Every case has exactly one thing
 * wrong; everything else is what the receiver expects in its state, so the
 * rejection can only be for the stated reason.
 *
 * The frames are built here byte by byte from the spec with @noble (raw
 * header, AES-256-CBC, HMAC-SHA-512), not with modules/protocol: most of
 * them are frames our own codec refuses to build.
 *
 * API (stable; the conformance kit feeds these as live input):
 *
 *   negativeVectors(session: NegativeSession): NegativeVector[]
 *
 *   session.receiver  'hub' | 'device': who is fed the frames.
 *   session.state     hub: 'awaitingHello' (a CHALLENGE was sent, nothing
 *                     authenticated yet) or 'established'; device:
 *                     'awaitingChallenge' (connected, nothing received),
 *                     'awaitingWelcome' (it sent its HELLO) or 'established'.
 *   session.deviceId  the device's 8-byte id.
 *   session.sessionId the session id (Nh) of the live connection (a device
 *                     awaitingChallenge: the nonce of the CHALLENGE cases).
 *   session.sequence  the receiver's next expected seq: the sender's next
 *                     seq (hub awaitingHello: 0; device awaitingWelcome: 1).
 *   session.sealKey   {id, key}: a key the receiver holds (hub: its active
 *                     or classic pending key; device: its active or future
 *                     key). Every "valid except for one thing" frame is
 *                     sealed under it with key id `id`.
 *   session.heldKeyIds every key id the receiver holds for the device (a
 *                     case names max + 1, which it does not hold).
 *   session.deviceNonce device awaitingWelcome: the Nd of the device's HELLO
 *                     (WELCOME cases echo it, or flip one bit of it). Else
 *                     optional (the HELLO cases of a hub use it as their Nd).
 *   session.helloKeyIds hub awaitingHello: the (active, future) ids of the
 *                     HELLO body; default (sealKey.id, 0).
 *   session.iv        optional (index) => 16-byte IV of the index-th sealed
 *                     case; default a fixed pattern (deterministic output).
 *   session.keyShare  optional 32-byte share for the KEY_SHARE cases (hub
 *                     receiver); default a fixed X25519 public key.
 *   session.dhPendingKeyId hub receivers holding a dh pending key (§11, HK8,
 *                     after its REKEY_DH): its id (also in heldKeyIds). Adds
 *                     frames under that id without a share (BAD_HEADER),
 *                     with a low-order share (BAD_KEY_SHARE) and with a
 *                     share that is not the device's (AUTH_FAILED).
 *
 *   NegativeVector: { name, requirement, expectedError, receiver, state,
 *     closes, dhOnly, description, wire }
 *     wire          the bytes to write on the stream: u16 length prefix ‖
 *                   frame; for an out-of-range prefix, the prefix followed
 *                   by exactly that many filler bytes, so a receiver that
 *                   skips them (§2) stays in step with the stream.
 *     expectedError the local error code the receiver reports.
 *     closes        true when the receiver ends the connection on this one
 *                   rejection (a hub before a HELLO authenticates, HS3, and
 *                   without recovery: with recovery configured (§12), the
 *                   HELLO cases failing at §4 step 3–5 get NO_KEY instead).
 *                   Otherwise the receiver keeps the session, and its
 *                   state (slots, seq, session) is unchanged: the next
 *                   valid frame with the same seq is accepted. It closes
 *                   after MAX_REJECTED_FRAMES (8) rejections in a row, so a
 *                   live feeder interleaves a valid frame (PING) every few.
 *     dhOnly        true for the KEY_SHARE cases fed to a hub: a hub that
 *                   does not implement the dh mode (§11) rejects them as
 *                   BAD_HEADER instead.
 *     requirement   the id of the requirement the case exercises
 *                   (tools/conformance/requirements.ts; NEGATIVE_REQUIREMENTS
 *                   maps each family of cases to it). Every case also
 *                   exercises W-CHECK-8 (a rejected frame changes nothing)
 *                   and W-CHECK-9 (nothing is answered).
 *
 * Feeding them live (the conformance kit): build the session from what the
 * connection has shown so far — Nh from the CHALLENGE, the seqs counted so
 * far, the keys the peer holds. A hub awaitingHello closes at the first
 * rejection (closes: true): one new connection per case, fed after its
 * CHALLENGE. In a session, write one case, then a valid frame with the
 * same seq (PING in a session; the WELCOME a device awaits): it must be
 * accepted (its answer shows it), which shows the case changed nothing;
 * the peer must not have answered the case itself. The codes are local:
 * over the wire a rejection shows only by these effects (§4).
 */
import { cbc } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { x25519 } from '@noble/curves/ed25519.js';
import type { ErrorCode } from '../../modules/errors';

export type NegativeReceiver = 'hub' | 'device';
export type NegativeReceiverState = 'awaitingHello' | 'established' | 'awaitingChallenge' | 'awaitingWelcome';

export interface NegativeSession {
  readonly receiver: NegativeReceiver;
  readonly state: NegativeReceiverState;
  readonly deviceId: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly sequence: number;
  readonly sealKey: { readonly id: number; readonly key: Uint8Array };
  readonly heldKeyIds: readonly number[];
  readonly deviceNonce?: Uint8Array;
  readonly helloKeyIds?: { readonly active: number; readonly future: number };
  readonly iv?: (index: number) => Uint8Array;
  readonly keyShare?: Uint8Array;
  readonly dhPendingKeyId?: number;
}

export interface NegativeVector {
  readonly name: string;
  readonly requirement: string;
  readonly expectedError: ErrorCode;
  readonly receiver: NegativeReceiver;
  readonly state: NegativeReceiverState;
  readonly closes: boolean;
  readonly dhOnly: boolean;
  readonly description: string;
  readonly wire: Uint8Array;
}

/**
 * What each family of cases exercises, as requirement ids of
 * tools/conformance/requirements.ts. One table, so a renumbering in the
 * catalogue is one edit here (tests check every id exists).
 */
export const NEGATIVE_REQUIREMENTS = {
  /** §2: an out-of-range length prefix is skipped and rejected. */
  frameLength: 'W-FRAME-3',
  /** §4: under the minimum FRAME_TOO_SHORT; a ciphertext length not a multiple of 16 AUTH_FAILED. */
  sealedLength: 'W-AEAD-5',
  version: 'W-HDR-1',
  type: 'W-HDR-2',
  /** A reflected frame. */
  direction: 'W-HDR-4',
  reservedFlags: 'W-HDR-5',
  /** KEY_SHARE on a hub → device frame. */
  shareDirection: 'W-HDR-6',
  /** §4 step 2: a type with no row in the receiver's state, or that never travels in that direction. */
  typeInState: 'W-CHECK-2',
  deviceId: 'W-CHECK-3',
  /** §4 step 3, before the HELLO binds the connection. */
  unknownDevice: 'H-CHECK-1',
  session: 'W-CHECK-4',
  sequence: 'W-CHECK-5',
  keyId: 'W-CHECK-6',
  /** The tag is verified (before anything is decrypted). */
  tag: 'W-AEAD-3',
  /** Tag, length and padding failures are the one AUTH_FAILED: no padding oracle. */
  padding: 'W-AEAD-4',
  body: 'W-MSG-1',
  rekeyAckId: 'W-MSG-2',
  confirmId: 'W-MSG-3',
  welcomeKeyId: 'W-MSG-4',
  welcomeNonce: 'D-SESSION-2',
  /** A CHALLENGE is 36 bytes, from the hub, key id 0, seq 0, device id zero (else BAD_HEADER). */
  challenge: 'D-SESSION-1',
  /** DATA is 12–1036 bytes. */
  dataPayload: 'W-MSG-1',
  /** §12.2: recovery frames have their exact length. */
  recoveryLength: 'W-REC-1',
  /** Key id 0 only in unsealed frames (the spec names no code for a NO_KEY with another; the reference answers BAD_HEADER). */
  recoveryKeyId: 'W-HDR-7',
  /** HK8: a frame under a dh pending id carries a share, else BAD_HEADER; a share that is not the device's does not open it. */
  dhShareMissing: 'H-DH-4',
  dhShareLowOrder: 'W-DH-2',
  dhShareForeign: 'H-DH-4',
} as const;
export type NegativeFamily = keyof typeof NEGATIVE_REQUIREMENTS;

// ---- The wire, from docs/PROTOCOL.md §2–§4 and §6 (independent of modules/protocol) ----

const T = {
  CHALLENGE: 0x01,
  HELLO: 0x02,
  WELCOME: 0x03,
  NO_KEY: 0x04,
  RECOVER_INIT: 0x05,
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

const FROM_HUB = 0x0001;
const KEY_SHARE = 0x0002;

interface RawHeader {
  readonly version?: number;
  readonly type: number;
  readonly flags: number;
  readonly deviceId: Uint8Array;
  readonly keyId: number;
  readonly sequence: number;
  readonly sessionId: Uint8Array;
  /** Bytes right after the 36 (the KEY_SHARE extension), part of the AAD. */
  readonly share?: Uint8Array;
}

function u32(n: number): Uint8Array {
  return Uint8Array.of((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function rawHeader(h: RawHeader): Uint8Array {
  const out = new Uint8Array(36);
  out[0] = h.version ?? 1;
  out[1] = h.type;
  out[2] = (h.flags >>> 8) & 0xff;
  out[3] = h.flags & 0xff;
  out.set(h.deviceId, 4);
  out.set(u32(h.keyId), 12);
  out.set(u32(h.sequence), 16);
  out.set(h.sessionId, 20);
  return h.share === undefined ? out : concat(out, h.share);
}

/** The tag of §4: HMAC-SHA-512(MAC_KEY, A ‖ IV ‖ E ‖ AL), first 32 bytes. */
function tagOf(key: Uint8Array, aad: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const al = new Uint8Array(8);
  const bits = aad.length * 8;
  al[6] = (bits >>> 8) & 0xff;
  al[7] = bits & 0xff;
  return hmac(sha512, key.subarray(0, 32), concat(aad, iv, ciphertext, al)).subarray(0, 32);
}

/**
 * A sealed frame: aad ‖ IV ‖ E ‖ T. `padded` false encrypts `plaintext`
 * as it is (its length a multiple of 16), so the last block may decrypt to
 * anything — the tag is still computed properly over it.
 */
function seal(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, padded = true): Uint8Array {
  const ciphertext = cbc(key.subarray(32, 64), iv, { disablePadding: !padded }).encrypt(plaintext);
  return concat(aad, iv, ciphertext, tagOf(key, aad, iv, ciphertext));
}

/** A frame with a tag computed over an arbitrary `ciphertext` (any length). */
function withTag(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  return concat(aad, iv, ciphertext, tagOf(key, aad, iv, ciphertext));
}

function prefixed(frame: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(frame.length >>> 8, frame.length & 0xff), frame);
}

/** The prefix `length` followed by `length` filler bytes (the receiver skips them without allocating, §2). */
function declared(length: number): Uint8Array {
  const out = new Uint8Array(2 + length);
  out[0] = length >>> 8;
  out[1] = length & 0xff;
  out.fill(0x5a, 2);
  return out;
}

function flipBit(bytes: Uint8Array, at: number, mask = 0x01): Uint8Array {
  const out = bytes.slice();
  out[at] = (out[at] as number) ^ mask;
  return out;
}

/** Bodies (§6). */
const body = {
  hello: (nonce: Uint8Array, active: number, future: number) => concat(nonce, u32(active), u32(future)),
  welcome: (nonce: Uint8Array, keyId: number) => concat(nonce, u32(keyId)),
  data: (stream: Uint8Array, messageId: number, payload: Uint8Array) => concat(stream, u32(messageId), payload),
  dataAck: (stream: Uint8Array, messageId: number) => concat(stream, u32(messageId)),
  id: (id: number) => u32(id),
  error: (code: number, detail: number) => concat(Uint8Array.of(code >>> 8, code & 0xff), u32(detail)),
};

const STREAM = Uint8Array.from([0x4e, 0x45, 0x47, 0x41, 0x54, 0x49, 0x56, 0x45]); // "NEGATIVE"
/** The X25519 public key of the private key 0x70 0x71 … 0x8f: a fixed, valid share for the KEY_SHARE cases. */
const DEFAULT_SHARE = x25519.getPublicKey(Uint8Array.from({ length: 32 }, (_, i) => 0x70 + i));

/** Low-order X25519 points (RFC 7748 §6.1; the list of Curve25519 small-order points): u = 0 and a point of order 8. */
const LOW_ORDER_SHARES: readonly [string, Uint8Array][] = [
  ['u = 0', new Uint8Array(32)],
  ['of order 8', Uint8Array.from([0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00])],
];

function defaultIv(index: number): Uint8Array {
  return Uint8Array.from({ length: 16 }, (_, i) => (0xe0 + index * 3 + i) & 0xff);
}

/**
 * The negative cases for one receiver in one state (see the API at the top
 * of the file). Deterministic for given inputs.
 */
export function negativeVectors(session: NegativeSession): NegativeVector[] {
  checkSession(session);
  const { receiver, state, deviceId, sessionId, sequence, sealKey } = session;
  const hub = receiver === 'hub';
  const out: NegativeVector[] = [];
  let ivIndex = 0;
  const nextIv = () => (session.iv ?? defaultIv)(ivIndex++);
  // The sender's direction bit: a device writes to a hub, a hub to a device.
  const senderFlags = hub ? 0 : FROM_HUB;
  const closes = hub && state === 'awaitingHello';
  const add = (family: NegativeFamily, name: string, expectedError: ErrorCode, description: string, wire: Uint8Array, extra: { dhOnly?: boolean; closes?: boolean } = {}) => {
    out.push({ name, requirement: NEGATIVE_REQUIREMENTS[family], expectedError, receiver, state, closes: extra.closes ?? closes, dhOnly: extra.dhOnly ?? false, description, wire });
  };
  const header = (over: Partial<RawHeader> & { type: number }): RawHeader => ({ flags: senderFlags, deviceId, keyId: sealKey.id, sequence, sessionId, ...over });
  const sealed = (h: RawHeader, plaintext: Uint8Array) => prefixed(seal(sealKey.key, nextIv(), rawHeader(h), plaintext));
  const nonce = session.deviceNonce ?? Uint8Array.from({ length: 16 }, (_, i) => 0xd0 + i);
  if (state === 'awaitingChallenge') {
    challengeCases(session, add, (h, plaintext) => sealed(h, plaintext));
    return out;
  }

  // The one frame the receiver accepts in its state, from which most cases differ in one thing.
  const valid = ((): { type: number; plaintext: Uint8Array } => {
    if (state === 'awaitingHello') return { type: T.HELLO, plaintext: body.hello(nonce, session.helloKeyIds?.active ?? sealKey.id, session.helloKeyIds?.future ?? 0) };
    if (state === 'awaitingWelcome') return { type: T.WELCOME, plaintext: body.welcome(nonce, sealKey.id) };
    return { type: T.PING, plaintext: new Uint8Array(0) };
  })();
  const validName = state === 'awaitingHello' ? 'HELLO' : state === 'awaitingWelcome' ? 'WELCOME' : 'PING';
  const validFrame = (over: Partial<RawHeader> = {}) => seal(sealKey.key, nextIv(), rawHeader(header({ type: valid.type, ...over })), valid.plaintext);

  // ---- §2 framing: the length prefix ----
  add('frameLength', 'length prefix 0', 'FRAME_TOO_SHORT', 'u16 length 0 (< 36): nothing to allocate, nothing to skip', declared(0));
  add('frameLength', 'length prefix 35', 'FRAME_TOO_SHORT', 'u16 length 35 (< 36): skipped without allocating', declared(35));
  add('frameLength', 'length prefix 1281', 'FRAME_TOO_LONG', 'u16 length 1281 (> 1280): skipped without allocating', declared(1281));

  // ---- §3 header fields ----
  for (const version of [0x00, 0x02]) {
    add('version', `version 0x0${version}`, 'BAD_VERSION', `a ${validName} valid but for the version byte`, prefixed(validFrame({ version })));
  }
  for (const type of [0x09, 0x26, 0xff]) {
    add('type', `unknown type 0x${type.toString(16).padStart(2, '0')}`, 'UNKNOWN_TYPE', `the ${validName} frame with type 0x${type.toString(16)}`, prefixed(validFrame({ type })));
  }
  for (const flag of [0x0004, 0x8000]) {
    add('reservedFlags', `reserved flag 0x${flag.toString(16).padStart(4, '0')}`, 'BAD_HEADER', `a ${validName} with a reserved flag bit set (tag valid)`, prefixed(validFrame({ flags: senderFlags | flag })));
  }
  // The direction bit of the receiver's own sending direction: a reflected frame.
  // The type is one the receiver takes in its state, so only the bit is wrong (§4 step 2 names both checks).
  add('direction', `direction bit of a ${hub ? 'hub' : 'device'} frame`, 'BAD_HEADER', `a ${validName} sealed properly but with the direction bit saying it travels ${hub ? 'hub → device' : 'device → hub'} (a reflection)`, prefixed(validFrame({ flags: senderFlags ^ FROM_HUB })));
  if (!hub) {
    add('shareDirection', 'KEY_SHARE on a hub frame', 'BAD_HEADER', `a ${validName} with flag bit 1 and a 32-byte share after the header (sealed over both)`, prefixed(validFrame({ flags: FROM_HUB | KEY_SHARE, share: DEFAULT_SHARE })));
  }

  // ---- §4 step 2: a type the receiver does not take in its state, with a correct direction bit ----
  if (hub) {
    if (state === 'established') {
      add('typeInState', 'hub-only type WELCOME from a device', 'UNEXPECTED_MESSAGE', 'a WELCOME, direction bit clear, sealed properly', sealed(header({ type: T.WELCOME }), body.welcome(nonce, sealKey.id)));
      add('typeInState', 'hub-only type REKEY from a device', 'UNEXPECTED_MESSAGE', 'a REKEY(id + 1, key), direction bit clear, sealed properly', sealed(header({ type: T.REKEY }), concat(u32(sealKey.id + 1), new Uint8Array(64).fill(0x33))));
      add('typeInState', 'hub-only type CONFIRM from a device', 'UNEXPECTED_MESSAGE', 'a CONFIRM(key id), direction bit clear, sealed properly', sealed(header({ type: T.CONFIRM }), body.id(sealKey.id)));
      add('typeInState', 'HELLO in an established session', 'UNEXPECTED_MESSAGE', 'a second HELLO in the session (seq as expected)', sealed(header({ type: T.HELLO }), body.hello(nonce, sealKey.id, 0)));
    } else {
      add('typeInState', 'DATA before the HELLO', 'UNEXPECTED_MESSAGE', 'a DATA as the first frame (seq 0), sealed properly', sealed(header({ type: T.DATA }), body.data(STREAM, 1, new Uint8Array(0))));
      add('typeInState', 'hub-only type WELCOME from a device', 'UNEXPECTED_MESSAGE', 'a WELCOME as the first frame, direction bit clear, sealed properly', sealed(header({ type: T.WELCOME }), body.welcome(nonce, sealKey.id)));
    }
  } else if (state === 'established') {
    add('typeInState', 'device-only type HELLO from a hub', 'UNEXPECTED_MESSAGE', 'a HELLO, direction bit set, sealed properly', sealed(header({ type: T.HELLO }), body.hello(nonce, sealKey.id, 0)));
    add('typeInState', 'device-only type REKEY_ACK from a hub', 'UNEXPECTED_MESSAGE', 'a REKEY_ACK(key id), direction bit set, sealed properly', sealed(header({ type: T.REKEY_ACK }), body.id(sealKey.id)));
    add('typeInState', 'device-only type ENROL_ACK from a hub', 'UNEXPECTED_MESSAGE', 'an ENROL_ACK, direction bit set, sealed properly', sealed(header({ type: T.ENROL_ACK }), concat(u32(1), DEFAULT_SHARE)));
    add('typeInState', 'WELCOME in an established session', 'UNEXPECTED_MESSAGE', 'a second WELCOME (seq as expected), sealed properly', sealed(header({ type: T.WELCOME }), body.welcome(nonce, sealKey.id)));
    add('typeInState', 'CHALLENGE in an established session', 'UNEXPECTED_MESSAGE', 'a CHALLENGE (36 bytes, unsealed) in the session', prefixed(rawHeader({ type: T.CHALLENGE, flags: FROM_HUB, deviceId: new Uint8Array(8), keyId: 0, sequence: 0, sessionId })));
  } else {
    add('typeInState', 'DATA before the WELCOME', 'UNEXPECTED_MESSAGE', 'a DATA as the hub\'s seq 1, sealed properly', sealed(header({ type: T.DATA }), body.data(STREAM, 1, new Uint8Array(0))));
    add('typeInState', 'CONFIRM before the WELCOME', 'UNEXPECTED_MESSAGE', 'a CONFIRM(key id) as the hub\'s seq 1, sealed properly', sealed(header({ type: T.CONFIRM }), body.id(sealKey.id)));
  }

  // ---- §4 step 3: device, session, seq ----
  const otherDevice = flipBit(deviceId, 7);
  if (hub && state === 'awaitingHello') {
    add('unknownDevice', 'HELLO of an unknown device', 'UNKNOWN_DEVICE', 'a HELLO naming a device id the hub does not know (last bit flipped), sealed under the key', prefixed(validFrame({ deviceId: otherDevice })));
  } else {
    add('deviceId', 'another device id', 'BAD_HEADER', `a ${validName} naming another device (last bit of the id flipped), sealed properly`, prefixed(validFrame({ deviceId: otherDevice })));
  }
  add('session', 'wrong session id', 'BAD_SESSION', `a ${validName} with the session id's last bit flipped (a frame of another connection)`, prefixed(validFrame({ sessionId: flipBit(sessionId, 15) })));
  add('session', 'zero session id', 'BAD_SESSION', `a ${validName} with an all-zero session id`, prefixed(validFrame({ sessionId: new Uint8Array(16) })));
  if (sequence > 0) add('sequence', 'seq replayed', 'BAD_SEQUENCE', `a ${validName} with seq = expected − 1 (a replay)`, prefixed(validFrame({ sequence: sequence - 1 })));
  add('sequence', 'seq skipped', 'BAD_SEQUENCE', `a ${validName} with seq = expected + 1 (one frame deleted)`, prefixed(validFrame({ sequence: sequence + 1 })));
  add('sequence', 'seq far ahead', 'BAD_SEQUENCE', `a ${validName} with seq = expected + 0x10000`, prefixed(validFrame({ sequence: (sequence + 0x10000) >>> 0 })));

  // ---- §4 step 4: the key id ----
  const unknownId = Math.max(...session.heldKeyIds) + 1;
  add('keyId', 'unknown key id', 'UNKNOWN_KEY_ID', `a ${validName} naming key id ${unknownId} (held: ${session.heldKeyIds.join(', ')}), sealed under the held key's bytes`, prefixed(validFrame({ keyId: unknownId })));

  // ---- §4 step 5: tag, ciphertext length, padding: all AUTH_FAILED ----
  const good = validFrame();
  add('tag', 'tag bit flipped', 'AUTH_FAILED', `a ${validName} with the last bit of its tag flipped`, prefixed(flipBit(good, good.length - 1)));
  add('tag', 'tag first bit flipped', 'AUTH_FAILED', `a ${validName} with the first bit of its tag flipped`, prefixed(flipBit(good, good.length - 32, 0x80)));
  add('tag', 'ciphertext bit flipped', 'AUTH_FAILED', `a ${validName} with one bit of its ciphertext flipped (tag unchanged)`, prefixed(flipBit(good, 36 + 16)));
  add('tag', 'IV bit flipped', 'AUTH_FAILED', `a ${validName} with one bit of its IV flipped (tag unchanged)`, prefixed(flipBit(good, 36)));
  add('tag', 'tag under another key', 'AUTH_FAILED', `a ${validName} sealed under other bytes with the held key's id`, prefixed(seal(flipBit(sealKey.key, 0), nextIv(), rawHeader(header({ type: valid.type })), valid.plaintext)));
  {
    const h = rawHeader(header({ type: valid.type }));
    // Plaintexts of one block whose last byte is not PKCS#7 padding, encrypted as they are, with a valid tag.
    const block = (last: number, before = 0x00) => {
      const p = new Uint8Array(16).fill(before);
      p[15] = last;
      return p;
    };
    add('padding', 'bad padding 0x00 under a valid tag', 'AUTH_FAILED', 'one ciphertext block whose plaintext ends in 0x00 (no PKCS#7 padding); the tag is valid: padding is checked after it, as AUTH_FAILED too', prefixed(seal(sealKey.key, nextIv(), h, block(0x00), false)));
    add('padding', 'bad padding 0x11 under a valid tag', 'AUTH_FAILED', 'one block ending in 0x11 (more than a block of padding); valid tag', prefixed(seal(sealKey.key, nextIv(), h, block(0x11), false)));
    add('padding', 'bad padding 0x02 0x03 under a valid tag', 'AUTH_FAILED', 'one block ending in 0x03 0x02 (inconsistent padding bytes); valid tag', prefixed(seal(sealKey.key, nextIv(), h, block(0x02, 0x03), false)));
    const badBoth = seal(sealKey.key, nextIv(), h, block(0x00), false);
    add('padding', 'bad padding and bad tag', 'AUTH_FAILED', 'bad padding (0x00) and a flipped tag bit: a receiver that checks padding first would answer differently (a padding oracle)', prefixed(flipBit(badBoth, badBoth.length - 1)));
    // Ciphertext lengths that are no multiple of 16, with a tag computed over them (so only the length is wrong).
    for (const length of [17, 31]) {
      const iv = nextIv();
      add('sealedLength', `ciphertext of ${length} bytes`, 'AUTH_FAILED', `E of ${length} bytes (frame length − 84 not a multiple of 16), tag valid over it`, prefixed(withTag(sealKey.key, iv, h, new Uint8Array(length).fill(0xc3))));
    }
  }

  // ---- §4: sealed frames under the minimum ----
  {
    const h = rawHeader(header({ type: valid.type }));
    add('sealedLength', 'sealed frame of 84 bytes', 'FRAME_TOO_SHORT', 'header ‖ IV ‖ tag, no ciphertext block (< 100 bytes)', prefixed(concat(h, nextIv(), new Uint8Array(32).fill(0x77))));
    add('sealedLength', 'sealed frame of 99 bytes', 'FRAME_TOO_SHORT', 'header ‖ IV ‖ 15 bytes ‖ tag (< 100 bytes)', prefixed(withTag(sealKey.key, nextIv(), h, new Uint8Array(15).fill(0xc3))));
    add('sealedLength', `sealed type as a bare header`, 'FRAME_TOO_SHORT', `a 36-byte ${validName} (header only)`, prefixed(h));
  }
  if (hub) {
    // §11.2: a frame with a share is header ‖ D ‖ IV ‖ E ‖ T, at least 132 bytes, length − 116 a multiple of 16. Under a key the hub holds the share is authenticated and ignored.
    const share = session.keyShare ?? DEFAULT_SHARE;
    const h = rawHeader(header({ type: valid.type, flags: KEY_SHARE, share }));
    add('sealedLength', 'ciphertext of 17 bytes after a share', 'AUTH_FAILED', 'a frame with a KEY_SHARE whose E is 17 bytes (length − 116 not a multiple of 16), tag valid over header ‖ share', prefixed(withTag(sealKey.key, nextIv(), h, new Uint8Array(17).fill(0xc3))), { dhOnly: true });
    add('sealedLength', 'share frame of 116 bytes', 'FRAME_TOO_SHORT', 'header ‖ share ‖ IV ‖ tag with no ciphertext (< 132 bytes)', prefixed(concat(h, nextIv(), new Uint8Array(32).fill(0x77))), { dhOnly: true });
    add('sealedLength', 'share flag, frame too short for the share', 'FRAME_TOO_SHORT', 'flag bit 1 set on a 60-byte frame: the share itself is cut short', prefixed(rawHeader(header({ type: valid.type, flags: KEY_SHARE, share: share.subarray(0, 24) }))), { dhOnly: true });
  }

  // ---- §11.2, HK8: frames under a dh pending key, which the hub derives from the frame's share ----
  if (hub && session.dhPendingKeyId !== undefined) {
    const pendingId = session.dhPendingKeyId;
    const under = (share: Uint8Array | undefined) => prefixed(seal(sealKey.key, nextIv(), rawHeader(header({ type: valid.type, keyId: pendingId, ...(share === undefined ? {} : { flags: KEY_SHARE, share }) })), valid.plaintext));
    add('dhShareMissing', 'no share under the dh pending key', 'BAD_HEADER', `a ${validName} under the dh pending key id ${pendingId} without a KEY_SHARE: the hub cannot derive the key`, under(undefined), { dhOnly: true });
    for (const [what, share] of LOW_ORDER_SHARES) {
      add('dhShareLowOrder', `low-order share (${what}) under the dh pending key`, 'BAD_KEY_SHARE', `a ${validName} under key id ${pendingId} whose share is the low-order point ${what}: X25519 gives all zero (RFC 7748 §6.1)`, under(share), { dhOnly: true });
    }
    add('dhShareForeign', 'another share under the dh pending key', 'AUTH_FAILED', `a ${validName} under key id ${pendingId} with a valid share that is not the one the frame's key came from: the derived key does not open it`, under(session.keyShare ?? DEFAULT_SHARE), { dhOnly: true });
  }

  // ---- §4 step 6 and §6: bodies of the wrong length or content, under a valid tag ----
  const wrongBodies: [string, number, Uint8Array][] = [];
  if (state === 'awaitingHello') {
    wrongBodies.push(['HELLO of 23 bytes', T.HELLO, valid.plaintext.subarray(0, 23)], ['HELLO of 25 bytes', T.HELLO, concat(valid.plaintext, Uint8Array.of(0))]);
  } else if (state === 'awaitingWelcome') {
    wrongBodies.push(['WELCOME of 19 bytes', T.WELCOME, valid.plaintext.subarray(0, 19)], ['WELCOME of 21 bytes', T.WELCOME, concat(valid.plaintext, Uint8Array.of(0))]);
  } else {
    wrongBodies.push(
      ['DATA of 11 bytes', T.DATA, body.data(STREAM, 1, new Uint8Array(0)).subarray(0, 11)],
      ['DATA_ACK of 11 bytes', T.DATA_ACK, body.dataAck(STREAM, 1).subarray(0, 11)],
      ['DATA_ACK of 13 bytes', T.DATA_ACK, concat(body.dataAck(STREAM, 1), Uint8Array.of(0))],
      ['PING of 1 byte', T.PING, Uint8Array.of(0)],
      ['PONG of 1 byte', T.PONG, Uint8Array.of(0)],
      ['ERROR of 5 bytes', T.ERROR, body.error(1, 0).subarray(0, 5)],
      ['ERROR of 7 bytes', T.ERROR, concat(body.error(1, 0), Uint8Array.of(0))],
    );
    if (hub) {
      wrongBodies.push(['REKEY_ACK of 3 bytes', T.REKEY_ACK, body.id(sealKey.id).subarray(0, 3)], ['REKEY_ACK of 5 bytes', T.REKEY_ACK, concat(body.id(sealKey.id), Uint8Array.of(0))], ['ENROL_ACK of 35 bytes', T.ENROL_ACK, concat(u32(1), DEFAULT_SHARE).subarray(0, 35)]);
    } else {
      wrongBodies.push(
        ['REKEY of 67 bytes', T.REKEY, concat(u32(sealKey.id + 1), new Uint8Array(63).fill(0x33))],
        ['REKEY of 69 bytes', T.REKEY, concat(u32(sealKey.id + 1), new Uint8Array(65).fill(0x33))],
        ['REKEY_DH of 35 bytes', T.REKEY_DH, concat(u32(sealKey.id + 1), DEFAULT_SHARE.subarray(0, 31))],
        ['CONFIRM of 3 bytes', T.CONFIRM, body.id(sealKey.id).subarray(0, 3)],
        ['CONFIRM of 5 bytes', T.CONFIRM, concat(body.id(sealKey.id), Uint8Array.of(0))],
        ['ENROL of 37 bytes', T.ENROL, concat(u32(1), DEFAULT_SHARE, Uint8Array.of(0))],
      );
    }
  }
  for (const [name, type, plaintext] of wrongBodies) {
    add('body', name, 'BAD_PAYLOAD', `${name.split(' ')[0]} sealed properly with a body of the wrong length`, sealed(header({ type }), plaintext));
  }
  if (state === 'established') {
    add('dataPayload', 'DATA with a 1025-byte payload', 'BAD_PAYLOAD', 'a DATA whose payload is one byte over 1024 (body 1037 bytes), sealed properly', sealed(header({ type: T.DATA }), body.data(STREAM, 1, new Uint8Array(1025).fill(0x61))));
    if (hub) add('rekeyAckId', 'REKEY_ACK id ≠ header key id', 'BAD_PAYLOAD', `a REKEY_ACK(${sealKey.id + 1}) sealed under key id ${sealKey.id}`, sealed(header({ type: T.REKEY_ACK }), body.id(sealKey.id + 1)));
    else add('confirmId', 'CONFIRM id ≠ header key id', 'BAD_PAYLOAD', `a CONFIRM(${sealKey.id + 1}) sealed under key id ${sealKey.id}`, sealed(header({ type: T.CONFIRM }), body.id(sealKey.id + 1)));
  }
  if (state === 'awaitingWelcome') {
    add('welcomeNonce', 'WELCOME echoing the wrong Nd', 'BAD_SESSION', 'a WELCOME whose echoed device nonce has its last bit flipped, sealed properly', sealed(header({ type: T.WELCOME }), body.welcome(flipBit(nonce, 15), sealKey.id)));
    add('welcomeKeyId', 'WELCOME key id ≠ header key id', 'BAD_PAYLOAD', `a WELCOME whose body names key id ${sealKey.id + 1}, sealed under ${sealKey.id}`, sealed(header({ type: T.WELCOME }), body.welcome(nonce, sealKey.id + 1)));
    // §12.2: NO_KEY is a bare header, key id 0, no share.
    const noKey = rawHeader({ type: T.NO_KEY, flags: FROM_HUB, deviceId, keyId: 0, sequence, sessionId });
    add('recoveryLength', 'NO_KEY with a body', 'BAD_PAYLOAD', 'a NO_KEY of 37 bytes (its exact length is 36)', prefixed(concat(noKey, Uint8Array.of(0))));
    add('recoveryKeyId', 'NO_KEY with a key id', 'BAD_HEADER', `a NO_KEY naming key id ${sealKey.id} (recovery frames carry key id 0)`, prefixed(rawHeader({ type: T.NO_KEY, flags: FROM_HUB, deviceId, keyId: sealKey.id, sequence, sessionId })));
  }
  return out;
}

type Add = (family: NegativeFamily, name: string, expectedError: ErrorCode, description: string, wire: Uint8Array) => void;

/** A device before its CHALLENGE (§6.1, D-SESSION-1): the CHALLENGE is unsealed, so its cases are its own. */
function challengeCases(session: NegativeSession, add: Add, sealed: (h: RawHeader, plaintext: Uint8Array) => Uint8Array): void {
  const zero = new Uint8Array(8);
  const challenge = (over: Partial<RawHeader> = {}) => rawHeader({ type: T.CHALLENGE, flags: FROM_HUB, deviceId: zero, keyId: 0, sequence: 0, sessionId: session.sessionId, ...over });
  add('frameLength', 'length prefix 0', 'FRAME_TOO_SHORT', 'u16 length 0 (< 36): nothing to allocate, nothing to skip', declared(0));
  add('frameLength', 'length prefix 35', 'FRAME_TOO_SHORT', 'u16 length 35 (< 36): skipped without allocating', declared(35));
  add('frameLength', 'length prefix 1281', 'FRAME_TOO_LONG', 'u16 length 1281 (> 1280): skipped without allocating', declared(1281));
  for (const version of [0x00, 0x02]) add('version', `version 0x0${version}`, 'BAD_VERSION', 'a CHALLENGE valid but for the version byte', prefixed(challenge({ version })));
  for (const type of [0x09, 0x26, 0xff]) add('type', `unknown type 0x${type.toString(16).padStart(2, '0')}`, 'UNKNOWN_TYPE', `a CHALLENGE with type 0x${type.toString(16)}`, prefixed(challenge({ type })));
  for (const flag of [0x0004, 0x8000]) add('reservedFlags', `reserved flag 0x${flag.toString(16).padStart(4, '0')}`, 'BAD_HEADER', 'a CHALLENGE with a reserved flag bit set', prefixed(challenge({ flags: FROM_HUB | flag })));
  add('direction', 'direction bit of a device frame', 'BAD_HEADER', 'a CHALLENGE with the direction bit clear (a device frame)', prefixed(challenge({ flags: 0 })));
  add('shareDirection', 'KEY_SHARE on a CHALLENGE', 'BAD_HEADER', 'a CHALLENGE with flag bit 1 and 32 bytes after the header', prefixed(challenge({ flags: FROM_HUB | KEY_SHARE, share: DEFAULT_SHARE })));
  add('challenge', 'CHALLENGE of 37 bytes', 'BAD_HEADER', 'a CHALLENGE with one byte after the header (it is exactly 36)', prefixed(concat(challenge(), Uint8Array.of(0))));
  add('challenge', 'CHALLENGE with a key id', 'BAD_HEADER', `a CHALLENGE naming key id ${session.sealKey.id} (it carries 0)`, prefixed(challenge({ keyId: session.sealKey.id })));
  add('challenge', 'CHALLENGE with seq 1', 'BAD_HEADER', 'a CHALLENGE with seq 1 (it is the hub\'s seq 0)', prefixed(challenge({ sequence: 1 })));
  add('challenge', 'CHALLENGE with a device id', 'BAD_HEADER', 'a CHALLENGE naming the device (its device id is all zero)', prefixed(challenge({ deviceId: session.deviceId })));
  add('typeInState', 'WELCOME before the CHALLENGE', 'UNEXPECTED_MESSAGE', 'a WELCOME sealed properly under the key, as the first frame', sealed({ type: T.WELCOME, flags: FROM_HUB, deviceId: session.deviceId, keyId: session.sealKey.id, sequence: 1, sessionId: session.sessionId }, body.welcome(new Uint8Array(16), session.sealKey.id)));
  add('typeInState', 'NO_KEY before the CHALLENGE', 'UNEXPECTED_MESSAGE', 'a NO_KEY (36 bytes) as the first frame', prefixed(rawHeader({ type: T.NO_KEY, flags: FROM_HUB, deviceId: session.deviceId, keyId: 0, sequence: 1, sessionId: session.sessionId })));
}

function checkSession(session: NegativeSession): void {
  const bad = (why: string) => new Error(`negativeVectors: ${why}`);
  if (session.receiver === 'hub' ? session.state !== 'awaitingHello' && session.state !== 'established' : session.state !== 'awaitingChallenge' && session.state !== 'awaitingWelcome' && session.state !== 'established') {
    throw bad(`no cases for a ${session.receiver} in ${session.state}`);
  }
  if (session.deviceId.length !== 8 || session.sessionId.length !== 16) throw bad('device id is 8 bytes, session id 16');
  if (session.sealKey.key.length !== 64 || !Number.isInteger(session.sealKey.id) || session.sealKey.id < 1) throw bad('sealKey is a held key id ≥ 1 and 64 bytes');
  if (!session.heldKeyIds.includes(session.sealKey.id)) throw bad('sealKey must be a key the receiver holds');
  if (!Number.isInteger(session.sequence) || session.sequence < 0 || session.sequence >= 0xffff0000) throw bad('sequence is a u32 with room after it');
  if (session.state === 'awaitingWelcome' && session.deviceNonce === undefined) throw bad('a device awaiting its WELCOME needs the Nd of its HELLO');
  if (session.deviceNonce !== undefined && session.deviceNonce.length !== 16) throw bad('the device nonce is 16 bytes');
  if (session.keyShare !== undefined && session.keyShare.length !== 32) throw bad('a key share is 32 bytes');
  if (session.dhPendingKeyId !== undefined && (session.receiver !== 'hub' || !session.heldKeyIds.includes(session.dhPendingKeyId) || session.dhPendingKeyId === session.sealKey.id)) {
    throw bad('a dh pending key id is a hub\'s, among heldKeyIds, and not the seal key');
  }
}
