// The hub's durable state: one JSON file, replaced atomically (write temp + fsync + rename + fsync dir),
// so that after a kill -9 the file holds exactly the state before or after the interrupted write.
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
}

export interface StateFile {
  format: 'lockstep-independent-hub/1';
  devices: Record<string, DeviceRecord>;
}

export class Store {
  #state: StateFile;
  /** Test seam: throw from the next write (a database that fails a write, HK7). */
  failNextWrite = false;

  constructor(readonly path: string) {
    this.#state = existsSync(path) ? Store.parse(readFileSync(path, 'utf8')) : { format: 'lockstep-independent-hub/1', devices: {} };
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
    this.#write(JSON.stringify(next));
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
