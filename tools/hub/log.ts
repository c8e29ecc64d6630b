/**
 * Structured logs through pino: one JSON object per line
 * (`{"level":"info","time":"…","event":"…",...fields}`), or pino-pretty's
 * coloured lines when stderr is a terminal. Keys and payloads are never
 * logged: callers pass ids and counts only (LogFields holds primitives), and
 * as a second line of defence fields named like secrets are redacted.
 * Writes are synchronous, so a line written before a crash is not lost.
 */
import pino, { type DestinationStream } from 'pino';
import pretty from 'pino-pretty';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  enabled(level: LogLevel): boolean;
}

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(RANK, value);
}

/** Field names whose value is replaced by "[redacted]" whatever a caller passes. */
export const REDACTED_FIELDS = ['key', 'activeKey', 'pendingKey', 'token', 'authorization', 'kek', 'secret'];

/**
 * A pino logger: JSON lines to `write` when given (tests), else to stderr —
 * pretty-printed by pino-pretty when stderr is a TTY (or `pretty` is true).
 */
export function jsonLogger(level: LogLevel = 'info', write?: (line: string) => void, options: { pretty?: boolean } = {}): Logger {
  const threshold = RANK[level];
  const destination: DestinationStream =
    write !== undefined
      ? { write }
      : (options.pretty ?? process.stderr.isTTY === true)
        ? pretty({ destination: 2, sync: true, messageKey: 'event', translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
        : pino.destination({ dest: 2, sync: true });
  const log = pino(
    {
      level,
      base: undefined,
      messageKey: 'event',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_FIELDS, censor: '[redacted]' },
    },
    destination,
  );
  return {
    debug: (event, fields) => log.debug(fields ?? {}, event),
    info: (event, fields) => log.info(fields ?? {}, event),
    warn: (event, fields) => log.warn(fields ?? {}, event),
    error: (event, fields) => log.error(fields ?? {}, event),
    enabled: (at) => RANK[at] >= threshold,
  };
}

const nothing = (): void => {};

/** Logs nothing and costs nothing. */
export const silentLogger: Logger = { debug: nothing, info: nothing, warn: nothing, error: nothing, enabled: (at) => at === 'silent' };
