/**
 * Revocations that survive a restore (docs/PROTOCOL.md §12.6, docs/HUB.md
 * §13.4). The database's `revoked_devices` table goes back in time with the
 * database when an operator restores a backup; this file does not: it lives
 * beside the KEK (`<db>.revoked` by default), is only ever appended to, and
 * each line is fsync'd before the database forgets the device. Every store
 * opened for writing applies it (tools/hub/store.ts; on PostgreSQL every store
 * opened, tools/hub/postgres/store.ts, with `<KEK file>.revoked`): a device
 * row restored from a backup older than its revocation is erased again, and
 * its id stays refused for provisioning, HELLO and recovery.
 *
 * One JSON object per line: {"deviceId": "<16 hex>", "revokedAt": <ms>, "actor": "...", "reason": "..."|null}.
 * A torn last line (a crash in the middle of an append) is ignored: the
 * append had not returned, so the revocation had not happened (the database
 * is written only after the line is durable).
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export interface RevocationLine {
  readonly deviceId: string;
  readonly revokedAt: number;
  readonly actor: string;
  readonly reason: string | null;
}

/** A revocation file larger than this is refused (about 2 million revocations): bounded memory at start. */
export const MAX_REVOCATION_FILE_BYTES = 256 * 1024 * 1024;

export class RevocationFileError extends Error {
  constructor(message: string) {
    super(`REVOCATION_FILE: ${message}`);
    Object.defineProperty(this, 'name', { value: 'RevocationFileError', configurable: true, writable: true });
  }
}

export function defaultRevocationPath(database: string): string {
  return `${database}.revoked`;
}

/** Appends one revocation and fsyncs it (and the directory when the file is new) before returning. */
export function appendRevocation(path: string, line: RevocationLine): void {
  if (!/^[0-9a-f]{16}$/.test(line.deviceId)) throw new RevocationFileError('device id must be 16 lowercase hex digits');
  const fresh = !existsSync(path);
  const fd = openSync(path, 'a', 0o600);
  try {
    // A torn line left by a crash would glue onto this one: start on a fresh line.
    const size = fstatSync(fd).size;
    let prefix = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      const reader = openSync(path, 'r');
      try {
        readSync(reader, last, 0, 1, size - 1);
      } finally {
        closeSync(reader);
      }
      if (last[0] !== 0x0a) prefix = '\n';
    }
    writeSync(fd, `${prefix}${JSON.stringify({ deviceId: line.deviceId, revokedAt: line.revokedAt, actor: line.actor.slice(0, 64), reason: line.reason })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (fresh) {
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}

/** Every revocation in the file (none if there is no file). Malformed complete lines are refused: the file is the operator's record. */
export function readRevocations(path: string): RevocationLine[] {
  if (!existsSync(path)) return [];
  const fd = openSync(path, 'r');
  let text: string;
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_REVOCATION_FILE_BYTES) throw new RevocationFileError(`${path} is larger than ${MAX_REVOCATION_FILE_BYTES} bytes`);
    const buffer = Buffer.alloc(size);
    let at = 0;
    while (at < size) {
      const n = readSync(fd, buffer, at, size - at, at);
      if (n === 0) break;
      at += n;
    }
    text = buffer.subarray(0, at).toString('utf8');
  } finally {
    closeSync(fd);
  }
  const lines = text.split('\n');
  const torn = lines.pop(); // '' after the final newline, or a torn last line
  void torn;
  const out: RevocationLine[] = [];
  for (const [index, raw] of lines.entries()) {
    if (raw.trim() === '') continue;
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      // A torn line followed by later appends (appendRevocation starts those on a new line).
      if (!raw.startsWith('{') || raw.endsWith('}')) throw new RevocationFileError(`${path} line ${index + 1} is not JSON`);
      continue;
    }
    const { deviceId, revokedAt, actor, reason } = value;
    if (typeof deviceId !== 'string' || !/^[0-9a-f]{16}$/.test(deviceId) || typeof revokedAt !== 'number' || typeof actor !== 'string' || (reason !== null && typeof reason !== 'string')) {
      throw new RevocationFileError(`${path} line ${index + 1}: expected {"deviceId", "revokedAt", "actor", "reason"}`);
    }
    out.push({ deviceId, revokedAt, actor, reason: reason as string | null });
  }
  return out;
}
