/**
 * The conformance kit's device mode (tools/conformance/device, docs/CONFORMANCE.md
 * "Device mode") against the real Node device host on loopback: the reference
 * device passes every check (with power cuts, in process: powerOff loses
 * memory, the file flash is durable at every write), and each excluded
 * design of docs/PROTOCOL.md §8.5, injected around the real host
 * (tools/conformance/device/designs.ts), fails with the check — and so the
 * requirement — it breaks. The CLI run (a real process for the device,
 * SIGKILL as the power cut) is tests/conformance-device-cli.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchDevice, type DeviceDesign, type LaunchedDevice } from '../tools/conformance/device/designs';
import { CHECKS, NOT_CHECKED, REQUIREMENT_OF, type CheckName } from '../tools/conformance/device/observer';
import { provisionForKit } from '../tools/conformance/device/records';
import { runDeviceMode, type DeviceModeResult } from '../tools/conformance/device/run';

const DEVICE_TIMING = { keepaliveIntervalMs: 800, idleTimeoutMs: 2400, handshakeTimeoutMs: 1200 };
const KIT_TIMERS = { keepaliveMs: 800, idleMs: 2400, handshakeMs: 1200, slackMs: 700, quietMs: 150, connectWaitMs: 8000, answerMs: 3000 };

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function run(design: DeviceDesign, mode: 'classic' | 'dh', scenarios?: readonly string[], credential = true, timers: Partial<typeof KIT_TIMERS> = {}): Promise<DeviceModeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-kit-device-'));
  dirs.push(dir);
  const records = provisionForKit(dir, { mode, credential });
  let device: LaunchedDevice | undefined;
  try {
    return await runDeviceMode({
      host: '127.0.0.1',
      port: 0,
      records,
      timers: { ...KIT_TIMERS, ...timers },
      power: { kill: async () => device?.powerOff(), start: async () => device?.powerOn() },
      onListening: ({ port }) => {
        device = launchDevice({ image: join(dir, 'keystore.bin'), host: '127.0.0.1', port, design, timing: DEVICE_TIMING, reconnectInitialMs: 20, reconnectMaxMs: 200 });
      },
      timeoutMs: 60_000,
      ...(scenarios === undefined ? {} : { scenarios }),
    });
  } finally {
    device?.stop();
  }
}

function failedIds(result: DeviceModeResult): string[] {
  return result.json.requirements.filter((r) => r.verdict === 'fail').map((r) => r.id);
}

function failing(result: DeviceModeResult): CheckName[] {
  return (Object.keys(result.checks) as CheckName[]).filter((check) => result.checks[check] === 'fail');
}

describe('device mode against the reference Node device', () => {
  test('a classic-provisioned device (it moves to dh during the run) passes every check, power cuts included', async () => {
    const result = await run('reference', 'classic');
    expect(failing(result)).toEqual([]);
    const notApplicable = (Object.keys(CHECKS) as CheckName[]).filter((check) => result.checks[check] === 'n/a');
    // Only the enrolment of a credential (this device was provisioned with one: the next test).
    expect(notApplicable).toEqual(['enrol.store', 'enrol.badShare']);
    expect(result.json.failed).toBe(0);
    expect(result.exitCode).toBe(0);
    // Every device and wire requirement passed but those device mode says it cannot check (n/a, with the reason).
    const enrolment = ['D-ENROL-1', 'D-ENROL-4'];
    for (const requirement of result.json.requirements) {
      expect([requirement.id, requirement.verdict]).toEqual([requirement.id, NOT_CHECKED[requirement.id] === undefined && !enrolment.includes(requirement.id) ? 'pass' : 'n/a']);
    }
    expect(Object.values(REQUIREMENT_OF).flat().every((id) => NOT_CHECKED[id] === undefined)).toBe(true);
    expect(result.json.passed).toBeGreaterThanOrEqual(60);
  });

  test('a device provisioned without a credential enrols one (persisted before ENROL_ACK, across a power cut) and then recovers with it', async () => {
    const result = await run('reference', 'dh', ['enrolment', 'recovery'], false);
    expect(failing(result)).toEqual([]);
    for (const check of ['enrol.badShare', 'enrol.store', 'enrol.repeat', 'enrol.locked', 'rec.accepted', 'rec.persist'] as const) expect([check, result.checks[check]]).toEqual([check, 'pass']);
    expect(failedIds(result)).toEqual([]);
  });

  test('a dh-provisioned device: the classic rotations are n/a, REKEY_MODE_MISMATCH and the dh rotation pass', async () => {
    const result = await run('reference', 'dh', ['rotation-classic', 'rotation-dh', 'mode-mismatch']);
    expect(failing(result)).toEqual([]);
    expect(result.checks['dh.modeMismatch']).toBe('pass');
    expect(result.checks['dh.ack']).toBe('pass');
    expect(result.checks['rekey.ackUnderNew']).toBe('n/a');
  });
});

describe('device mode refutes the excluded device designs of §8.5, run as real devices', () => {
  test('acknowledging before persisting (classic D1 and dh D6): revealed by a power cut right after the REKEY_ACK', async () => {
    const result = await run('acks-before-persisting', 'classic', ['power-cut-after-ack-classic', 'power-cut-after-ack-dh', 'power-cut-after-confirm']);
    expect(failing(result)).toEqual(expect.arrayContaining(['rekey.persistBeforeAck', 'dh.persistBeforeAck', 'confirm.persist']));
    expect(failedIds(result)).toEqual(expect.arrayContaining(['D-KEY-1', 'D-DH-1', 'D-KEY-2']));
    expect(result.report.toText()).toMatch(/^fail +D-KEY-1 /m);
    expect(result.exitCode).toBe(1);
  });

  test('persisting a recovered key lazily (not R2 on the device, DK14): revealed by a power cut right after RECOVER_RESULT ACCEPTED', async () => {
    const result = await run('acks-before-persisting', 'classic', ['recovery']);
    expect(failing(result)).toContain('rec.persist');
    expect(failedIds(result)).toContain('D-REC-4');
    expect(result.exitCode).toBe(1);
    const reference = await run('reference', 'classic', ['recovery']);
    expect(reference.checks['rec.persist']).toBe('pass');
    expect(failedIds(reference)).toEqual([]);
  });

  test('the reference device passes those same power-cut scenarios (the check can pass)', async () => {
    const result = await run('reference', 'classic', ['power-cut-after-ack-classic', 'power-cut-after-ack-dh', 'power-cut-after-confirm']);
    expect(failing(result)).toEqual([]);
    expect(result.checks['rekey.persistBeforeAck']).toBe('pass');
    expect(result.checks['dh.persistBeforeAck']).toBe('pass');
    expect(failedIds(result)).toEqual([]);
  });

  test('sealing under the old key until the hub uses the new one (not D3)', async () => {
    const result = await run('seals-old-until-hub-uses-new', 'classic', ['rotation-classic']);
    expect(failing(result)).toEqual(expect.arrayContaining(['seal.newest', 'hello.newest']));
    expect(failedIds(result)).toEqual(expect.arrayContaining(['D-KEY-3', 'D-HELLO-1']));
    expect(failedIds(result)).not.toContain('D-KEY-1');
  });

  test('the timer checks fail a device slower than it says (keep-alive 800 ms and idle 2.4 s declared as 300 ms and 1.2 s)', async () => {
    const result = await run('reference', 'classic', ['timers'], true, { keepaliveMs: 300, idleMs: 1200, slackMs: 200 });
    expect(failing(result)).toEqual(expect.arrayContaining(['keepalive', 'timer.idle']));
    expect(failedIds(result)).toEqual(expect.arrayContaining(['D-TIMER-1', 'D-TIMER-2']));
  });

  test('a dh HELLO under the future key without its share (§11.2)', async () => {
    const result = await run('dh-hello-without-share', 'dh', ['rotation-dh']);
    expect(failing(result)).toEqual(['dh.helloShare']);
    expect(failedIds(result)).toEqual(['D-DH-6']);
  });
});
