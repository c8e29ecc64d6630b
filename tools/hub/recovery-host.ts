/**
 * The hub host's side of recovery (docs/PROTOCOL.md §12, docs/HUB.md §14),
 * wired by tools/hub/hub-base.ts for both backends:
 *
 * - `allowed(source)`: the per-source token bucket, asked when a connection
 *   opens (HubCore.opened's `recoveryAllowed`); `recoveryUnauthenticated`
 *   events (a NO_KEY answered and a RECOVER_INIT or RECOVER_FINISH that
 *   failed its check) charge the connection's source.
 * - `decide(request)`: the `recoveryRequest` action (tag3 verified): the
 *   policy, the per-device count and the approvals, in one database
 *   transaction that also writes the audit entry (HubStore.decideRecovery);
 *   the answer goes back to the core (`decideRecovery`). A database failure
 *   answers RATE_LIMITED with a short retry: nothing was charged or stored,
 *   and the device asks again.
 * - the recovery events: one log line per episode (the core reports
 *   `recoveryNeeded` once per episode), library events, counters for the
 *   metrics, audit entries for IN_SYNC (decided by the core itself) and for
 *   a refused static key change.
 */
import type { ConnectionId, HubEvent } from '../../modules/hub/actions';
import { describeError } from '../../modules/errors';
import { RecoveryStatus } from '../../modules/protocol/constants';
import type { AuditLog } from './audit';
import type { Emit } from './events';
import type { Logger } from './log';
import { RECOVERY_STATUS_NAMES, SourceBuckets, type RecoveryDecision, type RecoveryPolicy, type RecoveryRequestInput } from './recovery';

/** Where the decision is made: HubStore (synchronous) or PgHubStore (the row locked, asynchronous). */
export interface RecoveryDecider {
  decideRecovery(request: RecoveryRequestInput, policy: RecoveryPolicy, now: number): RecoveryDecision | Promise<RecoveryDecision>;
}

/** What the core is answered (`HubCore.decideRecovery`). */
export interface RecoveryAnswer {
  readonly status: RecoveryStatus;
  readonly retryAfterSeconds: number;
}

export type RecoveryEvent = Extract<HubEvent, { type: 'recoveryNeeded' | 'recoveryUnauthenticated' | 'recoveryDecided' | 'enrolled' | 'staticKeyLocked' }>;

export function isRecoveryEvent(event: HubEvent): event is RecoveryEvent {
  return event.type === 'recoveryNeeded' || event.type === 'recoveryUnauthenticated' || event.type === 'recoveryDecided' || event.type === 'enrolled' || event.type === 'staticKeyLocked';
}

export interface RecoveryCounters {
  /** Decisions by outcome name (accepted, inSync, awaitingApproval, refused, rateLimited, keyIdsExhausted). */
  readonly decided: Record<string, number>;
  /** Episodes reported (recoveryNeeded), by reason. */
  readonly needed: Record<string, number>;
  /** Unauthenticated recovery steps that failed, by stage (init, finish). */
  readonly unauthenticated: Record<string, number>;
  /** Connections whose source had no token left (no NO_KEY). */
  sourceLimited: number;
  /** Decisions the database could not make (answered RATE_LIMITED, nothing stored). */
  decideFailed: number;
}

/** Retry after a failed decision (the database was unavailable). */
const DECIDE_FAILED_RETRY_SECONDS = 30;

export class RecoveryHost {
  readonly buckets: SourceBuckets;
  readonly counters: RecoveryCounters = { decided: {}, needed: {}, unauthenticated: {}, sourceLimited: 0, decideFailed: 0 };

  constructor(
    public policy: RecoveryPolicy,
    private readonly store: RecoveryDecider,
    private readonly log: Logger,
    private readonly peerLog: Logger,
    private readonly audit: () => AuditLog,
    private readonly emit: Emit,
    private readonly sourceOf: (connection: ConnectionId) => string | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.buckets = new SourceBuckets(policy.perSource);
  }

  allowed(source: string): boolean {
    const allowed = this.buckets.allows(source, this.now());
    if (!allowed) this.counters.sourceLimited++;
    return allowed;
  }

  /** The answer at once (SQLite), or once the database decided (PostgreSQL). */
  decide(request: RecoveryRequestInput): RecoveryAnswer | Promise<RecoveryAnswer> {
    try {
      const decision = this.store.decideRecovery(request, this.policy, this.now());
      if (decision instanceof Promise) return decision.then((d) => this.#decided(request, d), (error: unknown) => this.#failed(request, error));
      return this.#decided(request, decision);
    } catch (error) {
      return this.#failed(request, error);
    }
  }

  #decided(request: RecoveryRequestInput, decision: RecoveryDecision): RecoveryAnswer {
    const name = RECOVERY_STATUS_NAMES[decision.status];
    const fields = { deviceId: request.deviceId, status: name, reason: decision.reason, newKeyId: request.newKeyId, claimedActive: request.claimedActive, claimedFuture: request.claimedFuture, retryAfterSeconds: decision.retryAfterSeconds };
    if (decision.status === RecoveryStatus.ACCEPTED) this.log.info('recoveryAccepted', fields);
    else if (decision.status === RecoveryStatus.AWAITING_APPROVAL) this.log.warn('recoveryAwaitingApproval', { ...fields, approve: `lockstep-hub recover ${request.deviceId}` });
    else this.log.warn('recoveryRefused', fields);
    return { status: decision.status, retryAfterSeconds: decision.retryAfterSeconds };
  }

  /** The database could not decide: RATE_LIMITED with a short retry (nothing was charged or stored). */
  #failed(request: RecoveryRequestInput, error: unknown): RecoveryAnswer {
    this.counters.decideFailed++;
    this.log.error('recoveryDecideFailed', { deviceId: request.deviceId, message: describeError(error) });
    return { status: RecoveryStatus.RATE_LIMITED, retryAfterSeconds: DECIDE_FAILED_RETRY_SECONDS };
  }

  event(event: RecoveryEvent): void {
    switch (event.type) {
      case 'recoveryNeeded': {
        this.counters.needed[event.reason] = (this.counters.needed[event.reason] ?? 0) + 1;
        // Once per episode (the core's rule), with the device and every id involved.
        this.log.warn('recoveryNeeded', { deviceId: event.deviceId, reason: event.reason, helloKeyId: event.helloKeyId, activeKeyId: event.activeKeyId, pendingKeyId: event.pendingKeyId ?? null, policy: this.policy.mode });
        this.emit('recoveryNeeded', { deviceId: event.deviceId, reason: event.reason, helloKeyId: event.helloKeyId, activeKeyId: event.activeKeyId, pendingKeyId: event.pendingKeyId ?? 0 });
        return;
      }
      case 'recoveryUnauthenticated': {
        this.counters.unauthenticated[event.stage] = (this.counters.unauthenticated[event.stage] ?? 0) + 1;
        const source = this.sourceOf(event.connection);
        if (source !== undefined) this.buckets.charge(source, this.now());
        this.peerLog.debug('recoveryUnauthenticated', { connection: event.connection, stage: event.stage, code: event.code, source });
        this.emit('recoveryUnauthenticated', { stage: event.stage, code: event.code });
        return;
      }
      case 'recoveryDecided': {
        const name = RECOVERY_STATUS_NAMES[event.status] ?? String(event.status);
        this.counters.decided[name] = (this.counters.decided[name] ?? 0) + 1;
        // The host's own decisions are audited in their transaction (HubStore.decideRecovery); IN_SYNC is the core's.
        if (event.status === RecoveryStatus.IN_SYNC) {
          this.audit().later({ actor: 'hub', action: 'recovery.decide', deviceId: event.deviceId, outcome: name, detail: { reason: 'check', newKeyId: event.newKeyId } });
          this.log.info('recoveryInSync', { deviceId: event.deviceId });
        }
        this.emit('recoveryDecided', { deviceId: event.deviceId, status: name, newKeyId: event.newKeyId });
        return;
      }
      case 'enrolled':
        this.log.info('enrolled', { deviceId: event.deviceId, hubStaticId: event.hubStaticId });
        this.emit('enrolled', { deviceId: event.deviceId, hubStaticId: event.hubStaticId });
        return;
      case 'staticKeyLocked':
        this.log.warn('staticKeyLocked', { deviceId: event.deviceId });
        this.audit().later({ actor: 'hub', action: 'enrol.refused', deviceId: event.deviceId, outcome: 'staticKeyLocked' });
        this.emit('staticKeyLocked', { deviceId: event.deviceId });
        return;
    }
  }
}
