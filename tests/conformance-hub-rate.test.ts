/**
 * A hub with a small but compliant per-source recovery limit (H-RATE-2):
 * the reference hub with a bucket of 3 NO_KEYs refilled at 2 a second. The
 * negative vectors spend the bucket before the recovery starts; the kit must
 * not blame the recovery for it (H-REC-1/3/5): it sees the hub close HELLOs
 * without NO_KEY after earlier NO_KEYs, waits quietly, and tries once more —
 * then judges (pass). With a bucket that does not refill within the wait,
 * (a bucket of 1, spent by the first NO_KEY) the recovery is "rate limited,
 * not judged" (n/a, with the reason), never a failure.
 */
import { startTestbed } from '../tools/conformance/hub/testbed';
import { runAgainstTestbed } from './support/conformance-hub';

jest.setTimeout(60_000);

async function run(limit: { burst: number; perMinute: number }, scenarios: string[], frameMs: number, rateRetryMs: number): Promise<{ verdict: (id: string) => string | undefined; note: (id: string) => string }> {
  const bed = await startTestbed({ faultDevices: 0, recoveryPerSource: limit });
  try {
    const result = await runAgainstTestbed(bed, { scenarios, timeouts: { frameMs, rateRetryMs } });
    const results = result.report.results();
    return {
      verdict: (id) => results.find((r) => r.id === id)?.verdict,
      note: (id) => results.find((r) => r.id === id)?.evidence.map((e) => e.note).join(' | ') ?? '',
    };
  } finally {
    await bed.close();
  }
}

test('a small bucket that refills: the recovery is retried after a quiet wait and passes', async () => {
  const { verdict, note } = await run({ burst: 3, perMinute: 120 }, ['negative', 'recovery'], 1_000, 2_500);
  for (const id of ['H-REC-1', 'H-REC-2', 'H-REC-3', 'H-REC-5']) expect([id, verdict(id), note(id)]).toEqual([id, 'pass', expect.any(String)]);
});

test('a bucket that does not refill in time: rate limited, not judged (n/a), not a failure', async () => {
  const { verdict, note } = await run({ burst: 1, perMinute: 1 }, ['recovery'], 400, 500);
  for (const id of ['H-REC-3', 'H-REC-5']) {
    expect(verdict(id)).toBe('n/a');
    expect(note(id)).toMatch(/rate limited, not judged/);
  }
});
