/**
 * The conformance kit's hub mode against the reference hub on loopback
 * (a real hub process, SQLite, crashed with SIGKILL and restarted): every
 * requirement the kit can observe from outside passes, over TCP (every
 * scenario, the crashes and a short randomized fault run included) and over
 * TLS (with a `hub cert`-style certificate); the CLI prints one line per
 * requirement, writes the JSON report and exits 0. The broken hubs that
 * must fail are in conformance-hub-broken.test.ts.
 * Waits are shortened (re-offer 3 s, keep-alive 3.5 s: those two are then
 * reported n/a, as the kit says); `npm run conformance` runs the full ones.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runHubConformance, type HubKitResult } from '../tools/conformance/hub/run';
import { saveKitDevices } from '../tools/conformance/hub/kit-devices';
import { startTestbed, type Testbed } from '../tools/conformance/hub/testbed';
import { SHORT } from './support/conformance-hub';
import type { ReportJson } from '../tools/conformance/report';

jest.setTimeout(90_000);

function failures(result: HubKitResult): string[] {
  return result.report
    .results()
    .filter((r) => r.verdict === 'fail')
    .map((r) => `${r.id}: ${r.evidence.map((e) => `[${e.scenario}] ${e.note}`).join(' | ')}`);
}

describe('hub mode against the reference hub (TCP)', () => {
  let bed: Testbed;
  let result: HubKitResult;

  beforeAll(async () => {
    bed = await startTestbed({ faultDevices: 2 });
    result = await runHubConformance({
      target: { host: '127.0.0.1', port: bed.port },
      devices: bed.devices,
      hubStatic: bed.hubStatic,
      hooks: bed.hub.hooks(),
      durationMs: 3_000,
      faultDevices: 2,
      seed: 15,
      ...SHORT,
      onDevicesChanged: (devices) => saveKitDevices(bed.records, devices),
    });
  });

  afterAll(async () => {
    await bed?.close();
  });

  test('every observed requirement passes, and every scenario observed something', () => {
    expect(failures(result)).toEqual([]);
    expect(result.report.exitCode()).toBe(0);
    const results = result.report.results();
    const passed = results.filter((r) => r.verdict === 'pass').map((r) => r.id);
    // The ones only a crash, a recovery, a dh rotation or the fault run can show are among them.
    for (const id of ['H-SESSION-1', 'H-SESSION-2', 'W-REJECT-1', 'W-CHECK-8', 'H-REKEY-1', 'H-REKEY-2', 'H-CONFIRM-2', 'H-CONFIRM-3', 'H-DH-1', 'H-DH-3', 'H-DH-4', 'W-DH-1', 'H-REC-1', 'H-REC-2', 'H-REC-6', 'H-HELLO-1', 'W-DATA-2']) {
      expect(passed).toContain(id);
    }
    expect(passed.length).toBeGreaterThanOrEqual(50);
    // Shortened waits are n/a with the reason, never a pass.
    const timer = results.find((r) => r.id === 'H-TIMER-1');
    expect(timer?.verdict).toBe('n/a');
    expect(timer?.evidence[0]?.note).toMatch(/shortened wait/);
    // Bounded: the crashes restarted the hub, and the run stayed within its socket budget.
    expect(bed.hub.starts).toBeGreaterThanOrEqual(8);
    expect(result.connections).toBeGreaterThan(100);
  });

  test('the CLI prints one line per requirement, writes the JSON report and exits 0', () => {
    const json = join(bed.dir, 'report.json');
    const cli = spawnSync(
      process.execPath,
      [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'tools/conformance/cli.ts', 'hub', '--target', `127.0.0.1:${bed.port}`, '--records', bed.records, '--scenarios', 'handshake,messages,replay', '--json', json, '--quiet'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(cli.stderr).toBe('');
    expect(cli.status).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8')) as ReportJson;
    expect(report.failed).toBe(0);
    expect(report.passed).toBeGreaterThanOrEqual(20);
    const lines = cli.stdout.split('\n').filter((line) => /^(pass|fail|n\/a) /.test(line));
    expect(lines.length).toBe(report.requirements.length);
    expect(cli.stdout).toMatch(/^pass H-SESSION-2 /m);
    // A usage error is exit 2, with the reason.
    const usage = spawnSync(process.execPath, [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'tools/conformance/cli.ts', 'hub', '--target', `127.0.0.1:${bed.port}`], { encoding: 'utf8', timeout: 30_000 });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/--records/);
  });
});

describe('hub mode against the reference hub (TLS)', () => {
  test('TLS 1.2/1.3 with a CA-issued certificate; the scenarios pass through it', async () => {
    const bed = await startTestbed({ tls: true, faultDevices: 0 });
    try {
      const result = await runHubConformance({
        target: { host: '127.0.0.1', port: bed.port, tls: { ca: bed.caPem as string, servername: 'localhost' } },
        devices: bed.devices,
        hubStatic: bed.hubStatic,
        hooks: bed.hub.hooks(),
        scenarios: ['tls', 'handshake', 'messages', 'rotation-dh', 'recovery'],
        ...SHORT,
      });
      expect(failures(result)).toEqual([]);
      const verdict = (id: string): string | undefined => result.report.results().find((r) => r.id === id)?.verdict;
      for (const id of ['H-TLS-1', 'H-TLS-2', 'H-TLS-3', 'W-TLS-1', 'H-DH-4', 'H-REC-6']) expect(verdict(id)).toBe('pass');
    } finally {
      await bed.close();
    }
  });
});

describe('a hub declaring optional features absent (--without, PROTOCOL.md §15)', () => {
  test('their scenarios do not run, their ids are n/a with the declaration, the core is still judged', async () => {
    const bed = await startTestbed({ faultDevices: 0 });
    try {
      const result = await runHubConformance({
        target: { host: '127.0.0.1', port: bed.port },
        devices: bed.devices,
        hooks: bed.hub.hooks(),
        scenarios: ['handshake', 'rotation-classic', 'rotation-dh', 'recovery'],
        without: ['dh', 'recovery'],
        ...SHORT,
      });
      expect(failures(result)).toEqual([]);
      const find = (id: string) => result.report.results().find((r) => r.id === id);
      for (const id of ['H-DH-4', 'W-DH-1']) expect(find(id)?.evidence[0]?.note).toMatch(/declares no dh feature/);
      for (const id of ['H-REC-1', 'H-REC-6']) expect(find(id)?.evidence[0]?.note).toMatch(/declares no recovery feature/);
      for (const id of ['H-REKEY-2', 'H-CONFIRM-4', 'H-SESSION-1']) expect(find(id)?.verdict).toBe('pass');
      expect(find('H-HELLO-1')?.verdict).toBe('pass');
    } finally {
      await bed.close();
    }
  });
});
