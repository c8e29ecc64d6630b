/**
 * The hub's command line, run as real processes: provision (new records,
 * keystore images, imports from tools/provision), devices, cert, and serve
 * with a device connected while `rotate <device> --wait` asks for a new key.
 * Also the config file format.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { loadConfigFile } from '../tools/hub/config';
import { parseDuration } from '../tools/hub/duration';
import { SimulatedDevice } from '../tools/demo/fleet';
import { CuttableFlash } from '../tools/testing/cuttable-flash';
import { FileFlash } from '../hosts/node/flash-file';
import { parseHubRecord } from '../tools/hub/records';
import { provisionDevice } from '../tools/provision/provision';

const root = resolve(__dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
// The hub as one process (tsx as a loader), so a signal reaches it directly: the tsx CLI relays signals to a
// child and SIGKILLs it (exit 143) when the child does not acknowledge within 60 ms, which a busy CI machine misses.
const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
const cli = join(root, 'tools/hub/cli.ts');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function hub(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [tsx, cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const lines = (text: string) => text.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);

test('provision, import, devices, and refusals', () => {
  const created = hub('provision', '--db', 'hub.db', '--count', '2');
  expect(created.status).toBe(0);
  const records = lines(created.stdout);
  expect(records).toHaveLength(2);
  for (const record of records) expect(() => parseHubRecord(record)).not.toThrow();

  const withImage = hub('provision', '--db', 'hub.db', '--out', 'dev');
  expect(withImage.status).toBe(0);
  const imaged = lines(withImage.stdout)[0] as { deviceId: string };
  expect(statSync(join(dir, 'dev', 'keystore.bin')).size).toBe(16 * 1024);
  expect(JSON.parse(readFileSync(join(dir, 'dev', 'device.json'), 'utf8'))).toEqual(imaged);

  const external = provisionDevice({ outDir: join(dir, 'external') });
  const imported = hub('provision', '--db', 'hub.db', '--import', join('external', 'device.json'));
  expect(imported.status).toBe(0);
  expect(lines(imported.stdout)).toEqual([external.record]);
  const again = hub('provision', '--db', 'hub.db', '--import', join('external', 'device.json'));
  expect(again.status).toBe(1);
  expect(again.stderr).toMatch(/already provisioned/);

  const listed = hub('devices', '--db', 'hub.db', '--json');
  expect(listed.status).toBe(0);
  const devices = lines(listed.stdout);
  expect(devices.map((d) => d.deviceId).sort()).toEqual([...records.map((r) => r.deviceId), imaged.deviceId, external.record.deviceId].sort());
  expect(devices.every((d) => d.activeKeyId === 1 && d.pendingKeyId === null && !('key' in d))).toBe(true);
  const table = hub('devices', '--db', 'hub.db');
  expect(table.stdout.split('\n')[0]).toMatch(/^DEVICE\s+MODE\s+ACTIVE\s+PENDING\s+ROTATIONS/);

  expect(hub('rotate', '0000000000000000', '--db', 'hub.db').status).toBe(1);
  expect(hub('devices', '--db', 'missing.db').status).toBe(1);
});

test('cert writes a certificate for localhost and 127.0.0.1 and an owner-only key', () => {
  const result = hub('cert', '--out', 'tls');
  expect(result.status).toBe(0);
  const cert = new X509Certificate(readFileSync(join(dir, 'tls', 'hub-cert.pem')));
  expect(cert.checkHost('localhost')).toBe('localhost');
  expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
  expect(statSync(join(dir, 'tls', 'hub-key.pem')).mode & 0o777).toBe(0o600);
  expect(hub('cert', '--out', 'tls').status).toBe(1);
});

test('serve from a config file; rotate --wait gets a connected device a new key', async () => {
  const provisioned = hub('provision', '--db', 'hub.db', '--out', 'dev');
  const record = lines(provisioned.stdout)[0] as { deviceId: string };
  writeFileSync(join(dir, 'hub.json'), JSON.stringify({ database: 'hub.db', tcp: { port: 0 }, rotation: { every: '1h', jitter: '1m' }, logLevel: 'info' }));
  const serve = spawn(process.execPath, ['--import', tsxLoader, cli, 'serve', '--config', 'hub.json'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise<number>((resolvePort, reject) => {
    serve.stderr.setEncoding('utf8');
    serve.stderr.on('data', (text: string) => {
      log += text;
      const listening = log.split('\n').find((l) => l.includes('"listening"'));
      if (listening) resolvePort((JSON.parse(listening) as { port: number }).port);
    });
    serve.once('exit', () => reject(new Error(`serve exited: ${log}`)));
  });
  const device = new SimulatedDevice(
    { record: parseHubRecord(JSON.parse(readFileSync(join(dir, 'dev', 'device.json'), 'utf8'))), recordJson: record as never, flash: new CuttableFlash(new FileFlash(join(dir, 'dev', 'keystore.bin'))) },
    { endpoint: { host: '127.0.0.1', port } },
  );
  try {
    device.start();
    const rotated = await new Promise<{ status: number | null; stdout: string }>((resolveRotate) => {
      const child = spawn(process.execPath, [tsx, cli, 'rotate', record.deviceId, '--db', 'hub.db', '--wait', '20s'], { cwd: dir });
      let stdout = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (t: string) => (stdout += t));
      child.once('exit', (status) => resolveRotate({ status, stdout }));
    });
    expect(rotated.status).toBe(0);
    expect(lines(rotated.stdout)[0]).toMatchObject({ deviceId: record.deviceId, activeKeyId: 2, pendingKeyId: null });
    expect(device.host.keys.active.id).toBe(2);
  } finally {
    device.stop();
    device.close();
    const exited = new Promise<number | null>((resolveExit) => serve.once('exit', (code) => resolveExit(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
  const events = lines(log).map((l) => l.event);
  expect(events).toEqual(expect.arrayContaining(['hubLoaded', 'listening', 'ready', 'deviceConnected', 'rotationRequested', 'rotationStarted', 'keyConfirmed', 'hubStopped']));
  expect(log).not.toMatch(/"key"/);
});

test('config file: durations, limits, timing, TLS paths relative to the file; unknown keys refused', () => {
  const path = join(dir, 'hub.json');
  writeFileSync(
    path,
    JSON.stringify({
      database: 'data/hub.db',
      tcp: false,
      tls: { port: 7443, cert: 'tls/cert.pem', key: 'tls/key.pem' },
      rotation: { every: '10m', jitter: '30s', afterMessages: 1000 },
      limits: { maxConnections: 500, tlsHandshakeTimeoutMs: '5s' },
      timing: { handshakeTimeout: '3s', idleTimeout: '1m' },
      logLevel: 'warn',
    }),
  );
  const config = loadConfigFile(path);
  expect(config).toMatchObject({
    database: join(dir, 'data/hub.db'),
    tcp: false,
    tls: { port: 7443, certPath: join(dir, 'tls/cert.pem'), keyPath: join(dir, 'tls/key.pem') },
    rotation: { intervalMs: 600_000, jitterMs: 30_000, maxMessages: 1000 },
    limits: { maxConnections: 500, tlsHandshakeTimeoutMs: 5000 },
    timing: { handshakeTimeoutMs: 3000, idleTimeoutMs: 60_000 },
    logLevel: 'warn',
  });
  writeFileSync(path, JSON.stringify({ rotaton: {} }));
  expect(() => loadConfigFile(path)).toThrow(/unknown key "rotaton"/);
  expect(parseDuration('250ms')).toBe(250);
  expect(parseDuration('1.5s')).toBe(1500);
  expect(parseDuration('2d')).toBe(172_800_000);
  expect(() => parseDuration('soon')).toThrow();
});

test('serve stops cleanly on a SIGTERM that comes while it is still starting (right after `hubLoaded`)', async () => {
  hub('provision', '--db', 'cli-early-stop.db');
  const serve = spawn(process.execPath, ['--import', tsxLoader, cli, 'serve', '--db', 'cli-early-stop.db', '--port', '0', '--log-level', 'info'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise<number | null>((resolveExit) => serve.once('exit', (code) => resolveExit(code)));
  serve.stderr.setEncoding('utf8');
  serve.stderr.on('data', (text: string) => {
    const first = !log.includes('"hubLoaded"');
    log += text;
    // The hub logs `hubLoaded` inside start(), before it listens: the signal lands before `ready`.
    if (first && log.includes('"hubLoaded"')) serve.kill('SIGTERM');
  });
  expect(await exited).toBe(0);
  expect(log).toMatch(/"shutdown"/);
});

test('npm run device (tools/demo/device.ts) boots from a provisioned image and connects (the README command)', async () => {
  hub('provision', '--db', 'cli-device.db', '--out', 'cli-dev');
  const serve = spawn(process.execPath, ['--import', tsxLoader, cli, 'serve', '--db', 'cli-device.db', '--port', '0', '--log-level', 'info'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise<number>((resolvePort, reject) => {
    serve.stderr.setEncoding('utf8');
    serve.stderr.on('data', (text: string) => {
      log += text;
      const listening = log.split('\n').find((l) => l.includes('"listening"'));
      if (listening) resolvePort((JSON.parse(listening) as { port: number }).port);
    });
    serve.once('exit', () => reject(new Error(`serve exited: ${log}`)));
  });
  const device = spawn(process.execPath, [tsx, join(root, 'tools/demo/device.ts'), '--image', join(dir, 'cli-dev', 'keystore.bin'), '--port', String(port)], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  device.stderr.setEncoding('utf8');
  device.stderr.on('data', (t: string) => (err += t));
  try {
    const events = await new Promise<string[]>((resolveEvents, reject) => {
      device.stdout.setEncoding('utf8');
      device.stdout.on('data', (t: string) => {
        out += t;
        const seen = lines(out).map((l) => l.event as string);
        if (seen.includes('established')) resolveEvents(seen);
      });
      device.once('exit', (code) => reject(new Error(`device exited ${code}: ${err}${out}`)));
    });
    expect(events.slice(0, 2)).toEqual(['booted', 'established']);
  } finally {
    device.kill('SIGTERM');
    const exited = new Promise<number | null>((resolveExit) => serve.once('exit', (code) => resolveExit(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
});
