/**
 * The excluded hub designs of docs/PROTOCOL.md §8.5 as real hubs (the
 * reference hub with the design injected around its store or transport,
 * tools/conformance/hub/broken-hub.ts) must each fail the kit's hub mode
 * with the requirement they break named — while the unbroken hub passes the
 * same scenarios (conformance-hub.test.ts runs them all against it). Each
 * runs only the scenario that exposes it, with shortened waits.
 */
import { startTestbed } from '../tools/conformance/hub/testbed';
import type { BrokenHubDesign } from '../tools/conformance/hub/broken-hub';
import { runAgainstTestbed } from './support/conformance-hub';

jest.setTimeout(60_000);

type Case = { design: BrokenHubDesign | 'none'; scenarios: string[]; fails: string; keepAlive?: { intervalMs: number; waitMs: number }; crash?: { modes: ('classic' | 'dh')[]; recovery: boolean }; passes?: string[] };

// The crash scenario crashes only in the mode the design breaks (the reference run crashes in both).
const CASES: readonly Case[] = [
  { design: 'offers-before-persisting-pending', scenarios: ['crash'], fails: 'H-REKEY-1', crash: { modes: ['classic'], recovery: false } },
  { design: 'replaces-unconfirmed-pending', scenarios: ['cuts-classic'], fails: 'H-REKEY-2' },
  { design: 'persists-promotion-lazily', scenarios: ['crash'], fails: 'H-CONFIRM-2', crash: { modes: ['classic'], recovery: false } },
  { design: 'sends-no-confirmation', scenarios: ['rotation-classic'], fails: 'H-CONFIRM-3' },
  { design: 'dh-ephemeral-not-persisted', scenarios: ['crash'], fails: 'H-DH-1', crash: { modes: ['dh'], recovery: false } },
  { design: 'dh-forgets-ephemeral-before-promotion', scenarios: ['crash'], fails: 'H-DH-3', crash: { modes: ['dh'], recovery: false } },
  { design: 'recovery-before-persisting', scenarios: ['crash'], fails: 'H-REC-6', crash: { modes: [], recovery: true } },
  { design: 'confirms-twice', scenarios: ['rotation-classic'], fails: 'H-CONFIRM-4', passes: ['H-QUEUE-1'] },
  { design: 'idle-too-short', scenarios: ['keepalive'], fails: 'H-TIMER-1', keepAlive: { intervalMs: 4_000, waitMs: 5_000 } },
];

describe.each(CASES)('the $design hub', ({ design, scenarios, fails, keepAlive, crash, passes }) => {
  test(`fails ${fails} (${scenarios.join(', ')})`, async () => {
    const bed = await startTestbed({ design, faultDevices: 0 });
    try {
      const result = await runAgainstTestbed(bed, {
        scenarios,
        timeouts: { frameMs: 1_500 },
        ...(keepAlive === undefined ? {} : { keepAlive }),
        ...(crash === undefined ? {} : { crash }),
      });
      const failed = result.report.results().filter((r) => r.verdict === 'fail');
      const named = failed.find((r) => r.id === fails);
      expect(failed.map((r) => r.id)).toContain(fails);
      // The evidence says what happened and carries the frames.
      expect(named?.evidence[0]?.note.length).toBeGreaterThan(10);
      expect(named?.evidence.some((e) => (e.frames?.length ?? 0) > 0)).toBe(true);
      expect(result.report.exitCode()).toBe(1);
      // The requirement the design keeps is not blamed for it.
      for (const id of passes ?? []) expect(result.report.results().find((r) => r.id === id)?.verdict).toBe('pass');
    } finally {
      await bed.close();
    }
  });
});
