/**
 * Protocol test vectors (docs/PROTOCOL.md Appendix A): every message type
 * sealed from fixed keys, nonces and IVs, so another implementation can
 * check its bytes against ours. Deterministic: regenerate with
 * `npm run vectors` and the output must not change.
 */
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { MessageType } from '../../modules/protocol/constants';
import { encodeChallenge, sealFrame } from '../../modules/protocol/frame';
import { withLengthPrefix } from '../../modules/protocol/framing';
import type { Message } from '../../modules/protocol/messages';
import { deriveRekeyKey } from '../../modules/crypto/dh-rekey';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';

export interface ProtocolVector {
  readonly name: string;
  readonly direction: 'hub→device' | 'device→hub';
  readonly keyId: number;
  readonly sequence: number;
  readonly iv: string;
  readonly message: Record<string, string | number>;
  /** The KEY_SHARE extension after the header (§11.2), when the frame carries one. */
  readonly share?: string;
  /** The bytes on the wire: u16 length prefix ‖ frame. */
  readonly wire: string;
}

/** The dh rotation of the vectors (§11.3): key 2 → key 3, from fixed ephemeral private keys. */
export function dhVectorInputs() {
  const hubPrivate = Uint8Array.from({ length: 32 }, (_, i) => 0x60 + i);
  const devicePrivate = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
  const hubShare = nodeKeyAgreement.x25519PublicKey(hubPrivate);
  const deviceShare = nodeKeyAgreement.x25519PublicKey(devicePrivate);
  const shared = nodeKeyAgreement.x25519(devicePrivate, hubShare);
  const deviceId = Uint8Array.from(Buffer.from(VECTOR_INPUTS.deviceId, 'hex'));
  const key3 = deriveRekeyKey(nodeKeyAgreement, { previousKey: VECTOR_INPUTS.key2, privateKey: devicePrivate, peerShare: hubShare, deviceId, newKeyId: 3, hubShare, deviceShare });
  return { hubPrivate, devicePrivate, hubShare, deviceShare, shared, key3 };
}

/** The static public keys of the recovery vectors (X25519 of bytes 0x40..0x5f and 0x20..0x3f). */
const ENROL_KEYS = {
  hub: nodeKeyAgreement.x25519PublicKey(Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i)),
  device: nodeKeyAgreement.x25519PublicKey(Uint8Array.from({ length: 32 }, (_, i) => 0x20 + i)),
};

export const VECTOR_INPUTS = {
  deviceId: '0011223344556677',
  /** Key id 1: bytes 0x00..0x3f. Key id 2: bytes 0x40..0x7f. */
  key1: Uint8Array.from({ length: 64 }, (_, i) => i),
  key2: Uint8Array.from({ length: 64 }, (_, i) => 64 + i),
  hubNonce: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i),
  deviceNonce: Uint8Array.from({ length: 16 }, (_, i) => 0xd0 + i),
  streamId: Uint8Array.from([0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58]),
};

function ivFor(index: number): Uint8Array {
  return Uint8Array.from({ length: 16 }, (_, i) => (index * 16 + i) & 0xff);
}

function describe(message: Message): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [field, value] of Object.entries(message)) {
    out[field] = value instanceof Uint8Array ? toHex(value) : (value as number);
  }
  return out;
}

export function generateProtocolVectors(aead: Aead): ProtocolVector[] {
  const { key1, key2, hubNonce, deviceNonce, streamId } = VECTOR_INPUTS;
  const deviceId = Uint8Array.from(Buffer.from(VECTOR_INPUTS.deviceId, 'hex'));
  const vectors: ProtocolVector[] = [
    {
      name: 'CHALLENGE',
      direction: 'hub→device',
      keyId: 0,
      sequence: 0,
      iv: '',
      message: { type: MessageType.CHALLENGE, hubNonce: toHex(hubNonce) },
      wire: toHex(withLengthPrefix(encodeChallenge(hubNonce))),
    },
  ];
  const sealed: [string, ProtocolVector['direction'], number, Uint8Array, number, Message][] = [
    ['HELLO', 'device→hub', 1, key1, 0, { type: MessageType.HELLO, deviceNonce, activeKeyId: 1, futureKeyId: 0 }],
    ['WELCOME', 'hub→device', 1, key1, 1, { type: MessageType.WELCOME, deviceNonce, hubKeyId: 1 }],
    ['DATA', 'device→hub', 1, key1, 1, { type: MessageType.DATA, streamId, messageId: 1, payload: Uint8Array.from([0x68, 0x65, 0x6c, 0x6c, 0x6f]) }],
    ['DATA_ACK', 'hub→device', 1, key1, 2, { type: MessageType.DATA_ACK, streamId, messageId: 1 }],
    ['REKEY', 'hub→device', 1, key1, 3, { type: MessageType.REKEY, newKeyId: 2, newKey: key2 }],
    ['REKEY_ACK', 'device→hub', 2, key2, 2, { type: MessageType.REKEY_ACK, newKeyId: 2 }],
    ['CONFIRM', 'hub→device', 2, key2, 4, { type: MessageType.CONFIRM, keyId: 2 }],
    ['PING', 'device→hub', 2, key2, 3, { type: MessageType.PING }],
    ['PONG', 'hub→device', 2, key2, 5, { type: MessageType.PONG }],
    ['ERROR', 'device→hub', 2, key2, 4, { type: MessageType.ERROR, code: 2, detail: 2 }],
  ];
  sealed.forEach(([name, direction, keyId, key, sequence, message], index) => {
    const iv = ivFor(index + 1);
    const frame = sealFrame({ aead, key, iv, header: { fromHub: direction === 'hub→device', deviceId, keyId, sequence, sessionId: hubNonce }, message });
    vectors.push({ name, direction, keyId, sequence, iv: toHex(iv), message: describe(message), wire: toHex(withLengthPrefix(frame)) });
  });
  // §11: a dh rotation from key 2 to key 3, and the HELLO of the next session under the derived future key.
  const dh = dhVectorInputs();
  const dhSealed: [string, ProtocolVector['direction'], number, Uint8Array, number, Message, Uint8Array | undefined][] = [
    ['REKEY_DH', 'hub→device', 2, key2, 6, { type: MessageType.REKEY_DH, newKeyId: 3, hubShare: dh.hubShare }, undefined],
    ['REKEY_ACK with a key share', 'device→hub', 3, dh.key3, 5, { type: MessageType.REKEY_ACK, newKeyId: 3 }, dh.deviceShare],
    ['HELLO under a dh future key', 'device→hub', 3, dh.key3, 0, { type: MessageType.HELLO, deviceNonce, activeKeyId: 2, futureKeyId: 3 }, dh.deviceShare],
  ];
  dhSealed.forEach(([name, direction, keyId, key, sequence, message, share], index) => {
    const iv = ivFor(sealed.length + index + 1);
    const header = { fromHub: direction === 'hub→device', deviceId, keyId, sequence, sessionId: hubNonce };
    const frame = sealFrame({ aead, key, iv, header: share === undefined ? header : { ...header, share }, message });
    vectors.push({ name, direction, keyId, sequence, iv: toHex(iv), message: describe(message), ...(share === undefined ? {} : { share: toHex(share) }), wire: toHex(withLengthPrefix(frame)) });
  });
  // §12.6: enrolment in a session under the dh-derived key 3, after its promotion (the static public keys of the recovery vectors).
  const enrolSealed: [string, ProtocolVector['direction'], number, number, Message][] = [
    ['ENROL', 'hub→device', 3, 7, { type: MessageType.ENROL, hubStaticId: 1, hubPublicKey: ENROL_KEYS.hub }],
    ['ENROL_ACK', 'device→hub', 3, 6, { type: MessageType.ENROL_ACK, hubStaticId: 1, devicePublicKey: ENROL_KEYS.device }],
  ];
  enrolSealed.forEach(([name, direction, keyId, sequence, message], index) => {
    const iv = ivFor(sealed.length + dhSealed.length + index + 1);
    const frame = sealFrame({ aead, key: dh.key3, iv, header: { fromHub: direction === 'hub→device', deviceId, keyId, sequence, sessionId: hubNonce }, message });
    vectors.push({ name, direction, keyId, sequence, iv: toHex(iv), message: describe(message), wire: toHex(withLengthPrefix(frame)) });
  });
  return vectors;
}

/** The Markdown of Appendix A, between its markers in docs/PROTOCOL.md. */
export function vectorsMarkdown(vectors: readonly ProtocolVector[]): string {
  const lines = [
    'Inputs: device id `' + VECTOR_INPUTS.deviceId + '`; key id 1 = bytes `00 01 … 3f`; key id 2 = bytes `40 41 … 7f`;',
    'hub nonce (session id) `' + toHex(VECTOR_INPUTS.hubNonce) + '`; device nonce `' + toHex(VECTOR_INPUTS.deviceNonce) + '`;',
    'stream id `' + toHex(VECTOR_INPUTS.streamId) + '`. Wire bytes include the u16 length prefix.',
    '',
  ];
  const dh = dhVectorInputs();
  lines.push('The dh rotation (§11.3) from key 2 to key 3: hub ephemeral private key `' + toHex(dh.hubPrivate) + '`,');
  lines.push('public `' + toHex(dh.hubShare) + '`; device ephemeral private key `' + toHex(dh.devicePrivate) + '`,');
  lines.push('public `' + toHex(dh.deviceShare) + '`; X25519 result `' + toHex(dh.shared) + '`;');
  lines.push('key id 3 = HKDF-SHA-512(salt = key 2, IKM = that result, info = label ‖ device id ‖ 00000003 ‖ H ‖ D) =');
  lines.push('`' + toHex(dh.key3) + '`.');
  lines.push('');
  for (const v of vectors) {
    lines.push(`### ${v.name} (${v.direction}, key id ${v.keyId}, seq ${v.sequence})`);
    lines.push('');
    lines.push('- message: `' + JSON.stringify(v.message) + '`');
    if (v.iv) lines.push('- IV: `' + v.iv + '`');
    if (v.share) lines.push('- key share (after the header, §11.2): `' + v.share + '`');
    lines.push('- wire:');
    lines.push('');
    lines.push('```');
    for (let i = 0; i < v.wire.length; i += 64) lines.push(v.wire.slice(i, i + 64));
    lines.push('```');
    lines.push('');
  }
  return lines.join('\n');
}
