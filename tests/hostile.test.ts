/**
 * Hostile clients against a live hub (real sockets on 127.0.0.1) while good
 * devices keep rotating: random bytes, a huge length prefix, a half-open
 * connection sending one byte a second, 500 connections that never finish
 * the handshake, frames under unknown key ids or with bad tags, a peer that
 * never reads. The hub keeps serving the good devices, its buffers and
 * connection counts stay within the configured limits, and no device's
 * state changes.
 */
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { fromHex, toHex } from '../modules/bytes';
import { DeviceCore, type DeviceAction } from '../modules/device/device';
import { MessageType } from '../modules/protocol/constants';
import { sealFrame } from '../modules/protocol/frame';
import { FrameReader, withLengthPrefix } from '../modules/protocol/framing';
import { decodeHeader } from '../modules/protocol/header';
import { nodeAead, nodeRandom } from '../hosts/node/crypto';
import { Harness } from '../tools/demo/harness';
import { newDeviceRecord, type DeviceRecord } from '../tools/hub/records';
import { sessionFrames } from './support/frames';

const MAX_UNAUTHENTICATED = 100;
const HANDSHAKE_TIMEOUT_MS = 2000;
const MAX_WRITE_BUFFER = 16 * 1024;

let harness: Harness;
let port: number;
let victim: DeviceRecord;
let peakUnauthenticated = 0;
let sampler: NodeJS.Timeout;

beforeAll(async () => {
  harness = await Harness.start({
    devices: 10,
    rotateEveryMs: 200,
    chaos: { cutProbability: 0.3, cutMaxBytes: 4000, powerCutProbability: 0 },
    telemetryEveryMs: 250,
    commandEveryMs: 400,
    hub: {
      limits: { maxUnauthenticated: MAX_UNAUTHENTICATED, maxWriteBufferBytes: MAX_WRITE_BUFFER },
      timing: { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
    },
  });
  port = harness.hub.addresses[0]?.port as number;
  victim = harness.hub.provision(newDeviceRecord());
  sampler = setInterval(() => {
    peakUnauthenticated = Math.max(peakUnauthenticated, harness.hub.stats().unauthenticated);
  }, 20);
  await harness.waitUntil(() => harness.minRotations() >= 2, 20_000, 'good devices rotating');
});

afterAll(async () => {
  clearInterval(sampler);
  await harness.settle();
  harness.check();
  expect(harness.problems).toEqual([]);
  for (const direction of ['up', 'down'] as const) expect(harness.ledger.verdict(direction).violations).toEqual([]);
  expect(peakUnauthenticated).toBeLessThanOrEqual(MAX_UNAUTHENTICATED);
  await harness.close();
});

/** Everything the hub holds about the victim device, as comparable data. */
function victimState(): unknown {
  const keys = harness.hub.deviceKeys(victim.deviceId);
  const row = harness.hub.store.getDevice(victim.deviceId);
  return {
    keys: { active: [keys.active.id, toHex(keys.active.key)], pending: keys.pending ? [keys.pending.id, toHex(keys.pending.key ?? keys.pending.dh.privateKey)] : null },
    state: harness.hub.deviceState(victim.deviceId),
    row: row && { active: row.active.id, activeKey: toHex(row.active.key), pending: row.pending?.id ?? null, rotations: row.rotations, lastSeen: row.lastSeenAt ?? null },
  };
}

/** Runs an attack; good devices must complete rotations meanwhile and the victim must not change. */
async function underAttack(attack: () => Promise<void>): Promise<void> {
  const before = victimState();
  const rotationsBefore = harness.devices.map((d) => harness.rotations(d.deviceId));
  await attack();
  await harness.waitUntil(
    () => harness.devices.every((d, i) => harness.rotations(d.deviceId) >= (rotationsBefore[i] as number) + 2),
    20_000,
    'every good device to rotate twice more',
  );
  expect(victimState()).toEqual(before);
  const stats = harness.hub.stats();
  expect(stats.unauthenticated).toBeLessThanOrEqual(MAX_UNAUTHENTICATED);
  expect(stats.maxQueuedInputBytes).toBeLessThanOrEqual(128 * 1024);
}

interface RawClient {
  readonly socket: Socket;
  readonly closed: Promise<number>;
  received(): Buffer;
}

function rawClient(): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port });
    const opened = Date.now();
    const closed = new Promise<number>((resolveClose) => socket.once('close', () => resolveClose(Date.now() - opened)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed, received: () => Buffer.concat(chunks) }));
    socket.once('error', reject);
  });
}

async function hubNonceOf(client: RawClient): Promise<Uint8Array> {
  for (let i = 0; i < 100 && client.received().length < 38; i++) await new Promise((r) => setTimeout(r, 10));
  const bytes = client.received();
  const frame = new Uint8Array(bytes.subarray(2, 38));
  const header = decodeHeader(frame);
  expect(header.type).toBe(MessageType.CHALLENGE);
  return header.sessionId;
}

function hello(deviceId: string, keyId: number, key: Uint8Array, hubNonce: Uint8Array): Uint8Array {
  return withLengthPrefix(
    sealFrame({
      aead: nodeAead,
      key,
      iv: randomBytes(16),
      header: { fromHub: false, deviceId: fromHex(deviceId), keyId, sequence: 0, sessionId: hubNonce },
      message: { type: MessageType.HELLO, deviceNonce: randomBytes(16), activeKeyId: keyId, futureKeyId: 0 },
    }),
  );
}

test('random bytes: the connection is closed, nothing else changes', async () => {
  await underAttack(async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => rawClient()));
    for (const client of clients) client.socket.write(randomBytes(4096));
    const lifetimes = await Promise.all(clients.map((c) => c.closed));
    // Closed on the first bad frame, not by the handshake timeout.
    expect(Math.max(...lifetimes)).toBeLessThan(HANDSHAKE_TIMEOUT_MS);
  });
});

test('a huge length prefix is refused before anything is allocated', async () => {
  await underAttack(async () => {
    const client = await rawClient();
    client.socket.write(Buffer.from([0xff, 0xff]));
    client.socket.write(randomBytes(64 * 1024));
    // FRAME_TOO_LONG on the prefix alone (modules/protocol/framing.ts checks it before allocating).
    expect(await client.closed).toBeLessThan(HANDSHAKE_TIMEOUT_MS);
  });
});

test('a half-open connection sending one byte a second is closed at the handshake timeout', async () => {
  await underAttack(async () => {
    const client = await rawClient();
    // A plausible frame (length 64), one byte a second: only the handshake timeout can end it.
    const bytes = [0x00, 0x40, 0x01, 0x02];
    let next = 0;
    const drip = setInterval(() => client.socket.write(Buffer.from([bytes[next++ % bytes.length] as number])), 1000);
    const lifetime = await client.closed;
    clearInterval(drip);
    expect(lifetime).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100);
  });
});

test('500 connections that never finish the handshake: capped, evicted, timed out', async () => {
  const evictedBefore = harness.hub.stats().evicted;
  await underAttack(async () => {
    const clients = await Promise.all(Array.from({ length: 500 }, () => rawClient()));
    expect(harness.hub.stats().unauthenticated).toBeLessThanOrEqual(MAX_UNAUTHENTICATED);
    await Promise.all(clients.map((c) => c.closed));
  });
  expect(harness.hub.stats().evicted - evictedBefore).toBeGreaterThanOrEqual(400 - MAX_UNAUTHENTICATED);
  expect(harness.hub.stats().connections).toBeLessThanOrEqual(harness.devices.length);
});

test('HELLO under an unknown key id, with a bad tag, or for an unknown device: refused, victim unchanged', async () => {
  await underAttack(async () => {
    const attempts: [string, number, Uint8Array][] = [
      [victim.deviceId, 99, randomBytes(64)], // unknown key id
      [victim.deviceId, victim.active.id, randomBytes(64)], // right key id, wrong key: bad tag
      ['00000000deadbeef', 1, randomBytes(64)], // unknown device
    ];
    // With recovery configured (the harness's hub has its static keys) every such HELLO gets the same answer,
    // NO_KEY (docs/PROTOCOL.md §12.4 HS9), known device or not; with no RECOVER_INIT after it, the connection is
    // closed when the recovery stage's handshake timeout runs out — bounded, and nothing changes.
    const refused = async (client: RawClient) => {
      expect(await client.closed).toBeLessThan(2 * HANDSHAKE_TIMEOUT_MS);
      const bytes = client.received();
      expect(bytes.length).toBe(2 * (2 + 36)); // CHALLENGE, then NO_KEY: nothing else
      expect(decodeHeader(new Uint8Array(bytes.subarray(40, 76))).type).toBe(MessageType.NO_KEY);
    };
    for (const [deviceId, keyId, key] of attempts) {
      const client = await rawClient();
      client.socket.write(hello(deviceId, keyId, key, await hubNonceOf(client)));
      await refused(client);
    }
    // A tampered copy of a valid HELLO (one ciphertext bit flipped).
    const client = await rawClient();
    const frame = hello(victim.deviceId, victim.active.id, victim.active.key, await hubNonceOf(client));
    frame[60] = (frame[60] as number) ^ 1;
    client.socket.write(frame);
    await refused(client);
  });
});

test('an authenticated peer sending frames with bad tags and unknown key ids: rejected, then cut off; keys unchanged', async () => {
  // A real device core for a device whose key we hold; garbage is spliced into its stream.
  const record = harness.hub.provision(newDeviceRecord());
  harness.hub.setRotationPolicy({ intervalMs: 0 });
  try {
    const keysBefore = harness.hub.deviceKeys(record.deviceId);
    const core = new DeviceCore({ deviceId: fromHex(record.deviceId), keys: { mode: 'classic', active: record.active }, aead: nodeAead, random: nodeRandom });
    const client = await rawClient();
    let established = false;
    let hubNonce: Uint8Array | undefined;
    const reader = new FrameReader();
    const apply = (actions: DeviceAction[]) => {
      for (const action of actions) {
        if (action.type === 'transmit') client.socket.write(action.bytes);
        if (action.type === 'event' && action.event.type === 'established') established = true;
      }
    };
    apply(core.connected(0));
    client.socket.on('data', (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; ) {
        const fed = reader.feed(chunk, at);
        at += fed.consumed;
        if (fed.frame !== undefined && hubNonce === undefined) hubNonce = decodeHeader(fed.frame).sessionId;
      }
      apply(core.receive(chunk, 1));
    });
    await harness.waitUntil(() => established, 5000, 'the session');
    const nonce = hubNonce as Uint8Array;
    const garbage = (keyId: number, key: Uint8Array, sequence: number) =>
      withLengthPrefix(
        sealFrame({
          aead: nodeAead,
          key,
          iv: randomBytes(16),
          header: { fromHub: false, deviceId: fromHex(record.deviceId), keyId, sequence, sessionId: nonce },
          message: { type: MessageType.REKEY_ACK, newKeyId: keyId },
        }),
      );
    // Rejected frames change nothing (not even the expected sequence number): 9 of them end the session.
    for (let i = 0; i < 9; i++) client.socket.write(i % 2 === 0 ? garbage(record.active.id, randomBytes(64), 1) : garbage(1234, randomBytes(64), 1));
    expect(await client.closed).toBeLessThan(HANDSHAKE_TIMEOUT_MS * 5);
    const keysAfter = harness.hub.deviceKeys(record.deviceId);
    expect(keysAfter.active.id).toBe(keysBefore.active.id);
    expect(toHex(keysAfter.active.key)).toBe(toHex(keysBefore.active.key));
    expect(keysAfter.pending).toBeUndefined();
    expect(harness.hub.store.getDevice(record.deviceId)?.active.id).toBe(record.active.id);
  } finally {
    harness.hub.setRotationPolicy({ intervalMs: 200 });
  }
});

test('a peer that never reads is dropped when its write buffer passes the limit', async () => {
  const record = harness.hub.provision(newDeviceRecord());
  const droppedBefore = harness.hub.stats().droppedSlowReaders;
  await underAttack(async () => {
    const client = await rawClient();
    const frame = sessionFrames(record, await hubNonceOf(client));
    // A valid HELLO, then stop reading and make the hub answer: every PING gets a PONG it cannot deliver.
    client.socket.pause();
    client.socket.write(frame(0, { type: MessageType.HELLO, deviceNonce: randomBytes(16), activeKeyId: record.active.id, futureKeyId: 0 }));
    let sequence = 1;
    const pinger = setInterval(() => {
      if (client.socket.destroyed) return;
      const batch: Uint8Array[] = [];
      for (let i = 0; i < 1000; i++) batch.push(frame(sequence++, { type: MessageType.PING }));
      client.socket.write(Buffer.concat(batch));
    }, 10);
    try {
      await harness.waitUntil(() => harness.hub.stats().droppedSlowReaders > droppedBefore, 30_000, 'the slow reader to be dropped');
    } finally {
      clearInterval(pinger);
      client.socket.destroy();
    }
  });
});
