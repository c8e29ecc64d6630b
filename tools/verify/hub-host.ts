/**
 * The simulated hub: the real HubCore driven like the reference hub drives
 * it, over the simulated database (hub-db.ts). Every persist action starts a
 * database write; the core hears `persisted` only after the commit (or
 * `persistFailed`, after which the host reloads the row and calls
 * `reloadDevice`). While the core does not want a connection's input
 * (`wantsInput`: a write of its device is outstanding), the host leaves it
 * in the network, as the reference hub pauses the socket. The hub can crash
 * at any point: between steps, between two actions of one step, before or
 * after a commit. It restarts from the database alone.
 *
 * As one of several instances sharing the database (docs/VERIFICATION.md
 * §5a), the host also does what tools/hub/postgres/hub.ts and lease-gate.ts
 * do: a connection's bytes reach the core only once this instance holds the
 * device's lease. The first frame must be a HELLO of the connection's
 * session that authenticates under a key the database holds now (checked
 * with the plain AEAD: the gate authenticates, the core accepts); then,
 * once no write of the device is outstanding here, the lease is taken
 * (`SimHubDatabase.lease`: epoch + 1 and the row, one step), and at a later
 * step (the statement's reply, again once settled) the core adopts the row
 * (`reloadDevice`) and gets the kept bytes. Every write commits under the
 * fence this instance holds at that moment; a write that did not apply, or
 * failed, is `persistFailed` and the lease is dropped (the device's
 * connection here closes; no reload: the next lease reloads). Another
 * instance's lease reaches this one as a notification (the NOTIFY) after
 * one network latency: a newer epoch than its own ends its lease. An
 * instance can be paused (SIGSTOP): until it resumes nothing of it runs.
 */
import { nodeKeyAgreementDrawn as nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { LockstepError } from '../../modules/errors';
import { HubCore, type HubAction } from '../../modules/hub/hub';
import type { HubPersistOp } from '../../modules/hub/actions';
import { MessageType } from '../../modules/protocol/constants';
import { decodeHeader, type Header } from '../../modules/protocol/header';
import { bytesEqual } from '../../modules/bytes';
import { nodeAead } from '../../hosts/node/crypto';
import { derivePendingKey } from '../../modules/hub/pending-key';
import { HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES } from '../../modules/protocol/constants';
import { openFrame } from '../../modules/protocol/frame';
import { CALM_ONE_WAY_MS, DB_COMMIT_MS, HUB_RESTART_MS, LEASE_HELD_BYTES, RESET_NOTICE_MS } from './constants';
import type { DbWrite, SimFence, SimHubDatabase } from './hub-db';
import type { Link } from './network';
import { Rng } from './rng';
import type { HubHostContext } from './sim-types';

/** A shared counter: incarnations are numbered across instances (app payloads name their sender's). */
export interface Incarnations {
  next(): number;
}

/** A lease on its way (lease-gate.ts `#lease`): taken at one step, adopted at a later one, each once no write of the device is outstanding here. */
interface LeaseStep {
  readonly link: Link;
  stage: 'take' | 'adopt';
  at: number;
  result: { record: ReturnType<SimHubDatabase['record']>; fence: SimFence } | undefined;
}

interface Waiting {
  readonly held: Uint8Array[];
  bytes: number;
  leasing: boolean;
}

export class HubHost {
  readonly index: number;
  readonly #world: HubHostContext;
  readonly db: SimHubDatabase;
  readonly deviceId: string;
  readonly #aead: Aead;
  readonly #random: Rng;
  core: HubCore | undefined;
  restartAt: number | undefined;
  incarnation = 0;
  sentThisIncarnation = 0;
  readonly links = new Map<number, Link>();
  /** Connections paused after a chunk left the core not wanting their input. */
  readonly #paused = new Set<number>();
  readonly #incarnations: Incarnations;
  /** Instances only: the lease this instance holds (its fence) and the connection it serves the device on. */
  #fence: SimFence | undefined;
  #held: Link | undefined;
  readonly #waiting = new Map<number, Waiting>();
  readonly #passed = new Set<number>();
  readonly #leaseSteps: LeaseStep[] = [];
  /** Lease notifications (NOTIFY) on their way to this instance: the epoch another instance took. */
  readonly #notified: { at: number; epoch: number }[] = [];
  /** Connections accepted while paused (the kernel's backlog): the core hears of them on resume. */
  readonly #backlog: Link[] = [];
  pausedUntil: number | undefined;
  leasesTaken = 0;
  leasesLost = 0;

  constructor(world: HubHostContext, db: SimHubDatabase, deviceId: string, aead: Aead, seed: number, index = 0, incarnations?: Incarnations) {
    this.index = index;
    this.#world = world;
    this.db = db;
    this.deviceId = deviceId;
    this.#aead = aead;
    this.#random = new Rng(seed, index === 0 ? 12 : 40 + index);
    let own = 0;
    this.#incarnations = incarnations ?? { next: () => ++own };
  }

  get up(): boolean {
    return this.core !== undefined;
  }

  /** One of several instances on the fencing database. */
  get fenced(): boolean {
    return this.db.fencing !== 'single';
  }

  get current(): boolean {
    if (this.core === undefined) return false;
    if (!this.fenced) return true;
    return this.#fence !== undefined && this.#fence.epoch === this.db.fenceOf(this.deviceId).epoch;
  }

  /** The connection this instance serves the device on under its lease (instances only). */
  get heldLink(): Link | undefined {
    return this.#held;
  }

  boot(now: number): void {
    try {
      this.core = new HubCore({ aead: this.#aead, random: this.#random, keyAgreement: nodeKeyAgreement, devices: this.db.records() });
    } catch (error) {
      // Only a database a broken variant corrupted gets here (the hub refuses to start on a row the core rejects).
      this.restartAt = undefined;
      this.#world.violation('K hub database loads', `${this.#name} cannot start from its database: ${(error as Error).message}`);
      return;
    }
    this.incarnation = this.#incarnations.next();
    this.sentThisIncarnation = 0;
    this.restartAt = undefined;
    const row = this.db.row(this.deviceId);
    this.#world.trace.log(() => `${this.#name} starts (incarnation ${this.incarnation}) from db: active ${row.active.id}${row.pending ? `, pending ${row.pending.id}` : ''}`);
    void now;
  }

  /**
   * The hub process dies. Its connections are reset: the device hears of it
   * after RESET_NOTICE_MS, or never when `silent` (the machine lost power).
   */
  crash(now: number, silent: boolean, why: string): void {
    if (this.core === undefined) return;
    this.core = undefined;
    this.db.crash(this.index);
    this.#fence = undefined;
    this.#held = undefined;
    this.#waiting.clear();
    this.#passed.clear();
    this.#leaseSteps.length = 0;
    this.#notified.length = 0;
    this.pausedUntil = undefined;
    for (const link of this.#backlog) this.links.set(link.id, link);
    this.#backlog.length = 0;
    for (const link of this.links.values()) {
      link.hubAttached = false;
      if (silent) {
        link.queues.down.length = 0;
      } else {
        link.kill();
        this.#world.notice('device', link, now + RESET_NOTICE_MS);
      }
    }
    this.links.clear();
    this.#paused.clear();
    this.restartAt = now + HUB_RESTART_MS;
    this.#world.trace.log(() => `${this.fenced ? `INSTANCE ${this.index}` : 'HUB'} CRASH (${why}${silent ? ', silent' : ''}); db holds ${this.db.digest()}`);
  }

  get #name(): string {
    return this.fenced ? `hub instance ${this.index}` : 'hub';
  }

  /** SIGSTOP: nothing of this instance runs until `until` (its writes in flight wait, its input stays in the network). */
  pause(now: number, until: number): void {
    if (this.core === undefined || this.pausedUntil !== undefined) return;
    this.pausedUntil = until;
    this.#world.trace.log(() => `INSTANCE ${this.index} PAUSED until t+${until - now} ms (${this.db.writesOf(this.index)} write(s) in flight)`);
  }

  /** SIGCONT. */
  resume(now: number): void {
    if (this.pausedUntil === undefined) return;
    this.pausedUntil = undefined;
    this.#world.trace.log(() => `instance ${this.index} resumes`);
    const backlog = this.#backlog.splice(0);
    for (const link of backlog) if (link.hubAttached && !link.dead) this.accept(link, now);
  }

  accept(link: Link, now: number): void {
    const core = this.core;
    if (core === undefined) return;
    if (this.pausedUntil !== undefined) {
      this.#backlog.push(link);
      return;
    }
    this.links.set(link.id, link);
    if (this.fenced) this.#waiting.set(link.id, { held: [], bytes: 0, leasing: false });
    this.apply(core.opened(link.id, now), now);
  }

  // ---- The lease gate (instances only; tools/hub/postgres/lease-gate.ts) ----

  /** Keeps the input of a connection without the lease; on a complete first frame, authenticates it and starts the lease. */
  #gate(link: Link, bytes: Uint8Array, now: number): void {
    const waiting = this.#waiting.get(link.id);
    if (waiting === undefined) return this.#refuse(link, 'input before the challenge', now);
    waiting.held.push(bytes.slice());
    waiting.bytes += bytes.length;
    if (waiting.bytes > LEASE_HELD_BYTES) return this.#refuse(link, 'input before the lease over its bound', now);
    if (waiting.leasing) return;
    const input = concat(waiting.held, waiting.bytes);
    if (input.length < LENGTH_PREFIX_BYTES) return;
    const length = input[0]! * 256 + input[1]!;
    if (length < HEADER_BYTES || length > MAX_FRAME_BYTES) return this.#refuse(link, 'first frame length out of bounds', now);
    if (input.length < LENGTH_PREFIX_BYTES + length) return;
    const frame = input.slice(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + length);
    let header: Header;
    try {
      header = decodeHeader(frame);
    } catch {
      return this.#refuse(link, 'bad header', now);
    }
    if (header.type !== MessageType.HELLO || header.fromHub) return this.#refuse(link, 'first frame is not a HELLO', now);
    if (link.hubNonce === undefined || toHex(header.sessionId) !== link.hubNonce) return this.#refuse(link, 'HELLO of another session', now);
    if (toHex(header.deviceId) !== this.deviceId) return this.#refuse(link, 'unknown device', now);
    if (!this.#authenticates(frame, header)) return this.#refuse(link, 'HELLO does not authenticate', now);
    waiting.leasing = true;
    this.#leaseSteps.push({ link, stage: 'take', at: now + DB_COMMIT_MS, result: undefined });
    this.#world.trace.log(() => `instance ${this.index}: HELLO on link ${link.id} authenticates under the database's keys; taking the lease`);
  }

  /** The gate's check: the HELLO opens under a key the database holds for the device now (the plain AEAD: not an acceptance). */
  #authenticates(frame: Uint8Array, header: Header): boolean {
    const { active, pending } = this.db.record(this.deviceId);
    let derived: Uint8Array | undefined;
    try {
      let key: Uint8Array;
      if (header.keyId === active.id) key = active.key;
      else if (pending === undefined || pending.id !== header.keyId) return false;
      else if (pending.dh === undefined) key = pending.key;
      else {
        if (header.share === undefined) return false;
        derived = derivePendingKey(nodeKeyAgreement, active, { id: pending.id, dh: pending.dh }, header.deviceId, header.share);
        key = derived;
      }
      openFrame(nodeAead, key, frame, header);
      return true;
    } catch {
      return false;
    } finally {
      derived?.fill(0);
    }
  }

  #settled(): boolean {
    return this.core !== undefined && !this.core.deviceState(this.deviceId).persisting;
  }

  /** When the next lease step may run (it waits while a write of the device is outstanding here). */
  nextLeaseStep(): { at: number; index: number } | undefined {
    if (!this.#settled()) return undefined;
    let best: { at: number; index: number } | undefined;
    this.#leaseSteps.forEach((step, index) => {
      if (best === undefined || step.at < best.at) best = { at: step.at, index };
    });
    return best;
  }

  leaseStep(index: number, now: number): void {
    const step = this.#leaseSteps[index];
    const core = this.core;
    if (step === undefined || core === undefined || !this.#settled()) return;
    const link = step.link;
    if (!link.hubAttached || link.dead || !this.#waiting.has(link.id)) {
      this.#leaseSteps.splice(index, 1);
      return;
    }
    if (step.stage === 'take') {
      step.result = this.db.lease(this.deviceId, this.index);
      step.stage = 'adopt';
      step.at = now + DB_COMMIT_MS;
      const epoch = step.result.fence.epoch;
      this.#world.trace.log(() => `instance ${this.index} takes the lease: epoch ${epoch}, row reloaded`);
      this.#world.leaseTaken?.(this.deviceId, epoch, this.index);
      return;
    }
    this.#leaseSteps.splice(index, 1);
    const result = step.result!;
    try {
      core.reloadDevice(result.record);
    } catch (error) {
      // hub.ts #adopt: a row the core rejects is not adopted, the link is refused (only a corrupted row: a broken variant).
      return this.#refuse(link, `lease not adopted: ${(error as Error).message}`, now);
    }
    this.#fence = result.fence;
    this.#held = link;
    this.leasesTaken++;
    const waiting = this.#waiting.get(link.id)!;
    this.#waiting.delete(link.id);
    this.#passed.add(link.id);
    this.#world.trace.log(() => `instance ${this.index} adopts the row at epoch ${result.fence.epoch}: active ${result.record.active.id}${result.record.pending ? `, pending ${result.record.pending.id}` : ''}`);
    this.#feed(link, concat(waiting.held, waiting.bytes), now);
  }

  /** Another instance took the lease (its NOTIFY): delivered one network latency later. */
  notify(epoch: number, now: number): void {
    if (this.core === undefined || this.#fence === undefined) return;
    this.#notified.push({ at: now + CALM_ONE_WAY_MS, epoch });
  }

  nextNotice(): number | undefined {
    return this.#notified[0]?.at;
  }

  notified(_now: number): void {
    const notice = this.#notified.shift();
    if (notice === undefined || this.#fence === undefined) return;
    // Only a wake-up: a newer epoch than ours means the lease is gone.
    if (notice.epoch > this.#fence.epoch) this.#lose('taken by a newer connection', this.#world.now);
  }

  /** The lease is gone (taken elsewhere, or a write failed): stop acting for the device and close its connection. */
  #lose(reason: string, now: number): void {
    if (this.#fence === undefined) return;
    this.#fence = undefined;
    const held = this.#held;
    this.#held = undefined;
    this.leasesLost++;
    this.#world.trace.log(() => `instance ${this.index} loses the lease (${reason})`);
    if (held !== undefined && held.hubAttached && this.links.has(held.id)) this.#drop(held, now);
  }

  #refuse(link: Link, reason: string, now: number): void {
    this.#world.trace.log(() => `instance ${this.index} refuses link ${link.id}: ${reason}`);
    this.#waiting.delete(link.id);
    this.#drop(link, now);
  }

  /** The host ends a connection (a socket destroyed: the device sees a reset). */
  #drop(link: Link, now: number): void {
    const core = this.core;
    link.hubAttached = false;
    this.links.delete(link.id);
    this.#paused.delete(link.id);
    this.#passed.delete(link.id);
    if (!link.dead) {
      link.kill();
      if (link.deviceAttached) this.#world.notice('device', link, now + RESET_NOTICE_MS);
    }
    if (core !== undefined) this.apply(core.closed(link.id, now), now);
  }

  #feed(link: Link, bytes: Uint8Array, now: number): void {
    const core = this.core;
    if (core === undefined) return;
    this.apply(core.receive(link.id, bytes, now), now);
    if (this.core === core && link.hubAttached && !core.wantsInput(link.id)) this.#paused.add(link.id);
  }

  /**
   * Feeds a chunk. Like the reference hub, the host pauses a connection
   * after a chunk that leaves the core not wanting its input (a write of its
   * device is outstanding; the core keeps what it was given): the next chunk
   * that arrives stays in the network (the attempt is a step that delivers
   * nothing) until a write of the device is acknowledged.
   */
  receive(link: Link, bytes: Uint8Array, now: number): boolean {
    const core = this.core;
    if (core === undefined || !link.hubAttached) return true;
    if (this.fenced && !this.#passed.has(link.id)) {
      this.#gate(link, bytes, now);
      return true;
    }
    if (this.#paused.has(link.id)) {
      link.upBlocked = true;
      return false;
    }
    this.#feed(link, bytes, now);
    return true;
  }

  linkClosed(link: Link, now: number): void {
    const core = this.core;
    if (core === undefined || !link.hubAttached) return;
    link.hubAttached = false;
    this.links.delete(link.id);
    this.#paused.delete(link.id);
    this.#waiting.delete(link.id);
    this.#passed.delete(link.id);
    this.#world.trace.log(() => `${this.#name} sees link ${link.id} closed`);
    this.apply(core.closed(link.id, now), now);
    this.#world.variant.onHubLinkClosed?.(now);
  }

  tick(now: number): void {
    if (this.core !== undefined) this.apply(this.core.tick(now), now);
  }

  /** An operator's rotation; one asked for while another is in flight is not queued here (the scenario counts rotations). */
  rotate(now: number): void {
    const core = this.core;
    // An instance rotates only a device it serves (elsewhere `rotate` leaves a durable request: not modelled).
    if (core === undefined || (this.fenced && this.#fence === undefined) || this.pausedUntil !== undefined) return;
    const state = core.deviceState(this.deviceId);
    if (state.pendingKeyId !== undefined || state.persisting) return;
    const result = core.rotate(this.deviceId, now);
    if (result.ok) this.apply(result.actions, now);
  }

  send(now: number): boolean {
    const core = this.core;
    // A paused instance runs nothing, an operator's call included.
    if (core === undefined || this.pausedUntil !== undefined) return false;
    const payload = this.#world.app.payload('hub', this.incarnation, this.sentThisIncarnation + 1);
    const result = core.send(this.deviceId, payload, now);
    if (!result.ok) return false;
    this.sentThisIncarnation++;
    this.apply(result.actions, now);
    return true;
  }

  nextDeadline(): number | undefined {
    return this.core?.nextDeadline();
  }

  /** Everything this host and its core hold (for the state digest). */
  stateText(): string {
    const core = this.core;
    const coreState = core === undefined ? 'off' : `${JSON.stringify(core.snapshot(this.deviceId))}|deadline ${core.nextDeadline() ?? '-'}`;
    const base = `${coreState}|links ${[...this.links.keys()].join(',')}|paused ${[...this.#paused].join(',')}|restart ${this.restartAt ?? '-'}|inc ${this.incarnation}/${this.sentThisIncarnation}|rng ${this.#random.state()}`;
    if (!this.fenced) return base;
    const waiting = [...this.#waiting.entries()].map(([id, w]) => `${id}:${w.bytes}${w.leasing ? 'L' : ''}`).join(',');
    const steps = this.#leaseSteps.map((s) => `${s.link.id}${s.stage}@${s.at}`).join(',');
    return `${base}|fence ${this.#fence ? `${this.#fence.epoch}.${this.#fence.rowVersion}` : '-'}@${this.#held?.id ?? '-'}|wait ${waiting}|pass ${[...this.#passed].join(',')}|lease ${steps}|notify ${this.#notified.map((n) => `${n.at}:${n.epoch}`).join(',')}|stop ${this.pausedUntil ?? '-'}|leases ${this.leasesTaken}|backlog ${this.#backlog.map((l) => l.id).join(',')}`;
  }

  /** The database commits a write (or fails to). */
  commit(write: DbWrite, now: number): void {
    write.commitDone = true;
    // The fence as this instance holds it when the transaction runs (PgHubStore.commit reads it there).
    if (write.failure !== 'beforeCommit') this.db.commit(write, this.#fence === undefined ? undefined : { ...this.#fence });
    if (write.ackAt === undefined) write.ackAt = now;
    if (write.acked) this.db.finish(write);
    const outcome = write.failure === 'beforeCommit' ? 'FAILS' : this.fenced && !write.applied ? 'FENCES OUT' : 'commits';
    this.#world.trace.log(() => `db ${outcome} ${write.op.kind} ${'id' in write.op ? write.op.id : '-'}${this.fenced ? ` of instance ${this.index}` : ''}`);
  }

  /** The core hears how its write ended. */
  acknowledge(write: DbWrite, now: number): void {
    const core = this.core;
    write.acked = true;
    if (write.commitDone) this.db.finish(write);
    if (core === undefined) return;
    for (const link of this.links.values()) link.upBlocked = false;
    this.#paused.clear();
    if (this.fenced && (write.failure !== 'none' || !write.applied)) {
      // PgCommits: persistFailed, and the lease is lost (no reload here: the next lease reloads the row).
      const reason = write.failure !== 'none' ? 'the commit failed' : 'fenced out';
      this.#world.trace.log(() => `instance ${this.index} told: ${write.op.kind} ${'id' in write.op ? write.op.id : '-'} ${reason}`);
      const actions = core.persistFailed(this.deviceId, new LockstepError('STORAGE_CORRUPT', reason));
      this.apply(actions, now);
      if (this.core === core) this.#lose(reason, now);
      return;
    }
    if (this.fenced && this.#fence !== undefined && write.rowVersion !== undefined) this.#fence.rowVersion = write.rowVersion;
    if (write.failure !== 'none') {
      this.#world.trace.log(() => `hub told: ${write.op.kind} ${'id' in write.op ? write.op.id : '-'} failed; reloading the row`);
      const actions = core.persistFailed(this.deviceId, new LockstepError('STORAGE_CORRUPT', 'simulated database failure'));
      core.reloadDevice(this.db.record(this.deviceId));
      this.apply(actions, now);
      return;
    }
    this.apply(core.persisted(this.deviceId, now), now);
  }

  apply(actions: HubAction[], now: number): void {
    const core = this.core;
    for (const action of actions) {
      if (this.core !== core || core === undefined) return;
      this.#world.actionApplied('hub', this.index);
      if (this.core !== core) return;
      switch (action.type) {
        case 'transmit':
          this.#transmit(action.connection, action.bytes, now);
          break;
        case 'close': {
          const link = this.links.get(action.connection);
          this.#world.trace.log(() => `hub closes link ${action.connection}: ${action.error.message}`);
          if (link !== undefined) {
            link.enqueue('down', new Uint8Array(0), now, this.#world.latency(), 'core', true);
            link.hubAttached = false;
            this.links.delete(link.id);
          }
          this.#paused.delete(action.connection);
          break;
        }
        case 'persist':
          this.#persist(action.op, now);
          break;
        case 'event':
          this.#world.hubEvent(action.event, this.index);
          break;
      }
    }
  }

  #persist(op: HubPersistOp, now: number): void {
    const policy = this.#world.variant.hubPersistPolicy?.(op) ?? { ackBeforeCommit: false, commitDelayMs: DB_COMMIT_MS };
    const stored = this.#world.variant.onHubPersistBegin?.(op) ?? op;
    const write = this.db.begin(stored, now + policy.commitDelayMs, this.index);
    if (policy.ackBeforeCommit) write.ackAt = now;
    this.#world.trace.log(() => `hub persists ${op.kind} ${'id' in op ? op.id : '-'}${policy.ackBeforeCommit ? ' (acknowledged before the commit)' : ''}`);
  }

  #transmit(connection: number, bytes: Uint8Array, now: number): void {
    const link = this.links.get(connection);
    if (link === undefined || !link.hubAttached) return;
    if (link.hubNonce === undefined && bytes.length >= 38) {
      const header = decodeHeader(bytes.subarray(2));
      if (header.type === MessageType.CHALLENGE) link.hubNonce = toHex(header.sessionId);
    }
    const out = this.#world.variant.interposeDown?.(bytes) ?? bytes;
    if (out.length === 0) {
      this.#world.trace.log(() => `hub → device  ${this.#world.describeFrame(bytes)}  DROPPED by the variant's interposer`);
      return;
    }
    this.#world.trace.log(() => `${this.fenced ? `instance ${this.index}` : 'hub'} → device  ${this.#world.describeFrame(out)}`);
    link.enqueue('down', out, now, this.#world.latency());
  }
}

function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
