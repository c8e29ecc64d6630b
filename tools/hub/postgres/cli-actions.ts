/**
 * The CLI commands (tools/hub/cli.ts) when --db is a postgres:// URL: serve
 * one instance of a tier, provision, list devices, request a rotation,
 * revoke, read the audit trail, rotate the KEK and run the crypto-shredding
 * schedule. The keyring comes from --kek-file / LOCKSTEP_KEK_FILE /
 * LOCKSTEP_KEK: every instance of a tier uses the same one, and it is never
 * in the database.
 */
import { randomBytes } from 'node:crypto';
import type { AuditEntry, AuditQuery, Revocation } from '../audit';
import { KEK_BYTES, KekError, readKeyringFile, writeKeyringFile } from '../kek';
import type { Logger } from '../log';
import type { DeviceRecord } from '../records';
import type { DeviceSummary } from '../store';
import type { HubOptions } from '../options';
import { PgLockstepHub } from './hub';
import { PgHubStore, redact } from './store';
import type { KeyringChoice } from '../kek';

export async function servePostgres(url: string, options: Omit<HubOptions, 'logger' | 'database'>, keyring: KeyringChoice, logger: Logger): Promise<PgLockstepHub> {
  const { exclusive: _exclusive, ...rest } = options as HubOptions;
  void _exclusive;
  const hub = await PgLockstepHub.start({ ...rest, database: url, store: keyring, logger });
  const durability = await hub.store.durability();
  logger.info('postgres', { database: redact(url), instance: hub.instance, ...durability });
  if (durability.synchronousCommit !== 'on' && durability.synchronousCommit !== 'remote_apply') {
    logger.warn('durability', { message: `synchronous_commit is ${durability.synchronousCommit}: a commit may be lost on a crash; the hub sets it per session, check the server's settings` });
  }
  if (durability.fsync !== 'on') logger.warn('durability', { message: 'fsync is off on the server: committed rotations can be lost in a crash (docs/HUB.md §13.4)' });
  return hub;
}

export async function provisionPostgres(url: string, records: readonly DeviceRecord[], keyring: KeyringChoice, actor: string, action: 'device.provision' | 'device.import'): Promise<void> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    await store.insertDevices(records, Date.now());
    await store.appendAudit(records.map((r) => ({ actor, action, deviceId: r.deviceId, outcome: 'ok', detail: { keyId: r.active.id } })), Date.now());
  } finally {
    await store.close();
  }
}

export async function listPostgres(url: string, keyring: KeyringChoice): Promise<DeviceSummary[]> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    return await store.listDevices();
  } finally {
    await store.close();
  }
}

/** Requests a rotation (the durable row; the serving instance is woken by NOTIFY) and optionally waits for its confirmation. */
export async function rotatePostgres(url: string, deviceId: string, keyring: KeyringChoice, waitMs: number | undefined, actor: string): Promise<{ found: boolean; confirmed?: DeviceSummary }> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    const before = (await store.listDevices()).find((d) => d.deviceId === deviceId.toLowerCase());
    if (before === undefined) return { found: false };
    await store.requestRotation(deviceId, Date.now());
    await store.appendAudit([{ actor, action: 'device.rotate', deviceId: before.deviceId, outcome: 'requested' }], Date.now());
    if (waitMs === undefined) return { found: true };
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const now = (await store.listDevices()).find((d) => d.deviceId === before.deviceId);
      if (now !== undefined && now.rotateRequestedAt === undefined && now.pendingKeyId === undefined && now.activeKeyId > before.activeKeyId) return { found: true, confirmed: now };
    }
    return { found: true };
  } finally {
    await store.close();
  }
}

/** `set-mode <device> dh` on PostgreSQL. */
export async function upgradePostgres(url: string, deviceId: string, keyring: KeyringChoice): Promise<'upgraded' | 'already' | 'missing'> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    return await store.upgradeToDh(deviceId, Date.now());
  } finally {
    await store.close();
  }
}

/** `revoke <device>` on PostgreSQL: the revocation, or the earlier one / none. */
export async function revokePostgres(url: string, deviceId: string, keyring: KeyringChoice, actor: string, reason: string | undefined): Promise<{ revocation?: Revocation; earlier?: Revocation }> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    const revocation = await store.revokeDevice(deviceId, actor, reason, Date.now());
    if (revocation !== undefined) return { revocation };
    const earlier = await store.revocation(deviceId);
    return earlier === undefined ? {} : { earlier };
  } finally {
    await store.close();
  }
}

export async function auditPostgres(url: string, keyring: KeyringChoice, query: AuditQuery): Promise<AuditEntry[]> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    return await store.readAudit(query);
  } finally {
    await store.close();
  }
}

export interface PgKekRotation {
  readonly from: number[];
  readonly to: number;
  readonly rewrapped: number;
  readonly transactions: number;
  readonly keyring: string;
  /** Versions destroyed by this run (removed from the keyring file, recorded in kek_versions). */
  readonly destroyedVersions: number[];
  /** Versions retired but kept, with the time from which this command destroys them. */
  readonly keptUntil: { kekId: number; destroyAfter: string }[];
  /** With LOCKSTEP_KEK (no file to edit): the versions due for destruction, to be removed from every instance's variable. */
  readonly dueVersions: number[];
}

/**
 * `kek rotate --db postgres://…` (docs/HUB.md §13.6), meant to run from cron
 * on the schedule stated there: (1) a new version is added to the keyring
 * file (durable first; or, with LOCKSTEP_KEK, `to` must already be in every
 * instance's variable), (2) it becomes the one new wraps use and every row
 * is re-wrapped online (PgHubStore.rotateKek, which records each version no
 * row needs any more in kek_versions: its shredding clock starts), (3) every
 * retired version older than `destroyAfterMs` is destroyed: removed from the
 * keyring file first (that is the destruction), then recorded, so the
 * serving instances drop it from memory at their next poll. A version that
 * still wraps a row or is active is never destroyed (refused by the store).
 */
export async function rotateKekPostgres(
  url: string,
  options: { kekFile: string | undefined; to: number | undefined; destroyAfterMs: number; keepOld: boolean; actor: string; now?: () => number },
): Promise<PgKekRotation> {
  const now = options.now ?? Date.now;
  const file = options.kekFile;
  let to = options.to;
  if (file === undefined && to === undefined) {
    throw new KekError('KEK_UNAVAILABLE', 'kek rotate: the KEK comes from LOCKSTEP_KEK; add the new version to it (here and in every instance) and name it with --to <id>');
  }
  if (file !== undefined) {
    const versions = readKeyringFile(file);
    to ??= Math.max(...versions.keys()) + 1;
    if (!versions.has(to)) {
      versions.set(to, randomBytes(KEK_BYTES));
      writeKeyringFile(file, versions); // durable before any row is wrapped under it
    }
  }
  const store = await PgHubStore.open(url, { ...(file === undefined ? {} : { kekFile: file }), poolSize: 2 });
  try {
    const result = await store.rotateKek(to as number);
    await store.appendAudit([{ actor: options.actor, action: 'kek.rotate', outcome: 'ok', detail: { to: result.to, rewrapped: result.rewrapped } }], now());
    const destroyed: number[] = [];
    const kept: { kekId: number; destroyAfter: string }[] = [];
    const dueVersions: number[] = [];
    if (file === undefined && !options.keepOld) {
      const inUse = new Set(await store.kekVersionsInUse());
      for (const r of await store.kekVersions()) {
        if (r.destroyedAt === undefined && !inUse.has(r.kekId) && r.kekId !== result.to && now() - r.retiredAt >= options.destroyAfterMs) dueVersions.push(r.kekId);
      }
    }
    if (file !== undefined && !options.keepOld) {
      const inUse = new Set(await store.kekVersionsInUse());
      const inFile = readKeyringFile(file);
      // Older versions no row needs: their clock starts now if no rotation recorded it (e.g. a keyring from before the schedule).
      await store.retireKekVersions([...inFile.keys()].filter((id) => id < result.to && !inUse.has(id)), now());
      const records = await store.kekVersions();
      const due = records.filter((r) => r.destroyedAt === undefined && !inUse.has(r.kekId) && r.kekId !== result.to && now() - r.retiredAt >= options.destroyAfterMs);
      const dueInFile = due.filter((r) => inFile.has(r.kekId)).map((r) => r.kekId);
      if (dueInFile.length > 0) writeKeyringFile(file, new Map([...inFile].filter(([id]) => !dueInFile.includes(id))));
      // (A version already missing from the file, e.g. a run that stopped between the two steps, is recorded now.)
      const ids = due.map((r) => r.kekId);
      await store.markKekDestroyed(ids, now());
      if (ids.length > 0) await store.appendAudit([{ actor: options.actor, action: 'kek.destroy', outcome: 'ok', detail: { versions: ids.join(',') } }], now());
      destroyed.push(...ids);
      for (const r of records) {
        if (r.destroyedAt === undefined && !ids.includes(r.kekId) && inFile.has(r.kekId)) kept.push({ kekId: r.kekId, destroyAfter: new Date(r.retiredAt + options.destroyAfterMs).toISOString() });
      }
    }
    return { ...result, keyring: file ?? 'LOCKSTEP_KEK', destroyedVersions: destroyed, keptUntil: kept, dueVersions };
  } finally {
    await store.close();
  }
}

/** `kek status --db postgres://…`: the active version, rows per version, the shredding schedule's records (no key material). */
export async function kekStatusPostgres(url: string, keyring: KeyringChoice): Promise<Record<string, unknown>> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    const counts: Record<string, number> = {};
    for (const d of await store.listDevices()) counts[d.activeKek] = (counts[d.activeKek] ?? 0) + 1;
    const versions = (await store.kekVersions()).map((v) => ({
      kekId: v.kekId,
      retiredAt: new Date(v.retiredAt).toISOString(),
      destroyedAt: v.destroyedAt === undefined ? null : new Date(v.destroyedAt).toISOString(),
    }));
    return { activeKek: await store.activeKek(), devicesByKek: counts, inUse: await store.kekVersionsInUse(), retired: versions };
  } finally {
    await store.close();
  }
}
