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
 */
import { nodeKeyAgreementDrawn as nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { LockstepError } from '../../modules/errors';
import { HubCore, type HubAction } from '../../modules/hub/hub';
import type { HubPersistOp } from '../../modules/hub/actions';
import { MessageType } from '../../modules/protocol/constants';
import { decodeHeader } from '../../modules/protocol/header';
import { DB_COMMIT_MS, HUB_RESTART_MS, RESET_NOTICE_MS } from './constants';
import type { DbWrite, SimHubDatabase } from './hub-db';
import type { Link } from './network';
import { Rng } from './rng';
import type { HubHostContext } from './sim-types';

export class HubHost {
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

  constructor(world: HubHostContext, db: SimHubDatabase, deviceId: string, aead: Aead, seed: number) {
    this.#world = world;
    this.db = db;
    this.deviceId = deviceId;
    this.#aead = aead;
    this.#random = new Rng(seed, 12);
  }

  get up(): boolean {
    return this.core !== undefined;
  }

  boot(now: number): void {
    this.core = new HubCore({ aead: this.#aead, random: this.#random, keyAgreement: nodeKeyAgreement, devices: this.db.records() });
    this.incarnation++;
    this.sentThisIncarnation = 0;
    this.restartAt = undefined;
    const row = this.db.row(this.deviceId);
    this.#world.trace.log(() => `hub starts (incarnation ${this.incarnation}) from db: active ${row.active.id}${row.pending ? `, pending ${row.pending.id}` : ''}`);
    void now;
  }

  /**
   * The hub process dies. Its connections are reset: the device hears of it
   * after RESET_NOTICE_MS, or never when `silent` (the machine lost power).
   */
  crash(now: number, silent: boolean, why: string): void {
    if (this.core === undefined) return;
    this.core = undefined;
    this.db.crash();
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
    this.#world.trace.log(() => `HUB CRASH (${why}${silent ? ', silent' : ''}); db holds ${this.db.digest()}`);
  }

  accept(link: Link, now: number): void {
    const core = this.core;
    if (core === undefined) return;
    this.links.set(link.id, link);
    this.apply(core.opened(link.id, now), now);
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
    if (this.#paused.has(link.id)) {
      link.upBlocked = true;
      return false;
    }
    this.apply(core.receive(link.id, bytes, now), now);
    if (this.core === core && link.hubAttached && !core.wantsInput(link.id)) this.#paused.add(link.id);
    return true;
  }

  linkClosed(link: Link, now: number): void {
    const core = this.core;
    if (core === undefined || !link.hubAttached) return;
    link.hubAttached = false;
    this.links.delete(link.id);
    this.#paused.delete(link.id);
    this.#world.trace.log(() => `hub sees link ${link.id} closed`);
    this.apply(core.closed(link.id, now), now);
    this.#world.variant.onHubLinkClosed?.(now);
  }

  tick(now: number): void {
    if (this.core !== undefined) this.apply(this.core.tick(now), now);
  }

  /** An operator's rotation; one asked for while another is in flight is not queued here (the scenario counts rotations). */
  rotate(now: number): void {
    const core = this.core;
    if (core === undefined) return;
    const state = core.deviceState(this.deviceId);
    if (state.pendingKeyId !== undefined || state.persisting) return;
    const result = core.rotate(this.deviceId, now);
    if (result.ok) this.apply(result.actions, now);
  }

  send(now: number): boolean {
    const core = this.core;
    if (core === undefined) return false;
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
    return `${coreState}|links ${[...this.links.keys()].join(',')}|paused ${[...this.#paused].join(',')}|restart ${this.restartAt ?? '-'}|inc ${this.incarnation}/${this.sentThisIncarnation}|rng ${this.#random.state()}`;
  }

  /** The database commits a write (or fails to). */
  commit(write: DbWrite, now: number): void {
    write.commitDone = true;
    if (write.failure !== 'beforeCommit') this.db.commit(write);
    if (write.ackAt === undefined) write.ackAt = now;
    if (write.acked) this.db.finish(write);
    this.#world.trace.log(() => `db ${write.failure === 'beforeCommit' ? 'FAILS' : 'commits'} ${write.op.kind} ${'id' in write.op ? write.op.id : '-'}`);
  }

  /** The core hears how its write ended. */
  acknowledge(write: DbWrite, now: number): void {
    const core = this.core;
    write.acked = true;
    if (write.commitDone) this.db.finish(write);
    if (core === undefined) return;
    for (const link of this.links.values()) link.upBlocked = false;
    this.#paused.clear();
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
      this.#world.actionApplied('hub');
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
          this.#world.hubEvent(action.event);
          break;
      }
    }
  }

  #persist(op: HubPersistOp, now: number): void {
    const policy = this.#world.variant.hubPersistPolicy?.(op) ?? { ackBeforeCommit: false, commitDelayMs: DB_COMMIT_MS };
    const stored = this.#world.variant.onHubPersistBegin?.(op) ?? op;
    const write = this.db.begin(stored, now + policy.commitDelayMs);
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
    this.#world.trace.log(() => `hub → device  ${this.#world.describeFrame(out)}`);
    link.enqueue('down', out, now, this.#world.latency());
  }
}
