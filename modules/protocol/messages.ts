/**
 * Message bodies (the AEAD plaintexts, docs/PROTOCOL.md §6). Each decoder
 * checks the exact length before reading and throws BAD_PAYLOAD otherwise;
 * decoders only ever run on plaintext whose tag already verified.
 */
import { LockstepError } from '../errors';
import { KEY_BYTES, KEY_SHARE_BYTES, MAX_APP_PAYLOAD_BYTES, MessageType, NONCE_BYTES, STREAM_ID_BYTES } from './constants';

export { STREAM_ID_BYTES } from './constants';

export type Message =
  | { readonly type: typeof MessageType.HELLO; readonly deviceNonce: Uint8Array; readonly activeKeyId: number; readonly futureKeyId: number }
  | { readonly type: typeof MessageType.WELCOME; readonly deviceNonce: Uint8Array; readonly hubKeyId: number }
  | { readonly type: typeof MessageType.DATA; readonly streamId: Uint8Array; readonly messageId: number; readonly payload: Uint8Array }
  | { readonly type: typeof MessageType.DATA_ACK; readonly streamId: Uint8Array; readonly messageId: number }
  | { readonly type: typeof MessageType.REKEY; readonly newKeyId: number; readonly newKey: Uint8Array }
  | { readonly type: typeof MessageType.REKEY_ACK; readonly newKeyId: number }
  | { readonly type: typeof MessageType.CONFIRM; readonly keyId: number }
  | { readonly type: typeof MessageType.REKEY_DH; readonly newKeyId: number; readonly hubShare: Uint8Array }
  | { readonly type: typeof MessageType.ENROL; readonly hubStaticId: number; readonly hubPublicKey: Uint8Array }
  | { readonly type: typeof MessageType.ENROL_ACK; readonly hubStaticId: number; readonly devicePublicKey: Uint8Array }
  | { readonly type: typeof MessageType.PING }
  | { readonly type: typeof MessageType.PONG }
  | { readonly type: typeof MessageType.ERROR; readonly code: number; readonly detail: number };

/** Types that travel sealed (all but CHALLENGE and the recovery frames of §12.2). */
export type SealedType = Message['type'];

export function encodeMessage(message: Message): Uint8Array {
  switch (message.type) {
    case MessageType.HELLO: {
      const out = fixed(NONCE_BYTES + 8);
      out.bytes.set(checkLength(message.deviceNonce, NONCE_BYTES), 0);
      out.view.setUint32(NONCE_BYTES, message.activeKeyId);
      out.view.setUint32(NONCE_BYTES + 4, message.futureKeyId);
      return out.bytes;
    }
    case MessageType.WELCOME: {
      const out = fixed(NONCE_BYTES + 4);
      out.bytes.set(checkLength(message.deviceNonce, NONCE_BYTES), 0);
      out.view.setUint32(NONCE_BYTES, message.hubKeyId);
      return out.bytes;
    }
    case MessageType.DATA: {
      if (message.payload.length > MAX_APP_PAYLOAD_BYTES) {
        throw new LockstepError('LOCAL_BAD_ARGUMENT', `payload exceeds ${MAX_APP_PAYLOAD_BYTES} bytes`);
      }
      const out = fixed(STREAM_ID_BYTES + 4 + message.payload.length);
      out.bytes.set(checkLength(message.streamId, STREAM_ID_BYTES), 0);
      out.view.setUint32(STREAM_ID_BYTES, message.messageId);
      out.bytes.set(message.payload, STREAM_ID_BYTES + 4);
      return out.bytes;
    }
    case MessageType.DATA_ACK: {
      const out = fixed(STREAM_ID_BYTES + 4);
      out.bytes.set(checkLength(message.streamId, STREAM_ID_BYTES), 0);
      out.view.setUint32(STREAM_ID_BYTES, message.messageId);
      return out.bytes;
    }
    case MessageType.REKEY: {
      const out = fixed(4 + KEY_BYTES);
      out.view.setUint32(0, message.newKeyId);
      out.bytes.set(checkLength(message.newKey, KEY_BYTES), 4);
      return out.bytes;
    }
    case MessageType.REKEY_DH: {
      const out = fixed(4 + KEY_SHARE_BYTES);
      out.view.setUint32(0, message.newKeyId);
      out.bytes.set(checkLength(message.hubShare, KEY_SHARE_BYTES), 4);
      return out.bytes;
    }
    case MessageType.ENROL:
    case MessageType.ENROL_ACK: {
      const out = fixed(4 + KEY_SHARE_BYTES);
      out.view.setUint32(0, message.hubStaticId);
      out.bytes.set(checkLength(message.type === MessageType.ENROL ? message.hubPublicKey : message.devicePublicKey, KEY_SHARE_BYTES), 4);
      return out.bytes;
    }
    case MessageType.REKEY_ACK: {
      const out = fixed(4);
      out.view.setUint32(0, message.newKeyId);
      return out.bytes;
    }
    case MessageType.CONFIRM: {
      const out = fixed(4);
      out.view.setUint32(0, message.keyId);
      return out.bytes;
    }
    case MessageType.PING:
    case MessageType.PONG:
      return new Uint8Array(0);
    case MessageType.ERROR: {
      const out = fixed(6);
      out.view.setUint16(0, message.code);
      out.view.setUint32(2, message.detail);
      return out.bytes;
    }
  }
}

/** `type` comes from the authenticated header; `body` is the verified plaintext. */
export function decodeMessage(type: number, body: Uint8Array): Message {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (type) {
    case MessageType.HELLO:
      expectLength(body, NONCE_BYTES + 8);
      return { type, deviceNonce: body.slice(0, NONCE_BYTES), activeKeyId: view.getUint32(NONCE_BYTES), futureKeyId: view.getUint32(NONCE_BYTES + 4) };
    case MessageType.WELCOME:
      expectLength(body, NONCE_BYTES + 4);
      return { type, deviceNonce: body.slice(0, NONCE_BYTES), hubKeyId: view.getUint32(NONCE_BYTES) };
    case MessageType.DATA:
      if (body.length < STREAM_ID_BYTES + 4 || body.length > STREAM_ID_BYTES + 4 + MAX_APP_PAYLOAD_BYTES) {
        throw new LockstepError('BAD_PAYLOAD', `DATA body of ${body.length} bytes`);
      }
      return { type, streamId: body.slice(0, STREAM_ID_BYTES), messageId: view.getUint32(STREAM_ID_BYTES), payload: body.slice(STREAM_ID_BYTES + 4) };
    case MessageType.DATA_ACK:
      expectLength(body, STREAM_ID_BYTES + 4);
      return { type, streamId: body.slice(0, STREAM_ID_BYTES), messageId: view.getUint32(STREAM_ID_BYTES) };
    case MessageType.REKEY:
      expectLength(body, 4 + KEY_BYTES);
      return { type, newKeyId: view.getUint32(0), newKey: body.slice(4) };
    case MessageType.REKEY_DH:
      expectLength(body, 4 + KEY_SHARE_BYTES);
      return { type, newKeyId: view.getUint32(0), hubShare: body.slice(4) };
    case MessageType.ENROL:
      expectLength(body, 4 + KEY_SHARE_BYTES);
      return { type, hubStaticId: view.getUint32(0), hubPublicKey: body.slice(4) };
    case MessageType.ENROL_ACK:
      expectLength(body, 4 + KEY_SHARE_BYTES);
      return { type, hubStaticId: view.getUint32(0), devicePublicKey: body.slice(4) };
    case MessageType.REKEY_ACK:
      expectLength(body, 4);
      return { type, newKeyId: view.getUint32(0) };
    case MessageType.CONFIRM:
      expectLength(body, 4);
      return { type, keyId: view.getUint32(0) };
    case MessageType.PING:
    case MessageType.PONG:
      expectLength(body, 0);
      return { type };
    case MessageType.ERROR:
      expectLength(body, 6);
      return { type, code: view.getUint16(0), detail: view.getUint32(2) };
    default:
      throw new LockstepError('UNKNOWN_TYPE', `type 0x${type.toString(16)} has no sealed body`);
  }
}

function fixed(length: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(length);
  return { bytes, view: new DataView(bytes.buffer) };
}

function checkLength(bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length !== length) throw new LockstepError('LOCAL_BAD_ARGUMENT', `expected ${length} bytes, got ${bytes.length}`);
  return bytes;
}

function expectLength(body: Uint8Array, length: number): void {
  if (body.length !== length) throw new LockstepError('BAD_PAYLOAD', `expected ${length} bytes, got ${body.length}`);
}
