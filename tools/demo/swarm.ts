/**
 * A swarm of simulated devices in one process, for load: each runs a
 * NodeDevice (the device loop on a real socket, volatile key storage) against
 * one hub address. Connections are ramped so that at most `maxConnecting`
 * are in the handshake at once (the hub caps unauthenticated connections).
 *
 * argv[2]: JSON SwarmConfig. stdout: JSON lines
 *   {"type":"connected","online":n}     when every device is online (once)
 *   {"type":"stats","online":n,"promoted":n,"cpuUserUs":n,"cpuSystemUs":n,"rssBytes":n}  every second
 */
import { readFileSync } from 'node:fs';
import { fromHex } from '../../modules/bytes';
import { NodeDevice } from '../../hosts/node/device-host';
import { MemoryKeyStorage } from '../../hosts/node/flash-key-storage';
import { parseHubRecords } from '../hub/records';

export interface SwarmConfig {
  /** Hub records (JSON lines) of the devices to run. */
  readonly recordsPath: string;
  readonly host: string;
  readonly port: number;
  readonly maxConnecting?: number;
}

function main(): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as SwarmConfig;
  const records = parseHubRecords(readFileSync(config.recordsPath, 'utf8'));
  const maxConnecting = config.maxConnecting ?? 400;
  const hosts: NodeDevice[] = [];
  let online = 0;
  let promoted = 0;
  let started = 0;
  let announced = false;
  const startMore = (): void => {
    while (started < records.length && started - online < maxConnecting) {
      const record = records[started++];
      if (record === undefined) break;
      const host = new NodeDevice({
        storage: new MemoryKeyStorage(fromHex(record.deviceId), record.active, record.mode),
        endpoint: { host: config.host, port: config.port },
        reconnectInitialMs: 200,
        reconnectMaxMs: 5000,
      });
      let counted = false;
      host.on('established', () => {
        if (!counted) online++;
        counted = true;
        startMore();
        if (!announced && online === records.length) {
          announced = true;
          process.stdout.write(`${JSON.stringify({ type: 'connected', online })}\n`);
        }
      });
      host.on('disconnected', () => {
        if (counted) online--;
        counted = false;
      });
      host.on('keyPromoted', () => promoted++);
      hosts.push(host);
      host.start();
    }
  };
  startMore();
  setInterval(() => {
    const cpu = process.cpuUsage();
    process.stdout.write(
      `${JSON.stringify({ type: 'stats', online, promoted, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, rssBytes: process.memoryUsage().rss })}\n`,
    );
  }, 1000);
  const stop = (): void => {
    for (const host of hosts) host.stop();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main();
