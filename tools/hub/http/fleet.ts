/**
 * What the operator API and the metrics know about each device beyond the
 * core's state and presence: when it was provisioned, how many rotations it
 * completed, since when its pending key waits, its last rejected frame; and
 * the rotations confirmed per 10-second bucket over the last 10 minutes.
 * Fed by the hub's typed events; one entry per device (bounded by the
 * fleet), forgotten on revocation.
 */
import type { DeviceSummary } from '../device-row';
import { whenReady, type OperatorHub } from './operator-hub';
import type { HubEvents } from '../types';

/** Listeners on a hub's events that can all be removed again (the API's `close`). */
export class HubSubscriptions {
  readonly #removals: (() => void)[] = [];

  constructor(readonly hub: OperatorHub) {}

  on<K extends keyof HubEvents>(event: K, listener: (...args: HubEvents[K]) => void): void {
    (this.hub.on as (e: K, l: (...args: HubEvents[K]) => void) => unknown)(event, listener);
    this.#removals.push(() => (this.hub.off as (e: K, l: (...args: HubEvents[K]) => void) => unknown)(event, listener));
  }

  dispose(): void {
    for (const remove of this.#removals.splice(0)) remove();
  }
}

export interface FleetEntry {
  createdAt: number;
  rotations: number;
  /** When the current pending key became durable (wall clock), or undefined. */
  pendingSince: number | undefined;
  lastRejection: { code: string; at: number } | undefined;
  lastConnectedAt: number | undefined;
  /** Online and with a pending key, as the core's events said (the listing's filters and counts; a shown row reads the core). */
  connected: boolean;
  pending: boolean;
}

export const RATE_BUCKET_MS = 10_000;
export const RATE_BUCKETS = 60;

export class FleetTracker {
  readonly #entries = new Map<string, FleetEntry>();
  readonly #buckets = new Float64Array(RATE_BUCKETS);
  #bucketStart = 0;
  /** Offer → confirmation latencies (seconds) not yet taken by the metrics. */
  readonly latencies: number[] = [];
  static readonly MAX_LATENCIES = 10_000;

  /** Reads the fleet and the recent confirmations from the database (awaited on PostgreSQL), then follows the events. */
  static async load(events: HubSubscriptions, now: () => number = Date.now): Promise<FleetTracker> {
    const startedAt = now();
    const counts = await events.hub.store.auditCounts('rotation.confirm', startedAt - (RATE_BUCKETS - 1) * RATE_BUCKET_MS, RATE_BUCKET_MS);
    return new FleetTracker(events, startedAt, counts, await events.hub.store.listDevices(), now);
  }

  private constructor(
    events: HubSubscriptions,
    startedAt: number,
    counts: ReadonlyMap<number, number>,
    devices: readonly DeviceSummary[],
    private readonly now: () => number = Date.now,
  ) {
    const hub = events.hub;
    // The chart starts from the audit trail's confirmations (a restarted hub keeps its last 10 minutes).
    this.#bucket(startedAt);
    for (const [start, count] of counts) {
      if (start > startedAt || start <= startedAt - RATE_BUCKETS * RATE_BUCKET_MS) continue;
      this.#buckets[((Math.floor(start / RATE_BUCKET_MS) % RATE_BUCKETS) + RATE_BUCKETS) % RATE_BUCKETS] = count;
    }
    for (const d of devices) {
      // The API may start on a hub that already serves connections: ask the core once.
      const connected = hub.hasDevice(d.deviceId) && hub.deviceState(d.deviceId).connected;
      this.#entries.set(d.deviceId, { createdAt: d.createdAt, rotations: d.rotations, pendingSince: d.pendingSince, lastRejection: undefined, lastConnectedAt: undefined, connected, pending: d.pendingKeyId !== undefined });
    }
    events.on('deviceAdded', ({ deviceId }) => {
      this.#entries.set(deviceId, { createdAt: this.now(), rotations: 0, pendingSince: undefined, lastRejection: undefined, lastConnectedAt: undefined, connected: false, pending: false });
      whenReady(hub.store.getSummary(deviceId), (d) => {
        const entry = this.#entries.get(deviceId);
        if (entry === undefined || d === undefined) return;
        entry.createdAt = d.createdAt;
        entry.rotations = d.rotations;
        entry.pendingSince = d.pendingSince;
        entry.pending = d.pendingKeyId !== undefined;
      });
    });
    events.on('deviceRevoked', ({ deviceId }) => this.#entries.delete(deviceId));
    events.on('deviceDisconnected', ({ deviceId }) => {
      const entry = this.#entries.get(deviceId);
      if (entry !== undefined) entry.connected = false;
    });
    events.on('storageError', ({ deviceId }) => {
      // The core reloaded the device from the database: so does this entry.
      whenReady(hub.store.getSummary(deviceId), (d) => {
        const entry = this.#entries.get(deviceId);
        if (entry === undefined || d === undefined) return;
        entry.pending = d.pendingKeyId !== undefined;
        entry.pendingSince = d.pendingSince;
        entry.connected = hub.hasDevice(deviceId) && hub.deviceState(deviceId).connected;
      });
    });
    events.on('rotationStarted', ({ deviceId }) => {
      const entry = this.#entries.get(deviceId);
      if (entry === undefined) return;
      entry.pendingSince = this.now();
      entry.pending = true;
    });
    events.on('keyConfirmed', ({ deviceId }) => {
      const at = this.now();
      const entry = this.#entries.get(deviceId);
      if (entry !== undefined) {
        if (entry.pendingSince !== undefined && this.latencies.length < FleetTracker.MAX_LATENCIES) this.latencies.push(Math.max(0, at - entry.pendingSince) / 1000);
        entry.pendingSince = undefined;
        entry.pending = false;
        entry.rotations++;
      }
      const bucket = this.#bucket(at);
      bucket[0] = (bucket[0] as number) + 1;
    });
    events.on('deviceConnected', ({ deviceId }) => {
      const entry = this.#entries.get(deviceId);
      if (entry === undefined) return;
      entry.lastConnectedAt = this.now();
      entry.connected = true;
    });
    events.on('rekeyRefused', ({ deviceId, code }) => {
      // The device refused the offered key (e.g. REKEY_MODE_MISMATCH): as good a sign of trouble as a rejected frame.
      const entry = this.#entries.get(deviceId);
      if (entry !== undefined) entry.lastRejection = { code, at: this.now() };
    });
    events.on('rejected', ({ deviceId, code }) => {
      const entry = deviceId === undefined ? undefined : this.#entries.get(deviceId);
      if (entry !== undefined) entry.lastRejection = { code, at: this.now() };
    });
  }

  get(deviceId: string): FleetEntry | undefined {
    return this.#entries.get(deviceId);
  }

  /** Every device's entry, in provisioning order. */
  entries(): IterableIterator<[string, FleetEntry]> {
    return this.#entries.entries();
  }

  /** Rotations confirmed per bucket, oldest first, with each bucket's start time. */
  rate(): { bucketMs: number; buckets: { t: number; confirmed: number }[] } {
    this.#bucket(this.now());
    const out: { t: number; confirmed: number }[] = [];
    for (let i = RATE_BUCKETS - 1; i >= 0; i--) {
      const start = this.#bucketStart - i * RATE_BUCKET_MS;
      out.push({ t: start, confirmed: this.#buckets[(Math.floor(start / RATE_BUCKET_MS) % RATE_BUCKETS + RATE_BUCKETS) % RATE_BUCKETS] as number });
    }
    return { bucketMs: RATE_BUCKET_MS, buckets: out };
  }

  /** The current bucket (a one-element view), after clearing the buckets that elapsed. */
  #bucket(at: number): Float64Array {
    const start = Math.floor(at / RATE_BUCKET_MS) * RATE_BUCKET_MS;
    if (start > this.#bucketStart) {
      const elapsed = Math.min(RATE_BUCKETS, (start - this.#bucketStart) / RATE_BUCKET_MS);
      for (let i = 1; i <= elapsed; i++) {
        this.#buckets[((Math.floor(this.#bucketStart / RATE_BUCKET_MS) + i) % RATE_BUCKETS + RATE_BUCKETS) % RATE_BUCKETS] = 0;
      }
      this.#bucketStart = start;
    }
    const index = (Math.floor(this.#bucketStart / RATE_BUCKET_MS) % RATE_BUCKETS + RATE_BUCKETS) % RATE_BUCKETS;
    return this.#buckets.subarray(index, index + 1);
  }
}
