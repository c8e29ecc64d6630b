/**
 * The real device core against the real hub core (docs/PROTOCOL.md §12):
 * a hub restored from a backup (it holds only key 3) and a device that
 * moved on (5, or 5 with a future 6) come back to one shared key N through
 * the recovery handshake and one reconnect, with the device's credential
 * and the hub's record of S_d — and with a hub whose static key is another,
 * nothing changes on the device.
 */
import { nodeAead } from '../hosts/node/crypto';
import { nodeKeyAgreement as ka } from '../hosts/node/key-agreement';
import type { RecoveryCredential, StaticKeyPair } from '../modules/crypto/recovery';
import { DeviceCore, type DeviceAction } from '../modules/device/device';
import { HubCore, type HubAction } from '../modules/hub/hub';
import { RecoveryStatus } from '../modules/protocol/constants';
import { toHex } from '../modules/bytes';
import { seededRandom } from '../tools/testing/deterministic-random';

const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const key = (fill: number) => new Uint8Array(64).fill(fill);
function pair(fill: number): StaticKeyPair {
  const privateKey = new Uint8Array(32).fill(fill);
  return { privateKey, publicKey: ka.x25519PublicKey(privateKey) };
}
const hubStatic = { id: 7, ...pair(0x42) };
const deviceStatic = pair(0x17);
const credential: RecoveryCredential = { device: deviceStatic, hubStaticId: 7, hubPublicKey: hubStatic.publicKey };

function setup(options: { hubKey?: typeof hubStatic; future?: boolean } = {}) {
  const hub = new HubCore({
    aead: nodeAead,
    random: seededRandom(1),
    keyAgreement: ka,
    devices: [{ deviceId: toHex(deviceId), mode: 'classic', active: { id: 3, key: key(3) }, devicePublicKey: deviceStatic.publicKey, hubStaticId: 7 }],
    recovery: { hubKeys: [options.hubKey ?? hubStatic], currentHubStaticId: 7 },
  });
  const device = new DeviceCore({
    deviceId,
    keys: { mode: 'classic', active: { id: 5, key: key(5) }, ...(options.future === true ? { future: { id: 6, key: key(6) } } : {}) },
    aead: nodeAead,
    random: seededRandom(2),
    keyAgreement: ka,
    credential,
  });
  return { hub, device };
}

/** One connection, pumped until both sides are quiet; persists complete at once; the host accepts every recovery request. */
function connect(hub: HubCore, device: DeviceCore, conn: number, now: number) {
  const toDevice: Uint8Array[] = [];
  const toHub: Uint8Array[] = [];
  let open = true;
  const hubEvents: string[] = [];
  const deviceEvents: string[] = [];
  let reconnectNow = false;
  const onHub = (actions: HubAction[]): void => {
    for (const a of actions) {
      if (a.type === 'transmit') toDevice.push(a.bytes);
      else if (a.type === 'close') open = false;
      else if (a.type === 'persist') onHub(hub.persisted(toHex(deviceId), now));
      else if (a.type === 'event') hubEvents.push(a.event.type);
      else if (a.type === 'recoveryRequest') onHub(hub.decideRecovery(a.connection, { status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0 }, now));
    }
  };
  const onDevice = (actions: DeviceAction[]): void => {
    for (const a of actions) {
      if (a.type === 'transmit') toHub.push(a.bytes);
      else if (a.type === 'close') {
        open = false;
        reconnectNow ||= a.reconnectNow === true;
      } else if (a.type === 'persist') onDevice(device.persisted(now));
      else if (a.type === 'event') deviceEvents.push(a.event.type);
    }
  };
  onDevice(device.connected(now));
  onHub(hub.opened(conn, now));
  for (let turns = 0; turns < 50 && (toDevice.length > 0 || toHub.length > 0); turns++) {
    // Bytes already sent still arrive after a close (the FIN follows the data).
    for (const bytes of toDevice.splice(0)) if (device.session !== 'offline') onDevice(device.receive(bytes, now));
    for (const bytes of toHub.splice(0)) if (open) onHub(hub.receive(conn, bytes, now));
  }
  if (device.session !== 'offline' && !open) onDevice(device.disconnected(now));
  onHub(hub.closed(conn, now));
  return { hubEvents, deviceEvents, reconnectNow, established: device.session === 'established' };
}

test.each([
  ['device (5)', false, 6],
  ['device (5, 6)', true, 7],
])('a restored hub (3) and a %s converge on N = max(ids) + 1 through one recovery and one reconnect', (_name, future, n) => {
  const { hub, device } = setup({ future });
  const first = connect(hub, device, 1, 0);
  expect(first.deviceEvents).toEqual(expect.arrayContaining(['hubLostKey', 'recovered']));
  expect(first.reconnectNow).toBe(true);
  expect(device.keys.future?.id).toBe(n);
  expect(hub.deviceKeys(toHex(deviceId))?.pending?.id).toBe(n);
  const second = connect(hub, device, 2, 1);
  expect(second.established).toBe(true);
  expect(device.keys.active.id).toBe(n);
  expect(device.keys.future).toBeUndefined();
  const hubKeys = hub.deviceKeys(toHex(deviceId));
  expect(hubKeys?.active.id).toBe(n);
  expect(toHex(hubKeys?.active.key ?? new Uint8Array())).toBe(toHex(device.keys.active.key));
});

test('a hub with another static key (a stolen database, no s_h) changes nothing on the device', () => {
  const { hub, device } = setup({ hubKey: { id: 7, ...pair(0x66) } });
  const before = device.keys;
  const run = connect(hub, device, 1, 0);
  expect(run.deviceEvents).not.toContain('recovered');
  expect(device.keys).toEqual(before);
});
