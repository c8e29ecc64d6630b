// The on-flash format v2, checked field by field against docs/KEYSTORE.md §3
// with an independent CRC-32 (node:zlib).
import { crc32 as zlibCrc32 } from 'node:zlib';
import { NorFlash } from '../modules/flash/nor-flash';
import { Keystore } from '../modules/keystore/keystore';

const deviceId = Uint8Array.of(0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7);
const key = (n: number) => Uint8Array.from({ length: 64 }, (_, i) => (n * 16 + i) & 0xff);
const share = (n: number) => new Uint8Array(32).fill(n);

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
}

/** The commit CRC: CRC-32 of (sequence ‖ slot ‖ bytes 0..135) with bit 31 cleared. */
function recordCrc(sequence: number, slot: number, body: Uint8Array): number {
  const input = new Uint8Array(8 + 136);
  new DataView(input.buffer).setUint32(0, sequence, true);
  new DataView(input.buffer).setUint32(4, slot, true);
  input.set(body.subarray(0, 136), 8);
  return (zlibCrc32(input) & 0x7fffffff) >>> 0;
}

/** Tagged CRC-32 ("SKCL" ‖ header bytes 0..23) with bit 31 cleared. */
function sectorCommit(sector: Uint8Array): number {
  const input = new Uint8Array(28);
  input.set([0x53, 0x4b, 0x43, 0x4c]);
  input.set(sector.subarray(0, 24), 4);
  return (zlibCrc32(input) & 0x7fffffff) >>> 0;
}

const ff = (bytes: Uint8Array) => bytes.every((b) => b === 0xff);

test.each([
  ['classic', 0x43],
  ['dh', 0x44],
] as const)('format (%s) writes header, commit word and the active snapshot as documented', (mode, modeByte) => {
  const flash = new NorFlash({ sectorSize: 512, sectors: 2 });
  new Keystore(flash).format(deviceId, { id: 0x01020304, key: key(1) }, mode);
  const sector = flash.read(0, 512);
  expect(Array.from(sector.subarray(0, 4))).toEqual([0x4c, 0x4b, 0x53, 0x4a]); // "LKSJ"
  expect(Array.from(sector.subarray(4, 8))).toEqual([2, 0, 2, 0]); // version 2, 2 sectors
  expect(u32(sector, 8)).toBe(512);
  expect(u32(sector, 12)).toBe(1); // first sequence
  expect(sector.subarray(16, 24)).toEqual(deviceId);
  expect(u32(sector, 24)).toBe(zlibCrc32(sector.subarray(0, 24)));
  expect(u32(sector, 28)).toBe(sectorCommit(sector)); // sector committed
  const slot0 = sector.subarray(32, 176);
  expect(Array.from(slot0.subarray(0, 8))).toEqual([0x41, modeByte, 0, 0, 4, 3, 2, 1]); // 'A', mode, no shares, id
  expect(slot0.subarray(8, 72)).toEqual(key(1));
  expect(ff(slot0.subarray(72, 136))).toBe(true); // no shares on an active snapshot
  expect(u32(slot0, 136)).toBe(recordCrc(1, 0, slot0)); // committed (by the sector commit word)
  expect(u32(slot0, 140)).toBe(0xffffffff); // retired marker clear: the live snapshot
  expect(ff(sector.subarray(176))).toBe(true);
  expect(ff(flash.read(512, 512))).toBe(true); // the other sector erased
});

test('storeFuture appends an F record with mode and shares; promote sets its promote word; compaction moves on with sequence + 1', () => {
  const flash = new NorFlash({ sectorSize: 1024, sectors: 2 }); // 6 slots per sector
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 1, key: key(1) }, 'classic');
  keystore.storeFuture(7, key(7)); // classic
  let slot1 = flash.read(32 + 144, 144);
  expect(Array.from(slot1.subarray(0, 8))).toEqual([0x46, 0x43, 0, 0, 7, 0, 0, 0]);
  expect(ff(slot1.subarray(72, 136))).toBe(true);
  expect(u32(slot1, 136)).toBe(recordCrc(1, 1, slot1));
  expect(u32(slot1, 140)).toBe(0xffffffff);
  keystore.promote();
  slot1 = flash.read(32 + 144, 144);
  expect(u32(slot1, 140)).toBe(0);
  keystore.storeFuture(8, key(8), { hub: share(0xa8), device: share(0xd8) }); // dh-derived: mode after promotion dh, 64 bytes of shares
  const slot2 = flash.read(32 + 2 * 144, 144);
  expect(Array.from(slot2.subarray(0, 8))).toEqual([0x46, 0x44, 0x40, 0, 8, 0, 0, 0]);
  expect(slot2.subarray(8, 72)).toEqual(key(8));
  expect(slot2.subarray(72, 104)).toEqual(share(0xa8));
  expect(slot2.subarray(104, 136)).toEqual(share(0xd8));
  expect(u32(slot2, 136)).toBe(recordCrc(1, 2, slot2));
  expect(new Keystore(flash).mount()).toMatchObject({ keys: { mode: 'classic', future: { id: 8, shares: { hub: share(0xa8), device: share(0xd8) } } } });
  keystore.promote();
  expect(new Keystore(flash).mount()).toMatchObject({ keys: { mode: 'dh', active: { id: 8 } } });
  for (let id = 9; id <= 12; id++) {
    keystore.storeFuture(id, key(id), { hub: share(id), device: share(id + 1) });
    if (id < 12) keystore.promote();
  }
  // slots 1..5 used by ids 7..11; id 12 did not fit: sector 1 now holds A(11, dh), F(12, dh, shares)
  const sector1 = flash.read(1024, 1024);
  expect(u32(sector1, 12)).toBe(2);
  expect(u32(sector1, 28)).toBe(sectorCommit(sector1));
  expect(Array.from(sector1.subarray(32, 40))).toEqual([0x41, 0x44, 0, 0, 11, 0, 0, 0]);
  expect(Array.from(sector1.subarray(176, 184))).toEqual([0x46, 0x44, 0x40, 0, 12, 0, 0, 0]);
  expect(sector1.subarray(176 + 72, 176 + 104)).toEqual(share(12));
  expect(sector1.subarray(176 + 104, 176 + 136)).toEqual(share(13));
  expect(u32(sector1, 176 + 136)).toBe(recordCrc(2, 1, sector1.subarray(176)));
  expect(u32(sector1, 176 + 140)).toBe(0xffffffff);
});

test('a classic future in the dh mode is stored with mode dh (the mode never goes back)', () => {
  const flash = new NorFlash({ sectorSize: 1024, sectors: 2 });
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 1, key: key(1) }, 'dh');
  keystore.storeFuture(2, key(2));
  expect(Array.from(flash.read(32 + 144, 4))).toEqual([0x46, 0x44, 0, 0]);
  keystore.promote();
  expect(new Keystore(flash).mount()).toMatchObject({ keys: { mode: 'dh', active: { id: 2 } } });
});
