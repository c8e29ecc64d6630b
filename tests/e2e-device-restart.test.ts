/**
 * Devices restart from their flash image in the middle of rotations: power
 * is cut inside keystore writes (a torn program or erase on the file image,
 * hosts/node/cuttable-flash.ts) and between them; each device reboots by
 * mounting its keystore again. Every device stays in sync throughout and
 * ends in sync; application data obeys the ledger rules.
 */
import { Harness } from '../tools/demo/harness';

test('20 devices, power cuts mid flash write and between writes, during rotations', async () => {
  const harness = await Harness.start({
    devices: 20,
    fileFlash: true,
    rotateEveryMs: 150,
    chaos: { cutProbability: 0.3, cutMaxBytes: 4000, powerCutProbability: 0.3 },
    telemetryEveryMs: 200,
    commandEveryMs: 300,
  });
  const cycler = setInterval(() => {
    const device = harness.devices[Math.floor(Math.random() * harness.devices.length)];
    device?.host.powerCycle();
  }, 150);
  try {
    await harness.waitUntil(() => harness.minRotations() >= 10, 60_000, '10 rotations on every device');
    clearInterval(cycler);
    await harness.settle();
    harness.check();
    expect(harness.problems).toEqual([]);
    const tornWrites = harness.devices.reduce((n, d) => n + d.flash.cuts, 0);
    const reboots = harness.devices.reduce((n, d) => n + d.host.counters.reboots, 0);
    console.log(`torn flash writes ${tornWrites}, reboots ${reboots}, sync checks ${harness.checks}`);
    expect(tornWrites).toBeGreaterThan(20);
    expect(reboots).toBeGreaterThan(tornWrites);
    for (const direction of ['up', 'down'] as const) {
      const verdict = harness.ledger.verdict(direction);
      expect(verdict.violations).toEqual([]);
      expect(verdict.delivered + verdict.droppedBySenderCrash).toBe(verdict.sent);
    }
    // The hub never crashed: nothing it sent may be lost, and it never delivers twice.
    expect(harness.ledger.verdict('down').droppedBySenderCrash).toBe(0);
    expect(harness.ledger.verdict('up').redeliveredAfterCrash).toBe(0);
  } finally {
    clearInterval(cycler);
    await harness.close();
  }
});
