/**
 * The device's recovery limit (docs/PROTOCOL.md §12.7): at most one attempt
 * per connection (the core's states), attempts spaced by a backoff —
 * RECOVERY_RETRY_INITIAL_MS doubling to RECOVERY_RETRY_MAX_MS, reset by a
 * WELCOME — and never sooner than the hub's "retry after" (capped at the
 * maximum). Also remembers whether this episode's `hubLostKey` was
 * reported (once from the first NO_KEY until a WELCOME).
 *
 * Owned by the device loop so it outlives a core rebuilt after a storage
 * failure (a power cut forgets it, as it forgets everything in memory);
 * a core built without one makes its own. No randomness: the ordinary
 * reconnect backoff already spreads a fleet, and the hub limits per source.
 * Bounded: three numbers.
 */
import { RECOVERY_RETRY_INITIAL_MS, RECOVERY_RETRY_MAX_MS } from '../protocol/constants';

const MAX_DOUBLINGS = 30;

export class RecoveryPacer {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #attempts = 0;
  #notBefore = Number.NEGATIVE_INFINITY;
  #lostKeyReported = false;

  constructor(initialMs: number = RECOVERY_RETRY_INITIAL_MS, maxMs: number = RECOVERY_RETRY_MAX_MS) {
    this.#initialMs = initialMs;
    this.#maxMs = Math.max(initialMs, maxMs);
  }

  /** Whether an attempt may start at `now`. */
  allows(now: number): boolean {
    return now >= this.#notBefore;
  }

  /** Milliseconds from `now` until an attempt is allowed (0 if it is). */
  waitMs(now: number): number {
    return this.allows(now) ? 0 : this.#notBefore - now;
  }

  /** Attempts started since the last WELCOME. */
  get attempts(): number {
    return this.#attempts;
  }

  /** An attempt starts (RECOVER_INIT sent): the next one waits the current spacing, which then doubles. */
  attempted(now: number): void {
    const spacing = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#attempts, MAX_DOUBLINGS));
    this.#attempts = Math.min(this.#attempts + 1, MAX_DOUBLINGS);
    this.#notBefore = now + spacing;
  }

  /** The hub's "retry after" (ms): the next attempt waits at least that long, capped at the maximum spacing. */
  retryAfter(now: number, retryAfterMs: number): void {
    this.#notBefore = Math.max(this.#notBefore, now + Math.min(Math.max(0, retryAfterMs), this.#maxMs));
  }

  /** True the first time in an episode (the caller reports `hubLostKey` then). */
  markLostKey(): boolean {
    if (this.#lostKeyReported) return false;
    this.#lostKeyReported = true;
    return true;
  }

  /** A WELCOME: the device is in sync; the episode ends and the spacing starts over. */
  reset(): void {
    this.#attempts = 0;
    this.#notBefore = Number.NEGATIVE_INFINITY;
    this.#lostKeyReported = false;
  }
}
