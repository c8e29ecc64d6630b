/**
 * The device's durable key storage as the simulated device host sees it.
 * Two implementations: the real keystore journal on the NOR flash model
 * (keystore-store.ts; power cuts tear programs and erases at any byte) and
 * a plain in-memory record for quick unit tests of the engine.
 *
 * Contract: `apply` is durable when it returns (the ESP32 flash write is
 * synchronous); a power cut during it throws PowerCut and leaves either the
 * state before or the state after (the keystore's before-or-after rule).
 * `durable()` is what a boot would load right now; the invariants check
 * the hub against it as well as against the live core.
 */
import type { DevicePersistOp } from '../../modules/device/actions';
import { PowerCut } from '../../modules/flash/nor-flash';
import { copyKeys, keysPromoted, keysWithFuture, type DeviceKeys, type KeySlot } from '../../modules/platform/keys';

export { copyKeys, keysEqual } from '../../modules/platform/keys';

export interface FlashOpProfile {
  readonly kind: 'program' | 'erase';
  readonly length: number;
}

export interface TornWrite {
  /** Index of the flash operation within the next `apply`. */
  readonly operation: number;
  /** Program: bytes fully programmed before the cut (>= length: completed, then the cut). */
  readonly bytes: number;
  /** Program: which of the in-flight byte's bits did clear. */
  readonly inFlightBits: number;
  /** Erase: what the torn erase leaves. */
  readonly erase: 'unchanged' | 'half' | 'erased';
}

export interface DeviceStore {
  readonly kind: string;
  /** Power-up: read the stored keys (a fresh mount). */
  boot(): DeviceKeys;
  /** Makes `op` durable; throws PowerCut if a torn write was armed for it. */
  apply(op: DevicePersistOp): void;
  /** What a boot right now would load. */
  durable(): DeviceKeys;
  /** The power failed: volatile state is gone. */
  powerLost(): void;
  /** Arms a torn write for the next `apply` (stores without flash ignore it). */
  armTornWrite(torn: TornWrite): void;
  disarm(): void;
  /** Flash operations done by the last `apply` (for the fault enumerator). */
  readonly lastOps: readonly FlashOpProfile[];
  /** Write-back stores (broken variants): when they next flush, and the flush. */
  nextDeadline?(): number | undefined;
  tick?(now: number): void;
  /** A digest of the durable layout (flash state), for equivalence checks. */
  layoutDigest(): string;
}

/** The keys after `op` (the model the keystore must match). */
export function keysAfter(keys: DeviceKeys, op: DevicePersistOp): DeviceKeys {
  if (op.kind === 'storeCredential') return keys;
  // DK14: the recovered key replaces the future slot (no shares).
  if (op.kind === 'storeRecovered') return { mode: keys.mode, active: keys.active, future: { id: op.id, key: op.key.slice() } };
  if (op.kind === 'storeFuture') return keysWithFuture(keys, op.shares === undefined ? { id: op.id, key: op.key.slice() } : { id: op.id, key: op.key.slice(), shares: { hub: op.shares.hub.slice(), device: op.shares.device.slice() } });
  if (keys.future === undefined || keys.future.id !== op.id) throw new Error(`promote ${op.id} without that future key`);
  return keysPromoted(keys);
}

/** An in-memory store: each apply is one atomic write (a cut is before or after it). */
export class MemoryDeviceStore implements DeviceStore {
  readonly kind = 'memory';
  #keys: DeviceKeys;
  #torn: TornWrite | undefined;
  lastOps: FlashOpProfile[] = [];

  constructor(initial: DeviceKeys) {
    this.#keys = copyKeys(initial);
  }

  boot(): DeviceKeys {
    return copyKeys(this.#keys);
  }

  apply(op: DevicePersistOp): void {
    this.lastOps = [{ kind: 'program', length: 1 }];
    const torn = this.#torn;
    this.#torn = undefined;
    if (torn !== undefined && torn.operation === 0 && torn.bytes < 1) throw new PowerCut();
    this.#keys = keysAfter(this.#keys, op);
    if (torn !== undefined && torn.operation === 0) throw new PowerCut();
  }

  durable(): DeviceKeys {
    return this.#keys;
  }

  powerLost(): void {
    this.#torn = undefined;
  }

  armTornWrite(torn: TornWrite): void {
    this.#torn = torn;
  }

  disarm(): void {
    this.#torn = undefined;
  }

  layoutDigest(): string {
    return `${this.#keys.active.id}/${this.#keys.future?.id ?? 0}`;
  }
}
