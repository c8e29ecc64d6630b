// The hub's timers against protocol 1.1's bounds (docs/PROTOCOL.md §8.4, §10): `serve` warns for each
// timer outside them (docs/HUB.md §2, event timingOutsideSpec).
import { timingOutsideSpec } from '../tools/hub/spec-bounds';
import { HANDSHAKE_TIMEOUT_MS, IDLE_TIMEOUT_MS, REKEY_RETRY_INITIAL_MS, REKEY_RETRY_MAX_MS } from '../modules/protocol/constants';

test('the defaults and the bounds themselves are inside', () => {
  expect(timingOutsideSpec({})).toEqual([]);
  expect(timingOutsideSpec({ idleTimeoutMs: IDLE_TIMEOUT_MS, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, rekeyRetryInitialMs: REKEY_RETRY_INITIAL_MS, rekeyRetryMaxMs: REKEY_RETRY_MAX_MS })).toEqual([]);
  expect(timingOutsideSpec({ idleTimeoutMs: 45_000, handshakeTimeoutMs: 60_000, rekeyRetryInitialMs: 2_000, rekeyRetryMaxMs: 30_000 })).toEqual([]);
  expect(timingOutsideSpec({ handshakeTimeoutMs: 10_000 })).toEqual([]);
});

test.each([
  [{ idleTimeoutMs: 10_000 }, 'H-TIMER-1', 45_000],
  [{ idleTimeoutMs: 44_999 }, 'H-TIMER-1', 45_000],
  [{ handshakeTimeoutMs: 9_999 }, 'H-TIMER-2', 10_000],
  [{ handshakeTimeoutMs: 60_001 }, 'H-TIMER-2', 60_000],
  [{ rekeyRetryInitialMs: 1_500 }, 'H-RETRY-2', 2_000],
  [{ rekeyRetryMaxMs: 31_000 }, 'H-RETRY-1', 30_000],
])('%j is outside: %s', (timing, requirement, boundMs) => {
  const [outside, ...more] = timingOutsideSpec(timing);
  expect(more).toEqual([]);
  expect(outside).toMatchObject({ requirement, boundMs, valueMs: Object.values(timing)[0] });
});
