/**
 * The firmware's application payloads, carried opaquely by the protocol's
 * DATA messages (docs/PROTOCOL.md §7). They are this firmware's choice, not
 * part of the protocol; docs/FIRMWARE.md lists them.
 *
 * Up (telemetry, replies): one line of JSON, ASCII only.
 * Down (commands): one line of ASCII text, a verb and at most one argument:
 *   `ping` → `{"type":"pong"}`; `telemetry` → a telemetry message now;
 *   `interval <ms>` → set the telemetry period (0 = off, else 1000..86400000).
 * Rule: a command is length-checked before it is decoded; anything else is
 * answered with `{"type":"error","reason":...}` and changes nothing.
 */

export const MAX_COMMAND_BYTES = 64;
export const MIN_TELEMETRY_MS = 1000;
export const MAX_TELEMETRY_MS = 86_400_000;

export interface Telemetry {
  readonly seq: number;
  readonly uptimeMs: number;
  readonly keyId: number;
  readonly sessions: number;
  readonly closes: number;
  /** XS heap bytes in use, when the platform reports it. */
  readonly heapBytes: number | undefined;
}

export type Command =
  | { readonly kind: 'ping' }
  | { readonly kind: 'telemetry' }
  | { readonly kind: 'interval'; readonly ms: number }
  | { readonly kind: 'invalid'; readonly reason: string };

export function encodeTelemetry(t: Telemetry): Uint8Array {
  const heap = t.heapBytes === undefined ? '' : `,"heapBytes":${t.heapBytes}`;
  return encodeAscii(
    `{"type":"telemetry","seq":${t.seq},"uptimeMs":${Math.floor(t.uptimeMs)},"keyId":${t.keyId},"sessions":${t.sessions},"closes":${t.closes}${heap}}`,
  );
}

export function encodeReply(type: 'pong' | 'ok' | 'error', reason?: string): Uint8Array {
  return encodeAscii(reason === undefined ? `{"type":"${type}"}` : `{"type":"${type}","reason":${JSON.stringify(reason)}}`);
}

export function decodeCommand(payload: Uint8Array): Command {
  if (payload.length === 0 || payload.length > MAX_COMMAND_BYTES) return { kind: 'invalid', reason: 'length' };
  let text = '';
  for (let i = 0; i < payload.length; i++) {
    const byte = payload[i] as number;
    if (byte < 0x20 || byte > 0x7e) return { kind: 'invalid', reason: 'not printable ASCII' };
    text += String.fromCharCode(byte);
  }
  const words = text.trim().split(' ').filter((word) => word.length > 0);
  const verb = words[0];
  if (verb === 'ping' && words.length === 1) return { kind: 'ping' };
  if (verb === 'telemetry' && words.length === 1) return { kind: 'telemetry' };
  if (verb === 'interval' && words.length === 2) {
    const arg = words[1] as string;
    if (!/^[0-9]{1,8}$/.test(arg)) return { kind: 'invalid', reason: 'interval: not a number' };
    const ms = Number(arg);
    if (ms !== 0 && (ms < MIN_TELEMETRY_MS || ms > MAX_TELEMETRY_MS)) return { kind: 'invalid', reason: 'interval: out of range' };
    return { kind: 'interval', ms };
  }
  return { kind: 'invalid', reason: 'unknown command' };
}

/** Characters outside printable ASCII become '?', so the output is always ASCII. */
export function encodeAscii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    out[i] = code >= 0x20 && code <= 0x7e ? code : 0x3f;
  }
  return out;
}

/** For traces: printable ASCII as is, other bytes as '.'. */
export function printable(bytes: Uint8Array, max = 80): string {
  let text = '';
  const n = Math.min(bytes.length, max);
  for (let i = 0; i < n; i++) {
    const byte = bytes[i] as number;
    text += byte >= 0x20 && byte <= 0x7e ? String.fromCharCode(byte) : '.';
  }
  return bytes.length > max ? `${text}...` : text;
}

/**
 * The reference app's one setting, `telemetryMs` (0 = off, else
 * MIN_TELEMETRY_MS..MAX_TELEMETRY_MS): the number, or the line that says why not.
 */
export function readTelemetryMs(raw: unknown, fallback = 10_000): { ms: number } | { problem: string } {
  if (raw === undefined) return { ms: fallback };
  const ms = typeof raw === 'number' ? raw : typeof raw === 'string' && /^[0-9]{1,10}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(ms) || (ms !== 0 && (ms < MIN_TELEMETRY_MS || ms > MAX_TELEMETRY_MS))) {
    return { problem: `config telemetryMs: expected 0 or an integer in [${MIN_TELEMETRY_MS}, ${MAX_TELEMETRY_MS}]` };
  }
  return { ms };
}
