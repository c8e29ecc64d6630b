/**
 * The protocol vectors of docs/PROTOCOL.md Appendix A: regenerated here and
 * compared with the committed JSON and the spec's text (the spec matches
 * the code), then each frame is opened with an independent AEAD (@noble)
 * and decoded back to its message (both directions).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeAead } from '../hosts/node/crypto';
import { nobleAead } from '../hosts/noble/primitives';
import { toHex } from '../modules/bytes';
import { LENGTH_PREFIX_BYTES, MessageType } from '../modules/protocol/constants';
import { decodeChallenge, openFrame } from '../modules/protocol/frame';
import { decodeHeader } from '../modules/protocol/header';
import { dhVectorInputs, generateProtocolVectors, VECTOR_INPUTS, vectorsMarkdown } from '../tools/vectors/protocol-vectors';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha512 } from '@noble/hashes/sha2.js';

const root = join(__dirname, '..');
const vectors = generateProtocolVectors(nodeAead);

/** Key 3 recomputed with @noble alone (X25519 and HKDF-SHA-512), from the spec's §11.3 recipe. */
function nobleKey3(): Uint8Array {
  const dh = dhVectorInputs();
  const shared = x25519.getSharedSecret(dh.devicePrivate, dh.hubShare);
  expect(toHex(x25519.getSharedSecret(dh.hubPrivate, x25519.getPublicKey(dh.devicePrivate)))).toBe(toHex(shared));
  const label = new TextEncoder().encode('Lockstep v1 dh rekey');
  const info = new Uint8Array([...label, ...Buffer.from(VECTOR_INPUTS.deviceId, 'hex'), 0, 0, 0, 3, ...x25519.getPublicKey(dh.hubPrivate), ...x25519.getPublicKey(dh.devicePrivate)]);
  const key = hkdf(sha512, shared, VECTOR_INPUTS.key2, info, 64);
  expect(toHex(key)).toBe(toHex(dh.key3));
  return key;
}

test('every message type has a vector', () => {
  expect(new Set(vectors.map((v) => v.message.type))).toEqual(new Set(Object.values(MessageType)));
});

test('the committed JSON and the spec appendix match the code', () => {
  const committed = JSON.parse(readFileSync(join(root, 'docs', 'vectors', 'protocol-vectors.json'), 'utf8'));
  expect(committed).toEqual(JSON.parse(JSON.stringify(vectors)));
  expect(readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8')).toContain(vectorsMarkdown(vectors));
});

test.each(vectors.map((v) => [v.name, v] as const))('%s opens with @noble and decodes to its message', (_name, v) => {
  const wire = Uint8Array.from(Buffer.from(v.wire, 'hex'));
  const frame = wire.subarray(LENGTH_PREFIX_BYTES);
  expect((wire[0]! << 8) | wire[1]!).toBe(frame.length);
  const header = decodeHeader(frame);
  expect(header.keyId).toBe(v.keyId);
  expect(header.sequence).toBe(v.sequence);
  expect(toHex(header.sessionId)).toBe(toHex(VECTOR_INPUTS.hubNonce));
  if (v.name === 'CHALLENGE') {
    expect(toHex(decodeChallenge(frame, header))).toBe(v.message.hubNonce);
    return;
  }
  expect(toHex(header.deviceId)).toBe(VECTOR_INPUTS.deviceId);
  const key = v.keyId === 1 ? VECTOR_INPUTS.key1 : v.keyId === 2 ? VECTOR_INPUTS.key2 : nobleKey3();
  if (v.share !== undefined) expect(toHex(header.share!)).toBe(v.share);
  const message = openFrame(nobleAead, key, frame, header);
  const described = Object.fromEntries(Object.entries(message).map(([k, value]) => [k, value instanceof Uint8Array ? toHex(value) : value]));
  expect(described).toEqual(v.message);
  const ivAt = v.share === undefined ? 36 : 68; // the IV follows the header and its key share (§11.2)
  expect(toHex(frame.subarray(ivAt, ivAt + 16))).toBe(v.iv);
});
