/**
 * The 36-byte frame header (docs/PROTOCOL.md §3). Sent in clear and
 * authenticated as the AEAD's additional data, so every field is bound to
 * the ciphertext. decodeHeader validates everything a receiver can check
 * without keys; it never allocates more than the header itself.
 */
import { LockstepError } from '../errors';
import { DEVICE_ID_BYTES } from '../platform/keys';
import { HEADER_BYTES, KEY_SHARE_BYTES, MessageType, PROTOCOL_VERSION, SESSION_ID_BYTES } from './constants';

export interface Header {
  readonly type: MessageType;
  /**
   * The direction bit (flags bit 0, §3): set on every hub → device frame, clear
   * on every device → hub frame. Authenticated, so a frame can never be
   * reflected back to the side that sealed it.
   */
  readonly fromHub: boolean;
  readonly deviceId: Uint8Array;
  readonly keyId: number;
  readonly sequence: number;
  readonly sessionId: Uint8Array;
  /**
   * The KEY_SHARE extension (flags bit 1, §11.2): the device's ephemeral
   * X25519 public key for the dh-derived key that sealed the frame. Sent in
   * clear right after the 36 header bytes and authenticated with them.
   */
  readonly share?: Uint8Array;
}

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(MessageType));

// Byte offsets (§3).
const VERSION_AT = 0;
const TYPE_AT = 1;
const FLAGS_AT = 2;
const DEVICE_ID_AT = 4;
const KEY_ID_AT = 12;
const SEQUENCE_AT = 16;
const SESSION_ID_AT = 20;
/** flags bit 0: the frame travels hub → device. */
export const FLAG_FROM_HUB = 0x0001;
/** flags bit 1: a KEY_SHARE follows the header (§11.2; device → hub only). All other flag bits are reserved (zero). */
export const FLAG_KEY_SHARE = 0x0002;

/** The header's bytes on the wire, the KEY_SHARE extension included: the AEAD's additional data. */
export function headerLength(header: { readonly share?: Uint8Array }): number {
  return header.share === undefined ? HEADER_BYTES : HEADER_BYTES + KEY_SHARE_BYTES;
}

export function encodeHeader(header: Header): Uint8Array {
  if (header.deviceId.length !== DEVICE_ID_BYTES || header.sessionId.length !== SESSION_ID_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id is 8 bytes, session id 16');
  }
  checkU32(header.keyId, 'key id');
  checkU32(header.sequence, 'sequence');
  if (header.share !== undefined && (header.fromHub || header.share.length !== KEY_SHARE_BYTES)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a key share is 32 bytes, on device → hub frames only');
  }
  const bytes = new Uint8Array(headerLength(header));
  const view = new DataView(bytes.buffer);
  bytes[VERSION_AT] = PROTOCOL_VERSION;
  bytes[TYPE_AT] = header.type;
  view.setUint16(FLAGS_AT, (header.fromHub ? FLAG_FROM_HUB : 0) | (header.share !== undefined ? FLAG_KEY_SHARE : 0));
  if (header.share !== undefined) bytes.set(header.share, HEADER_BYTES);
  bytes.set(header.deviceId, DEVICE_ID_AT);
  view.setUint32(KEY_ID_AT, header.keyId);
  view.setUint32(SEQUENCE_AT, header.sequence);
  bytes.set(header.sessionId, SESSION_ID_AT);
  return bytes;
}

/** `frame` is one whole frame without its length prefix. */
export function decodeHeader(frame: Uint8Array): Header {
  if (frame.length < HEADER_BYTES) throw new LockstepError('FRAME_TOO_SHORT', `${frame.length} < ${HEADER_BYTES}`);
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_BYTES);
  if (frame[VERSION_AT] !== PROTOCOL_VERSION) throw new LockstepError('BAD_VERSION', `version ${frame[VERSION_AT]}`);
  const type = frame[TYPE_AT] as number;
  if (!KNOWN_TYPES.has(type)) throw new LockstepError('UNKNOWN_TYPE', `type 0x${type.toString(16)}`);
  const flags = view.getUint16(FLAGS_AT);
  if ((flags & ~(FLAG_FROM_HUB | FLAG_KEY_SHARE)) !== 0) throw new LockstepError('BAD_HEADER', 'reserved flags must be zero');
  const fromHub = (flags & FLAG_FROM_HUB) !== 0;
  let share: Uint8Array | undefined;
  if ((flags & FLAG_KEY_SHARE) !== 0) {
    if (fromHub || type === MessageType.CHALLENGE) throw new LockstepError('BAD_HEADER', 'a key share travels device → hub only');
    if (frame.length < HEADER_BYTES + KEY_SHARE_BYTES) throw new LockstepError('FRAME_TOO_SHORT', 'key share cut short');
    share = frame.slice(HEADER_BYTES, HEADER_BYTES + KEY_SHARE_BYTES);
  }
  const header = {
    type: type as MessageType,
    fromHub,
    deviceId: frame.slice(DEVICE_ID_AT, DEVICE_ID_AT + DEVICE_ID_BYTES),
    keyId: view.getUint32(KEY_ID_AT),
    sequence: view.getUint32(SEQUENCE_AT),
    sessionId: frame.slice(SESSION_ID_AT, SESSION_ID_AT + SESSION_ID_BYTES),
  };
  return share === undefined ? header : { ...header, share };
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${what} must be a u32`);
  }
}
