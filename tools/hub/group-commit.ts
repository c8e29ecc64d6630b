/**
 * Group commit of the core's persist actions. Ops collected during one turn
 * of the event loop are committed in one SQLite transaction (one fsync),
 * then reported back in order. The host calls `HubCore.persisted` only from
 * `onCommitted`, i.e. strictly after the commit returned (rules H1, H2);
 * while an op waits, the core holds that device's input and the host queues
 * further input and commands for it.
 */
import type { HubPersistOp } from '../../modules/hub/actions';

export interface CommitOutcome {
  readonly op: HubPersistOp;
  /** true: durable; false: the conditional update did not apply; Error: the transaction failed. */
  readonly result: true | false | Error;
}

export class GroupCommit {
  #batch: HubPersistOp[] = [];
  #scheduled = false;
  #closed = false;
  /** Transactions committed and ops in them, for stats and the benchmark. */
  transactions = 0;
  committedOps = 0;

  constructor(
    private readonly commit: (ops: readonly HubPersistOp[]) => boolean[],
    private readonly onCommitted: (outcomes: CommitOutcome[]) => void,
  ) {}

  get waiting(): number {
    return this.#batch.length;
  }

  enqueue(op: HubPersistOp): void {
    if (this.#closed) return;
    this.#batch.push(op);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Commits everything waiting now (also called on shutdown). */
  flush(): void {
    this.#scheduled = false;
    if (this.#batch.length === 0) return;
    const ops = this.#batch;
    this.#batch = [];
    let outcomes: CommitOutcome[];
    try {
      const applied = this.commit(ops);
      this.transactions++;
      this.committedOps += ops.length;
      outcomes = ops.map((op, i) => ({ op, result: applied[i] === true }));
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      outcomes = ops.map((op) => ({ op, result: failure }));
    }
    this.onCommitted(outcomes);
  }

  /** Stops accepting ops; what is waiting is dropped (as in a crash: not durable, never reported). */
  close(): void {
    this.#closed = true;
    this.#batch = [];
  }
}
