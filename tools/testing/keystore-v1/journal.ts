// FROZEN: modules/keystore/journal.ts as of format v1 (commit 1e36baf), the firmware before format v2.
// Verification only (tools/testing/keystore-v1/README.md): it writes the v1 images the migration
// tests start from and plays the old firmware that meets a v2 image. Do not change.
/**
 * Reading the journal: from raw flash to the live key state (docs/KEYSTORE.md §4).
 *
 * Rules (each keeps mount total, read-only and before-or-after):
 * 1. A sector counts only if its header is valid for this geometry AND its
 *    sector commit word holds the header's commit value (layout.ts); among
 *    those, the highest sequence wins.
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
 *    with its promote word set it becomes the active key instead.
 *    Records that break the API's own rules (a second future, an id not
 *    above the active one) are skipped: the writer never produces them.
 *    A retired record whose key the scrub zeroed (or began to zero) fails its
 *    CRC and is skipped like a torn one: a later promoted record supersedes
 *    it anyway (docs/KEYSTORE.md §4.1).
 * Memory: one 84-byte slot at a time plus one entry per sector.
 */
import { LockstepError } from '../../../modules/errors';
import type { Flash } from '../../../modules/platform/flash';
import type { KeySlot } from '../../../modules/platform/keys';
import {
  SECTOR_HEADER_BYTES,
  RECORD_ACTIVE,
  RECORD_COMMIT_OFFSET,
  RECORD_FUTURE,
  RECORD_PROMOTE_OFFSET,
  RECORD_TYPE_OFFSET,
  SLOT_BYTES,
  decodeSectorHeader,
  decodeRecord,
  isBlank,
  slotOffset,
  slotsPerSector,
  wordState,
} from './layout';

/** Partition geometry the journal needs; checked once per Keystore. */
export interface Geometry {
  readonly sectorCount: number;
  readonly sectorSize: number;
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
  /** The current sector and its sequence. */
  readonly sector: number;
  readonly sequence: number;
  /** Highest sequence of any valid header seen (committed or not). */
  readonly highestSequence: number;
  readonly active: KeySlot;
  readonly future: KeySlot | undefined;
  /** Slot of the pending future's record (-1 when none). */
  readonly futureSlot: number;
  /** Slot of the active key's record (0: the snapshot; else a promoted 'F'). */
  readonly activeSlot: number;
  /** First blank slot of the current sector (== slots when full). */
  readonly nextSlot: number;
}

export type UnprovisionedReason = 'erased' | 'foreign' | 'geometry' | 'incomplete' | 'corrupt';

export type ScanResult =
  | { readonly ok: true; readonly state: JournalState }
  | { readonly ok: false; readonly reason: UnprovisionedReason; readonly detail: string; readonly highestSequence: number };

interface Candidate {
  readonly sector: number;
  readonly sequence: number;
  readonly deviceId: Uint8Array;
}

/** Mount's reading of the partition; never throws on any content. */
export function scanJournal(flash: Flash, geometry: Geometry): ScanResult {
  const candidates: Candidate[] = [];
  let highestSequence = -1;
  let geometryMismatch = '';
  let uncommitted = 0;
  for (let sector = 0; sector < geometry.sectorCount; sector++) {
    const check = decodeSectorHeader(flash.read(sector * geometry.sectorSize, SECTOR_HEADER_BYTES), geometry.sectorCount, geometry.sectorSize);
    if (check.kind === 'geometry') geometryMismatch = `${check.sectorCount} x ${check.sectorSize} bytes`;
    if (check.kind !== 'valid') continue;
    highestSequence = Math.max(highestSequence, check.header.sequence);
    if (!check.committed) {
      uncommitted++;
      continue;
    }
    // Keep candidates sorted by sequence, highest first (ties: lower sector first).
    let at = candidates.length;
    while (at > 0 && (candidates[at - 1] as Candidate).sequence < check.header.sequence) at--;
    candidates.splice(at, 0, { sector, sequence: check.header.sequence, deviceId: check.header.deviceId });
  }
  for (const candidate of candidates) {
    const state = replaySector(flash, geometry, candidate, highestSequence);
    if (state !== undefined) return { ok: true, state };
  }
  if (candidates.length > 0) {
    return { ok: false, reason: 'corrupt', detail: `${candidates.length} committed sector(s), none with a valid snapshot`, highestSequence };
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

function readSlot(flash: Flash, base: number, slot: number): Uint8Array {
  return flash.read(base + slotOffset(slot), SLOT_BYTES);
}

function replaySector(flash: Flash, geometry: Geometry, candidate: Candidate, highestSequence: number): JournalState | undefined {
  const base = candidate.sector * geometry.sectorSize;
  const snapshotBytes = readSlot(flash, base, 0);
  const snapshot = decodeRecord(snapshotBytes, candidate.sequence, 0);
  const retired = isRetiredSnapshot(snapshotBytes);
  const floorId = new DataView(snapshotBytes.buffer, snapshotBytes.byteOffset).getUint32(4, true);
  snapshotBytes.fill(0);
  let active: KeySlot | undefined;
  if (snapshot.kind === 'record' && snapshot.type === RECORD_ACTIVE && snapshot.promote === 'clear') {
    active = { id: snapshot.id, key: snapshot.key };
  } else {
    if (snapshot.kind === 'record') snapshot.key.fill(0);
    if (!retired) return undefined;
  }
  let activeSlot = 0;
  let future: KeySlot | undefined;
  let futureSlot = -1;
  let nextSlot = geometry.slots;
  for (let slot = 1; slot < geometry.slots; slot++) {
    const bytes = readSlot(flash, base, slot);
    const record = decodeRecord(bytes, candidate.sequence, slot);
    bytes.fill(0);
    if (record.kind === 'blank') {
      nextSlot = slot;
      break;
    }
    if (record.kind === 'invalid') continue;
    if (record.type !== RECORD_FUTURE || future !== undefined || record.id <= (active?.id ?? floorId)) {
      record.key.fill(0);
      continue;
    }
    if (record.promote === 'set') {
      // Promotion: this key becomes active and the previous active is retired.
      active?.key.fill(0);
      active = { id: record.id, key: record.key };
      activeSlot = slot;
    } else if (active !== undefined) {
      future = { id: record.id, key: record.key };
      futureSlot = slot;
    } else {
      record.key.fill(0); // a future before any live key: not something the writer does
    }
  }
  if (active === undefined) {
    future?.key.fill(0);
    return undefined; // a retired snapshot and no promoted record: corrupt
  }
  return {
    deviceId: candidate.deviceId,
    sector: candidate.sector,
    sequence: candidate.sequence,
    highestSequence,
    active,
    future,
    futureSlot,
    activeSlot,
    nextSlot,
  };
}

/**
 * A snapshot slot the scrub has retired: committed, type 'A', and its
 * promote word (the retired marker) not clear. The key and CRC are not
 * looked at: the scrub zeroes the key after setting the marker.
 */
function isRetiredSnapshot(bytes: Uint8Array): boolean {
  return (
    bytes[RECORD_TYPE_OFFSET] === RECORD_ACTIVE &&
    bytes[1] === 0 &&
    bytes[2] === 0 &&
    bytes[3] === 0 &&
    wordState(bytes, RECORD_COMMIT_OFFSET) === 'set' &&
    wordState(bytes, RECORD_PROMOTE_OFFSET) !== 'clear'
  );
}
