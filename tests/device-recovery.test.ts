/**
 * The device side of recovery (docs/PROTOCOL.md §12.4): DS12–DS17 and
 * DK14–DK17 of the real DeviceCore, against frames built with
 * modules/crypto/recovery.ts playing the hub. Properties: nothing changes
 * before tag4 (R1: a bad tag2 or tag4, a forged or replayed frame, an
 * impostor hub without s_h change no slot and persist nothing); the
 * recovered key is persisted before anything is sealed under it, and the
 * future slot is replaced only then (R2); an N not above every id held is
 * refused (R3); attempts are spaced (§12.7); ephemerals are wiped.
 *
 * Broken variants (the real modules loaded fresh with one function replaced,
 * jest.doMock in an isolated registry, as tests/keystore-variants.test.ts):
 * each is refuted by the same check the real core passes.
 */
import { nodeAead } from '../hosts/node/crypto';
import { nodeKeyAgreement } from '../hosts/node/key-agreement';
import type { DeviceAction, DevicePersistOp } from '../modules/device/actions';
import type { DeviceCore as DeviceCoreType, DeviceConfig } from '../modules/device/device';
import { hubRecoveryReply, hubVerifyRecoverInit, recoveryResultFrame, verifyRecoveryFinish, type RecoveryCredential, type StaticKeyPair } from '../modules/crypto/recovery';
import { MessageType, RecoveryStatus, RECOVERY_RETRY_INITIAL_MS, RECOVERY_RETRY_MAX_MS, WireError } from '../modules/protocol/constants';
import { encodeChallenge, openFrame, sealFrame } from '../modules/protocol/frame';
import { withLengthPrefix } from '../modules/protocol/framing';
import { decodeHeader, encodeHeader } from '../modules/protocol/header';
import { seededRandom } from '../tools/testing/deterministic-random';
import { RecoveryPacer } from '../modules/device/recovery-pacing';
import { toHex } from '../modules/bytes';

type CoreModule = typeof import('../modules/device/device');
const ka = nodeKeyAgreement;
const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);

function pair(fill: number): StaticKeyPair {
  const privateKey = new Uint8Array(32).fill(fill);
  return { privateKey, publicKey: ka.x25519PublicKey(privateKey) };
}
const hubStatic = pair(0x42);
const deviceStatic = pair(0x17);
const credential: RecoveryCredential = { device: deviceStatic, hubStaticId: 1, hubPublicKey: hubStatic.publicKey };
const key = (fill: number) => new Uint8Array(64).fill(fill);

function hdr(type: number, fromHub: boolean, sequence: number, nonce: Uint8Array, keyId = 0): Uint8Array {
  return encodeHeader({ type: type as never, fromHub, deviceId, keyId, sequence, sessionId: nonce });
}
const framed = (frame: Uint8Array) => withLengthPrefix(frame);

/** The frames a device transmitted (length prefixes removed). */
function transmitted(actions: readonly DeviceAction[]): Uint8Array[] {
  return actions.filter((a): a is Extract<DeviceAction, { type: 'transmit' }> => a.type === 'transmit').map((a) => a.bytes.subarray(2));
}
function events(actions: readonly DeviceAction[]) {
  return actions.filter((a): a is Extract<DeviceAction, { type: 'event' }> => a.type === 'event').map((a) => a.event);
}
function persists(actions: readonly DeviceAction[]): DevicePersistOp[] {
  return actions.filter((a): a is Extract<DeviceAction, { type: 'persist' }> => a.type === 'persist').map((a) => a.op);
}
function closes(actions: readonly DeviceAction[]) {
  return actions.filter((a): a is Extract<DeviceAction, { type: 'close' }> => a.type === 'close');
}

interface Options {
  readonly active?: number;
  readonly future?: number;
  readonly credential?: RecoveryCredential | null;
  readonly pacer?: RecoveryPacer;
  readonly core?: CoreModule;
}

function makeDevice(options: Options = {}): DeviceCoreType {
  const module = options.core ?? (require('../modules/device/device') as CoreModule);
  const config: DeviceConfig = {
    deviceId,
    keys: { mode: 'classic', active: { id: options.active ?? 5, key: key(5) }, ...(options.future === undefined ? {} : { future: { id: options.future, key: key(6) } }) },
    aead: nodeAead,
    random: seededRandom(7),
    keyAgreement: ka,
    ...(options.credential === null ? {} : { credential: options.credential ?? credential }),
    ...(options.pacer === undefined ? {} : { recoveryPacer: options.pacer }),
  };
  return new module.DeviceCore(config);
}

/** A hub that lost the device's key: CHALLENGE, NO_KEY, then the handshake with its static key `hub`. */
class RecoveringHub {
  readonly nonce: Uint8Array;
  readonly hub: StaticKeyPair;
  readonly newKeyId: number;
  readonly random = seededRandom(99);
  init: Uint8Array | undefined;
  secrets: { macKey: Uint8Array; recoveredKey: Uint8Array } | undefined;

  constructor(options: { nonceFill?: number; hub?: StaticKeyPair; newKeyId?: number } = {}) {
    this.nonce = new Uint8Array(16).fill(options.nonceFill ?? 0xa1);
    this.hub = options.hub ?? hubStatic;
    this.newKeyId = options.newKeyId ?? 10;
  }
  challenge(): Uint8Array {
    return framed(encodeChallenge(this.nonce));
  }
  noKey(): Uint8Array {
    return framed(hdr(MessageType.NO_KEY, true, 1, this.nonce));
  }
  /** RECOVER_REPLY for the device's RECOVER_INIT (the hub verifies tag1 as the real hub does). */
  reply(init: Uint8Array): Uint8Array {
    this.init = init.slice();
    const verified = hubVerifyRecoverInit(ka, { hubStatic: this.hub, devicePublicKey: deviceStatic.publicKey, deviceId, hubNonce: this.nonce }, init);
    const { frame, secrets } = hubRecoveryReply(ka, this.random, {
      k1: verified.k1,
      initFrame: init,
      header: hdr(MessageType.RECOVER_REPLY, true, 2, this.nonce),
      newKeyId: this.newKeyId,
      devicePublicKey: deviceStatic.publicKey,
      deviceShare: verified.claim.deviceShare,
    });
    this.secrets = secrets;
    return framed(frame);
  }
  result(finish: Uint8Array, status: number = RecoveryStatus.ACCEPTED, retryAfterSeconds = 0): Uint8Array {
    const secrets = this.secrets as { macKey: Uint8Array };
    verifyRecoveryFinish(ka, secrets.macKey, finish);
    return framed(recoveryResultFrame(ka, secrets.macKey, hdr(MessageType.RECOVER_RESULT, true, 3, this.nonce), status, retryAfterSeconds));
  }
}

/** Connects and runs the handshake up to RECOVER_INIT; returns it. */
function toInit(device: DeviceCoreType, hub: RecoveringHub, now = 0): { init: Uint8Array; actions: DeviceAction[] } {
  device.connected(now);
  const hello = transmitted(device.receive(hub.challenge(), now));
  expect(hello).toHaveLength(1);
  const actions = device.receive(hub.noKey(), now);
  const frames = transmitted(actions);
  return { init: frames[0] as Uint8Array, actions };
}

function toFinish(device: DeviceCoreType, hub: RecoveringHub, now = 0): Uint8Array {
  const { init } = toInit(device, hub, now);
  const frames = transmitted(device.receive(hub.reply(init), now));
  expect(frames).toHaveLength(1);
  return frames[0] as Uint8Array;
}

/** The protocol state that must not change before tag4 (slots, credential). */
function slots(device: DeviceCoreType) {
  const s = device.snapshot();
  return { activeKeyId: s.activeKeyId, activeKey: s.activeKey, futureKeyId: s.futureKeyId, futureKey: s.futureKey, credential: s.credentialPublicKey };
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] = (copy[at] as number) ^ 0x80;
  return copy;
}

describe('the whole recovery (DS12, DS13, DS15 → DK14, then DK5 on the next connection)', () => {
  test('ACCEPTED: persisted before anything is sealed under N, then reconnect at once and promote on the WELCOME under N', () => {
    const device = makeDevice({ active: 5, future: 6 });
    const hub = new RecoveringHub({ newKeyId: 10 });
    const { init, actions } = toInit(device, hub);
    expect(events(actions)).toContainEqual({ type: 'hubLostKey', activeKeyId: 5, futureKeyId: 6 });
    expect(init.length).toBe(128);
    expect(decodeHeader(init)).toMatchObject({ type: MessageType.RECOVER_INIT, keyId: 0, sequence: 1, fromHub: false });
    expect(device.session).toBe('recoverSent');
    const finish = transmitted(device.receive(hub.reply(init), 0))[0] as Uint8Array;
    expect(decodeHeader(finish)).toMatchObject({ type: MessageType.RECOVER_FINISH, keyId: 0, sequence: 2 });
    expect(device.session).toBe('recoverFinished');
    const before = slots(device);
    const result = device.receive(hub.result(finish), 0);
    // DK14: one persist, nothing transmitted, no close, the slots unchanged until it is durable (R2).
    expect(persists(result)).toEqual([{ kind: 'storeRecovered', id: 10, key: hub.secrets?.recoveredKey }]);
    expect(transmitted(result)).toEqual([]);
    expect(closes(result)).toEqual([]);
    expect(slots(device)).toEqual(before);
    expect(device.snapshot().recovery).toBeUndefined(); // m and K_N wiped from the handshake state
    const done = device.persisted(1);
    expect(events(done)).toContainEqual({ type: 'recovered', newKeyId: 10 });
    expect(closes(done)).toHaveLength(1);
    expect(closes(done)[0]?.reconnectNow).toBe(true);
    expect(transmitted(done)).toEqual([]);
    expect(device.keys.future).toEqual({ id: 10, key: hub.secrets?.recoveredKey });
    expect(device.keys.active.id).toBe(5);
    expect(device.session).toBe('offline');
    // The next connection: HELLO sealed under N (DK6); the hub's WELCOME under N promotes it (DK5).
    const recovered = (hub.secrets as { recoveredKey: Uint8Array }).recoveredKey;
    const nonce = new Uint8Array(16).fill(0xb2);
    device.connected(2);
    const hello = transmitted(device.receive(framed(encodeChallenge(nonce)), 2))[0] as Uint8Array;
    const helloHeader = decodeHeader(hello);
    expect(helloHeader.keyId).toBe(10);
    const helloMessage = openFrame(nodeAead, recovered, hello, helloHeader);
    if (helloMessage.type !== MessageType.HELLO) throw new Error('not a HELLO');
    const welcome = sealFrame({
      aead: nodeAead,
      key: recovered,
      iv: new Uint8Array(16).fill(3),
      header: { fromHub: true, deviceId, keyId: 10, sequence: 1, sessionId: nonce },
      message: { type: MessageType.WELCOME, deviceNonce: helloMessage.deviceNonce, hubKeyId: 10 },
    });
    expect(persists(device.receive(framed(welcome), 2))).toEqual([{ kind: 'promote', id: 10 }]);
    const established = device.persisted(3);
    expect(events(established)).toContainEqual({ type: 'established', keyId: 10 });
    expect(device.keys).toEqual({ mode: 'classic', active: { id: 10, key: recovered } });
  });

  test('IN_SYNC: nothing changes, close and reconnect at once', () => {
    const device = makeDevice();
    const hub = new RecoveringHub();
    const finish = toFinish(device, hub);
    const before = slots(device);
    const actions = device.receive(hub.result(finish, RecoveryStatus.IN_SYNC), 0);
    expect(persists(actions)).toEqual([]);
    expect(events(actions)).toContainEqual({ type: 'recoveryInSync' });
    expect(closes(actions)[0]?.reconnectNow).toBe(true);
    expect(slots(device)).toEqual(before);
  });

  test.each([
    ['AWAITING_APPROVAL', RecoveryStatus.AWAITING_APPROVAL, 120],
    ['REFUSED', RecoveryStatus.REFUSED, 0],
    ['RATE_LIMITED', RecoveryStatus.RATE_LIMITED, 7200],
    ['KEY_IDS_EXHAUSTED', RecoveryStatus.KEY_IDS_EXHAUSTED, 0],
  ])('%s: nothing changes; close; the next attempt waits max(retry after capped at 1 h, the spacing)', (reason, status, retryAfter) => {
    const device = makeDevice();
    const hub = new RecoveringHub();
    const finish = toFinish(device, hub, 1000);
    const before = slots(device);
    const actions = device.receive(hub.result(finish, status, retryAfter), 1000);
    expect(persists(actions)).toEqual([]);
    const expectedWait = Math.max(RECOVERY_RETRY_INITIAL_MS, Math.min(retryAfter * 1000, RECOVERY_RETRY_MAX_MS));
    expect(events(actions)).toContainEqual({ type: 'recoveryRefused', reason, retryAfterMs: expectedWait });
    expect(closes(actions)).toHaveLength(1);
    expect(closes(actions)[0]?.reconnectNow).toBeUndefined();
    expect(slots(device)).toEqual(before);
  });
});

describe('R1: nothing changes before tag4', () => {
  test('every flipped bit-7 of RECOVER_REPLY (header and body) closes, changes nothing, sends no RECOVER_FINISH', () => {
    for (let at = 0; at < 104; at++) {
      const device = makeDevice({ active: 5, future: 6 });
      const hub = new RecoveringHub();
      const { init } = toInit(device, hub);
      const before = slots(device);
      const reply = hub.reply(init);
      const actions = device.receive(flip(reply, 2 + at), 0);
      expect(transmitted(actions)).toEqual([]);
      expect(persists(actions)).toEqual([]);
      expect(closes(actions)).toHaveLength(1);
      expect(slots(device)).toEqual(before);
      expect(device.snapshot().recovery).toBeUndefined(); // e_d wiped
    }
  });

  test('every flipped bit-7 of RECOVER_RESULT closes and persists nothing', () => {
    for (let at = 0; at < 74; at++) {
      const device = makeDevice();
      const hub = new RecoveringHub();
      const finish = toFinish(device, hub);
      const before = slots(device);
      const actions = device.receive(flip(hub.result(finish), 2 + at), 0);
      expect(persists(actions)).toEqual([]);
      expect(closes(actions)).toHaveLength(1);
      expect(slots(device)).toEqual(before);
    }
  });

  test('an impostor hub with a copy of the database (S_d, every key) but its own static key cannot make the device store a key', () => {
    const device = makeDevice();
    const impostor = new RecoveringHub({ hub: { privateKey: pair(0x43).privateKey, publicKey: hubStatic.publicKey } });
    const { init } = toInit(device, impostor);
    // The impostor cannot even verify tag1 (it needs s_h); it answers with a reply of its own making.
    expect(() => impostor.reply(init)).toThrow();
    const honestLooking = new RecoveringHub({ hub: pair(0x43) }); // signs with another hub static key
    const device2 = makeDevice({ credential: { ...credential, hubPublicKey: hubStatic.publicKey } });
    const { init: init2 } = toInit(device2, honestLooking);
    // Build a reply for the device's init as if the device knew the impostor's key: tag2 cannot verify.
    const forged = forgeReply(init2, honestLooking);
    const before = slots(device2);
    const actions = device2.receive(forged, 0);
    expect(events(actions)).toContainEqual(expect.objectContaining({ type: 'recoveryRefused', reason: 'AUTH_FAILED' }));
    expect(transmitted(actions)).toEqual([]);
    expect(slots(device2)).toEqual(before);
  });

  test('a RECOVER_REPLY recorded in another session is refused (bound to Nh)', () => {
    const first = makeDevice();
    const hubA = new RecoveringHub({ nonceFill: 1 });
    const { init } = toInit(first, hubA);
    const recorded = hubA.reply(init);
    const device = makeDevice();
    const hubB = new RecoveringHub({ nonceFill: 2 });
    toInit(device, hubB);
    const before = slots(device);
    const actions = device.receive(recorded, 0);
    expect(transmitted(actions)).toEqual([]);
    expect(closes(actions)).toHaveLength(1);
    expect(slots(device)).toEqual(before);
  });

  test('DS16: anything else in the recovery states closes (a sealed frame, a CHALLENGE, NO_KEY again, the timeout)', () => {
    const cases: [string, (hub: RecoveringHub) => Uint8Array][] = [
      ['CHALLENGE', (hub) => hub.challenge()],
      ['NO_KEY again', (hub) => framed(hdr(MessageType.NO_KEY, true, 2, hub.nonce))],
      ['RECOVER_RESULT before RECOVER_REPLY', (hub) => framed(new Uint8Array([...hdr(MessageType.RECOVER_RESULT, true, 2, hub.nonce), ...new Uint8Array(38)]))],
      ['garbage length', () => Uint8Array.of(0, 1, 0)],
    ];
    for (const [name, frame] of cases) {
      const device = makeDevice();
      const hub = new RecoveringHub();
      toInit(device, hub);
      const before = slots(device);
      const actions = device.receive(frame(hub), 0);
      expect([name, closes(actions).length]).toEqual([name, 1]);
      expect(slots(device)).toEqual(before);
      expect(device.session).toBe('offline');
    }
    const device = makeDevice();
    const hub = new RecoveringHub();
    toFinish(device, hub, 100);
    expect(device.nextDeadline()).toBe(100 + 10_000);
    const actions = device.tick(100 + 10_000);
    expect(closes(actions)[0]?.error.code).toBe('TIMEOUT');
    expect(device.session).toBe('offline');
    expect(device.snapshot().recovery).toBeUndefined();
  });

  test('a malformed NO_KEY (wrong seq, a body, another device, a key id) is DS9: rejected, no RECOVER_INIT', () => {
    const bad = (nonce: Uint8Array) => [
      framed(hdr(MessageType.NO_KEY, true, 2, nonce)),
      framed(new Uint8Array([...hdr(MessageType.NO_KEY, true, 1, nonce), 0, 0, 0, 0])),
      framed(encodeHeader({ type: MessageType.NO_KEY, fromHub: true, deviceId: new Uint8Array(8), keyId: 0, sequence: 1, sessionId: nonce })),
      framed(hdr(MessageType.NO_KEY, true, 1, nonce, 5)),
      framed(hdr(MessageType.NO_KEY, true, 1, new Uint8Array(16))),
    ];
    for (const frame of bad(new RecoveringHub().nonce)) {
      const device = makeDevice();
      const hub = new RecoveringHub();
      device.connected(0);
      device.receive(hub.challenge(), 0);
      const actions = device.receive(frame, 0);
      expect(transmitted(actions)).toEqual([]);
      expect(events(actions).map((e) => e.type)).toEqual(['rejected']);
      expect(device.session).toBe('awaitingWelcome');
    }
  });
});

describe('R3: an N not above every id the device holds is refused', () => {
  test.each([
    ['N = active (no future)', 5, undefined, 5],
    ['N below active', 5, undefined, 3],
    ['N = future', 5, 6, 6],
    ['N between active and future', 5, 9, 7],
  ])('%s', (_name, active, future, newKeyId) => {
    const device = makeDevice({ active, ...(future === undefined ? {} : { future }) });
    const hub = new RecoveringHub({ newKeyId });
    const { init } = toInit(device, hub);
    const before = slots(device);
    const actions = device.receive(hub.reply(init), 0);
    expect(transmitted(actions)).toEqual([]);
    expect(persists(actions)).toEqual([]);
    expect(closes(actions)[0]?.error.code).toBe('RECOVERY_REFUSED');
    expect(events(actions)).toContainEqual(expect.objectContaining({ type: 'recoveryRefused', reason: 'RECOVERY_REFUSED' }));
    expect(slots(device)).toEqual(before);
  });

  test('N = max + 1 and N = 0xFFFFFFFF are accepted', () => {
    for (const newKeyId of [7, 0xffffffff]) {
      const device = makeDevice({ active: 5, future: 6 });
      const hub = new RecoveringHub({ newKeyId });
      const { init } = toInit(device, hub);
      expect(transmitted(device.receive(hub.reply(init), 0))).toHaveLength(1);
    }
  });
});

describe('DS12 limits: the credential, the attempt spacing, once per episode', () => {
  test('without a credential NO_KEY closes with NO_CREDENTIAL (hubLostKey still reported)', () => {
    const device = makeDevice({ credential: null });
    const { init, actions } = toInit(device, new RecoveringHub());
    expect(init).toBeUndefined();
    expect(closes(actions)[0]?.error.code).toBe('NO_CREDENTIAL');
    expect(events(actions)).toContainEqual({ type: 'hubLostKey', activeKeyId: 5, futureKeyId: 0 });
  });

  test('attempts are spaced 30 s doubling to 1 h; a NO_KEY inside the spacing just closes; hubLostKey once per episode; a WELCOME resets', () => {
    const pacer = new RecoveryPacer();
    let now = 0;
    const attempt = (): { attempted: boolean; lostKey: boolean } => {
      const device = makeDevice({ pacer });
      const { init, actions } = toInit(device, new RecoveringHub(), now);
      return { attempted: init !== undefined, lostKey: events(actions).some((e) => e.type === 'hubLostKey') };
    };
    expect(attempt()).toEqual({ attempted: true, lostKey: true });
    const gaps: number[] = [];
    let last = now;
    while (gaps.length < 9) {
      now += 10_000;
      const { attempted, lostKey } = attempt();
      expect(lostKey).toBe(false);
      if (attempted) {
        gaps.push(now - last);
        last = now;
      }
    }
    expect(gaps).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
    pacer.reset(); // what DS3 does; shown through the core below
    expect(attempt()).toEqual({ attempted: true, lostKey: true });
  });

  test('the WELCOME (DS3) resets the spacing and the episode', () => {
    const pacer = new RecoveryPacer();
    const device = makeDevice({ pacer });
    toInit(device, new RecoveringHub(), 0);
    expect(pacer.allows(1)).toBe(false);
    // An established session under the active key.
    const nonce = new Uint8Array(16).fill(0xc3);
    device.connected(5);
    const hello = transmitted(device.receive(framed(encodeChallenge(nonce)), 5))[0] as Uint8Array;
    const message = openFrame(nodeAead, key(5), hello, decodeHeader(hello));
    if (message.type !== MessageType.HELLO) throw new Error('not a HELLO');
    const welcome = sealFrame({ aead: nodeAead, key: key(5), iv: new Uint8Array(16), header: { fromHub: true, deviceId, keyId: 5, sequence: 1, sessionId: nonce }, message: { type: MessageType.WELCOME, deviceNonce: message.deviceNonce, hubKeyId: 5 } });
    device.receive(framed(welcome), 5);
    expect(device.session).toBe('established');
    expect(pacer.allows(6)).toBe(true);
    expect(pacer.markLostKey()).toBe(true);
  });
});

/** An established session under the active key 5, and a way to send sealed hub frames. */
function established(options: Options = {}) {
  const device = makeDevice(options);
  const nonce = new Uint8Array(16).fill(0xd4);
  device.connected(0);
  const hello = transmitted(device.receive(framed(encodeChallenge(nonce)), 0))[0] as Uint8Array;
  const message = openFrame(nodeAead, key(5), hello, decodeHeader(hello));
  if (message.type !== MessageType.HELLO) throw new Error('not a HELLO');
  let seq = 1;
  const send = (body: Parameters<typeof sealFrame>[0]['message']) =>
    device.receive(framed(sealFrame({ aead: nodeAead, key: key(5), iv: new Uint8Array(16).fill(seq), header: { fromHub: true, deviceId, keyId: 5, sequence: seq++, sessionId: nonce }, message: body })), 0);
  send({ type: MessageType.WELCOME, deviceNonce: message.deviceNonce, hubKeyId: 5 });
  expect(device.session).toBe('established');
  const open = (frame: Uint8Array) => openFrame(nodeAead, key(5), frame, decodeHeader(frame));
  return { device, send, open };
}

describe('enrolment (DS17: DK15–DK17)', () => {
  const hubKey = pair(0x51);

  test('DK15: s_d drawn, the credential persisted, THEN ENROL_ACK with S_d; DK16: the same ENROL acknowledged again', () => {
    const { device, send, open } = established({ credential: null });
    const actions = send({ type: MessageType.ENROL, hubStaticId: 4, hubPublicKey: hubKey.publicKey });
    expect(transmitted(actions)).toEqual([]);
    const ops = persists(actions);
    expect(ops).toHaveLength(1);
    const op = ops[0] as Extract<DevicePersistOp, { kind: 'storeCredential' }>;
    expect(op.kind).toBe('storeCredential');
    expect(op.credential.hubStaticId).toBe(4);
    expect(toHex(op.credential.hubPublicKey)).toBe(toHex(hubKey.publicKey));
    expect(toHex(op.credential.device.publicKey)).toBe(toHex(ka.x25519PublicKey(op.credential.device.privateKey)));
    expect(device.credentialInfo).toBeUndefined(); // not before it is durable
    const done = device.persisted(1);
    expect(events(done)).toContainEqual({ type: 'enrolled', hubStaticId: 4 });
    const ack = open(transmitted(done)[0] as Uint8Array);
    expect(ack).toEqual({ type: MessageType.ENROL_ACK, hubStaticId: 4, devicePublicKey: op.credential.device.publicKey });
    const again = send({ type: MessageType.ENROL, hubStaticId: 4, hubPublicKey: hubKey.publicKey });
    expect(persists(again)).toEqual([]);
    expect(open(transmitted(again)[0] as Uint8Array)).toEqual(ack);
  });

  test('DK17: an ENROL for another hub static key (another id, or another S_h) is STATIC_KEY_LOCKED and changes nothing', () => {
    for (const enrol of [
      { hubStaticId: 2, hubPublicKey: hubStatic.publicKey },
      { hubStaticId: 1, hubPublicKey: hubKey.publicKey },
    ]) {
      const { device, send, open } = established();
      const before = device.credentialInfo;
      const actions = send({ type: MessageType.ENROL, ...enrol });
      expect(persists(actions)).toEqual([]);
      expect(events(actions)).toContainEqual({ type: 'staticKeyLocked' });
      expect(open(transmitted(actions)[0] as Uint8Array)).toEqual({ type: MessageType.ERROR, code: WireError.STATIC_KEY_LOCKED, detail: enrol.hubStaticId });
      expect(device.credentialInfo).toEqual(before);
    }
  });

  test('an ENROL with a low-order S_h is refused (BAD_KEY_SHARE) before anything is stored', () => {
    const { send, open } = established({ credential: null });
    const actions = send({ type: MessageType.ENROL, hubStaticId: 4, hubPublicKey: new Uint8Array(32) });
    expect(persists(actions)).toEqual([]);
    expect(open(transmitted(actions)[0] as Uint8Array)).toMatchObject({ type: MessageType.ERROR, code: WireError.BAD_KEY_SHARE });
  });

  test('an ENROL outside an established session is rejected (DS9)', () => {
    const device = makeDevice({ credential: null });
    device.connected(0);
    const hub = new RecoveringHub();
    device.receive(hub.challenge(), 0);
    const forged = sealFrame({ aead: nodeAead, key: key(5), iv: new Uint8Array(16), header: { fromHub: true, deviceId, keyId: 5, sequence: 1, sessionId: hub.nonce }, message: { type: MessageType.ENROL, hubStaticId: 1, hubPublicKey: hubKey.publicKey } });
    const actions = device.receive(framed(forged), 0);
    expect(persists(actions)).toEqual([]);
    expect(events(actions).map((e) => e.type)).toEqual(['rejected']);
  });
});

/** A reply the impostor signs with its own key pair (it cannot produce one the device verifies). */
function forgeReply(init: Uint8Array, impostor: RecoveringHub): Uint8Array {
  // The impostor pretends the device's S_h is its own public key: it computes the tags over what it can.
  const verifiedAsIfOwn = (() => {
    try {
      return hubVerifyRecoverInit(ka, { hubStatic: impostor.hub, devicePublicKey: deviceStatic.publicKey, deviceId, hubNonce: impostor.nonce }, init);
    } catch {
      return undefined;
    }
  })();
  expect(verifiedAsIfOwn).toBeUndefined(); // tag1 does not even verify for it
  // So it makes up k1 (it has neither es nor ss), and replies with its best effort.
  const { frame } = hubRecoveryReply(ka, impostor.random, {
    k1: new Uint8Array(64).fill(0x77),
    initFrame: init,
    header: hdr(MessageType.RECOVER_REPLY, true, 2, impostor.nonce),
    newKeyId: 99,
    devicePublicKey: deviceStatic.publicKey,
    deviceShare: init.subarray(36, 68),
  });
  return framed(frame);
}

// ---- Broken variants ----

const MOCKABLE = ['../modules/device/table', '../modules/crypto/recovery', '../modules/bytes'];

function isolatedCore(mock: () => void): CoreModule {
  let core: CoreModule | undefined;
  try {
    jest.isolateModules(() => {
      mock();
      core = require('../modules/device/device') as CoreModule;
    });
  } finally {
    for (const path of MOCKABLE) jest.dontMock(path);
  }
  return core as CoreModule;
}

/** R3's check, as a function of the core: true when the device refuses N = its active id. */
function refusesReusedId(core: CoreModule): boolean {
  const device = makeDevice({ active: 5, core });
  const hub = new RecoveringHub({ newKeyId: 5 });
  const { init } = toInit(device, hub);
  const actions = device.receive(hub.reply(init), 0);
  return transmitted(actions).length === 0 && closes(actions).length === 1;
}

/** R1's check: a RECOVER_RESULT ACCEPTED with a bad tag4 persists nothing. */
function ignoresForgedResult(core: CoreModule): boolean {
  const device = makeDevice({ core });
  const hub = new RecoveringHub();
  const finish = toFinish(device, hub);
  const actions = device.receive(flip(hub.result(finish), 2 + 73), 0);
  return persists(actions).length === 0;
}

/** The attacker test: an impostor hub (without s_h) never makes the device persist a key. */
function resistsImpostor(core: CoreModule): boolean {
  const device = makeDevice({ core });
  const impostor = new RecoveringHub({ hub: pair(0x43) });
  const { init } = toInit(device, impostor);
  let actions = device.receive(forgeReply(init, impostor), 0);
  const finish = transmitted(actions)[0];
  if (finish === undefined) return persists(actions).length === 0;
  // The broken device went on: the impostor answers ACCEPTED with whatever tag.
  const result = new Uint8Array(74);
  result.set(hdr(MessageType.RECOVER_RESULT, true, 3, impostor.nonce));
  actions = device.receive(framed(result), 0);
  return persists(actions).length === 0;
}

describe('broken variants are refuted by the checks the real core passes', () => {
  test('the real core passes all three', () => {
    const real = isolatedCore(() => {});
    expect(refusesReusedId(real)).toBe(true);
    expect(ignoresForgedResult(real)).toBe(true);
    expect(resistsImpostor(real)).toBe(true);
  });

  test('a device whose R3 row accepts any N (a recovery reusing the device\'s current id) is refuted', () => {
    const broken = isolatedCore(() =>
      jest.doMock('../modules/device/table', () => {
        const actual = jest.requireActual('../modules/device/table');
        return { ...actual, deviceRecoverReplyRow: () => ({ id: 'DS13', action: 'finish' }) };
      }),
    );
    expect(refusesReusedId(broken)).toBe(false);
  });

  test('a device that acts on RECOVER_RESULT without verifying tag4 (persists before the hub is authenticated) is refuted', () => {
    const broken = isolatedCore(() =>
      jest.doMock('../modules/crypto/recovery', () => {
        const actual = jest.requireActual('../modules/crypto/recovery');
        return { ...actual, verifyRecoveryResult: (_p: unknown, _m: unknown, frame: Uint8Array) => ({ status: new DataView(frame.buffer, frame.byteOffset).getUint16(36), retryAfterSeconds: 0 }) };
      }),
    );
    expect(ignoresForgedResult(broken)).toBe(false);
  });

  test('a device that accepts a recovery without checking the hub\'s static key (no tag verified) is refuted by the impostor', () => {
    // Derives as usual but every tag comparison says equal (tag2 and tag4 are never really checked).
    const broken = isolatedCore(() => jest.doMock('../modules/bytes', () => ({ ...jest.requireActual('../modules/bytes'), constantTimeEqual: () => true })));
    expect(resistsImpostor(broken)).toBe(false);
  });
});

// ---- The loop: immediate reconnect, and R2 seen from the flash ----

import { DeviceLoop, type DeviceConnection, type DeviceLoopEvent, type DeviceTransportEvents } from '../modules/device/loop';
import { NorFlash } from '../modules/flash/nor-flash';
import { Keystore } from '../modules/keystore/keystore';
import type { KeyStorage } from '../modules/keystore/key-storage';
import { FrameReader } from '../modules/protocol/framing';

class ManualTimers {
  now = 0;
  #next = 1;
  readonly #timers = new Map<number, { at: number; callback: () => void }>();
  set = (callback: () => void, delayMs: number): unknown => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + Math.max(0, delayMs), callback });
    return id;
  };
  clear = (handle: unknown): void => void this.#timers.delete(handle as number);
  /** Runs the earliest timer; false if none. */
  step(): boolean {
    let first: [number, { at: number; callback: () => void }] | undefined;
    for (const entry of this.#timers) if (first === undefined || entry[1].at < first[1].at) first = entry;
    if (first === undefined) return false;
    this.#timers.delete(first[0]);
    this.now = Math.max(this.now, first[1].at);
    first[1].callback();
    return true;
  }
}

/**
 * A hub that lost the device's keys (it holds only `hubKeys`) and runs the
 * handshake with its static key, granting N; then accepts HELLOs under N.
 */
function recoveringTransport(timers: ManualTimers, grant: number) {
  const hubKeys = new Map<number, Uint8Array>();
  let connection = 0;
  const transport = (events: DeviceTransportEvents): DeviceConnection => {
    const nonce = new Uint8Array(16).fill(++connection);
    const hub = new RecoveringHub({ nonceFill: connection, newKeyId: grant });
    const reader = new FrameReader();
    let open = true;
    let finishSeen = false;
    const handle = (frame: Uint8Array): void => {
      const header = decodeHeader(frame);
      if (header.type === MessageType.HELLO) {
        const held = hubKeys.get(header.keyId);
        if (held === undefined) return events.onData(hub.noKey());
        const hello = openFrame(nodeAead, held, frame, header);
        if (hello.type !== MessageType.HELLO) return;
        const welcome = sealFrame({ aead: nodeAead, key: held, iv: new Uint8Array(16), header: { fromHub: true, deviceId, keyId: header.keyId, sequence: 1, sessionId: nonce }, message: { type: MessageType.WELCOME, deviceNonce: hello.deviceNonce, hubKeyId: header.keyId } });
        return events.onData(framed(welcome));
      }
      if (header.type === MessageType.RECOVER_INIT) return events.onData(hub.reply(frame));
      if (header.type === MessageType.RECOVER_FINISH && !finishSeen) {
        finishSeen = true;
        hubKeys.set(grant, (hub.secrets as { recoveredKey: Uint8Array }).recoveredKey.slice()); // HK9: durable before the result
        events.onData(hub.result(frame));
        open = false;
        timers.set(() => events.onClosed('hub closed after RECOVER_RESULT'), 0); // after the data, as TCP delivers a FIN
      }
    };
    events.onConnected();
    events.onData(hub.challenge());
    return {
      write: (bytes) => {
        for (let at = 0; open && at < bytes.length; ) {
          const fed = reader.feed(bytes, at);
          at += fed.consumed;
          if (fed.frame !== undefined) handle(fed.frame);
        }
      },
      close: () => {
        open = false;
      },
    };
  };
  return { transport, hubKeys, connections: () => connection };
}

/** The plain keystore; `writeBack`: storeRecovered answers at once and writes nothing yet (the broken variant). */
function storageOn(flash: NorFlash, writeBack: boolean): KeyStorage {
  if (!writeBack) return new Keystore(flash);
  class WriteBack extends Keystore {
    override storeRecovered(): void {
      // "durable" at once; the write would happen later
    }
  }
  return new WriteBack(flash);
}

/** Runs a device through a recovery; returns the violations of "every key id a frame is sealed under is durable". */
function runLoop(writeBack: boolean) {
  const timers = new ManualTimers();
  const flash = new NorFlash({ sectorSize: 1024, sectors: 4 });
  new Keystore(flash).format(deviceId, { id: 5, key: key(5) }, 'classic', credential);
  const net = recoveringTransport(timers, 12);
  const violations: string[] = [];
  const seen: DeviceLoopEvent[] = [];
  const connectsAt: number[] = [];
  const loop = new DeviceLoop({
    storage: storageOn(flash, writeBack),
    transport: net.transport,
    timers,
    clock: { now: () => timers.now },
    random: seededRandom(5),
    aead: nodeAead,
    keyAgreement: ka,
    onEvent: (event) => {
      seen.push(event);
      if (event.type === 'connecting') connectsAt.push(timers.now);
    },
    beforeAction: (action) => {
      if (action.type !== 'transmit') return;
      const header = decodeHeader(action.bytes.subarray(2));
      if (header.keyId === 0) return;
      const durable = new Keystore(new NorFlash({ sectorSize: 1024, sectors: 4, image: flash.image() })).mount();
      const ids = durable.provisioned ? [durable.keys.active.id, durable.keys.future?.id] : [];
      if (!ids.includes(header.keyId)) violations.push(`sealed under ${header.keyId} while the flash holds ${ids.join(', ')}`);
    },
  });
  loop.start();
  for (let i = 0; i < 50 && !loop.established; i++) if (!timers.step()) break;
  return { loop, violations, seen, connectsAt, flash };
}

describe('the device loop around a recovery', () => {
  test('after DK14 the loop reconnects at once; the HELLO under N is sealed only once N is durable; WELCOME under N promotes', () => {
    const { loop, violations, seen, connectsAt, flash } = runLoop(false);
    expect(violations).toEqual([]);
    expect(seen.map((e) => e.type)).toEqual(expect.arrayContaining(['hubLostKey', 'recovered', 'keyPromoted', 'established']));
    expect(connectsAt).toHaveLength(2);
    expect(connectsAt[1]).toBe(connectsAt[0]); // no backoff after a recovery
    expect(loop.keys?.active.id).toBe(12);
    const mounted = new Keystore(flash).mount();
    expect(mounted.provisioned && mounted.keys.active.id).toBe(12);
    expect(mounted.provisioned && mounted.credential).toEqual(credential);
  });

  test('broken variant: a storage that reports storeRecovered durable before it is (the result used before it is persisted) is caught', () => {
    const { violations } = runLoop(true);
    expect(violations.length).toBeGreaterThan(0);
    expect(violations[0]).toMatch(/sealed under 12 while the flash holds 5/);
  });
});
