/**
 * Which pre-authentication connection gives way when there are too many:
 * the cap on connections whose HELLO has not authenticated yet, so a flood
 * of idle connections cannot lock out real devices.
 *
 * Policy today: oldest first. A connection is counted from `accepted` until
 * it authenticates (`authenticated`) or goes away (`forget`); the Set keeps
 * insertion order, so the oldest is its first entry (O(1)).
 */
import type { ConnectionId } from '../../modules/hub/actions';

export class UnauthenticatedCap {
  readonly #limit: number;
  readonly #waiting = new Set<ConnectionId>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#waiting.size;
  }

  /** Counts a new connection; returns the one to evict when over the cap, if any. */
  accepted(connection: ConnectionId): ConnectionId | undefined {
    this.#waiting.add(connection);
    if (this.#waiting.size <= this.#limit) return undefined;
    return this.#waiting.values().next().value;
  }

  authenticated(connection: ConnectionId): void {
    this.#waiting.delete(connection);
  }

  forget(connection: ConnectionId): void {
    this.#waiting.delete(connection);
  }
}
