/**
 * When to rotate which device: after `intervalMs` (plus a random jitter of
 * up to `jitterMs`, so a fleet provisioned together does not rotate in
 * lockstep) since its active key was confirmed, or after `maxMessages`
 * application messages under the active key, whichever comes first.
 *
 * Every duration here is a number of milliseconds, as the names say; a
 * string ("1h") or a negative or fractional number is refused.
 *
 * Times are wall-clock milliseconds (the schedule continues across hub
 * restarts from the database's `active_since`). The message count lives in
 * memory only: a restarted hub counts from zero again.
 */
import { checkMilliseconds } from './duration';

export interface RotationPolicy {
  /** 0 disables time-based rotation. */
  readonly intervalMs: number;
  readonly jitterMs: number;
  /** 0 disables count-based rotation. */
  readonly maxMessages: number;
  /** At most this many rotations are started per scheduler pass (a thundering-herd guard). */
  readonly maxStartsPerPass: number;
}

export const DEFAULT_ROTATION_POLICY: RotationPolicy = { intervalMs: 0, jitterMs: 0, maxMessages: 0, maxStartsPerPass: 500 };

interface Schedule {
  activeSince: number;
  /** This cycle's share of the jitter, in [0, 1). */
  jitter: number;
  messages: number;
}

export class RotationScheduler {
  #policy: RotationPolicy;
  readonly #schedules = new Map<string, Schedule>();
  readonly #random: () => number;

  constructor(policy: Partial<RotationPolicy> = {}, random: () => number = Math.random) {
    this.#policy = checkPolicy({ ...DEFAULT_ROTATION_POLICY, ...policy });
    this.#random = random;
  }

  get policy(): RotationPolicy {
    return this.#policy;
  }

  /** Changes the policy for every device (0 intervals disable); takes effect at the next pass. */
  setPolicy(policy: Partial<RotationPolicy>): void {
    this.#policy = checkPolicy({ ...this.#policy, ...policy });
  }

  /** A device's active key was confirmed (or loaded) at `activeSince`. */
  keyActivated(deviceId: string, activeSince: number): void {
    this.#schedules.set(deviceId, { activeSince, jitter: this.#random(), messages: 0 });
  }

  messageCounted(deviceId: string): void {
    const schedule = this.#schedules.get(deviceId);
    if (schedule !== undefined) schedule.messages++;
  }

  forget(deviceId: string): void {
    this.#schedules.delete(deviceId);
  }

  /**
   * Devices due now among `candidates` (the devices online: a pass costs the
   * devices connected, not every device known) that are `eligible` (no
   * pending key, no persist outstanding). Nothing to walk with both triggers off.
   */
  due(now: number, candidates: Iterable<string>, eligible: (deviceId: string) => boolean): string[] {
    const out: string[] = [];
    const { intervalMs, jitterMs, maxMessages, maxStartsPerPass } = this.#policy;
    if (intervalMs === 0 && maxMessages === 0) return out;
    for (const deviceId of candidates) {
      if (out.length >= maxStartsPerPass) break;
      const schedule = this.#schedules.get(deviceId);
      if (schedule === undefined) continue;
      const byTime = intervalMs > 0 && now >= schedule.activeSince + intervalMs + Math.floor(schedule.jitter * jitterMs);
      const byCount = maxMessages > 0 && schedule.messages >= maxMessages;
      if ((byTime || byCount) && eligible(deviceId)) out.push(deviceId);
    }
    return out;
  }
}

function checkPolicy(policy: RotationPolicy): RotationPolicy {
  checkMilliseconds('rotation.intervalMs', policy.intervalMs);
  checkMilliseconds('rotation.jitterMs', policy.jitterMs);
  for (const name of ['maxMessages', 'maxStartsPerPass'] as const) {
    const value = policy[name];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Error(`rotation.${name} must be a non-negative integer`);
  }
  return policy;
}
