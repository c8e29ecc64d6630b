/**
 * A readable trace of one simulated run. Building strings for every step
 * would dominate the cost of a million-step run, so a trace is off by
 * default and a failing run is simply re-run from its seed with the trace
 * on (the simulation is deterministic): that both prints the trace and
 * proves the seed reproduces the failure.
 */
import { SIM_EPOCH_MS } from './constants';

export class Trace {
  readonly enabled: boolean;
  readonly #lines: string[] = [];
  readonly #limit: number;
  #dropped = 0;
  step = 0;
  now = SIM_EPOCH_MS;

  constructor(enabled: boolean, limit = 5_000) {
    this.enabled = enabled;
    this.#limit = limit;
  }

  /** `line` is only called when tracing is on. */
  log(line: () => string): void {
    if (!this.enabled) return;
    this.#lines.push(`#${String(this.step).padStart(5)} t+${String(this.now - SIM_EPOCH_MS).padStart(7)}ms  ${line()}`);
    if (this.#lines.length > this.#limit) {
      this.#lines.shift();
      this.#dropped++;
    }
  }

  text(lastLines = this.#limit): string {
    const lines = this.#lines.slice(-lastLines);
    const skipped = this.#dropped + this.#lines.length - lines.length;
    return (skipped > 0 ? `  … ${skipped} earlier lines\n` : '') + lines.map((l) => `  ${l}`).join('\n');
  }
}
