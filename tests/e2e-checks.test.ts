/**
 * The checkers of the end-to-end runs have teeth: the ledger flags every
 * loss and duplicate the rules do not allow, the sync check flags every
 * state a device cannot recover from, and a hub that reports a commit it
 * never made is caught by the live check against its database.
 */
import { Ledger } from '../tools/demo/ledger';
import { Harness } from '../tools/demo/harness';
import { settled, syncProblem } from '../tools/demo/sync-check';

const slot = (id: number, fill = id) => ({ id, key: new Uint8Array(64).fill(fill) });

describe('ledger', () => {
  test('exactly once without crashes', () => {
    const ledger = new Ledger();
    ledger.setEpoch('hub', 0);
    ledger.setEpoch('d1', 0);
    ledger.sent('up', 'd1', '1', 0);
    ledger.delivered('up', 'd1', '1', 0);
    ledger.delivered('down', 'd1', 'a', 0); // booked before its send (logs arrive out of order)
    ledger.sent('down', 'd1', 'a', 0);
    ledger.sent('down', 'd1', 'b', 0);
    ledger.cancelled('down', 'd1', 'b');
    expect(ledger.verdict()).toMatchObject({ sent: 2, delivered: 2, violations: [] });
  });

  test('a duplicate within one receiver run, a loss without a sender crash, an unknown message: violations', () => {
    const ledger = new Ledger();
    ledger.setEpoch('hub', 0);
    ledger.setEpoch('d1', 0);
    ledger.sent('up', 'd1', '1', 0);
    ledger.delivered('up', 'd1', '1', 0);
    ledger.delivered('up', 'd1', '1', 0);
    ledger.sent('up', 'd1', '2', 0);
    ledger.delivered('down', 'd1', 'never-sent', 0);
    const verdict = ledger.verdict();
    expect(verdict).toMatchObject({ duplicates: 1, lost: 1, unknown: 1 });
    expect(verdict.violations).toHaveLength(3);
  });

  test('allowed: redelivery in another receiver run, a drop when the sender crashed', () => {
    const ledger = new Ledger();
    ledger.setEpoch('hub', 0);
    ledger.setEpoch('d1', 0);
    ledger.sent('up', 'd1', '1', 0);
    ledger.delivered('up', 'd1', '1', 0);
    ledger.delivered('up', 'd1', '1', 1); // the hub restarted
    ledger.sent('up', 'd1', '2', 0);
    ledger.setEpoch('d1', 1); // the device lost power with message 2 unacknowledged
    ledger.sent('down', 'd1', 'x', 0);
    ledger.setEpoch('hub', 1); // the hub crashed with x unacknowledged
    expect(ledger.verdict()).toMatchObject({ redeliveredAfterCrash: 1, droppedBySenderCrash: 2, violations: [] });
    expect(ledger.inFlight()).toBe(0);
  });
});

describe('sync check', () => {
  test('reachable states pass; unreachable ones are named', () => {
    expect(syncProblem({ mode: 'classic', active: slot(1) }, { active: slot(1) })).toBeUndefined();
    expect(syncProblem({ mode: 'classic', active: slot(1) }, { active: slot(1), pending: slot(2) })).toBeUndefined();
    expect(syncProblem({ mode: 'classic', active: slot(1), future: slot(2) }, { active: slot(1), pending: slot(2) })).toBeUndefined();
    expect(syncProblem({ mode: 'classic', active: slot(1), future: slot(2) }, { active: slot(2) })).toBeUndefined();
    expect(syncProblem({ mode: 'classic', active: slot(1), future: slot(2) }, { active: slot(1) })).toMatch(/device seals with key 2/);
    expect(syncProblem({ mode: 'classic', active: slot(2) }, { active: slot(1), pending: slot(2) })).toMatch(/hub seals with key 1/);
    expect(syncProblem({ mode: 'classic', active: slot(1), future: slot(2, 9) }, { active: slot(1), pending: slot(2) })).toMatch(/names different keys/);
    expect(settled({ mode: 'classic', active: slot(3) }, { active: slot(3) })).toBe(true);
    expect(settled({ mode: 'classic', active: slot(3) }, { active: slot(3), pending: slot(4) })).toBe(false);
  });

  test('a hub that calls persisted() for a commit it never made is caught against its database', async () => {
    const harness = await Harness.start({ devices: 3, rotateEveryMs: 100 });
    try {
      await harness.waitUntil(() => harness.minRotations() >= 1, 10_000, 'rotations');
      expect(harness.problems).toEqual([]);
      // Sabotage: report every commit as done without writing anything.
      harness.hub.store.commit = (ops) => ops.map(() => true);
      await harness.waitUntil(() => harness.problems.length > 0, 10_000, 'the check to notice');
      expect(harness.problems[0]).toMatch(/device seals with key|hub seals with key/);
    } finally {
      await harness.close();
    }
  });
});
