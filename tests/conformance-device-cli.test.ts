/**
 * `npm run conformance -- device` as a user runs it: the kit provisions the
 * device (--provision-out), starts it with --device-start-cmd (the real Node
 * device host in its own process, tools/conformance/device/broken-device.ts),
 * cuts its power with --device-kill-cmd (SIGKILL) right after the REKEY_ACK,
 * after CONFIRM and after the recovery, prints one line per requirement and
 * writes the JSON report. The reference device exits 0; the design that
 * acknowledges before persisting exits 1 naming the requirement it breaks.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../tools/demo/free-port';

const ROOT = resolve(__dirname, '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const SCENARIOS = 'handshake,power-cut-after-ack-classic,power-cut-after-ack-dh,recovery';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function kit(design: string): Promise<{ code: number | null; stdout: string; json: { failed: number; passed: number; checks: Record<string, string> } }> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-kit-cli-'));
  dirs.push(dir);
  const device = join(dir, 'device');
  const pidFile = join(dir, 'device.pid');
  const port = await freePort(0);
  const start = `exec ${TSX} ${join(ROOT, 'tools/conformance/device/broken-device.ts')} --image ${join(device, 'keystore.bin')} --port ${port} --design ${design} --keepalive 1s --idle-timeout 3s --handshake-timeout 2s --pid-file ${pidFile}`;
  const killCommand = `kill -9 $(cat ${pidFile}) 2>/dev/null; rm -f ${pidFile}`;
  const args = [join(ROOT, 'tools/conformance/cli.ts'), 'device', '--listen', `127.0.0.1:${port}`, '--provision-out', device, '--device-start-cmd', start, '--device-kill-cmd', killCommand];
  args.push('--scenarios', SCENARIOS, '--keepalive', '1s', '--idle-timeout', '3s', '--handshake-timeout', '2s', '--quiet', '200ms', '--connect-wait', '20s', '--timeout', '90s', '--json', join(dir, 'report.json'), '--checks');
  try {
    const child = spawn(TSX, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((done) => child.on('exit', done));
    if (!existsSync(join(dir, 'report.json'))) throw new Error(`no report (exit ${code}): ${stderr}\n${stdout}`);
    return { code, stdout, json: JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) };
  } finally {
    spawn('sh', ['-c', killCommand], { stdio: 'ignore' });
  }
}

test('the reference Node device, power-cut by SIGKILL, passes; one line per requirement and the JSON report', async () => {
  const result = await kit('reference');
  expect(Object.entries(result.json.checks).filter(([, verdict]) => verdict === 'fail')).toEqual([]);
  for (const check of ['rekey.persistBeforeAck', 'dh.persistBeforeAck', 'rec.persist', 'rec.accepted', 'hello.newest']) expect(result.json.checks[check]).toBe('pass');
  expect(result.json.failed).toBe(0);
  expect(result.stdout).toMatch(/device mode: \d+ passed, 0 failed/);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/^pass +D-KEY-1 /m);
  expect(result.stdout).toMatch(/^pass +D-REC-4 /m);
});

test('a device that acknowledges before persisting fails under SIGKILL, with the requirement named', async () => {
  const result = await kit('acks-before-persisting');
  expect(result.code).toBe(1);
  expect(result.json.checks['rekey.persistBeforeAck']).toBe('fail');
  expect(result.json.checks['dh.persistBeforeAck']).toBe('fail');
  expect(result.stdout).toMatch(/^fail +D-KEY-1 /m);
  expect(result.stdout).toMatch(/^fail +D-DH-1 /m);
  expect(result.json.failed).toBeGreaterThan(0);
});
