/**
 * The operator API, metrics and dashboard (docs/HUB.md §12) on two instances
 * of a PostgreSQL tier (§13.7): every route needs a token; what one instance
 * is asked reaches the instance serving the device (a rotation through the
 * durable request, a revocation through revoked_devices, provisioning through
 * the poll); the recovery routes read the shared tables; /metrics adds the
 * lease and database figures — leases taken and lost, writes fenced out (a
 * lease taken behind the instance's back makes its next write fail its fence:
 * the counter moves), the LISTEN connection's state and backoff (its session
 * terminated: down, then up again) — with bounded labels; no response carries
 * a key or a token.
 */
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import parsePrometheus from 'parse-prometheus-text-format';
import { toHex } from '../modules/bytes';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { newToken } from '../tools/hub/http/options';
import { startOperatorApi } from '../tools/hub/http/server';
import { silentLogger } from '../tools/hub/log';
import { Keyring } from '../tools/hub/kek';
import { PgLockstepHub } from '../tools/hub/postgres/hub';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { apiClient, routesOpenWithoutToken, secretForms, seriesCount, unboundedSeries } from './support/http';
import { freshDatabase, sql, startCluster } from './support/postgres';

const admin = newToken('ops-admin', 'admin');
const reader = newToken('dash-read', 'read');
const tokens = [admin.config, reader.config];
const keyring = Keyring.ephemeral();

let cluster: ThrowawayCluster;
let url: string;
let dir: string;
let one: PgLockstepHub;
let two: PgLockstepHub;
const devices: SimulatedDevice[] = [];
const secrets = new Set<string>([admin.token, reader.token]);

function noteKeys(): void {
  for (const hub of [one, two]) {
    for (const id of hub?.deviceIds ?? []) {
      const keys = hub.deviceKeys(id);
      if (keys.active.key.some((b) => b !== 0)) secrets.add(toHex(keys.active.key));
      if (keys.pending?.key !== undefined) secrets.add(toHex(keys.pending.key));
    }
  }
}

const client = apiClient(() => apiOf(one), noteKeys);
const call = client.call;
const apiOf = (hub: PgLockstepHub): string => `http://127.0.0.1:${hub.apiAddress?.port as number}`;

async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function instance(controlPollMs: number): Promise<PgLockstepHub> {
  return PgLockstepHub.start({
    database: url,
    store: { keyring, poolSize: 4, revocationFile: join(dir, 'tier.revoked') },
    tcp: { port: 0 },
    tickMs: 20,
    controlPollMs,
    http: { port: 0, tokens },
  });
}

/** A device served by instance one (its connections go there). */
async function addDevice(): Promise<SimulatedDevice> {
  const provisioned = provisionSimulatedDevice();
  await one.provision(provisioned.record);
  secrets.add(toHex(provisioned.record.active.key));
  const device = new SimulatedDevice(provisioned, { endpoint: () => ({ host: '127.0.0.1', port: one.addresses[0]?.port as number }), host: { reconnectInitialMs: 20, reconnectMaxMs: 100 } });
  devices.push(device);
  device.start();
  return device;
}

async function scrape(hub: PgLockstepHub): Promise<{ families: ReturnType<typeof parsePrometheus>; value: (name: string, labels?: Record<string, string>) => number; type: (name: string) => string | undefined }> {
  const response = await call('GET', '/metrics', { token: reader.token, base: apiOf(hub) });
  expect(response.status).toBe(200);
  const families = parsePrometheus(response.text);
  const byName = new Map(families.map((f) => [f.name, f]));
  return {
    families,
    type: (name) => byName.get(name)?.type,
    value: (name, labels = {}) => Number(byName.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? NaN),
  };
}

beforeAll(async () => {
  cluster = await startCluster();
  url = await freshDatabase(cluster);
  dir = mkdtempSync(join(tmpdir(), 'lockstep-http-pg-'));
  // Instance one polls rarely, so that a lease taken behind its back is found by its next write's fence first (the metrics test).
  one = await instance(2000);
  two = await instance(100);
  for (let i = 0; i < 3; i++) await addDevice();
  await until('devices online', () => devices.every((d) => d.host.online));
}, 60_000);

afterAll(async () => {
  for (const device of devices) device.stop();
  await one?.close();
  await two?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('every route of an instance\'s API needs a token; the dashboard files are served; ready and stats answer from the database', async () => {
  expect(one.apiAddress).toMatchObject({ host: '127.0.0.1', tls: false });
  // The route table of an API on an instance (the same routes the instances started with).
  const probe = await startOperatorApi(two, { port: 0, tokens }, silentLogger);
  try {
    expect(probe.routes.length).toBeGreaterThan(20);
    expect(await routesOpenWithoutToken(probe, `http://127.0.0.1:${probe.address.port}`, call, devices[0]?.deviceId as string, admin.token)).toEqual([]);
  } finally {
    await probe.close();
  }
  const page = await call('GET', '/dashboard/', { base: apiOf(two) });
  expect(page.status).toBe(200);
  expect(page.text).toContain('<html');
  for (const hub of [one, two]) {
    expect((await call('GET', '/api/v1/ready', { token: reader.token, base: apiOf(hub) })).json).toEqual({ ready: true, listeners: 1, devices: 3 });
  }
  const stats = (await call('GET', '/api/v1/stats', { token: reader.token })).json;
  expect(stats).toMatchObject({ devicesOnline: 3, devices: 3 });
});

test('an instance\'s API reaches the instance serving the device: rotate (durable request), provision (poll), revoke (every instance drops it; the revocation file has it)', async () => {
  const id = devices[0]?.deviceId as string;
  const before = one.deviceState(id).activeKeyId;
  const queued = await call('POST', `/api/v1/devices/${id}/rotate`, { token: admin.token, base: apiOf(two) });
  expect(queued.json).toEqual({ deviceId: id, outcome: 'queued' });
  await until('rotated by instance one', () => one.deviceState(id).activeKeyId === before + 1 && one.deviceState(id).pendingKeyId === undefined);
  const direct = await call('POST', `/api/v1/devices/${devices[1]?.deviceId as string}/rotate`, { token: admin.token });
  expect(direct.json.outcome).toBe('started');
  const detail = await call('GET', `/api/v1/devices/${id}`, { token: reader.token });
  expect(detail.json.device).toMatchObject({ deviceId: id, activeKeyId: before + 1, connection: 'online' });
  expect(detail.json.history.map((e: { actor: string; action: string }) => `${e.actor} ${e.action}`)).toContain('ops-admin device.rotate');

  const provisioned = await call('POST', '/api/v1/devices/provision', { token: admin.token, body: { count: 1 }, base: apiOf(two) });
  expect(provisioned.status).toBe(201);
  client.responses.pop(); // the one response that carries key material (its own new key)
  const fresh = provisioned.json.records[0].deviceId as string;
  await until('provisioned on instance two, known to instance one', () => one.hasDevice(fresh) && two.hasDevice(fresh));

  const victim = devices[2] as SimulatedDevice;
  const revoked = await call('POST', `/api/v1/devices/${victim.deviceId}/revoke`, { token: admin.token, body: { reason: 'stolen' }, base: apiOf(two) });
  expect(revoked.json).toMatchObject({ deviceId: victim.deviceId, actor: 'ops-admin', reason: 'stolen' });
  await until('dropped by instance one', () => !one.hasDevice(victim.deviceId) && !victim.host.online);
  expect((await call('POST', `/api/v1/devices/${victim.deviceId}/revoke`, { token: admin.token })).json.error.code).toBe('DEVICE_REVOKED');
  expect((await call('GET', `/api/v1/devices/${victim.deviceId}`, { token: reader.token })).json.error.code).toBe('DEVICE_REVOKED');
  expect((await call('GET', '/api/v1/revocations', { token: reader.token })).json.revocations.map((r: { deviceId: string }) => r.deviceId)).toEqual([victim.deviceId]);
  expect(readFileSync(join(dir, 'tier.revoked'), 'utf8')).toContain(victim.deviceId);
  const listed = await call('GET', '/api/v1/devices?limit=100', { token: reader.token, base: apiOf(two) });
  expect(listed.json.devices.map((d: { deviceId: string }) => d.deviceId)).not.toContain(victim.deviceId);
  expect(listed.json.fleet.devices).toBe(3);
});

test('recovery routes on an instance: the tier\'s policy and static key, the shared request table; approving nothing is refused', async () => {
  const recovery = (await call('GET', '/api/v1/recovery', { token: reader.token, base: apiOf(two) })).json;
  expect(recovery).toEqual({ policy: { mode: 'auto', perDeviceLimit: 3, windowSeconds: 3600, hubStaticId: null }, requests: [], recent: [] });
  const id = devices[0]?.deviceId as string;
  const approve = await call('POST', `/api/v1/devices/${id}/recovery/approve`, { token: admin.token });
  expect([approve.status, approve.json.error.code]).toEqual([409, 'NO_RECOVERY_REQUEST']);
  expect((await call('POST', '/api/v1/devices/00000000000000ee/recovery/approve', { token: admin.token })).json.error.code).toBe('UNKNOWN_DEVICE');
});

test('/metrics of an instance: the hub\'s families plus leases, fenced-out writes, lease losses and the database connection\'s state; labels bounded', async () => {
  const first = await scrape(one);
  for (const [name, type] of [
    ['lockstep_rotations_total', 'COUNTER'], ['lockstep_commit_duration_seconds', 'HISTOGRAM'], ['lockstep_kek_operations_total', 'COUNTER'],
    ['lockstep_leases_taken_total', 'COUNTER'], ['lockstep_leases_lost_total', 'COUNTER'], ['lockstep_lease_refused_total', 'COUNTER'], ['lockstep_lease_failures_total', 'COUNTER'],
    ['lockstep_writes_fenced_out_total', 'COUNTER'], ['lockstep_database_errors_total', 'COUNTER'], ['lockstep_leases_held', 'GAUGE'],
    ['lockstep_connections_awaiting_lease', 'GAUGE'], ['lockstep_database_listening', 'GAUGE'], ['lockstep_database_backoff_seconds', 'GAUGE'], ['lockstep_database_pool_connections', 'GAUGE'],
  ] as const) expect([name, first.type(name)]).toEqual([name, type]);
  const stats = one.stats();
  expect(first.value('lockstep_leases_taken_total')).toBe(stats.leasesTaken);
  expect(first.value('lockstep_leases_taken_total')).toBeGreaterThanOrEqual(3);
  expect(first.value('lockstep_leases_held')).toBe(2);
  expect(first.value('lockstep_database_listening')).toBe(1);
  expect(first.value('lockstep_database_backoff_seconds')).toBe(0);
  expect(first.value('lockstep_database_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1);
  expect(first.value('lockstep_kek_operations_total', { operation: 'wrap' })).toBeGreaterThan(0);
  expect((await scrape(two)).value('lockstep_leases_held')).toBe(0);

  // A lease taken behind instance one's back (epoch moved, no notification): its next write fails the fence.
  const id = devices[0]?.deviceId as string;
  const fencedBefore = first.value('lockstep_writes_fenced_out_total');
  const lostBefore = first.value('lockstep_leases_lost_total');
  for (let attempt = 0; attempt < 3 && one.stats().fencedOut === fencedBefore; attempt++) {
    await until('served by instance one', () => one.leasedDevices.includes(id) && one.deviceState(id).connected === true);
    await sql(url, 'UPDATE devices SET epoch = epoch + 1 WHERE device_id = $1', [id]);
    await call('POST', `/api/v1/devices/${id}/rotate`, { token: admin.token });
    await until('the write settled', () => one.deviceState(id).persisting === false);
  }
  const fenced = await scrape(one);
  expect(fenced.value('lockstep_writes_fenced_out_total')).toBeGreaterThan(fencedBefore);
  expect(fenced.value('lockstep_leases_lost_total')).toBeGreaterThan(lostBefore);
  expect(fenced.value('lockstep_writes_fenced_out_total')).toBe(one.stats().fencedOut);

  // The LISTEN sessions terminated: the state goes down (with its backoff) and comes back.
  await sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
  let sawDown = false;
  await until('listening again after being down', async () => {
    const now = await scrape(one);
    if (now.value('lockstep_database_listening') === 0) {
      sawDown = true;
      expect(now.value('lockstep_database_backoff_seconds')).toBeGreaterThan(0);
    }
    return sawDown && now.value('lockstep_database_listening') === 1;
  });
  const last = await scrape(one);
  expect(unboundedSeries(last.families)).toEqual([]);
  expect(seriesCount(last.families)).toBe(seriesCount(fenced.families));
  await until('back in sync', () => devices.slice(0, 2).every((d) => d.host.online));
});

// Last: every response body of this file, scanned for every key the instances held and for the tokens.
test('no response carried key material or a token', () => {
  noteKeys();
  const forms = secretForms(secrets);
  expect(client.responses.length).toBeGreaterThan(40);
  expect(client.responses.filter((r) => forms.some((f) => r.body.includes(f))).map((r) => r.what)).toEqual([]);
});
