/**
 * The control poll of a PostgreSQL instance (docs/HUB.md §13.3): each
 * second it reads only the rows that ask something of it — a durable
 * rotation request, a mode change, a changed record — through a partial
 * index, and compares every lease it holds with the database only every
 * `leaseSweepMs` (and whenever its LISTEN session reconnects). These tests
 * write the rows as another process would but send no NOTIFY, so only the
 * poll can find them.
 */
import { Keyring } from '../tools/hub/kek';
import { PgLockstepHub } from '../tools/hub/postgres/hub';
import { ATTENTION_QUERY } from '../tools/hub/postgres/store';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { clusterPerFile, freshDatabase, sql } from './support/postgres';
import pg from 'pg';

const { cluster: theCluster, afterTest } = clusterPerFile();
const keyring = Keyring.ephemeral();

async function startHub(url: string, options: Partial<Parameters<typeof PgLockstepHub.start>[0]> = {}): Promise<PgLockstepHub> {
  const hub = await PgLockstepHub.start({ database: url, store: { keyring, poolSize: 2 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, ...options });
  afterTest(() => hub.close());
  return hub;
}

/** A classic device (its flash is formatted classic; the hub's row says so too), so that a move to dh is a change. */
async function onlineDevice(hub: PgLockstepHub): Promise<SimulatedDevice> {
  const provisioned = provisionSimulatedDevice();
  await hub.provision({ ...provisioned.record, mode: 'classic' });
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
  afterTest(() => device.stop());
  device.start();
  await until(() => hub.deviceIds.includes(device.deviceId) && hub.deviceState(device.deviceId).connected && hub.leasedDevices.includes(device.deviceId), 'device online');
  return device;
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a rotation request and a mode change written without a NOTIFY reach the serving instance through its poll', async () => {
  const url = await freshDatabase(theCluster());
  const hub = await startHub(url);
  const device = await onlineDevice(hub);
  expect(hub.deviceState(device.deviceId).mode).toBe('classic');
  await sql(url, 'UPDATE devices SET rotate_requested_at = $2 WHERE device_id = $1', [device.deviceId, Date.now()]);
  await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'the requested rotation');
  expect((await sql(url, 'SELECT rotate_requested_at FROM devices WHERE device_id = $1', [device.deviceId])).rows[0].rotate_requested_at).toBeNull();
  await sql(url, "UPDATE devices SET mode = 'dh', mode_changed_at = $2 WHERE device_id = $1", [device.deviceId, Date.now()]);
  await until(() => hub.deviceState(device.deviceId).mode === 'dh', 'the mode change');

  // Broken variant: an instance that does not poll (after its start) never learns of either.
  const brokenUrl = await freshDatabase(theCluster());
  const broken = await startHub(brokenUrl, { controlPollMs: 3_600_000 });
  const other = await onlineDevice(broken);
  await sql(brokenUrl, "UPDATE devices SET rotate_requested_at = $2, mode = 'dh', mode_changed_at = $2 WHERE device_id = $1", [other.deviceId, Date.now()]);
  await sleep(1500);
  expect(other.host.keys.active.id).toBe(1);
  expect(broken.deviceState(other.deviceId).mode).toBe('classic');
}, 30_000);

test('a lease taken while its NOTIFY was missed: the sweep finds it and the instance gives the device up; without the sweep it does not', async () => {
  // Another instance's lease, as its statement leaves the row, with no NOTIFY (a LISTEN session that was down).
  const takeElsewhere = (url: string, deviceId: string) => sql(url, "UPDATE devices SET epoch = epoch + 1, lease_owner = 'elsewhere' WHERE device_id = $1", [deviceId]);

  const url = await freshDatabase(theCluster());
  const hub = await startHub(url, { leaseSweepMs: 300 });
  const device = await onlineDevice(hub);
  await takeElsewhere(url, device.deviceId);
  await until(() => !hub.leasedDevices.includes(device.deviceId), 'the sweep gives the lease up', 5000);
  device.stop();

  // Broken variant: no sweep after the start. The instance keeps acting as if it held the lease (the fence still stops its writes).
  const brokenUrl = await freshDatabase(theCluster());
  const broken = await startHub(brokenUrl, { leaseSweepMs: 3_600_000 });
  const other = await onlineDevice(broken);
  await takeElsewhere(brokenUrl, other.deviceId);
  await sleep(2000); // 20 control polls
  expect(broken.leasedDevices).toEqual([other.deviceId]);
}, 40_000);

test("the poll's query is served by the partial index over the outstanding requests, not a scan of every device", async () => {
  const url = await freshDatabase(theCluster());
  await startHub(url); // migrates
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_seqscan = off'); // an empty table would be scanned anyway: ask whether the index can serve the query
    const plan = (await client.query(`EXPLAIN ${ATTENTION_QUERY}`, ['me'])).rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n');
    expect(plan).toContain('devices_attention');
    // Refuted on a predicate that is not the index's word for word: the planner cannot prove it implies the index's.
    const other = ATTENTION_QUERY.replace('record_changed_at IS NOT NULL)', 'last_seen_at IS NOT NULL)');
    expect(other).not.toBe(ATTENTION_QUERY);
    const otherPlan = (await client.query(`EXPLAIN ${other}`, ['me'])).rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n');
    expect(otherPlan).not.toContain('devices_attention');
    await client.query('ROLLBACK');
  } finally {
    await client.end();
  }
}, 30_000);
