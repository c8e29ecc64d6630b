/**
 * Issue 14, the hub's recovery commands as real processes: `static-key
 * status|rotate|retire`, `recover` (list and approve, --json), `enrol`,
 * `revoke` writing the revocation file that a restored database cannot
 * undo, and the config file's "recovery" section.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../tools/hub/config';
import { newDeviceRecord } from '../tools/hub/records';
import { recoveryPolicy } from '../tools/hub/recovery';
import { HubStore } from '../tools/hub/store';
import { Keystore } from '../modules/keystore/keystore';
import { memoryFlash } from '../hosts/node/flash-memory';

const root = resolve(__dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
const cli = join(root, 'tools/hub/cli.ts');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function hub(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [tsx, cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000, env: { ...process.env, LOCKSTEP_STATIC_KEY_FILE: '', LOCKSTEP_KEK_FILE: '', LOCKSTEP_KEK: '' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const json = (text: string) => JSON.parse(text.trim().split('\n').pop() as string) as Record<string, unknown>;

test('static-key: created with the database; rotate keeps the old pair; retire refused while a device names it; status shows no private key', () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  store.insertDevice({ ...newDeviceRecord(), devicePublicKey: new Uint8Array(32).fill(7), hubStaticId: 1 }, 1);
  store.close();
  expect(statSync(`${db}.static`).mode & 0o777).toBe(0o600);

  const rotated = hub('static-key', 'rotate', '--db', 'hub.db');
  expect(rotated.status).toBe(0);
  expect(json(rotated.stdout)).toMatchObject({ current: 2 });

  const status = hub('static-key', 'status', '--db', 'hub.db');
  expect(status.status).toBe(0);
  const shown = json(status.stdout) as { current: number; keys: { id: number; devices: number; publicKey: string }[] };
  expect(shown.current).toBe(2);
  expect(shown.keys.map((k) => [k.id, k.devices])).toEqual([[1, 1], [2, 0]]);
  const file = JSON.parse(readFileSync(`${db}.static`, 'utf8')) as { keys: { privateKey: string }[] };
  for (const pair of file.keys) expect(status.stdout).not.toContain(pair.privateKey);

  const refused = hub('static-key', 'retire', '1', '--db', 'hub.db');
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/STATIC_KEY_IN_USE: 1 device record/);
  const current = hub('static-key', 'retire', '2', '--db', 'hub.db');
  expect(current.status).toBe(1);
  expect(current.stderr).toMatch(/current/);
  expect(json(hub('static-key', 'status', '--db', 'hub.db').stdout)).toMatchObject({ current: 2 });
});

test('recover: lists requests, approves one (--json), refuses a device that asked nothing; enrol arms once', () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  const asked = newDeviceRecord();
  const quiet = newDeviceRecord();
  store.insertDevices([asked, quiet], 1);
  store.decideRecovery({ deviceId: asked.deviceId, newKeyId: 5, claimedActive: 3, claimedFuture: 4 }, recoveryPolicy({ mode: 'approve' }), Date.now());
  store.close();

  const listed = hub('recover', '--db', 'hub.db', '--json');
  expect(listed.status).toBe(0);
  expect(json(listed.stdout)).toMatchObject({ deviceId: asked.deviceId, attempts: 1, newKeyId: 5, claimedActive: 3, claimedFuture: 4, approvedAt: null });

  const approved = hub('recover', asked.deviceId, '--db', 'hub.db', '--json');
  expect(approved.status).toBe(0);
  expect(json(approved.stdout)).toMatchObject({ deviceId: asked.deviceId, outcome: 'approved' });
  const none = hub('recover', quiet.deviceId, '--db', 'hub.db');
  expect(none.status).toBe(1);
  expect(none.stderr).toMatch(/no recovery request/);
  expect(hub('recover', 'nothex', '--db', 'hub.db').status).toBe(1);

  expect(hub('enrol', quiet.deviceId, '--db', 'hub.db').status).toBe(0);
  const check = new HubStore(db, { readonly: true });
  expect(check.getSummary(quiet.deviceId)?.enrolment).toBe('armed');
  expect(check.recordChanges()).toEqual([quiet.deviceId]);
  expect(check.readAudit({ deviceId: asked.deviceId, action: 'recovery.approve' })).toHaveLength(1);
  check.close();
});

test('enrol refuses a device that already has a static key', () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  const record = { ...newDeviceRecord(), devicePublicKey: new Uint8Array(32).fill(1), hubStaticId: 1 };
  store.insertDevice(record, 1);
  store.close();
  const refused = hub('enrol', record.deviceId, '--db', 'hub.db');
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/STATIC_KEY_LOCKED/);
});

test('revoke writes the revocation file first; a restored older database does not bring the device back', () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  const record = newDeviceRecord();
  store.insertDevice(record, 1);
  store.close();
  copyFileSync(db, `${db}.backup`);
  expect(hub('revoke', record.deviceId, '--db', 'hub.db', '--reason', 'stolen').status).toBe(0);
  expect(readFileSync(`${db}.revoked`, 'utf8')).toContain(record.deviceId);
  copyFileSync(`${db}.backup`, db);
  for (const f of [`${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
  const listed = hub('devices', '--db', 'hub.db', '--json');
  // `devices` is read-only: the restored row is visible until a writer opens the database ...
  expect(listed.stdout).toContain(record.deviceId);
  // ... and the first writer (serve, provision, any command) erases it again.
  const provision = hub('provision', '--db', 'hub.db', '--count', '1');
  expect(provision.status).toBe(0);
  const after = hub('devices', '--db', 'hub.db', '--json');
  expect(after.stdout).not.toContain(record.deviceId);
  writeFileSync(join(dir, 'again.json'), JSON.stringify({ deviceId: record.deviceId, keyId: 1, key: '00'.repeat(64), mode: 'dh' }));
  const again = hub('provision', '--db', 'hub.db', '--import', 'again.json');
  expect(again.status).toBe(1);
  expect(again.stderr).toMatch(/revoked/);
});

test('config file: the "recovery" section is checked field by field', () => {
  const path = join(dir, 'hub.json');
  writeFileSync(path, JSON.stringify({ recovery: { policy: 'approve', perDevice: 2, window: '30m', perSource: { burst: 5 } }, staticKeyFile: 'keys/hub.static' }));
  const config = loadConfigFile(path);
  expect(config.recovery).toMatchObject({ mode: 'approve', perDeviceLimit: 2, windowMs: 1_800_000, perSource: { burst: 5, perMinute: 10 } });
  expect(config.staticKeyFile).toBe(join(dir, 'keys/hub.static'));
  for (const bad of [{ policy: 'sometimes' }, { perDevice: 0 }, { window: 3600 }, { surprise: 1 }, { perSource: { burst: -1 } }, 'auto']) {
    writeFileSync(path, JSON.stringify({ recovery: bad }));
    expect(() => loadConfigFile(path)).toThrow();
  }
  const invalid = hub('serve', '--db', 'hub.db', '--recovery', 'sometimes');
  expect(invalid.status).not.toBe(0);
  expect(invalid.stderr).toMatch(/auto, approve or off/);
});

test('provision --out gives the device its credential (the hub\'s current static key) and the hub record S_d', () => {
  const created = hub('provision', '--db', 'hub.db', '--out', 'dev');
  expect(created.status).toBe(0);
  const record = json(created.stdout) as { deviceId: string; devicePublicKey: string; hubStaticId: number };
  expect(record.hubStaticId).toBe(1);
  expect(record.devicePublicKey).toMatch(/^[0-9a-f]{64}$/);
  const image = readFileSync(join(dir, 'dev', 'keystore.bin'));
  const keystore = new Keystore(memoryFlash({ image: new Uint8Array(image) }));
  const mounted = keystore.mount();
  const staticFile = JSON.parse(readFileSync(join(dir, 'hub.db.static'), 'utf8')) as { keys: { id: number; publicKey: string }[] };
  expect(mounted.provisioned && mounted.credential !== undefined).toBe(true);
  const credential = (mounted as { credential: { hubStaticId: number; hubPublicKey: Uint8Array; device: { publicKey: Uint8Array } } }).credential;
  expect(credential.hubStaticId).toBe(1);
  expect(Buffer.from(credential.hubPublicKey).toString('hex')).toBe(staticFile.keys[0]?.publicKey);
  expect(Buffer.from(credential.device.publicKey).toString('hex')).toBe(record.devicePublicKey);
  const store = new HubStore(join(dir, 'hub.db'), { readonly: true });
  expect(Buffer.from(store.getSummary(record.deviceId)?.devicePublicKey as Uint8Array).toString('hex')).toBe(record.devicePublicKey);
  store.close();
});
