/**
 * Issue 14, the operator surface of recovery (docs/HUB.md §14): the HTTP
 * endpoints (GET /api/v1/recovery with a read token, POST
 * /api/v1/devices/:id/recovery/approve with an admin token only; bodies
 * validated), the metrics, and the dashboard's recovery view in headless
 * Chromium (pending approvals with an Approve button for admins only, recent
 * recoveries).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RecoveryStatus } from '../modules/protocol/constants';
import { newToken } from '../tools/hub/http/options';
import { newDeviceRecord, type DeviceRecord } from '../tools/hub/records';
import { recoveryPolicy } from '../tools/hub/recovery';
import { LockstepHub } from '../tools/hub/server';

const CHROMIUM = '/usr/bin/chromium';
const admin = newToken('ops-admin', 'admin');
const reader = newToken('viewer', 'read');

let dir: string;
let hub: LockstepHub;
let base: string;
let asking: DeviceRecord;
let recovered: DeviceRecord;
let quiet: DeviceRecord;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-api-'));
  hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, http: { port: 0, tokens: [admin.config, reader.config] }, recovery: { mode: 'approve' } });
  [asking, recovered, quiet] = [newDeviceRecord(), newDeviceRecord(), newDeviceRecord()] as [DeviceRecord, DeviceRecord, DeviceRecord];
  for (const record of [asking, recovered, quiet]) hub.provision(record);
  const now = Date.now();
  // What the core's recoveryRequest leads to (tools/hub/recovery-host.ts): one awaiting approval, one accepted.
  expect(hub.store.decideRecovery({ deviceId: asking.deviceId, newKeyId: 12, claimedActive: 10, claimedFuture: 11 }, hub.recoveryPolicy, now - 60_000).status).toBe(RecoveryStatus.AWAITING_APPROVAL);
  expect(hub.store.decideRecovery({ deviceId: recovered.deviceId, newKeyId: 7, claimedActive: 6, claimedFuture: 0 }, recoveryPolicy({ mode: 'auto' }), now - 30_000).status).toBe(RecoveryStatus.ACCEPTED);
  base = `http://127.0.0.1:${hub.apiAddress?.port}`;
});

afterAll(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(path: string, token: string | undefined, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) } });
  return { status: response.status, body: (await response.json().catch(() => ({}))) as Record<string, unknown> };
}

describe('HTTP', () => {
  test('GET /api/v1/recovery: the policy, the requests and the recent recoveries; needs a token', async () => {
    expect((await call('/api/v1/recovery', undefined)).status).toBe(401);
    const { status, body } = await call('/api/v1/recovery', reader.token);
    expect(status).toBe(200);
    expect(body.policy).toEqual({ mode: 'approve', perDeviceLimit: 3, windowSeconds: 3600, hubStaticId: 1 });
    expect(body.requests).toEqual([expect.objectContaining({ deviceId: asking.deviceId, attempts: 1, newKeyId: 12, claimedActive: 10, claimedFuture: 11, approvedAt: null, approvedBy: null })]);
    expect(body.recent).toEqual([expect.objectContaining({ deviceId: recovered.deviceId, newKeyId: 7 })]);
    expect((await call('/api/v1/recovery?limit=0', reader.token)).status).toBe(400);
    expect((await call('/api/v1/recovery?surprise=1', reader.token)).status).toBe(400);
  });

  test('POST approve: admin only, body validated, unknown device 404, no request 409, then approved once', async () => {
    const path = `/api/v1/devices/${asking.deviceId}/recovery/approve`;
    expect((await call(path, undefined, { method: 'POST', body: '{}' })).status).toBe(401);
    expect((await call(path, reader.token, { method: 'POST', body: '{}' })).status).toBe(403);
    expect((await call(path, admin.token, { method: 'POST', body: '{"force":true}' })).status).toBe(400);
    expect((await call(path, admin.token, { method: 'POST', body: '[1]' })).status).toBe(400);
    expect((await call('/api/v1/devices/xyz/recovery/approve', admin.token, { method: 'POST', body: '{}' })).status).toBe(400);
    expect((await call('/api/v1/devices/ffffffffffffffff/recovery/approve', admin.token, { method: 'POST', body: '{}' })).status).toBe(404);
    const none = await call(`/api/v1/devices/${quiet.deviceId}/recovery/approve`, admin.token, { method: 'POST', body: '{}' });
    expect(none.status).toBe(409);
    expect((none.body.error as { code: string }).code).toBe('NO_RECOVERY_REQUEST');
    // Nothing changed by the refused calls:
    expect(hub.recoveryRequests()[0]?.approvedAt).toBeUndefined();
    const approved = await call(path, admin.token, { method: 'POST', body: '{}' });
    expect(approved).toEqual({ status: 200, body: { deviceId: asking.deviceId, outcome: 'approved' } });
    expect((await call(path, admin.token, { method: 'POST' })).body).toEqual({ deviceId: asking.deviceId, outcome: 'already' });
    expect(hub.store.readAudit({ deviceId: asking.deviceId, action: 'recovery.approve' })).toEqual([expect.objectContaining({ actor: 'ops-admin', outcome: 'ok' })]);
    // The approval is what the next authenticated request uses.
    expect(hub.store.decideRecovery({ deviceId: asking.deviceId, newKeyId: 12, claimedActive: 10, claimedFuture: 11 }, hub.recoveryPolicy, Date.now()).status).toBe(RecoveryStatus.ACCEPTED);
  });

  test('metrics: recovery series exist with fixed labels', async () => {
    const response = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${reader.token}` } });
    const text = await response.text();
    for (const outcome of ['accepted', 'inSync', 'awaitingApproval', 'refused', 'rateLimited', 'keyIdsExhausted']) expect(text).toContain(`lockstep_recoveries_total{outcome="${outcome}"}`);
    expect(text).toContain('lockstep_recovery_needed_total{reason="authFailed"} 0');
    expect(text).toContain('lockstep_recovery_unauthenticated_total{stage="init"} 0');
    expect(text).toMatch(/lockstep_recovery_requests_pending \d/);
    expect(text).not.toContain(asking.deviceId);
  });
});

describe('dashboard', () => {
  let browser: Browser;
  beforeAll(async () => {
    // Tests never silently skip: a missing Chromium fails here with its path.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  });
  afterAll(async () => browser?.close());

  async function open(token: string): Promise<Page & { problems: string[] }> {
    const page = (await browser.newPage({ viewport: { width: 1400, height: 900 } })) as Page & { problems: string[] };
    page.problems = [];
    page.on('pageerror', (error) => page.problems.push(error.message));
    await page.goto(`${base}/dashboard/#token=${encodeURIComponent(token)}`);
    return page;
  }

  test('pending approvals with an Approve button (admin), recent recoveries; a read token sees no button', async () => {
    hub.store.decideRecovery({ deviceId: quiet.deviceId, newKeyId: 4, claimedActive: 2, claimedFuture: 3 }, hub.recoveryPolicy, Date.now());
    const page = await open(admin.token);
    const row = page.locator(`[data-testid="recovery-requests"] tr[data-device="${quiet.deviceId}"]`);
    await row.waitFor({ timeout: 10_000 });
    expect(await row.innerText()).toMatch(/2 \+ 3\s+4\s+no/);
    await page.locator(`[data-testid="recovery-recent"] tr[data-device="${recovered.deviceId}"]`).waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('recovery-policy').innerText()).toMatch(/policy approve · at most 3 per device per 60 min · hub static key 1/);
    await row.locator(`button[data-approve="${quiet.deviceId}"]`).click();
    await page.getByTestId('recovery-message').filter({ hasText: 'approved' }).waitFor({ timeout: 10_000 });
    expect(hub.recoveryRequests().find((r) => r.deviceId === quiet.deviceId)?.approvedBy).toBe('ops-admin');
    await row.filter({ hasText: 'by ops-admin' }).waitFor({ timeout: 10_000 });
    expect(page.problems).toEqual([]);
    await page.close();

    hub.store.decideRecovery({ deviceId: asking.deviceId, newKeyId: 13, claimedActive: 10, claimedFuture: 11 }, hub.recoveryPolicy, Date.now());
    const viewer = await open(reader.token);
    const button = viewer.locator(`[data-testid="recovery-requests"] button[data-approve="${asking.deviceId}"]`);
    await button.waitFor({ state: 'attached', timeout: 10_000 });
    expect(await button.isVisible()).toBe(false); // rendered, hidden for a read token (and the API refuses it: 403 above)
    expect(viewer.problems).toEqual([]);
    await viewer.close();
  }, 60_000);
});
