/**
 * 50 devices × 20 rotations against the hub over real loopback sockets,
 * TCP and TLS, with connections cut at random byte positions: every device
 * ends in sync, and every application message (both directions) is
 * delivered exactly once (no process crashes here, so exactly-once is the
 * guarantee; docs/HUB.md).
 */
import { Harness } from '../tools/demo/harness';

const DEVICES = 50;
const ROTATIONS = 20;

describe.each([
  ['TCP', false],
  ['TLS', true],
])('%s with random connection cuts', (_name, tls) => {
  test(`${DEVICES} devices × ${ROTATIONS} rotations`, async () => {
    const harness = await Harness.start({
      devices: DEVICES,
      tls,
      rotateEveryMs: 100,
      chaos: { cutProbability: 0.9, cutMaxBytes: 2500, powerCutProbability: 0 },
      telemetryEveryMs: 250,
      commandEveryMs: 300,
    });
    try {
      await harness.waitUntil(() => harness.minRotations() >= ROTATIONS, 90_000, `${ROTATIONS} rotations on every device`);
      await harness.settle();
      harness.check();
      expect(harness.problems).toEqual([]);
      const cuts = harness.devices.reduce((n, d) => n + d.cuts, 0);
      expect(cuts).toBeGreaterThan(3 * DEVICES);
      console.log(`${_name}: cuts ${cuts}, rotations ${[...harness.confirmed.values()].reduce((a, b) => a + b, 0)}, up ${JSON.stringify(harness.ledger.counts("up"))}, down ${JSON.stringify(harness.ledger.counts("down"))}, checks ${harness.checks}`);
      for (const direction of ['up', 'down'] as const) {
        const verdict = harness.ledger.verdict(direction);
        expect(verdict.violations).toEqual([]);
        expect(verdict.sent).toBeGreaterThan(DEVICES);
        expect(verdict.delivered).toBe(verdict.sent);
        expect(verdict.redeliveredAfterCrash + verdict.droppedBySenderCrash).toBe(0);
      }
      for (const device of harness.devices) {
        expect(device.host.keys.active.id).toBe(harness.hub.deviceState(device.deviceId).activeKeyId);
        expect(device.host.keys.active.id).toBeGreaterThanOrEqual(1 + ROTATIONS);
      }
    } finally {
      await harness.close();
    }
  });
});
