/**
 * Owner-only secret files written atomically (the KEK keyring, the hub's
 * static keys): the text goes to a 0600 temporary file, is fsync'd, then
 * either replaces the file (rename) or is linked into place only if none
 * exists yet (two processes agree on one file); the directory is fsync'd.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

function writeTemporary(path: string, text: string): string {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(temporary, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return temporary;
}

function fsyncDirectory(path: string): void {
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Replaces `path` with `text` atomically (0600), durable when this returns. */
export function replacePrivateFile(path: string, text: string): void {
  renameSync(writeTemporary(path, text), path);
  fsyncDirectory(path);
}

/** Creates `path` with `text` (0600) unless it exists; then the existing file is kept. */
export function createPrivateFile(path: string, text: string): void {
  const temporary = writeTemporary(path, text);
  try {
    linkSync(temporary, path);
    fsyncDirectory(path);
  } catch (error) {
    if ((error as { code?: string }).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(temporary);
  }
}
