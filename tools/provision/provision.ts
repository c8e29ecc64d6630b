/**
 * Provisioning a device (docs/KEYSTORE.md §7): a fresh device id and initial
 * 64-byte key from node:crypto's CSPRNG, the keystore partition image
 * holding them (to flash at the keystore partition's offset), and the
 * record the hub imports. Never overwrites existing output unless forced.
 *
 * Output files are created owner-only (0600): both hold the key.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LockstepError } from '../../modules/errors';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../modules/platform/keys';
import { Keystore } from '../../modules/keystore/keystore';
import { FLASH_SECTOR_BYTES, KEYSTORE_PARTITION_BYTES, memoryFlash } from '../../hosts/node/flash-memory';

export const IMAGE_FILE = 'keystore.bin';
export const RECORD_FILE = 'device.json';

/** What the hub needs to know about a provisioned device. */
export interface HubRecord {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: string;
}

export interface ProvisionOptions {
  readonly outDir: string;
  readonly force?: boolean;
  /** Initial key id (u32); default 1. */
  readonly keyId?: number;
  readonly size?: number;
  readonly sectorSize?: number;
  /** Secure random source; default node:crypto randomBytes. */
  readonly random?: (length: number) => Uint8Array;
}

export interface ProvisionResult {
  readonly record: HubRecord;
  readonly imagePath: string;
  readonly recordPath: string;
}

export function provisionDevice(options: ProvisionOptions): ProvisionResult {
  const keyId = options.keyId ?? 1;
  const random = options.random ?? ((length: number) => new Uint8Array(randomBytes(length)));
  const imagePath = join(options.outDir, IMAGE_FILE);
  const recordPath = join(options.outDir, RECORD_FILE);
  for (const path of [imagePath, recordPath]) {
    if (existsSync(path) && options.force !== true) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `${path} exists; refusing to overwrite (use --force)`);
    }
  }
  const flash = memoryFlash({ size: options.size ?? KEYSTORE_PARTITION_BYTES, sectorSize: options.sectorSize ?? FLASH_SECTOR_BYTES });
  const deviceId = random(DEVICE_ID_BYTES);
  const key = random(KEY_BYTES);
  try {
    new Keystore(flash).format(deviceId, { id: keyId, key });
    const check = new Keystore(flash).mount();
    if (!check.provisioned || check.keys.active.id !== keyId || !Buffer.from(check.keys.active.key).equals(Buffer.from(key))) {
      throw new LockstepError('STORAGE_CORRUPT', 'the new image does not mount to the initial key');
    }
    check.keys.active.key.fill(0);
    const record: HubRecord = { deviceId: Buffer.from(deviceId).toString('hex'), keyId, key: Buffer.from(key).toString('hex') };
    mkdirSync(options.outDir, { recursive: true });
    const image = flash.image();
    writeDurably(imagePath, image, options.force === true);
    image.fill(0);
    writeDurably(recordPath, new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`), options.force === true);
    return { record, imagePath, recordPath };
  } finally {
    key.fill(0);
  }
}

function writeDurably(path: string, bytes: Uint8Array, overwrite: boolean): void {
  const fd = openSync(path, overwrite ? 'w' : 'wx', 0o600);
  try {
    fchmodSync(fd, 0o600); // an overwritten file keeps its old mode otherwise
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
