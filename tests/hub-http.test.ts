/**
 * The operator API over real HTTP on loopback (tools/hub/http/, docs/HUB.md
 * §7): every route needs a token (enumerated from the server's own route
 * table; a broken variant with a data route marked public is caught), scopes
 * are enforced, bad bodies get typed errors and change nothing, no response
 * carries a key, revocation erases keys / closes connections / refuses
 * later ones (API and CLI), the audit trail is append-only and holds no key
 * material, metrics parse as Prometheus text with bounded label
 * cardinality, the rate limit and the TLS listener work.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import parsePrometheus from 'parse-prometheus-text-format';
import { Counter, Registry } from 'prom-client';
import { toHex } from '../modules/bytes';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { checkDetail } from '../tools/hub/audit';
import { createDevCertificate } from '../tools/hub/cert';
import { hashToken, newToken } from '../tools/hub/http/options';
import { API_ERROR_CODES } from '../tools/hub/http/schemas';
import { startOperatorApi, type ApiExtensions, type RunningApi } from '../tools/hub/http/server';
import { silentLogger } from '../tools/hub/log';
import { toHubRecordJson } from '../tools/hub/records';
import { LockstepHub } from '../tools/hub/server';
import { apiClient, DASHBOARD_FILES, routesOpenWithoutToken as openRoutes, secretForms, seriesCount, unboundedSeries } from './support/http';

const run = promisify(execFile);
const admin = newToken('ops-admin', 'admin');
const reader = newToken('dash-read', 'read');
const tokens = [admin.config, reader.config];

let dir: string;
let hub: LockstepHub;
let api: RunningApi;
let base: string;
const devices: SimulatedDevice[] = [];
/** Every key (hex) the hub held while the tests ran, and the tokens: no response may contain one. */
const secrets = new Set<string>([admin.token, reader.token]);

function noteKeys(): void {
  for (const id of hub.deviceIds) {
    const keys = hub.deviceKeys(id);
    secrets.add(toHex(keys.active.key));
    if (keys.pending?.key !== undefined) secrets.add(toHex(keys.pending.key));
    if (keys.pending?.dh !== undefined) secrets.add(toHex(keys.pending.dh.privateKey)); // the hub's ephemeral X25519 private key (dh mode)
  }
}

const client = apiClient(() => base, noteKeys);
const call = client.call;
const responses = client.responses;

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function addDevice(): SimulatedDevice {
  const provisioned = provisionSimulatedDevice();
  hub.provision(provisioned.record);
  secrets.add(toHex(provisioned.record.active.key));
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 100 },
  });
  devices.push(device);
  device.start();
  return device;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-http-'));
  hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, tickMs: 50, controlPollMs: 100 });
  hub.on('rotationStarted', noteKeys);
  hub.on('keyConfirmed', noteKeys);
  api = await startOperatorApi(hub, { port: 0, tokens }, silentLogger);
  base = `http://127.0.0.1:${api.address.port}`;
  for (let i = 0; i < 3; i++) addDevice();
  await until(() => devices.every((d) => d.host.online), 'devices online');
});

afterAll(async () => {
  for (const device of devices) device.stop();
  await api.close();
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

// ---- Authentication on every route ----

/** Requests every route the server registered without a token and with a wrong one; returns the routes that answered anything but 401. */
function routesOpenWithoutToken(server: RunningApi, at: string): Promise<string[]> {
  return openRoutes(server, at, call, hub.deviceIds[0] as string, admin.token);
}

test('every route the server registered needs a token: 401 UNAUTHORIZED without, with a wrong one, with a truncated one', async () => {
  expect(api.routes.length).toBeGreaterThan(15);
  expect(await routesOpenWithoutToken(api, base)).toEqual([]);
  // The only public routes are the dashboard's static files, and they hold no device data.
  const publicRoutes = api.routes.filter((r) => r.scope === 'public').map((r) => r.url);
  expect(publicRoutes.sort()).toEqual([...DASHBOARD_FILES].sort());
  for (const path of DASHBOARD_FILES.slice(1)) {
    const response = await call('GET', path);
    expect(response.status).toBe(200);
    for (const id of hub.deviceIds) expect(response.text).not.toContain(id);
  }
  // Unknown paths: 401 without a token (nothing to probe), 404 NOT_FOUND with one.
  expect((await call('GET', '/api/v1/nothing')).status).toBe(401);
  expect((await call('GET', '/api/v1/nothing', { token: reader.token })).json.error.code).toBe('NOT_FOUND');
});

test('broken variant: a data route marked public by mistake is caught by the same enumeration; a route with no scope needs admin', async () => {
  const broken: ApiExtensions = {
    register: (app) => {
      app.get('/api/v1/debug/devices', { config: { scope: 'public' } }, async () => ({ devices: hub.deviceIds }));
      app.get('/api/v1/debug/unscoped', async () => ({ ok: true }));
    },
  };
  const variant = await startOperatorApi(hub, { port: 0, tokens, dashboard: false }, silentLogger, broken);
  try {
    const at = `http://127.0.0.1:${variant.address.port}`;
    expect(await routesOpenWithoutToken(variant, at)).toEqual(['GET /api/v1/debug/devices (200)', 'GET /api/v1/debug/devices (200)', 'GET /api/v1/debug/devices (200)']);
    expect((await call('GET', '/api/v1/debug/unscoped', { token: reader.token, base: at })).status).toBe(403);
    expect((await call('GET', '/api/v1/debug/unscoped', { token: admin.token, base: at })).status).toBe(200);
  } finally {
    await variant.close();
  }
});

test('scopes: a read token reads everything and changes nothing (403 FORBIDDEN on every admin route)', async () => {
  const id = hub.deviceIds[0] as string;
  const before = hub.deviceState(id).activeKeyId;
  for (const route of api.routes.filter((r) => r.scope === 'admin')) {
    const response = await call(route.method, route.url.replace(':id', id), { token: reader.token, body: {} });
    expect([route.url, response.status, response.json?.error?.code]).toEqual([route.url, 403, 'FORBIDDEN']);
  }
  for (const route of api.routes.filter((r) => r.scope === 'read')) {
    const response = await call(route.method, route.url.replace(':id', id), { token: reader.token });
    expect([route.url, response.status]).toEqual([route.url, 200]);
  }
  expect(hub.deviceState(id).activeKeyId).toBe(before);
  expect(hub.deviceState(id).pendingKeyId).toBeUndefined();
  expect(api.routes.filter((r) => r.scope === 'admin').map((r) => `${r.method} ${r.url}`).sort()).toEqual([
    'POST /api/v1/devices/:id/recovery/approve', // issue 14
    'POST /api/v1/devices/:id/revoke',
    'POST /api/v1/devices/:id/rotate',
    'POST /api/v1/devices/import',
    'POST /api/v1/devices/provision',
    'POST /api/v1/rotations',
  ]);
});

// ---- Bad input ----

test('bad bodies, queries and parameters: a typed error with a stable code, and no state changed', async () => {
  const id = hub.deviceIds[0] as string;
  const keysBefore = hub.deviceIds.map((d) => hub.deviceState(d).activeKeyId);
  const auditBefore = hub.store.readAudit({ limit: 1 })[0]?.seq ?? 0;
  const record = toHubRecordJson(provisionSimulatedDevice().record);
  const cases: [string, string, { body?: unknown; raw?: string; contentType?: string }, number, string][] = [
    ['POST', '/api/v1/rotations', { body: {} }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { deviceIds: [] } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { deviceIds: ['xyz'] } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { deviceIds: [id, id] } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { deviceIds: [id], extra: 1 } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { deviceIds: [id], filter: 'all' } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { body: { filter: 'everything' } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { raw: '{"deviceIds": [' }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/rotations', { raw: 'deviceIds=1', contentType: 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['POST', '/api/v1/rotations', { raw: `{"deviceIds": ["${'a'.repeat(1_100_000)}"]}` }, 413, 'PAYLOAD_TOO_LARGE'],
    ['POST', `/api/v1/devices/${id}/revoke`, { body: { reason: 'x'.repeat(201) } }, 400, 'BAD_REQUEST'],
    ['POST', `/api/v1/devices/${id}/revoke`, { body: { reason: 'bad\u0007bell' } }, 400, 'BAD_REQUEST'],
    ['POST', `/api/v1/devices/${id}/revoke`, { body: { why: 'x' } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/not-hex/rotate', {}, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/00000000000000ff/rotate', {}, 404, 'UNKNOWN_DEVICE'],
    ['POST', '/api/v1/devices/provision', { body: { count: 0 } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/provision', { body: { count: 101 } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/provision', { body: { count: '1; DROP TABLE devices' } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/import', { body: { records: [{ ...record, key: record.key.slice(2) }] } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/import', { body: { records: [{ ...record, keyId: 0 }] } }, 400, 'BAD_REQUEST'],
    ['POST', '/api/v1/devices/import', { body: { records: [record, record] } }, 409, 'ALREADY_PROVISIONED'],
    ['POST', '/api/v1/devices/import', { body: { records: [{ ...record, deviceId: id }] } }, 409, 'ALREADY_PROVISIONED'],
    ['GET', '/api/v1/devices?limit=0', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/devices?limit=501', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/devices?filter=nope', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/devices?q=zz', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/devices?sort=id', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/audit?limit=-1', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/audit?action=DROP%20TABLE', {}, 400, 'BAD_REQUEST'],
    ['GET', '/api/v1/devices/0000000000000001', {}, 404, 'UNKNOWN_DEVICE'],
  ];
  for (const [method, path, options, status, code] of cases) {
    const response = await call(method, path, { token: admin.token, ...options });
    expect([method, path.slice(0, 60), response.status, response.json?.error?.code]).toEqual([method, path.slice(0, 60), status, code]);
    expect(API_ERROR_CODES).toContain(response.json.error.code);
    expect(typeof response.json.error.message).toBe('string');
  }
  expect(hub.deviceIds.map((d) => hub.deviceState(d).activeKeyId)).toEqual(keysBefore);
  expect(hub.deviceIds.every((d) => hub.deviceState(d).pendingKeyId === undefined)).toBe(true);
  expect(hub.store.getSummary(record.deviceId)).toBeUndefined();
  // Refused actions are audited (import conflicts), never a successful change.
  const since = hub.store.readAudit({ limit: 500 }).filter((e) => e.seq > auditBefore);
  expect(since.every((e) => e.outcome === 'refused' && e.action === 'device.import')).toBe(true);
});

// ---- Rotation, provisioning, revocation, audit ----

test('rotate one and a selection: the key id increases, each action is audited under the token id', async () => {
  const [a, b, c] = hub.deviceIds as [string, string, string];
  const before = [a, b, c].map((id) => hub.deviceState(id).activeKeyId);
  const one = await call('POST', `/api/v1/devices/${a}/rotate`, { token: admin.token });
  expect(one.json).toEqual({ deviceId: a, outcome: 'started' });
  await until(() => hub.deviceState(a).activeKeyId === (before[0] as number) + 1 && hub.deviceState(a).pendingKeyId === undefined, 'a rotated');
  const many = await call('POST', '/api/v1/rotations', { token: admin.token, body: { deviceIds: [b, c, '00000000000000ff'] } });
  expect(many.json.results).toEqual([
    { deviceId: b, outcome: 'started' },
    { deviceId: c, outcome: 'started' },
    { deviceId: '00000000000000ff', outcome: 'refused', code: 'UNKNOWN_DEVICE' },
  ]);
  await until(() => [b, c].every((id, i) => hub.deviceState(id).activeKeyId === (before[i + 1] as number) + 1 && hub.deviceState(id).pendingKeyId === undefined), 'b, c rotated');
  const detail = await call('GET', `/api/v1/devices/${a}`, { token: reader.token });
  expect(detail.json.device).toMatchObject({ deviceId: a, activeKeyId: (before[0] as number) + 1, pendingKeyId: null, connection: 'online', status: 'ok', rotations: 1 });
  await until(() => hub.store.readAudit({ deviceId: a, action: 'rotation.confirm' }).length > 0, 'confirmation audited');
  const history = (await call('GET', `/api/v1/devices/${a}`, { token: reader.token })).json.history as { actor: string; action: string; outcome: string; detail?: { keyId?: number } }[];
  expect(history.filter((e) => /rotat/.test(e.action)).map((e) => [e.actor, e.action, e.outcome]).reverse()).toEqual([
    ['ops-admin', 'device.rotate', 'started'],
    ['hub', 'rotation.start', 'ok'],
    ['hub', 'rotation.confirm', 'ok'],
  ]);
  expect(history.find((e) => e.action === 'rotation.confirm')?.detail).toEqual({ keyId: (before[0] as number) + 1 });
  const audit = await call('GET', '/api/v1/audit?action=device.rotate&limit=10', { token: reader.token });
  expect(audit.json.entries.map((e: { deviceId: string }) => e.deviceId).sort()).toEqual(['00000000000000ff', a, b, c].sort());
});

test('provision returns the new records once (no-store); import takes records and never echoes a key; both are served', async () => {
  const provisioned = await call('POST', '/api/v1/devices/provision', { token: admin.token, body: { count: 2 } });
  expect(provisioned.status).toBe(201);
  expect(provisioned.headers.get('cache-control')).toBe('no-store');
  const records = provisioned.json.records as { deviceId: string; keyId: number; key: string }[];
  expect(records).toHaveLength(2);
  responses.pop(); // the one response that carries key material: its own two initial keys, checked here
  for (const r of records) {
    expect(r.keyId).toBe(1);
    expect(provisioned.text.match(/[0-9a-f]{128}/g)).toEqual(records.map((x) => x.key));
  }
  const imported = provisionSimulatedDevice();
  const response = await call('POST', '/api/v1/devices/import', { token: admin.token, body: { records: [imported.recordJson] } });
  expect(response.status).toBe(201);
  expect(response.json).toEqual({ imported: [imported.record.deviceId] });
  secrets.add(imported.recordJson.key);
  await until(() => [...records.map((r) => r.deviceId), imported.record.deviceId].every((id) => hub.hasDevice(id)), 'served after the control poll');
  const actions = hub.store.readAudit({ limit: 3 }).map((e) => [e.actor, e.action, e.outcome]);
  expect(actions).toEqual([['ops-admin', 'device.import', 'ok'], ['ops-admin', 'device.provision', 'ok'], ['ops-admin', 'device.provision', 'ok']]);
});

test('revoke: keys erased from memory and from every file, the connection closed, later connections refused, the id never provisioned again', async () => {
  const device = addDevice();
  await until(() => device.host.online, 'online');
  const id = device.deviceId;
  const key = hub.deviceKeys(id).active.key;
  const wrapped = hub.store.wrappedForms(id)!.active.bytes;
  const refused: string[] = [];
  hub.on('rejected', (event) => {
    if (event.code === 'UNKNOWN_DEVICE') refused.push(event.code);
  });
  const response = await call('POST', `/api/v1/devices/${id}/revoke`, { token: admin.token, body: { reason: 'stolen' } });
  expect(response.status).toBe(200);
  expect(response.json).toMatchObject({ deviceId: id, actor: 'ops-admin', reason: 'stolen', lastKeyId: 1 });
  expect(hub.hasDevice(id)).toBe(false);
  expect(hub.store.getSummary(id)).toBeUndefined();
  await until(() => !device.host.online, 'connection closed');
  await until(() => refused.length >= 2, 'reconnections refused as an unknown device');
  expect(device.host.online).toBe(false);
  // No file holds the key or its wrapped form (secure_delete + WAL checkpoint).
  for (const file of ['hub.db', 'hub.db-wal']) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    const bytes = readFileSync(path);
    expect(bytes.indexOf(Buffer.from(wrapped))).toBe(-1);
    expect(bytes.indexOf(Buffer.from(key))).toBe(-1);
  }
  expect((await call('GET', `/api/v1/devices/${id}`, { token: reader.token })).json.error.code).toBe('DEVICE_REVOKED');
  expect((await call('POST', `/api/v1/devices/${id}/revoke`, { token: admin.token })).json.error.code).toBe('DEVICE_REVOKED');
  const reimport = await call('POST', '/api/v1/devices/import', { token: admin.token, body: { records: [{ deviceId: id, keyId: 1, key: toHex(key) }] } });
  responses.pop(); // (the request carried the key, not the response; the response is checked here)
  expect(reimport.text).not.toContain(toHex(key));
  expect(reimport.json.error.code).toBe('DEVICE_REVOKED');
  expect(() => hub.provision({ deviceId: id, active: { id: 1, key }, mode: 'classic' })).toThrow(/revoked/);
  const list = await call('GET', '/api/v1/revocations', { token: reader.token });
  expect(list.json.revocations.map((r: { deviceId: string }) => r.deviceId)).toContain(id);
  expect(hub.store.readAudit({ deviceId: id, action: 'device.revoke' }).map((e) => [e.actor, e.outcome])).toEqual([['ops-admin', 'alreadyRevoked'], ['ops-admin', 'ok']]);
});

test('revoke while the device\'s rotation is being committed: the commit is dropped, nothing fails, the rest of the fleet rotates', async () => {
  const device = addDevice();
  await until(() => device.host.online, 'online');
  const failures: string[] = [];
  hub.on('storageError', ({ deviceId }) => failures.push(deviceId));
  expect(hub.rotate(device.deviceId)).toBe('started'); // the pending key's commit is queued for this turn of the event loop
  const revocation = await hub.revoke(device.deviceId, 'test', 'race');
  expect(revocation?.lastKeyId).toBe(1);
  await until(() => !device.host.online, 'closed');
  expect(hub.store.getSummary(device.deviceId)).toBeUndefined();
  expect(failures).toEqual([]);
  const other = hub.deviceIds.find((id) => hub.deviceState(id).connected) as string;
  const before = hub.deviceState(other).activeKeyId;
  hub.rotate(other);
  await until(() => hub.deviceState(other).activeKeyId === before + 1, 'another device still rotates');
});

test('broken variant: a revocation without the WAL checkpoint leaves the wrapped key in hub.db-wal, and the scan finds it', async () => {
  const path = join(dir, 'variant.db');
  const { HubStore } = await import('../tools/hub/store');
  const store = new HubStore(path);
  try {
    const record = provisionSimulatedDevice().record;
    store.insertDevice(record, Date.now());
    await store.checkpointNow();
    const wrapped = Buffer.from(store.wrappedForms(record.deviceId)!.active.bytes);
    store.revokeDevice(record.deviceId, 'test', undefined, Date.now()); // what hub.revoke does, minus its checkpoint
    const inFiles = () => ['variant.db', 'variant.db-wal'].filter((f) => existsSync(join(dir, f)) && readFileSync(join(dir, f)).indexOf(wrapped) >= 0);
    expect(inFiles().length).toBeGreaterThan(0);
    expect(await store.checkpointNow()).toBe(true);
    expect(inFiles()).toEqual([]);
  } finally {
    store.close();
  }
});

test('revoke from the CLI: the serving hub drops the device within a poll; `audit` lists it', async () => {
  const device = addDevice();
  await until(() => device.host.online, 'online');
  const cli = ['node_modules/.bin/tsx', 'tools/hub/cli.ts'];
  const { stdout } = await run(cli[0] as string, [cli[1] as string, 'revoke', device.deviceId, '--db', join(dir, 'hub.db'), '--reason', 'decommissioned']);
  expect(JSON.parse(stdout)).toMatchObject({ deviceId: device.deviceId, reason: 'decommissioned', walCheckpointed: true });
  await until(() => !hub.hasDevice(device.deviceId) && !device.host.online, 'dropped by the serving hub');
  const audit = await run(cli[0] as string, [cli[1] as string, 'audit', '--db', join(dir, 'hub.db'), '--device', device.deviceId, '--json']);
  const entries = audit.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; actor: string });
  expect(entries[0]).toMatchObject({ action: 'device.revoke' });
  expect(entries[0]?.actor).toMatch(/^cli:/);
}, 30_000);

test('the audit trail is append-only in the database, and an entry cannot carry key material', () => {
  const db = new Database(join(dir, 'hub.db'));
  try {
    expect(() => db.prepare('UPDATE audit_log SET outcome = ? WHERE seq = 1').run('forged')).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
  } finally {
    db.close();
  }
  const key = [...secrets].find((s) => /^[0-9a-f]{128}$/.test(s)) as string;
  expect(() => checkDetail({ key })).toThrow(/longer than/);
  expect(() => hub.audit({ actor: 'x', action: 'leak', outcome: 'ok', detail: { note: key } })).toThrow(/longer than/);
  expect(checkDetail({ keyId: 3, code: 'BAD_TAG' })).toBe('{"keyId":3,"code":"BAD_TAG"}');
  const rows = hub.store.readAudit({ limit: 500 });
  expect(rows.length).toBeGreaterThan(10);
  for (const s of secrets) expect(JSON.stringify(rows)).not.toContain(s);
});

// ---- Metrics ----

/** Series whose label value looks like a device id (16 hex digits) or a key: unbounded cardinality. */
test('/metrics parses as Prometheus text: the hub\'s counters, gauges and histograms, consistent with its events; labels bounded', async () => {
  const scrape = async () => {
    const response = await call('GET', '/metrics', { token: reader.token });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    return parsePrometheus(response.text);
  };
  const families = await scrape();
  const byName = new Map(families.map((f) => [f.name, f]));
  const value = (name: string, labels: Record<string, string> = {}) =>
    Number(byName.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? NaN);
  const expected: [string, string][] = [
    ['lockstep_handshakes_total', 'COUNTER'],
    ['lockstep_rotations_total', 'COUNTER'],
    ['lockstep_rotation_latency_seconds', 'HISTOGRAM'],
    ['lockstep_rejected_frames_total', 'COUNTER'],
    ['lockstep_commits_total', 'COUNTER'],
    ['lockstep_commit_ops_total', 'COUNTER'],
    ['lockstep_commit_duration_seconds', 'HISTOGRAM'],
    ['lockstep_kek_operations_total', 'COUNTER'],
    ['lockstep_revocations_total', 'COUNTER'],
    ['lockstep_connections', 'GAUGE'],
    ['lockstep_sessions', 'GAUGE'],
    ['lockstep_devices', 'GAUGE'],
    ['lockstep_devices_pending', 'GAUGE'],
    ['lockstep_pending_oldest_age_seconds', 'GAUGE'],
    ['lockstep_http_requests_total', 'COUNTER'],
    ['process_cpu_seconds_total', 'COUNTER'],
  ];
  for (const [name, type] of expected) expect([name, byName.get(name)?.type]).toEqual([name, type]);
  const stats = hub.stats();
  expect(value('lockstep_rotations_total', { outcome: 'confirmed' })).toBe(stats.rotationsConfirmed);
  expect(value('lockstep_rotations_total', { outcome: 'started' })).toBe(stats.rotationsStarted);
  expect(value('lockstep_revocations_total')).toBe(3);
  expect(value('lockstep_devices')).toBe(hub.deviceIds.length);
  expect(value('lockstep_sessions')).toBe(stats.devicesOnline);
  expect(value('lockstep_rejected_frames_total', { code: 'UNKNOWN_DEVICE' })).toBeGreaterThanOrEqual(2);
  expect(value('lockstep_commit_ops_total')).toBe(stats.commitOps);
  expect(value('lockstep_kek_operations_total', { operation: 'wrap' })).toBeGreaterThan(0);
  const latency = byName.get('lockstep_rotation_latency_seconds')?.metrics[0];
  expect(Number(latency?.count)).toBe(stats.rotationsConfirmed);
  expect(unboundedSeries(families)).toEqual([]);
  // Cardinality does not grow with the fleet: 20 more devices and rotations, the same lockstep_* series.
  const series = seriesCount(families);
  for (let i = 0; i < 20; i++) hub.provision();
  for (const id of hub.deviceIds.slice(0, 3)) hub.rotate(id);
  await until(() => hub.deviceIds.slice(0, 3).every((id) => hub.deviceState(id).pendingKeyId === undefined), 'rotations done');
  const after = await scrape();
  expect(seriesCount(after)).toBe(series);
  expect(unboundedSeries(after)).toEqual([]);
});

test('broken variant: a metric labelled by device id is caught by the cardinality check', async () => {
  const registry = new Registry();
  const bad = new Counter({ name: 'lockstep_bad_rotations_total', help: 'per device (wrong)', labelNames: ['device'], registers: [registry] });
  for (const id of hub.deviceIds.slice(0, 3)) bad.labels(id).inc();
  expect(unboundedSeries(parsePrometheus(await registry.metrics()))).toEqual(['lockstep_bad_rotations_total{device}', 'lockstep_bad_rotations_total{device}', 'lockstep_bad_rotations_total{device}']);
});

// ---- Listing, OpenAPI, rate limit, TLS, options ----

test('the device list pages and filters (offline, pending, id prefix) and counts the fleet', async () => {
  const all = await call('GET', '/api/v1/devices?limit=5', { token: reader.token });
  expect(all.json.total).toBe(hub.deviceIds.length);
  expect(all.json.devices).toHaveLength(5);
  const page2 = await call('GET', '/api/v1/devices?limit=5&offset=5', { token: reader.token });
  expect(page2.json.devices[0].deviceId).toBe(hub.deviceIds[5]);
  const offline = await call('GET', '/api/v1/devices?filter=offline&limit=500', { token: reader.token });
  expect(offline.json.total).toBe(hub.deviceIds.filter((id) => !hub.deviceState(id).connected).length);
  expect(offline.json.fleet).toMatchObject({ devices: hub.deviceIds.length, online: hub.stats().devicesOnline });
  const id = hub.deviceIds[2] as string;
  const prefix = await call('GET', `/api/v1/devices?q=${id.slice(0, 12)}`, { token: reader.token });
  expect(prefix.json.devices.map((d: { deviceId: string }) => d.deviceId)).toEqual([id]);
  const pending = await call('GET', '/api/v1/devices?filter=pending', { token: reader.token });
  expect(pending.json.total).toBe(hub.deviceIds.filter((d) => hub.deviceState(d).pendingKeyId !== undefined).length);
});

test('OpenAPI 3 document generated from the route schemas: every API route, bearer security, request schemas', async () => {
  const doc = (await call('GET', '/api/v1/openapi.json', { token: reader.token })).json;
  expect(doc.openapi).toBe('3.0.3');
  expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
  const documented = Object.keys(doc.paths).sort();
  const apiRoutes = [...new Set(api.routes.filter((r) => r.url.startsWith('/api/v1/') && r.url !== '/api/v1/openapi.json').map((r) => r.url.replace(/:(\w+)/g, '{$1}')))].sort();
  expect(documented).toEqual(apiRoutes);
  expect(doc.paths['/api/v1/rotations'].post.requestBody.content['application/json'].schema.properties.deviceIds.maxItems).toBe(10000);
  expect(doc.paths['/api/v1/devices'].get.responses['200']).toBeDefined();
});

test('the rotations-per-minute series starts from the audit trail (an API started later, e.g. after a hub restart, shows the last 10 minutes)', async () => {
  const confirmed = hub.store.readAudit({ action: 'rotation.confirm', limit: 500 }).filter((e) => e.at > Date.now() - 590_000).length;
  expect(confirmed).toBeGreaterThan(3);
  const later = await startOperatorApi(hub, { port: 0, tokens, dashboard: false }, silentLogger);
  try {
    const rate = (await call('GET', '/api/v1/rotations/rate', { token: reader.token, base: `http://127.0.0.1:${later.address.port}` })).json;
    expect(rate.buckets).toHaveLength(60);
    expect(rate.buckets.reduce((n: number, b: { confirmed: number }) => n + b.confirmed, 0)).toBe(confirmed);
  } finally {
    await later.close();
  }
});

test('rate limit per client address, before authentication: 429 RATE_LIMITED', async () => {
  const limited = await startOperatorApi(hub, { port: 0, tokens, requestsPerMinute: 5, dashboard: false }, silentLogger);
  try {
    const at = `http://127.0.0.1:${limited.address.port}`;
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await call('GET', '/api/v1/health', { base: at, ...(i % 2 === 0 ? {} : { token: 'wrong' }) })).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    const last = await call('GET', '/api/v1/health', { base: at, token: reader.token });
    expect(last.status).toBe(429);
    expect(last.json.error.code).toBe('RATE_LIMITED');
  } finally {
    await limited.close();
  }
});

test('TLS listener: HTTPS with the hub\'s certificate; plain HTTP to it gets nothing', async () => {
  const cert = await createDevCertificate({ hosts: ['127.0.0.1'], days: 1 });
  const secure = await startOperatorApi(hub, { port: 0, tokens, tls: { cert: cert.certPem, key: cert.keyPem }, dashboard: false }, silentLogger);
  try {
    expect(secure.address.tls).toBe(true);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: secure.address.port, path: '/api/v1/session', ca: cert.caPem, headers: { authorization: `Bearer ${admin.token}` } }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    expect(JSON.parse(body)).toEqual({ tokenId: 'ops-admin', scope: 'admin' });
    await expect(fetch(`http://127.0.0.1:${secure.address.port}/api/v1/session`)).rejects.toThrow();
  } finally {
    await secure.close();
  }
});

test('HubOptions.http starts the API with the hub and stops it with the hub; token hashes only in the options', async () => {
  const other = await LockstepHub.start({ database: ':memory:', tcp: { port: 0 }, http: { port: 0, tokens: [reader.config] } });
  const address = other.apiAddress!;
  expect(reader.config.sha256).toBe(hashToken(reader.token));
  expect(JSON.stringify(reader.config)).not.toContain(reader.token);
  const ok = await fetch(`http://127.0.0.1:${address.port}/api/v1/ready`, { headers: { authorization: `Bearer ${reader.token}` } });
  expect(await ok.json()).toEqual({ ready: true, listeners: 1, devices: 0 });
  await other.close();
  await expect(fetch(`http://127.0.0.1:${address.port}/api/v1/ready`)).rejects.toThrow();
});

// Last: every response body of this file, scanned for every key the hub held and for the tokens.
test('no response carried key material or a token (hex, upper-case hex, base64)', () => {
  noteKeys();
  expect(responses.length).toBeGreaterThan(100);
  const forms = secretForms(secrets);
  const leaks = responses.filter((r) => forms.some((f) => r.body.includes(f))).map((r) => r.what);
  expect(leaks).toEqual([]);
  // The scan sees a key when one is there.
  expect(forms.some((f) => `{"x":"${[...secrets].find((s) => s.length === 128)}"}`.includes(f))).toBe(true);
});
