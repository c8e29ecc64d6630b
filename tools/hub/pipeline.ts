/**
 * The action pipeline: carries out the core's actions, strictly in the
 * order the core emitted them, never re-entrantly.
 *
 * Every input to the core (bytes from tools/hub/connections.ts, a commit
 * from tools/hub/commits.ts, a tick, a command) returns actions, and they
 * all come here through `apply`:
 *   transmit → connections (socket write), close → connections,
 *   persist  → commits (group commit, then `HubCore.persisted`),
 *   event    → events (library events and logs).
 * Actions produced while applying (a listener that calls `send`, a socket
 * dropped on its write limit) are appended after the current ones.
 *
 * Sends: the core numbers a frame when it seals it, so frames must leave in
 * the order they were sealed. Outside of `apply`, `send` seals at once
 * (`HubCore.send`). Inside (a listener of an event we are carrying out),
 * the message is only queued in the core (`enqueue`), and the device's
 * outbox is flushed once the actions already sealed have been carried out.
 * The message id is always the one the core assigned.
 */
import type { HubAction, HubEvent, HubPersistOp } from '../../modules/hub/actions';
import type { HubCore } from '../../modules/hub/hub';
import type { ConnectionId } from '../../modules/hub/actions';
import type { LockstepError } from '../../modules/errors';

/** Where each kind of action goes. */
export interface ActionSinks {
  transmit(connection: ConnectionId, bytes: Uint8Array): void;
  close(connection: ConnectionId, error: LockstepError): void;
  persist(op: HubPersistOp): void;
  event(event: HubEvent): void;
  /** Issue 14: an authenticated recovery to decide (the answer goes back to the core at once). */
  recoveryRequest(request: Extract<HubAction, { type: 'recoveryRequest' }>): void;
}

export class ActionPipeline {
  #queue: HubAction[] = [];
  #at = 0;
  #applying = false;
  /** Devices whose outbox gets a `flush` once the current actions are carried out. */
  readonly #flushes = new Set<string>();

  constructor(
    private readonly core: HubCore,
    private readonly sinks: ActionSinks,
    private readonly now: () => number,
  ) {}

  apply(actions: readonly HubAction[]): void {
    for (const action of actions) this.#queue.push(action);
    if (this.#applying) return;
    this.#applying = true;
    try {
      for (;;) {
        while (this.#at < this.#queue.length) this.#perform(this.#queue[this.#at++] as HubAction);
        if (this.#flushes.size === 0) break;
        const deviceId = this.#flushes.values().next().value as string;
        this.#flushes.delete(deviceId);
        for (const action of this.core.flush(deviceId, this.now())) this.#queue.push(action);
      }
    } finally {
      this.#queue = [];
      this.#at = 0;
      this.#applying = false;
    }
  }

  /**
   * Application data to a device: the message id the core assigned, or the
   * core's typed error thrown at the call (LOCAL_PAYLOAD_TOO_LARGE,
   * LOCAL_OUTBOX_FULL, UNKNOWN_DEVICE); nothing is queued then.
   */
  send(deviceId: string, payload: Uint8Array): number {
    if (this.#applying) {
      const queued = this.core.enqueue(deviceId, payload);
      if (queued.error !== undefined) throw queued.error;
      this.#flushes.add(deviceId.toLowerCase());
      return queued.messageId;
    }
    const sent = this.core.send(deviceId, payload, this.now());
    if (!sent.ok) throw sent.error;
    this.apply(sent.actions);
    return sent.messageId;
  }

  #perform(action: HubAction): void {
    switch (action.type) {
      case 'transmit':
        this.sinks.transmit(action.connection, action.bytes);
        return;
      case 'close':
        this.sinks.close(action.connection, action.error);
        return;
      case 'persist':
        this.sinks.persist(action.op);
        return;
      case 'event':
        this.sinks.event(action.event);
        return;
      case 'recoveryRequest':
        this.sinks.recoveryRequest(action);
        return;
    }
  }
}
