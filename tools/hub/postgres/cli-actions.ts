/**
 * The CLI commands (tools/hub/cli.ts) when --db is a postgres:// URL: serve
 * one instance of a tier, provision, list devices, request a rotation. The
 * keyring comes from --kek-file / LOCKSTEP_KEK_FILE / LOCKSTEP_KEK: every
 * instance of a tier uses the same one, and it is never in the database.
 */
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

export async function provisionPostgres(url: string, records: readonly DeviceRecord[], keyring: KeyringChoice): Promise<void> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    await store.insertDevices(records, Date.now());
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
export async function rotatePostgres(url: string, deviceId: string, keyring: KeyringChoice, waitMs: number | undefined): Promise<{ found: boolean; confirmed?: DeviceSummary }> {
  const store = await PgHubStore.open(url, { ...keyring, poolSize: 1 });
  try {
    const before = (await store.listDevices()).find((d) => d.deviceId === deviceId.toLowerCase());
    if (before === undefined) return { found: false };
    await store.requestRotation(deviceId, Date.now());
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
