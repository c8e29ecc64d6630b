/**
 * The hub's key-encryption keys (KEKs): every device key and every pending
 * key is stored in SQLite wrapped under a KEK that is not in the database
 * (docs/HUB.md §4.1). Modelled on Vault's barrier keyring: KEK versions are
 * named by a u32 id, the database records which version is active (new
 * wraps) and which version wraps each row, so `hub kek rotate` can add a
 * version, switch to it, and re-wrap every row while the hub serves.
 *
 * The wrapping (AES-256-GCM from node:crypto, nothing home-made):
 *
 *   salt      = 32 random bytes, fresh per wrap
 *   k ‖ nonce = HKDF-SHA-256(ikm = KEK, salt, info = "lockstep hub kek v1", 44 bytes)
 *   aad       = "lockstep hub kek v1" ‖ kek id (u32 BE) ‖ device id (8 bytes) ‖ key id (u32 BE)
 *   stored    = 0x01 ‖ salt ‖ AES-256-GCM(k, nonce, aad, key) (64 bytes) ‖ tag (16 bytes)   = 113 bytes
 *
 * Each wrap has its own GCM key, so the 2^32 bound on random 96-bit nonces
 * under one key (NIST SP 800-38D §8.3) does not apply: a KEK version can
 * wrap without limit (the only bound is a collision of 256-bit salts).
 * The AAD binds the wrapped bytes to their device and key id (a row copied
 * to another device or id does not open) and to the KEK version. It does not
 * bind the slot (active/pending): a promotion moves the pending blob to the
 * active slot unchanged, and a key id names one key per device anyway.
 *
 * Sources: a keyring file (JSON, mode 0600 checked, never group/other
 * readable), or the environment variable LOCKSTEP_KEK ("id:hex64[,id:hex64]").
 * Key material is never logged and never part of an error message.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createPrivateFile, replacePrivateFile } from './private-file';

export const KEK_BYTES = 32;
export const WRAPPED_KEY_BYTES = 1 + 32 + 64 + 16;
const FORMAT = 0x01;
const LABEL = Buffer.from('lockstep hub kek v1', 'ascii');
const MAX_KEK_ID = 0xffff_ffff;

export type KekErrorCode = 'KEK_UNAVAILABLE' | 'KEK_MISMATCH' | 'KEK_FILE_MODE' | 'KEK_BAD_FORMAT';

/** A KEK problem: the hub refuses to start (or a command to run) rather than guess. */
export class KekError extends Error {
  readonly code: KekErrorCode;
  constructor(code: KekErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
    Object.defineProperty(this, 'name', { value: 'KekError', configurable: true, writable: true });
  }
}

export function isKekError(error: unknown): error is KekError {
  return error instanceof KekError;
}

/** Where KEK versions come from; `load` is called again when a version is missing (added by `hub kek rotate`). */
export interface KeyringSource {
  readonly description: string;
  load(): Map<number, Buffer>;
}

export class Keyring {
  readonly #source: KeyringSource | undefined;
  #versions: Map<number, Buffer>;
  /** Counts for the metrics (tools/hub/metrics.ts): wraps, unwraps, unwraps refused. */
  readonly operations = { wrap: 0, unwrap: 0, unwrapFailed: 0 };

  constructor(versions: Map<number, Buffer> | KeyringSource) {
    if (versions instanceof Map) {
      this.#source = undefined;
      this.#versions = checkVersions(versions, 'keyring');
    } else {
      this.#source = versions;
      this.#versions = checkVersions(versions.load(), versions.description);
    }
  }

  /** A keyring with one fresh random KEK (id 1), for in-memory databases and tests. */
  static ephemeral(): Keyring {
    return new Keyring(new Map([[1, randomBytes(KEK_BYTES)]]));
  }

  get description(): string {
    return this.#source?.description ?? 'in-memory keyring';
  }

  get ids(): number[] {
    return [...this.#versions.keys()].sort((a, b) => a - b);
  }

  get newestId(): number {
    return Math.max(...this.#versions.keys());
  }

  /** Whether version `id` is available, reloading the source once if not. */
  has(id: number): boolean {
    if (!this.#versions.has(id) && this.#source !== undefined) {
      this.#versions = checkVersions(this.#source.load(), this.#source.description);
    }
    return this.#versions.has(id);
  }

  /**
   * Drops a destroyed version from memory (zeroed). A source that still
   * holds it would bring it back at the next reload: remove it there first.
   */
  forget(id: number): void {
    const kek = this.#versions.get(id);
    if (kek === undefined) return;
    if (this.#versions.size === 1) throw new KekError('KEK_UNAVAILABLE', `KEK version ${id} is the last one in ${this.description}`);
    kek.fill(0);
    this.#versions.delete(id);
  }

  wrap(kekId: number, deviceId: string, keyId: number, key: Uint8Array): Buffer {
    const kek = this.#kek(kekId);
    this.operations.wrap++;
    const salt = randomBytes(32);
    const { k, nonce } = derive(kek, salt);
    const cipher = createCipheriv('aes-256-gcm', k, nonce);
    cipher.setAAD(aad(kekId, deviceId, keyId));
    const body = Buffer.concat([cipher.update(key), cipher.final()]);
    const tag = cipher.getAuthTag();
    k.fill(0);
    if (body.length !== 64) throw new Error('wrap: keys are 64 bytes');
    return Buffer.concat([Buffer.of(FORMAT), salt, body, tag]);
  }

  /** The plain key; KEK_MISMATCH if the bytes do not open under this KEK for this device and key id. */
  unwrap(kekId: number, deviceId: string, keyId: number, stored: Uint8Array): Uint8Array {
    const kek = this.#kek(kekId);
    const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
    if (bytes.length !== WRAPPED_KEY_BYTES || bytes[0] !== FORMAT) {
      throw new KekError('KEK_MISMATCH', `the stored key ${keyId} of device ${deviceId} is not a wrapped key`);
    }
    const { k, nonce } = derive(kek, bytes.subarray(1, 33));
    try {
      const decipher = createDecipheriv('aes-256-gcm', k, nonce);
      decipher.setAAD(aad(kekId, deviceId, keyId));
      decipher.setAuthTag(bytes.subarray(97, 113));
      const plain = new Uint8Array(Buffer.concat([decipher.update(bytes.subarray(33, 97)), decipher.final()]));
      this.operations.unwrap++;
      return plain;
    } catch {
      this.operations.unwrapFailed++;
      throw new KekError('KEK_MISMATCH', `KEK ${kekId} (${this.description}) does not open key ${keyId} of device ${deviceId}: wrong KEK for this database, or the row was altered`);
    } finally {
      k.fill(0);
    }
  }

  #kek(id: number): Buffer {
    if (!this.has(id)) throw new KekError('KEK_UNAVAILABLE', `KEK version ${id} is not in ${this.description}`);
    return this.#versions.get(id) as Buffer;
  }
}

function derive(kek: Buffer, salt: Uint8Array): { k: Buffer; nonce: Buffer } {
  const okm = Buffer.from(hkdfSync('sha256', kek, salt, LABEL, 44));
  return { k: okm.subarray(0, 32), nonce: okm.subarray(32, 44) };
}

function aad(kekId: number, deviceId: string, keyId: number): Buffer {
  const out = Buffer.alloc(LABEL.length + 16);
  LABEL.copy(out, 0);
  out.writeUInt32BE(kekId, LABEL.length);
  Buffer.from(deviceId, 'hex').copy(out, LABEL.length + 4);
  out.writeUInt32BE(keyId, LABEL.length + 12);
  return out;
}

function checkVersions(versions: Map<number, Buffer>, where: string): Map<number, Buffer> {
  if (versions.size === 0) throw new KekError('KEK_BAD_FORMAT', `${where} holds no KEK`);
  for (const [id, key] of versions) {
    if (!Number.isInteger(id) || id < 1 || id > MAX_KEK_ID) throw new KekError('KEK_BAD_FORMAT', `${where}: KEK ids are integers in 1..2^32-1`);
    if (key.length !== KEK_BYTES) throw new KekError('KEK_BAD_FORMAT', `${where}: KEK ${id} must be ${KEK_BYTES} bytes`);
  }
  return versions;
}

// ---- Sources ----

/**
 * A keyring file: `{"format": "lockstep-kek/1", "keys": [{"id": 1, "key": "<64 hex>"}, ...]}`.
 * Refused if it is readable or writable by group or others (KEK_FILE_MODE).
 */
export function fileKeyringSource(path: string): KeyringSource {
  return {
    description: `keyring file ${path}`,
    load: () => readKeyringFile(path),
  };
}

export function readKeyringFile(path: string): Map<number, Buffer> {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    throw new KekError('KEK_UNAVAILABLE', `no keyring file ${path}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new KekError('KEK_FILE_MODE', `keyring file ${path} has mode ${(mode & 0o777).toString(8)}; it must be owner-only (chmod 600)`);
  }
  let parsed: { format?: unknown; keys?: unknown };
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as typeof parsed;
  } catch {
    throw new KekError('KEK_BAD_FORMAT', `keyring file ${path} is not JSON`);
  }
  if (parsed.format !== 'lockstep-kek/1' || !Array.isArray(parsed.keys)) throw new KekError('KEK_BAD_FORMAT', `keyring file ${path}: expected {"format": "lockstep-kek/1", "keys": [...]}`);
  const versions = new Map<number, Buffer>();
  for (const entry of parsed.keys as { id?: unknown; key?: unknown }[]) {
    if (typeof entry.id !== 'number' || typeof entry.key !== 'string' || !/^[0-9a-fA-F]{64}$/.test(entry.key)) {
      throw new KekError('KEK_BAD_FORMAT', `keyring file ${path}: each key is {"id": <u32>, "key": "<64 hex>"}`);
    }
    versions.set(entry.id, Buffer.from(entry.key, 'hex'));
  }
  return checkVersions(versions, `keyring file ${path}`);
}

/**
 * Replaces a keyring file atomically and owner-only: a temporary file
 * created 0600 with O_EXCL, fsync'd, renamed over the old one, directory
 * fsync'd.
 */
export function writeKeyringFile(path: string, versions: Map<number, Buffer>): void {
  replacePrivateFile(path, keyringText(path, versions));
}

function keyringText(path: string, versions: Map<number, Buffer>): string {
  checkVersions(versions, `keyring file ${path}`);
  const keys = [...versions].sort(([a], [b]) => a - b).map(([id, key]) => ({ id, key: key.toString('hex') }));
  return `${JSON.stringify({ format: 'lockstep-kek/1', keys }, null, 2)}\n`;
}

/** `LOCKSTEP_KEK="1:<64 hex>[,2:<64 hex>...]"`. */
export function environmentKeyringSource(value: string, name = 'LOCKSTEP_KEK'): KeyringSource {
  return {
    description: `environment variable ${name}`,
    load: () => {
      const versions = new Map<number, Buffer>();
      for (const part of value.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
        const match = /^(\d+):([0-9a-fA-F]{64})$/.exec(part);
        if (match === null) throw new KekError('KEK_BAD_FORMAT', `${name} must be "id:<64 hex>[,id:<64 hex>...]"`);
        versions.set(Number(match[1]), Buffer.from(match[2] as string, 'hex'));
      }
      return checkVersions(versions, `environment variable ${name}`);
    },
  };
}

export interface KeyringChoice {
  /** An explicit keyring (library). */
  readonly keyring?: Keyring;
  /** A keyring file (CLI `--kek-file`, config `kekFile`). */
  readonly kekFile?: string;
  /** The environment to read LOCKSTEP_KEK_FILE / LOCKSTEP_KEK from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** The default keyring file of a database: next to it, `<database>.kek`. */
export function defaultKeyringPath(database: string): string {
  return `${database}.kek`;
}

/**
 * Picks the keyring for a database, in this order: `keyring`, `kekFile`,
 * LOCKSTEP_KEK_FILE, LOCKSTEP_KEK, then the default file `<database>.kek`.
 * A keyring file (given or default) that does not exist is created only
 * when `mayCreate` (the database holds no wrapped key yet): a fresh random
 * KEK, id 1, mode 0600.
 * Returns undefined if no keyring exists and none may be created.
 */
export function resolveKeyring(database: string, choice: KeyringChoice, mayCreate: boolean): Keyring | undefined {
  if (choice.keyring !== undefined) return choice.keyring;
  if (database === ':memory:') return Keyring.ephemeral();
  const env = choice.env ?? process.env;
  const file = choice.kekFile ?? env.LOCKSTEP_KEK_FILE;
  if (file !== undefined && file !== '') {
    if (!existsSync(file) && mayCreate) createKeyringFile(file, new Map([[1, randomBytes(KEK_BYTES)]]));
    return new Keyring(fileKeyringSource(file));
  }
  const inline = env.LOCKSTEP_KEK;
  if (inline !== undefined && inline !== '') return new Keyring(environmentKeyringSource(inline));
  const path = defaultKeyringPath(database);
  if (!existsSync(path)) {
    if (!mayCreate) return undefined;
    createKeyringFile(path, new Map([[1, randomBytes(KEK_BYTES)]]));
  }
  return new Keyring(fileKeyringSource(path));
}

/**
 * Creates a keyring file that must not exist yet (two processes opening a
 * fresh database at once end up with the same KEK): written 0600 to a
 * temporary name, fsync'd, then hard-linked into place, which fails if
 * another process got there first; that one's file is kept.
 */
export function createKeyringFile(path: string, versions: Map<number, Buffer>): void {
  createPrivateFile(path, keyringText(path, versions));
}
