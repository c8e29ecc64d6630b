/**
 * The protocol vectors of docs/PROTOCOL.md Appendix A: regenerated here and
 * compared byte for byte with the committed files of docs/vectors/ and the
 * spec's generated block (the spec matches the code), then each frame is
 * opened with an independent AEAD (@noble) and decoded back to its message
 * (both directions), and accepted by the receiver written from the spec
 * alone (tests/support/spec-receiver.ts). The negative vectors and the
 * transcripts have their own files: vectors-negative.test.ts,
 * vectors-transcripts.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeAead } from '../hosts/node/crypto';
import { nobleAead } from '../hosts/noble/primitives';
import { toHex } from '../modules/bytes';
import { LENGTH_PREFIX_BYTES, MessageType } from '../modules/protocol/constants';
import { decodeChallenge, openFrame } from '../modules/protocol/frame';
import { decodeHeader } from '../modules/protocol/header';
import { dhVectorInputs, generateProtocolVectors, protocolVectorsFile, VECTOR_INPUTS, vectorsMarkdown } from '../tools/vectors/protocol-vectors';
import { generatedVectors } from '../tools/vectors/generate';
import { acceptedTypes, describeBody, receive } from './support/spec-receiver';
import { generateRecoveryVectors, recoveryVectorsMarkdown } from '../tools/vectors/recovery-vectors';
import { nodeKeyAgreementDrawn } from '../hosts/node/key-agreement';
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

const recovery = generateRecoveryVectors(nodeKeyAgreementDrawn);

test('every message type has a vector', () => {
  const recoveryTypes = recovery.frames.map((f) => Uint8Array.from(Buffer.from(f.wire, 'hex'))[3] as number);
  expect(new Set([...vectors.map((v) => v.message.type), ...recoveryTypes])).toEqual(new Set(Object.values(MessageType)));
});

test('the committed recovery JSON and its appendix section match the code', () => {
  expect(JSON.parse(readFileSync(join(root, 'docs', 'vectors', 'recovery-vectors.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(recovery)));
  expect(readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8')).toContain(recoveryVectorsMarkdown(recovery));
});

/** The recovery handshake recomputed with @noble alone from the recipe of §12.3, not from modules/crypto/recovery.ts. */
test('the recovery vectors follow the recipe of §12.3 (recomputed with @noble alone)', () => {
  const hex = (s: string | number | undefined) => Uint8Array.from(Buffer.from(String(s), "hex"));
  const cat = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));
  const u32 = (n: number) => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const label = new TextEncoder().encode('Lockstep v1 recovery');
  const input = recovery.inputs;
  const frames = Object.fromEntries(recovery.frames.map((f) => [f.name, hex(f.wire).subarray(2)]));
  const nh = hex(input.hubNonce);
  const ed = x25519.getPublicKey(hex(input.deviceEphemeralPrivate));
  const eh = x25519.getPublicKey(hex(input.hubEphemeralPrivate));
  const sd = x25519.getPublicKey(hex(input.deviceStaticPrivate));
  const sh = x25519.getPublicKey(hex(input.hubStaticPrivate));
  const init = frames.RECOVER_INIT!;
  const reply = frames.RECOVER_REPLY!;
  const hdr = (frame: Uint8Array) => frame.subarray(0, 36);
  const check = hkdf(sha512, cat(nh, ed), hex(input.deviceNewestKey), cat(label, Uint8Array.of(0x10)), 16);
  const m1 = cat(hdr(init), ed, u32(Number(input.hubStaticId ?? NaN)), u32(Number(input.deviceActiveKeyId ?? NaN)), u32(Number(input.deviceFutureKeyId ?? NaN)), check);
  expect(toHex(init.subarray(0, 96))).toBe(toHex(m1));
  const es = x25519.getSharedSecret(hex(input.deviceEphemeralPrivate), sh);
  const ss = x25519.getSharedSecret(hex(input.deviceStaticPrivate), sh);
  const k1 = hkdf(sha512, cat(es, ss), nh, cat(label, Uint8Array.of(0x01), hex(input.deviceId), sd, sh), 64);
  const tag1 = hkdf(sha512, m1, k1, cat(label, Uint8Array.of(0x11)), 32);
  expect(toHex(init.subarray(96))).toBe(toHex(tag1));
  const m2 = cat(hdr(reply), eh, u32(Number(input.newKeyId ?? NaN)));
  expect(toHex(reply.subarray(0, 72))).toBe(toHex(m2));
  const ee = x25519.getSharedSecret(hex(input.hubEphemeralPrivate), ed);
  const se = x25519.getSharedSecret(hex(input.hubEphemeralPrivate), sd);
  const out = hkdf(sha512, cat(ee, se), k1, cat(label, Uint8Array.of(0x02), m1, tag1, m2), 128);
  const mac = out.subarray(0, 64);
  expect(toHex(reply.subarray(72))).toBe(toHex(hkdf(sha512, m2, mac, cat(label, Uint8Array.of(0x12)), 32)));
  const finish = frames.RECOVER_FINISH!;
  expect(toHex(finish.subarray(36))).toBe(toHex(hkdf(sha512, hdr(finish), mac, cat(label, Uint8Array.of(0x13)), 32)));
  const result = frames.RECOVER_RESULT!;
  expect(toHex(result.subarray(36, 42))).toBe('000000000000');
  expect(toHex(result.subarray(42))).toBe(toHex(hkdf(sha512, result.subarray(0, 42), mac, cat(label, Uint8Array.of(0x14)), 32)));
  expect(toHex(out.subarray(64))).toBe(recovery.recoveredKey);
  expect(frames.NO_KEY!.length).toBe(36);
});

test('the committed JSON and the spec appendix match the code', () => {
  const committed = JSON.parse(readFileSync(join(root, 'docs', 'vectors', 'protocol-vectors.json'), 'utf8'));
  expect(committed.vectors).toEqual(JSON.parse(JSON.stringify(vectors)));
  expect(readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8')).toContain(vectorsMarkdown(vectors));
});

test('npm run vectors would write exactly the committed files and the committed Appendix A block', () => {
  const generated = generatedVectors();
  expect(Object.keys(generated.files).sort()).toEqual(['negative-vectors.json', 'protocol-vectors.json', 'recovery-vectors.json', 'transcripts.json']);
  for (const [name, content] of Object.entries(generated.files)) expect([name, readFileSync(join(root, 'docs', 'vectors', name), 'utf8') === content]).toEqual([name, true]);
  const spec = readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8');
  expect(generated.spliceInto(spec) === spec).toBe(true);
});

describe('the positive vectors file carries every input', () => {
  const file = protocolVectorsFile(nodeAead);
  const hex = (s: unknown) => Uint8Array.from(Buffer.from(String(s), 'hex'));
  const inputs = file.inputs as { deviceId: string; keys: Record<string, string>; hubNonce: string; deviceNonce: string; dh: Record<string, string>; enrol: Record<string, string | number> };

  test('a version, a description, keys by id, nonces, and the dh and static keys, consistent with each other (recomputed with @noble)', () => {
    expect(file.version).toBeGreaterThanOrEqual(2);
    expect(file.description).toMatch(/inputs/);
    expect(Object.keys(inputs.keys).sort()).toEqual(['1', '2', '3']);
    expect(inputs.keys['3']).toBe(toHex(nobleKey3()));
    expect(toHex(x25519.getPublicKey(hex(inputs.dh.hubEphemeralPrivate)))).toBe(inputs.dh.hubEphemeralPublic);
    expect(toHex(x25519.getPublicKey(hex(inputs.dh.deviceEphemeralPrivate)))).toBe(inputs.dh.deviceEphemeralPublic);
    expect(toHex(x25519.getSharedSecret(hex(inputs.dh.hubEphemeralPrivate), hex(inputs.dh.deviceEphemeralPublic)))).toBe(inputs.dh.x25519);
    expect(toHex(hkdf(sha512, hex(inputs.dh.x25519), hex(inputs.keys['2']), hex(inputs.dh.info), 64))).toBe(inputs.keys['3']);
    expect(toHex(x25519.getPublicKey(hex(inputs.enrol.hubStaticPrivate)))).toBe(inputs.enrol.hubStaticPublic);
    expect(toHex(x25519.getPublicKey(hex(inputs.enrol.deviceStaticPrivate)))).toBe(inputs.enrol.deviceStaticPublic);
  });

  test('the 1.1 additions are there: a classic HELLO under the future key, a hub ERROR, maximum-size DATA (the largest frames), both directions of DATA, DATA_ACK, PING and PONG', () => {
    const byName = new Map(file.vectors.map((v) => [v.name, v]));
    const hello = byName.get('HELLO under a classic future key');
    expect([hello?.keyId, hello?.message.activeKeyId, hello?.message.futureKeyId]).toEqual([2, 1, 2]);
    expect(byName.get('ERROR from the hub')?.direction).toBe('hub→device');
    expect((byName.get('DATA of maximum size')?.message.payload as string).length).toBe(2048);
    expect(byName.get('DATA of maximum size')?.wire.length).toBe(2 * (2 + 36 + 16 + 1040 + 32));
    expect(byName.get('DATA of maximum size with a key share')?.wire.length).toBe(2 * (2 + 36 + 32 + 16 + 1040 + 32));
    for (const type of [MessageType.DATA, MessageType.DATA_ACK, MessageType.PING, MessageType.PONG, MessageType.ERROR]) {
      expect(new Set(file.vectors.filter((v) => v.message.type === type).map((v) => v.direction))).toEqual(new Set(['hub→device', 'device→hub']));
    }
  });

  test.each(file.vectors.filter((v) => v.name !== 'CHALLENGE').map((v) => [v.name, v] as const))('%s: the receiver written from the spec opens it under inputs.keys[keyId] and reads its message', (_name, v) => {
    const receiver = v.direction === 'hub→device' ? 'device' : 'hub';
    const verdict = receive(
      { receiver, accepts: acceptedTypes(receiver, 'any'), beforeHello: false, deviceId: hex(inputs.deviceId), sessionId: hex(inputs.hubNonce), sequence: v.sequence, keys: new Map(Object.entries(inputs.keys).map(([id, key]) => [Number(id), hex(key)])), deviceNonce: hex(inputs.deviceNonce) },
      hex(v.wire),
    );
    if (!verdict.accepted) throw new Error(`${v.name}: ${verdict.error}`);
    expect(describeBody(verdict.type, verdict.body)).toEqual(v.message);
  });
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
