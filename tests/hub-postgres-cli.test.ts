/**
 * The CLI on PostgreSQL (`--db postgres://…`, docs/HUB.md §13): provision,
 * devices, rotate (the durable request), serve (one instance of a tier:
 * it logs the server's durability settings and serves a device), and the
 * config file keeping a URL as it is. The keyring comes from LOCKSTEP_KEK.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleProgram } from '../tools/demo/hub-process';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { loadConfigFile } from '../tools/hub/config';
import { freshDatabase, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
const kek = `1:${randomBytes(32).toString('hex')}`;
let cli: string;

beforeAll(async () => {
  cluster = await startCluster();
  cli = bundleProgram('tools/hub/cli.ts');
}, 60_000);
afterAll(() => cluster?.stop());

function hub(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LOCKSTEP_KEK: kek } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('provision, devices, rotate and serve with --db postgres://', async () => {
  const url = await freshDatabase(cluster);
  const provisioned = hub('provision', '--db', url, '--count', '2', '--mode', 'classic');
  expect(provisioned.stderr).toContain('provisioned 2 device(s)');
  expect(provisioned.stderr).not.toContain(new URL(url).password); // the password is redacted
  const records = provisioned.stdout.trim().split('\n').map((line) => JSON.parse(line) as { deviceId: string });
  expect(records).toHaveLength(2);

  const listed = hub('devices', '--db', url).stdout.trim().split('\n').map((line) => JSON.parse(line) as { deviceId: string; activeKeyId: number });
  expect(listed.map((d) => d.deviceId).sort()).toEqual(records.map((r) => r.deviceId).sort());

  expect(hub('set-mode', records[1]!.deviceId, 'dh', '--db', url).stderr).toContain('moves to the dh mode');
  expect(hub('set-mode', records[1]!.deviceId, 'dh', '--db', url).stderr).toContain('already in the dh mode');
  const rotated = hub('rotate', records[0]!.deviceId, '--db', url);
  expect(rotated.stderr).toContain('requested');
  expect(hub('rotate', '0000000000000000', '--db', url).status).toBe(1);

  const serve = spawn(process.execPath, [cli, 'serve', '--db', url, '--port', '0', '--log-level', 'info'], { env: { ...process.env, LOCKSTEP_KEK: kek } });
  try {
    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve not ready: ${lines.join('\n')}`)), 20_000);
      createInterface({ input: serve.stderr }).on('line', (line) => {
        lines.push(line);
        if (line.includes('"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      serve.once('exit', () => reject(new Error(`serve exited: ${lines.join('\n')}`)));
    });
    const durability = lines.find((line) => line.includes('"synchronousCommit"'));
    expect(durability).toContain('"synchronousCommit":"on"');
    expect(lines.join('\n')).not.toContain(new URL(url).password);
  } finally {
    serve.kill('SIGTERM');
  }
}, 90_000);

test('without a keyring a PostgreSQL command refuses clearly', async () => {
  const url = await freshDatabase(cluster);
  const result = spawnSync(process.execPath, [cli, 'provision', '--db', url], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LOCKSTEP_KEK: '', LOCKSTEP_KEK_FILE: '' } });
  expect(result.status).not.toBe(0);
  expect(result.stderr).toMatch(/KEK_UNAVAILABLE.*--kek-file/);
}, 30_000);

test('a config file keeps a postgres:// database as it is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cfg-'));
  try {
    writeFileSync(join(dir, 'hub.json'), JSON.stringify({ database: 'postgres://hub@db.example/lockstep' }));
    expect(loadConfigFile(join(dir, 'hub.json')).database).toBe('postgres://hub@db.example/lockstep');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
