/**
 * The CLI on PostgreSQL (`--db postgres://…`, docs/HUB.md §13): provision,
 * devices, rotate (the durable request), serve (one instance of a tier:
 * it logs the server's durability settings and serves a device), revoke
 * and audit against a serving instance, `kek rotate` with the
 * crypto-shredding schedule (§13.6) and `kek status`, and the config file
 * keeping a URL as it is. The keyring comes from LOCKSTEP_KEK, or from a
 * keyring file for `kek rotate`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleProgram } from '../tools/demo/hub-process';
import { POSTGRES_BIN, type ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { capture } from './support/log';
import { recoveryPolicy } from '../tools/hub/recovery';
import { loadConfigFile } from '../tools/hub/config';
import { newToken } from '../tools/hub/http/options';
import { environmentKeyringSource, Keyring, readKeyringFile, writeKeyringFile } from '../tools/hub/kek';
import { PgLockstepHub } from '../tools/hub/postgres/hub';
import { PgHubStore } from '../tools/hub/postgres/store';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';
import { freshDatabase, sql, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
const kek = `1:${randomBytes(32).toString('hex')}`;
let cli: string;

beforeAll(async () => {
  cluster = await startCluster();
  cli = bundleProgram('tools/hub/cli.ts');
}, 60_000);
afterAll(() => cluster?.stop());

/**
 * The CLI in a child process without blocking this one (an instance in this process must keep committing
 * meanwhile: `kek rotate` waits for its transactions, and spawnSync would stall both until the server's
 * idle-in-transaction timeout ends the instance's session).
 */
function hubAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, LOCKSTEP_KEK: kek, LOCKSTEP_KEK_FILE: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function hub(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LOCKSTEP_KEK: kek, LOCKSTEP_KEK_FILE: '' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function deviceOn(instance: PgLockstepHub, provisioned = provisionSimulatedDevice()): SimulatedDevice {
  return new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: instance.addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
}

test('revoke and audit with --db postgres://: the serving instance drops the device, the id stays refused, the trail says who', async () => {
  const url = await freshDatabase(cluster);
  const instance = await PgLockstepHub.start({ database: url, store: { keyring: new Keyring(environmentKeyringSource(kek)), poolSize: 2 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100 });
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-pgcli-'));
  const provisioned = provisionSimulatedDevice();
  const device = deviceOn(instance, provisioned);
  try {
    writeFileSync(join(dir, 'device.json'), JSON.stringify(provisioned.recordJson));
    expect((await hubAsync('provision', '--db', url, '--import', join(dir, 'device.json'))).status).toBe(0);
    device.start();
    await until(() => instance.deviceIds.includes(device.deviceId) && instance.deviceState(device.deviceId).connected, 'online');
    const revoked = await hubAsync('revoke', device.deviceId, '--db', url, '--reason', 'lost in transit');
    expect(revoked.status).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ deviceId: device.deviceId, reason: 'lost in transit', lastKeyId: 1 });
    expect(revoked.stderr).toContain('KEK version is destroyed');
    await until(() => !instance.hasDevice(device.deviceId) && !device.host.online, 'dropped by the serving instance');
    expect((await hubAsync('revoke', device.deviceId, '--db', url)).stderr).toContain('was revoked already');
    const again = await hubAsync('provision', '--db', url, '--import', join(dir, 'device.json'));
    expect([again.status, again.stderr]).toEqual([1, expect.stringContaining('was revoked')]);
    const trail = (await hubAsync('audit', '--db', url, '--json')).stdout.trim().split('\n').map((line) => JSON.parse(line) as { actor: string; action: string; deviceId?: string });
    expect(trail.map((e) => e.action)).toEqual(['device.revoke', 'device.import']);
    expect(trail.every((e) => e.actor.startsWith('cli:') && e.deviceId === device.deviceId)).toBe(true);
  } finally {
    device.stop();
    await instance.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test('kek rotate --db postgres:// from cron: re-wraps online, keeps each retired version for --destroy-after, then destroys it (keyring file, every instance\'s memory); old row copies open nothing', async () => {
  const url = await freshDatabase(cluster);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-pgkek-'));
  const file = join(dir, 'tier.kek');
  writeKeyringFile(file, new Map([[1, randomBytes(32)]]));
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, warn: (event: string, fields?: object) => warnings.push(`${event} ${JSON.stringify(fields)}`), error: (event: string, fields?: object) => warnings.push(`${event} ${JSON.stringify(fields)}`), enabled: () => true };
  const instance = await PgLockstepHub.start({ database: url, store: { kekFile: file, poolSize: 2 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, rotation: { intervalMs: 150, jitterMs: 0 }, logger });
  const provisioned = provisionSimulatedDevice();
  const device = deviceOn(instance, provisioned);
  const run = async (...args: string[]) => {
    const result = await hubAsync('kek', ...args, '--db', url, '--kek-file', file);
    if (result.status !== 0) throw new Error(`kek ${args.join(' ')}: ${result.stderr}`);
    return result;
  };
  try {
    await instance.provision(provisioned.record);
    device.start();
    expect((await hubAsync('provision', '--db', url, '--count', '2', '--kek-file', file)).status).toBe(0);
    await until(() => device.host.keys.active.id >= 2, 'rotating');
    // What a dead tuple, a WAL segment or a base backup keeps: a row as wrapped under version 1.
    const [oldRow] = (await sql(url, 'SELECT device_id, active_id, active_kek, active_key FROM devices WHERE active_kek = 1 ORDER BY rowid DESC LIMIT 1')).rows as { device_id: string; active_id: number; active_key: Buffer }[];
    const version1 = readKeyringFile(file).get(1) as Buffer;

    const first = JSON.parse((await run('rotate', '--destroy-after', '1h')).stdout) as Record<string, unknown>;
    expect(first).toMatchObject({ from: [1], to: 2, rewrapped: 3, destroyedVersions: [], keptUntil: [{ kekId: 1 }] });
    expect([...readKeyringFile(file).keys()]).toEqual([1, 2]);
    const status = JSON.parse((await run('status')).stdout) as { activeKek: number; inUse: number[]; retired: { kekId: number; destroyedAt: string | null }[] };
    expect(status).toMatchObject({ activeKek: 2, inUse: [2], retired: [{ kekId: 1, destroyedAt: null }] });
    await until(() => device.host.keys.active.id >= 5, 'rotating under version 2');

    // A day later (the retirement back-dated by 2 h): the next cron run destroys version 1, keeps 2 (retired just now).
    await sql(url, 'UPDATE kek_versions SET retired_at = retired_at - 7200000 WHERE kek_id = 1');
    const second = JSON.parse((await run('rotate', '--destroy-after', '1h')).stdout) as Record<string, unknown>;
    expect(second).toMatchObject({ from: [2], to: 3, destroyedVersions: [1], keptUntil: [{ kekId: 2 }] });
    expect([...readKeyringFile(file).keys()]).toEqual([2, 3]);
    await until(() => !instance.store.keyringIds.includes(1), 'the serving instance forgot version 1');
    expect(() => new Keyring(new Map([[1, version1]])).unwrap(1, oldRow!.device_id, Number(oldRow!.active_id), oldRow!.active_key)).not.toThrow(); // (a real copy)
    const fromFile = new Keyring(new Map(readKeyringFile(file)));
    expect(() => fromFile.unwrap(1, oldRow!.device_id, Number(oldRow!.active_id), oldRow!.active_key)).toThrow(/KEK_UNAVAILABLE/);

    // --destroy-after 0: every retired version goes at once; the store refuses to record the destruction of one in use.
    const third = JSON.parse((await run('rotate', '--destroy-after', '0')).stdout) as Record<string, unknown>;
    expect(third).toMatchObject({ to: 4, destroyedVersions: [2, 3], keptUntil: [] });
    expect([...readKeyringFile(file).keys()]).toEqual([4]);
    const reader = await PgHubStore.open(url, { kekFile: file, poolSize: 1 });
    try {
      await expect(reader.markKekDestroyed([4], Date.now())).rejects.toThrow(/still wraps keys/);
      expect(await reader.kekVersionsInUse()).toEqual([4]);
    } finally {
      await reader.close();
    }
    const actions = (await sql(url, "SELECT action FROM audit_log WHERE action LIKE 'kek.%' ORDER BY seq")).rows.map((r: { action: string }) => r.action);
    expect(actions).toEqual(['kek.rotate', 'kek.rotate', 'kek.destroy', 'kek.rotate', 'kek.destroy']);
    // Rotations never stopped, and the device is in sync with the database under the final keyring alone.
    const rotations = device.host.keys.active.id;
    await until(() => device.host.keys.active.id >= rotations + 2, 'rotating after the destruction');
    instance.setRotationPolicy({ intervalMs: 0 });
    await until(() => device.host.keys.future === undefined && instance.deviceState(device.deviceId).pendingKeyId === undefined, 'settled');
    const final = await PgHubStore.open(url, { kekFile: file, poolSize: 1 });
    try {
      expect(syncProblem(device.host.keys, (await final.getDevice(device.deviceId))!)).toBeUndefined();
    } finally {
      await final.close();
    }
    expect(warnings).toEqual([]);
    expect(instance.stats().failedTransactions).toBe(0);
  } finally {
    device.stop();
    await instance.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

test('provision, devices, rotate and serve with --db postgres://', async () => {
  const url = await freshDatabase(cluster);
  const provisioned = hub('provision', '--db', url, '--count', '2', '--mode', 'classic');
  expect(provisioned.stderr).toContain('provisioned 2 device(s)');
  expect(provisioned.stderr).not.toContain(new URL(url).password); // the password is redacted
  const records = provisioned.stdout.trim().split('\n').map((line) => JSON.parse(line) as { deviceId: string });
  expect(records).toHaveLength(2);

  const listed = hub('devices', '--db', url).stdout.trim().split('\n').map((line) => JSON.parse(line) as { deviceId: string; activeKeyId: number });
  expect(listed.map((d) => d.deviceId).sort()).toEqual(records.map((r) => r.deviceId).sort());

  expect(hub('set-mode', records[1]!.deviceId, 'dh', '--db', url).stderr).toContain('moves to the dh mode');
  expect(hub('set-mode', records[1]!.deviceId, 'dh', '--db', url).stderr).toContain('already in the dh mode');
  const rotated = hub('rotate', records[0]!.deviceId, '--db', url);
  expect(rotated.stderr).toContain('requested');
  expect(hub('rotate', '0000000000000000', '--db', url).status).toBe(1);

  // With the operator API (docs/HUB.md §12 on a tier instance): `serve --db postgres://… --http-port`.
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-pgserve-'));
  const token = newToken('ops', 'read');
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify([token.config]));
  const serve = spawn(process.execPath, [cli, 'serve', '--db', url, '--port', '0', '--log-level', 'info', '--http-port', '0', '--http-tokens', join(dir, 'tokens.json')], { env: { ...process.env, LOCKSTEP_KEK: kek } });
  try {
    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve not ready: ${lines.join('\n')}`)), 20_000);
      createInterface({ input: serve.stderr }).on('line', (line) => {
        lines.push(line);
        if (line.includes('"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      serve.once('exit', () => reject(new Error(`serve exited: ${lines.join('\n')}`)));
    });
    const durability = lines.find((line) => line.includes('"synchronousCommit"'));
    expect(durability).toContain('"synchronousCommit":"on"');
    expect(lines.join('\n')).not.toContain(new URL(url).password);
    const ready = JSON.parse(lines.find((line) => line.includes('"ready"')) as string) as { api: string; recovery: string };
    expect(ready.recovery).toBe('off (no static keys)'); // an inline keyring (LOCKSTEP_KEK) and no --static-key-file: nothing to keep them beside
    const api = new URL(ready.api);
    const auth = { headers: { authorization: `Bearer ${token.token}` } };
    expect(await (await fetch(new URL('/api/v1/ready', api), auth)).json()).toEqual({ ready: true, listeners: 1, devices: 2 });
    const metrics = await (await fetch(new URL('/metrics', api), auth)).text();
    expect(metrics).toContain('lockstep_leases_taken_total 0');
    expect(metrics).toContain('lockstep_database_listening 1');
    expect((await fetch(new URL('/api/v1/ready', api))).status).toBe(401);
  } finally {
    serve.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

test('without a keyring a PostgreSQL command refuses clearly', async () => {
  const url = await freshDatabase(cluster);
  const result = spawnSync(process.execPath, [cli, 'provision', '--db', url], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LOCKSTEP_KEK: '', LOCKSTEP_KEK_FILE: '' } });
  expect(result.status).not.toBe(0);
  expect(result.stderr).toMatch(/KEK_UNAVAILABLE.*--kek-file/);
}, 30_000);

test('a config file keeps a postgres:// database as it is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cfg-'));
  try {
    writeFileSync(join(dir, 'hub.json'), JSON.stringify({ database: 'postgres://hub@db.example/lockstep' }));
    expect(loadConfigFile(join(dir, 'hub.json')).database).toBe('postgres://hub@db.example/lockstep');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A folder with a tier's keyring file (the revocation and static key files go beside it). */
function keyringFolder(prefix: string): { dir: string; kekFile: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const kekFile = join(dir, 'tier.kek');
  writeKeyringFile(kekFile, new Map([[1, randomBytes(32)]]));
  return { dir, kekFile };
}

test('revoke --db postgres:// appends to <KEK file>.revoked; a pg_dump from before the revocation, restored, does not bring the device back (broken variant without the file: it does)', async () => {
  const url = await freshDatabase(cluster);
  const { dir, kekFile } = keyringFolder('lockstep-pgrevfile-');
  const provisioned = provisionSimulatedDevice();
  const other = provisionSimulatedDevice();
  try {
    writeFileSync(join(dir, 'devices.json'), `${JSON.stringify(provisioned.recordJson)}\n${JSON.stringify(other.recordJson)}\n`);
    expect((await hubAsync('provision', '--db', url, '--kek-file', kekFile, '--import', join(dir, 'devices.json'))).status).toBe(0);
    const dump = join(dir, 'before.dump');
    const dumped = spawnSync(join(POSTGRES_BIN, 'pg_dump'), ['-Fc', '-f', dump, '-d', url], { encoding: 'utf8' }); // last night's backup
    expect([dumped.status, dumped.stderr]).toEqual([0, '']);
    const revoked = await hubAsync('revoke', provisioned.record.deviceId, '--db', url, '--kek-file', kekFile, '--reason', 'stolen');
    expect(revoked.status).toBe(0);
    expect(readFileSync(`${kekFile}.revoked`, 'utf8')).toContain(`"deviceId":"${provisioned.record.deviceId}"`);
    // The point-in-time restore: the database as it was before the revocation.
    const restore = (): void => {
      const restored = spawnSync(join(POSTGRES_BIN, 'pg_restore'), ['--clean', '--if-exists', '--no-owner', '-d', url, dump], { encoding: 'utf8' });
      expect([restored.status, restored.stderr]).toEqual([0, '']);
    };
    restore();
    expect((await sql(url, 'SELECT device_id FROM devices ORDER BY device_id')).rows.map((r) => r.device_id)).toEqual([provisioned.record.deviceId, other.record.deviceId].sort());
    expect((await sql(url, 'SELECT count(*)::int AS n FROM revoked_devices')).rows[0].n).toBe(0);
    const log = capture();
    const instance = await PgLockstepHub.start({ database: url, store: { kekFile, poolSize: 2 }, tcp: { port: 0 }, tickMs: 20, controlPollMs: 100, logger: log });
    const device = deviceOn(instance, provisioned);
    try {
      expect(log.lines.filter((l) => l.event === 'revocationReapplied').map((l) => l.fields.deviceId)).toEqual([provisioned.record.deviceId]);
      expect(instance.hasDevice(provisioned.record.deviceId)).toBe(false);
      expect(instance.hasDevice(other.record.deviceId)).toBe(true);
      expect((await sql(url, 'SELECT device_id FROM devices')).rows.map((r) => r.device_id)).toEqual([other.record.deviceId]);
      expect((await sql(url, 'SELECT device_id, reason FROM revoked_devices')).rows).toEqual([{ device_id: provisioned.record.deviceId, reason: 'stolen' }]);
      const trail = (await hubAsync('audit', '--db', url, '--kek-file', kekFile, '--device', provisioned.record.deviceId, '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string });
      expect(trail[0]).toMatchObject({ action: 'device.revoke', outcome: 'reapplied' });
      device.start();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(device.host.online).toBe(false); // its HELLO names no row: refused
      const again = await hubAsync('provision', '--db', url, '--kek-file', kekFile, '--import', join(dir, 'devices.json'));
      expect(again.stderr).toContain('was revoked');
    } finally {
      device.stop();
      await instance.close();
    }
    // Broken variant: the same restore, and an instance that keeps no revocation file — the stolen device is served again.
    restore();
    const forgetful = await PgLockstepHub.start({ database: url, store: { kekFile, poolSize: 2, revocationFile: false }, tcp: { port: 0 }, tickMs: 20, controlPollMs: 100 });
    const back = deviceOn(forgetful, provisioned);
    try {
      expect(forgetful.hasDevice(provisioned.record.deviceId)).toBe(true);
      back.start();
      await until(() => forgetful.deviceState(provisioned.record.deviceId).connected, 'the revoked device back online');
    } finally {
      back.stop();
      await forgetful.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test('recover, enrol and static-key with --db postgres://: the tier\'s static keys beside its KEK file, the shared request table', async () => {
  const url = await freshDatabase(cluster);
  const { dir, kekFile } = keyringFolder('lockstep-pgrec-');
  try {
    // provision --out gives the device a credential for the tier's current static key (created beside the keyring).
    const out = await hubAsync('provision', '--db', url, '--kek-file', kekFile, '--out', join(dir, 'device'));
    expect(out.status).toBe(0);
    const credentialed = JSON.parse(out.stdout.trim()) as { deviceId: string; hubStaticId?: number };
    expect(credentialed.hubStaticId).toBe(1);
    const plain = JSON.parse((await hubAsync('provision', '--db', url, '--kek-file', kekFile)).stdout.trim()) as { deviceId: string };
    const status = JSON.parse((await hubAsync('static-key', 'status', '--db', url, '--kek-file', kekFile)).stdout) as { file: string; current: number; keys: { id: number; devices: number }[] };
    expect(status).toMatchObject({ file: `${kekFile}.static`, current: 1, keys: [{ id: 1, devices: 1 }] });
    const rotated = await hubAsync('static-key', 'rotate', '--db', url, '--kek-file', kekFile);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ file: `${kekFile}.static`, current: 2 });
    expect(rotated.stderr).toContain('every instance');
    const retire = await hubAsync('static-key', 'retire', '1', '--db', url, '--kek-file', kekFile);
    expect([retire.status, retire.stderr]).toEqual([1, expect.stringContaining('STATIC_KEY_IN_USE')]);
    // An instance started on this keyring holds both pairs.
    const instance = await PgLockstepHub.start({ database: url, store: { kekFile, poolSize: 2 }, tcp: { port: 0 }, tickMs: 20, controlPollMs: 100 });
    try {
      expect(instance.staticKeyIds).toEqual({ current: 2, ids: [1, 2] });
      const enrol = await hubAsync('enrol', plain.deviceId, '--db', url, '--kek-file', kekFile);
      expect([enrol.status, enrol.stderr]).toEqual([0, expect.stringContaining('armed')]);
      expect((await hubAsync('enrol', credentialed.deviceId, '--db', url, '--kek-file', kekFile)).stderr).toContain('enrolled already');
      expect((await sql(url, 'SELECT enrolment FROM devices WHERE device_id = $1', [plain.deviceId])).rows[0].enrolment).toBe('armed');
      expect((await hubAsync('recover', '--db', url, '--kek-file', kekFile, '--json')).stdout).toBe('');
      const none = await hubAsync('recover', credentialed.deviceId, '--db', url, '--kek-file', kekFile);
      expect([none.status, none.stderr]).toEqual([1, expect.stringContaining('no recovery request recorded')]);
      // A request recorded by any instance (policy approve) is listed and approved from the CLI.
      await instance.store.decideRecovery({ deviceId: credentialed.deviceId, newKeyId: 5, claimedActive: 3, claimedFuture: 4 }, recoveryPolicy({ mode: 'approve' }), Date.now());
      const listed = (await hubAsync('recover', '--db', url, '--kek-file', kekFile, '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { deviceId: string; approvedAt: string | null });
      expect(listed).toEqual([expect.objectContaining({ deviceId: credentialed.deviceId, approvedAt: null })]);
      expect((await hubAsync('recover', credentialed.deviceId, '--db', url, '--kek-file', kekFile)).stderr).toContain('approved');
      expect((await instance.recoveryRequests())[0]?.approvedBy).toMatch(/^cli:/);
    } finally {
      await instance.close();
    }
    // Without a file to keep them beside (an inline keyring) and no --static-key-file, the commands say what to give.
    const inline = await hubAsync('static-key', 'status', '--db', url);
    expect([inline.status, inline.stderr]).toEqual([1, expect.stringContaining('--static-key-file')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
