/**
 * Whole frames (docs/PROTOCOL.md §4):
 *   CHALLENGE = header                      (unsealed; key id 0; session id = hub nonce)
 *   sealed    = header ‖ IV ‖ ciphertext ‖ tag   (AAD = header)
 *   sealed with a key share = header ‖ share ‖ IV ‖ ciphertext ‖ tag   (AAD = header ‖ share, §11.2)
 * openFrame verifies the tag before it decrypts or parses anything.
 */
import type { Aead } from '../crypto/primitives';
import { LockstepError } from '../errors';
import { DEVICE_ID_BYTES } from '../platform/keys';
import { HEADER_BYTES, IV_BYTES, MAX_FRAME_BYTES, MessageType, MIN_SEALED_FRAME_BYTES, NO_KEY_ID, TAG_BYTES } from './constants';
import { decodeHeader, encodeHeader, headerLength, type Header } from './header';
import { decodeMessage, encodeMessage, type Message } from './messages';

export function encodeChallenge(hubNonce: Uint8Array): Uint8Array {
  return encodeHeader({
    type: MessageType.CHALLENGE,
    fromHub: true,
    deviceId: new Uint8Array(DEVICE_ID_BYTES),
    keyId: NO_KEY_ID,
    sequence: 0,
    sessionId: hubNonce,
  });
}

/** Validates a received CHALLENGE frame and returns the hub nonce. */
export function decodeChallenge(frame: Uint8Array, header: Header): Uint8Array {
  if (frame.length !== HEADER_BYTES || !header.fromHub || header.keyId !== NO_KEY_ID || header.sequence !== 0 || header.deviceId.some((b) => b !== 0)) {
    throw new LockstepError('BAD_HEADER', 'malformed CHALLENGE');
  }
  return header.sessionId;
}

export interface SealInput {
  readonly aead: Aead;
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
  readonly header: Omit<Header, 'type'>;
  readonly message: Message;
}

/** Returns the frame without its length prefix. */
export function sealFrame(input: SealInput): Uint8Array {
  const aad = encodeHeader({ ...input.header, type: input.message.type });
  const plaintext = encodeMessage(input.message);
  const sealed = input.aead.seal(input.key, input.iv, aad, plaintext);
  plaintext.fill(0);
  const frame = new Uint8Array(aad.length + IV_BYTES + sealed.length);
  if (frame.length > MAX_FRAME_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'message too large for one frame');
  frame.set(aad, 0);
  frame.set(input.iv, aad.length);
  frame.set(sealed, aad.length + IV_BYTES);
  return frame;
}

/** Checks the sealed frame's shape (before any key lookup); `header` is decodeHeader(frame). */
export function checkSealedShape(frame: Uint8Array, header: Header): void {
  const aadBytes = headerLength(header);
  if (frame.length < MIN_SEALED_FRAME_BYTES + aadBytes - HEADER_BYTES) throw new LockstepError('FRAME_TOO_SHORT', `sealed frame of ${frame.length} bytes`);
  if ((frame.length - aadBytes - IV_BYTES - TAG_BYTES) % 16 !== 0) {
    throw new LockstepError('AUTH_FAILED');
  }
}

/** Verifies and decrypts; `header` is decodeHeader(frame). */
export function openFrame(aead: Aead, key: Uint8Array, frame: Uint8Array, header: Header): Message {
  checkSealedShape(frame, header);
  const aadBytes = headerLength(header);
  const aad = frame.subarray(0, aadBytes);
  const iv = frame.subarray(aadBytes, aadBytes + IV_BYTES);
  const ciphertext = frame.subarray(aadBytes + IV_BYTES, frame.length - TAG_BYTES);
  const tag = frame.subarray(frame.length - TAG_BYTES);
  const body = aead.open(key, iv, aad, ciphertext, tag);
  try {
    return decodeMessage(header.type, body);
  } finally {
    body.fill(0);
  }
}
