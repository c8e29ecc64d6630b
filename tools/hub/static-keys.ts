/**
 * The hub's static X25519 key pairs for recovery (docs/PROTOCOL.md §12.6,
 * docs/HUB.md §14.3). Like the KEK they live outside the database, so a
 * stolen database backup (which holds every device's S_d) cannot complete a
 * recovery with any device.
 *
 * File `<db>.static` by default (or `--static-key-file`,
 * LOCKSTEP_STATIC_KEY_FILE), owner-only (0600, checked when read):
 *   {"format": "lockstep-hub-static/1", "current": 2,
 *    "keys": [{"id": 1, "privateKey": "<64 hex>", "publicKey": "<64 hex>", "createdAt": <ms>}, ...]}
 * `current` is the pair given to devices provisioned or enrolled from now
 * on; older pairs stay for the devices that know them (RECOVER_INIT names
 * the id). Written atomically (temporary file 0600, fsync, rename, directory
 * fsync); created with O_EXCL semantics (hard link), so two processes opening
 * a fresh database agree on one file. Private keys are never logged and
 * never part of an error message.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { constantTimeEqual } from '../../modules/bytes';
import { MAX_KEY_ID } from '../../modules/protocol/constants';
import { createPrivateFile, replacePrivateFile } from './private-file';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import type { Logger } from './log';

export const STATIC_KEY_BYTES = 32;
const FORMAT = 'lockstep-hub-static/1';
/** A file holds at most this many pairs: a rotation a year for decades; bounds what a corrupt file can make the hub hold. */
export const MAX_STATIC_KEYS = 64;

export type StaticKeyErrorCode = 'STATIC_KEY_UNAVAILABLE' | 'STATIC_KEY_FILE_MODE' | 'STATIC_KEY_BAD_FORMAT' | 'STATIC_KEY_IN_USE';

/** A problem with the hub's static key file: the command (or recovery) refuses rather than guess. */
export class StaticKeyError extends Error {
  readonly code: StaticKeyErrorCode;
  constructor(code: StaticKeyErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
    Object.defineProperty(this, 'name', { value: 'StaticKeyError', configurable: true, writable: true });
  }
}

export interface HubStaticKey {
  readonly id: number;
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly createdAt: number;
}

export interface HubStaticKeys {
  readonly current: number;
  readonly keys: readonly HubStaticKey[];
}

export interface StaticKeyChoice {
  /** CLI `--static-key-file`, config `staticKeyFile`. */
  readonly staticKeyFile?: string;
  /** The environment to read LOCKSTEP_STATIC_KEY_FILE from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function defaultStaticKeyPath(database: string): string {
  return `${database}.static`;
}

/** `--static-key-file`, else LOCKSTEP_STATIC_KEY_FILE, else `<database>.static`. */
export function staticKeyPath(database: string, choice: StaticKeyChoice = {}): string {
  const env = choice.env ?? process.env;
  const explicit = choice.staticKeyFile ?? env.LOCKSTEP_STATIC_KEY_FILE;
  return explicit !== undefined && explicit !== '' ? explicit : defaultStaticKeyPath(database);
}

/** A fresh X25519 pair from node:crypto (raw 32-byte forms). */
export function newStaticPair(id: number, now: number): HubStaticKey {
  const pair = nodeKeyAgreement.x25519GenerateKeyPair?.();
  if (pair === undefined) throw new Error('node:crypto generates X25519 pairs');
  return { id, privateKey: pair.privateKey, publicKey: pair.publicKey, createdAt: now };
}

function publicOf(privateKey: Uint8Array): Uint8Array {
  return nodeKeyAgreement.x25519PublicKey(privateKey);
}

export function readStaticKeyFile(path: string): HubStaticKeys {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    throw new StaticKeyError('STATIC_KEY_UNAVAILABLE', `no hub static key file ${path}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new StaticKeyError('STATIC_KEY_FILE_MODE', `hub static key file ${path} has mode ${(mode & 0o777).toString(8)}; it must be owner-only (chmod 600)`);
  }
  const bad = (why: string): StaticKeyError => new StaticKeyError('STATIC_KEY_BAD_FORMAT', `hub static key file ${path}: ${why}`);
  const text = readFileSync(path, 'utf8');
  if (text.length > 64 * 1024) throw bad('larger than 64 KiB');
  let parsed: { format?: unknown; current?: unknown; keys?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw bad('not JSON');
  }
  if (parsed.format !== FORMAT || !Array.isArray(parsed.keys)) throw bad(`expected {"format": "${FORMAT}", "current": <id>, "keys": [...]}`);
  if (parsed.keys.length === 0 || parsed.keys.length > MAX_STATIC_KEYS) throw bad(`holds 1..${MAX_STATIC_KEYS} pairs`);
  const keys: HubStaticKey[] = [];
  for (const entry of parsed.keys as Record<string, unknown>[]) {
    const { id, privateKey, publicKey, createdAt } = entry ?? {};
    if (!isId(id)) throw bad('each pair has an "id" in 1..2^32-1');
    if (typeof privateKey !== 'string' || !/^[0-9a-f]{64}$/i.test(privateKey) || typeof publicKey !== 'string' || !/^[0-9a-f]{64}$/i.test(publicKey)) {
      throw bad(`pair ${id}: "privateKey" and "publicKey" are 64 hex digits`);
    }
    if (typeof createdAt !== 'number' || !Number.isSafeInteger(createdAt) || createdAt < 0) throw bad(`pair ${id}: "createdAt" is a time in ms`);
    if (keys.some((k) => k.id === id)) throw bad(`pair ${id} appears twice`);
    const pair = { id, privateKey: new Uint8Array(Buffer.from(privateKey, 'hex')), publicKey: new Uint8Array(Buffer.from(publicKey, 'hex')), createdAt };
    if (!constantTimeEqual(publicOf(pair.privateKey), pair.publicKey)) throw bad(`pair ${id}: the public key does not belong to the private key`);
    keys.push(pair);
  }
  if (!isId(parsed.current) || !keys.some((k) => k.id === parsed.current)) throw bad('"current" names none of its pairs');
  return { current: parsed.current, keys: keys.sort((a, b) => a.id - b.id) };
}

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_KEY_ID;
}

function serialise(keys: HubStaticKeys): string {
  return `${JSON.stringify(
    {
      format: FORMAT,
      current: keys.current,
      keys: keys.keys.map((k) => ({ id: k.id, privateKey: Buffer.from(k.privateKey).toString('hex'), publicKey: Buffer.from(k.publicKey).toString('hex'), createdAt: k.createdAt })),
    },
    null,
    2,
  )}\n`;
}

/** Replaces the file atomically (0600). */
export function writeStaticKeyFile(path: string, keys: HubStaticKeys): void {
  replacePrivateFile(path, serialise(keys));
}

/** Creates the file unless it exists (then that one is kept: two processes agree on one file). */
export function createStaticKeyFile(path: string, now: number): void {
  createPrivateFile(path, serialise({ current: 1, keys: [newStaticPair(1, now)] }));
}

/** Reads the database's static key file, creating it first when `mayCreate` and it is missing. */
export function resolveStaticKeys(database: string, choice: StaticKeyChoice, mayCreate: boolean, now = Date.now()): HubStaticKeys | undefined {
  const path = staticKeyPath(database, choice);
  if (!existsSync(path)) {
    if (!mayCreate) return undefined;
    createStaticKeyFile(path, now);
  }
  return readStaticKeyFile(path);
}

/** §13.3 step 1: a new pair with the next id becomes current; the older pairs stay. Durable when this returns. */
export function rotateStaticKey(path: string, now = Date.now()): HubStaticKey {
  const keys = readStaticKeyFile(path);
  if (keys.keys.length >= MAX_STATIC_KEYS) throw new StaticKeyError('STATIC_KEY_BAD_FORMAT', `${path} holds ${MAX_STATIC_KEYS} pairs already: retire unused ones first`);
  const next = Math.max(...keys.keys.map((k) => k.id)) + 1;
  if (next > MAX_KEY_ID) throw new StaticKeyError('STATIC_KEY_BAD_FORMAT', 'hub static ids exhausted');
  const pair = newStaticPair(next, now);
  writeStaticKeyFile(path, { current: next, keys: [...keys.keys, pair] });
  return pair;
}

/**
 * §13.3 last step: removes pair `id` from the file. Refused (STATIC_KEY_IN_USE)
 * for the current pair and while `referencing` (device records naming the id)
 * is not zero: those devices could never recover again.
 */
export function retireStaticKey(path: string, id: number, referencing: number): void {
  const keys = readStaticKeyFile(path);
  if (!keys.keys.some((k) => k.id === id)) throw new StaticKeyError('STATIC_KEY_UNAVAILABLE', `${path} holds no hub static key ${id}`);
  if (id === keys.current) throw new StaticKeyError('STATIC_KEY_IN_USE', `hub static key ${id} is the current one: rotate first`);
  if (referencing > 0) throw new StaticKeyError('STATIC_KEY_IN_USE', `${referencing} device record(s) name hub static key ${id}: they could never recover again`);
  writeStaticKeyFile(path, { current: keys.current, keys: keys.keys.filter((k) => k.id !== id) });
}

/** What HubConfig.recovery needs (the core owns its copy). */
export function coreRecoveryKeys(keys: HubStaticKeys): { hubKeys: { id: number; privateKey: Uint8Array; publicKey: Uint8Array }[]; currentHubStaticId: number } {
  return {
    hubKeys: keys.keys.map((k) => ({ id: k.id, privateKey: k.privateKey.slice(), publicKey: k.publicKey.slice() })),
    currentHubStaticId: keys.current,
  };
}


/**
 * The pairs read (or none: the file is gone) against the hub static ids device records name
 * (both backends at start). Missing ids are logged `staticKeysMissing`: those devices are served
 * without recovery (as 1.0) until the file is restored, rather than given new keys they cannot know.
 */
export function checkStaticKeys(keys: HubStaticKeys | undefined, referenced: ReadonlyMap<number, number>, log: Logger): HubStaticKeys | undefined {
  if (keys === undefined) {
    const devices = [...referenced.values()].reduce((n, count) => n + count, 0);
    if (referenced.size > 0) log.error('staticKeysMissing', { ids: [...referenced.keys()].join(','), devices, recovery: 'off until the static key file is restored' });
    return undefined;
  }
  const missing = [...referenced.keys()].filter((id) => !keys.keys.some((k) => k.id === id));
  if (missing.length > 0) log.error('staticKeysMissing', { ids: missing.join(','), devices: missing.reduce((n, id) => n + (referenced.get(id) ?? 0), 0) });
  return keys;
}
