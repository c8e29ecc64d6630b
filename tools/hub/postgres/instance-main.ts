/**
 * One hub instance of a PostgreSQL tier as a process of its own (the chaos
 * test, `npm start -- --postgres`, the benchmark; a SQLite path instead of
 * a URL runs the one-process hub the same way, for the benchmark's
 * baseline). Config: JSON in argv[2]
 * ({url, port?, rotationIntervalMs?, rotationJitterMs?, statementTimeoutMs?});
 * the keyring from LOCKSTEP_KEK / LOCKSTEP_KEK_FILE. Prints `READY <port>`,
 * then `U <deviceId> <payload>` per application message received and
 * `STATS <json>` twice a second on stdout. SIGUSR2 pauses scheduled
 * rotations; SIGTERM closes cleanly (SIGKILL is what the chaos uses).
 * Started with --expose-gc (the fleet benchmark), SIGHUP collects garbage
 * and reports STATS at once (`gcs` counts them), for a heap figure without
 * garbage. With `lifeline`, the end of stdin (the parent is gone) closes it.
 */
import { startHub } from '../storage';

interface InstanceConfig {
  readonly url: string;
  readonly port?: number;
  readonly rotationIntervalMs?: number;
  readonly rotationJitterMs?: number;
  readonly statementTimeoutMs?: number;
  readonly poolSize?: number;
  readonly tickMs?: number;
  readonly controlPollMs?: number;
  readonly lastSeenFlushMs?: number;
  readonly maxConnections?: number;
  readonly maxLeasesInFlight?: number;
  /** The core's idle timeout (the fleet benchmark's stretched keep-alive); the hub's default otherwise. */
  readonly idleTimeoutMs?: number;
  readonly lifeline?: boolean;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as InstanceConfig;
  const hub = await startHub({
    database: config.url,
    store: { poolSize: config.poolSize ?? 4, statementTimeoutMs: config.statementTimeoutMs ?? 3000, connectTimeoutMs: 3000 },
    tcp: { host: '127.0.0.1', port: config.port ?? 0 },
    rotation: { intervalMs: config.rotationIntervalMs ?? 0, jitterMs: config.rotationJitterMs ?? 0 },
    tickMs: config.tickMs ?? 50,
    controlPollMs: config.controlPollMs ?? 200,
    lastSeenFlushMs: config.lastSeenFlushMs ?? 2000,
    limits: { maxConnections: config.maxConnections ?? 30_000 },
    ...(config.maxLeasesInFlight === undefined ? {} : { maxLeasesInFlight: config.maxLeasesInFlight }),
    ...(config.idleTimeoutMs === undefined ? {} : { timing: { idleTimeoutMs: config.idleTimeoutMs } }),
  });
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  hub.on('data', ({ deviceId, payload }) => out(`U ${deviceId} ${Buffer.from(payload).toString('latin1')}`));
  out(`READY ${hub.addresses[0]?.port ?? 0}`);
  let gcs = 0;
  const report = () => {
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    out(`STATS ${JSON.stringify({ ...hub.stats(), cpuUs: cpu.user + cpu.system, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, heapTotalBytes: memory.heapTotal, externalBytes: memory.external, arrayBuffersBytes: memory.arrayBuffers, gcs })}`);
  };
  const stats = setInterval(report, 500);
  process.on('SIGUSR2', () => hub.setRotationPolicy({ intervalMs: 0 }));
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect !== undefined) {
    process.on('SIGHUP', () => {
      collect();
      gcs++;
      report();
    });
  }
  let closing = false;
  const close = () => {
    if (closing) return;
    closing = true;
    clearInterval(stats);
    report();
    void hub.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', close);
  if (config.lifeline === true) {
    process.stdin.on('end', close);
    process.stdin.resume();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`instance failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
