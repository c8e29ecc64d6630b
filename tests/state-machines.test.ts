/**
 * One test per row of the state tables in docs/PROTOCOL.md §8 (DS*, DK*,
 * HS*, HK*). Frames are inspected on the wire: their clear header says who
 * sealed them under which key id.
 */
import { nodeAead } from '../hosts/node/crypto';
import type { DeviceAction } from '../modules/device/device';
import { LockstepError } from '../modules/errors';
import type { HubAction } from '../modules/hub/hub';
import { KEEPALIVE_INTERVAL_MS, HANDSHAKE_TIMEOUT_MS, IDLE_TIMEOUT_MS, LENGTH_PREFIX_BYTES, MessageType } from '../modules/protocol/constants';
import { openFrame, sealFrame } from '../modules/protocol/frame';
import { withLengthPrefix } from '../modules/protocol/framing';
import { decodeHeader, type Header } from '../modules/protocol/header';
import type { Message } from '../modules/protocol/messages';
import { Pair } from '../tools/testing/pair';

function header(bytes: Uint8Array): Header {
  return decodeHeader(bytes.subarray(LENGTH_PREFIX_BYTES));
}
function open(bytes: Uint8Array, key: Uint8Array): Message {
  const frame = bytes.subarray(LENGTH_PREFIX_BYTES);
  return openFrame(nodeAead, key, frame, decodeHeader(frame));
}
function transmitted(actions: (DeviceAction | HubAction)[]): Uint8Array[] {
  return actions.flatMap((a) => (a.type === 'transmit' ? [a.bytes] : []));
}
function kinds(actions: (DeviceAction | HubAction)[]): string[] {
  return actions.map((a) => (a.type === 'event' ? `event:${a.event.type}` : a.type === 'persist' ? `persist:${a.op.kind}` : a.type));
}
function established(seed = 11): Pair {
  const pair = new Pair({ seed });
  pair.connect();
  pair.runUntilIdle();
  return pair;
}
/** A frame the hub could have sent next, sealed by the test with the hub's key. */
function forgeFromHub(pair: Pair, message: Message, keyId = pair.hubStore.active.id): Uint8Array {
  const snapshot = pair.device.snapshot();
  const key = keyId === pair.hubStore.active.id ? pair.hubStore.active.key : pair.hubStore.pending!.key!;
  const frame = sealFrame({
    aead: nodeAead,
    key,
    iv: new Uint8Array(16),
    header: { fromHub: true, deviceId: pair.deviceIdBytes, keyId, sequence: snapshot.sequenceIn as number, sessionId: Buffer.from(snapshot.hubNonce as string, 'hex') },
    message,
  });
  return withLengthPrefix(frame);
}

describe('device session table (D-S)', () => {
  test('DS1–DS3: connected → CHALLENGE → HELLO under the newest key with seq 0 → WELCOME → established', () => {
    const pair = new Pair();
    pair.autoPersist = true;
    expect(pair.device.session).toBe('offline');
    pair.connect();
    expect(pair.device.session).toBe('awaitingChallenge');
    pair.step(); // CHALLENGE reaches... the hub has nothing from the device yet, so the device gets it
    expect(pair.device.session).toBe('awaitingWelcome');
    const hello = header(pair.toHub[0]!);
    expect(hello.type).toBe(MessageType.HELLO);
    expect(hello.sequence).toBe(0);
    expect(hello.keyId).toBe(1);
    pair.runUntilIdle();
    expect(pair.device.session).toBe('established');
  });

  test('DS4: handshake timeout closes', () => {
    const pair = new Pair();
    pair.connect();
    const actions = pair.device.tick(pair.now + HANDSHAKE_TIMEOUT_MS);
    expect(actions).toEqual([{ type: 'close', error: expect.objectContaining({ code: 'TIMEOUT' }) }]);
    expect(pair.device.session).toBe('offline');
  });

  test('DS5/DS6: keep-alive PING when quiet, close when the hub is silent too long', () => {
    const pair = established();
    expect(pair.device.nextDeadline()).toBe(pair.now + KEEPALIVE_INTERVAL_MS);
    const ping = pair.device.tick(pair.now + KEEPALIVE_INTERVAL_MS);
    expect(transmitted(ping).map((b) => header(b).type)).toEqual([MessageType.PING]);
    const close = pair.device.tick(pair.now + IDLE_TIMEOUT_MS);
    expect(kinds(close)).toEqual(['close']);
  });

  test('DS7: transport closed → offline, idempotently', () => {
    const pair = established();
    expect(pair.device.disconnected(pair.now)).toEqual([]);
    expect(pair.device.disconnected(pair.now)).toEqual([]);
    expect(pair.device.session).toBe('offline');
  });

  test('DS9: eight rejected frames are tolerated, the ninth closes', () => {
    const pair = established();
    const junk = withLengthPrefix(new Uint8Array(100).fill(0x42));
    for (let i = 0; i < 8; i++) expect(kinds(pair.device.receive(junk, pair.now))).toEqual(['event:rejected']);
    expect(kinds(pair.device.receive(junk, pair.now))).toEqual(['event:rejected', 'close']);
  });
});

describe('device key table (D-K)', () => {
  test('DK1: REKEY → persist future first, REKEY_ACK sealed under the new key only after persisted', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.rotate(); // hub persist
    pair.step(); // hub persisted → REKEY queued
    const rekey = pair.toDevice.shift()!;
    expect(header(rekey).type).toBe(MessageType.REKEY);
    const actions = pair.device.receive(rekey, pair.now);
    expect(kinds(actions)).toEqual(['persist:storeFuture']);
    // Input meanwhile is kept by the core, not refused: nothing is parsed until the key is durable.
    expect(pair.device.wantsInput).toBe(false);
    expect(pair.device.receive(new Uint8Array(1), pair.now)).toEqual([]);
    expect(pair.device.heldInputBytes).toBe(1);
    const after = pair.device.persisted(pair.now);
    expect(kinds(after)).toEqual(['event:keyStored', 'transmit']);
    const ack = transmitted(after)[0]!;
    expect(header(ack)).toMatchObject({ type: MessageType.REKEY_ACK, keyId: 2 });
    expect(pair.device.keys.future?.id).toBe(2);
  });

  test('DK2: the same REKEY again is acknowledged again, with no second persist', () => {
    const pair = established();
    pair.rotate();
    const rekey = pair.toDevice.shift()!;
    pair.deliverToDevice(rekey);
    const again = forgeFromHub(pair, open(rekey, pair.hubStore.active.key));
    const actions = pair.device.receive(again, pair.now);
    expect(kinds(actions)).toEqual(['transmit']);
    expect(header(transmitted(actions)[0]!)).toMatchObject({ type: MessageType.REKEY_ACK, keyId: 2 });
  });

  test('DK3: a different key under the held future id is refused with REKEY_CONFLICT (another id: DK8)', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!);
    for (const [message, code] of [
      [{ type: MessageType.REKEY, newKeyId: 2, newKey: new Uint8Array(64).fill(9) }, 3],
      [{ type: MessageType.REKEY, newKeyId: 3, newKey: new Uint8Array(64).fill(9) }, 7],
    ] as [Message, number][]) {
      const before = pair.device.keys;
      const actions = pair.device.receive(forgeFromHub(pair, message), pair.now);
      expect(kinds(actions)).toEqual(['event:rekeyRefused', 'transmit']);
      const error = open(transmitted(actions)[0]!, pair.deviceStore.future!.key);
      expect(error).toEqual({ type: MessageType.ERROR, code, detail: (message as { newKeyId: number }).newKeyId });
      expect(pair.device.keys).toEqual(before);
    }
  });

  test('DK4: a REKEY whose id is not above the active id is refused with REKEY_ID_NOT_NEWER', () => {
    const pair = established();
    for (const id of [1, 0]) {
      const actions = pair.device.receive(forgeFromHub(pair, { type: MessageType.REKEY, newKeyId: id, newKey: new Uint8Array(64) }), pair.now);
      expect(kinds(actions)).toEqual(['event:rekeyRefused', 'transmit']);
      expect(open(transmitted(actions)[0]!, pair.deviceStore.active.key)).toEqual({ type: MessageType.ERROR, code: 2, detail: id });
      expect(pair.device.keys.future).toBeUndefined();
    }
  });

  test('DK8: a REKEY to any id but active + 1 is refused with REKEY_ID_NOT_NEXT and changes nothing', () => {
    // Today's main stored id 3 (or 0xffffffff) from a hub at active 1: one message could exhaust the id space.
    const pair = established();
    for (const id of [3, 1000, 0xffffffff]) {
      const before = pair.device.snapshot();
      const actions = pair.device.receive(forgeFromHub(pair, { type: MessageType.REKEY, newKeyId: id, newKey: new Uint8Array(64).fill(9) }), pair.now);
      expect(kinds(actions)).toEqual(['event:rekeyRefused', 'transmit']);
      expect(open(transmitted(actions)[0]!, pair.deviceStore.active.key)).toEqual({ type: MessageType.ERROR, code: 7, detail: id });
      const after = pair.device.snapshot();
      // Only the session's counters moved (one frame in, one ERROR out); no key, no persist.
      expect({ ...after, sequenceIn: 0, sequenceOut: 0, lastReceivedAt: 0, lastSentAt: 0 }).toEqual({ ...before, sequenceIn: 0, sequenceOut: 0, lastReceivedAt: 0, lastSentAt: 0 });
      expect(pair.deviceStore.future).toBeUndefined();
    }
    // The next id is still taken.
    const actions = pair.device.receive(forgeFromHub(pair, { type: MessageType.REKEY, newKeyId: 2, newKey: new Uint8Array(64).fill(9) }), pair.now);
    expect(kinds(actions)).toEqual(['persist:storeFuture']);
  });

  test('DK5: the first hub frame under the future key → persist promotion first, then act on the frame', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!); // device stores future 2, acks
    pair.autoPersist = false;
    pair.toHub = [];
    // The hub has promoted (it got the ack); a DATA under key 2 arrives first.
    pair.hubStore = { mode: 'classic', active: pair.deviceStore.future! };
    const data = forgeFromHub(pair, { type: MessageType.DATA, streamId: new Uint8Array(8).fill(1), messageId: 1, payload: Uint8Array.of(7) }, 2);
    const actions = pair.device.receive(data, pair.now);
    expect(kinds(actions)).toEqual(['persist:promote']);
    const after = pair.device.persisted(pair.now);
    expect(kinds(after)).toEqual(['event:keyPromoted', 'event:data', 'transmit']);
    expect(pair.device.keys).toEqual({ mode: 'classic', active: pair.hubStore.active });
  });

  test('DK6: after storing a future key every frame is sealed under it', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!);
    pair.toHub = [];
    pair.deviceSend(Uint8Array.of(1));
    expect(header(pair.toHub[0]!).keyId).toBe(2);
    expect(pair.device.sealKeyId).toBe(2);
  });

  test('DK7: a failed persist halts the core until it is rebuilt from the keystore', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.rotate();
    pair.step();
    pair.device.receive(pair.toDevice.shift()!, pair.now);
    const actions = pair.device.persistFailed(new LockstepError('STORAGE_CORRUPT'));
    expect(kinds(actions)).toEqual(['close']);
    expect(() => pair.device.connected(pair.now)).toThrow(expect.objectContaining({ code: 'LOCAL_NOT_READY' }));
  });
});

describe('hub connection table (H-S)', () => {
  test('HS1: an accepted connection gets a CHALLENGE with a fresh nonce', () => {
    const pair = new Pair();
    const a = transmitted(pair.hub.opened(10, pair.now))[0]!;
    const b = transmitted(pair.hub.opened(11, pair.now))[0]!;
    expect(header(a).type).toBe(MessageType.CHALLENGE);
    expect(Buffer.from(header(a).sessionId)).not.toEqual(Buffer.from(header(b).sessionId));
  });

  test('HS2: an authenticated HELLO establishes and closes the older connection of that device', () => {
    const pair = established();
    const old = pair.connectionId;
    // A second connection for the same device (the old one is half-open).
    const second = 50;
    const challenge = transmitted(pair.hub.opened(second, pair.now))[0]!;
    pair.device.disconnected(pair.now);
    pair.device.connected(pair.now);
    const hello = transmitted(pair.device.receive(challenge, pair.now))[0]!;
    const actions = pair.hub.receive(second, hello, pair.now);
    expect(actions.some((a) => a.type === 'close' && a.connection === old)).toBe(true);
    expect(transmitted(actions).map((b) => header(b).type)).toContain(MessageType.WELCOME);
    expect(pair.hub.deviceState(pair.deviceId).connected).toBe(true);
  });

  test('HS4/HS5: handshake and idle timeouts close', () => {
    const pair = established();
    pair.hub.opened(77, pair.now);
    const handshake = pair.hub.tick(pair.now + HANDSHAKE_TIMEOUT_MS);
    expect(handshake.some((a) => a.type === 'close' && a.connection === 77)).toBe(true);
    const idle = pair.hub.tick(pair.now + IDLE_TIMEOUT_MS);
    expect(idle.some((a) => a.type === 'close' && a.connection === pair.connectionId)).toBe(true);
  });
});

describe('hub key table (H-K)', () => {
  test('HK1: rotate → persist pending first; REKEY under the active key only after persisted', () => {
    const pair = established();
    pair.autoPersist = false;
    const result = pair.hub.rotate(pair.deviceId, pair.now);
    expect(result).toMatchObject({ ok: true, outcome: 'started' });
    const actions = result.ok ? result.actions : [];
    expect(kinds(actions)).toEqual(['persist:storePending']);
    const op = (actions[0] as Extract<HubAction, { type: 'persist' }>).op as { id: number; key: Uint8Array };
    expect(op.id).toBe(2);
    const after = pair.hub.persisted(pair.deviceId, pair.now);
    const rekey = transmitted(after)[0]!;
    expect(header(rekey)).toMatchObject({ type: MessageType.REKEY, keyId: 1 });
    expect(open(rekey, pair.hubStore.active.key)).toMatchObject({ newKeyId: 2 });
  });

  test('HK2: rotate while a key is pending replaces nothing; one rotation is queued until it is confirmed', () => {
    const pair = established();
    pair.rotate();
    const pending = pair.hub.deviceKeys(pair.deviceId).pending;
    expect(pair.hub.rotate(pair.deviceId, pair.now)).toEqual({ ok: true, outcome: 'queued', actions: [] });
    expect(pair.hub.rotate(pair.deviceId, pair.now)).toEqual({ ok: true, outcome: 'queued', actions: [] });
    expect(pair.hub.deviceKeys(pair.deviceId).pending).toEqual(pending);
    expect(pair.hub.deviceState(pair.deviceId).rotationQueued).toBe(true);
    pair.runUntilIdle();
    // Key 2 confirmed, then exactly one more rotation (not two): key 3.
    expect(pair.inSync()).toBe(true);
    expect(pair.device.keys.active.id).toBe(3);
    expect(pair.hub.deviceState(pair.deviceId).rotationQueued).toBe(false);
  });

  test('HK1 at the last key id: refused with a typed error, nothing persisted', () => {
    const pair = new Pair({ initialKeyId: 0xffffffff });
    pair.connect();
    pair.runUntilIdle();
    const result = pair.hub.rotate(pair.deviceId, pair.now);
    expect(result.ok).toBe(false);
    expect(result.ok ? undefined : result.error.code).toBe('LOCAL_KEY_IDS_EXHAUSTED');
    expect(pair.hub.deviceKeys(pair.deviceId).pending).toBeUndefined();
  });

  test('HK3: re-offers repeat the same (id, key) with growing, capped delays', () => {
    const pair = new Pair({ seed: 5, hubTiming: { idleTimeoutMs: 10 * 60_000 } });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate();
    const first = open(pair.toDevice.shift()!, pair.hubStore.active.key);
    const delays: number[] = [];
    let last = pair.now;
    for (let i = 0; i < 8; i++) {
      const at = pair.hub.nextDeadline()!;
      delays.push(at - last);
      last = at;
      const offers = transmitted(pair.hub.tick(at)).filter((b) => header(b).type === MessageType.REKEY);
      expect(offers).toHaveLength(1);
      expect(open(offers[0]!, pair.hubStore.active.key)).toEqual(first);
    }
    expect(delays[1]!).toBeLessThanOrEqual(4000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(30_000);
    expect(delays[7]!).toBeGreaterThanOrEqual(15_000);
  });

  test('HK4: every new session re-offers the pending key after WELCOME', () => {
    const pair = established();
    pair.rotate();
    pair.toDevice = [];
    pair.disconnect();
    pair.connect();
    pair.step(); // CHALLENGE → device
    pair.step(); // HELLO → hub
    expect(pair.toDevice.map((b) => header(b).type)).toEqual([MessageType.WELCOME, MessageType.REKEY]);
  });

  test('HK5: a frame under the pending key → persist promotion, then CONFIRM under the new key', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!);
    pair.autoPersist = false;
    const ack = pair.toHub.shift()!;
    const actions = pair.hub.receive(pair.connectionId, ack, pair.now);
    expect(kinds(actions)).toEqual(['persist:promote']);
    const after = pair.hub.persisted(pair.deviceId, pair.now);
    expect(kinds(after)).toEqual(['event:keyConfirmed', 'transmit']);
    expect(header(transmitted(after)[0]!)).toMatchObject({ type: MessageType.CONFIRM, keyId: 2 });
    expect(pair.hub.acceptedKeyIds(pair.deviceId)).toEqual([2]);
  });

  test('HK5 on a new connection: HELLO under the pending key → persist, then WELCOME under it', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!);
    pair.disconnect(); // the ack is lost
    pair.autoPersist = false;
    pair.connect();
    pair.step(); // CHALLENGE
    const hello = pair.toHub.shift()!;
    expect(header(hello).keyId).toBe(2);
    expect(kinds(pair.hub.receive(pair.connectionId, hello, pair.now))).toEqual(['persist:promote']);
    const after = pair.hub.persisted(pair.deviceId, pair.now);
    const welcome = transmitted(after)[0]!;
    expect(header(welcome)).toMatchObject({ type: MessageType.WELCOME, keyId: 2 });
  });

  test('HK6: a repeated REKEY_ACK of the active key is confirmed again', () => {
    const pair = established();
    pair.rotate();
    pair.runUntilIdle();
    expect(pair.inSync()).toBe(true);
    // Forge the device's repeat of its ack under key 2.
    const snapshot = pair.hub.snapshot(pair.deviceId) as { connections: { sequenceIn: number; hubNonce: string }[] };
    const conn = snapshot.connections.find((c) => c.sequenceIn > 0)!;
    const frame = sealFrame({
      aead: nodeAead,
      key: pair.deviceStore.active.key,
      iv: new Uint8Array(16),
      header: { fromHub: false, deviceId: pair.deviceIdBytes, keyId: 2, sequence: conn.sequenceIn, sessionId: Buffer.from(conn.hubNonce, 'hex') },
      message: { type: MessageType.REKEY_ACK, newKeyId: 2 },
    });
    const actions = pair.hub.receive(pair.connectionId, withLengthPrefix(frame), pair.now);
    expect(transmitted(actions).map((b) => header(b).type)).toEqual([MessageType.CONFIRM]);
  });

  test('HK7: a failed database write closes the device connection; reload restores the record', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.hub.rotate(pair.deviceId, pair.now);
    const actions = pair.hub.persistFailed(pair.deviceId, new LockstepError('STORAGE_CORRUPT'));
    expect(actions.some((a) => a.type === 'close')).toBe(true);
    pair.hub.reloadDevice({ deviceId: pair.deviceId, mode: 'classic', active: pair.hubStore.active });
    expect(pair.hub.acceptedKeyIds(pair.deviceId)).toEqual([1]);
  });
});

describe('input held while a persist is outstanding', () => {
  test('the hub resumes the rest of a chunk after persisted(): REKEY_ACK + DATA in one read', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!); // device stores key 2, acks
    pair.deviceSend(Uint8Array.of(42)); // DATA under key 2
    pair.autoPersist = false;
    const both = Buffer.concat(pair.toHub.splice(0));
    const first = pair.hub.receive(pair.connectionId, both, pair.now);
    expect(kinds(first)).toEqual(['persist:promote']);
    // More input meanwhile is kept by the core (bounded), not refused.
    expect(pair.hub.wantsInput(pair.connectionId)).toBe(false);
    expect(pair.hub.receive(pair.connectionId, new Uint8Array(0), pair.now)).toEqual([]);
    const after = pair.hub.persisted(pair.deviceId, pair.now);
    expect(kinds(after)).toEqual(['event:keyConfirmed', 'transmit', 'event:data', 'transmit']);
  });

  test('the device resumes the rest of a chunk after persisted(): REKEY + DATA in one read', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.rotate();
    pair.step(); // hub persisted → REKEY queued
    pair.hubSend(Uint8Array.of(7));
    const both = Buffer.concat(pair.toDevice.splice(0));
    expect(kinds(pair.device.receive(both, pair.now))).toEqual(['persist:storeFuture']);
    const after = pair.device.persisted(pair.now);
    expect(kinds(after)).toEqual(['event:keyStored', 'transmit', 'event:data', 'transmit']);
  });
});
