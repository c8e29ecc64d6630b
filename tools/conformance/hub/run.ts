/**
 * The hub mode as a library call: runs the scenarios against the hub at
 * `options.target` as the given devices and returns the report (one verdict
 * per requirement). The CLI (tools/conformance/hub/command.ts) and the
 * tests (tests/conformance-hub*.test.ts) both come through here.
 *
 * Order: the quiet keep-alive device runs alongside everything that does
 * not crash the hub; the exclusive scenarios (crashes, randomized faults)
 * run last, alone. Bounded: one scenario's failure (an exception, a hub
 * that went away) is filed as a failure of what it was checking and the
 * next scenario still runs; the whole run stops at totalTimeoutMs.
 */
import { Report } from '../report';
import { REQUIREMENTS, scopeOf, type RequirementFeature } from '../requirements';
import { ConnectionBudget } from '../wire/peer';
import { HubKitContext, ScenarioRun, type HubKitOptions } from './context';
import { SCENARIOS } from './scenarios';

export interface HubKitResult {
  readonly report: Report;
  readonly startedAt: Date;
  readonly durationMs: number;
  /** Sockets the run opened in all. */
  readonly connections: number;
}

/** Why some requirements are n/a in hub mode (the rest of the unobserved ones get the generic reason). */
const NOT_OBSERVABLE: Readonly<Record<string, string>> = {
  'H-KEY-1': 'the randomness of a key is not observable on the wire (review the hub\'s random source)',
  'H-KEY-5': 'needs a database write failure inside the hub',
  'H-QUEUE-2': 'needs a persist kept outstanding inside the hub',
  'H-TLS-1': 'checked only when the target is TLS (--tls)',
  'H-TLS-2': 'checked only when the target is TLS (--tls)',
  'H-TLS-3': 'checked only when the target is TLS (--tls)',
  'H-PROV-1': 'an import of invalid records is the hub operator\'s command, not the wire',
  'H-REVOKE-1': 'needs a database restore on the hub',
  'H-REVOKE-2': 'needs an operator revocation on the hub',
  'H-RATE-1': 'would spend the device\'s recovery allowance (3 per hour on the reference hub)',
  'H-RATE-2': 'would flood the hub from one source',
  'W-SESSION-2': 'needs 2^32 frames in one session',
  'H-KEY-2': 'needs 2^32 rotations',
};

/** The scenarios that exercise one optional feature only (PROTOCOL.md §15); mixed ones skip the feature's parts through `claim`. */
const SCENARIO_FEATURES: Readonly<Record<string, RequirementFeature>> = {
  'rotation-dh': 'dh',
  'cuts-dh': 'dh',
  'mode-mismatch': 'dh',
  recovery: 'recovery',
  tls: 'tls',
};

export async function runHubConformance(options: HubKitOptions): Promise<HubKitResult> {
  const startedAt = new Date();
  const started = performance.now();
  const report = new Report();
  const budget = new ConnectionBudget(options.maxConnections ?? 32);
  const context = new HubKitContext(options, report, { target: options.target, budget, connectTimeoutMs: options.timeouts?.connectMs ?? 5_000 });
  const without = options.without ?? [];
  const chosen = SCENARIOS.filter((s) => options.scenarios === undefined || options.scenarios.includes(s.name));
  const unknown = (options.scenarios ?? []).filter((name) => !SCENARIOS.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`unknown scenario(s): ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})`);

  // Every hub and wire requirement is listed, in catalogue order; what no chosen scenario covers says why.
  const covered = new Set(chosen.flatMap((s) => s.covers));
  for (const requirement of REQUIREMENTS) {
    if (scopeOf(requirement.id) === 'device') continue;
    const elsewhere = SCENARIOS.filter((s) => s.covers.includes(requirement.id)).map((s) => s.name);
    report.cover(
      [requirement.id],
      covered.has(requirement.id)
        ? 'not observed in this run'
        : elsewhere.length > 0
          ? `observed by ${elsewhere.join(', ')}, not chosen (--scenarios)`
          : NOT_OBSERVABLE[requirement.id] ?? 'not observable from outside the hub by the kit (docs/CONFORMANCE.md, "What is n/a")',
    );
  }

  const runOne = async (scenario: (typeof SCENARIOS)[number]): Promise<void> => {
    const feature = SCENARIO_FEATURES[scenario.name];
    const why = feature !== undefined && without.includes(feature) ? `the hub declares no ${feature} feature (--without)` : scenario.unavailable?.(context);
    const run = new ScenarioRun(scenario.name, report);
    if (why !== undefined) {
      for (const id of scenario.covers) report.notApplicable(id, `${scenario.name}: ${why}`);
      context.log(`${scenario.name}: skipped (${why})`);
      return;
    }
    if (performance.now() > context.deadline) {
      for (const id of scenario.covers) report.notApplicable(id, `${scenario.name}: not run (the run's time limit was reached)`);
      return;
    }
    const t0 = performance.now();
    context.log(`${scenario.name}: running`);
    try {
      await scenario.run(context, run);
    } catch (error) {
      run.fail(scenario.covers[0] as string, `the scenario stopped: ${error instanceof Error ? error.message : String(error)}`);
    }
    context.log(`${scenario.name}: done in ${Math.round(performance.now() - t0)} ms`);
  };

  const background = chosen.filter((s) => s.name === 'keepalive');
  const shared = chosen.filter((s) => !s.exclusive && s.name !== 'keepalive');
  const exclusive = chosen.filter((s) => s.exclusive === true);
  const quiet = Promise.all(background.map(runOne));
  for (const scenario of shared) await runOne(scenario);
  await quiet;
  for (const scenario of exclusive) await runOne(scenario);
  context.devicesChanged();
  report.excludeFeatures(without);
  return { report, startedAt, durationMs: Math.round(performance.now() - started), connections: budget.opened };
}
