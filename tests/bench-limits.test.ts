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

// ---- The fleet benchmark's plan (tools/bench/fleet-plan.ts): which instance, swarm and source address ----

import { assign, overLimits, planFleet, tally, type FleetPlan } from '../tools/bench/fleet-plan';

const HERE = { openFiles: 20_000, ephemeralPorts: 28_232 };

test('100,000 devices: 7 instances and 7 swarms by default, every process and source address within its limit', () => {
  const plan = planFleet({ devices: 100_000 }, HERE) as FleetPlan;
  expect(typeof plan).toBe('object');
  expect(plan).toMatchObject({ instances: 7, swarms: 7, addressesPerPair: 1, perInstance: 14_286, processCapacity: 17_820, sourceCapacity: 25_408 });
  const counts = tally(plan);
  expect(counts.instances.reduce((a, b) => a + b, 0)).toBe(100_000);
  expect(Math.max(...counts.instances) - Math.min(...counts.instances)).toBeLessThanOrEqual(1);
  expect(Math.max(...counts.swarms) - Math.min(...counts.swarms)).toBeLessThanOrEqual(plan.instances); // (devices go to swarms in blocks of k)
  expect(counts.sources.size).toBe(49);
  expect(overLimits(plan, counts)).toEqual([]);
  // Deterministic: device 0 → instance 0 from swarm 0's 127.1.1.1; device 8 → instance 1 from swarm 1.
  expect(assign(plan, 0)).toEqual({ instance: 0, swarm: 0, source: '127.1.1.1' });
  expect(assign(plan, 8)).toEqual({ instance: 1, swarm: 1, source: '127.1.2.2' });
  // Each source address talks to one instance only.
  const destinations = new Map<string, Set<number>>();
  for (let i = 0; i < 5_000; i++) {
    const a = assign(plan, i);
    destinations.set(a.source, (destinations.get(a.source) ?? new Set()).add(a.instance));
  }
  for (const set of destinations.values()) expect(set.size).toBe(1);
});

test('broken variant: every device from 127.0.0.1 puts 100,000 connections on one address, which the check refuses', () => {
  const plan = planFleet({ devices: 100_000 }, HERE) as FleetPlan;
  const oneAddress = (p: FleetPlan, i: number) => ({ ...assign(p, i), source: '127.0.0.1' });
  expect(overLimits(plan, tally(plan, oneAddress))).toEqual(['source 127.0.0.1: 100000 connections > 25408 ports']);
  const oneInstance = (p: FleetPlan, i: number) => ({ ...assign(p, i), instance: 0 });
  expect(overLimits(plan, tally(plan, oneInstance))[0]).toMatch(/^instance 0: 100000 connections > 17820/);
});

test('too few instances or swarms for N stop with the minimum; few ports spread a pair over several addresses', () => {
  expect(planFleet({ devices: 100_000, instances: 5 }, HERE)).toMatch(
    /LOCKSTEP_BENCH_FLEET_DEVICES=100000 does not fit this machine: 5 hub instances \(LOCKSTEP_BENCH_FLEET_INSTANCES\) would hold 20,000 connections each, and one process holds at most 17,820 here .*at least 6 hub instances/,
  );
  expect(planFleet({ devices: 100_000, swarms: 2 }, HERE)).toMatch(/2 swarm processes .* at least 6 swarm processes/);
  expect(planFleet({ devices: 0 }, HERE)).toMatch(/positive whole number/);
  expect(planFleet({ devices: 100_000, instances: 6 }, HERE)).toMatchObject({ instances: 6, swarms: 6 });
  // 1,000 ports per address: a (swarm, instance) pair of 2,778 devices needs 4 addresses.
  const tight = planFleet({ devices: 100_000, instances: 6 }, { openFiles: 20_000, ephemeralPorts: 1_000 }) as FleetPlan;
  expect(tight.addressesPerPair).toBe(4);
  expect(overLimits(tight, tally(tight))).toEqual([]);
  // Small fleets fit one of each.
  expect(planFleet({ devices: 10_000 }, HERE)).toMatchObject({ instances: 1, swarms: 1, perSource: 10_000 });
});
