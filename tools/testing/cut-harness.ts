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
 * (wrapped-keystore.ts); the model and the checks compare plain keys, the
 * rekey mode and a future key's shares (keysEqual). The scripts mix classic
 * futures and dh-derived ones (with shares), so promotions move the mode to
 * dh during a run. The model is modules/platform/keys.ts (keysWithFuture,
 * keysPromoted), not the keystore's own transitions.
 *
 * `exploreMigrationCuts` starts from images the v1 firmware wrote
 * (tools/testing/keystore-v1, frozen) and cuts the migration to format v2.
 *
 * Verification code: portable (runs on XS too); not imported by the firmware.
 * Violations throw a plain Error describing the cut point.
 */
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../modules/platform/keys';
import { SHARE_BYTES } from '../../modules/keystore/layout';
import { describeKeys, keysEqual, keysPromoted, keysWithFuture, type DeviceKeys, type KeyShares, type RekeyMode } from '../../modules/platform/keys';
import { NorFlash, PowerCut } from '../../modules/flash/nor-flash';
import type { FlashOperation } from '../../modules/flash/nor-flash';
import { SeededRandom, enumerateCuts, tornErasePatterns } from './cut-injection';
import type { CutEnumeration } from './cut-injection';
import type { Flash } from '../../modules/platform/flash';
import { Keystore, sameCredential } from '../../modules/keystore/keystore';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import type { MountResult } from '../../modules/keystore/keystore';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import { Keystore as KeystoreV1 } from './keystore-v1/keystore';

/** Opens the storage under test on a flash; the plain journal unless an option says otherwise. */
export type OpenKeyStorage = (flash: Flash) => KeyStorage;
const openPlain: OpenKeyStorage = (flash) => new Keystore(flash);

export type KeystoreOp =
  | { readonly kind: 'storeFuture'; readonly id: number; readonly key: Uint8Array; readonly shares?: KeyShares }
  | { readonly kind: 'promote' }
  /** The boot's housekeeping: finishes a migration or a scrub; no key changes. */
  | { readonly kind: 'scrub' };

export interface FlashGeometry {
  readonly sectorSize: number;
  readonly sectors: number;
}

export function applyOp(keystore: KeyStorage, op: KeystoreOp): void {
  if (op.kind === 'storeFuture') keystore.storeFuture(op.id, op.key, op.shares);
  else if (op.kind === 'promote') keystore.promote();
  else keystore.scrub?.();
}

/** The reference model: what the keystore must hold after `op`. */
export function modelAfter(keys: DeviceKeys, op: KeystoreOp): DeviceKeys {
  if (op.kind === 'storeFuture') return keysWithFuture(keys, op.shares === undefined ? { id: op.id, key: op.key } : { id: op.id, key: op.key, shares: op.shares });
  if (op.kind === 'scrub') return keys;
  if (keys.future === undefined) throw new Error('model: promote without a future');
  return keysPromoted(keys);
}

/**
 * The op that moves a state one step along a rotation. A future is
 * dh-derived (with two random 32-byte shares) half the time while the
 * device is classic and 7 times in 8 once it is dh (a classic future in the
 * dh mode is not what the protocol sends, but the keystore must keep the
 * mode dh through it).
 */
export function nextRotationStep(keys: DeviceKeys, random: SeededRandom): KeystoreOp {
  if (keys.future !== undefined) return { kind: 'promote' };
  const id = keys.active.id + 1 + random.below(3);
  const key = random.bytes(KEY_BYTES);
  const dh = keys.mode === 'dh' ? random.below(8) !== 0 : random.below(2) === 0;
  if (!dh) return { kind: 'storeFuture', id, key };
  return { kind: 'storeFuture', id, key, shares: { hub: random.bytes(SHARE_BYTES), device: random.bytes(SHARE_BYTES) } };
}

/** Requires a storage's in-memory keys to be `expected` (the state the next boot must not be needed for). */
export function keysExpecting(keystore: KeyStorage, expected: DeviceKeys, context: string): void {
  const got = keystore.keys;
  if (!keysEqual(got, expected)) throw new Error(`${context}: in memory ${describeKeys(got)}, expected ${describeKeys(expected)}`);
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
  /** The mode the partition is formatted in (default classic: the run then moves to dh). */
  readonly initialMode?: RekeyMode;
}

export interface ExploreReport {
  readonly operations: number;
  readonly flashOperations: number;
  readonly compactions: number;
  /** Promotions of dh-derived futures in the script (the mode is dh after the first). */
  readonly dhPromotions: number;
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
  const keys: DeviceKeys = { mode: options.initialMode ?? 'classic', active: { id: 1 + random.below(1000), key: random.bytes(KEY_BYTES) } };
  keystore.format(deviceId, keys.active, keys.mode);
  return { random, erasePatterns, enumeration, deviceId, flash, keystore, keys, open };
}

export function exploreCuts(options: ExploreOptions): ExploreReport {
  const { random, enumeration, deviceId, flash, keystore, keys: initial, open } = startScript(options);
  let keys = initial;
  const report = { operations: 0, flashOperations: 0, compactions: 0, dhPromotions: 0, cutPoints: 0, mountedBefore: 0, mountedAfter: 0 };
  for (let step = 0; step < options.rotations * 2; step++) {
    const op = nextRotationStep(keys, random);
    const after = modelAfter(keys, op);
    if (op.kind === 'promote' && keys.future?.shares !== undefined) report.dhPromotions++;
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
      keysExpecting(resumed, modelAfter(now, more), `${context}, recovery`);
      mountExpecting(torn, deviceId, modelAfter(now, more), `${context}, recovery`, open);
      report.cutPoints++;
    }
    applyOp(keystore, op);
    keys = after;
    keysExpecting(keystore, keys, `step ${step} without a cut`);
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
  const report = { operations: 0, flashOperations: 0, compactions: 0, dhPromotions: 0, cutPoints: 0, mountedBefore: 0, mountedAfter: 0 };
  for (let step = 0; step < options.rotations * 2; step++) {
    const op = nextRotationStep(keys, random);
    if (op.kind === 'promote' && keys.future?.shares !== undefined) report.dhPromotions++;
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
  /** The mode the partition is formatted in (default classic). */
  readonly initialMode?: RekeyMode;
  /** Called every so often with the rotations done (progress for long runs). */
  readonly onProgress?: (rotations: number) => void;
}

export interface RandomRunReport {
  readonly rotations: number;
  readonly operations: number;
  readonly cuts: number;
  readonly mountedBefore: number;
  readonly mountedAfter: number;
  /** Promotions of dh-derived keys (the mode is dh after the first). */
  readonly dhPromotions: number;
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
  let keys: DeviceKeys = { mode: options.initialMode ?? 'classic', active: { id: 1, key: random.bytes(KEY_BYTES) } };
  keystore.format(deviceId, keys.active, keys.mode);
  const report = { rotations: 0, operations: 0, cuts: 0, mountedBefore: 0, mountedAfter: 0, dhPromotions: 0 };
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
    if (op.kind === 'promote' && keys.future?.shares !== undefined) report.dhPromotions++;
    keys = after;
    report.operations++;
    if (report.operations % 13 === 0) keysExpecting(keystore, keys, `op ${report.operations}`);
    if (op.kind === 'promote') {
      report.rotations++;
      if (report.rotations % 1000 === 0) options.onProgress?.(report.rotations);
    }
    if (report.operations % 97 === 0) keystore = mountExpecting(flash, deviceId, keys, `op ${report.operations}`, open);
  }
  mountExpecting(flash, deviceId, keys, 'end of run', open);
  return { ...report, sectorErases: Array.from(flash.sectorErases) };
}

/** Opens storage of the v1 firmware (the frozen keystore-v1, or a wrapper over it) on a flash. */
export type OpenV1Storage = (flash: Flash) => KeyStorage;
const openV1Plain: OpenV1Storage = (flash) => new KeystoreV1(flash);

export interface MigrationOptions {
  readonly geometry: FlashGeometry;
  /** Rotations the v1 firmware does; the image after each of its operations is a starting point. */
  readonly rotations: number;
  readonly bitPatterns: CutEnumeration['bitPatterns'];
  readonly seed: number;
  /** Every how many v1 operations an image is a starting point; default 1 (each). */
  readonly startEvery?: number;
  /** Every how many starting images the next rotation step (not only `scrub()`) is also cut; default 1 (each). */
  readonly opEvery?: number;
  /** Chance that a starting image is itself left by a v1 operation torn at a random point (default 0.25). */
  readonly tornStart?: number;
  /** The storage under test (default: the plain journal) and the v1 firmware's (default: the frozen v1 journal). */
  readonly open?: OpenKeyStorage;
  readonly openV1?: OpenV1Storage;
}

export interface MigrationReport {
  /** v1 images migrated (each by `scrub()`, and by the next rotation step where it was cut too). */
  readonly startImages: number;
  readonly tornStartImages: number;
  readonly operations: number;
  readonly cutPoints: number;
  readonly mountedBefore: number;
  readonly mountedAfter: number;
  /** Cuts after which the image was still format v1 / already v2 (the migration happened or not). */
  readonly stillV1: number;
  readonly migrated: number;
  /** Cuts after which the v1 firmware still mounted the v1 copy of the state before (only ever that state). */
  readonly oldFirmwareMounted: number;
  /** Two cuts: a migration cut before its commit, then another key's migration torn at its erase. */
  readonly retryCutPoints: number;
}

/** The format version a storage's current sector has (Keystore and WrappedKeystore say it). */
function formatVersionOf(storage: KeyStorage): number {
  const version = (storage as { readonly formatVersion?: number }).formatVersion;
  if (version === undefined) throw new Error('storage does not report its format version');
  return version;
}

/**
 * The migration from format v1 to v2 under power cuts (docs/KEYSTORE.md
 * §11). The v1 firmware (frozen) formats a partition and rotates; after each
 * of its operations (some of them torn at a random point, so the image holds
 * torn records, interrupted compactions and interrupted scrubs as the field
 * does) the image is a starting point. On it, the current code runs
 * `scrub()` (the boot's migration alone) and the next rotation step
 * (migration + the operation); every cut of each is tried:
 * - the remount is exactly the state before (mode classic, as v1 has no
 *   other) or after, and the image is format v1 or v2 (the migration
 *   happened or not);
 * - the v1 firmware mounting the same image gets the state before the
 *   migration or nothing: never a state the v2 journal has moved past
 *   (once the op itself is done, it must refuse the image);
 * - after recovery (redo, then one more rotation step) the image is v2 and
 *   the v1 firmware refuses it.
 * Two cuts: a migration cut before its commit, then the migration of another
 * key, its erase of the same sector torn with every pattern.
 */
export function exploreMigrationCuts(options: MigrationOptions): MigrationReport {
  const random = new SeededRandom(options.seed);
  const erasePatterns = tornErasePatterns(random.nextU32());
  const enumeration: CutEnumeration = { bitPatterns: options.bitPatterns, erasePatterns, random };
  const open = options.open ?? openPlain;
  const openV1 = options.openV1 ?? openV1Plain;
  const deviceId = random.bytes(DEVICE_ID_BYTES);
  const flash = new NorFlash(options.geometry);
  let writer = openV1(flash);
  let keys: DeviceKeys = { mode: 'classic', active: { id: 1 + random.below(1000), key: random.bytes(KEY_BYTES) } };
  writer.format(deviceId, keys.active, 'classic');
  const report = {
    startImages: 0,
    tornStartImages: 0,
    operations: 0,
    cutPoints: 0,
    mountedBefore: 0,
    mountedAfter: 0,
    stillV1: 0,
    migrated: 0,
    oldFirmwareMounted: 0,
    retryCutPoints: 0,
  };
  const v1Mount = (image: Uint8Array): DeviceKeys | undefined => mountedKeys(openV1(new NorFlash({ ...options.geometry, image })).mount(), deviceId);
  for (let step = 0; step <= options.rotations * 2; step++) {
    const start = flash.image();
    const ops: KeystoreOp[] = [];
    if (step % (options.startEvery ?? 1) === 0 || step === options.rotations * 2) {
      report.startImages++;
      ops.push({ kind: 'scrub' });
      if (report.startImages % (options.opEvery ?? 1) === 0) ops.push(nextRotationStep(keys, random));
    }
    for (const op of ops) {
      const after = op.kind === 'scrub' ? keys : modelAfter(keys, op);
      const trace = traceOp(options.geometry, start, deviceId, keys, op, open);
      report.operations++;
      for (const cut of enumerateCuts(trace, enumeration)) {
        const context = `v1 step ${step}, migrating by ${op.kind}, ${cut.label}`;
        const torn = new NorFlash({ ...options.geometry, image: start });
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
        const isBefore = got !== undefined && keysEqual(got, keys);
        if (isBefore) report.mountedBefore++;
        else if (got !== undefined && keysEqual(got, after)) report.mountedAfter++;
        else throw new Error(`${context}: mounted ${describeKeys(got)}, expected ${describeKeys(keys)} or ${describeKeys(after)}`);
        if (formatVersionOf(resumed) === 1) report.stillV1++;
        else report.migrated++;
        const old = v1Mount(torn.image());
        if (old !== undefined) {
          report.oldFirmwareMounted++;
          if (!keysEqual(old, keys)) throw new Error(`${context}: the v1 firmware mounted ${describeKeys(old)}, not the state before the migration`);
          if (!isBefore) throw new Error(`${context}: the v1 firmware still mounts the state before an operation the v2 journal completed`);
        }
        // Two cuts: still v1 (the migration's commit not reached): another key's migration, its erase torn.
        if (isBefore && formatVersionOf(resumed) === 1 && op.kind === 'storeFuture' && report.cutPoints % 4 === 0) {
          report.retryCutPoints += retryMigrationErase(options.geometry, torn.image(), deviceId, keys, random, erasePatterns, open, context);
        }
        // Recovery: redo (a "before") and one more step; then the image is v2 and the v1 firmware refuses it.
        if (isBefore) applyOp(resumed, op);
        now = after;
        const more = nextRotationStep(now, random);
        applyOp(resumed, more);
        now = modelAfter(now, more);
        keysExpecting(resumed, now, `${context}, recovery`);
        const again = mountExpecting(torn, deviceId, now, `${context}, recovery`, open);
        if (formatVersionOf(again) !== 2) throw new Error(`${context}: still format v1 after recovery`);
        if (v1Mount(torn.image()) !== undefined) throw new Error(`${context}: the v1 firmware mounts the migrated image`);
        report.cutPoints++;
      }
    }
    if (step === options.rotations * 2) break;
    // The v1 firmware's next operation, sometimes torn (its image is then the "before" or "after" one).
    const op = nextClassicStep(keys, random);
    const tornHere = random.chance(options.tornStart ?? 0.25);
    if (tornHere) {
      const prefixDraw = random.nextU32() / 0x100000000;
      flash.armCut({
        atOperation: random.below(3),
        programmedBytes: (length) => Math.floor(prefixDraw * (length + 1)),
        inFlightBits: random.below(256),
        tornErase: (erasePatterns[random.below(erasePatterns.length)] as (typeof erasePatterns)[number]).tornErase,
      });
    }
    try {
      applyOp(writer, op);
      flash.disarmCut();
      keys = modelAfter(keys, op);
    } catch (error) {
      if (!(error instanceof PowerCut)) throw error;
      report.tornStartImages++;
      flash.restorePower();
      writer = openV1(flash);
      const got = mountedKeys(writer.mount(), deviceId);
      if (got !== undefined && keysEqual(got, modelAfter(keys, op))) keys = modelAfter(keys, op);
      else if (got === undefined || !keysEqual(got, keys)) throw new Error(`v1 step ${step}: the v1 firmware itself mounted ${describeKeys(got)}`);
    }
  }
  return report;
}

/** A v1 rotation step: classic only (the v1 firmware has no shares). */
function nextClassicStep(keys: DeviceKeys, random: SeededRandom): KeystoreOp {
  if (keys.future !== undefined) return { kind: 'promote' };
  return { kind: 'storeFuture', id: keys.active.id + 1 + random.below(3), key: random.bytes(KEY_BYTES) };
}

/** After a migration cut before its commit: another future's migration, its first erase torn with every pattern. */
function retryMigrationErase(
  geometry: FlashGeometry,
  image: Uint8Array,
  deviceId: Uint8Array,
  keys: DeviceKeys,
  random: SeededRandom,
  erasePatterns: ReturnType<typeof tornErasePatterns>,
  open: OpenKeyStorage,
  context: string,
): number {
  const other = nextRotationStep(keys, random);
  if (other.kind !== 'storeFuture') return 0;
  const otherAfter = modelAfter(keys, other);
  const trace = traceOp(geometry, image, deviceId, keys, other, open);
  if (trace[0]?.kind !== 'erase') throw new Error(`${context}: a v1 journal's next store did not start with the migration's erase`);
  let cuts = 0;
  for (const pattern of erasePatterns) {
    const second = new NorFlash({ ...geometry, image });
    const retry = open(second);
    retry.mount();
    second.armCut({ atOperation: 0, tornErase: pattern.tornErase });
    try {
      applyOp(retry, other);
      throw new Error(`${context}: the retry did not erase first`);
    } catch (error) {
      if (!(error instanceof PowerCut)) throw error;
    }
    second.restorePower();
    const got = mountedKeys(open(second).mount(), deviceId);
    if (got === undefined || !(keysEqual(got, keys) || keysEqual(got, otherAfter))) {
      throw new Error(`${context}, then another key's migration with its erase torn (${pattern.name}): mounted ${describeKeys(got)}`);
    }
    cuts++;
  }
  return cuts;
}

// ---- Recovery: the credential and the recovered key (docs/KEYSTORE.md §12) ----

export type RecoveryKeystoreOp =
  | KeystoreOp
  | { readonly kind: 'storeCredential'; readonly credential: RecoveryCredential }
  | { readonly kind: 'storeRecovered'; readonly id: number; readonly key: Uint8Array };

/** The model's state: the keys and the credential. */
export interface RecoveryModel {
  readonly keys: DeviceKeys;
  readonly credential: RecoveryCredential | undefined;
}

export function applyRecoveryOp(storage: KeyStorage, op: RecoveryKeystoreOp): void {
  if (op.kind === 'storeCredential') {
    if (storage.storeCredential === undefined) throw new Error('storage without storeCredential');
    storage.storeCredential(op.credential);
  } else if (op.kind === 'storeRecovered') {
    if (storage.storeRecovered === undefined) throw new Error('storage without storeRecovered');
    storage.storeRecovered(op.id, op.key);
  } else applyOp(storage, op);
}

/** The reference model: storeCredential sets the credential once; storeRecovered replaces the future slot (no shares). */
export function recoveryModelAfter(model: RecoveryModel, op: RecoveryKeystoreOp): RecoveryModel {
  if (op.kind === 'storeCredential') return { keys: model.keys, credential: model.credential ?? op.credential };
  if (op.kind === 'storeRecovered') return { keys: { mode: model.keys.mode, active: model.keys.active, future: { id: op.id, key: op.key } }, credential: model.credential };
  return { keys: modelAfter(model.keys, op), credential: model.credential };
}

function credentialsEqual(a: RecoveryCredential | undefined, b: RecoveryCredential | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameCredential(a, b);
}

function describeModel(model: RecoveryModel | undefined): string {
  if (model === undefined) return 'nothing';
  return `${describeKeys(model.keys)}, ${model.credential === undefined ? 'no credential' : `credential for hub static key ${model.credential.hubStaticId}`}`;
}

function mountedModel(storage: KeyStorage, deviceId: Uint8Array): RecoveryModel | undefined {
  const keys = mountedKeys(storage.mount(), deviceId);
  return keys === undefined ? undefined : { keys, credential: storage.credential };
}

function modelsEqual(a: RecoveryModel | undefined, b: RecoveryModel): boolean {
  return a !== undefined && keysEqual(a.keys, b.keys) && credentialsEqual(a.credential, b.credential);
}

export function randomCredential(random: SeededRandom): RecoveryCredential {
  return { device: { privateKey: random.bytes(32), publicKey: random.bytes(32) }, hubStaticId: 1 + random.below(100), hubPublicKey: random.bytes(32) };
}

/** The next op of a recovery script: rotations, one credential, recovered keys with and without a future held. */
function nextRecoveryStep(model: RecoveryModel, step: number, random: SeededRandom): RecoveryKeystoreOp {
  if (step === 2 && model.credential === undefined) return { kind: 'storeCredential', credential: randomCredential(random) };
  if (step % 3 === 0 && step > 0) {
    const highest = Math.max(model.keys.active.id, model.keys.future?.id ?? 0);
    return { kind: 'storeRecovered', id: highest + 1 + random.below(1000), key: random.bytes(KEY_BYTES) };
  }
  return nextRotationStep(model.keys, random);
}

export interface RecoveryExploreReport extends ExploreReport {
  readonly credentialStores: number;
  readonly recoveredStores: number;
  /** storeRecovered ops that replaced a future key (a compaction). */
  readonly recoveredReplacements: number;
}

function traceRecoveryOp(geometry: FlashGeometry, image: Uint8Array, deviceId: Uint8Array, model: RecoveryModel, op: RecoveryKeystoreOp, open: OpenKeyStorage): FlashOperation[] {
  const flash = new NorFlash({ ...geometry, image });
  const storage = open(flash);
  if (!modelsEqual(mountedModel(storage, deviceId), model)) throw new Error('trace: the image does not hold the model');
  const trace: FlashOperation[] = [];
  flash.observer = (operation) => trace.push(operation);
  applyRecoveryOp(storage, op);
  return trace;
}

/**
 * The cut exploration for the recovery operations: a script of rotations,
 * one storeCredential (appended, or compacted when the sector is full) and
 * storeRecovered every third step (appended without a future, a compaction
 * replacing the future otherwise), optionally formatted with a credential.
 * At every cut point of every op: remount, the keys AND the credential must
 * be exactly before or after; then the journal must carry on (redo the op
 * or another step, and one more step), and every later mount must still
 * hold the credential (carried across compactions).
 */
export function exploreRecoveryCuts(options: ExploreOptions & { readonly formatWithCredential?: boolean }): RecoveryExploreReport {
  const random = new SeededRandom(options.seed);
  const erasePatterns = tornErasePatterns(random.nextU32());
  const enumeration: CutEnumeration = { bitPatterns: options.bitPatterns, erasePatterns, random };
  const deviceId = random.bytes(DEVICE_ID_BYTES);
  const flash = new NorFlash(options.geometry);
  const open = options.open ?? openPlain;
  const storage = open(flash);
  const initialCredential = options.formatWithCredential === true ? randomCredential(random) : undefined;
  let model: RecoveryModel = { keys: { mode: options.initialMode ?? 'classic', active: { id: 1 + random.below(1000), key: random.bytes(KEY_BYTES) } }, credential: initialCredential };
  storage.format(deviceId, model.keys.active, model.keys.mode, initialCredential);
  const report = { operations: 0, flashOperations: 0, compactions: 0, dhPromotions: 0, cutPoints: 0, mountedBefore: 0, mountedAfter: 0, credentialStores: 0, recoveredStores: 0, recoveredReplacements: 0 };
  for (let step = 0; step < options.rotations * 2; step++) {
    const op = nextRecoveryStep(model, step, random);
    const after = recoveryModelAfter(model, op);
    if (op.kind === 'storeCredential') report.credentialStores++;
    if (op.kind === 'storeRecovered') {
      report.recoveredStores++;
      if (model.keys.future !== undefined) report.recoveredReplacements++;
    }
    if (op.kind === 'promote' && model.keys.future?.shares !== undefined) report.dhPromotions++;
    const snapshot = flash.image();
    const trace = traceRecoveryOp(options.geometry, snapshot, deviceId, model, op, open);
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
        applyRecoveryOp(victim, op);
        throw new Error(`${context}: the cut did not happen`);
      } catch (error) {
        if (!(error instanceof PowerCut)) throw error;
      }
      torn.restorePower();
      const resumed = open(torn);
      const got = mountedModel(resumed, deviceId);
      let now: RecoveryModel;
      if (modelsEqual(got, model)) {
        report.mountedBefore++;
        const retry = report.cutPoints % 2 === 0 || op.kind !== 'storeFuture' ? op : nextRotationStep(model.keys, random);
        applyRecoveryOp(resumed, retry);
        now = recoveryModelAfter(model, retry);
      } else if (modelsEqual(got, after)) {
        report.mountedAfter++;
        now = after;
      } else {
        throw new Error(`${context}: mounted ${describeModel(got)}, expected ${describeModel(model)} or ${describeModel(after)}`);
      }
      const more = nextRecoveryStep(now, step + 1, random);
      applyRecoveryOp(resumed, more);
      const expected = recoveryModelAfter(now, more);
      if (!modelsEqual({ keys: resumed.keys, credential: resumed.credential }, expected)) throw new Error(`${context}, recovery: in memory differs from ${describeModel(expected)}`);
      const remounted = mountedModel(open(torn), deviceId);
      if (!modelsEqual(remounted, expected)) throw new Error(`${context}, recovery: mounted ${describeModel(remounted)}, expected ${describeModel(expected)}`);
      report.cutPoints++;
    }
    applyRecoveryOp(storage, op);
    model = after;
    const remounted = mountedModel(open(flash), deviceId);
    if (!modelsEqual(remounted, model)) throw new Error(`step ${step} without a cut: mounted ${describeModel(remounted)}, expected ${describeModel(model)}`);
  }
  return report;
}
