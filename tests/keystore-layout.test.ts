// The on-flash format, checked field by field against docs/KEYSTORE.md §3
// with an independent CRC-32 (node:zlib).
import { crc32 as zlibCrc32 } from 'node:zlib';
import { NorFlash } from '../modules/flash/nor-flash';
import { Keystore } from '../modules/keystore/keystore';

const deviceId = Uint8Array.of(0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7);
const key = (n: number) => Uint8Array.from({ length: 64 }, (_, i) => (n * 16 + i) & 0xff);

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
}

function recordCrc(sequence: number, slot: number, body: Uint8Array): number {
  const input = new Uint8Array(8 + 72);
  new DataView(input.buffer).setUint32(0, sequence, true);
  new DataView(input.buffer).setUint32(4, slot, true);
  input.set(body.subarray(0, 72), 8);
  return zlibCrc32(input);
}

/** Tagged CRC-32 ("SKCL" ‖ header bytes 0..23) with bit 31 cleared. */
function sectorCommit(sector: Uint8Array): number {
  const input = new Uint8Array(28);
  input.set([0x53, 0x4b, 0x43, 0x4c]);
  input.set(sector.subarray(0, 24), 4);
  return (zlibCrc32(input) & 0x7fffffff) >>> 0;
}

test('format writes header, commit word and the active snapshot as documented', () => {
  const flash = new NorFlash({ sectorSize: 512, sectors: 2 });
  new Keystore(flash).format(deviceId, { id: 0x01020304, key: key(1) }, 'classic');
  const sector = flash.read(0, 512);
  expect(Array.from(sector.subarray(0, 4))).toEqual([0x4c, 0x4b, 0x53, 0x4a]); // "LKSJ"
  expect(Array.from(sector.subarray(4, 8))).toEqual([1, 0, 2, 0]); // version 1, 2 sectors
  expect(u32(sector, 8)).toBe(512);
  expect(u32(sector, 12)).toBe(1); // first sequence
  expect(sector.subarray(16, 24)).toEqual(deviceId);
  expect(u32(sector, 24)).toBe(zlibCrc32(sector.subarray(0, 24)));
  expect(u32(sector, 28)).toBe(sectorCommit(sector)); // sector committed
  const slot0 = sector.subarray(32, 116);
  expect(Array.from(slot0.subarray(0, 8))).toEqual([0x41, 0, 0, 0, 4, 3, 2, 1]);
  expect(slot0.subarray(8, 72)).toEqual(key(1));
  expect(u32(slot0, 72)).toBe(recordCrc(1, 0, slot0));
  expect(u32(slot0, 76)).toBe(0); // committed
  expect(u32(slot0, 80)).toBe(0xffffffff); // promote word unused in 'A'
  expect(sector.subarray(116).every((b) => b === 0xff)).toBe(true);
  expect(flash.read(512, 512).every((b) => b === 0xff)).toBe(true); // the other sector erased
});

test('storeFuture appends an F record; promote sets its promote word; compaction moves on with sequence + 1', () => {
  const flash = new NorFlash({ sectorSize: 512, sectors: 2 }); // 5 slots per sector
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 1, key: key(1) }, 'classic');
  keystore.storeFuture(7, key(7));
  let slot1 = flash.read(32 + 84, 84);
  expect(Array.from(slot1.subarray(0, 8))).toEqual([0x46, 0, 0, 0, 7, 0, 0, 0]);
  expect(u32(slot1, 72)).toBe(recordCrc(1, 1, slot1));
  expect([u32(slot1, 76), u32(slot1, 80)]).toEqual([0, 0xffffffff]);
  keystore.promote();
  slot1 = flash.read(32 + 84, 84);
  expect(u32(slot1, 80)).toBe(0);
  for (let id = 8; id <= 11; id++) {
    keystore.storeFuture(id, key(id));
    if (id < 11) keystore.promote();
  }
  // slots 1..4 used by ids 7..10; id 11 did not fit: sector 1 now holds A(10), F(11)
  const sector1 = flash.read(512, 512);
  expect(u32(sector1, 12)).toBe(2);
  expect(u32(sector1, 28)).toBe(sectorCommit(sector1));
  expect(Array.from(sector1.subarray(32, 40))).toEqual([0x41, 0, 0, 0, 10, 0, 0, 0]);
  expect(Array.from(sector1.subarray(116, 124))).toEqual([0x46, 0, 0, 0, 11, 0, 0, 0]);
  expect(u32(sector1, 116 + 72)).toBe(recordCrc(2, 1, sector1.subarray(116)));
  expect(u32(sector1, 116 + 80)).toBe(0xffffffff);
});
