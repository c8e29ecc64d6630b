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
import { generateProtocolVectors, VECTOR_INPUTS, vectorsMarkdown } from '../tools/vectors/protocol-vectors';

const root = join(__dirname, '..');
const vectors = generateProtocolVectors(nodeAead);

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
  const key = v.keyId === 1 ? VECTOR_INPUTS.key1 : VECTOR_INPUTS.key2;
  const message = openFrame(nobleAead, key, frame, header);
  const described = Object.fromEntries(Object.entries(message).map(([k, value]) => [k, value instanceof Uint8Array ? toHex(value) : value]));
  expect(described).toEqual(v.message);
  expect(toHex(frame.subarray(36, 52))).toBe(v.iv);
});
