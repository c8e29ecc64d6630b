// The hub's durable state: one JSON file, replaced atomically (write temp + fsync + rename + fsync dir),
// so that after a kill -9 the file holds exactly the state before or after the interrupted write.
// The whole state (it holds every key and every dh h) is sealed with AES-256-GCM under a key-encryption
// key (KEK) kept in a separate file, so the state file and its backups hold no key in clear.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export type Mode = 'classic' | 'dh';

export interface PendingRecord {
  id: number;
  kind: Mode;
  key?: string; // classic: 128 hex
  h?: string; // dh: the hub's ephemeral private key, 64 hex
  H?: string; // dh: its public key, 64 hex
}

export interface DeviceRecord {
  deviceId: string; // 16 lowercase hex
  mode: Mode;
  active: { id: number; key: string };
  pending?: PendingRecord;
  devicePublicKey?: string;
  hubStaticId?: number;
  /** Recovery (§12.7): per-device policy (absent: the hub's default), operator approval, accepted recoveries (ms). */
  recoveryPolicy?: 'auto' | 'approve' | 'off';
  recoveryApproved?: boolean;
  recoveryRequested?: boolean;
  recoveries?: number[];
}

export interface StateFile {
  format: 'lockstep-independent-hub/1';
  devices: Record<string, DeviceRecord>;
}

const ENVELOPE = 'lockstep-independent-hub/sealed-1';

interface Envelope { format: typeof ENVELOPE; nonce: string; ciphertext: string; tag: string }

/** Reads the KEK (64 hex digits) from `path`, creating it (mode 0600) when absent. */
export function loadOrCreateKek(path: string): Buffer {
  if (!existsSync(path)) {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`KEK file ${path}: not 64 hex digits`);
  return Buffer.from(text, 'hex');
}

export class Store {
  #state: StateFile;
  readonly #kek: Buffer;
  /** Test seam: throw from the next write (a database that fails a write, HK7). */
  failNextWrite = false;

  constructor(readonly path: string, kek: Buffer) {
    if (kek.length !== 32) throw new Error('KEK: 32 bytes');
    this.#kek = Buffer.from(kek);
    this.#state = existsSync(path) ? Store.parse(this.#unseal(readFileSync(path, 'utf8'))) : { format: 'lockstep-independent-hub/1', devices: {} };
  }

  #seal(text: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#kek, nonce);
    cipher.setAAD(Buffer.from(ENVELOPE));
    const ciphertext = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
    const envelope: Envelope = { format: ENVELOPE, nonce: nonce.toString('hex'), ciphertext: ciphertext.toString('base64'), tag: cipher.getAuthTag().toString('hex') };
    return JSON.stringify(envelope);
  }

  #unseal(text: string): string {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(text) as Envelope;
    } catch {
      throw new Error(`state file ${this.path}: not JSON`);
    }
    if (envelope.format !== ENVELOPE) throw new Error(`state file ${this.path}: not a ${ENVELOPE} file`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#kek, Buffer.from(envelope.nonce, 'hex'));
      decipher.setAAD(Buffer.from(ENVELOPE));
      decipher.setAuthTag(Buffer.from(envelope.tag, 'hex'));
      return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64')), decipher.final()]).toString('utf8');
    } catch {
      throw new Error(`state file ${this.path}: does not open under this KEK (wrong KEK, or the file is corrupt)`);
    }
  }

  static parse(text: string): StateFile {
    const state = JSON.parse(text) as StateFile;
    if (state.format !== 'lockstep-independent-hub/1' || typeof state.devices !== 'object' || state.devices === null) {
      throw new Error(`state file: not a lockstep-independent-hub/1 file`);
    }
    return state;
  }

  device(id: string): DeviceRecord | undefined {
    const record = this.#state.devices[id];
    return record ? structuredClone(record) : undefined;
  }

  deviceIds(): string[] {
    return Object.keys(this.#state.devices);
  }

  /**
   * Applies `mutate` to a copy, makes the copy durable, and only then makes it the state the hub
   * acts on ("persist X", §8). On a failed write the in-memory state is the durable one, unchanged.
   */
  commit(mutate: (state: StateFile) => void): void {
    const next = structuredClone(this.#state);
    mutate(next);
    this.#write(this.#seal(JSON.stringify(next)));
    this.#state = next;
  }

  #write(text: string): void {
    if (this.failNextWrite) {
      this.failNextWrite = false;
      throw new Error('injected write failure');
    }
    const temp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, this.path);
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}
