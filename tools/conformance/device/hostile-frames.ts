/**
 * Malformed hub → device frames for a live session, each with the local
 * error a compliant device reports for it (docs/PROTOCOL.md §2–§4, §9): the
 * device must send nothing in answer, change nothing, and close only after
 * the stated number of rejections in a row. Built for the session's own
 * parameters (device id, Nh, the hub's next seq, the device's keys), so each
 * fails exactly the check it is named for and passes every earlier one.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { nodeAead } from '../../../hosts/node/crypto';
import { encodeHeader, FLAG_KEY_SHARE } from '../../../modules/protocol/header';
import { MessageType, type MessageType as MessageTypeValue } from '../../../modules/protocol/constants';
import { withLengthPrefix } from '../../../modules/protocol/framing';
import type { KitSession } from './session';

export interface HostileFrame {
  readonly name: string;
  /** The local error a compliant device reports (§9). */
  readonly error: string;
  /** The requirement that says it is rejected (tools/conformance/requirements.ts). */
  readonly requirement: string;
  /** Wire bytes, length prefix included. */
  readonly wire: Uint8Array;
}

function header(session: KitSession, type: MessageTypeValue, keyId: number, overrides: { sequence?: number; fromHub?: boolean; sessionId?: Uint8Array; deviceId?: Uint8Array } = {}): Uint8Array {
  return encodeHeader({
    type,
    fromHub: overrides.fromHub ?? true,
    deviceId: overrides.deviceId ?? session.book.deviceId,
    keyId,
    sequence: overrides.sequence ?? session.hubSeq,
    sessionId: overrides.sessionId ?? session.hubNonce,
  });
}

/** header ‖ IV ‖ AEAD(body) with a valid tag: any body, so authenticated-but-invalid bodies can be sent. */
function sealBody(key: Uint8Array, aad: Uint8Array, body: Uint8Array): Uint8Array {
  const iv = new Uint8Array(randomBytes(16));
  const sealed = nodeAead.seal(key, iv, aad, body);
  return withLengthPrefix(concat([aad, iv, sealed]));
}

/** header ‖ IV ‖ CBC(blocks) ‖ a valid tag, the blocks *not* PKCS#7-padded: a padding error behind a good tag. */
function sealUnpadded(key: Uint8Array, aad: Uint8Array, blocks: Uint8Array): Uint8Array {
  const iv = new Uint8Array(randomBytes(16));
  const cipher = createCipheriv('aes-256-cbc', key.subarray(32, 64), iv).setAutoPadding(false);
  const ciphertext = new Uint8Array(Buffer.concat([cipher.update(blocks), cipher.final()]));
  const al = new Uint8Array(8);
  new DataView(al.buffer).setUint32(4, aad.length * 8);
  const tag = new Uint8Array(createHmac('sha512', key.subarray(0, 32)).update(aad).update(iv).update(ciphertext).update(al).digest()).subarray(0, 32);
  return withLengthPrefix(concat([aad, iv, ciphertext, tag]));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Every malformed frame, for the session's next hub seq, under the hub's
 * active key `keyId`. None advances the device's expected seq, so they can
 * be sent in a row; the caller keeps each run below the rejection limit.
 */
export function hostileFrames(session: KitSession, keyId: number): HostileFrame[] {
  const key = session.book.key(keyId);
  if (key === undefined) throw new Error(`no key ${keyId}`);
  const ping = (h: Uint8Array) => sealBody(key, h, new Uint8Array(0));
  const good = ping(header(session, MessageType.PING, keyId));
  const flip = (wire: Uint8Array, at: number, mask = 0x01) => {
    const copy = wire.slice();
    copy[at] = (copy[at] as number) ^ mask;
    return copy;
  };
  const tooLong = new Uint8Array(2 + 1300);
  tooLong[0] = 1300 >> 8;
  tooLong[1] = 1300 & 0xff;
  const tooShort = new Uint8Array(2 + 20);
  tooShort[1] = 20;
  const truncated = withLengthPrefix(good.subarray(2, good.length - 1));
  const shareFlag = header(session, MessageType.PING, keyId);
  new DataView(shareFlag.buffer).setUint16(2, 0x0001 | FLAG_KEY_SHARE);
  const reserved = header(session, MessageType.PING, keyId);
  new DataView(reserved.buffer).setUint16(2, 0x0001 | 0x0004);
  const badVersion = header(session, MessageType.PING, keyId);
  badVersion[0] = 2;
  const unknownType = header(session, MessageType.PING, keyId);
  unknownType[1] = 0x7e;
  const otherKey = new Uint8Array(randomBytes(64));
  const confirmBody = new Uint8Array(4);
  new DataView(confirmBody.buffer).setUint32(0, keyId + 7);
  return [
    { name: 'a bad tag', requirement: 'W-AEAD-4', error: 'AUTH_FAILED', wire: flip(good, good.length - 1) },
    { name: 'a flipped ciphertext bit', requirement: 'W-AEAD-4', error: 'AUTH_FAILED', wire: flip(good, 2 + 36 + 16) },
    { name: 'sealed under another key than the one named', requirement: 'W-AEAD-4', error: 'AUTH_FAILED', wire: sealBody(otherKey, header(session, MessageType.PING, keyId), new Uint8Array(0)) },
    { name: 'bad padding behind a valid tag', requirement: 'W-AEAD-4', error: 'AUTH_FAILED', wire: sealUnpadded(key, header(session, MessageType.PING, keyId), new Uint8Array(16).fill(0x11)) },
    { name: 'a sealed length that is not 84 + 16k', requirement: 'W-AEAD-5', error: 'AUTH_FAILED', wire: truncated },
    { name: 'the device → hub direction bit (a reflected frame)', requirement: 'W-HDR-4', error: 'BAD_HEADER', wire: ping(header(session, MessageType.PING, keyId, { fromHub: false })) },
    { name: 'a replayed seq', requirement: 'W-CHECK-5', error: 'BAD_SEQUENCE', wire: ping(header(session, MessageType.PING, keyId, { sequence: session.hubSeq - 1 })) },
    { name: 'a seq one ahead (a deleted frame)', requirement: 'W-CHECK-5', error: 'BAD_SEQUENCE', wire: ping(header(session, MessageType.PING, keyId, { sequence: session.hubSeq + 1 })) },
    { name: 'another session id', requirement: 'W-CHECK-4', error: 'BAD_SESSION', wire: ping(header(session, MessageType.PING, keyId, { sessionId: new Uint8Array(randomBytes(16)) })) },
    { name: 'another device id', requirement: 'W-CHECK-3', error: 'BAD_HEADER', wire: ping(header(session, MessageType.PING, keyId, { deviceId: new Uint8Array(randomBytes(8)) })) },
    { name: 'a key id the device does not hold', requirement: 'W-CHECK-6', error: 'UNKNOWN_KEY_ID', wire: sealBody(otherKey, header(session, MessageType.PING, 0xfffffff0), new Uint8Array(0)) },
    { name: 'version 2', requirement: 'W-HDR-1', error: 'BAD_VERSION', wire: ping(badVersion) },
    { name: 'an unknown type', requirement: 'W-HDR-2', error: 'UNKNOWN_TYPE', wire: ping(unknownType) },
    { name: 'a reserved flag bit', requirement: 'W-HDR-5', error: 'BAD_HEADER', wire: ping(reserved) },
    { name: 'the KEY_SHARE flag on a hub frame', requirement: 'W-HDR-6', error: 'BAD_HEADER', wire: ping(shareFlag) },
    { name: 'a device-only type from the hub (HELLO)', requirement: 'W-CHECK-2', error: 'UNEXPECTED_MESSAGE', wire: sealBody(key, header(session, MessageType.HELLO, keyId), new Uint8Array(24)) },
    { name: 'a CHALLENGE in an established session', requirement: 'W-CHECK-2', error: 'UNEXPECTED_MESSAGE', wire: withLengthPrefix(encodeHeader({ type: MessageType.CHALLENGE, fromHub: true, deviceId: new Uint8Array(8), keyId: 0, sequence: 0, sessionId: new Uint8Array(randomBytes(16)) })) },
    { name: 'a length prefix above 1280', requirement: 'W-FRAME-3', error: 'FRAME_TOO_LONG', wire: tooLong },
    { name: 'a length prefix below 36', requirement: 'W-FRAME-3', error: 'FRAME_TOO_SHORT', wire: tooShort },
    { name: 'an authenticated PING with a body', requirement: 'W-CHECK-7', error: 'BAD_PAYLOAD', wire: sealBody(key, header(session, MessageType.PING, keyId), new Uint8Array(3)) },
    { name: 'an authenticated CONFIRM naming another key id', requirement: 'W-MSG-3', error: 'BAD_PAYLOAD', wire: sealBody(key, header(session, MessageType.CONFIRM, keyId), confirmBody) },
    { name: 'an authenticated REKEY of the wrong length', requirement: 'W-CHECK-7', error: 'BAD_PAYLOAD', wire: sealBody(key, header(session, MessageType.REKEY, keyId), new Uint8Array(40)) },
  ];
}

/** A low-order X25519 point (all zero: X25519 gives an all-zero result for it, RFC 7748 §6.1). */
export const LOW_ORDER_SHARE = new Uint8Array(32);
