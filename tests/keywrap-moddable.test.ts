// The firmware's key-wrap sources (hosts/moddable/key-wrap-source.ts) on Node
// against fakes of the SDK's `flash` and `file` modules, feeding openKeystore
// as platform-esp32.ts / platform-sim.ts do: a provisioned keywrap.bin +
// keystore.bin pair mounts to the hub's key; no partition / no file / an
// erased one gives plain storage with a warning; a garbage one is refused.
import { randomBytes } from 'node:crypto';
import { nodePrimitives } from '../hosts/node/crypto';
import { readKeyWrapFile, readKeyWrapPartition, type KeyWrapFiles, type SdkFlashReader } from '../hosts/moddable/key-wrap-source';
import { NorFlash } from '../modules/flash/nor-flash';
import { isLockstepError } from '../modules/errors';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { KEY_WRAP_IMAGE_BYTES, encodeKeyWrapImage } from '../modules/keystore/key-wrap-image';
import { Keystore } from '../modules/keystore/keystore';
import { WrappedKeystore, openKeystore } from '../modules/keystore/wrapped-keystore';

const bytes = (n: number) => new Uint8Array(randomBytes(n));

/** The SDK `flash` module: data partitions by label; the constructor throws for an unknown label. */
function fakeFlashModule(partitions: Record<string, Uint8Array>) {
  const reads: [string, number, number][] = [];
  const open = (label: string): SdkFlashReader => {
    const content = partitions[label];
    if (content === undefined) throw new Error("can't find partition");
    return {
      byteLength: content.length,
      read(offset, length) {
        reads.push([label, offset, length]);
        if (offset + length > content.length) throw new Error('read failed');
        return content.slice(offset, offset + length).buffer;
      },
    };
  };
  return { open, reads };
}

function fakeFiles(files: Record<string, Uint8Array>): KeyWrapFiles {
  return {
    exists: (path) => path in files,
    readStart: (path, count) => files[path]!.slice(0, count).buffer,
  };
}

describe('ESP32: the key-wrap partition through the flash module', () => {
  test('reads only the image bytes of the labelled partition', () => {
    const image = encodeKeyWrapImage(bytes(64));
    const sdk = fakeFlashModule({ lskeywrap: image });
    expect(readKeyWrapPartition(sdk.open, 'lskeywrap')).toEqual(image.subarray(0, KEY_WRAP_IMAGE_BYTES));
    expect(sdk.reads).toEqual([['lskeywrap', 0, KEY_WRAP_IMAGE_BYTES]]);
  });

  test('no such partition means none; a failing read propagates', () => {
    expect(readKeyWrapPartition(fakeFlashModule({}).open, 'lskeywrap')).toBeUndefined();
    const broken: SdkFlashReader = {
      byteLength: 4096,
      read: () => {
        throw new Error('read failed');
      },
    };
    expect(() => readKeyWrapPartition(() => broken, 'lskeywrap')).toThrow('read failed');
  });

  test('end to end as platform-esp32.ts does it: wrapped, plain with a warning, or refused', () => {
    const kwk = bytes(64);
    const deviceId = bytes(8);
    const active = { id: 2, key: bytes(64) };
    const keystoreFlash = new NorFlash({ sectorSize: 4096, sectors: 4 });
    new WrappedKeystore(keystoreFlash, new KeyWrapper(nodePrimitives, kwk)).format(deviceId, active, 'classic');

    const boot = (partitions: Record<string, Uint8Array>, requireKeyWrap = false) => {
      const warnings: string[] = [];
      const storage = openKeystore({
        openFlash: () => keystoreFlash,
        keyWrapImage: readKeyWrapPartition(fakeFlashModule(partitions).open, 'lskeywrap'),
        primitives: nodePrimitives,
        requireKeyWrap,
        warn: (line) => warnings.push(line),
      });
      return { storage, warnings };
    };

    const wrapped = boot({ lskeywrap: encodeKeyWrapImage(kwk) }, true);
    expect(wrapped.storage.mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'classic', active } });
    expect(wrapped.warnings).toEqual([]);

    const blank = boot({ lskeywrap: new Uint8Array(4096).fill(0xff) });
    expect(blank.storage).toBeInstanceOf(Keystore);
    expect(blank.warnings.join('\n')).toMatch(/PLAINTEXT/);
    expect(boot({}).warnings.join('\n')).toMatch(/no key-wrap partition/);

    for (const [partitions, required, code] of [
      [{ lskeywrap: new Uint8Array(4096).fill(0xff) }, true, 'UNPROVISIONED'],
      [{}, true, 'UNPROVISIONED'],
      [{ lskeywrap: bytes(4096) }, false, 'STORAGE_CORRUPT'], // what an erased partition reads as under flash encryption
    ] as [Record<string, Uint8Array>, boolean, string][]) {
      let caught: unknown;
      try {
        boot(partitions, required);
      } catch (error) {
        caught = error;
      }
      expect(isLockstepError(caught, code as 'UNPROVISIONED')).toBe(true);
    }
  });
});

describe('simulator: the key-wrap image file', () => {
  test('present: its first bytes; absent: none', () => {
    const image = encodeKeyWrapImage(bytes(64));
    expect(readKeyWrapFile(fakeFiles({ '/tmp/lockstep-keywrap.bin': image }), '/tmp/lockstep-keywrap.bin')).toEqual(
      image.subarray(0, KEY_WRAP_IMAGE_BYTES),
    );
    expect(readKeyWrapFile(fakeFiles({}), '/tmp/lockstep-keywrap.bin')).toBeUndefined();
    expect(readKeyWrapFile(fakeFiles({ '/tmp/k': new Uint8Array(10) }), '/tmp/k')).toHaveLength(10);
  });
});
