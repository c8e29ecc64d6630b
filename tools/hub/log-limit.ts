/**
 * Bounds the log volume a peer can drive (docs/HUB.md §5): lines whose rate
 * an unauthenticated peer or a device controls (connection opened, dropped,
 * closed, evicted; rejected frames; ERROR frames; failed TLS handshakes)
 * pass two token buckets — one per (event, key), one per event — and are
 * counted instead when either is empty. `flush` (once a second, from the
 * hub's timer) writes one `logSuppressed` line per event with the count.
 *
 * Rules:
 * - The key is the line's `source` (remote address or IPv6 /64) when it has
 *   one, else its device id: a device's key cannot be claimed by a peer
 *   without the key (a `rejected` line is keyed by its source).
 * - At most `maxKeys` per-key buckets; beyond, keys share one bucket per
 *   event; `flush` forgets refilled buckets. The per-event bucket bounds the
 *   total under any input: at most `eventBurst` + `eventPerSecond` lines a
 *   second per limited event, plus one summary line per event.
 * - Other events and lines below the logger's level pass untouched (and
 *   spend no token).
 */
import type { LogFields, Logger, LogLevel } from './log';

export interface LogLimits {
  /** Lines in a burst, then per second, for one (event, key). */
  readonly burst: number;
  readonly perSecond: number;
  /** Lines in a burst, then per second, for one event over all keys. */
  readonly eventBurst: number;
  readonly eventPerSecond: number;
  readonly maxKeys: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { burst: 10, perSecond: 1, eventBurst: 100, eventPerSecond: 20, maxKeys: 1024 };

/** The log events a peer drives. */
export const PEER_DRIVEN_EVENTS: readonly string[] = [
  'connectionOpened',
  'connectionDropped',
  'connectionClosed',
  'connectionEvicted',
  'tlsHandshakeFailed',
  'rejected',
  'peerError',
  'rekeyRefused',
  'deviceConnected',
  'deviceDisconnected',
  'receiveFailed',
];

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimitedLogger implements Logger {
  readonly #keyed = new Map<string, Bucket>();
  readonly #events = new Map<string, Bucket>();
  readonly #suppressed = new Map<string, number>();
  readonly #limited: ReadonlySet<string>;

  constructor(
    private readonly inner: Logger,
    private readonly now: () => number,
    private readonly limits: LogLimits = DEFAULT_LOG_LIMITS,
    limited: readonly string[] = PEER_DRIVEN_EVENTS,
  ) {
    this.#limited = new Set(limited);
  }

  debug(event: string, fields?: LogFields): void {
    if (this.#pass('debug', event, fields)) this.inner.debug(event, fields);
  }

  info(event: string, fields?: LogFields): void {
    if (this.#pass('info', event, fields)) this.inner.info(event, fields);
  }

  warn(event: string, fields?: LogFields): void {
    if (this.#pass('warn', event, fields)) this.inner.warn(event, fields);
  }

  error(event: string, fields?: LogFields): void {
    if (this.#pass('error', event, fields)) this.inner.error(event, fields);
  }

  enabled(level: LogLevel): boolean {
    return this.inner.enabled(level);
  }

  /** Writes what was suppressed since the last flush and forgets refilled buckets. */
  flush(): void {
    for (const [event, count] of this.#suppressed) this.inner.warn('logSuppressed', { limitedEvent: event, suppressed: count });
    this.#suppressed.clear();
    const now = this.now();
    for (const [key, bucket] of this.#keyed) {
      if (refill(bucket, now, this.limits.burst, this.limits.perSecond) >= this.limits.burst) this.#keyed.delete(key);
    }
  }

  #pass(level: LogLevel, event: string, fields: LogFields | undefined): boolean {
    if (!this.#limited.has(event) || !this.inner.enabled(level)) return true;
    const now = this.now();
    const key = `${event}\u0000${String(fields?.source ?? fields?.deviceId ?? fields?.device ?? '?')}`;
    const keyed = this.#keyed.get(key) ?? this.#newKeyed(key, event, now);
    const perEvent = this.#events.get(event) ?? newBucket(this.#events, event, this.limits.eventBurst, now);
    const ok =
      refill(keyed, now, this.limits.burst, this.limits.perSecond) >= 1 &&
      refill(perEvent, now, this.limits.eventBurst, this.limits.eventPerSecond) >= 1;
    if (ok) {
      keyed.tokens--;
      perEvent.tokens--;
    } else {
      this.#suppressed.set(event, (this.#suppressed.get(event) ?? 0) + 1);
    }
    return ok;
  }

  #newKeyed(key: string, event: string, now: number): Bucket {
    if (this.#keyed.size < this.limits.maxKeys) return newBucket(this.#keyed, key, this.limits.burst, now);
    const shared = `${event}\u0000*`;
    return this.#keyed.get(shared) ?? newBucket(this.#keyed, shared, this.limits.burst, now);
  }
}

function newBucket(map: Map<string, Bucket>, key: string, tokens: number, now: number): Bucket {
  const bucket = { tokens, at: now };
  map.set(key, bucket);
  return bucket;
}

/** Adds the tokens earned since the bucket's last use; returns the tokens now. */
function refill(bucket: Bucket, now: number, burst: number, perSecond: number): number {
  bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * perSecond) / 1000);
  bucket.at = now;
  return bucket.tokens;
}
