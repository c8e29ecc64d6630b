/**
 * The hub's timers against protocol 1.1's bounds (docs/PROTOCOL.md §8.4,
 * §10). Tests and demos run the hub with short timers on purpose, so a
 * timer outside the bounds is allowed, but `serve` says so: an idle timeout
 * under 45 s drops quiet devices that keep alive every 15 s, as the spec's
 * devices may.
 */
import type { HubTiming } from '../../modules/hub/hub';
import {
  HANDSHAKE_TIMEOUT_MAX_MS,
  HANDSHAKE_TIMEOUT_MIN_MS,
  IDLE_TIMEOUT_MIN_MS,
  REKEY_RETRY_MAX_MS,
  REKEY_RETRY_MIN_MS,
} from '../../modules/protocol/constants';

export interface TimingOutsideSpec {
  readonly requirement: 'H-TIMER-1' | 'H-TIMER-2' | 'H-RETRY-1' | 'H-RETRY-2';
  readonly setting: keyof HubTiming;
  readonly valueMs: number;
  readonly boundMs: number;
  readonly message: string;
}

/** Every configured timer outside the 1.1 bounds (unset timers take the core's defaults, which are inside). */
export function timingOutsideSpec(timing: Partial<HubTiming>): TimingOutsideSpec[] {
  const out: TimingOutsideSpec[] = [];
  const { idleTimeoutMs, handshakeTimeoutMs, rekeyRetryInitialMs, rekeyRetryMaxMs } = timing;
  if (idleTimeoutMs !== undefined && idleTimeoutMs < IDLE_TIMEOUT_MIN_MS) {
    out.push({ requirement: 'H-TIMER-1', setting: 'idleTimeoutMs', valueMs: idleTimeoutMs, boundMs: IDLE_TIMEOUT_MIN_MS, message: 'idle timeout under 45 s: a compliant device that keeps alive every 15 s may be dropped' });
  }
  if (handshakeTimeoutMs !== undefined && (handshakeTimeoutMs < HANDSHAKE_TIMEOUT_MIN_MS || handshakeTimeoutMs > HANDSHAKE_TIMEOUT_MAX_MS)) {
    const boundMs = handshakeTimeoutMs < HANDSHAKE_TIMEOUT_MIN_MS ? HANDSHAKE_TIMEOUT_MIN_MS : HANDSHAKE_TIMEOUT_MAX_MS;
    out.push({ requirement: 'H-TIMER-2', setting: 'handshakeTimeoutMs', valueMs: handshakeTimeoutMs, boundMs, message: 'handshake timeout outside 10…60 s' });
  }
  // Re-offer delays are drawn uniform in [d/2, d]: the first is at least half the initial delay.
  if (rekeyRetryInitialMs !== undefined && rekeyRetryInitialMs / 2 < REKEY_RETRY_MIN_MS) {
    out.push({ requirement: 'H-RETRY-2', setting: 'rekeyRetryInitialMs', valueMs: rekeyRetryInitialMs, boundMs: 2 * REKEY_RETRY_MIN_MS, message: 're-offers may come sooner than 1 s apart' });
  }
  if (rekeyRetryMaxMs !== undefined && rekeyRetryMaxMs > REKEY_RETRY_MAX_MS) {
    out.push({ requirement: 'H-RETRY-1', setting: 'rekeyRetryMaxMs', valueMs: rekeyRetryMaxMs, boundMs: REKEY_RETRY_MAX_MS, message: 're-offers may come more than 30 s apart' });
  }
  return out;
}
