/**
 * The hub host's recovery policy and limits (docs/PROTOCOL.md §12.7,
 * docs/HUB.md §14): what the hub answers a device that authenticated a
 * recovery (tag3 verified; the core emitted `recoveryRequest`).
 *
 * - `auto`: accept; `approve`: record the request and answer
 *   AWAITING_APPROVAL until an operator approves it (`hub recover <device>`,
 *   the HTTP API), then accept the next one; `off`: REFUSED.
 * - Per device: at most `perDeviceLimit` accepted recoveries per `windowMs`
 *   (default 3 per hour), counted in the database inside the transaction that
 *   decides (IMMEDIATE on SQLite, a row lock on PostgreSQL), so several hub
 *   instances share the count and two decisions can never both take the last
 *   slot. Only authenticated requests reach this point (rule R1): nothing an
 *   impostor sends is recorded or charged to the device.
 * - Per source, before authentication: a token bucket per source address in
 *   bounded memory (SourceBuckets below); an empty bucket makes the hub
 *   close a failing HELLO as in 1.0 (no NO_KEY), so a flood of forged
 *   RECOVER_INITs costs the hub at most `burst` pairs of X25519 per source
 *   and then `perMinute` a minute.
 *
 * `decide` is the pure rule both backends apply to what their transaction read.
 */
import { MAX_KEY_ID, RecoveryStatus } from '../../modules/protocol/constants';

export type RecoveryMode = 'auto' | 'approve' | 'off';

export const RECOVERY_MODES: readonly RecoveryMode[] = ['auto', 'approve', 'off'];

export interface RecoveryPolicy {
  readonly mode: RecoveryMode;
  /** Accepted recoveries per device per window (§12.7: 3 per hour). */
  readonly perDeviceLimit: number;
  readonly windowMs: number;
  /** How long an operator's approval stays usable (default 24 h). */
  readonly approvalValidityMs: number;
  /** "Retry after" for AWAITING_APPROVAL (the device asks again then; default 60 s). */
  readonly approvalRetryMs: number;
  /** "Retry after" for REFUSED (default 1 h, the device's cap). */
  readonly refusedRetryMs: number;
  /** Per source address, before authentication. */
  readonly perSource: { readonly burst: number; readonly perMinute: number; readonly maxSources: number };
}

export const DEFAULT_RECOVERY_POLICY: RecoveryPolicy = {
  mode: 'auto',
  perDeviceLimit: 3,
  windowMs: 3_600_000,
  approvalValidityMs: 24 * 3_600_000,
  approvalRetryMs: 60_000,
  refusedRetryMs: 3_600_000,
  perSource: { burst: 10, perMinute: 10, maxSources: 4096 },
};

/** Status names for logs, the audit trail, metrics and the API. */
export const RECOVERY_STATUS_NAMES: Readonly<Record<RecoveryStatus, string>> = {
  [RecoveryStatus.ACCEPTED]: 'accepted',
  [RecoveryStatus.IN_SYNC]: 'inSync',
  [RecoveryStatus.AWAITING_APPROVAL]: 'awaitingApproval',
  [RecoveryStatus.REFUSED]: 'refused',
  [RecoveryStatus.RATE_LIMITED]: 'rateLimited',
  [RecoveryStatus.KEY_IDS_EXHAUSTED]: 'keyIdsExhausted',
};

/** An authenticated request, as the core reports it. */
export interface RecoveryRequestInput {
  readonly deviceId: string;
  readonly newKeyId: number;
  readonly claimedActive: number;
  readonly claimedFuture: number;
}

/** What the deciding transaction read about the device. */
export interface RecoveryFacts {
  readonly revoked: boolean;
  /** Times of the accepted recoveries within the window, oldest first. */
  readonly acceptedInWindow: readonly number[];
  /** When an operator approved this device's request, if they did. */
  readonly approvedAt: number | undefined;
}

export interface RecoveryDecision {
  readonly status: RecoveryStatus;
  readonly retryAfterSeconds: number;
  /** Why, in one word (audit detail). */
  readonly reason: string;
  /** Count it against the device's limit (ACCEPTED only). */
  readonly charge: boolean;
  /** Record (or refresh) the pending request (approve mode). */
  readonly record: boolean;
  /** Delete the request row (its approval is used, or no longer needed). */
  readonly clearRequest: boolean;
}

const seconds = (ms: number): number => Math.min(0xffff_ffff, Math.max(1, Math.ceil(ms / 1000)));

export function decide(policy: RecoveryPolicy, request: RecoveryRequestInput, facts: RecoveryFacts, now: number): RecoveryDecision {
  const base = { charge: false, record: false, clearRequest: false };
  if (facts.revoked) return { ...base, status: RecoveryStatus.REFUSED, retryAfterSeconds: seconds(policy.refusedRetryMs), reason: 'revoked', clearRequest: true };
  if (policy.mode === 'off') return { ...base, status: RecoveryStatus.REFUSED, retryAfterSeconds: seconds(policy.refusedRetryMs), reason: 'off' };
  if (!Number.isInteger(request.newKeyId) || request.newKeyId > MAX_KEY_ID || request.newKeyId < 1) {
    return { ...base, status: RecoveryStatus.KEY_IDS_EXHAUSTED, retryAfterSeconds: seconds(policy.refusedRetryMs), reason: 'keyIdsExhausted' };
  }
  const inWindow = facts.acceptedInWindow.filter((at) => at > now - policy.windowMs);
  if (inWindow.length >= policy.perDeviceLimit) {
    // The oldest accepted recovery in the window leaves it first.
    const oldest = inWindow[inWindow.length - policy.perDeviceLimit] as number;
    return { ...base, status: RecoveryStatus.RATE_LIMITED, retryAfterSeconds: seconds(oldest + policy.windowMs - now), reason: 'perDeviceLimit' };
  }
  if (policy.mode === 'approve') {
    const approved = facts.approvedAt !== undefined && now - facts.approvedAt <= policy.approvalValidityMs;
    if (!approved) return { ...base, status: RecoveryStatus.AWAITING_APPROVAL, retryAfterSeconds: seconds(policy.approvalRetryMs), reason: facts.approvedAt === undefined ? 'awaitingApproval' : 'approvalExpired', record: true };
    return { ...base, status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0, reason: 'approved', charge: true, clearRequest: true };
  }
  return { ...base, status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0, reason: 'auto', charge: true, clearRequest: true };
}

/** A request awaiting (or holding) an operator's approval. */
export interface RecoveryRequestRow {
  readonly deviceId: string;
  readonly firstAt: number;
  readonly lastAt: number;
  readonly attempts: number;
  readonly newKeyId: number;
  readonly claimedActive: number;
  readonly claimedFuture: number;
  readonly approvedAt: number | undefined;
  readonly approvedBy: string | undefined;
}

/** An accepted recovery (the per-device count, the dashboard's recent list). */
export interface RecoveryRecord {
  readonly seq: number;
  readonly deviceId: string;
  readonly at: number;
  readonly newKeyId: number;
}

/**
 * Token buckets per source address, in bounded memory: at most `maxSources`
 * entries; when full, the least recently used source is forgotten (it starts
 * again with a full bucket, so eviction can only be generous, and an
 * attacker with many addresses is limited by the connection caps of
 * docs/HUB.md §5 instead).
 */
export class SourceBuckets {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  /** Charges refused (an empty bucket) since start (metrics). */
  limited = 0;

  constructor(private readonly limits: RecoveryPolicy['perSource']) {}

  get size(): number {
    return this.#buckets.size;
  }

  #refill(source: string, now: number): { tokens: number; at: number } {
    const bucket = this.#buckets.get(source);
    const { burst, perMinute, maxSources } = this.limits;
    if (bucket === undefined) {
      if (this.#buckets.size >= maxSources) {
        const oldest = this.#buckets.keys().next().value as string;
        this.#buckets.delete(oldest);
      }
      const fresh = { tokens: burst, at: now };
      this.#buckets.set(source, fresh);
      return fresh;
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * perMinute) / 60_000);
    bucket.at = now;
    this.#buckets.delete(source); // most recently used last
    this.#buckets.set(source, bucket);
    return bucket;
  }

  /** Whether a recovery may start for this source now (HubCore.opened's recoveryAllowed); does not charge. */
  allows(source: string, now: number): boolean {
    const allowed = this.#refill(source, now).tokens >= 1;
    if (!allowed) this.limited++;
    return allowed;
  }

  /** An unauthenticated recovery step cost the hub (a NO_KEY answered, a RECOVER_INIT checked and failed). */
  charge(source: string, now: number): void {
    const bucket = this.#refill(source, now);
    bucket.tokens = Math.max(0, bucket.tokens - 1);
  }
}

/** The config file's `"recovery"` section (docs/HUB.md §14.1), checked field by field. */
export function parseRecoveryConfig(where: string, value: unknown, durationOf: (key: string, value: unknown) => number): Partial<RecoveryPolicy> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: recovery must be an object`);
  const raw = value as Record<string, unknown>;
  const known = new Set(['policy', 'perDevice', 'window', 'approvalValidity', 'approvalRetry', 'perSource']);
  for (const key of Object.keys(raw)) if (!known.has(key)) throw new Error(`${where}: unknown recovery key "${key}"`);
  const out: { -readonly [K in keyof RecoveryPolicy]?: RecoveryPolicy[K] } = {};
  if (raw.policy !== undefined) {
    if (!RECOVERY_MODES.includes(raw.policy as RecoveryMode)) throw new Error(`${where}: recovery.policy must be auto, approve or off`);
    out.mode = raw.policy as RecoveryMode;
  }
  if (raw.perDevice !== undefined) out.perDeviceLimit = count(where, 'recovery.perDevice', raw.perDevice, 1, 1000);
  if (raw.window !== undefined) out.windowMs = durationOf('recovery.window', raw.window);
  if (raw.approvalValidity !== undefined) out.approvalValidityMs = durationOf('recovery.approvalValidity', raw.approvalValidity);
  if (raw.approvalRetry !== undefined) out.approvalRetryMs = durationOf('recovery.approvalRetry', raw.approvalRetry);
  if (raw.perSource !== undefined) {
    if (typeof raw.perSource !== 'object' || raw.perSource === null) throw new Error(`${where}: recovery.perSource must be an object`);
    const s = raw.perSource as Record<string, unknown>;
    for (const key of Object.keys(s)) if (!['burst', 'perMinute', 'maxSources'].includes(key)) throw new Error(`${where}: unknown recovery.perSource key "${key}"`);
    out.perSource = {
      burst: s.burst === undefined ? DEFAULT_RECOVERY_POLICY.perSource.burst : count(where, 'recovery.perSource.burst', s.burst, 1, 10_000),
      perMinute: s.perMinute === undefined ? DEFAULT_RECOVERY_POLICY.perSource.perMinute : count(where, 'recovery.perSource.perMinute', s.perMinute, 1, 100_000),
      maxSources: s.maxSources === undefined ? DEFAULT_RECOVERY_POLICY.perSource.maxSources : count(where, 'recovery.perSource.maxSources', s.maxSources, 1, 1_000_000),
    };
  }
  if (out.windowMs !== undefined && out.windowMs < 1000) throw new Error(`${where}: recovery.window must be at least 1s`);
  return out;
}

function count(where: string, key: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new Error(`${where}: ${key} must be an integer in ${min}..${max}`);
  return value;
}

export function recoveryPolicy(partial: Partial<RecoveryPolicy> | undefined): RecoveryPolicy {
  return { ...DEFAULT_RECOVERY_POLICY, ...partial, perSource: { ...DEFAULT_RECOVERY_POLICY.perSource, ...partial?.perSource } };
}
