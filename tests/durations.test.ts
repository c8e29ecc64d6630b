/**
 * Finding 10 (issue 12): a bare number as a duration is refused everywhere a
 * person types one, with a message naming the units — command-line flags of
 * `npm start` and of the hub, the config file — and the library API's
 * millisecond options (names ending in `Ms`) refuse anything but a
 * non-negative integer. Before the fix `npm start -- --duration 60` ran for
 * 60 ms and reported "RESULT: OK".
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../tools/hub/config';
import { parseDuration } from '../tools/hub/duration';
import { checkHubOptions } from '../tools/hub/options';
import { RotationScheduler } from '../tools/hub/scheduler';
import { LockstepHub } from '../tools/hub/server';

const root = resolve(__dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
const UNITS = /250ms, 60s, 3m, 1h, 2d/;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-duration-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function run(script: string, ...args: string[]) {
  return spawnSync(process.execPath, [tsx, join(root, script), ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
}

test('parseDuration: units required; a bare number is refused naming the units; "0" is the one exception', () => {
  expect(parseDuration('250ms')).toBe(250);
  expect(parseDuration('60s')).toBe(60_000);
  expect(parseDuration('1.5s')).toBe(1500);
  expect(parseDuration('3m')).toBe(180_000);
  expect(parseDuration('1h')).toBe(3_600_000);
  expect(parseDuration('2d')).toBe(172_800_000);
  expect(parseDuration('0')).toBe(0);
  expect(parseDuration(0)).toBe(0);
  for (const bare of ['60', '3600', '1.5', 60, 3600]) expect(() => parseDuration(bare)).toThrow(UNITS);
  for (const bad of ['soon', '-1s', '1 hour', '', null, true, {}]) expect(() => parseDuration(bad)).toThrow(UNITS);
});

test('npm start refuses --duration 60 and --rotate-every 3600, naming the units, before starting anything', () => {
  for (const args of [['--duration', '60'], ['--rotate-every', '3600']]) {
    const result = run('tools/demo.ts', ...args, '--devices', '1', '--chaos', 'off');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(UNITS);
    expect(result.stdout).not.toMatch(/RESULT/);
  }
});

test('hub serve refuses bare numbers in duration flags; rotate --wait too', () => {
  for (const flag of ['--rotate-every', '--rotate-jitter', '--handshake-timeout', '--idle-timeout']) {
    const result = run('tools/hub/cli.ts', 'serve', '--db', 'hub.db', '--port', '0', flag, '3600');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(UNITS);
  }
  const wait = run('tools/hub/cli.ts', 'rotate', '0123456789abcdef', '--db', 'hub.db', '--wait', '20');
  expect(wait.status).not.toBe(0);
  expect(wait.stderr).toMatch(UNITS);
});

test('config file: a bare number as a duration is refused, naming the key and the units', () => {
  const path = join(dir, 'hub.json');
  const cases: Record<string, unknown>[] = [
    { rotation: { every: 3600 } },
    { rotation: { every: '3600' } },
    { rotation: { jitter: 60 } },
    { limits: { tlsHandshakeTimeoutMs: 10000 } },
    { timing: { idleTimeout: 45 } },
  ];
  for (const config of cases) {
    writeFileSync(path, JSON.stringify(config));
    expect(() => loadConfigFile(path)).toThrow(UNITS);
  }
  writeFileSync(path, JSON.stringify({ rotation: { every: '1h' }, timing: { idleTimeout: '45s' } }));
  expect(loadConfigFile(path)).toMatchObject({ rotation: { intervalMs: 3_600_000 }, timing: { idleTimeoutMs: 45_000 } });
});

test('library API: millisecond options (…Ms) take non-negative integers only', () => {
  expect(() => new RotationScheduler({ intervalMs: '1h' as unknown as number })).toThrow(/intervalMs.*milliseconds/);
  expect(() => new RotationScheduler({ jitterMs: -5 })).toThrow(/jitterMs/);
  expect(() => new RotationScheduler().setPolicy({ intervalMs: Number.NaN })).toThrow(/intervalMs/);
  expect(new RotationScheduler({ intervalMs: 3_600_000 }).policy.intervalMs).toBe(3_600_000);
  expect(() => checkHubOptions({ database: ':memory:', tickMs: '200ms' as unknown as number })).toThrow(/tickMs/);
  expect(() => checkHubOptions({ database: ':memory:', timing: { idleTimeoutMs: 1.5 } })).toThrow(/timing.idleTimeoutMs/);
  expect(() => checkHubOptions({ database: ':memory:', limits: { tlsHandshakeTimeoutMs: '10s' as unknown as number } })).toThrow(/limits.tlsHandshakeTimeoutMs/);
  expect(() => checkHubOptions({ database: ':memory:', rotation: { intervalMs: 60_000 }, limits: { maxConnections: 5 } })).not.toThrow();
});

test('LockstepHub.start refuses a millisecond option that is not a number of milliseconds', async () => {
  await expect(LockstepHub.start({ database: ':memory:', tcp: { port: 0 }, tickMs: '200ms' as unknown as number })).rejects.toThrow(/tickMs/);
  await expect(LockstepHub.start({ database: ':memory:', tcp: { port: 0 }, rotation: { intervalMs: '1h' as unknown as number } })).rejects.toThrow(/intervalMs/);
});
