/**
 * The load benchmark checks its limits up front (tools/bench/limits.ts):
 * a device count past the open-file limit or the source ports of one
 * address stops it with a message that says why, instead of an uncaught
 * EMFILE in the swarm and "0 / 40000 connected".
 */
import { checkLoadLimits, readLimits } from '../tools/bench/limits';

test('40,000 devices do not fit 20,000 open files and 28,232 ports: a clear message', () => {
  const message = checkLoadLimits(40_000, 'LOCKSTEP_BENCH_DEVICES', { openFiles: 20_000, ephemeralPorts: 28_232 });
  expect(message).toMatch(/LOCKSTEP_BENCH_DEVICES=40000 does not fit/);
  expect(message).toMatch(/limit here is 20,000 per process/);
  expect(message).toMatch(/28,232 ports/);
  expect(message).toMatch(/at most 19,800 devices/);
});

test('10,000 devices fit; the limits are read from this machine', () => {
  expect(checkLoadLimits(10_000, 'LOCKSTEP_BENCH_DEVICES', { openFiles: 20_000, ephemeralPorts: 28_232 })).toBeUndefined();
  const limits = readLimits();
  expect(limits.openFiles).toBeGreaterThan(0);
  expect(limits.ephemeralPorts).toBeGreaterThan(0);
});
