/**
 * The kit's verdicts: one line per requirement (pass / fail / n/a), the
 * evidence of every failure (what happened, the frames in hex), a JSON form
 * for `--json`, and the exit code (0 only when every applicable requirement
 * passed). A requirement fails if any scenario saw it broken, passes if some
 * scenario exercised it and none broke it, and is n/a otherwise.
 */
import { REQUIREMENTS, requirement, type RequirementFeature } from './requirements';

export type Verdict = 'pass' | 'fail' | 'n/a';

export interface FrameEvidence {
  readonly direction: 'sent' | 'received';
  /** The frame's wire bytes with their length prefix, hex. */
  readonly hex: string;
  /** Milliseconds since the scenario started. */
  readonly atMs?: number;
}

export interface Evidence {
  readonly scenario: string;
  readonly note: string;
  readonly frames?: readonly FrameEvidence[];
}

export interface RequirementResult {
  readonly id: string;
  readonly summary: string;
  readonly verdict: Verdict;
  /** Scenarios that exercised it. */
  readonly scenarios: readonly string[];
  /** Why it failed (every failing observation, bounded), or why it is n/a. */
  readonly evidence: readonly Evidence[];
}

export interface ReportJson {
  readonly mode: 'hub' | 'device';
  readonly target: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly passed: number;
  readonly failed: number;
  readonly notApplicable: number;
  readonly requirements: readonly RequirementResult[];
}

/** Failures kept per requirement: enough to debug, bounded under any peer. */
const MAX_EVIDENCE_PER_REQUIREMENT = 5;

interface Tally {
  scenarios: Set<string>;
  failures: Evidence[];
  failed: boolean;
  reasonNotApplicable?: string;
  /** The target declared the requirement's feature absent: n/a whatever the scenarios saw. */
  excluded?: string;
}

/** Parses `--without dh,recovery,tls`. */
export function parseFeatures(value: string): RequirementFeature[] {
  const known: readonly RequirementFeature[] = ['dh', 'recovery', 'tls'];
  const features = value.split(',').map((f) => f.trim()).filter((f) => f !== '');
  for (const feature of features) {
    if (!(known as readonly string[]).includes(feature)) throw new Error(`unknown feature "${feature}" (known: ${known.join(', ')}; docs/PROTOCOL.md §15)`);
  }
  return features as RequirementFeature[];
}

export class Report {
  readonly #tallies = new Map<string, Tally>();
  readonly #order: string[] = [];

  /** Declare the requirements a run covers, in print order (each starts n/a). */
  cover(ids: readonly string[], reasonNotApplicable = 'not exercised by this run'): void {
    for (const id of ids) this.#tally(id).reasonNotApplicable ??= reasonNotApplicable;
  }

  pass(id: string, scenario: string): void {
    this.#tally(id).scenarios.add(scenario);
  }

  fail(id: string, evidence: Evidence): void {
    const tally = this.#tally(id);
    tally.scenarios.add(evidence.scenario);
    tally.failed = true;
    if (tally.failures.length < MAX_EVIDENCE_PER_REQUIREMENT) tally.failures.push(evidence);
  }

  /** Pass or fail on a condition. */
  check(id: string, ok: boolean, evidence: Evidence): void {
    if (ok) this.pass(id, evidence.scenario);
    else this.fail(id, evidence);
  }

  /** Mark a requirement not applicable to this target, with the reason (e.g. "the hub offers no dh mode"). */
  notApplicable(id: string, reason: string): void {
    this.#tally(id).reasonNotApplicable = reason;
  }

  /**
   * The target declares these optional features (docs/PROTOCOL.md §15) absent
   * (`--without`): every id of theirs in this report is n/a, whatever a
   * scenario saw, and says so.
   */
  excludeFeatures(features: readonly RequirementFeature[]): void {
    for (const { id, feature } of REQUIREMENTS) {
      if (feature === undefined || !features.includes(feature)) continue;
      const tally = this.#tallies.get(id);
      if (tally !== undefined) tally.excluded = `the target declares no ${feature} feature (--without ${feature}, PROTOCOL.md §15)`;
    }
  }

  results(): RequirementResult[] {
    return this.#order.map((id) => {
      const tally = this.#tallies.get(id)!;
      if (tally.excluded !== undefined) {
        return { id, summary: requirement(id).summary, verdict: 'n/a' as const, scenarios: [], evidence: [{ scenario: '-', note: tally.excluded }] };
      }
      const verdict: Verdict = tally.failed ? 'fail' : tally.scenarios.size > 0 ? 'pass' : 'n/a';
      const evidence =
        verdict === 'n/a' ? [{ scenario: '-', note: tally.reasonNotApplicable ?? 'not exercised' }] : tally.failures;
      return { id, summary: requirement(id).summary, verdict, scenarios: [...tally.scenarios], evidence };
    });
  }

  toJson(meta: { mode: 'hub' | 'device'; target: string; startedAt: Date; durationMs: number }): ReportJson {
    const requirements = this.results();
    return {
      mode: meta.mode,
      target: meta.target,
      startedAt: meta.startedAt.toISOString(),
      durationMs: meta.durationMs,
      passed: requirements.filter((r) => r.verdict === 'pass').length,
      failed: requirements.filter((r) => r.verdict === 'fail').length,
      notApplicable: requirements.filter((r) => r.verdict === 'n/a').length,
      requirements,
    };
  }

  /** One line per requirement; failures followed by their evidence, indented. */
  toText(): string {
    const lines: string[] = [];
    for (const result of this.results()) {
      lines.push(`${result.verdict.padEnd(4)} ${result.id.padEnd(14)} ${result.summary}`);
      if (result.verdict === 'fail') {
        for (const evidence of result.evidence) {
          lines.push(`       [${evidence.scenario}] ${evidence.note}`);
          for (const frame of evidence.frames ?? []) {
            lines.push(`         ${frame.direction === 'sent' ? '→' : '←'} ${frame.atMs ?? ''} ${frame.hex}`);
          }
        }
      } else if (result.verdict === 'n/a') {
        lines.push(`       ${result.evidence[0]?.note ?? ''}`);
      }
    }
    return lines.join('\n');
  }

  /** 0 only when nothing failed and at least one requirement passed. */
  exitCode(): number {
    const results = this.results();
    return results.some((r) => r.verdict === 'fail') || !results.some((r) => r.verdict === 'pass') ? 1 : 0;
  }

  #tally(id: string): Tally {
    requirement(id);
    let tally = this.#tallies.get(id);
    if (tally === undefined) {
      tally = { scenarios: new Set(), failures: [], failed: false };
      this.#tallies.set(id, tally);
      this.#order.push(id);
    }
    return tally;
  }
}
