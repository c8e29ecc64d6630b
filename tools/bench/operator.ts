/**
 * The operator surface's costs (issue 17), measured in one run:
 * 1. Metrics + audit on rotations/s: one hub, one swarm of devices in a
 *    separate process, rotations kept in flight at saturation; windows with
 *    the operator API off (no metrics listeners, no audit of key events)
 *    and on (API + metrics + audit of every rotation start and confirmation,
 *    Prometheus scraping /metrics every second and a dashboard polling a
 *    page of devices every 2 s), interleaved, as a ratio.
 * 2. The dashboard's time to first render (fleet counts and the first
 *    page of rows on screen) in headless Chromium with 10,000 devices,
 *    against the same with 100 devices (the baseline), plus the API's own
 *    time for a page of 100 out of 10,000.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { bundleProgram, childEnv } from '../demo/hub-process';
import type { SwarmConfig } from '../demo/swarm';
import { newToken } from '../hub/http/options';
import { startOperatorApi, type RunningApi } from '../hub/http/server';
import { silentLogger } from '../hub/log';
import { newDeviceRecord, toHubRecordJson } from '../hub/records';
import { LockstepHub } from '../hub/server';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function run(): Promise<void> {
  await rotationCost();
  await dashboardRender();
}

async function rotationCost(): Promise<void> {
  const deviceCount = Number(process.env.LOCKSTEP_BENCH_OPERATOR_DEVICES ?? 2000);
  const windowMs = Number(process.env.LOCKSTEP_BENCH_WINDOW_S ?? 6) * 1000;
  const inFlightTarget = 256;
  console.log(`\n== Operator surface: cost of metrics + audit on rotations/s (${deviceCount} devices, ${inFlightTarget} rotations in flight, off/on interleaved) ==`);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-operator-'));
  const token = newToken('bench', 'read');
  let swarm: ChildProcess | undefined;
  let hub: LockstepHub | undefined;
  let api: RunningApi | undefined;
  try {
    const records = Array.from({ length: deviceCount }, () => newDeviceRecord());
    hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, limits: { maxConnections: deviceCount + 1000 } });
    hub.store.insertDevices(records, Date.now());
    await sleep(1500); // the control poll registers them
    const recordsPath = join(dir, 'records.jsonl');
    writeFileSync(recordsPath, records.map((r) => JSON.stringify(toHubRecordJson(r))).join('\n'));
    const config: SwarmConfig = { recordsPath, host: '127.0.0.1', port: hub.addresses[0]?.port as number, maxConnecting: 400 };
    swarm = spawn(process.execPath, [bundleProgram('tools/demo/swarm.ts'), JSON.stringify(config)], { stdio: ['pipe', 'ignore', 'inherit'], env: childEnv() });
    const connectDeadline = Date.now() + 120_000;
    while (hub.stats().devicesOnline < deviceCount && Date.now() < connectDeadline) await sleep(100);
    const ids = records.map((r) => r.deviceId);
    let inFlight = 0;
    let completed = 0;
    let next = 0;
    let target = inFlightTarget;
    const live = hub;
    const startMore = (): void => {
      for (let tries = 0; tries < ids.length && inFlight < target; tries++) {
        const id = ids[next++ % ids.length] as string;
        const state = live.deviceState(id);
        if (!state.connected || state.pendingKeyId !== undefined || state.persisting) continue;
        if (live.rotate(id) === 'started') inFlight++;
      }
    };
    hub.on('keyConfirmed', () => {
      completed++;
      inFlight--;
      startMore();
    });
    const window = async (variant: { audit: boolean; api: boolean }) => {
      const current = live;
      current.auditKeyEvents = variant.audit;
      let clients: ChildProcess | undefined;
      if (variant.api) {
        api = await startOperatorApi(current, { port: 0, tokens: [token.config], requestsPerMinute: 100_000, dashboard: false }, silentLogger);
        clients = scrapeAndPoll(`http://127.0.0.1:${api.address.port}`, token.token);
      }
      target = inFlightTarget;
      startMore();
      await sleep(1000);
      const c0 = completed;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(windowMs);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const done = completed - c0;
      target = 0;
      const drain = Date.now() + 20_000;
      while (inFlight > 0 && Date.now() < drain) await sleep(50);
      clients?.kill('SIGKILL');
      await api?.close();
      api = undefined;
      return { rate: done / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / Math.max(done, 1) };
    };
    const variants = [
      { name: 'off (no API/metrics, no key audit)', audit: false, api: false },
      { name: 'audit of key events only', audit: true, api: false },
      { name: 'API + metrics only (scraped)', audit: false, api: true },
      { name: 'both (the defaults with http on)', audit: true, api: true },
    ];
    const totals = variants.map(() => ({ rate: 0, cpu: 0 }));
    const rounds = Number(process.env.LOCKSTEP_BENCH_ROUNDS ?? 3);
    for (let round = 0; round < rounds; round++) {
      for (const [i, variant] of variants.entries()) {
        const r = await window(variant);
        const t = totals[i] as { rate: number; cpu: number };
        t.rate += r.rate / rounds;
        t.cpu += r.cpuMs / rounds;
      }
    }
    hub.auditKeyEvents = true;
    const auditRows = hub.store.readAudit({ limit: 1 })[0]?.seq ?? 0;
    console.log('variant                               rotations/s   hub CPU ms/rotation   ratio to off: rotations/s, CPU');
    const off = totals[0] as { rate: number; cpu: number };
    for (const [i, variant] of variants.entries()) {
      const t = totals[i] as { rate: number; cpu: number };
      console.log(`${variant.name.padEnd(36)}  ${t.rate.toFixed(0).padStart(11)}   ${t.cpu.toFixed(3).padStart(19)}   ×${(t.rate / off.rate).toFixed(2)}, ×${(t.cpu / off.cpu).toFixed(2)}`);
    }
    console.log(`(${rounds} interleaved windows of ${windowMs / 1000} s per variant; ${auditRows} audit rows written; scrape every 1 s, a page of 100 devices every 2 s, from another process)`);
    // The API's fixed cost, with no rotations: the idle hub's CPU per second without and with the API scraped and polled.
    const idleCpu = async (): Promise<number> => {
      await sleep(1000);
      const idle0 = process.cpuUsage();
      const idleT0 = performance.now();
      await sleep(4000);
      const idle = process.cpuUsage(idle0);
      return (idle.user + idle.system) / 1000 / ((performance.now() - idleT0) / 1000);
    };
    const idleOff = await idleCpu();
    api = await startOperatorApi(live, { port: 0, tokens: [token.config], requestsPerMinute: 100_000, dashboard: false }, silentLogger);
    const clients = scrapeAndPoll(`http://127.0.0.1:${api.address.port}`, token.token);
    const idleOn = await idleCpu();
    clients.kill('SIGKILL');
    await api.close();
    api = undefined;
    console.log(`idle hub (no rotations, ${deviceCount} devices online): ${idleOff.toFixed(1)} ms CPU per second without the API, ${idleOn.toFixed(1)} with it scraped and polled (+${(idleOn - idleOff).toFixed(1)})`);
  } finally {
    swarm?.kill('SIGKILL');
    await api?.close();
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dashboardRender(): Promise<void> {
  console.log('\n== Dashboard: time to first render (fleet counts and first page of rows on screen), headless Chromium ==');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const results: { devices: number; firstMs: number; medianMs: number; apiMs: number }[] = [];
  try {
    for (const devices of [100, 10_000]) {
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-dashboard-'));
      const token = newToken('bench', 'read');
      const hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, http: { port: 0, tokens: [token.config], requestsPerMinute: 100_000 } });
      try {
        hub.store.insertDevices(Array.from({ length: devices }, () => newDeviceRecord()), Date.now());
        while (hub.deviceIds.length < devices) await sleep(100);
        const base = `http://127.0.0.1:${hub.apiAddress?.port}`;
        const apiTimes: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          await (await fetch(`${base}/api/v1/devices?limit=100&offset=${i * 100}`, { headers: { authorization: `Bearer ${token.token}` } })).text();
          apiTimes.push(performance.now() - t0);
        }
        const renders: number[] = [];
        for (let i = 0; i < 5; i++) {
          const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
          const t0 = performance.now();
          await page.goto(`${base}/dashboard/#token=${token.token}`);
          await page.getByTestId('count-devices').filter({ hasText: devices.toLocaleString('en') }).waitFor();
          await page.locator('#device-rows tr').nth(Math.min(devices, 100) - 1).waitFor();
          renders.push(performance.now() - t0);
          await page.close();
        }
        results.push({ devices, firstMs: renders[0] as number, medianMs: median(renders.slice(1)), apiMs: median(apiTimes) });
      } finally {
        await hub.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await browser.close();
  }
  console.log('devices   first load ms   warm median ms   API page of 100 ms (median of 20)');
  for (const r of results) console.log(`${String(r.devices).padStart(7)}   ${r.firstMs.toFixed(0).padStart(13)}   ${r.medianMs.toFixed(0).padStart(14)}   ${r.apiMs.toFixed(1).padStart(10)}`);
  const [small, large] = results as [(typeof results)[number], (typeof results)[number]];
  console.log(`ratio 10,000 / 100 devices: first render ×${(large.medianMs / small.medianMs).toFixed(2)}, API page ×${(large.apiMs / small.apiMs).toFixed(2)} (the page shows 100 rows either way)`);
}

/**
 * Prometheus (a scrape of /metrics every second) and a dashboard (a page of
 * 100 devices every 2 s), in a child process so that only the hub's side of
 * the work is counted in its CPU time.
 */
function scrapeAndPoll(base: string, token: string): ChildProcess {
  const code = `
    const headers = { authorization: 'Bearer ' + ${JSON.stringify(token)} };
    setInterval(() => fetch(${JSON.stringify(`${base}/metrics`)}, { headers }).then((r) => r.text()).catch(() => {}), 1000);
    setInterval(() => fetch(${JSON.stringify(`${base}/api/v1/devices?limit=100`)}, { headers }).then((r) => r.text()).catch(() => {}), 2000);`;
  return spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}
