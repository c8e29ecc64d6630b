/**
 * Group commit on PostgreSQL: the core's persist actions collected while no
 * transaction is in flight go into one transaction (one WAL flush); while
 * one is in flight, new ops wait for the next. `HubCore.persisted` is called
 * for each op, in order, only after COMMIT returned (rules H1, H2), and only
 * for ops that applied under the device's fence.
 *
 * A write that did not apply (the fence moved: another instance took the
 * lease, or the row changed) or a failed transaction (PostgreSQL
 * unreachable, the connection terminated, a timeout): `persistFailed` (the
 * core closes the device's connections) and `lost` (the hub stops acting
 * for the device until a new HELLO takes a new lease and reloads the row —
 * rule HK7 across instances). Nothing is ever acted on that is not durable.
 */
import { describeError, LockstepError } from '../../../modules/errors';
import type { HubPersistOp } from '../../../modules/hub/actions';
import type { HubCore } from '../../../modules/hub/hub';
import type { HubEventRouter } from '../events';
import type { Logger } from '../log';
import type { ActionPipeline } from '../pipeline';
import type { Fence, PgHubStore } from './store';

export class PgCommits {
  #batch: HubPersistOp[] = [];
  #inFlight: Promise<void> | undefined;
  #scheduled = false;
  #closed = false;
  readonly #waiters = new Map<string, (() => void)[]>();
  transactions = 0;
  committedOps = 0;
  failedTransactions = 0;
  fencedOut = 0;
  readonly latenciesMs: number[] = [];

  constructor(
    private readonly store: PgHubStore,
    private readonly core: HubCore,
    private readonly pipeline: ActionPipeline,
    private readonly events: HubEventRouter,
    private readonly fences: ReadonlyMap<string, Fence>,
    private readonly lost: (deviceId: string, reason: string) => void,
    private readonly resumeReady: () => void,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  enqueue(op: HubPersistOp): void {
    if (this.#closed) return;
    this.#batch.push(op);
    this.#schedule();
  }

  /** Resolves once no write of the device is outstanding in the core. */
  settled(deviceId: string): Promise<void> {
    if (!this.#persisting(deviceId)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#waiters.get(deviceId) ?? [];
      list.push(resolve);
      this.#waiters.set(deviceId, list);
    });
  }

  /** Waits for the transaction in flight, then stops (what waits is dropped, as in a crash). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#inFlight;
    this.#batch = [];
    for (const list of this.#waiters.values()) for (const resolve of list) resolve();
    this.#waiters.clear();
  }

  #persisting(deviceId: string): boolean {
    try {
      return this.core.deviceState(deviceId).persisting;
    } catch {
      return false;
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight !== undefined) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#inFlight !== undefined || this.#batch.length === 0 || this.#closed) return;
    const ops = this.#batch;
    this.#batch = [];
    const started = performance.now();
    this.#inFlight = this.store
      .commit(ops, Date.now(), this.fences)
      .then(
        (applied) => {
          this.transactions++;
          this.committedOps += ops.length;
          if (this.latenciesMs.length < 100_000) this.latenciesMs.push(performance.now() - started);
          return ops.map((op, i) => ({ op, result: applied[i] === true ? (true as const) : (false as const) }));
        },
        (error: unknown) => {
          this.failedTransactions++;
          const failure = error instanceof Error ? error : new Error(String(error));
          return ops.map((op) => ({ op, result: failure }));
        },
      )
      .then((outcomes) => {
        this.#inFlight = undefined;
        if (!this.#closed) this.#committed(outcomes);
        if (this.#batch.length > 0) this.#schedule();
      });
  }

  #committed(outcomes: { op: HubPersistOp; result: true | false | Error }[]): void {
    for (const { op, result } of outcomes) {
      try {
        if (!this.core.hasDevice(op.deviceId)) {
          // Revoked meanwhile (its row is gone, so the write matched nothing): the core no longer knows it, nothing to tell.
        } else if (result === true) {
          if (op.kind === 'storePending') this.events.rotationDurable(op);
          this.pipeline.apply(this.core.persisted(op.deviceId, this.now()));
        } else {
          const reason = result === false ? 'fenced out: another instance holds the lease, or the row changed' : describeError(result);
          if (result === false) this.fencedOut++;
          else this.log.warn('commitFailed', { deviceId: op.deviceId, message: reason });
          this.pipeline.apply(this.core.persistFailed(op.deviceId, new LockstepError('STORAGE_CORRUPT', reason)));
          this.lost(op.deviceId, reason);
          this.events.storageError(op, result === false ? new Error(reason) : result);
        }
      } catch (error) {
        this.log.error('commitOutcomeFailed', { deviceId: op.deviceId, message: describeError(error) });
      }
      const waiters = this.#waiters.get(op.deviceId);
      if (waiters !== undefined && !this.#persisting(op.deviceId)) {
        this.#waiters.delete(op.deviceId);
        for (const resolve of waiters) resolve();
      }
    }
    this.resumeReady();
  }
}
