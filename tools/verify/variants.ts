/**
 * The deliberately broken variants (docs/VERIFICATION.md §5), applied to
 * the real, unchanged cores through what a host controls. Each must be
 * caught by the simulation (and its Promela twin by spin, docs/model/).
 *
 * 1 device-acks-before-persisting — a keystore that lies: it reports the
 *   write durable at once and writes the flash WRITE_BACK_MS later.
 * 2 hub-offers-before-persisting-pending — a database host that reports
 *   storePending committed at once and commits WRITE_BACK_MS later.
 * 3 device-seals-old-until-hub-uses-new — an interposer on the device's
 *   transport re-seals every frame the device sealed under its future key
 *   with its active key, except the REKEY_ACK (it must be sealed under the
 *   key it acknowledges, or the hub could never promote).
 * 4 hub-replaces-unconfirmed-pending — a hub host that, when a device's
 *   connection drops while a rotation is unconfirmed, writes a fresh key
 *   under the pending id and loads it with the public `reloadDevice`.
 * 5 hub-persists-promotion-lazily — a database host that reports the
 *   promotion committed at once and commits WRITE_BACK_MS later.
 * 6 hub-sends-no-confirmation — an interposer on the hub's transport that
 *   drops every frame sealed under a key id newer than any it let through
 *   before: the hub never says anything under the new key.
 * The dh mode's (docs/PROTOCOL.md §11.4, run with both sides in the dh mode):
 * 7 dh-device-acks-before-persisting — variant 1's lying keystore, now for a
 *   derived key (rule D6).
 * 8 dh-hub-ephemeral-not-persisted — a database host that stores another
 *   ephemeral pair than the one the hub offers, as a hub that drew a fresh
 *   one after a restart would (rule H4).
 * 9 dh-hub-forgets-ephemeral-before-promotion — a database host that erases
 *   the hub's ephemeral private key as soon as the promotion is asked for,
 *   before the promotion commits (rule H5).
 * 10 dh-hello-without-share — an interposer that re-seals the device's HELLO
 *   under its future key without the KEY_SHARE extension (§11.2's trap).
 * (The device redrawing its ephemeral for a repeated REKEY_DH, rule D7, has
 * no host seam — the core decides it — and is refuted by spin only: it is
 * named in SPIN_ONLY_VARIANTS.)
 */
import { describePersistOp, type DevicePersistOp } from '../../modules/device/actions';
import { nodeAead } from '../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { IV_BYTES, MessageType } from '../../modules/protocol/constants';
import { openFrame, sealFrame } from '../../modules/protocol/frame';
import { withLengthPrefix } from '../../modules/protocol/framing';
import { decodeHeader } from '../../modules/protocol/header';
import { DB_COMMIT_MS } from './constants';
import type { DeviceStore, TornWrite } from './device-store';
import { Rng } from './rng';
import type { Variant } from './variant';
import type { SimWorld } from './sim-types';

/** How long a lying store or database takes to really write. */
export const WRITE_BACK_MS = 2_000;

/** A keystore wrapper that acknowledges writes before they reach the flash. */
class WriteBackDeviceStore implements DeviceStore {
  readonly kind: string;
  readonly #inner: DeviceStore;
  readonly #world: SimWorld;
  #queue: DevicePersistOp[] = [];
  #flushAt: number | undefined;
  lastOps = [] as DeviceStore['lastOps'];

  constructor(inner: DeviceStore, world: SimWorld) {
    this.#inner = inner;
    this.#world = world;
    this.kind = `${inner.kind} behind a lying write-back cache`;
  }

  boot() {
    this.#queue = [];
    this.#flushAt = undefined;
    return this.#inner.boot();
  }

  apply(op: DevicePersistOp): void {
    this.#queue.push(op.kind === 'storeFuture' ? { ...op, key: op.key.slice() } : op);
    this.#flushAt ??= this.#world.now + WRITE_BACK_MS;
  }

  durable() {
    return this.#inner.durable();
  }

  powerLost(): void {
    this.#queue = [];
    this.#flushAt = undefined;
    this.#inner.powerLost();
  }

  armTornWrite(torn: TornWrite): void {
    this.#inner.armTornWrite(torn);
  }

  disarm(): void {
    this.#inner.disarm();
  }

  nextDeadline(): number | undefined {
    return this.#world.device.up ? this.#flushAt : undefined;
  }

  tick(): void {
    const queue = this.#queue;
    this.#queue = [];
    this.#flushAt = undefined;
    for (const op of queue) this.#inner.apply(op);
  }

  layoutDigest(): string {
    return `${this.#inner.layoutDigest()}+${this.#queue.map((op) => describePersistOp(op)).join(',')}@${this.#flushAt ?? '-'}`;
  }
}

const lying = { ackBeforeCommit: true, commitDelayMs: WRITE_BACK_MS };
const honest = { ackBeforeCommit: false, commitDelayMs: DB_COMMIT_MS };

/** Per-world memory of interposers (worlds are independent runs). */
const letThrough = new WeakMap<SimWorld, number>();
const variantRng = new WeakMap<SimWorld, Rng>();

function rngOf(world: SimWorld): Rng {
  let rng = variantRng.get(world);
  if (rng === undefined) {
    rng = new Rng(world.seed, 21);
    variantRng.set(world, rng);
  }
  return rng;
}

export const BROKEN_VARIANTS: readonly Variant[] = [
  {
    name: 'device-acks-before-persisting',
    description: 'the device acknowledges a new key before it is in flash (a keystore that lies about durability)',
    expect: 'safety',
    wrapDeviceStore: (store, world) => new WriteBackDeviceStore(store, world),
  },
  {
    name: 'hub-offers-before-persisting-pending',
    description: 'the hub offers its pending key before the database has it (storePending acknowledged before the commit)',
    expect: 'safety',
    hubPersistPolicy: (op) => (op.kind === 'storePending' ? lying : honest),
  },
  {
    name: 'device-seals-old-until-hub-uses-new',
    description: 'the device keeps sealing under its old key until it sees the hub use the new one (an interposer re-seals its frames but the REKEY_ACK)',
    expect: 'safety',
    interposeUp: (bytes, world) => {
      const keys = world.device.core?.keys;
      if (keys?.future === undefined || bytes.length < 38) return bytes;
      const frame = bytes.subarray(2);
      const header = decodeHeader(frame);
      if (header.keyId !== keys.future.id || header.type === MessageType.REKEY_ACK) return bytes;
      // Opened with the plain AEAD (this is the sender re-sealing its own frame, not an acceptance).
      const message = openFrame(nodeAead, keys.future.key, frame, header);
      const iv = new Uint8Array(IV_BYTES);
      rngOf(world).fill(iv);
      const resealed = sealFrame({
        aead: world.deviceAead,
        key: keys.active.key,
        iv,
        header: { fromHub: false, deviceId: header.deviceId, keyId: keys.active.id, sequence: header.sequence, sessionId: header.sessionId },
        message,
      });
      return withLengthPrefix(resealed);
    },
  },
  {
    name: 'hub-replaces-unconfirmed-pending',
    description: 'the hub replaces an unconfirmed pending key with a fresh one under the same id (written to the database, loaded with reloadDevice)',
    expect: 'safety',
    onHubLinkClosed: (world) => {
      const hub = world.hub.core;
      if (hub === undefined) return;
      const state = hub.deviceState(world.deviceId);
      if (state.pendingKeyId === undefined || state.persisting || world.db.writes.length > 0) return;
      const key = new Uint8Array(64);
      rngOf(world).fill(key);
      const active = world.db.row(world.deviceId).active;
      world.db.insert(world.deviceId, { mode: world.db.row(world.deviceId).mode, active, pending: { id: state.pendingKeyId, key } });
      hub.reloadDevice(world.db.record(world.deviceId));
      world.trace.log(() => `BROKEN HOST replaces the unconfirmed pending key ${state.pendingKeyId} with a fresh one`);
    },
  },
  {
    name: 'hub-persists-promotion-lazily',
    description: 'the hub seals under the new key before its promotion is in the database (promote acknowledged before the commit)',
    expect: 'safety',
    hubPersistPolicy: (op) => (op.kind === 'promote' ? lying : honest),
  },
  {
    name: 'hub-sends-no-confirmation',
    description: 'the hub never sends anything under the new key, so nothing confirms it to the device (an interposer drops those frames)',
    expect: 'liveness',
    interposeDown: (bytes, world) => {
      if (bytes.length < 38) return bytes;
      const header = decodeHeader(bytes.subarray(2));
      if (header.keyId === 0) return bytes;
      const highest = letThrough.get(world) ?? world.initialKeyId;
      if (header.keyId > highest) return new Uint8Array(0);
      letThrough.set(world, Math.max(highest, header.keyId));
      return bytes;
    },
  },
  {
    name: 'dh-device-acks-before-persisting',
    description: 'dh mode: the device acknowledges a derived key before it is in flash (a keystore that lies about durability)',
    expect: 'safety',
    mode: 'dh',
    wrapDeviceStore: (store, world) => new WriteBackDeviceStore(store, world),
  },
  {
    name: 'dh-hub-ephemeral-not-persisted',
    description: 'dh mode: the database holds another ephemeral pair than the one the hub offers (a hub that draws a fresh one after a restart)',
    expect: 'safety',
    mode: 'dh',
    onHubPersistBegin: (op, world) => {
      if (op.kind !== 'storePending' || op.dh === undefined) return op;
      const privateKey = new Uint8Array(32);
      rngOf(world).fill(privateKey);
      world.trace.log(() => `BROKEN DATABASE stores another ephemeral pair for pending ${op.id}`);
      return { ...op, dh: { privateKey, publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) } };
    },
  },
  {
    name: 'dh-hub-forgets-ephemeral-before-promotion',
    description: 'dh mode: the hub erases its ephemeral private key when the promotion is asked for, before the promotion commits',
    expect: 'safety',
    mode: 'dh',
    onHubPersistBegin: (op, world) => {
      if (op.kind !== 'promote' || op.key === undefined) return op;
      const row = world.db.row(world.deviceId);
      if (row.pending?.dh !== undefined) {
        world.db.insert(world.deviceId, { ...row, pending: { id: row.pending.id, dh: { privateKey: new Uint8Array(32), publicKey: row.pending.dh.publicKey } } });
        world.trace.log(() => `BROKEN DATABASE erases the ephemeral of pending ${op.id} before the promotion commits`);
      }
      return op;
    },
  },
  {
    name: 'dh-hello-without-share',
    description: 'dh mode: the device seals its HELLO under the derived future key without the key share (the hub cannot derive it after a crash)',
    expect: 'liveness',
    mode: 'dh',
    interposeUp: (bytes, world) => {
      const keys = world.device.core?.keys;
      if (keys?.future?.shares === undefined || bytes.length < 38) return bytes;
      const frame = bytes.subarray(2);
      const header = decodeHeader(frame);
      if (header.type !== MessageType.HELLO || header.share === undefined) return bytes;
      const message = openFrame(nodeAead, keys.future.key, frame, header);
      const iv = new Uint8Array(IV_BYTES);
      rngOf(world).fill(iv);
      const { share: _share, ...bare } = header;
      return withLengthPrefix(sealFrame({ aead: world.deviceAead, key: keys.future.key, iv, header: bare, message }));
    },
  },
];

/**
 * Broken variants of the hub tier (docs/VERIFICATION.md §5a), run with two
 * hub instances sharing the database. Their Promela twins are the variants
 * of docs/model/fencing.pml (FENCING_VARIANTS in spin-fencing.ts), under the
 * same name.
 * - instances-write-without-fence — the shared database's key-slot writes
 *   are not conditional on (epoch, row version) nor on the slots (the
 *   PostgreSQL store's `fenced: false`): a paused instance with a stale
 *   cache commits its write when it resumes.
 */
export const INSTANCE_VARIANTS: readonly Variant[] = [
  {
    name: 'instances-write-without-fence',
    description: 'two hub instances whose writes are not fenced: an instance paused with a write in flight commits it after another instance took the lease',
    expect: 'safety',
    instances: 2,
    unfenced: true,
  },
];

/**
 * Broken variants that spin refutes (their -D switches: SPIN_VARIANTS in
 * spin.ts) and the simulation cannot inject: no host seam reaches what they
 * break (the device core alone decides how it answers a repeated REKEY_DH).
 * tests/verify-spin.test.ts checks that every spin variant is named in
 * exactly one of BROKEN_VARIANTS and this list, with the same `expect`.
 */
export const SPIN_ONLY_VARIANTS: readonly Pick<Variant, 'name' | 'description' | 'expect'>[] = [
  {
    name: 'dh-device-fresh-ephemeral-on-repeat',
    description: 'dh mode: the device answers a repeated REKEY_DH for its stored future key with a fresh ephemeral and a new future key (not rule D7)',
    expect: 'safety',
  },
];
