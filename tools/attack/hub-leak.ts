/**
 * What the attacker extracts from a copy of the hub's durable state: the
 * database file with its WAL (hub.db, hub.db-wal) and the keyring file.
 * Written from docs/HUB.md §4 (schema, §4.1 the KEK wrap, §4.3 a dh
 * pending slot holds the hub's ephemeral pair) and docs/PROTOCOL.md §11.7,
 * with node:crypto and SQLite (better-sqlite3) — not with the hub's own
 * store or keyring code.
 *
 *   k ‖ nonce = HKDF-SHA-256(ikm = KEK, salt, info = "lockstep hub kek v1", 44)
 *   aad       = "lockstep hub kek v1" ‖ kek id (u32 BE) ‖ device id (8) ‖ key id (u32 BE)
 *   stored    = 0x01 ‖ salt (32) ‖ AES-256-GCM(k, nonce, aad, plaintext) ‖ tag (16)
 *
 * The plaintext is the 64-byte key, or for a dh pending slot (`pending_dh`
 * = 1) the hub's ephemeral pair h ‖ H (32 + 32 bytes) wrapped the same way
 * under the pending id.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createDecipheriv, hkdfSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import type { LeakedState } from './knowledge';

const LABEL = Buffer.from('lockstep hub kek v1', 'ascii');

/** The keyring file: `{"format": "lockstep-kek/1", "keys": [{"id": 1, "key": "<64 hex>"}]}` (docs/HUB.md §4.1). */
export function readKeyring(text: string): Map<number, Buffer> {
  const parsed = JSON.parse(text) as { keys?: { id: number; key: string }[] };
  const out = new Map<number, Buffer>();
  for (const entry of parsed.keys ?? []) out.set(entry.id, Buffer.from(entry.key, 'hex'));
  return out;
}

/** Unwraps one stored blob; undefined if it does not open (wrong KEK, altered row). */
export function unwrapHubBlob(kek: Buffer, kekId: number, deviceId: string, keyId: number, stored: Uint8Array): Uint8Array | undefined {
  if (stored.length < 1 + 32 + 16 + 1 || stored[0] !== 0x01) return undefined;
  const okm = Buffer.from(hkdfSync('sha256', kek, stored.subarray(1, 33), LABEL, 44));
  const aad = Buffer.alloc(LABEL.length + 16);
  LABEL.copy(aad, 0);
  aad.writeUInt32BE(kekId, LABEL.length);
  Buffer.from(deviceId, 'hex').copy(aad, LABEL.length + 4);
  aad.writeUInt32BE(keyId, LABEL.length + 12);
  try {
    const decipher = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32, 44));
    decipher.setAAD(aad);
    decipher.setAuthTag(stored.subarray(stored.length - 16));
    return new Uint8Array(Buffer.concat([decipher.update(stored.subarray(33, stored.length - 16)), decipher.final()]));
  } catch {
    return undefined;
  } finally {
    okm.fill(0);
  }
}

interface Row {
  device_id: string;
  active_id: number;
  active_kek: number;
  active_key: Buffer;
  pending_id: number | null;
  pending_kek: number | null;
  pending_key: Buffer | null;
  pending_dh?: number;
}

/**
 * Reads the copy: `database` and, if present next to it, `database-wal`
 * (SQLite applies the WAL when it opens the file). The copy is opened in a
 * private directory so the caller's files are never touched.
 */
export function readHubLeak(files: { readonly database: string; readonly keyringFile: string }): LeakedState {
  const keyring = readKeyring(readFileSync(files.keyringFile, 'utf8'));
  const work = mkdtempSync(join(tmpdir(), 'lockstep-attack-hub-'));
  const copy = join(work, basename(files.database));
  try {
    copyFileSync(files.database, copy);
    if (existsSync(`${files.database}-wal`)) copyFileSync(`${files.database}-wal`, `${copy}-wal`);
    const db = new Database(copy);
    let rows: Row[];
    try {
      rows = db.prepare('SELECT * FROM devices').all() as Row[];
    } finally {
      db.close();
    }
    const leak: LeakedState = { keys: [], ephemerals: [], notes: [] };
    for (const row of rows) {
      const kek = keyring.get(row.active_kek);
      const active = kek === undefined ? undefined : unwrapHubBlob(kek, row.active_kek, row.device_id, row.active_id, row.active_key);
      if (active === undefined) leak.notes.push(`device ${row.device_id}: active key ${row.active_id} did not unwrap`);
      else leak.keys.push({ deviceId: row.device_id, keyId: row.active_id, key: active, source: 'hub database: active key' });
      if (row.pending_id === null || row.pending_key === null || row.pending_kek === null) continue;
      const pendingKek = keyring.get(row.pending_kek);
      const pending = pendingKek === undefined ? undefined : unwrapHubBlob(pendingKek, row.pending_kek, row.device_id, row.pending_id, row.pending_key);
      if (pending === undefined) {
        leak.notes.push(`device ${row.device_id}: pending slot ${row.pending_id} did not unwrap`);
      } else if (row.pending_dh === 1) {
        leak.ephemerals.push({
          deviceId: row.device_id,
          keyId: row.pending_id,
          side: 'hub',
          privateKey: pending.slice(0, 32),
          publicKey: pending.slice(32, 64),
          source: 'hub database: pending ephemeral pair',
        });
      } else {
        leak.keys.push({ deviceId: row.device_id, keyId: row.pending_id, key: pending, source: 'hub database: pending key' });
      }
    }
    return leak;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
