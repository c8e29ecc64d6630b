/**
 * The firmware's flash adapters on Node, against fakes of the SDK APIs:
 * - FileNorFlash (simulator) over a fake of the `file` module's File that
 *   behaves like modules/files/file/lin/modFile.c (write takes whole
 *   ArrayBuffers; reading past the end throws);
 * - PartitionFlash (ESP32) over a fake of the `flash` module backed by the
 *   NOR model (modules/flash/nor-flash.ts), which has the chip's semantics.
 * Both must behave exactly like the NOR model, and the real keystore must
 * run on them unchanged.
 */
import { isLockstepError } from '../modules/errors';
import { NorFlash } from '../modules/flash/nor-flash';
import { Keystore } from '../modules/keystore/keystore';
import type { Flash } from '../modules/platform/flash';
import { FileNorFlash, type FileApi, type FileHandle } from '../hosts/moddable/file-flash';
import { PartitionFlash, type SdkFlash } from '../hosts/moddable/partition-flash';
import { seededRandom } from '../tools/testing/deterministic-random';

/** In-memory files with the lin `file` module's rules. */
class FakeFiles implements FileApi {
  readonly files = new Map<string, Uint8Array>();
  writes = 0;
  exists(path: string): boolean {
    return this.files.has(path);
  }
  openReadWrite(path: string): FileHandle {
    if (!this.files.has(path)) this.files.set(path, new Uint8Array(0));
    const files = this.files;
    const owner = this;
    let position = 0;
    let open = true;
    const content = (): Uint8Array => {
      if (!open) throw new Error('closed');
      return files.get(path)!;
    };
    return {
      get position() {
        return position;
      },
      set position(value: number) {
        position = value;
      },
      get length() {
        return content().length;
      },
      read(_type, count) {
        const bytes = content();
        if (position >= bytes.length) throw new Error('read past end of file');
        const end = Math.min(bytes.length, position + count);
        const out = bytes.slice(position, end);
        position = end;
        return out.buffer;
      },
      write(data) {
        if (!(data instanceof ArrayBuffer)) throw new TypeError('file write: ArrayBuffer expected');
        const bytes = content();
        const incoming = new Uint8Array(data);
        const end = position + incoming.length;
        const grown = end > bytes.length ? new Uint8Array(end) : bytes;
        if (grown !== bytes) grown.set(bytes);
        grown.set(incoming, position);
        files.set(path, grown);
        position = end;
        owner.writes++;
      },
      close() {
        open = false;
      },
    };
  }
}

/** The SDK `flash` instance over the NOR model; write() rejects zero lengths as flash.c does. */
function fakeSdkFlash(model: NorFlash): SdkFlash & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    byteLength: model.size,
    blockSize: model.sectorSize,
    read(offset, byteLength) {
      calls.push(`read ${offset} ${byteLength}`);
      return model.read(offset, byteLength).slice().buffer;
    },
    write(offset, byteLength, buffer) {
      calls.push(`write ${offset} ${byteLength}`);
      if (byteLength <= 0 || buffer.length < byteLength) throw new Error('invalid');
      model.program(offset, buffer.subarray(0, byteLength));
    },
    erase(sector) {
      calls.push(`erase ${sector}`);
      model.erase(sector);
    },
  };
}

function expectBadArgument(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    expect(isLockstepError(error, 'LOCAL_BAD_ARGUMENT')).toBe(true);
    return;
  }
  throw new Error('expected LOCAL_BAD_ARGUMENT');
}

/** Random program/erase/read script; the adapter and a reference NOR model must agree at every step. */
function agreesWithModel(flash: Flash, seed: number): void {
  const reference = new NorFlash({ sectorSize: flash.sectorSize, sectors: flash.size / flash.sectorSize, image: flash.read(0, flash.size) });
  const random = seededRandom(seed);
  for (let step = 0; step < 300; step++) {
    const choice = random.nextUint32() % 10;
    if (choice === 0) {
      const sector = random.nextUint32() % (flash.size / flash.sectorSize);
      flash.erase(sector);
      reference.erase(sector);
    } else {
      const length = random.nextUint32() % 100;
      const offset = random.nextUint32() % (flash.size - length + 1);
      const data = new Uint8Array(length);
      random.fill(data);
      flash.program(offset, data);
      reference.program(offset, data);
    }
    const at = random.nextUint32() % flash.size;
    const length = Math.min(flash.size - at, random.nextUint32() % 200);
    expect(Buffer.from(flash.read(at, length))).toEqual(Buffer.from(reference.read(at, length)));
  }
  expect(Buffer.from(flash.read(0, flash.size))).toEqual(Buffer.from(reference.read(0, reference.size)));
}

function keystoreRoundTrip(open: () => Flash): void {
  const deviceId = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]);
  const key = (fill: number): Uint8Array => new Uint8Array(64).fill(fill);
  const keystore = new Keystore(open());
  expect(keystore.mount().provisioned).toBe(false);
  keystore.format(deviceId, { id: 1, key: key(1) }, 'classic');
  for (let id = 2; id < 60; id++) {
    keystore.storeFuture(id, key(id));
    // Remount from the medium between the two steps, as after a reboot.
    const again = new Keystore(open()).mount();
    expect(again.provisioned && again.keys.future?.id).toBe(id);
    keystore.promote();
  }
  const mounted = new Keystore(open()).mount();
  if (!mounted.provisioned) throw new Error('lost the journal');
  expect(Buffer.from(mounted.deviceId)).toEqual(Buffer.from(deviceId));
  expect(mounted.keys.active.id).toBe(59);
  expect(Buffer.from(mounted.keys.active.key)).toEqual(Buffer.from(key(59)));
  expect(mounted.keys.future).toBeUndefined();
}

describe('FileNorFlash (simulator keystore image)', () => {
  test('a missing image is created erased, at the configured size', () => {
    const files = new FakeFiles();
    const flash = new FileNorFlash(files, '/tmp/ks.bin', 16384);
    expect(flash.size).toBe(16384);
    expect(flash.sectorSize).toBe(4096);
    expect(files.files.get('/tmp/ks.bin')!.every((b) => b === 0xff)).toBe(true);
  });

  test('NOR semantics: program only clears bits, erase sets the sector to 0xFF; agrees with the model', () => {
    const files = new FakeFiles();
    const flash = new FileNorFlash(files, 'img', 4 * 4096);
    flash.program(10, new Uint8Array([0x0f, 0xf0]));
    flash.program(10, new Uint8Array([0xf3, 0x3f]));
    expect([...flash.read(10, 2)]).toEqual([0x03, 0x30]);
    flash.erase(0);
    expect([...flash.read(10, 2)]).toEqual([0xff, 0xff]);
    agreesWithModel(flash, 11);
  });

  test('an existing image is reused, and one of another size is refused', () => {
    const files = new FakeFiles();
    new FileNorFlash(files, 'img', 8192).program(0, new Uint8Array([1, 2, 3]));
    expect([...new FileNorFlash(files, 'img', 8192).read(0, 3)]).toEqual([1, 2, 3]);
    expectBadArgument(() => new FileNorFlash(files, 'img', 16384));
    expectBadArgument(() => new FileNorFlash(files, 'other', 5000));
  });

  test('out-of-range arguments are refused before any write', () => {
    const files = new FakeFiles();
    const flash = new FileNorFlash(files, 'img', 8192);
    const writes = files.writes;
    expectBadArgument(() => flash.program(8190, new Uint8Array(3)));
    expectBadArgument(() => flash.program(-1, new Uint8Array(1)));
    expectBadArgument(() => flash.program(1.5, new Uint8Array(1)));
    expectBadArgument(() => flash.erase(2));
    expectBadArgument(() => flash.erase(-1));
    expectBadArgument(() => flash.read(0, 8193));
    expect(files.writes).toBe(writes);
    expect(flash.read(8192, 0).length).toBe(0);
    flash.program(100, new Uint8Array(0));
    expect(files.writes).toBe(writes);
  });

  test('the keystore journal runs on it across remounts', () => {
    const files = new FakeFiles();
    keystoreRoundTrip(() => new FileNorFlash(files, 'ks', 16384));
  });
});

describe('PartitionFlash (ESP32 keystore partition)', () => {
  test('takes size and sector size from the partition and agrees with the NOR model', () => {
    const model = new NorFlash({ sectors: 4 });
    const flash = new PartitionFlash(fakeSdkFlash(model));
    expect(flash.size).toBe(16384);
    expect(flash.sectorSize).toBe(4096);
    agreesWithModel(flash, 5);
  });

  test('checks ranges before touching the partition and never writes zero bytes', () => {
    const sdk = fakeSdkFlash(new NorFlash({ sectors: 2 }));
    const flash = new PartitionFlash(sdk);
    expectBadArgument(() => flash.program(8191, new Uint8Array(2)));
    expectBadArgument(() => flash.read(-1, 1));
    expectBadArgument(() => flash.erase(2));
    flash.program(0, new Uint8Array(0));
    expect(flash.read(0, 0).length).toBe(0);
    expect(sdk.calls).toEqual([]);
  });

  test('refuses a partition that is not whole sectors', () => {
    const sdk = { ...fakeSdkFlash(new NorFlash({ sectors: 1 })), byteLength: 5000 };
    expectBadArgument(() => new PartitionFlash(sdk));
  });

  test('the keystore journal runs on it across remounts', () => {
    const model = new NorFlash({ sectors: 4 });
    keystoreRoundTrip(() => new PartitionFlash(fakeSdkFlash(model)));
  });
});
