/**
 * The 36-byte frame header (docs/PROTOCOL.md §3). Sent in clear and
 * authenticated as the AEAD's additional data, so every field is bound to
 * the ciphertext. decodeHeader validates everything a receiver can check
 * without keys; it never allocates more than the header itself.
 */
import { LockstepError } from '../errors';
import { DEVICE_ID_BYTES } from '../platform/keys';
import { HEADER_BYTES, MessageType, PROTOCOL_VERSION, SESSION_ID_BYTES } from './constants';

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
/** flags bit 0: the frame travels hub → device. All other flag bits are reserved (zero). */
export const FLAG_FROM_HUB = 0x0001;

export function encodeHeader(header: Header): Uint8Array {
  if (header.deviceId.length !== DEVICE_ID_BYTES || header.sessionId.length !== SESSION_ID_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id is 8 bytes, session id 16');
  }
  checkU32(header.keyId, 'key id');
  checkU32(header.sequence, 'sequence');
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes[VERSION_AT] = PROTOCOL_VERSION;
  bytes[TYPE_AT] = header.type;
  view.setUint16(FLAGS_AT, header.fromHub ? FLAG_FROM_HUB : 0);
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
  if ((flags & ~FLAG_FROM_HUB) !== 0) throw new LockstepError('BAD_HEADER', 'reserved flags must be zero');
  return {
    type: type as MessageType,
    fromHub: (flags & FLAG_FROM_HUB) !== 0,
    deviceId: frame.slice(DEVICE_ID_AT, DEVICE_ID_AT + DEVICE_ID_BYTES),
    keyId: view.getUint32(KEY_ID_AT),
    sequence: view.getUint32(SEQUENCE_AT),
    sessionId: frame.slice(SESSION_ID_AT, SESSION_ID_AT + SESSION_ID_BYTES),
  };
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${what} must be a u32`);
  }
}
