/**
 * Reading the journal: from raw flash to the live key state (docs/KEYSTORE.md §4).
 *
 * Rules (each keeps mount total, read-only and before-or-after):
 * 1. A sector counts only if its header is valid for this geometry, of
 *    format version 2 or 1, AND its sector commit word holds the header's
 *    commit value (layout.ts); among those, the highest sequence wins,
 *    whatever its version (a v1 sector wins only before its migration,
 *    which writes a v2 sector with a higher sequence).
 *    A compaction commits its sector last, so until then the old sector
 *    (still intact: nothing ever erases the current sector) stays current.
 * 2. Slot 0 of a counted sector must be a committed 'A' snapshot, either
 *    live (promote word clear) or *retired* (its promote word, the retired
 *    marker, set or torn: a later record of the sector was promoted and the
 *    scrub of this one began; its key may be zeroed, so its CRC is not
 *    required). A retired snapshot contributes no key: the active key must
 *    then come from a promoted 'F' record of the same sector. Otherwise the
 *    sector is corrupt (impossible by rule 1 unless bits rot) and the next
 *    highest one is tried.
 * 3. Slots are replayed in order up to the first blank slot. A non-blank slot
 *    that is not a committed record of this sector and slot (torn write,
 *    foreign bytes) is skipped. A committed 'F' sets the future key, and
 *    with its promote word set it becomes the active key instead, and its
 *    mode byte the device's mode.
 *    Records that break the API's own rules (a second future, an id not
 *    above the active one, a mode back from dh to classic, shares with a
 *    classic mode) are skipped: the writer never produces them.
 *    A retired record whose key the scrub zeroed (or began to zero) fails its
 *    CRC and is skipped like a torn one: a later promoted record supersedes
 *    it anyway (docs/KEYSTORE.md §4.1).
 * Memory: one slot at a time plus one entry per sector.
 */
import { LockstepError } from '../errors';
import type { Flash } from '../platform/flash';
import type { RecoveryCredential } from '../crypto/recovery';
import type { FutureSlot, KeySlot, RekeyMode } from '../platform/keys';
import {
  FORMAT_VERSION,
  LEGACY_FORMAT_VERSION,
  SECTOR_HEADER_BYTES,
  RECORD_ACTIVE,
  RECORD_FUTURE,
  SLOT_BYTES,
  decodeSectorHeader,
  decodeRecord,
  isBlank,
  isRetiredSnapshot,
  retiredSnapshotFloor,
  slotBytes,
  slotOffset,
  slotsPerSector,
} from './layout';
import type { FormatVersion } from './layout';

/** Partition geometry the journal needs; checked once per Keystore. */
export interface Geometry {
  readonly sectorCount: number;
  readonly sectorSize: number;
  /** Slots per sector in the format this code writes (v2). */
  readonly slots: number;
}

export function journalGeometry(flash: Flash): Geometry {
  const sectorSize = flash.sectorSize;
  const sectorCount = flash.size / sectorSize;
  const ok =
    Number.isInteger(sectorSize) &&
    Number.isInteger(sectorCount) &&
    sectorSize % 4 === 0 &&
    sectorSize <= 0xffffffff &&
    sectorCount >= 2 &&
    sectorCount <= 0xffff &&
    slotsPerSector(sectorSize) >= 2;
  if (!ok) {
    throw new LockstepError(
      'LOCAL_BAD_ARGUMENT',
      `keystore needs >= 2 sectors of >= ${SECTOR_HEADER_BYTES + 2 * SLOT_BYTES} bytes (multiple of 4); got ${flash.size}/${sectorSize}`,
    );
  }
  return { sectorCount, sectorSize, slots: slotsPerSector(sectorSize) };
}

/** The live state and where the journal continues. Keys are owned copies. */
export interface JournalState {
  readonly deviceId: Uint8Array;
  /** The current sector, its sequence and its format version (1: to be migrated before any write). */
  readonly sector: number;
  readonly sequence: number;
  readonly version: FormatVersion;
  /** Highest sequence of any valid header seen (committed or not). */
  readonly highestSequence: number;
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly future: FutureSlot | undefined;
  /** Slot of the pending future's record (-1 when none). */
  readonly futureSlot: number;
  /** The recovery credential (docs/KEYSTORE.md §12), from the sector's one 'S' record. */
  readonly credential: RecoveryCredential | undefined;
  /** Slot of the credential record (-1 when none). */
  readonly credentialSlot: number;
  /** Slot of the active key's record (0: the snapshot; else a promoted 'F'). */
  readonly activeSlot: number;
  /** First blank slot of the current sector (== its slot count when full). */
  readonly nextSlot: number;
  /**
   * Some sector other than the current one still holds a valid v1 header:
   * the migration's cleanup (docs/KEYSTORE.md §11.2) is not finished, and
   * every write finishes it first.
   */
  readonly legacy: boolean;
}

export type UnprovisionedReason = 'erased' | 'foreign' | 'geometry' | 'incomplete' | 'corrupt' | 'version';

export type ScanResult =
  | { readonly ok: true; readonly state: JournalState }
  | { readonly ok: false; readonly reason: UnprovisionedReason; readonly detail: string; readonly highestSequence: number };

interface Candidate {
  readonly sector: number;
  readonly sequence: number;
  readonly version: FormatVersion;
  readonly deviceId: Uint8Array;
}

/** Mount's reading of the partition; never throws on any content. */
export function scanJournal(flash: Flash, geometry: Geometry): ScanResult {
  const candidates: Candidate[] = [];
  let highestSequence = -1;
  let geometryMismatch = '';
  let laterVersion = 0;
  let uncommitted = 0;
  const v1Sectors: number[] = [];
  for (let sector = 0; sector < geometry.sectorCount; sector++) {
    const check = decodeSectorHeader(flash.read(sector * geometry.sectorSize, SECTOR_HEADER_BYTES), geometry.sectorCount, geometry.sectorSize);
    if (check.kind === 'geometry') geometryMismatch = `${check.sectorCount} x ${check.sectorSize} bytes`;
    if (check.kind === 'version') laterVersion = Math.max(laterVersion, check.version);
    if (check.kind !== 'valid') continue;
    if (check.version === LEGACY_FORMAT_VERSION) v1Sectors.push(sector);
    highestSequence = Math.max(highestSequence, check.header.sequence);
    if (!check.committed) {
      uncommitted++;
      continue;
    }
    // Keep candidates sorted by sequence, highest first (ties: lower sector first).
    // Inserted by hand, not with splice: XS's splice hands memcpy a null pointer for its empty result
    // (undefined behaviour its sanitizer build reports), and this runs on XS.
    const candidate: Candidate = { sector, sequence: check.header.sequence, version: check.version, deviceId: check.header.deviceId };
    let at = candidates.length;
    candidates.push(candidate);
    while (at > 0 && (candidates[at - 1] as Candidate).sequence < candidate.sequence) {
      candidates[at] = candidates[at - 1] as Candidate;
      at--;
    }
    candidates[at] = candidate;
  }
  for (const candidate of candidates) {
    const legacy = v1Sectors.some((s) => s !== candidate.sector);
    const state = replaySector(flash, geometry, candidate, highestSequence, legacy);
    if (state !== undefined) return { ok: true, state };
  }
  if (candidates.length > 0) {
    return { ok: false, reason: 'corrupt', detail: `${candidates.length} committed sector(s), none with a valid snapshot`, highestSequence };
  }
  if (laterVersion > 0) {
    return { ok: false, reason: 'version', detail: `journal of format version ${laterVersion}, newer than this firmware's ${FORMAT_VERSION}`, highestSequence };
  }
  if (uncommitted > 0) {
    return { ok: false, reason: 'incomplete', detail: 'only uncommitted sectors: a format was interrupted', highestSequence };
  }
  if (geometryMismatch !== '') {
    return { ok: false, reason: 'geometry', detail: `journal written for a partition of ${geometryMismatch}`, highestSequence };
  }
  if (isErased(flash, geometry)) return { ok: false, reason: 'erased', detail: 'partition is blank', highestSequence };
  return { ok: false, reason: 'foreign', detail: 'no keystore journal in this partition', highestSequence };
}

function isErased(flash: Flash, geometry: Geometry): boolean {
  const chunk = 256;
  for (let at = 0; at < geometry.sectorCount * geometry.sectorSize; at += chunk) {
    if (!isBlank(flash.read(at, Math.min(chunk, flash.size - at)))) return false;
  }
  return true;
}

function readSlot(flash: Flash, base: number, slot: number, version: FormatVersion): Uint8Array {
  return flash.read(base + slotOffset(slot, version), slotBytes(version));
}

function replaySector(flash: Flash, geometry: Geometry, candidate: Candidate, highestSequence: number, legacy: boolean): JournalState | undefined {
  const version = candidate.version;
  const slots = slotsPerSector(geometry.sectorSize, version);
  const base = candidate.sector * geometry.sectorSize;
  const snapshotBytes = readSlot(flash, base, 0, version);
  const snapshot = decodeRecord(snapshotBytes, version, candidate.sequence, 0);
  const retired = isRetiredSnapshot(snapshotBytes, version);
  const floor = retiredSnapshotFloor(snapshotBytes, version);
  snapshotBytes.fill(0);
  let active: KeySlot | undefined;
  let mode: RekeyMode = floor.mode;
  if (snapshot.kind === 'record' && snapshot.type === RECORD_ACTIVE && snapshot.promote === 'clear') {
    active = { id: snapshot.id, key: snapshot.key };
    mode = snapshot.mode;
  } else {
    if (snapshot.kind === 'record') snapshot.key.fill(0);
    if (snapshot.kind === 'credential') wipeCredential(snapshot.credential);
    if (!retired) return undefined;
  }
  let activeSlot = 0;
  let future: FutureSlot | undefined;
  let futureSlot = -1;
  let credential: RecoveryCredential | undefined;
  let credentialSlot = -1;
  let nextSlot = slots;
  for (let slot = 1; slot < slots; slot++) {
    const bytes = readSlot(flash, base, slot, version);
    const record = decodeRecord(bytes, version, candidate.sequence, slot);
    bytes.fill(0);
    if (record.kind === 'blank') {
      nextSlot = slot;
      break;
    }
    if (record.kind === 'invalid') continue;
    if (record.kind === 'credential') {
      // One per sector: the writer never appends a second (a credential is never replaced).
      if (credential === undefined) {
        credential = record.credential;
        credentialSlot = slot;
      } else wipeCredential(record.credential);
      continue;
    }
    // Never back from dh (shares imply dh: decodeRecord). Not "equal to the mode its promotion gives":
    // the record before it may be a retired one the scrub zeroed, whose mode is then unknown.
    if (record.type !== RECORD_FUTURE || future !== undefined || record.id <= (active?.id ?? floor.id) || (record.mode === 'classic' && mode === 'dh')) {
      record.key.fill(0);
      continue;
    }
    if (record.promote === 'set') {
      // Promotion: this key becomes active, the previous active is retired, the mode is the record's.
      active?.key.fill(0);
      active = { id: record.id, key: record.key };
      mode = record.mode;
      activeSlot = slot;
    } else if (active !== undefined) {
      future = record.shares === undefined ? { id: record.id, key: record.key } : { id: record.id, key: record.key, shares: record.shares };
      futureSlot = slot;
    } else {
      record.key.fill(0); // a future before any live key: not something the writer does
    }
  }
  if (active === undefined) {
    future?.key.fill(0);
    if (credential !== undefined) wipeCredential(credential);
    return undefined; // a retired snapshot and no promoted record: corrupt
  }
  return {
    deviceId: candidate.deviceId,
    sector: candidate.sector,
    sequence: candidate.sequence,
    version,
    highestSequence,
    mode,
    active,
    future,
    futureSlot,
    credential,
    credentialSlot,
    activeSlot,
    nextSlot,
    legacy,
  };
}

/** Zeroes a credential's private key (the public parts are not secret). */
export function wipeCredential(credential: RecoveryCredential): void {
  credential.device.privateKey.fill(0);
}

/** The mode a device has once `future` is active: dh-derived keys move it to dh for good (docs/PROTOCOL.md §11.6). */
export function modeAfterPromotion(mode: RekeyMode, future: FutureSlot): RekeyMode {
  return future.shares !== undefined ? 'dh' : mode;
}

/** The journal state once the future key's promote word is set (its record is now the active one). */
export function promotedState(state: JournalState, future: FutureSlot): JournalState {
  return {
    ...state,
    mode: modeAfterPromotion(state.mode, future),
    active: { id: future.id, key: future.key },
    future: undefined,
    futureSlot: -1,
    activeSlot: state.futureSlot,
  };
}
