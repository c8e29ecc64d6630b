/**
 * Provisioning a device (docs/KEYSTORE.md §7): a fresh device id and initial
 * 64-byte key from node:crypto's CSPRNG, the keystore partition image
 * holding them (to flash at the keystore partition's offset), and the
 * record the hub imports. Never overwrites existing output unless forced.
 * The device's rekey mode (docs/PROTOCOL.md §11.6) is written into the
 * keystore image (format v2, docs/KEYSTORE.md §3) and into the hub record.
 *
 * With `keyWrap` (docs/KEYSTORE.md §10): also a fresh 64-byte key-wrapping
 * key (KWK), written as the key-wrap partition image (keywrap.bin, for the
 * partition flagged `encrypted`), and the keystore image then holds the
 * initial key wrapped under it. The hub record is the same (plain key).
 * keystore.bin and keywrap.bin belong together: a forced run without
 * `keyWrap` removes a stale keywrap.bin so the pair cannot be mixed up.
 *
 * Output files are created owner-only (0600): all of them are secret.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LockstepError } from '../../modules/errors';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../modules/platform/keys';
import type { RekeyMode } from '../../modules/platform/keys';
import { Keystore } from '../../modules/keystore/keystore';
import { KEY_WRAP_KEY_BYTES, KeyWrapper } from '../../modules/keystore/key-wrap';
import { encodeKeyWrapImage } from '../../modules/keystore/key-wrap-image';
import { WrappedKeystore } from '../../modules/keystore/wrapped-keystore';
import type { KeyStorage } from '../../modules/keystore/wrapped-keystore';
import { FLASH_SECTOR_BYTES, KEYSTORE_PARTITION_BYTES, memoryFlash } from '../../hosts/node/flash-memory';
import { nodePrimitives } from '../../hosts/node/crypto';

export const IMAGE_FILE = 'keystore.bin';
export const RECORD_FILE = 'device.json';
export const KEY_WRAP_FILE = 'keywrap.bin';

/** The rekey mode a device is provisioned in when none is given: dh, for every new device (docs/PROTOCOL.md §11.6). */
export const DEFAULT_REKEY_MODE: RekeyMode = 'dh';

/** What the hub needs to know about a provisioned device. */
export interface HubRecord {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: string;
  /** The rekey mode written into the device's keystore. */
  readonly mode: RekeyMode;
  /** Issue 14 (docs/PROTOCOL.md §12.6): the device's static X25519 public key S_d and the hub static id it was given; both or neither. */
  readonly devicePublicKey?: string;
  readonly hubStaticId?: number;
}

export interface ProvisionOptions {
  readonly outDir: string;
  readonly force?: boolean;
  /** How the device's keys are rotated (docs/PROTOCOL.md §11); default DEFAULT_REKEY_MODE. */
  readonly mode?: RekeyMode;
  /** Initial key id (u32); default 1. */
  readonly keyId?: number;
  readonly size?: number;
  readonly sectorSize?: number;
  /** Secure random source; default node:crypto randomBytes. */
  readonly random?: (length: number) => Uint8Array;
  /** Also create a key-wrapping key (keywrap.bin) and store the key wrapped under it. */
  readonly keyWrap?: boolean;
  /**
   * Issue 14: the hub's current static public key and its id (`lockstep-hub static-key status`), for the
   * device's recovery credential (the image writer draws s_d and records S_d in the hub record).
   */
  readonly hubStatic?: { readonly id: number; readonly publicKey: Uint8Array };
}

export interface ProvisionResult {
  readonly record: HubRecord;
  readonly imagePath: string;
  readonly recordPath: string;
  /** The key-wrap partition image, with `keyWrap`. */
  readonly keyWrapPath?: string;
}

export function provisionDevice(options: ProvisionOptions): ProvisionResult {
  const keyId = options.keyId ?? 1;
  const mode = options.mode ?? DEFAULT_REKEY_MODE;
  if (mode !== 'classic' && mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `rekey mode must be classic or dh, not ${String(mode)}`);
  const random = options.random ?? ((length: number) => new Uint8Array(randomBytes(length)));
  const imagePath = join(options.outDir, IMAGE_FILE);
  const recordPath = join(options.outDir, RECORD_FILE);
  const keyWrapPath = join(options.outDir, KEY_WRAP_FILE);
  for (const path of [imagePath, recordPath, keyWrapPath]) {
    if (existsSync(path) && options.force !== true) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `${path} exists; refusing to overwrite (use --force)`);
    }
  }
  const flash = memoryFlash({ size: options.size ?? KEYSTORE_PARTITION_BYTES, sectorSize: options.sectorSize ?? FLASH_SECTOR_BYTES });
  const deviceId = random(DEVICE_ID_BYTES);
  const key = random(KEY_BYTES);
  const kwk = options.keyWrap === true ? random(KEY_WRAP_KEY_BYTES) : undefined;
  const wrapper = kwk === undefined ? undefined : new KeyWrapper(nodePrimitives, kwk);
  const open = (): KeyStorage => (wrapper === undefined ? new Keystore(flash) : new WrappedKeystore(flash, wrapper));
  try {
    open().format(deviceId, { id: keyId, key }, mode);
    const check = open().mount();
    if (!check.provisioned || check.keys.mode !== mode || check.keys.active.id !== keyId || !Buffer.from(check.keys.active.key).equals(Buffer.from(key))) {
      throw new LockstepError('STORAGE_CORRUPT', 'the new image does not mount to the initial key and mode');
    }
    check.keys.active.key.fill(0);
    const record: HubRecord = { deviceId: Buffer.from(deviceId).toString('hex'), keyId, key: Buffer.from(key).toString('hex'), mode };
    mkdirSync(options.outDir, { recursive: true });
    if (kwk === undefined && existsSync(keyWrapPath)) unlinkSync(keyWrapPath); // forced: never leave a stale pair
    if (kwk !== undefined) {
      const keyWrapImage = encodeKeyWrapImage(kwk);
      writeDurably(keyWrapPath, keyWrapImage, options.force === true);
      keyWrapImage.fill(0);
    }
    const image = flash.image();
    writeDurably(imagePath, image, options.force === true);
    image.fill(0);
    writeDurably(recordPath, new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`), options.force === true);
    return kwk === undefined ? { record, imagePath, recordPath } : { record, imagePath, recordPath, keyWrapPath };
  } finally {
    key.fill(0);
    kwk?.fill(0);
    wrapper?.dispose();
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
