/**
 * The device keystore: one active key and at most one future key, kept in a
 * power-fail-safe, wear-levelled journal on a small flash partition
 * (docs/KEYSTORE.md). Synchronous; every operation is durable when it
 * returns. Uses only the `Flash` seam.
 *
 * Call order: `mount()` (or `format()`), then any of `storeFuture`,
 * `promote`, `keys`. Operations before a successful mount throw
 * LockstepError('UNPROVISIONED' or 'LOCAL_NOT_READY').
 * With the device core (its 'persist' actions): `storeFuture(op.id, op.key, op.shares)`
 * or `promote(op.id)`, then `core.persisted(now)`.
 *
 * Before-or-after (docs/KEYSTORE.md §5): each mutating operation has
 * exactly one commit point, the program of one 4-byte word (a record's
 * commit CRC, a promote word, or a sector's commit word); for storeFuture
 * and promote it is the last write (after a migration's own commit point,
 * which changes no key, on a v1 journal). If power fails before that word is
 * fully programmed, mount sees the state before the operation; after, the
 * state after it. Nothing erases or rewrites the current sector.
 *
 * Erasing retired keys (docs/KEYSTORE.md §4.1): after a promotion's commit
 * point, `scrub` programs the bytes of every key the journal no longer needs
 * to 0x00 — in the current sector every record but the active and the
 * future one (the snapshot first gets its retired marker, its promote word),
 * in every other sector the key field of every non-blank slot (and, once a
 * v1 sector's keys are zeroed, its magic). Programming only clears bits,
 * never touches a blank slot, a commit word or a header of the journal,
 * and mount reads a zeroed (or half-zeroed) retired record as one to skip,
 * so a cut anywhere in the scrub mounts "after" the promotion; the next
 * `promote` (or `scrub()`) finishes what a cut left.
 *
 * Format v2 and the migration (docs/KEYSTORE.md §3, §11): records carry
 * the device's rekey mode and a dh-derived future key's two public shares.
 * A journal written by older firmware (format v1) mounts as it is; the
 * first write (storeFuture, promote, or `scrub()`, which the device loop
 * calls at boot) first migrates it: a compaction into a v2 sector (its
 * sector commit word is the migration's commit point), then the v1 sectors'
 * keys and headers are zeroed so old firmware refuses the image.
 *
 * Errors: bad arguments get a typed LockstepError and change nothing. If
 * the flash itself throws (I/O error, power cut), the in-memory state is
 * dropped and `mount()` must be called again.
 */
import type { RecoveryCredential } from '../crypto/recovery';
import { LockstepError } from '../errors';
import type { Flash } from '../platform/flash';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../platform/keys';
import type { DeviceKeys, FutureSlot, KeyShares, KeySlot, RekeyMode } from '../platform/keys';
import { journalGeometry, modeAfterPromotion, promotedState, scanJournal, wipeCredential } from './journal';
import type { Geometry, JournalState, UnprovisionedReason } from './journal';
import {
  FORMAT_VERSION,
  LEGACY_FORMAT_VERSION,
  SECTOR_HEADER_BYTES,
  MAX_KEY_ID,
  MAX_SEQUENCE,
  RECORD_ACTIVE,
  RECORD_CRC_OFFSET,
  RECORD_FUTURE,
  RECORD_KEY_OFFSET,
  RECORD_PROMOTE_OFFSET,
  SECTOR_COMMIT_OFFSET,
  SHARE_BYTES,
  SLOT_BYTES,
  STATIC_KEY_BYTES,
  WORD_BYTES,
  decodeSectorHeader,
  encodeCredentialRecord,
  encodeSectorHeader,
  encodeRecord,
  isBlank,
  recordCommitWord,
  sectorCommitWord,
  slotBytes,
  slotOffset,
  slotsPerSector,
  wordState,
} from './layout';
import type { FormatVersion } from './layout';

export type { UnprovisionedReason } from './journal';

export type MountResult =
  | { readonly provisioned: true; readonly deviceId: Uint8Array; readonly keys: DeviceKeys; readonly credential?: RecoveryCredential }
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

  /** Reads the journal (format v2 or v1). Never throws on any flash content (only on flash I/O errors); never writes. */
  mount(): MountResult {
    this.dropState();
    const scan = scanJournal(this.flash, this.geometry);
    if (!scan.ok) {
      this.notReady = { code: 'UNPROVISIONED', message: `${scan.reason}: ${scan.detail}` };
      return { provisioned: false, reason: scan.reason, detail: scan.detail };
    }
    this.state = scan.state;
    const credential = this.credential;
    return credential === undefined
      ? { provisioned: true, deviceId: scan.state.deviceId.slice(), keys: this.keys }
      : { provisioned: true, deviceId: scan.state.deviceId.slice(), keys: this.keys, credential };
  }

  /** The recovery credential (docs/PROTOCOL.md §12.6), a copy; undefined if the device holds none. */
  get credential(): RecoveryCredential | undefined {
    const credential = this.mounted().credential;
    return credential === undefined ? undefined : copyCredential(credential);
  }

  /** The live key state (copies). */
  get keys(): DeviceKeys {
    const state = this.mounted();
    const active = copySlot(state.active);
    return state.future === undefined ? { mode: state.mode, active } : { mode: state.mode, active, future: copyFuture(state.future) };
  }

  get deviceId(): Uint8Array {
    return this.mounted().deviceId.slice();
  }

  /** The format version of the current sector: 1 until the migration (the first write) is done. */
  get formatVersion(): FormatVersion {
    return this.mounted().version;
  }

  /**
   * Provisioning: makes a new journal holding `deviceId` and `initial` as the
   * active key, rotated in `mode`. A cut leaves the previous journal (or
   * none) or the new one. The new sector is committed first, then every
   * other sector is erased so no earlier key stays in flash. With
   * `credential`, the recovery credential is written in the same sector
   * (docs/KEYSTORE.md §12).
   */
  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode, credential?: RecoveryCredential): void {
    if (!(deviceId instanceof Uint8Array) || deviceId.length !== DEVICE_ID_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device id must be ${DEVICE_ID_BYTES} bytes`);
    }
    checkSlot(initial);
    checkMode(mode);
    if (credential !== undefined) this.checkCredential(credential);
    const stored = credential === undefined ? undefined : copyCredential(credential);
    const scan = scanJournal(this.flash, this.geometry);
    const previousSector = scan.ok ? scan.state.sector : -1;
    const highest = scan.ok ? scan.state.highestSequence : scan.highestSequence;
    if (scan.ok) wipeState(scan.state);
    this.dropState();
    this.guard(() => {
      if (highest >= MAX_SEQUENCE) this.eraseAll(); // only a forged header can get here
      const sequence = highest >= MAX_SEQUENCE ? 1 : Math.max(highest + 1, 1);
      const sector = (previousSector + 1) % this.geometry.sectorCount;
      const slots = this.writeSector(sector, sequence, deviceId, mode, initial, undefined, stored);
      for (let other = 0; other < this.geometry.sectorCount; other++) if (other !== sector) this.flash.erase(other);
      this.state = {
        deviceId: deviceId.slice(),
        sector,
        sequence,
        version: FORMAT_VERSION,
        highestSequence: sequence,
        mode,
        active: copySlot(initial),
        future: undefined,
        credential: stored,
        ...slots,
        legacy: false,
      };
    });
  }

  /**
   * DK15 (docs/PROTOCOL.md §12.4): stores the recovery credential, once.
   * The same credential again does nothing; another one is refused with
   * STATIC_KEY_LOCKED (a credential is never replaced over the wire, §12.6);
   * bad lengths or ids are LOCAL_BAD_ARGUMENT. One commit point: the
   * appended record's commit CRC, or a compaction's sector commit word when
   * the sector is full.
   */
  storeCredential(credential: RecoveryCredential): void {
    const state = this.mounted();
    this.checkCredential(credential);
    if (state.credential !== undefined) {
      if (sameCredential(state.credential, credential)) return;
      throw new LockstepError('STATIC_KEY_LOCKED', `a credential for hub static key ${state.credential.hubStaticId} is already stored`);
    }
    const stored = copyCredential(credential);
    this.guard(() => {
      const ready = this.prepare(state);
      const slot = this.findBlankSlot(ready);
      if (slot === undefined) {
        this.compact({ ...ready, credential: stored }, ready.future);
        return;
      }
      const at = this.slotAddress(ready.sector, slot);
      const record = new Uint8Array(SLOT_BYTES);
      try {
        encodeCredentialRecord(record, 0, stored, ready.sequence, slot, false);
        this.programVerified(at, record.subarray(0, RECORD_CRC_OFFSET));
        this.programVerified(at + RECORD_CRC_OFFSET, recordCommitWord(record, ready.sequence, slot)); // the commit point
      } finally {
        record.fill(0);
      }
      this.state = { ...ready, credential: stored, credentialSlot: slot, nextSlot: slot + 1 };
    });
  }

  /**
   * DK14 (docs/PROTOCOL.md §12.4): (id, key) becomes the future key, in the
   * classic form (no shares), replacing the future key if one is held.
   * Refused (LOCAL_BAD_ARGUMENT, no change) unless id > max(active, future).
   * The same (id, key) already stored as the future does nothing. Without a
   * future this is storeFuture; with one, a compaction into the next sector
   * (its sector commit word is the one commit point), after which the
   * replaced key is zeroed in the superseded sector (§4.1).
   */
  storeRecovered(id: number, key: Uint8Array): void {
    const state = this.mounted();
    checkSlot({ id, key });
    const future = state.future;
    if (future !== undefined && future.id === id && future.shares === undefined && sameBytes(future.key, key)) return;
    const highest = Math.max(state.active.id, future?.id ?? 0);
    if (id <= highest) throw new LockstepError('LOCAL_BAD_ARGUMENT', `recovered id ${id} must be above every id held (${highest})`);
    if (future === undefined) {
      this.storeFuture(id, key);
      return;
    }
    const recovered: FutureSlot = { id, key: key.slice() };
    this.guard(() => {
      const ready = this.prepare(state);
      this.compact(ready, recovered); // the commit point: the new sector's commit word
      future.key.fill(0);
      this.scrubRetired(this.mounted()); // the replaced key, in the superseded sector
    });
  }

  /**
   * Stores the future key, with both public shares when it was dh-derived.
   * Refuses (no state change): id not above the active id or not a u32, a
   * key or a share of the wrong length (LOCAL_BAD_ARGUMENT), a different
   * future already stored (LOCAL_BUSY). Storing the stored future again
   * (same id, key and shares) does nothing.
   */
  storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void {
    const state = this.mounted();
    checkSlot({ id, key });
    checkShares(shares);
    if (state.future !== undefined) {
      if (state.future.id === id && sameBytes(state.future.key, key) && sameShares(state.future.shares, shares)) return;
      throw new LockstepError('LOCAL_BUSY', `future key ${state.future.id} is already stored`);
    }
    if (id <= state.active.id) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `future id ${id} must be above active id ${state.active.id}`);
    }
    const future = copyFuture(shares === undefined ? { id, key } : { id, key, shares });
    this.guard(() => {
      const ready = this.prepare(state);
      const slot = this.findBlankSlot(ready);
      if (slot === undefined) {
        this.compact(ready, future);
        return;
      }
      const at = this.slotAddress(ready.sector, slot);
      const record = new Uint8Array(SLOT_BYTES);
      try {
        encodeRecord(record, 0, { type: RECORD_FUTURE, mode: modeAfterPromotion(ready.mode, future), ...future }, ready.sequence, slot, false);
        this.programVerified(at, record.subarray(0, RECORD_CRC_OFFSET));
        this.programVerified(at + RECORD_CRC_OFFSET, recordCommitWord(record, ready.sequence, slot)); // the commit point
      } finally {
        record.fill(0);
      }
      this.state = { ...ready, future, futureSlot: slot, nextSlot: slot + 1 };
    });
  }

  /**
   * Makes the future key active and retires the previous active key; returns
   * the new active key. A dh-derived key moves the mode to dh for good.
   * With `expectedId` (the id in the core's 'persist' action): refuses a
   * different future (LOCAL_BAD_ARGUMENT), and if that key is already active
   * with no future, does nothing (idempotent). Without a future:
   * LOCAL_NOT_READY. Refusals change nothing.
   */
  promote(expectedId?: number): KeySlot {
    const state = this.mounted();
    const future = state.future;
    if (expectedId !== undefined && future === undefined && state.active.id === expectedId) {
      // Idempotent repeat: finishes a scrub a power cut interrupted (writes nothing otherwise).
      this.guard(() => this.scrubRetired(this.prepare(state)));
      return copySlot(state.active);
    }
    if (future === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no future key to promote');
    if (expectedId !== undefined && future.id !== expectedId) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `future key is ${future.id}, not ${expectedId}`);
    }
    const promoted = copySlot(future);
    this.guard(() => {
      const ready = this.prepare(state);
      const at = this.slotAddress(ready.sector, ready.futureSlot) + RECORD_PROMOTE_OFFSET;
      this.programVerified(at, new Uint8Array(WORD_BYTES)); // the commit point
      ready.active.key.fill(0);
      this.state = promotedState(ready, future);
      this.scrubRetired(this.state); // after the commit point: a cut here mounts "after"
    });
    return promoted;
  }

  /**
   * Finishes what a power cut left: the migration of a v1 journal, then
   * erases (programs to 0x00) every retired key still on flash; does nothing
   * if there is nothing to do (it only reads then). `promote` calls it; call
   * it after `mount()` (the device loop does, at boot).
   */
  scrub(): void {
    const state = this.mounted();
    this.guard(() => this.scrubRetired(this.prepare(state)));
  }

  /**
   * Before any write: a v1 journal is migrated (a key-state no-op with its
   * own commit point), and the migration's cleanup of v1 sectors is finished
   * (so a v2 journal never diverges from v1 copies old firmware could read).
   */
  private prepare(state: JournalState): JournalState {
    let ready = state;
    if (ready.version !== FORMAT_VERSION) ready = this.migrate(ready);
    if (ready.legacy) {
      this.scrubRetired(ready);
      ready = { ...ready, legacy: false };
      this.state = ready;
    }
    return ready;
  }

  /**
   * The migration (docs/KEYSTORE.md §11): the live state of a v1 journal
   * (mode classic, the future without shares) is compacted into the next
   * sector in v2, committed by that sector's commit word. The v1 sectors
   * stay until `scrubRetired` zeroes them (the caller runs it next).
   */
  private migrate(state: JournalState): JournalState {
    if (state.highestSequence >= MAX_SEQUENCE) throw new LockstepError('STORAGE_FULL', 'sector sequence exhausted');
    const sector = (state.sector + 1) % this.geometry.sectorCount;
    const sequence = state.highestSequence + 1;
    const slots = this.writeSector(sector, sequence, state.deviceId, state.mode, state.active, state.future, state.credential);
    this.state = {
      ...state,
      sector,
      sequence,
      version: FORMAT_VERSION,
      highestSequence: sequence,
      ...slots,
      legacy: true,
    };
    return this.state;
  }

  /**
   * The scrub (docs/KEYSTORE.md §4.1). Current sector: every non-blank slot
   * other than the active and the future record; slot 0 (the snapshot) gets
   * its retired marker (promote word 00000000) before its key is zeroed, so
   * mount never takes a half-zeroed snapshot for a live one. Other sectors
   * (they hold nothing mount needs: the current sector has the highest
   * committed sequence, I3): the key field of every non-blank slot, in the
   * layout of the sector's header (v2 or v1; both for a sector without a
   * valid header: debris of a torn erase); a v1 sector then loses its magic,
   * which ends the migration's cleanup. Each program is verified;
   * already-zero fields are skipped, so a repeat writes nothing.
   */
  private scrubRetired(state: JournalState): void {
    for (let sector = 0; sector < this.geometry.sectorCount; sector++) {
      if (sector === state.sector) {
        for (let slot = 0; slot < state.nextSlot; slot++) {
          if (slot === state.activeSlot || slot === state.futureSlot || slot === state.credentialSlot) continue;
          this.zeroKey(sector, slot, FORMAT_VERSION, slot === 0);
        }
        continue;
      }
      const header = this.flash.read(sector * this.geometry.sectorSize, SECTOR_HEADER_BYTES);
      const check = decodeSectorHeader(header, this.geometry.sectorCount, this.geometry.sectorSize);
      if (check.kind === 'valid') this.zeroKeys(sector, check.version);
      else if (this.zeroKeys(sector, FORMAT_VERSION) || !this.blankBeyond(sector, slotsPerSector(this.geometry.sectorSize) * SLOT_BYTES)) {
        this.zeroKeys(sector, LEGACY_FORMAT_VERSION); // debris that is not all blank: v1 slots too
      }
      if (check.kind === 'valid' && check.version === LEGACY_FORMAT_VERSION) {
        this.programVerified(sector * this.geometry.sectorSize, new Uint8Array(WORD_BYTES)); // "LKSJ" -> 00000000: no v1 journal left here
      }
    }
  }

  /** Zeroes the key field of every slot of `sector` in the layout of `version`; true if some slot was not blank. */
  private zeroKeys(sector: number, version: FormatVersion): boolean {
    let used = false;
    for (let slot = 0; slot < slotsPerSector(this.geometry.sectorSize, version); slot++) used = this.zeroKey(sector, slot, version, false) || used;
    return used;
  }

  /** Whether the bytes of `sector` from SECTOR_HEADER_BYTES + `from` to its end are all 0xFF (read in slot-sized pieces). */
  private blankBeyond(sector: number, from: number): boolean {
    const end = this.geometry.sectorSize;
    for (let at = SECTOR_HEADER_BYTES + from; at < end; at += SLOT_BYTES) {
      const bytes = this.flash.read(sector * end + at, Math.min(SLOT_BYTES, end - at));
      const blank = isBlank(bytes);
      bytes.fill(0);
      if (!blank) return false;
    }
    return true;
  }

  /** Zeroes one slot's key field unless the slot is blank or the field already zero; `marker`: set the retired marker first. False if blank. */
  private zeroKey(sector: number, slot: number, version: FormatVersion, marker: boolean): boolean {
    const at = sector * this.geometry.sectorSize + slotOffset(slot, version);
    const bytes = this.flash.read(at, slotBytes(version));
    const blank = isBlank(bytes);
    const marked = marker && wordState(bytes, RECORD_PROMOTE_OFFSET) === 'set';
    const keyZero = isZero(bytes, RECORD_KEY_OFFSET, RECORD_KEY_OFFSET + KEY_BYTES);
    bytes.fill(0);
    if (blank) return false;
    if (marker && !marked) this.programVerified(at + RECORD_PROMOTE_OFFSET, new Uint8Array(WORD_BYTES));
    if (!keyZero) this.programVerified(at + RECORD_KEY_OFFSET, new Uint8Array(KEY_BYTES));
    return true;
  }

  /**
   * Garbage collection: the live state with `future` (this storeFuture's,
   * a recovered one, or the one held) goes to the next sector in the ring
   * (erased first), committed by its sector commit word; the credential is
   * carried. The current sector is left untouched; it is erased only when
   * the ring comes back to it, by then long superseded.
   */
  private compact(state: JournalState, future: FutureSlot | undefined): void {
    if (state.highestSequence >= MAX_SEQUENCE) throw new LockstepError('STORAGE_FULL', 'sector sequence exhausted');
    const sector = (state.sector + 1) % this.geometry.sectorCount;
    const sequence = state.highestSequence + 1;
    const slots = this.writeSector(sector, sequence, state.deviceId, state.mode, state.active, future, state.credential);
    this.state = {
      ...state,
      sector,
      sequence,
      highestSequence: sequence,
      future,
      ...slots,
    };
  }

  /**
   * Erase, header + snapshot (+ credential) (+ future) in one program, then
   * the sector commit word. Returns where the records went.
   */
  private writeSector(
    sector: number,
    sequence: number,
    deviceId: Uint8Array,
    mode: RekeyMode,
    active: KeySlot,
    future: FutureSlot | undefined,
    credential: RecoveryCredential | undefined,
  ): { futureSlot: number; credentialSlot: number; activeSlot: number; nextSlot: number } {
    const credentialSlot = credential === undefined ? -1 : 1;
    const futureSlot = future === undefined ? -1 : credential === undefined ? 1 : 2;
    const records = 1 + (credential === undefined ? 0 : 1) + (future === undefined ? 0 : 1);
    if (records > this.geometry.slots) throw new LockstepError('STORAGE_FULL', `a sector of ${this.geometry.slots} slots cannot hold ${records} records`);
    const image = new Uint8Array(SECTOR_HEADER_BYTES + records * SLOT_BYTES);
    const base = sector * this.geometry.sectorSize;
    encodeSectorHeader(image, 0, { sectorCount: this.geometry.sectorCount, sectorSize: this.geometry.sectorSize, sequence, deviceId });
    const commit = sectorCommitWord(image, 0);
    this.flash.erase(sector);
    try {
      encodeRecord(image, slotOffset(0), { type: RECORD_ACTIVE, mode, id: active.id, key: active.key }, sequence, 0, true);
      if (credential !== undefined) encodeCredentialRecord(image, slotOffset(credentialSlot), credential, sequence, credentialSlot, true);
      if (future !== undefined) encodeRecord(image, slotOffset(futureSlot), { type: RECORD_FUTURE, mode: modeAfterPromotion(mode, future), ...future }, sequence, futureSlot, true);
      this.programVerified(base, image);
    } finally {
      image.fill(0);
    }
    this.programVerified(base + SECTOR_COMMIT_OFFSET, commit); // the commit point
    return { futureSlot, credentialSlot, activeSlot: 0, nextSlot: records };
  }

  /**
   * A credential's lengths and id; and room for it: a sector must hold the
   * snapshot, the credential and a future (3 slots) for compactions.
   */
  private checkCredential(credential: RecoveryCredential): void {
    const key = (bytes: unknown) => bytes instanceof Uint8Array && bytes.length === STATIC_KEY_BYTES;
    const ok =
      typeof credential === 'object' &&
      credential !== null &&
      typeof credential.device === 'object' &&
      credential.device !== null &&
      key(credential.device.privateKey) &&
      key(credential.device.publicKey) &&
      key(credential.hubPublicKey) &&
      Number.isInteger(credential.hubStaticId) &&
      credential.hubStaticId >= 0 &&
      credential.hubStaticId <= MAX_KEY_ID;
    if (!ok) throw new LockstepError('LOCAL_BAD_ARGUMENT', `a credential is three ${STATIC_KEY_BYTES}-byte keys and a u32 hub static id`);
    if (this.geometry.slots < 3) throw new LockstepError('STORAGE_FULL', `a credential needs sectors of at least 3 slots (${SECTOR_HEADER_BYTES + 3 * SLOT_BYTES} bytes)`);
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

function checkShares(shares: KeyShares | undefined): void {
  if (shares === undefined) return;
  const ok = (share: unknown) => share instanceof Uint8Array && share.length === SHARE_BYTES;
  if (typeof shares !== 'object' || shares === null || !ok(shares.hub) || !ok(shares.device)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `key shares must be two ${SHARE_BYTES}-byte public keys`);
  }
}

function checkMode(mode: RekeyMode): void {
  if (mode !== 'classic' && mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `rekey mode must be classic or dh`);
}

function copySlot(slot: KeySlot): KeySlot {
  return { id: slot.id, key: slot.key.slice() };
}

function copyFuture(slot: FutureSlot): FutureSlot {
  if (slot.shares === undefined) return copySlot(slot);
  return { id: slot.id, key: slot.key.slice(), shares: { hub: slot.shares.hub.slice(), device: slot.shares.device.slice() } };
}

function wipeState(state: JournalState): void {
  state.active.key.fill(0);
  state.future?.key.fill(0);
  if (state.credential !== undefined) wipeCredential(state.credential);
}

export function copyCredential(credential: RecoveryCredential): RecoveryCredential {
  return {
    device: { privateKey: credential.device.privateKey.slice(), publicKey: credential.device.publicKey.slice() },
    hubStaticId: credential.hubStaticId,
    hubPublicKey: credential.hubPublicKey.slice(),
  };
}

/** Same id and the same three keys (constant time over the private key). */
export function sameCredential(a: RecoveryCredential, b: RecoveryCredential): boolean {
  return (
    a.hubStaticId === b.hubStaticId &&
    sameBytes(a.device.privateKey, b.device.privateKey) &&
    sameBytes(a.device.publicKey, b.device.publicKey) &&
    sameBytes(a.hubPublicKey, b.hubPublicKey)
  );
}

function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  let or = 0;
  for (let i = from; i < to; i++) or |= bytes[i] as number;
  return or === 0;
}

function sameShares(a: KeyShares | undefined, b: KeyShares | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameBytes(a.hub, b.hub) && sameBytes(a.device, b.device);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] as number) ^ (b[i] as number);
  return difference === 0;
}
