/**
 * Two hub instances sharing one database in the deterministic simulation
 * (docs/VERIFICATION.md §5a): two real HubCores, each with its own cache,
 * behind the lease gate and the fenced writes of the PostgreSQL tier
 * (tools/hub/postgres), with the device's connections going to either
 * instance, instances paused (SIGSTOP) and crashed on their own.
 * - every single fault point at a boundary of the 3-rotation scenario (the
 *   cuts inside frames and flash programs are the device's, run against one
 *   hub in tests/verify-exhaustive), and every boundary fault after a pause
 *   of an instance or the switch to the other one (a sixteenth of them): no violation;
 * - random mode with both instances: no violation;
 * - the variant without the fence is refuted (a paused instance's stale
 *   write lands in the shared row);
 * - finding F3 (fixed): a device that returns to an instance after another
 *   one does not get that instance's message again (and, with one remembered
 *   sender stream, it would).
 * `npm run verify` runs the pairs of every instance fault and a longer random run.
 */
import { AppChannel, PEER_STREAMS } from '../modules/session/app-channel';
import { OUTBOX_MESSAGES } from '../modules/protocol/constants';
import { exploreExhaustively, runSchedule } from '../tools/verify/exhaustive';
import { faultPoints } from '../tools/verify/points';
import { runRandom } from '../tools/verify/random-mode';
import { printRefutation, refuteVariant } from '../tools/verify/refute';
import { printExhaustive, printRandom } from '../tools/verify/report';
import { INSTANCE_VARIANTS } from '../tools/verify/variants';

const describeFailures = (failures: readonly { violation: { invariant: string; detail: string }; schedule: { points: readonly { label: string }[] } }[]) =>
  failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`);

test('two instances: every boundary fault point, and boundary faults after a pause (shard 1 of 16): no violation', () => {
  const report = exploreExhaustively({
    rounds: 3,
    seed: 1,
    instances: 2,
    singles: 'boundaries',
    pairs: 'boundaries',
    firstKinds: ['instance paused', 'connect to another instance'],
    shard: { index: 0, of: 16 },
  });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`exhaustive, two hub instances (CI):\n${lines.join('\n')}`);
  expect(describeFailures(report.failures)).toEqual([]);
  expect(report.singles.points).toBeGreaterThan(300);
  expect(report.singles.byKind['instance paused']).toBeGreaterThan(50);
  expect(report.singles.byKind['connect to another instance']).toBeGreaterThanOrEqual(1);
  expect(report.singles.byKind['hub crash']).toBeGreaterThan(20);
  expect(report.pairs.schedules).toBeGreaterThan(500);
  expect(report.faults.get('instance paused')).toBeGreaterThan(500);
}, 240_000);

test('two instances, random mode: 20,000 steps, no violation', () => {
  const report = runRandom({ steps: 20_000, seed: 1, instances: 2 });
  const lines: string[] = [];
  printRandom(report, 1, (line) => lines.push(line));
  console.log(`random, two hub instances (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (seed ${f.seed})`)).toEqual([]);
  expect(report.faults.get('instance paused')).toBeGreaterThan(10);
  expect(report.faults.get('connect to another instance')).toBeGreaterThan(10);
}, 120_000);

test('instances-write-without-fence is refuted: the paused instance commits its stale write', () => {
  const variant = INSTANCE_VARIANTS.find((v) => v.name === 'instances-write-without-fence')!;
  const refutation = refuteVariant(variant, { rounds: 3, seed: 1, randomSteps: 50_000, divergence: false });
  const lines: string[] = [];
  printRefutation(refutation, (line) => lines.push(line));
  console.log(lines.join('\n'));
  expect(refutation.refuted).toBe(true);
  const failure = refutation.exhaustive.failure!;
  expect(failure.violation.invariant).toMatch(/^S[345] /);
  expect(failure.schedule.points.some((p) => p.kind === 'instance paused')).toBe(true);
  // The same schedule with the fence: the stale write is fenced out and nothing is violated.
  const fenced = runSchedule(failure.schedule, { instances: 2 });
  expect(fenced.world.violations).toEqual([]);
  expect(fenced.world.db.fencedOut).toBeGreaterThan(0);
}, 180_000);

test('F3 (fixed): a device that returns to an instance does not get again a message it delivered from it', () => {
  const base = runSchedule({ seed: 1, rounds: 3, points: [] }, { instances: 2, profile: true });
  const first = faultPoints(base.world.profiles, 0, 2).find((p) => p.label === 'step 3: up HELLO delayed 46000 ms')!;
  const one = runSchedule({ seed: 1, rounds: 3, points: [first] }, { instances: 2, profile: true });
  const second = faultPoints(one.world.profiles, first.step, 2).find((p) => p.label === 'step 34: up DATA delayed 46000 ms')!;
  const schedule = { seed: 1, rounds: 3, points: [first, second] };
  // Held to the one-hub promise: instance 0's first message, delivered before the device moved to instance 1, is not delivered
  // again when it returns — the device remembers the last id of each of the PEER_STREAMS most recent sender streams.
  const strict = runSchedule(schedule, { instances: 2, strictDeviceLedger: true });
  expect(strict.world.violations).toEqual([]);
  expect(runSchedule(schedule, { instances: 2 }).world.violations).toEqual([]);
});

test('F3: with one remembered sender stream (the channel before the fix) the A, B, A sequence delivers twice', () => {
  const streamA = Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1);
  const streamB = Uint8Array.of(2, 2, 2, 2, 2, 2, 2, 2);
  const sequence = (channel: AppChannel) => [channel.receive(streamA, 1).deliver, channel.receive(streamB, 1).deliver, channel.receive(streamA, 1).deliver];
  expect(sequence(new AppChannel(new Uint8Array(8), OUTBOX_MESSAGES, 1))).toEqual([true, true, true]);
  expect(sequence(new AppChannel(new Uint8Array(8)))).toEqual([true, true, false]);
  // Bounded: past PEER_STREAMS other streams the oldest is forgotten.
  const channel = new AppChannel(new Uint8Array(8));
  channel.receive(streamA, 5);
  for (let i = 0; i < PEER_STREAMS; i++) channel.receive(Uint8Array.of(9, 9, 9, 9, 9, 9, 9, i), 1);
  expect(channel.receive(streamA, 5).deliver).toBe(true);
});
