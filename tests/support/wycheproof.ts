/** Loads the vendored Wycheproof files (tests/vectors/wycheproof, see its README for provenance). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  result: 'valid' | 'invalid' | 'acceptable';
  [field: string]: unknown;
}
export interface WycheproofGroup {
  keySize?: number;
  ivSize?: number;
  tagSize?: number;
  tests: WycheproofTest[];
}
export interface WycheproofFile {
  algorithm: string;
  numberOfTests: number;
  testGroups: WycheproofGroup[];
}

export function loadWycheproof(name: string): WycheproofFile {
  return JSON.parse(readFileSync(join(__dirname, '..', 'vectors', 'wycheproof', name), 'utf8')) as WycheproofFile;
}

export function hex(value: unknown): Uint8Array {
  return Uint8Array.from(Buffer.from(String(value), 'hex'));
}
