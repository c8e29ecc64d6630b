/**
 * One device-swarm process of the fleet benchmark (tools/bench/fleet.ts):
 * a NodeDevice per device (the real device loop and core on a real socket,
 * volatile key storage, the protocol's default keep-alive), each connecting
 * straight to the hub instance its line names, from the loopback source
 * address its line names (tools/bench/fleet-plan.ts `assign`). Connections
 * are ramped: at most `maxConnecting` of this swarm's devices are between
 * start and WELCOME at once, so the instances' handshake and lease limits
 * see a steady trickle, not a thundering herd.
 *
 * argv[2]: JSON FleetSwarmConfig. stdout: JSON lines
 *   {"type":"connected","online":n}   once, when every device of this swarm is online
 *   {"type":"stats","online":n,"established":n,"disconnects":n,"promoted":n,"cpuUs":n,"rssBytes":n}  every second
 *   {"type":"error","message":s}      then exit 1 (e.g. EMFILE: the plan was wrong)
 * Ends on SIGTERM or when stdin ends (the bench is gone).
 */
import { readFileSync } from 'node:fs';
import { fromHex } from '../../modules/bytes';
import { NodeDevice } from '../../hosts/node/device-host';
import { MemoryKeyStorage } from '../../hosts/node/flash-key-storage';
import { parseHubRecord, type HubRecordJson } from '../hub/records';

export interface FleetSwarmDevice extends HubRecordJson {
  /** The instance's port on 127.0.0.1. */
  readonly port: number;
  /** The loopback address to connect from. */
  readonly source: string;
}

export interface FleetSwarmConfig {
  /** JSON lines of FleetSwarmDevice. */
  readonly devicesPath: string;
  readonly host: string;
  readonly maxConnecting: number;
  /** The devices' keep-alive interval; absent: the protocol's default (15 s). */
  readonly keepaliveMs?: number;
  /** The devices' idle timeout (3 × a stretched keep-alive); absent: the default. */
  readonly idleTimeoutMs?: number;
}

function main(): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as FleetSwarmConfig;
  const lines = readFileSync(config.devicesPath, 'utf8').split('\n').filter((line) => line.trim() !== '');
  const devices = lines.map((line) => JSON.parse(line) as FleetSwarmDevice);
  const out = (value: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(value)}\n`);
  };
  const fail = (error: unknown): void => {
    out({ type: 'error', message: error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}` : String(error) });
    process.exit(1);
  };
  process.on('uncaughtException', fail);
  const hosts: NodeDevice[] = [];
  const counts = { online: 0, established: 0, disconnects: 0, promoted: 0 };
  let started = 0;
  let announced = false;
  const startMore = (): void => {
    while (started < devices.length && started - counts.online < config.maxConnecting) {
      const device = devices[started++];
      if (device === undefined) break;
      const record = parseHubRecord(device);
      const host = new NodeDevice({
        storage: new MemoryKeyStorage(fromHex(record.deviceId), record.active, record.mode),
        endpoint: { host: config.host, port: device.port, localAddress: device.source },
        timing: {
          ...(config.keepaliveMs === undefined ? {} : { keepaliveIntervalMs: config.keepaliveMs }),
          ...(config.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: config.idleTimeoutMs }),
        },
        reconnectInitialMs: 500,
        reconnectMaxMs: 10_000,
      });
      let counted = false;
      host.on('established', () => {
        counts.established++;
        if (!counted) counts.online++;
        counted = true;
        startMore();
        if (!announced && counts.online === devices.length) {
          announced = true;
          out({ type: 'connected', online: counts.online });
        }
      });
      host.on('disconnected', () => {
        if (counted) {
          counts.online--;
          counts.disconnects++;
        }
        counted = false;
      });
      host.on('keyPromoted', () => counts.promoted++);
      hosts.push(host);
      host.start();
    }
  };
  startMore();
  const report = (): void => {
    const cpu = process.cpuUsage();
    out({ type: 'stats', ...counts, started, cpuUs: cpu.user + cpu.system, rssBytes: process.memoryUsage().rss });
  };
  const timer = setInterval(report, 1000);
  const stop = (): void => {
    clearInterval(timer);
    for (const host of hosts) host.stop();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main();
