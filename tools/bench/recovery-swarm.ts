/**
 * The device swarm of `npm run bench -- recovery-fleet` (tools/bench/recovery-fleet.ts):
 * one NodeDevice per device (the real device loop and core on a real
 * socket), each with volatile key storage holding its recovery credential
 * (docs/PROTOCOL.md §12.6), each connecting from its own loopback source
 * address (127.0.x.y) when the bench asks for it, so that the hub's
 * per-source limit sees a fleet spread over the internet rather than one NAT.
 *
 * argv[2]: JSON RecoverySwarmConfig. stdout: JSON lines
 *   {"type":"connected","online":n}   once, when every device is online
 *   {"type":"stats","online":n,"promoted":n,"cpuUs":n}  every 500 ms (the hub counts the recoveries)
 */
import { readFileSync } from 'node:fs';
import { fromHex } from '../../modules/bytes';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import { NodeDevice, nodeSocketTransport } from '../../hosts/node/device-host';
import { MemoryKeyStorage } from '../../hosts/node/flash-key-storage';
import type { RekeyMode } from '../../modules/platform/keys';

export interface RecoverySwarmDevice {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: string;
  readonly mode: RekeyMode;
  readonly devicePrivate: string;
  readonly devicePublic: string;
  readonly hubStaticId: number;
  readonly hubPublic: string;
  /** The loopback address this device connects from (undefined: the default). */
  readonly source?: string;
}

export interface RecoverySwarmConfig {
  /** JSON lines of RecoverySwarmDevice. */
  readonly devicesPath: string;
  readonly host: string;
  readonly port: number;
  readonly maxConnecting?: number;
}


function main(): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as RecoverySwarmConfig;
  const devices = readFileSync(config.devicesPath, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as RecoverySwarmDevice);
  const maxConnecting = config.maxConnecting ?? 200;
  const hosts: NodeDevice[] = [];
  const counts = { online: 0, promoted: 0 };
  let started = 0;
  let announced = false;
  const startMore = (): void => {
    while (started < devices.length && started - counts.online < maxConnecting) {
      const device = devices[started++];
      if (device === undefined) break;
      const credential: RecoveryCredential = {
        device: { privateKey: fromHex(device.devicePrivate), publicKey: fromHex(device.devicePublic) },
        hubStaticId: device.hubStaticId,
        hubPublicKey: fromHex(device.hubPublic),
      };
      const host = new NodeDevice({
        storage: new MemoryKeyStorage(fromHex(device.deviceId), { id: device.keyId, key: fromHex(device.key) }, device.mode, credential),
        endpoint: { host: config.host, port: config.port },
        wrapTransport: () => nodeSocketTransport({ host: config.host, port: config.port, ...(device.source !== undefined ? { localAddress: device.source } : {}) }),
        reconnectInitialMs: 200,
        reconnectMaxMs: 5000,
      });
      let counted = false;
      host.on('established', () => {
        if (!counted) counts.online++;
        counted = true;
        startMore();
        if (!announced && counts.online === devices.length) {
          announced = true;
          process.stdout.write(`${JSON.stringify({ type: 'connected', online: counts.online })}\n`);
        }
      });
      host.on('disconnected', () => {
        if (counted) counts.online--;
        counted = false;
      });
      host.on('keyPromoted', () => counts.promoted++);
      hosts.push(host);
      host.start();
    }
  };
  startMore();
  setInterval(() => {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ type: 'stats', ...counts, cpuUs: cpu.user + cpu.system })}\n`);
  }, 500);
  const stop = (): void => {
    for (const host of hosts) host.stop();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main();
