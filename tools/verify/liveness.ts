/**
 * Liveness, checked as the run goes (docs/VERIFICATION.md §4):
 * - L1 after the last fault (the moment the environment is fault-free again:
 *   a crashed side is running, a delayed stream has arrived) device and hub
 *   are in sync — one shared active key, no future or pending key, nothing
 *   being persisted, both outboxes empty, session established — within
 *   LIVENESS_BOUND_MS;
 * - L1 (round trips) when the connection they converge on was opened after
 *   the last fault, they converge within CONVERGENCE_ROUND_TRIPS round trips
 *   (plus two commits) of its opening;
 * - L2 a round issued in sync with no fault until it completes (app data
 *   both ways + one rotation) is back in sync within ROUND_BOUND_MS;
 * - L3 the run never stalls: there is always a next event until the
 *   scenario is done (checked by the world).
 * After a rollback (docs/VERIFICATION.md §11) L1's bound is
 * RECOVERY_LIVENESS_BOUND_MS until the pair is next in sync.
 */
import { CALM_ROUND_TRIP_MS, CONNECTED_BOUND_MS, CONVERGENCE_ROUND_TRIPS, LIVENESS_BOUND_MS, RECOVERY_LIVENESS_BOUND_MS, ROUND_BOUND_MS } from './constants';

export class LivenessMonitor {
  lastFaultAt: number;
  #syncedSinceFault = false;
  #roundStartedAt: number | undefined;
  #connectionOpenedAt = 0;
  /** Worst times seen (ms). */
  worstRecoveryMs = 0;
  worstRoundMs = 0;
  /** Worst time from opening the converging connection to sync (when opened after the last fault). */
  worstConnectedMs = 0;
  recoveries = 0;
  rounds = 0;
  checks = 0;
  /** A rollback struck and the pair has not been in sync since: L1 allows for a recovery. */
  #afterRollback = false;
  /** Worst time from the last fault to sync when a rollback preceded it (ms). */
  worstRollbackRecoveryMs = 0;

  rolledBack(): void {
    this.#afterRollback = true;
  }

  constructor(start: number) {
    this.lastFaultAt = start;
  }

  stateText(): string {
    return `${this.lastFaultAt}|${this.#syncedSinceFault ? 1 : 0}|${this.#roundStartedAt ?? '-'}|${this.#connectionOpenedAt}${this.#afterRollback ? '|R' : ''}`;
  }

  fault(environmentCalmAt: number): void {
    this.lastFaultAt = Math.max(this.lastFaultAt, environmentCalmAt);
    this.#syncedSinceFault = false;
    this.#roundStartedAt = undefined;
  }

  connectionOpened(now: number): void {
    this.#connectionOpenedAt = now;
  }

  roundIssued(now: number): void {
    this.#roundStartedAt = this.#syncedSinceFault ? now : undefined;
  }

  get syncedSinceFault(): boolean {
    return this.#syncedSinceFault;
  }

  afterStep(now: number, synced: boolean, report: (invariant: string, detail: string) => void): void {
    this.checks += 2;
    if (synced) {
      if (!this.#syncedSinceFault && now >= this.lastFaultAt) {
        this.#syncedSinceFault = true;
        this.recoveries++;
        this.worstRecoveryMs = Math.max(this.worstRecoveryMs, now - this.lastFaultAt);
        if (this.#afterRollback) this.worstRollbackRecoveryMs = Math.max(this.worstRollbackRecoveryMs, now - this.lastFaultAt);
        this.#afterRollback = false;
        if (this.#connectionOpenedAt >= this.lastFaultAt) {
          const connected = now - this.#connectionOpenedAt;
          this.worstConnectedMs = Math.max(this.worstConnectedMs, connected);
          if (connected > CONNECTED_BOUND_MS) {
            report('L1 converges after faults', `in sync ${connected} ms after its connection opened (bound ${CONVERGENCE_ROUND_TRIPS} round trips + 2 commits = ${CONNECTED_BOUND_MS} ms)`);
          }
        }
      }
      if (this.#roundStartedAt !== undefined) {
        this.rounds++;
        this.worstRoundMs = Math.max(this.worstRoundMs, now - this.#roundStartedAt);
        this.#roundStartedAt = undefined;
      }
    }
    const bound = this.#afterRollback ? RECOVERY_LIVENESS_BOUND_MS : LIVENESS_BOUND_MS;
    if (!this.#syncedSinceFault && now > this.lastFaultAt + bound) {
      report('L1 converges after faults', `not in sync ${now - this.lastFaultAt} ms after the last fault (bound ${bound} ms${this.#afterRollback ? ', after a rollback' : ''})`);
      this.#syncedSinceFault = true;
    }
    if (this.#roundStartedAt !== undefined && now > this.#roundStartedAt + ROUND_BOUND_MS) {
      report('L2 fault-free round within bound', `round not done ${now - this.#roundStartedAt} ms after it was issued (bound ${ROUND_BOUND_MS} ms = ${ROUND_BOUND_MS / CALM_ROUND_TRIP_MS} round trips)`);
      this.#roundStartedAt = undefined;
    }
  }
}
