/**
 * Durations wherever a person types one (command-line flags, config files):
 * a number **with a unit**, "250ms", "3s", "10m", "1h", "2d" (fractions
 * allowed: "1.5s"). A bare number is refused, because "60" has been read as
 * 60 ms where 60 s was meant (`npm start -- --duration 60` ran for 60 ms and
 * reported OK). The one exception is "0", which means the same in every unit.
 *
 * The library API takes plain numbers, always in milliseconds, and every such
 * option says so in its name (`intervalMs`, `handshakeTimeoutMs`, ...).
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export const DURATION_HELP = 'a number with a unit: 250ms, 60s, 3m, 1h, 2d';

/** Milliseconds for a duration string; throws an Error naming the units for anything else. */
export function parseDuration(text: unknown): number {
  if (typeof text === 'number') {
    if (text === 0) return 0;
    throw new Error(`bad duration ${String(text)}: a bare number has no unit; write ${DURATION_HELP} (e.g. "${text}s" or "${text}ms")`);
  }
  if (typeof text !== 'string') throw new Error(`bad duration ${JSON.stringify(text)}: expected ${DURATION_HELP}`);
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (match === null) throw new Error(`bad duration "${text}": expected ${DURATION_HELP}`);
  const value = Number(match[1]);
  const unit = match[2];
  if (unit === undefined) {
    if (value === 0) return 0;
    throw new Error(`bad duration "${text}": a bare number has no unit; write ${DURATION_HELP} (e.g. "${text}s" or "${text}ms")`);
  }
  const ms = Math.round(value * (UNITS[unit] as number));
  if (!Number.isSafeInteger(ms)) throw new Error(`bad duration "${text}": too long`);
  return ms;
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/**
 * Checks a library option that is a number of milliseconds (the name ends
 * in `Ms`): a finite, non-negative integer. Throws naming the option.
 */
export function checkMilliseconds(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer number of milliseconds (got ${JSON.stringify(value)})`);
  }
  return value;
}
