/** A logger that keeps every line (event and fields), for tests that assert what the hub logged. */
import type { LogFields, Logger } from '../../tools/hub/log';

export type CapturingLogger = Logger & { lines: { event: string; fields: LogFields }[] };

export function capture(): CapturingLogger {
  const lines: { event: string; fields: LogFields }[] = [];
  const at = (event: string, fields: LogFields = {}) => void lines.push({ event, fields });
  return { lines, debug: at, info: at, warn: at, error: at, enabled: () => true };
}
