/**
 * The reference hub (tools/hub/server.ts, SQLite) as a real hub process for
 * the conformance kit's tests, optionally with one of the excluded hub
 * designs of docs/PROTOCOL.md §8.5 injected the way tools/verify/variants.ts
 * injects them into the simulation — here around the real hub's store and
 * transport, not its core:
 *   offers-before-persisting-pending  storePending reported durable at once, written WRITE_BACK_MS later (H1)
 *   replaces-unconfirmed-pending      when a device's connection drops while its pending key is unconfirmed,
 *                                     a fresh key is written under the pending id and the hub reloads it (H1)
 *   persists-promotion-lazily         promote reported durable at once, written WRITE_BACK_MS later (H2)
 *   sends-no-confirmation             a proxy before the listener drops every hub frame sealed under a key id
 *                                     newer than any it let through before for that device (H3)
 *   dh-ephemeral-not-persisted        the store writes another ephemeral pair than the one the hub offers (H4)
 *   dh-forgets-ephemeral-before-promotion  h erased in a commit of its own, the promotion's commit WRITE_BACK_MS later (H5)
 *   idle-too-short                    an idle timeout below the keep-alive interval (a 3 s idle hub)
 *   confirms-twice                    a proxy before the listener follows the CONFIRM of each promotion with a
 *                                     second CONFIRM under the next sequence number, re-sealed (HK6 after HK5)
 * Each must fail the kit with the requirement it breaks; `none` is the unbroken hub, which must pass.
 *
 * As a program (bundled by tests, or `npx tsx tools/conformance/hub/broken-hub-main.ts '<json config>'`) it
 * prints `listening <port>` when it accepts connections, and takes `rotate <device id>` lines on stdin.
 * It is test support: never a hub to run for devices.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import type { HubPersistOp } from '../../../modules/hub/actions';
import { FrameReader, withLengthPrefix } from '../../../modules/protocol/framing';
import { decodeHeader } from '../../../modules/protocol/header';
import { drawEphemeral } from '../../../modules/crypto/dh-rekey';
import { openFrame, sealFrame } from '../../../modules/protocol/frame';
import { IV_BYTES, MessageType } from '../../../modules/protocol/constants';
import { toHex } from '../../../modules/bytes';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import { nodeAead, nodeRandom } from '../../../hosts/node/crypto';
import { parseHubRecords } from '../../hub/records';
import { LockstepHub } from '../../hub/server';
import { HubStore, type StoredDevice } from '../../hub/store';

export const BROKEN_HUB_DESIGNS = [
  'offers-before-persisting-pending',
  'replaces-unconfirmed-pending',
  'persists-promotion-lazily',
  'sends-no-confirmation',
  'dh-ephemeral-not-persisted',
  'dh-forgets-ephemeral-before-promotion',
  'idle-too-short',
  'confirms-twice',
] as const;
export type BrokenHubDesign = (typeof BROKEN_HUB_DESIGNS)[number];

/** How long a lying store takes to really write (long enough for the kit to crash the hub inside the window). */
export const WRITE_BACK_MS = 2_000;
/** The idle timeout of `idle-too-short`. */
export const SHORT_IDLE_MS = 3_000;

export interface BrokenHubConfig {
  readonly design: BrokenHubDesign | 'none';
  readonly database: string;
  readonly host?: string;
  /** The port devices (the kit) connect to; 0 = any. */
  readonly port: number;
  /** TLS on that port (PEM files). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Hub records to import at start (those not in the database yet). */
  readonly importRecords?: string;
  /**
   * A strict per-source limit (H-RATE-2) in front of the hub: every NO_KEY costs the source a token, and a HELLO
   * that would get NO_KEY from an empty bucket is closed without it (HS3) — a compliant hub with a small allowance.
   * (The reference hub charges only failed recovery steps, which the kit never spends many of.)
   */
  readonly recoveryPerSource?: { readonly burst: number; readonly perMinute: number };
}

/** A store that applies the design's lie to the key-slot writes. */
class BrokenStore extends HubStore {
  readonly #design: BrokenHubDesign | 'none';
  readonly #timers = new Set<NodeJS.Timeout>();
  /** dh-forgets-ephemeral-before-promotion: (device, pending id) whose h was erased, durably (a table of its own). */
  readonly #raw: Database.Database;

  constructor(path: string, design: BrokenHubDesign | 'none') {
    super(path);
    this.#design = design;
    this.#raw = new Database(path);
    this.#raw.pragma('busy_timeout = 5000');
    this.#raw.exec('CREATE TABLE IF NOT EXISTS broken_erased_h (device_id TEXT NOT NULL, pending_id INTEGER NOT NULL, PRIMARY KEY (device_id, pending_id))');
  }

  /**
   * The lying designs are a write-back cache per device: the lie (and every later write of that device, in
   * order, so the database never sees them out of order) is reported durable at once and written
   * WRITE_BACK_MS later. A crash inside the window loses them: that is the broken design.
   */
  readonly #backlog = new Map<string, HubPersistOp[]>();

  override commit(ops: readonly HubPersistOp[], now: number): boolean[] {
    const lieAbout = (op: HubPersistOp): boolean =>
      (this.#design === 'offers-before-persisting-pending' && op.kind === 'storePending' && op.modeChange === undefined) ||
      (this.#design === 'persists-promotion-lazily' && op.kind === 'promote');
    const honest: HubPersistOp[] = [];
    const results: (boolean | undefined)[] = ops.map((op) => {
      const backlog = this.#backlog.get(op.deviceId);
      if (this.#design === 'dh-forgets-ephemeral-before-promotion' && op.kind === 'promote' && op.key !== undefined) {
        // h erased at once in a commit of its own (durable); the promotion's commit follows WRITE_BACK_MS later
        // (the hub waits for it, as for any slow commit: a crash in between leaves (A, P) without h).
        this.#raw.prepare('INSERT OR IGNORE INTO broken_erased_h VALUES (?, ?)').run(op.deviceId, op.id);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, WRITE_BACK_MS);
      }
      if (backlog === undefined && !lieAbout(op)) {
        honest.push(this.#design === 'dh-ephemeral-not-persisted' && op.kind === 'storePending' && op.dh !== undefined && op.modeChange === undefined ? { ...op, dh: drawEphemeral(nodeKeyAgreement, nodeRandom) } : op);
        return undefined;
      }
      const copy = op.kind === 'promote' && op.key !== undefined ? { ...op, key: op.key.slice() } : op.kind === 'storePending' && op.key !== undefined ? { ...op, key: op.key.slice() } : op;
      if (backlog !== undefined) {
        backlog.push(copy);
        return true;
      }
      this.#backlog.set(op.deviceId, [copy]);
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        const queued = this.#backlog.get(op.deviceId) ?? [];
        this.#backlog.delete(op.deviceId);
        for (const write of queued) {
          try {
            super.commit([write], Date.now());
          } catch {
            // the database moved on meanwhile: the lie is what it is
          }
        }
      }, WRITE_BACK_MS);
      this.#timers.add(timer);
      return true;
    });
    const applied = honest.length === 0 ? [] : super.commit(honest, now);
    let at = 0;
    return results.map((result) => result ?? (applied[at++] as boolean));
  }

  override loadDevices(): StoredDevice[] {
    return super.loadDevices().map((device) => this.#forget(device));
  }

  override getDevice(deviceId: string): StoredDevice | undefined {
    const device = super.getDevice(deviceId);
    return device === undefined ? undefined : this.#forget(device);
  }

  /** dh-forgets-ephemeral-before-promotion: a pending dh slot whose h was erased comes back without it (zeros). */
  #forget(device: StoredDevice): StoredDevice {
    const pending = device.pending;
    if (this.#design !== 'dh-forgets-ephemeral-before-promotion' || pending?.dh === undefined) return device;
    const erased = this.#raw.prepare('SELECT 1 FROM broken_erased_h WHERE device_id = ? AND pending_id = ?').get(device.deviceId, pending.id);
    if (erased === undefined) return device;
    return { ...device, pending: { id: pending.id, dh: { privateKey: new Uint8Array(32), publicKey: pending.dh.publicKey } } } as StoredDevice;
  }

  /** replaces-unconfirmed-pending: a fresh key under the pending id, durably; the control poll reloads the record. */
  replacePending(deviceId: string): boolean {
    const device = super.getDevice(deviceId);
    if (device?.pending === undefined || device.pending.dh !== undefined) return false;
    const key = new Uint8Array(64);
    nodeRandom.fill(key);
    this.#raw.prepare('UPDATE devices SET pending_id = NULL, pending_kek = NULL, pending_key = NULL, pending_dh = 0, pending_since = NULL WHERE device_id = ?').run(deviceId);
    const [stored] = super.commit([{ kind: 'storePending', deviceId, id: device.pending.id, key }], Date.now());
    this.#raw.prepare('UPDATE devices SET record_changed_at = ? WHERE device_id = ?').run(Date.now(), deviceId);
    return stored === true;
  }

  override close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#raw.close();
    super.close();
  }
}

/**
 * A proxy before the listener that passes the device's bytes through and hands each hub frame, per connection,
 * to `transform`, which returns the frames to send in its place.
 */
function hubFrameInterposer(listenHost: string, listenPort: number, hubPort: number, transform: (source: string) => (frame: Uint8Array) => Uint8Array[]): Promise<Server> {
  const server = createServer((device: Socket) => {
    const hub = connect({ host: '127.0.0.1', port: hubPort });
    const reader = new FrameReader();
    const onFrame = transform(device.remoteAddress ?? '');
    device.on('data', (chunk) => hub.write(chunk));
    hub.on('data', (chunk: Buffer) => {
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      let at = 0;
      while (at < bytes.length) {
        const result = reader.feed(bytes, at);
        at += result.consumed;
        if (result.frame === undefined) continue;
        try {
          for (const frame of onFrame(result.frame)) device.write(withLengthPrefix(frame));
        } catch {
          end();
          return;
        }
      }
    });
    const end = (): void => {
      device.destroy();
      hub.destroy();
    };
    device.on('close', end);
    hub.on('close', end);
    device.on('error', end);
    hub.on('error', end);
  });
  return new Promise((resolve) => server.listen(listenPort, listenHost, () => resolve(server)));
}

/** sends-no-confirmation: drops hub frames under a key id newer than any let through before for the device. */
function confirmationDropper(): () => (frame: Uint8Array) => Uint8Array[] {
  const highest = new Map<string, number>();
  return () => (frame) => {
    const header = decodeHeader(frame);
    const id = toHex(header.deviceId);
    const seen = highest.get(id);
    if (header.keyId !== 0 && seen !== undefined && header.keyId > seen) return []; // never says anything under the new key
    if (header.keyId !== 0) highest.set(id, Math.max(seen ?? 0, header.keyId));
    return [frame];
  };
}

/** recoveryPerSource: a token bucket per source address for NO_KEY answers; an empty bucket closes instead. */
function noKeyLimiter(limit: { readonly burst: number; readonly perMinute: number }): (source: string) => (frame: Uint8Array) => Uint8Array[] {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (source) => (frame) => {
    const header = decodeHeader(frame);
    if (header.type !== MessageType.NO_KEY) return [frame];
    const now = Date.now();
    const bucket = buckets.get(source) ?? { tokens: limit.burst, at: now };
    bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.at) * limit.perMinute) / 60_000);
    bucket.at = now;
    buckets.set(source, bucket);
    if (bucket.tokens < 1) throw new Error('source over its NO_KEY limit');
    bucket.tokens -= 1;
    return [frame];
  };
}

/**
 * confirms-twice: the first CONFIRM(P) for each promoted key P is followed by a second CONFIRM(P), sealed under P
 * with the next sequence number — HK6 applied after HK5, as a hub that "then acts on the frame" would — and every
 * later hub frame of that connection is re-sealed one sequence number on, so the session stays valid.
 */
function confirmationDoubler(store: HubStore): () => (frame: Uint8Array) => Uint8Array[] {
  const confirmed = new Map<string, number>();
  const keyFor = (deviceId: string, keyId: number): Uint8Array => {
    const device = store.getDevice(deviceId);
    if (device?.active.id === keyId) return device.active.key;
    if (device?.pending?.id === keyId && device.pending.key !== undefined) return device.pending.key;
    throw new Error(`confirms-twice: no key ${keyId} for ${deviceId}`);
  };
  const reseal = (frame: Uint8Array, key: Uint8Array, sequence: number): Uint8Array => {
    const header = decodeHeader(frame);
    const message = openFrame(nodeAead, key, frame, header);
    const iv = new Uint8Array(IV_BYTES);
    nodeRandom.fill(iv);
    return sealFrame({ aead: nodeAead, key, iv, header: { ...header, sequence }, message });
  };
  return () => {
    let shift = 0;
    return (frame) => {
      const header = decodeHeader(frame);
      if (header.keyId === 0) return [frame]; // NO_KEY and the recovery frames: not sealed under a session key
      const id = toHex(header.deviceId);
      const key = shift > 0 || header.type === MessageType.CONFIRM ? keyFor(id, header.keyId) : undefined;
      const out = key === undefined || shift === 0 ? frame : reseal(frame, key, header.sequence + shift);
      if (header.type !== MessageType.CONFIRM || key === undefined || (confirmed.get(id) ?? 0) >= header.keyId) return [out];
      confirmed.set(id, header.keyId);
      shift += 1;
      return [out, reseal(frame, key, header.sequence + shift)];
    };
  };
}

export interface RunningBrokenHub {
  readonly hub: LockstepHub;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the reference hub with the design injected (in this process). */
export async function startBrokenHub(config: BrokenHubConfig): Promise<RunningBrokenHub> {
  const store = new BrokenStore(config.database, config.design);
  if (config.importRecords !== undefined && existsSync(config.importRecords)) {
    const records = parseHubRecords(readFileSync(config.importRecords, 'utf8')).filter((record) => store.getSummary(record.deviceId) === undefined);
    if (records.length > 0) store.insertDevices(records, Date.now());
  }
  const host = config.host ?? '127.0.0.1';
  const proxied = config.design === 'sends-no-confirmation' || config.design === 'confirms-twice' || config.recoveryPerSource !== undefined;
  if (config.recoveryPerSource !== undefined && config.design !== 'none') throw new Error('recoveryPerSource is for the unbroken hub');
  const listen = { host, port: proxied ? 0 : config.port };
  const hub = await LockstepHub.start({
    database: store,
    ...(config.tls === undefined || proxied ? { tcp: listen } : { tcp: false, tls: { ...listen, cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) } }),
    controlPollMs: 100,
    timing: config.design === 'idle-too-short' ? { idleTimeoutMs: SHORT_IDLE_MS } : {},
  });
  let proxy: Server | undefined;
  let port = hub.addresses[0]?.port as number;
  if (proxied) {
    proxy = await hubFrameInterposer(host, config.port, port, config.recoveryPerSource !== undefined ? noKeyLimiter(config.recoveryPerSource) : config.design === 'confirms-twice' ? confirmationDoubler(store) : confirmationDropper());
    port = (proxy.address() as { port: number }).port;
  }
  if (config.design === 'replaces-unconfirmed-pending') {
    hub.on('deviceDisconnected', ({ deviceId }) => {
      if (hub.deviceState(deviceId).pendingKeyId !== undefined) store.replacePending(deviceId);
    });
  }
  return {
    hub,
    port,
    async close() {
      proxy?.close();
      await hub.close();
      store.close();
    },
  };
}

/** The program (tools/conformance/hub/broken-hub-main.ts): config as JSON in argv[2]. */
export async function brokenHubMain(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as BrokenHubConfig;
  const running = await startBrokenHub(config);
  process.stdout.write(`listening ${running.port}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [command, deviceId] = line.trim().split(/\s+/);
    if (command === 'rotate' && deviceId !== undefined) {
      try {
        process.stdout.write(`rotate ${deviceId} ${running.hub.rotate(deviceId)}\n`);
      } catch (error) {
        process.stdout.write(`rotate ${deviceId} failed ${(error as Error).message}\n`);
      }
    }
  });
  const stop = (): void => void running.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

