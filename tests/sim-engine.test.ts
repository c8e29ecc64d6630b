/**
 * The verification engine itself (tools/verify): determinism, the scenario,
 * and that every checker can fail — an invariant that cannot fire proves
 * nothing.
 */
import { nodeAead } from '../hosts/node/crypto';
import { AppLedger } from '../tools/verify/app-ledger';
import { RoundsDriver } from '../tools/verify/driver';
import { exploreExhaustively, explainFailure, runSchedule } from '../tools/verify/exhaustive';
import { FrameAudit } from '../tools/verify/frame-audit';
import { KeyInvariants } from '../tools/verify/invariants';
import { MemoryDeviceStore } from '../tools/verify/device-store';
import { KeystoreDeviceStore } from '../tools/verify/keystore-store';
import { faultPoints } from '../tools/verify/points';
import { BROKEN_VARIANTS } from '../tools/verify/variants';
import { World } from '../tools/verify/world';
import { sealFrame } from '../modules/protocol/frame';
import { MessageType } from '../modules/protocol/constants';

function key(fill: number): Uint8Array {
  return new Uint8Array(64).fill(fill);
}

describe('simulation engine', () => {
  test('the scenario: 3 rotations with app data both ways, real keystore on the NOR flash model, no violation', () => {
    const world = new World({ seed: 11, driver: new RoundsDriver(3) });
    world.run();
    expect(world.violations).toEqual([]);
    expect(world.device.store).toBeInstanceOf(KeystoreDeviceStore);
    expect(world.counters.rotationsConfirmed).toBe(3);
    expect(world.counters.keysPromotedOnDevice).toBe(3);
    expect(world.counters.appDelivered).toBe(6);
    expect(world.synced()).toBe(true);
    expect(world.hub.core!.deviceState(world.deviceId).activeKeyId).toBe(4);
  });

  test('the storage is behind an interface: the same scenario on a plain in-memory store', () => {
    const world = new World({ seed: 11, driver: new RoundsDriver(3), store: (_id, active, mode) => new MemoryDeviceStore({ mode, active }) });
    world.run();
    expect(world.violations).toEqual([]);
    expect(world.device.store.kind).toBe('memory');
    expect(world.counters.rotationsConfirmed).toBe(3);
  });

  test('a seed and a fault plan reproduce a run exactly', () => {
    const baseline = runSchedule({ seed: 5, rounds: 3, points: [] }, { profile: true });
    const points = faultPoints(baseline.world.profiles, 0);
    const schedule = { seed: 5, rounds: 3, points: [points[17]!, points[400]!].sort((a, b) => a.step - b.step) };
    const first = runSchedule(schedule, { trace: true });
    const second = runSchedule(schedule, { trace: true });
    expect(second.world.stateDigest()).toBe(first.world.stateDigest());
    expect(second.world.trace.text()).toBe(first.world.trace.text());
    expect(first.world.step).toBeGreaterThan(baseline.world.step);
  });

  test('a failing schedule is printed with its seed, its faults and a trace, and reruns identically', () => {
    const variant = BROKEN_VARIANTS.find((v) => v.name === 'hub-replaces-unconfirmed-pending')!;
    const report = exploreExhaustively({ rounds: 3, seed: 1, pairs: 'none', variant, stopAtFirstViolation: true });
    const failure = report.failures[0]!;
    const text = explainFailure(failure, { variant });
    expect(text).toContain('seed 1');
    expect(text).toContain(failure.schedule.points[0]!.label);
    expect(text).toContain('rerun: reproduced');
    expect(text).toContain('BROKEN HOST replaces');
  });

  test('the enumeration covers every byte of REKEY and REKEY_ACK and every byte of every flash program', () => {
    const baseline = runSchedule({ seed: 1, rounds: 3, points: [] }, { profile: true });
    const points = faultPoints(baseline.world.profiles, 0);
    const cuts = points.filter((p) => p.kind === 'link cut inside REKEY/REKEY_ACK').length;
    // 3 REKEY (166 bytes on the wire) and 3 REKEY_ACK (102): every inner byte.
    expect(cuts).toBe(3 * 165 + 3 * 101);
    const programs = baseline.world.profiles.flatMap((p) => p.flashOps).filter((op) => op.kind === 'program');
    const torn = points.filter((p) => p.kind === 'torn flash write').length;
    const erases = baseline.world.profiles.flatMap((p) => p.flashOps).filter((op) => op.kind === 'erase').length;
    expect(torn).toBe(programs.reduce((n, op) => n + op.length + 2, 0) + 3 * erases);
  });
});

describe('every checker can fail', () => {
  test('S1, S2, S3, S4, S5 on constructed key views', () => {
    const fired = new Set<string>();
    const check = (views: Parameters<KeyInvariants['check']>[0], invariants = new KeyInvariants('0000000000000000')) => {
      invariants.check(views, (invariant) => fired.add(invariant.split(' ')[0]!));
      return invariants;
    };
    const k1 = { id: 1, key: key(1) };
    const k2 = { id: 2, key: key(2) };
    check({ deviceLive: { mode: 'classic', active: k1, future: k2 }, deviceDurable: { mode: 'classic', active: k1, future: k2 }, hubLive: { active: k1 }, hubDurable: { active: k1 } });
    expect(fired.has('S1')).toBe(true);
    check({ deviceLive: { mode: 'classic', active: k1 }, deviceDurable: { mode: 'classic', active: k1 }, hubLive: { active: k2 }, hubDurable: { active: k2 } });
    expect(fired.has('S2')).toBe(true);
    check({ deviceLive: { mode: 'classic', active: k2, future: k1 }, deviceDurable: { mode: 'classic', active: k2, future: k1 }, hubLive: { active: k2, pending: k1 }, hubDurable: { active: k2, pending: k1 } });
    expect(fired.has('S3')).toBe(true);
    const invariants = check({ deviceLive: { mode: 'classic', active: k2 }, deviceDurable: { mode: 'classic', active: k2 }, hubLive: { active: k2 }, hubDurable: { active: k2 } });
    check({ deviceLive: { mode: 'classic', active: k1 }, deviceDurable: { mode: 'classic', active: k1 }, hubLive: { active: k1 }, hubDurable: { active: k1 } }, invariants);
    expect(fired.has('S4')).toBe(true);
    check({ deviceLive: { mode: 'classic', active: k1, future: { id: 2, key: key(9) } }, deviceDurable: { mode: 'classic', active: k1 }, hubLive: { active: k1, pending: k2 }, hubDurable: { active: k1, pending: k2 } });
    expect(fired.has('S5')).toBe(true);
  });

  test('S7 and S8: a frame accepted twice, and a frame the side sealed itself (reflected)', () => {
    const found: string[] = [];
    const nonce = new Uint8Array(16).fill(7);
    const audit = new FrameAudit({
      deviceSession: () => Buffer.from(nonce).toString('hex'),
      hubSessionOpen: () => true,
      sealing: () => {},
      violation: (invariant) => found.push(invariant.split(' ')[0]!),
    });
    const hubAead = audit.wrap(nodeAead, 'hub');
    const deviceAead = audit.wrap(nodeAead, 'device');
    const frame = sealFrame({ aead: hubAead, key: key(1), iv: new Uint8Array(16), header: { fromHub: true, deviceId: new Uint8Array(8), keyId: 1, sequence: 1, sessionId: nonce }, message: { type: MessageType.PING } });
    const open = (bytes: Uint8Array, aead = deviceAead) => aead.open(key(1), bytes.subarray(36, 52), bytes.subarray(0, 36), bytes.subarray(52, bytes.length - 32), bytes.subarray(bytes.length - 32));
    open(frame);
    expect(found).toEqual([]);
    open(frame);
    expect(found).toEqual(['S7']);
    const own = sealFrame({ aead: deviceAead, key: key(1), iv: new Uint8Array(16), header: { fromHub: false, deviceId: new Uint8Array(8), keyId: 1, sequence: 2, sessionId: nonce }, message: { type: MessageType.PING } });
    open(own);
    expect(found).toEqual(['S7', 'S8']);
  });

  test('S9: duplicate, out-of-order, skipped and never-sent app data', () => {
    const found: string[] = [];
    const ledger = new AppLedger((invariant, detail) => found.push(`${invariant.split(' ')[0]}: ${detail}`));
    const m1 = ledger.payload('device', 1, 1);
    const m2 = ledger.payload('device', 1, 2);
    const m3 = ledger.payload('device', 1, 3);
    ledger.deliveredTo('hub', 1, m1);
    ledger.deliveredTo('hub', 1, m2);
    expect(found).toEqual([]);
    ledger.deliveredTo('hub', 1, m2);
    ledger.deliveredTo('hub', 2, m1);
    ledger.deliveredTo('hub', 2, m3);
    const forged = m3.slice();
    forged[10] = 0;
    ledger.deliveredTo('hub', 3, forged);
    expect(found.map((f) => f.split(':')[0])).toEqual(['S9', 'S9', 'S9']);
    expect(found[1]).toContain('skipped');
  });

  test('K: the keystore must boot with the state before or after a torn write (checked at every boot after a cut)', () => {
    const baseline = runSchedule({ seed: 2, rounds: 3, points: [] }, { profile: true });
    const torn = faultPoints(baseline.world.profiles, 0).filter((p) => p.kind === 'torn flash write');
    let cuts = 0;
    for (const point of torn.filter((_, i) => i % 7 === 0)) {
      const { world } = runSchedule({ seed: 2, rounds: 3, points: [point] }, {});
      expect(world.violations).toEqual([]);
      cuts += world.faults.get('torn flash write') ?? 0;
    }
    expect(cuts).toBeGreaterThan(40);
  });
});
