/**
 * The fleet dashboard (tools/hub/dashboard/) in headless Chromium, driven by
 * playwright-core against a hub with simulated devices on loopback: the
 * fleet (paged: 100 rows of 250 devices), a filter, the rotate button, the
 * key id increasing in the table and on the device page, the rotation
 * history, the live chart; a read-only token sees no buttons. Screenshots go
 * to $LOCKSTEP_SCREENSHOTS (docs/images for the documentation) or the temp
 * directory, and their paths are printed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { newToken } from '../tools/hub/http/options';
import { newDeviceRecord } from '../tools/hub/records';
import { LockstepHub } from '../tools/hub/server';

const CHROMIUM = '/usr/bin/chromium';
const admin = newToken('ops-admin', 'admin');
const reader = newToken('viewer', 'read');
const shots = process.env.LOCKSTEP_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'lockstep-dashboard-shots-'));

let dir: string;
let hub: LockstepHub;
let browser: Browser;
let base: string;
const devices: SimulatedDevice[] = [];

beforeAll(async () => {
  mkdirSync(shots, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'lockstep-dashboard-'));
  hub = await LockstepHub.start({
    database: join(dir, 'hub.db'),
    tcp: { port: 0 },
    tickMs: 50,
    controlPollMs: 200,
    rotation: { intervalMs: 4000, jitterMs: 2000 },
    http: { port: 0, tokens: [admin.config, reader.config] },
  });
  hub.store.insertDevices(Array.from({ length: 244 }, () => newDeviceRecord()), Date.now() - 3_600_000); // offline ones, provisioned an hour ago
  for (let i = 0; i < 6; i++) {
    const provisioned = provisionSimulatedDevice();
    hub.provision(provisioned.record);
    const device = new SimulatedDevice(provisioned, { endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }), host: { reconnectInitialMs: 20, reconnectMaxMs: 200 } });
    devices.push(device);
    device.start();
  }
  base = `http://127.0.0.1:${hub.apiAddress?.port}`;
  // Tests never silently skip: a missing Chromium fails here with its path.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const deadline = Date.now() + 10_000;
  while (!devices.every((d) => d.host.online) || hub.deviceIds.length < 250) {
    if (Date.now() > deadline) throw new Error(`devices not online: ${devices.filter((d) => d.host.online).length} online, ${hub.deviceIds.length} served`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

afterAll(async () => {
  await browser?.close();
  for (const device of devices) device.stop();
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function open(token: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  (page as Page & { problems: string[] }).problems = problems;
  await page.goto(`${base}/dashboard/#token=${encodeURIComponent(token)}`);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  const path = join(shots, name);
  await page.screenshot({ path, fullPage: true });
  process.stdout.write(`screenshot: ${path}\n`);
}

test('the fleet, paged; filter online; rotate from the table and watch the key id increase; the device page with its history', async () => {
  const page = await open(admin.token);
  await page.getByTestId('count-devices').filter({ hasText: '250' }).waitFor();
  expect(page.url()).not.toContain(admin.token); // the token left the address bar
  expect(await page.getByTestId('count-online').textContent()).toBe('6');
  expect(await page.locator('#device-rows tr').count()).toBe(100);
  expect(await page.getByTestId('page-info').textContent()).toBe('1–100 of 250');
  await page.getByTestId('next').click();
  await page.getByTestId('page-info').filter({ hasText: '101–200 of 250' }).waitFor();

  await page.getByTestId('filter').selectOption('online');
  await page.getByTestId('page-info').filter({ hasText: '1–6 of 6' }).waitFor();
  expect(await page.locator('#device-rows tr').count()).toBe(6);
  await page.getByTestId('rate-chart').locator('canvas').waitFor();

  hub.setRotationPolicy({ intervalMs: 0 }); // from here only the button rotates
  const target = devices[0]?.deviceId as string;
  await page.waitForFunction(() => true);
  const row = page.locator(`#device-rows tr[data-device="${target}"]`);
  await row.waitFor();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const before = hub.deviceState(target).activeKeyId;
  await row.locator('button[data-rotate]').click();
  await page.locator(`#device-rows tr[data-device="${target}"] td.active-key`).filter({ hasText: new RegExp(`^${before + 1}$`) }).waitFor({ timeout: 10_000 });
  expect(hub.deviceState(target).activeKeyId).toBe(before + 1);
  await shot(page, 'dashboard-fleet.png');

  await page.getByTestId('filter').selectOption('all');
  await page.getByTestId('search').fill(target.slice(0, 10));
  await page.getByTestId('page-info').filter({ hasText: '1–1 of 1' }).waitFor();
  await page.locator(`a[href="#/device/${target}"]`).click();
  await page.getByTestId('device-id').filter({ hasText: target }).waitFor();
  await page.getByTestId('device-active-key').filter({ hasText: String(before + 1) }).waitFor();
  await page.getByTestId('device-rotate').click();
  await page.getByTestId('device-active-key').filter({ hasText: String(before + 2) }).waitFor({ timeout: 10_000 });
  await page.locator('#history-rows tr', { hasText: 'rotation.confirm' }).first().waitFor();
  expect(await page.locator('#history-rows tr', { hasText: 'ops-admin' }).count()).toBeGreaterThanOrEqual(2);
  // Recovery (issue 14) lives in the fleet page's Recovery panel (tests/hub-recovery-api.test.ts), not on the device page.
  expect(await page.locator('#device-view').getByText(/recover/i).count()).toBe(0);
  await shot(page, 'dashboard-device.png');
  expect((page as Page & { problems: string[] }).problems).toEqual([]);
  await page.close();
}, 60_000);

test('a read-only token sees the fleet and no rotate or revoke button', async () => {
  const page = await open(reader.token);
  await page.getByTestId('count-devices').filter({ hasText: '250' }).waitFor();
  expect(await page.getByTestId('session').textContent()).toBe('token viewer (read)');
  expect(await page.locator('button[data-rotate]').first().isVisible()).toBe(false);
  await page.goto(`${base}/dashboard/#/device/${devices[1]?.deviceId}`);
  await page.getByTestId('device-id').filter({ hasText: devices[1]?.deviceId as string }).waitFor();
  expect(await page.getByTestId('device-rotate').isVisible()).toBe(false);
  expect(await page.getByTestId('device-revoke').isVisible()).toBe(false);
  await page.close();
}, 30_000);

test('a wrong token gets the token form, no data', async () => {
  const page = await open('lst_wrong');
  await page.locator('#login').waitFor();
  expect(await page.locator('#fleet-view').isVisible()).toBe(false);
  expect(await page.getByTestId('hub-state').textContent()).toMatch(/refused/);
  await page.close();
}, 30_000);
