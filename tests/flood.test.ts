/**
 * Connection floods against a live hub (issue 12, findings 1, 2, 3, 5), on
 * loopback only: the flood runs in a child process (tests/support/flood.mjs)
 * so its sockets do not share the hub's file descriptors, from 127.0.0.2;
 * a device behind a 400 ms one-way link is a delaying TCP proxy on
 * 127.0.0.3. Every flood is bounded in count and time and stops by itself.
 *
 * 1. Idle TLS sockets (no ClientHello) are closed at the TLS handshake
 *    timeout, the hub's connection count returns to zero, and RSS after
 *    each cycle stays within 10 % of RSS after the first.
 * 2. Under ≥ 3,000 connections/s a device behind 400 ms each way completes
 *    its handshake within 10 s: on another source address (the flood's
 *    source gives way), and sharing the flood's address (a carrier NAT:
 *    protected by the lifetime cap / rate).
 * 3. At the connection cap, held by idle connections topped up every 50 ms,
 *    a reconnecting device gets in.
 * 5. Log lines a single source, or a single device, can cause are bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MessageType } from '../modules/protocol/constants';
import { decodeHeader } from '../modules/protocol/header';
import { createDevCertificate } from '../tools/hub/cert';
import { jsonLogger } from '../tools/hub/log';
import { LockstepHub } from '../tools/hub/server';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { sessionFrames } from './support/frames';

const FLOOD_SOURCE = '127.0.0.2';
const DEVICE_SOURCE = '127.0.0.3';
const ONE_WAY_DELAY_MS = 400;

let dir: string;
const hubs: LockstepHub[] = [];
const devices: SimulatedDevice[] = [];
const floods: ChildProcess[] = [];
const servers: Server[] = [];
const proxied = new Set<Socket>();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-flood-'));
});
afterEach(async () => {
  for (const flood of floods.splice(0)) flood.kill();
  for (const device of devices.splice(0)) device.stop();
  for (const server of servers.splice(0)) server.close();
  for (const socket of proxied) socket.destroy();
  proxied.clear();
  for (const hub of hubs.splice(0)) await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startHub(options: Partial<Parameters<typeof LockstepHub.start>[0]> = {}): Promise<LockstepHub> {
  const hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { host: '127.0.0.1', port: 0 }, tickMs: 50, controlPollMs: 100, ...options });
  hubs.push(hub);
  return hub;
}

/** A full GC (jest does not expose one), so RSS is compared after collection, not at the GC's whim. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function until(predicate: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface FloodReport {
  done: boolean;
  connected: number;
  closed: number;
  errors: number;
  open: number;
  attempted: number;
  maxLifetimeMs: number;
  t: number;
}

interface Flood {
  latest(): FloodReport;
  readonly finished: Promise<FloodReport>;
  stop(): void;
}

/** tests/support/flood.mjs in a child process (see its header for the modes). */
function flood(port: number, ...args: (string | number)[]): Flood {
  const child = spawn(process.execPath, [join(__dirname, 'support', 'flood.mjs'), '127.0.0.1', String(port), FLOOD_SOURCE, ...args.map(String)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  floods.push(child);
  let latest: FloodReport = { done: false, connected: 0, closed: 0, errors: 0, open: 0, attempted: 0, maxLifetimeMs: 0, t: 0 };
  let buffered = '';
  const finished = new Promise<FloodReport>((resolve) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
        latest = JSON.parse(buffered.slice(0, at)) as FloodReport;
        buffered = buffered.slice(at + 1);
        if (latest.done) resolve(latest);
      }
    });
    child.once('exit', () => resolve(latest));
  });
  return { latest: () => latest, finished, stop: () => child.stdin?.end() };
}

/** A TCP proxy on 127.0.0.3 that delays every chunk `ONE_WAY_DELAY_MS` each way; connects to the hub from `outbound`. */
async function delayingProxy(hubPort: number, outbound: string): Promise<number> {
  const server = createServer((inbound) => {
    const upstream = connect({ host: '127.0.0.1', port: hubPort, localAddress: outbound });
    const relay = (from: Socket, to: Socket) => {
      proxied.add(from);
      from.on('data', (chunk: Buffer) => setTimeout(() => to.destroyed || to.write(chunk), ONE_WAY_DELAY_MS));
      from.on('close', () => setTimeout(() => to.destroy(), ONE_WAY_DELAY_MS));
      from.on('error', () => {});
    };
    relay(inbound, upstream);
    relay(upstream, inbound);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, DEVICE_SOURCE, resolve));
  return (server.address() as { port: number }).port;
}

function addDevice(hub: LockstepHub, endpoint: { host: string; port: number }): SimulatedDevice {
  const provisioned = provisionSimulatedDevice();
  hub.provision(provisioned.record);
  const device = new SimulatedDevice(provisioned, { endpoint, host: { reconnectInitialMs: 100, reconnectMaxMs: 1000 } });
  devices.push(device);
  return device;
}

test('1: thousands of idle TLS sockets are closed at the handshake timeout; connections return to zero; RSS stays flat over cycles', async () => {
  const HANDSHAKE_TIMEOUT_MS = 1000;
  const SOCKETS = 3000;
  const CYCLES = 5;
  const cert = await createDevCertificate();
  const hub = await startHub({ tcp: false, tls: { host: '127.0.0.1', port: 0, cert: cert.certPem, key: cert.keyPem }, limits: { tlsHandshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS } });
  const port = hub.addresses[0]?.port as number;
  const rss: number[] = [];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const run = flood(port, 'idle', SOCKETS);
    const outcome = await Promise.race([run.finished, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), HANDSHAKE_TIMEOUT_MS + 5000))]);
    run.stop();
    if (outcome === undefined) throw new Error(`cycle ${cycle}: ${run.latest().closed} of ${SOCKETS} idle TLS sockets closed ${HANDSHAKE_TIMEOUT_MS + 5000} ms after they opened`);
    expect(outcome.connected).toBe(SOCKETS);
    expect(outcome.closed).toBe(SOCKETS);
    // Closed by the handshake timeout (plus scheduling slack on a loaded machine), not by anything later.
    expect(outcome.maxLifetimeMs).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 4000);
    await until(() => hub.stats().connections === 0 && hub.stats().unauthenticated === 0, 'the hub to count no connection', 2000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    collectGarbage();
    rss.push(process.memoryUsage().rss);
  }
  const mib = rss.map((bytes) => Math.round(bytes / 2 ** 20));
  console.log(`idle TLS flood: RSS after each cycle of ${SOCKETS} sockets (MiB): ${mib.join(', ')}; handshake failures counted: ${hub.stats().tlsHandshakeFailures}`);
  for (const bytes of rss.slice(1)) expect(bytes).toBeLessThanOrEqual((rss[0] as number) * 1.1);
});

describe.each([
  ['on another source address', DEVICE_SOURCE],
  ['sharing the flood\u2019s source address (carrier NAT)', FLOOD_SOURCE],
])('2: under a flood of >= 3,000 connections/s, a device behind a 400 ms one-way link %s', (_name, outbound) => {
  test('completes its handshake within 10 s', async () => {
    const RATE = 4000;
    const hub = await startHub();
    const port = hub.addresses[0]?.port as number;
    const run = flood(port, 'rate', RATE, 20_000);
    // Let the flood fill the unauthenticated cap before the device tries (at 3,500/s: 8,192 in ≈ 2.3 s).
    await until(() => hub.stats().evicted > 0 || run.latest().t > 4000, 'the flood to reach the cap', 15_000);
    const proxyPort = await delayingProxy(port, outbound);
    const device = addDevice(hub, { host: DEVICE_SOURCE, port: proxyPort });
    const evictedBefore = hub.stats().evicted;
    const started = Date.now();
    device.start();
    let rate = 0;
    try {
      await until(() => device.host.online, 'the device behind the delaying proxy to complete its handshake', 10_000);
    } finally {
      const elapsed = Date.now() - started;
      // Offered: connections the kernel completed for the flood, from its start until the device got in. Accepted:
      // the hub's evictions a second meanwhile (the cap was full, so each connection the hub accepted evicted one);
      // on a loaded machine the hub's accept rate, not the flood, is the bottleneck.
      const floodAfter = run.latest();
      rate = (floodAfter.connected * 1000) / Math.max(1, floodAfter.t);
      const evictionRate = ((hub.stats().evicted - evictedBefore) * 1000) / Math.max(1, elapsed);
      console.log(
        `flood offered ${Math.round(rate)} connections/s over ${floodAfter.t} ms; the hub evicted ${Math.round(evictionRate)}/s while the device connected ` +
          `(a pre-authentication lifetime of ≈ ${(hub.stats().unauthenticated / Math.max(1, evictionRate)).toFixed(1)} s); device via ${outbound}: established after ${elapsed} ms`,
      );
      run.stop();
    }
    await run.finished;
    expect(rate).toBeGreaterThanOrEqual(3000);
  });
});

test('3: at the connection cap, held by idle connections topped up every 50 ms, a reconnecting device gets in', async () => {
  const CAP = 64;
  const hub = await startHub({ limits: { maxConnections: CAP, maxUnauthenticated: 1000 } });
  const port = hub.addresses[0]?.port as number;
  const device = addDevice(hub, { host: '127.0.0.1', port });
  device.start();
  await until(() => device.host.online, 'the device online', 5000);
  // The attacker keeps CAP connections open from the device's own address, replacing any that close within 50 ms.
  const idle = new Set<Socket>();
  const topUp = setInterval(() => {
    while (idle.size < CAP) {
      const socket = connect({ host: '127.0.0.1', port });
      idle.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => idle.delete(socket));
    }
  }, 50);
  try {
    await until(() => hub.stats().connections >= CAP, 'the cap to be reached', 5000);
    // Off for 300 ms: the attacker takes the freed slot before the device reconnects.
    device.host.powerCycle(300);
    await until(() => !device.host.online, 'the device to go offline', 2000);
    const started = Date.now();
    await until(() => device.host.online, 'the device to reconnect at the cap', 5000);
    const stats = hub.stats();
    console.log(`at the cap (${CAP}): device back after ${Date.now() - started} ms; evicted ${stats.evicted}, refused ${stats.refused}, open ${stats.connections}`);
    expect(stats.connections).toBeLessThanOrEqual(CAP);
  } finally {
    clearInterval(topUp);
    for (const socket of idle) socket.destroy();
  }
});

test('5: log lines one source or one device can cause are bounded', async () => {
  const lines: { at: number; line: string }[] = [];
  const hub = await startHub({ logger: jsonLogger('debug', (line) => lines.push({ at: Date.now(), line })), limits: { maxUnauthenticated: 50 } });
  const port = hub.addresses[0]?.port as number;
  const FLOOD_MS = 3000;
  const started = Date.now();
  const run = flood(port, 'rate', 1000, FLOOD_MS);

  // Meanwhile a device holding its key sends ERROR frames as fast as it can.
  const provisioned = provisionSimulatedDevice();
  const record = hub.provision(provisioned.record);
  const client = connect({ host: '127.0.0.1', port });
  client.on('error', () => {});
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  await until(() => Buffer.concat(received).length >= 38, 'the CHALLENGE', 5000);
  const nonce = decodeHeader(new Uint8Array(Buffer.concat(received).subarray(2, 38))).sessionId;
  const frame = sessionFrames(record, nonce);
  client.write(frame(0, { type: MessageType.HELLO, deviceNonce: randomBytes(16), activeKeyId: record.active.id, futureKeyId: 0 }));
  await until(() => hub.deviceState(record.deviceId).connected, 'the device session', 5000);
  let sequence = 1;
  const ERROR_FRAMES = 2000;
  while (sequence <= ERROR_FRAMES) {
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) batch.push(frame(sequence++, { type: MessageType.ERROR, code: 1, detail: sequence }));
    client.write(Buffer.concat(batch));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const flooded = await run.finished;
  await new Promise((resolve) => setTimeout(resolve, 1200)); // one more summary
  const seconds = (Date.now() - started) / 1000;
  client.destroy();

  const fromSource = lines.filter((l) => l.line.includes(`"${FLOOD_SOURCE}`) || l.line.includes(`"remote":"${FLOOD_SOURCE}:`));
  const fromDevice = lines.filter((l) => l.line.includes('"peerError"') && l.line.includes(record.deviceId));
  const summaries = lines.filter((l) => l.line.includes('"logSuppressed"')).map((l) => JSON.parse(l.line) as { limitedEvent: string; suppressed: number });
  console.log(
    `${flooded.connected} connections from ${FLOOD_SOURCE} and ${ERROR_FRAMES} ERROR frames in ${seconds.toFixed(1)} s: ` +
      `${fromSource.length} lines about the source, ${fromDevice.length} peerError lines, ${summaries.length} logSuppressed lines ` +
      `(${summaries.reduce((sum, s) => sum + s.suppressed, 0)} suppressed), ${lines.length} lines in all`,
  );
  expect(flooded.connected).toBeGreaterThanOrEqual(1000);
  // Per (event, key): a burst of 10 then 1 a second (tools/hub/log-limit.ts); four connection-level events name the source.
  expect(fromSource.length).toBeLessThanOrEqual(4 * (10 + Math.ceil(seconds)));
  expect(fromDevice.length).toBeLessThanOrEqual(10 + Math.ceil(seconds));
  expect(lines.length).toBeLessThan(200 + 20 * seconds);
  expect(summaries.length).toBeGreaterThan(0);
});
