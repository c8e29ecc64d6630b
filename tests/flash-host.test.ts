// Node flash hosts: the in-memory flash and the file-backed image
// (hosts/node/flash-memory.ts, hosts/node/flash-file.ts).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFlash } from '../hosts/node/flash-file';
import { memoryFlash } from '../hosts/node/flash-memory';
import { Keystore } from '../modules/keystore/keystore';
import type { Flash } from '../modules/platform/flash';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-flash-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function norSemantics(flash: Flash): void {
  expect(flash.read(0, flash.size).every((b) => b === 0xff)).toBe(true);
  flash.program(3, Uint8Array.of(0b1010_1010, 0));
  flash.program(3, Uint8Array.of(0b0110_0110, 0xff));
  expect(Array.from(flash.read(3, 2))).toEqual([0b0010_0010, 0]);
  flash.erase(0);
  expect(flash.read(0, flash.sectorSize).every((b) => b === 0xff)).toBe(true);
  expect(() => flash.read(flash.size - 1, 2)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  expect(() => flash.erase(flash.size / flash.sectorSize)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
}

test('memory flash has NOR semantics and the keystore partition size by default', () => {
  const flash = memoryFlash();
  expect([flash.size, flash.sectorSize]).toEqual([16384, 4096]);
  norSemantics(flash);
});

test('file flash has NOR semantics, a blank owner-only image, and survives reopening', () => {
  const path = join(dir, 'flash.bin');
  const flash = new FileFlash(path);
  expect(statSync(path).size).toBe(16384);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  norSemantics(flash);
  flash.program(5000, Uint8Array.of(1, 2, 3));
  flash.close();
  expect(Array.from(readFileSync(path).subarray(5000, 5003))).toEqual([1, 2, 3]);
  const again = new FileFlash(path);
  expect(Array.from(again.read(5000, 3))).toEqual([1, 2, 3]);
  again.close();
  expect(() => again.read(0, 1)).toThrow(expect.objectContaining({ code: 'LOCAL_NOT_READY' }));
});

test('file flash refuses an image of another size, or a missing one when create is false', () => {
  const path = join(dir, 'short.bin');
  writeFileSync(path, new Uint8Array(1000));
  expect(() => new FileFlash(path)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  expect(() => new FileFlash(join(dir, 'missing.bin'), { create: false })).toThrow(/ENOENT/);
});

test('a device keeps its keys across restarts on a file image', () => {
  const path = join(dir, 'device.bin');
  const key = (n: number) => new Uint8Array(64).fill(n);
  let flash = new FileFlash(path);
  const keystore = new Keystore(flash);
  keystore.format(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), { id: 1, key: key(1) }, 'classic');
  keystore.storeFuture(2, key(2));
  keystore.promote();
  keystore.storeFuture(3, key(3));
  flash.close();
  flash = new FileFlash(path);
  const mounted = new Keystore(flash).mount();
  flash.close();
  expect(mounted).toEqual({
    provisioned: true,
    deviceId: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
    keys: { mode: 'classic', active: { id: 2, key: key(2) }, future: { id: 3, key: key(3) } },
  });
});
