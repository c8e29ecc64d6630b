// FROZEN: modules/keystore/keystore.ts as of format v1 (commit 1e36baf), the firmware before format v2.
// Verification only (tools/testing/keystore-v1/README.md): it writes the v1 images the migration
// tests start from and plays the old firmware that meets a v2 image. Do not change.
/**
 * The device keystore: one active key and at most one future key, kept in a
 * power-fail-safe, wear-levelled journal on a small flash partition
 * (docs/KEYSTORE.md). Synchronous; every operation is durable when it
 * returns. Uses only the `Flash` seam.
 *
 * Call order: `mount()` (or `format()`), then any of `storeFuture`,
 * `promote`, `keys`. Operations before a successful mount throw
 * LockstepError('UNPROVISIONED' or 'LOCAL_NOT_READY').
 * With the device core (its 'persist' actions): `storeFuture(op.id, op.key)`
 * or `promote(op.id)`, then `core.persisted(now)`.
 *
 * Before-or-after (docs/KEYSTORE.md §5): each mutating operation has
 * exactly one commit point, the program of one 4-byte word (a record's
 * commit word, a promote word, or a sector's commit word); for storeFuture
 * and promote it is the last write. If power fails before that word is
 * fully programmed, mount sees the state before the operation; after, the
 * state after it. Nothing erases or rewrites the current sector.
 *
 * Erasing retired keys (docs/KEYSTORE.md §4.1): after a promotion's commit
 * point, `scrub` programs the bytes of every key the journal no longer needs
 * to 0x00 — in the current sector every record but the active and the
 * future one (the snapshot first gets its retired marker, its promote word),
 * in every other sector the key field of every non-blank slot. Programming
 * only clears bits, never touches a blank slot, a commit word or a header,
 * and mount reads a zeroed (or half-zeroed) retired record as one to skip,
 * so a cut anywhere in the scrub mounts "after" the promotion; the next
 * `promote` (or `scrub()`) finishes what a cut left.
 *
 * Errors: bad arguments get a typed LockstepError and change nothing. If
 * the flash itself throws (I/O error, power cut), the in-memory state is
 * dropped and `mount()` must be called again.
 */
import { LockstepError } from '../../../modules/errors';
import type { Flash } from '../../../modules/platform/flash';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../../modules/platform/keys';
import type { DeviceKeys, KeySlot, RekeyMode } from '../../../modules/platform/keys';
import { journalGeometry, scanJournal } from './journal';
import type { Geometry, JournalState, UnprovisionedReason } from './journal';
import {
  SECTOR_HEADER_BYTES,
  MAX_KEY_ID,
  MAX_SEQUENCE,
  RECORD_ACTIVE,
  RECORD_COMMIT_OFFSET,
  RECORD_FUTURE,
  RECORD_KEY_OFFSET,
  RECORD_PROMOTE_OFFSET,
  SECTOR_COMMIT_OFFSET,
  SLOT_BYTES,
  WORD_BYTES,
  encodeSectorHeader,
  encodeRecord,
  isBlank,
  sectorCommitWord,
  slotOffset,
  wordState,
} from './layout';

export type { UnprovisionedReason } from './journal';

export type MountResult =
  | { readonly provisioned: true; readonly deviceId: Uint8Array; readonly keys: DeviceKeys }
  | { readonly provisioned: false; readonly reason: UnprovisionedReason; readonly detail: string };

export class Keystore {
  private readonly flash: Flash;
  private readonly geometry: Geometry;
  private state: JournalState | undefined;
  /** Why operations are refused while there is no state. */
  private notReady: { code: 'LOCAL_NOT_READY' | 'UNPROVISIONED'; message: string } = {
    code: 'LOCAL_NOT_READY',
    message: 'keystore not mounted',
  };

  /** Throws LOCAL_BAD_ARGUMENT if the partition cannot hold a journal. */
  constructor(flash: Flash) {
    this.flash = flash;
    this.geometry = journalGeometry(flash);
  }

  /** Reads the journal. Never throws on any flash content (only on flash I/O errors). */
  mount(): MountResult {
    this.dropState();
    const scan = scanJournal(this.flash, this.geometry);
    if (!scan.ok) {
      this.notReady = { code: 'UNPROVISIONED', message: `${scan.reason}: ${scan.detail}` };
      return { provisioned: false, reason: scan.reason, detail: scan.detail };
    }
    this.state = scan.state;
    return { provisioned: true, deviceId: scan.state.deviceId.slice(), keys: this.keys };
  }

  /** The live key state (copies). */
  get keys(): DeviceKeys {
    const state = this.mounted();
    const active = copySlot(state.active);
    return state.future === undefined ? { mode: 'classic', active } : { mode: 'classic', active, future: copySlot(state.future) };
  }

  get deviceId(): Uint8Array {
    return this.mounted().deviceId.slice();
  }

  /**
   * Provisioning: makes a new journal holding `deviceId` and `initial` as the
   * active key. A cut leaves the previous journal (or none) or the new one.
   * The new sector is committed first, then every other sector is erased so
   * no earlier key stays in flash.
   */
  format(deviceId: Uint8Array, initial: KeySlot, _mode: RekeyMode): void {
    if (!(deviceId instanceof Uint8Array) || deviceId.length !== DEVICE_ID_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device id must be ${DEVICE_ID_BYTES} bytes`);
    }
    checkSlot(initial);
    const scan = scanJournal(this.flash, this.geometry);
    const previousSector = scan.ok ? scan.state.sector : -1;
    const highest = scan.ok ? scan.state.highestSequence : scan.highestSequence;
    if (scan.ok) wipeState(scan.state);
    this.dropState();
    this.guard(() => {
      if (highest >= MAX_SEQUENCE) this.eraseAll(); // only a forged header can get here
      const sequence = highest >= MAX_SEQUENCE ? 1 : Math.max(highest + 1, 1);
      const sector = (previousSector + 1) % this.geometry.sectorCount;
      this.writeSector(sector, sequence, deviceId, initial, undefined);
      for (let other = 0; other < this.geometry.sectorCount; other++) if (other !== sector) this.flash.erase(other);
      this.state = {
        deviceId: deviceId.slice(),
        sector,
        sequence,
        highestSequence: sequence,
        active: copySlot(initial),
        future: undefined,
        futureSlot: -1,
        activeSlot: 0,
        nextSlot: 1,
      };
    });
  }

  /**
   * Stores the future key. Refuses (no state change): id not above the
   * active id or not a u32 (LOCAL_BAD_ARGUMENT), a different future already
   * stored (LOCAL_BUSY). Storing the stored future again does nothing.
   */
  storeFuture(id: number, key: Uint8Array): void {
    const state = this.mounted();
    checkSlot({ id, key });
    if (state.future !== undefined) {
      if (state.future.id === id && sameBytes(state.future.key, key)) return;
      throw new LockstepError('LOCAL_BUSY', `future key ${state.future.id} is already stored`);
    }
    if (id <= state.active.id) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `future id ${id} must be above active id ${state.active.id}`);
    }
    this.guard(() => {
      const slot = this.findBlankSlot(state);
      if (slot === undefined) {
        this.compact(state, { id, key });
        return;
      }
      const at = this.slotAddress(state.sector, slot);
      const record = new Uint8Array(SLOT_BYTES);
      try {
        encodeRecord(record, 0, RECORD_FUTURE, id, key, state.sequence, slot, false);
        this.programVerified(at, record.subarray(0, RECORD_COMMIT_OFFSET));
      } finally {
        record.fill(0);
      }
      this.programVerified(at + RECORD_COMMIT_OFFSET, new Uint8Array(WORD_BYTES)); // the commit point
      this.state = { ...state, future: copySlot({ id, key }), futureSlot: slot, nextSlot: slot + 1 };
    });
  }

  /**
   * Makes the future key active and retires the previous active key; returns
   * the new active key. With `expectedId` (the id in the core's 'persist'
   * action): refuses a different future (LOCAL_BAD_ARGUMENT), and if that
   * key is already active with no future, does nothing (idempotent).
   * Without a future: LOCAL_NOT_READY. Refusals change nothing.
   */
  promote(expectedId?: number): KeySlot {
    const state = this.mounted();
    const future = state.future;
    if (expectedId !== undefined && future === undefined && state.active.id === expectedId) {
      // Idempotent repeat: finishes a scrub a power cut interrupted (writes nothing otherwise).
      this.guard(() => this.scrubRetired(state));
      return copySlot(state.active);
    }
    if (future === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no future key to promote');
    if (expectedId !== undefined && future.id !== expectedId) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `future key is ${future.id}, not ${expectedId}`);
    }
    this.guard(() => {
      const at = this.slotAddress(state.sector, state.futureSlot) + RECORD_PROMOTE_OFFSET;
      this.programVerified(at, new Uint8Array(WORD_BYTES)); // the commit point
      state.active.key.fill(0);
      this.state = { ...state, active: future, future: undefined, futureSlot: -1, activeSlot: state.futureSlot };
      this.scrubRetired(this.state); // after the commit point: a cut here mounts "after"
    });
    return copySlot(future);
  }

  /**
   * Erases (programs to 0x00) every retired key still on flash; does
   * nothing if there is none (it only reads then). `promote` calls it; call
   * it after `mount()` to finish a scrub a power cut interrupted before the
   * next rotation does.
   */
  scrub(): void {
    const state = this.mounted();
    this.guard(() => this.scrubRetired(state));
  }

  /**
   * The scrub (docs/KEYSTORE.md §4.1). Current sector: every non-blank slot
   * other than the active and the future record; slot 0 (the snapshot) gets
   * its retired marker (promote word 00000000) before its key is zeroed, so
   * mount never takes a half-zeroed snapshot for a live one. Other sectors:
   * the key field of every non-blank slot (they hold nothing mount needs:
   * the current sector has the highest committed sequence, I3). Each program
   * is verified; already-zero fields are skipped, so a repeat writes nothing.
   */
  private scrubRetired(state: JournalState): void {
    for (let sector = 0; sector < this.geometry.sectorCount; sector++) {
      const current = sector === state.sector;
      const last = current ? state.nextSlot : this.geometry.slots;
      for (let slot = 0; slot < last; slot++) {
        if (current && (slot === state.activeSlot || slot === state.futureSlot)) continue;
        const at = this.slotAddress(sector, slot);
        const bytes = this.flash.read(at, SLOT_BYTES);
        const blank = isBlank(bytes);
        const marked = wordState(bytes, RECORD_PROMOTE_OFFSET) === 'set';
        const keyZero = isZero(bytes, RECORD_KEY_OFFSET, RECORD_KEY_OFFSET + KEY_BYTES);
        bytes.fill(0);
        if (blank) continue;
        if (current && slot === 0 && !marked) this.programVerified(at + RECORD_PROMOTE_OFFSET, new Uint8Array(WORD_BYTES));
        if (!keyZero) this.programVerified(at + RECORD_KEY_OFFSET, new Uint8Array(KEY_BYTES));
      }
    }
  }

  /**
   * Garbage collection: the live state after this storeFuture goes to the
   * next sector in the ring (erased first), committed by its sector commit
   * word. The current sector is left untouched; it is erased only when the
   * ring comes back to it, by then long superseded.
   */
  private compact(state: JournalState, future: KeySlot): void {
    if (state.highestSequence >= MAX_SEQUENCE) throw new LockstepError('STORAGE_FULL', 'sector sequence exhausted');
    const sector = (state.sector + 1) % this.geometry.sectorCount;
    const sequence = state.highestSequence + 1;
    this.writeSector(sector, sequence, state.deviceId, state.active, future);
    this.state = {
      ...state,
      sector,
      sequence,
      highestSequence: sequence,
      future: copySlot(future),
      futureSlot: 1,
      activeSlot: 0,
      nextSlot: 2,
    };
  }

  /** Erase, header + snapshot (+ future) in one program, then the sector commit word. */
  private writeSector(sector: number, sequence: number, deviceId: Uint8Array, active: KeySlot, future: KeySlot | undefined): void {
    const records = future === undefined ? 1 : 2;
    const image = new Uint8Array(SECTOR_HEADER_BYTES + records * SLOT_BYTES);
    const base = sector * this.geometry.sectorSize;
    encodeSectorHeader(image, 0, { sectorCount: this.geometry.sectorCount, sectorSize: this.geometry.sectorSize, sequence, deviceId });
    const commit = sectorCommitWord(image, 0);
    this.flash.erase(sector);
    try {
      encodeRecord(image, slotOffset(0), RECORD_ACTIVE, active.id, active.key, sequence, 0, true);
      if (future !== undefined) encodeRecord(image, slotOffset(1), RECORD_FUTURE, future.id, future.key, sequence, 1, true);
      this.programVerified(base, image);
    } finally {
      image.fill(0);
    }
    this.programVerified(base + SECTOR_COMMIT_OFFSET, commit); // the commit point
  }

  private eraseAll(): void {
    for (let sector = 0; sector < this.geometry.sectorCount; sector++) this.flash.erase(sector);
  }

  /** The first slot at or after nextSlot that is still fully erased. */
  private findBlankSlot(state: JournalState): number | undefined {
    for (let slot = state.nextSlot; slot < this.geometry.slots; slot++) {
      if (isBlank(this.flash.read(this.slotAddress(state.sector, slot), SLOT_BYTES))) return slot;
    }
    return undefined;
  }

  private slotAddress(sector: number, slot: number): number {
    return sector * this.geometry.sectorSize + slotOffset(slot);
  }

  /** Programs and reads back; a mismatch means the flash is failing. */
  private programVerified(offset: number, data: Uint8Array): void {
    this.flash.program(offset, data);
    const back = this.flash.read(offset, data.length);
    const same = sameBytes(back, data);
    back.fill(0);
    if (!same) throw new LockstepError('STORAGE_CORRUPT', `flash verify failed at ${offset}`);
  }

  /** Runs flash writes; any failure drops the in-memory state (remount needed). */
  private guard(write: () => void): void {
    try {
      write();
    } catch (error) {
      this.dropState();
      this.notReady = { code: 'LOCAL_NOT_READY', message: 'a flash write failed; mount again' };
      throw error;
    }
  }

  private mounted(): JournalState {
    if (this.state === undefined) throw new LockstepError(this.notReady.code, this.notReady.message);
    return this.state;
  }

  private dropState(): void {
    if (this.state !== undefined) wipeState(this.state);
    this.state = undefined;
  }
}

function checkSlot(slot: KeySlot): void {
  if (!Number.isInteger(slot.id) || slot.id < 0 || slot.id > MAX_KEY_ID) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'key id must be a u32');
  }
  if (!(slot.key instanceof Uint8Array) || slot.key.length !== KEY_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `key must be ${KEY_BYTES} bytes`);
  }
}

function copySlot(slot: KeySlot): KeySlot {
  return { id: slot.id, key: slot.key.slice() };
}

function wipeState(state: JournalState): void {
  state.active.key.fill(0);
  state.future?.key.fill(0);
}

function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  let or = 0;
  for (let i = from; i < to; i++) or |= bytes[i] as number;
  return or === 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] as number) ^ (b[i] as number);
  return difference === 0;
}
