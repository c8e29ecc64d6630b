/**
 * The device's storage in the simulation: the real keystore journal
 * (modules/keystore) on the NOR flash model (modules/flash/nor-flash.ts).
 * A torn write arms the model's power cut on one program or erase of the
 * next keystore operation: a program keeps a prefix of its bytes plus some
 * bits of the byte in flight, an erase leaves the sector unchanged, half
 * erased or fully erased. The device then boots by mounting the flash.
 *
 * Geometry: 3 sectors of 3 slots, so the journal compacts into the next
 * sector (erase, program, commit word) every second rotation; the
 * simulation's power cuts hit compactions too.
 */
import type { DevicePersistOp } from '../../modules/device/actions';
import { NorFlash, type CutPlan } from '../../modules/flash/nor-flash';
import { Keystore } from '../../modules/keystore/keystore';
import { SECTOR_HEADER_BYTES, SLOT_BYTES } from '../../modules/keystore/layout';
import type { DeviceKeys, KeySlot, RekeyMode } from '../../modules/platform/keys';
import type { DeviceStore, FlashOpProfile, TornWrite } from './device-store';
import { fnv1a } from './rng';

export const SIM_SLOTS_PER_SECTOR = 3;
export const SIM_SECTOR_BYTES = SECTOR_HEADER_BYTES + SIM_SLOTS_PER_SECTOR * SLOT_BYTES;
export const SIM_SECTORS = 3;

export class KeystoreDeviceStore implements DeviceStore {
  readonly kind = 'keystore';
  readonly flash: NorFlash;
  #keystore: Keystore | undefined;
  #durable: { operations: number; keys: DeviceKeys } | undefined;
  lastOps: FlashOpProfile[] = [];

  constructor(deviceId: Uint8Array, active: KeySlot, mode: RekeyMode) {
    this.flash = new NorFlash({ sectorSize: SIM_SECTOR_BYTES, sectors: SIM_SECTORS });
    new Keystore(this.flash).format(deviceId, active, mode);
  }

  boot(): DeviceKeys {
    this.flash.restorePower();
    const keystore = new Keystore(this.flash);
    const mounted = keystore.mount();
    if (!mounted.provisioned) throw new Error(`keystore: mount failed after a power cut: ${mounted.reason}: ${mounted.detail}`);
    this.#keystore = keystore;
    return mounted.keys;
  }

  apply(op: DevicePersistOp): void {
    const keystore = this.#keystore;
    if (keystore === undefined) throw new Error('keystore: apply before boot');
    const ops: FlashOpProfile[] = [];
    this.flash.observer = (operation) => {
      ops.push(operation.kind === 'program' ? { kind: 'program', length: operation.data.length } : { kind: 'erase', length: this.flash.sectorSize });
    };
    try {
      if (op.kind === 'storeFuture') keystore.storeFuture(op.id, op.key, op.shares);
      else if (op.kind === 'storeRecovered') keystore.storeRecovered(op.id, op.key);
      else if (op.kind === 'storeCredential') keystore.storeCredential(op.credential);
      else keystore.promote();
    } finally {
      this.flash.observer = undefined;
      this.lastOps = ops;
    }
  }

  durable(): DeviceKeys {
    const cached = this.#durable;
    if (cached !== undefined && cached.operations === this.flash.operations && this.flash.isPowered) return cached.keys;
    if (!this.flash.isPowered) this.flash.restorePower();
    const mounted = new Keystore(this.flash).mount();
    if (!mounted.provisioned) throw new Error(`keystore: flash does not mount: ${mounted.reason}: ${mounted.detail}`);
    this.#durable = { operations: this.flash.operations, keys: mounted.keys };
    return mounted.keys;
  }

  powerLost(): void {
    this.#keystore = undefined;
    this.flash.disarmCut();
    // Power returns at the next boot; nothing writes meanwhile, so reading it now (durable()) is the same.
    this.flash.restorePower();
  }

  armTornWrite(torn: TornWrite): void {
    const plan: CutPlan = {
      atOperation: torn.operation,
      programmedBytes: torn.bytes,
      inFlightBits: torn.inFlightBits,
      tornErase: (previous) => tornErase(previous, torn.erase),
    };
    this.flash.armCut(plan);
  }

  disarm(): void {
    this.flash.disarmCut();
  }

  layoutDigest(): string {
    return fnv1a(this.flash.image()).toString(16);
  }
}

function tornErase(previous: Uint8Array, how: TornWrite['erase']): Uint8Array {
  const left = previous.slice();
  if (how === 'erased') left.fill(0xff);
  if (how === 'half') left.fill(0xff, 0, left.length >> 1);
  return left;
}

export function keystoreStore(deviceId: Uint8Array, active: KeySlot, mode: RekeyMode): KeystoreDeviceStore {
  return new KeystoreDeviceStore(deviceId, active, mode);
}
