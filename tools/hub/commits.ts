/**
 * The commit pipeline: the core's `persist` actions → one SQLite
 * transaction per turn of the event loop (tools/hub/group-commit.ts over
 * tools/hub/store.ts) → `HubCore.persisted` for each op, in order, only
 * after the transaction has committed (WAL, synchronous=FULL: rules H1, H2
 * of docs/PROTOCOL.md §8.2).
 *
 * `persisted` lets the core parse what it kept of the device's input and
 * flush what it queued for it; the actions it returns go back through the
 * pipeline (tools/hub/pipeline.ts) to the sockets. After the whole batch,
 * the paused links whose device the core wants input for again are resumed.
 *
 * A failed write (the conditional update did not apply, or the transaction
 * failed): `persistFailed` (the core closes the device's connections), then
 * the device is reloaded from the database (rule HK7: it holds the state
 * before or after the write, and the core adopts it), then `storageError`.
 */
import { describeError, LockstepError } from '../../modules/errors';
import type { HubPersistOp } from '../../modules/hub/actions';
import type { HubCore } from '../../modules/hub/hub';
import type { Connections } from './connections';
import type { HubEventRouter } from './events';
import { GroupCommit, type CommitOutcome } from './group-commit';
import type { Logger } from './log';
import type { ActionPipeline } from './pipeline';
import { coreRecord } from './records';
import type { HubStore } from './store';

export class Commits {
  readonly #group: GroupCommit;
  #stopped = false;

  constructor(
    private readonly store: HubStore,
    private readonly core: HubCore,
    private readonly pipeline: ActionPipeline,
    private readonly events: HubEventRouter,
    private readonly connections: () => Connections,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.#group = new GroupCommit(
      (ops) => {
        const started = performance.now();
        let ok = false;
        try {
          const applied = store.commit(ops, Date.now());
          ok = true;
          return applied;
        } finally {
          this.events.committed(ops.length, performance.now() - started, ok);
        }
      },
      (outcomes) => this.#committed(outcomes),
    );
  }

  get transactions(): number {
    return this.#group.transactions;
  }

  get committedOps(): number {
    return this.#group.committedOps;
  }

  /** A `persist` action. */
  enqueue(op: HubPersistOp): void {
    this.#group.enqueue(op);
  }

  /** Commits what is waiting, then stops: the core is not told any more (the hub is going away). */
  close(): void {
    this.#stopped = true;
    this.#group.flush();
    this.#group.close();
  }

  #committed(outcomes: CommitOutcome[]): void {
    if (this.#stopped) return;
    for (const { op, result } of outcomes) {
      if (!this.core.hasDevice(op.deviceId)) continue; // revoked meanwhile (issue 17): nothing left to tell the core
      if (result === true) {
        if (op.kind === 'storePending') this.events.rotationDurable(op);
        this.pipeline.apply(this.core.persisted(op.deviceId, this.now()));
      } else {
        this.#failed(op, result === false ? new Error('the database row changed under this hub') : result);
      }
    }
    this.connections().resumeReady();
  }

  #failed(op: HubPersistOp, error: Error): void {
    this.pipeline.apply(this.core.persistFailed(op.deviceId, new LockstepError('STORAGE_CORRUPT', error.message)));
    try {
      const stored = this.store.getDevice(op.deviceId);
      if (stored !== undefined) this.core.reloadDevice(coreRecord(stored));
    } catch (reloadError) {
      this.log.error('reloadFailed', { deviceId: op.deviceId, message: describeError(reloadError) });
    }
    this.events.storageError(op, error);
  }
}
