/**
 * Regression (issue: one seam): `send()` of a payload the core cannot take,
 * while the device's commit is outstanding, used to return an id at once and
 * throw later inside the group commit (an uncaught exception in a
 * setImmediate), leaving the rest of that batch never `persisted()`. Now the
 * core answers at the call: a typed error, and nothing queued. On both
 * backends (a SQLite hub, a PostgreSQL instance: the same core and pipeline,
 * two group commits).
 */
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { MAX_APP_PAYLOAD_BYTES } from '../modules/protocol/constants';
import { BACKENDS, useBackends } from './support/backends';

const both = useBackends();

async function until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test.each(BACKENDS)('%s: an oversized send during a commit is refused at the call; the batch still completes', async (backend) => {
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  both.later(() => {
    process.off('uncaughtException', onUncaught);
  });
  const hub = await both.hub(await both.database(backend), { tickMs: 20, rotation: { intervalMs: 0 } });
  const devices: SimulatedDevice[] = [];
  for (const provisioned of [provisionSimulatedDevice(), provisionSimulatedDevice()]) {
    await hub.provision(provisioned.record);
    const device = new SimulatedDevice(provisioned, {
      endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
      host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
    });
    both.later(() => device.stop());
    device.start();
    devices.push(device);
  }
  await until(() => devices.every((d) => d.host.online && hub.deviceState(d.deviceId).connected), 'devices online');
  const [first, second] = devices as [SimulatedDevice, SimulatedDevice];
  // Two rotations in one turn: one group-commit batch with both devices' pending keys (awaiting a settled rotate() yields microtasks only).
  expect(await hub.rotate(first.deviceId)).toBe('started');
  expect(await hub.rotate(second.deviceId)).toBe('started');
  expect(hub.deviceState(first.deviceId).persisting).toBe(true);
  let refused: unknown;
  try {
    hub.send(first.deviceId, new Uint8Array(MAX_APP_PAYLOAD_BYTES + 1));
  } catch (error) {
    refused = error;
  }
  expect(refused).toMatchObject({ code: 'LOCAL_PAYLOAD_TOO_LARGE' });
  // Both rotations of the batch complete: nothing was lost inside the commit.
  await until(() => devices.every((d) => d.host.keys.active.id === 2), 'both rotations confirmed');
  expect(uncaught).toEqual([]);
  expect(hub.deviceState(first.deviceId).outboxLength).toBe(0);
});
