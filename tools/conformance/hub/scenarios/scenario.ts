/** The shape of a hub-mode scenario (tools/conformance/hub/scenarios/*.ts). */
import type { HubKitContext, ScenarioRun } from '../context';

export interface Scenario {
  readonly name: string;
  /** One line for `--help` and docs/CONFORMANCE.md. */
  readonly description: string;
  /** The requirements it can observe (each starts n/a with `whyNotApplicable` until observed). */
  readonly covers: readonly string[];
  /** Runs alone: nothing else may use the hub meanwhile (it crashes it, or needs quiet). */
  readonly exclusive?: boolean;
  /** Why it cannot run against this target with these options (undefined: it can). */
  unavailable?(context: HubKitContext): string | undefined;
  run(context: HubKitContext, run: ScenarioRun): Promise<void>;
}
