/**
 * Protocol test vectors (docs/PROTOCOL.md Appendix A): every message type
 * sealed from fixed keys, nonces and IVs, so another implementation can
 * check its bytes against ours. Deterministic: regenerate with
 * `npm run vectors` and the output must not change.
 */
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { MAX_APP_PAYLOAD_BYTES, MessageType, WireError } from '../../modules/protocol/constants';
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
  const label = new TextEncoder().encode('Lockstep v1 dh rekey');
  const info = new Uint8Array([...label, ...deviceId, 0, 0, 0, 3, ...hubShare, ...deviceShare]);
  return { hubPrivate, devicePrivate, hubShare, deviceShare, shared, info, key3 };
}

/** The static public keys of the recovery vectors (X25519 of bytes 0x40..0x5f and 0x20..0x3f). */
const ENROL_PRIVATE = { hub: Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i), device: Uint8Array.from({ length: 32 }, (_, i) => 0x20 + i) };
const ENROL_KEYS = {
  hubPrivate: ENROL_PRIVATE.hub,
  devicePrivate: ENROL_PRIVATE.device,
  hub: nodeKeyAgreement.x25519PublicKey(ENROL_PRIVATE.hub),
  device: nodeKeyAgreement.x25519PublicKey(ENROL_PRIVATE.device),
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

/** The IV of the n-th sealed vector: bytes (16·n + ⌊n/16⌋ + i) mod 256 (no two vectors share one). */
function ivFor(index: number): Uint8Array {
  return Uint8Array.from({ length: 16 }, (_, i) => (index * 16 + Math.floor(index / 16) + i) & 0xff);
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
  let ivIndex = 0;
  const push = (name: string, direction: ProtocolVector['direction'], keyId: number, key: Uint8Array, sequence: number, message: Message, share?: Uint8Array) => {
    const iv = ivFor(++ivIndex);
    const header = { fromHub: direction === 'hub→device', deviceId, keyId, sequence, sessionId: hubNonce };
    const frame = sealFrame({ aead, key, iv, header: share === undefined ? header : { ...header, share }, message });
    vectors.push({ name, direction, keyId, sequence, iv: toHex(iv), message: describe(message), ...(share === undefined ? {} : { share: toHex(share) }), wire: toHex(withLengthPrefix(frame)) });
  };
  // One session under key 1, a classic rotation to key 2 (§6.2, §6.3), traffic under key 2.
  push('HELLO', 'device→hub', 1, key1, 0, { type: MessageType.HELLO, deviceNonce, activeKeyId: 1, futureKeyId: 0 });
  push('WELCOME', 'hub→device', 1, key1, 1, { type: MessageType.WELCOME, deviceNonce, hubKeyId: 1 });
  push('DATA', 'device→hub', 1, key1, 1, { type: MessageType.DATA, streamId, messageId: 1, payload: Uint8Array.from([0x68, 0x65, 0x6c, 0x6c, 0x6f]) });
  push('DATA_ACK', 'hub→device', 1, key1, 2, { type: MessageType.DATA_ACK, streamId, messageId: 1 });
  push('REKEY', 'hub→device', 1, key1, 3, { type: MessageType.REKEY, newKeyId: 2, newKey: key2 });
  push('REKEY_ACK', 'device→hub', 2, key2, 2, { type: MessageType.REKEY_ACK, newKeyId: 2 });
  push('CONFIRM', 'hub→device', 2, key2, 4, { type: MessageType.CONFIRM, keyId: 2 });
  push('PING', 'device→hub', 2, key2, 3, { type: MessageType.PING });
  push('PONG', 'hub→device', 2, key2, 5, { type: MessageType.PONG });
  push('ERROR', 'device→hub', 2, key2, 4, { type: MessageType.ERROR, code: 2, detail: 2 });
  // §11: a dh rotation from key 2 to key 3, and the HELLO of the next session under the derived future key.
  const dh = dhVectorInputs();
  push('REKEY_DH', 'hub→device', 2, key2, 6, { type: MessageType.REKEY_DH, newKeyId: 3, hubShare: dh.hubShare });
  push('REKEY_ACK with a key share', 'device→hub', 3, dh.key3, 5, { type: MessageType.REKEY_ACK, newKeyId: 3 }, dh.deviceShare);
  push('HELLO under a dh future key', 'device→hub', 3, dh.key3, 0, { type: MessageType.HELLO, deviceNonce, activeKeyId: 2, futureKeyId: 3 }, dh.deviceShare);
  // §12.6: enrolment in a session under the dh-derived key 3, after its promotion (the static public keys of the recovery vectors).
  push('ENROL', 'hub→device', 3, dh.key3, 7, { type: MessageType.ENROL, hubStaticId: 1, hubPublicKey: ENROL_KEYS.hub });
  push('ENROL_ACK', 'device→hub', 3, dh.key3, 6, { type: MessageType.ENROL_ACK, hubStaticId: 1, devicePublicKey: ENROL_KEYS.device });
  // Protocol 1.1 additions. A classic HELLO under the future key: header key id = future, body (active, future) (§6.1; issue item 4).
  push('HELLO under a classic future key', 'device→hub', 2, key2, 0, { type: MessageType.HELLO, deviceNonce, activeKeyId: 1, futureKeyId: 2 });
  // A hub → device ERROR (HE2's refusal of an enrolment that would change an enrolled static key: STATIC_KEY_LOCKED, detail = the hub static id).
  push('ERROR from the hub', 'hub→device', 3, dh.key3, 8, { type: MessageType.ERROR, code: WireError.STATIC_KEY_LOCKED, detail: 1 });
  // The types both peers send, in the other direction too: DATA and DATA_ACK hub → device / device → hub, a hub-initiated PING.
  push('DATA from the hub', 'hub→device', 3, dh.key3, 9, { type: MessageType.DATA, streamId: HUB_STREAM_ID, messageId: 1, payload: new TextEncoder().encode('to the device') });
  push('DATA_ACK from the device', 'device→hub', 3, dh.key3, 7, { type: MessageType.DATA_ACK, streamId: HUB_STREAM_ID, messageId: 1 });
  push('PING from the hub', 'hub→device', 3, dh.key3, 10, { type: MessageType.PING });
  push('PONG from the device', 'device→hub', 3, dh.key3, 8, { type: MessageType.PONG });
  // Maximum-size DATA: a 1024-byte payload (body 1036, padded to 1040): 1124-byte frames; with a key share, 1156 bytes, the largest frame the protocol makes.
  push('DATA of maximum size', 'device→hub', 3, dh.key3, 9, { type: MessageType.DATA, streamId, messageId: 2, payload: MAX_PAYLOAD });
  push('DATA of maximum size from the hub', 'hub→device', 3, dh.key3, 11, { type: MessageType.DATA, streamId: HUB_STREAM_ID, messageId: 2, payload: MAX_PAYLOAD });
  push('DATA of maximum size with a key share', 'device→hub', 3, dh.key3, 1, { type: MessageType.DATA, streamId, messageId: 3, payload: MAX_PAYLOAD }, dh.deviceShare);
  return vectors;
}

/** The payload of the maximum-size DATA vectors: 1024 bytes, byte i = i mod 256. */
const MAX_PAYLOAD = Uint8Array.from({ length: MAX_APP_PAYLOAD_BYTES }, (_, i) => i & 0xff);
/** The hub's stream id towards the device in the vectors (§7). */
const HUB_STREAM_ID = Uint8Array.from([0x48, 0x55, 0x42, 0x53, 0x54, 0x52, 0x45, 0x4d]);

export const PROTOCOL_VECTORS_VERSION = 2;

/** The file docs/vectors/protocol-vectors.json: what it is, every input, the vectors. */
export interface ProtocolVectorsFile {
  readonly version: number;
  readonly description: string;
  readonly inputs: Record<string, unknown>;
  readonly vectors: readonly ProtocolVector[];
}

export function protocolVectorsFile(aead: Aead): ProtocolVectorsFile {
  const dh = dhVectorInputs();
  return {
    version: PROTOCOL_VECTORS_VERSION,
    description:
      'Lockstep protocol 1.1 positive vectors (docs/PROTOCOL.md Appendix A), generated by `npm run vectors` (tools/vectors/protocol-vectors.ts): every message type sealed from the fixed inputs below. ' +
      'Each vector: name, direction, keyId (the header key id; its key is inputs.keys[keyId]), sequence, iv (hex; empty for CHALLENGE), message (the decoded body: hex strings and numbers), share (the KEY_SHARE after the header, §11.2, when present), wire (u16 length prefix ‖ frame, hex). ' +
      'All frames carry session id inputs.hubNonce and device id inputs.deviceId (CHALLENGE: zero device id). The recovery frames are in recovery-vectors.json, the frames a receiver must reject in negative-vectors.json, whole conversations in transcripts.json.',
    inputs: {
      deviceId: VECTOR_INPUTS.deviceId,
      keys: { '1': toHex(VECTOR_INPUTS.key1), '2': toHex(VECTOR_INPUTS.key2), '3': toHex(dh.key3) },
      hubNonce: toHex(VECTOR_INPUTS.hubNonce),
      deviceNonce: toHex(VECTOR_INPUTS.deviceNonce),
      deviceStreamId: toHex(VECTOR_INPUTS.streamId),
      hubStreamId: toHex(HUB_STREAM_ID),
      ivRule: 'the IV of the n-th sealed vector (n from 1) is bytes (16·n + ⌊n/16⌋ + i) mod 256, i = 0…15 (each vector also states its IV)',
      dh: {
        rotation: 'key 2 → key 3 (§11.3)',
        hubEphemeralPrivate: toHex(dh.hubPrivate),
        hubEphemeralPublic: toHex(dh.hubShare),
        deviceEphemeralPrivate: toHex(dh.devicePrivate),
        deviceEphemeralPublic: toHex(dh.deviceShare),
        x25519: toHex(dh.shared),
        info: toHex(dh.info),
        key3: toHex(dh.key3),
      },
      enrol: {
        hubStaticId: 1,
        hubStaticPrivate: toHex(ENROL_KEYS.hubPrivate),
        hubStaticPublic: toHex(ENROL_KEYS.hub),
        deviceStaticPrivate: toHex(ENROL_KEYS.devicePrivate),
        deviceStaticPublic: toHex(ENROL_KEYS.device),
      },
    },
    vectors: generateProtocolVectors(aead),
  };
}

/** The Markdown of Appendix A, between its markers in docs/PROTOCOL.md. */
export function vectorsMarkdown(vectors: readonly ProtocolVector[]): string {
  const lines = [
    'Inputs: device id `' + VECTOR_INPUTS.deviceId + '`; key id 1 = bytes `00 01 … 3f`; key id 2 = bytes `40 41 … 7f`;',
    'hub nonce (session id) `' + toHex(VECTOR_INPUTS.hubNonce) + '`; device nonce `' + toHex(VECTOR_INPUTS.deviceNonce) + '`;',
    'device stream id `' + toHex(VECTOR_INPUTS.streamId) + '`, hub stream id `' + toHex(HUB_STREAM_ID) + '`. Wire bytes include the u16 length prefix.',
    'Every input is also in the `inputs` object of [vectors/protocol-vectors.json](vectors/protocol-vectors.json).',
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
    // Long fields are abbreviated here (the JSON has them whole): the 1024-byte payloads.
    const shown = Object.fromEntries(Object.entries(v.message).map(([k, value]) => [k, typeof value === 'string' && value.length > 128 ? `${value.slice(0, 16)}…(${value.length / 2} bytes)` : value]));
    lines.push('- message: `' + JSON.stringify(shown) + '`');
    if (v.iv) lines.push('- IV: `' + v.iv + '`');
    if (v.share) lines.push('- key share (after the header, §11.2): `' + v.share + '`');
    const long = v.wire.length > 512;
    lines.push(long ? `- wire (${v.wire.length / 2} bytes; the first and last 64, all of them in the JSON):` : '- wire:');
    lines.push('');
    lines.push('```');
    const rows: string[] = [];
    for (let i = 0; i < v.wire.length; i += 64) rows.push(v.wire.slice(i, i + 64));
    lines.push(...(long ? [...rows.slice(0, 2), '…', ...rows.slice(-2)] : rows));
    lines.push('```');
    lines.push('');
  }
  return lines.join('\n');
}
