/**
 * Power-cut exploration of the keystore (docs/KEYSTORE.md §6), shared by
 * tests/keystore-power-cut.test.ts and tools/keystore-soak.ts.
 *
 * The property checked at every cut point: after the power fails during an
 * operation and the partition is mounted again, the key state is exactly the
 * state before the operation or exactly the state after it (same ids, same
 * key bytes, same device id), and the journal keeps working from there.
 * Since only the interrupted operation may be undone, the active key is
 * never lost, a future key is lost only if its own store was cut, and no
 * key that was never written can appear.
 *
 * Every entry point takes an optional `open` (default: the plain journal),
 * so the same exploration runs through the wrapped keystore
 * (wrapped-keystore.ts); the model and the checks compare plain keys.
 *
 * Verification code: portable (runs on XS too); not imported by the firmware.
 * Violations throw a plain Error describing the cut point.
 */
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../modules/platform/keys';
import { describeKeys, keysEqual, keysPromoted, keysWithFuture, type DeviceKeys, type KeyShares, type KeySlot } from '../../modules/platform/keys';
import { NorFlash, PowerCut } from '../../modules/flash/nor-flash';
import type { FlashOperation } from '../../modules/flash/nor-flash';
import { SeededRandom, enumerateCuts, tornErasePatterns } from './cut-injection';
import type { CutEnumeration } from './cut-injection';
import type { Flash } from '../../modules/platform/flash';
import { Keystore } from '../../modules/keystore/keystore';
import type { MountResult } from '../../modules/keystore/keystore';
import type { KeyStorage } from '../../modules/keystore/key-storage';

/** Opens the storage under test on a flash; the plain journal unless an option says otherwise. */
export type OpenKeyStorage = (flash: Flash) => KeyStorage;
const openPlain: OpenKeyStorage = (flash) => new Keystore(flash);

export type KeystoreOp = { readonly kind: 'storeFuture'; readonly id: number; readonly key: Uint8Array; readonly shares?: KeyShares } | { readonly kind: 'promote' };

export interface FlashGeometry {
  readonly sectorSize: number;
  readonly sectors: number;
}

export function applyOp(keystore: KeyStorage, op: KeystoreOp): void {
  if (op.kind === 'storeFuture') keystore.storeFuture(op.id, op.key);
  else keystore.promote();
}

/** The reference model: what the keystore must hold after `op`. */
export function modelAfter(keys: DeviceKeys, op: KeystoreOp): DeviceKeys {
  if (op.kind === 'storeFuture') return keysWithFuture(keys, op.shares === undefined ? { id: op.id, key: op.key } : { id: op.id, key: op.key, shares: op.shares });
  if (keys.future === undefined) throw new Error('model: promote without a future');
  return keysPromoted(keys);
}

/** The op that moves a state one step along a rotation. */
export function nextRotationStep(keys: DeviceKeys, random: SeededRandom): KeystoreOp {
  if (keys.future !== undefined) return { kind: 'promote' };
  return { kind: 'storeFuture', id: keys.active.id + 1 + random.below(3), key: random.bytes(KEY_BYTES) };
}

export { keysEqual } from '../../modules/platform/keys';

function mountedKeys(result: MountResult, deviceId: Uint8Array): DeviceKeys | undefined {
  if (!result.provisioned) return undefined;
  for (let i = 0; i < DEVICE_ID_BYTES; i++) if (result.deviceId[i] !== deviceId[i]) throw new Error('device id changed');
  return result.keys;
}

/** Mounts a fresh keystore on `flash` and requires exactly `expected`. */
export function mountExpecting(
  flash: NorFlash,
  deviceId: Uint8Array,
  expected: DeviceKeys,
  context: string,
  open: OpenKeyStorage = openPlain,
): KeyStorage {
  const keystore = open(flash);
  const got = mountedKeys(keystore.mount(), deviceId);
  if (got === undefined || !keysEqual(got, expected)) {
    throw new Error(`${context}: mounted ${describeKeys(got)}, expected ${describeKeys(expected)}`);
  }
  return keystore;
}

export interface ExploreOptions {
  readonly geometry: FlashGeometry;
  /** Rotations in the script (each: storeFuture then promote). */
  readonly rotations: number;
  readonly bitPatterns: CutEnumeration['bitPatterns'];
  readonly seed: number;
  /** The storage under test (default: the plain journal). */
  readonly open?: OpenKeyStorage;
}

export interface ExploreReport {
  readonly operations: number;
  readonly flashOperations: number;
  readonly compactions: number;
  readonly cutPoints: number;
  readonly mountedBefore: number;
  readonly mountedAfter: number;
}

/**
 * Runs the rotation script and, for every operation, every cut point of it:
 * tear it, remount, check before-or-after, then check the journal recovers
 * (finish or redo the operation, or take another path, and one more step).
 */
/** A freshly formatted partition and the seeded sources a script draws from. */
function startScript(options: ExploreOptions) {
  const random = new SeededRandom(options.seed);
  const erasePatterns = tornErasePatterns(random.nextU32());
  const enumeration: CutEnumeration = { bitPatterns: options.bitPatterns, erasePatterns, random };
  const deviceId = random.bytes(DEVICE_ID_BYTES);
  const flash = new NorFlash(options.geometry);
  const open = options.open ?? openPlain;
  const keystore = open(flash);
  const keys: DeviceKeys = { mode: 'classic', active: { id: 1 + random.below(1000), key: random.bytes(KEY_BYTES) } };
  keystore.format(deviceId, keys.active, keys.mode);
  return { random, erasePatterns, enumeration, deviceId, flash, keystore, keys, open };
}

export function exploreCuts(options: ExploreOptions): ExploreReport {
  const { random, enumeration, deviceId, flash, keystore, keys: initial, open } = startScript(options);
  let keys = initial;
  const report = { operations: 0, flashOperations: 0, compactions: 0, cutPoints: 0, mountedBefore: 0, mountedAfter: 0 };
  for (let step = 0; step < options.rotations * 2; step++) {
    const op = nextRotationStep(keys, random);
    const after = modelAfter(keys, op);
    const snapshot = flash.image();
    const trace = traceOp(options.geometry, snapshot, deviceId, keys, op, open);
    report.operations++;
    report.flashOperations += trace.length;
    if (trace.some((o) => o.kind === 'erase')) report.compactions++;
    for (const cut of enumerateCuts(trace, enumeration)) {
      const context = `step ${step} (${op.kind}), ${cut.label}`;
      const torn = new NorFlash({ ...options.geometry, image: snapshot });
      const victim = open(torn);
      victim.mount();
      torn.armCut(cut.plan);
      try {
        applyOp(victim, op);
        throw new Error(`${context}: the cut did not happen`);
      } catch (error) {
        if (!(error instanceof PowerCut)) throw error;
      }
      torn.restorePower();
      const resumed = open(torn);
      const got = mountedKeys(resumed.mount(), deviceId);
      let now: DeviceKeys;
      if (got !== undefined && keysEqual(got, keys)) {
        report.mountedBefore++;
        // Recovery: half the time redo the same op, half the time take another path.
        const retry = report.cutPoints % 2 === 0 || op.kind === 'promote' ? op : nextRotationStep(keys, random);
        applyOp(resumed, retry);
        now = modelAfter(keys, retry);
      } else if (got !== undefined && keysEqual(got, after)) {
        report.mountedAfter++;
        now = after;
      } else {
        throw new Error(`${context}: mounted ${describeKeys(got)}, expected ${describeKeys(keys)} or ${describeKeys(after)}`);
      }
      const more = nextRotationStep(now, random);
      applyOp(resumed, more);
      mountExpecting(torn, deviceId, modelAfter(now, more), `${context}, recovery`, open);
      report.cutPoints++;
    }
    applyOp(keystore, op);
    keys = after;
    mountExpecting(flash, deviceId, keys, `step ${step} without a cut`, open);
  }
  return report;
}

/**
 * Two cuts in a row, aimed at sector reuse: for every compaction in the
 * script, every cut point of it that mounts as "before" is followed by a
 * different storeFuture (the hub offering another key), which compacts into
 * the same sector again, and that erase is torn with every pattern. The
 * state must be before or after the second store; the first attempt's key
 * must never come back.
 */
export function exploreRetryCuts(options: ExploreOptions): ExploreReport {
  const { random, erasePatterns, enumeration, deviceId, flash, keystore, keys: initial, open } = startScript(options);
  let keys = initial;
  const report = { operations: 0, flashOperations: 0, compactions: 0, cutPoints: 0, mountedBefore: 0, mountedAfter: 0 };
  for (let step = 0; step < options.rotations * 2; step++) {
    const op = nextRotationStep(keys, random);
    const snapshot = flash.image();
    const trace = traceOp(options.geometry, snapshot, deviceId, keys, op, open);
    report.operations++;
    report.flashOperations += trace.length;
    if (trace.some((o) => o.kind === 'erase')) {
      report.compactions++;
      const other = nextRotationStep(keys, random);
      const otherAfter = modelAfter(keys, other);
      for (const first of enumerateCuts(trace, enumeration)) {
        const torn = new NorFlash({ ...options.geometry, image: snapshot });
        const victim = open(torn);
        victim.mount();
        torn.armCut(first.plan);
        try {
          applyOp(victim, op);
        } catch (error) {
          if (!(error instanceof PowerCut)) throw error;
        }
        torn.restorePower();
        if (!keysEqual(mountedKeys(open(torn).mount(), deviceId) ?? keys, keys)) continue; // "after": nothing to retry
        const afterFirst = torn.image();
        for (const pattern of erasePatterns) {
          const context = `step ${step}, first cut ${first.label}, then erase torn: ${pattern.name}`;
          const second = new NorFlash({ ...options.geometry, image: afterFirst });
          const retry = open(second);
          retry.mount();
          second.armCut({ atOperation: 0, tornErase: pattern.tornErase });
          try {
            applyOp(retry, other);
            throw new Error(`${context}: the second store did not erase first`);
          } catch (error) {
            if (!(error instanceof PowerCut)) throw error;
          }
          second.restorePower();
          const got = mountedKeys(open(second).mount(), deviceId);
          if (got !== undefined && keysEqual(got, keys)) report.mountedBefore++;
          else if (got !== undefined && keysEqual(got, otherAfter)) report.mountedAfter++;
          else throw new Error(`${context}: mounted ${describeKeys(got)}, expected ${describeKeys(keys)} or ${describeKeys(otherAfter)}`);
          report.cutPoints++;
        }
      }
    }
    applyOp(keystore, op);
    keys = modelAfter(keys, op);
  }
  return report;
}

function traceOp(
  geometry: FlashGeometry,
  image: Uint8Array,
  deviceId: Uint8Array,
  keys: DeviceKeys,
  op: KeystoreOp,
  open: OpenKeyStorage,
): FlashOperation[] {
  const flash = new NorFlash({ ...geometry, image });
  const keystore = mountExpecting(flash, deviceId, keys, 'trace', open);
  const trace: FlashOperation[] = [];
  flash.observer = (operation) => trace.push(operation);
  applyOp(keystore, op);
  return trace;
}

export interface RandomRunOptions {
  readonly geometry: FlashGeometry;
  readonly rotations: number;
  readonly seed: number;
  /** Chance that an operation (and each retry of it) is cut. */
  readonly cutProbability: number;
  /** The storage under test (default: the plain journal). */
  readonly open?: OpenKeyStorage;
  /** Called every so often with the rotations done (progress for long runs). */
  readonly onProgress?: (rotations: number) => void;
}

export interface RandomRunReport {
  readonly rotations: number;
  readonly operations: number;
  readonly cuts: number;
  readonly mountedBefore: number;
  readonly mountedAfter: number;
  readonly sectorErases: readonly number[];
}

/**
 * The seeded long run: rotations with random cuts at random points (random
 * prefix, random in-flight bits, random torn-erase pattern), each followed
 * by a remount that must give before-or-after, then carrying on from there.
 */
export function randomCutRun(options: RandomRunOptions): RandomRunReport {
  const random = new SeededRandom(options.seed);
  const erasePatterns = tornErasePatterns(random.nextU32());
  const deviceId = random.bytes(DEVICE_ID_BYTES);
  const flash = new NorFlash(options.geometry);
  const open = options.open ?? openPlain;
  let keystore = open(flash);
  let keys: DeviceKeys = { mode: 'classic', active: { id: 1, key: random.bytes(KEY_BYTES) } };
  keystore.format(deviceId, keys.active, keys.mode);
  const report = { rotations: 0, operations: 0, cuts: 0, mountedBefore: 0, mountedAfter: 0 };
  while (report.rotations < options.rotations) {
    let op = nextRotationStep(keys, random);
    let after = modelAfter(keys, op);
    for (;;) {
      const cut = random.chance(options.cutProbability);
      if (cut) {
        const pattern = erasePatterns[random.below(erasePatterns.length)] as (typeof erasePatterns)[number];
        const prefixDraw = random.nextU32() / 0x100000000;
        flash.armCut({
          atOperation: random.below(3),
          programmedBytes: (length) => Math.floor(prefixDraw * (length + 1)),
          inFlightBits: random.below(256),
          tornErase: pattern.tornErase,
        });
      }
      try {
        applyOp(keystore, op);
        flash.disarmCut(); // the op finished before the armed operation
        break;
      } catch (error) {
        if (!(error instanceof PowerCut)) throw error;
      }
      report.cuts++;
      flash.restorePower();
      keystore = open(flash);
      const got = mountedKeys(keystore.mount(), deviceId);
      if (got !== undefined && keysEqual(got, keys)) {
        report.mountedBefore++;
        // Redo the op (maybe cut again), or, half the time after a cut store,
        // store a different future instead (the hub may offer another key).
        if (op.kind === 'storeFuture' && random.chance(0.5)) {
          op = nextRotationStep(keys, random);
          after = modelAfter(keys, op);
        }
        continue;
      }
      if (got !== undefined && keysEqual(got, after)) {
        report.mountedAfter++;
        break;
      }
      throw new Error(`seed ${options.seed}, op ${report.operations} (${op.kind}): mounted ${describeKeys(got)}, expected ${describeKeys(keys)} or ${describeKeys(after)}`);
    }
    keys = after;
    report.operations++;
    if (op.kind === 'promote') {
      report.rotations++;
      if (report.rotations % 1000 === 0) options.onProgress?.(report.rotations);
    }
    if (report.operations % 97 === 0) keystore = mountExpecting(flash, deviceId, keys, `op ${report.operations}`, open);
  }
  mountExpecting(flash, deviceId, keys, 'end of run', open);
  return { ...report, sectorErases: Array.from(flash.sectorErases) };
}
