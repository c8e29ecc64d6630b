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
 * With `hubStatic` (the hub's static public key and its id, docs/PROTOCOL.md
 * §12.6): also the device's recovery credential — a static X25519 private
 * key s_d from the CSPRNG, written into the keystore image with S_h and the
 * id (s_d wrapped under the KWK with `keyWrap`); the hub record gains S_d and
 * the hub static id. Without it the device has no credential (it can enrol
 * later, `hub enrol`).
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
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import type { RecoveryCredential } from '../../modules/crypto/recovery';

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
  /** The device's static public key S_d (64 hex), when provisioned with a recovery credential. */
  readonly devicePublicKey?: string;
  /** The hub static key the device knows (with devicePublicKey). */
  readonly hubStaticId?: number;
}

/** The hub's static public key and its id, given to the device at provisioning (docs/PROTOCOL.md §12.6). */
export interface HubStaticPublic {
  readonly id: number;
  readonly publicKey: Uint8Array;
}

/** Parses `--hub-static-public <hex> --hub-static-id <n>`: 64 hex digits and a u32; a typed error otherwise. */
export function parseHubStaticPublic(hex: string, id: number): HubStaticPublic {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the hub static public key is 64 hex digits (32 bytes)');
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the hub static id is a u32');
  return { id, publicKey: new Uint8Array(Buffer.from(hex, 'hex')) };
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
   * Write a recovery credential for this hub static key (docs/PROTOCOL.md §12.6): the hub's current
   * static public key and its id (`lockstep-hub static-key status`); s_d is drawn here, S_d goes into the record.
   */
  readonly hubStatic?: HubStaticPublic;
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
  const credential = options.hubStatic === undefined ? undefined : newCredential(options.hubStatic, random);
  const kwk = options.keyWrap === true ? random(KEY_WRAP_KEY_BYTES) : undefined;
  const wrapper = kwk === undefined ? undefined : new KeyWrapper(nodePrimitives, kwk);
  const open = (): KeyStorage => (wrapper === undefined ? new Keystore(flash) : new WrappedKeystore(flash, wrapper));
  try {
    open().format(deviceId, { id: keyId, key }, mode, credential);
    const check = open().mount();
    if (!check.provisioned || check.keys.mode !== mode || check.keys.active.id !== keyId || !Buffer.from(check.keys.active.key).equals(Buffer.from(key))) {
      throw new LockstepError('STORAGE_CORRUPT', 'the new image does not mount to the initial key and mode');
    }
    check.keys.active.key.fill(0);
    const mountedCredential = check.credential;
    if (credential !== undefined && (mountedCredential === undefined || !Buffer.from(mountedCredential.device.privateKey).equals(Buffer.from(credential.device.privateKey)))) {
      throw new LockstepError('STORAGE_CORRUPT', 'the new image does not mount to the recovery credential');
    }
    mountedCredential?.device.privateKey.fill(0);
    const base: HubRecord = { deviceId: Buffer.from(deviceId).toString('hex'), keyId, key: Buffer.from(key).toString('hex'), mode };
    const record: HubRecord = credential === undefined ? base : { ...base, devicePublicKey: Buffer.from(credential.device.publicKey).toString('hex'), hubStaticId: credential.hubStaticId };
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
    credential?.device.privateKey.fill(0);
    kwk?.fill(0);
    wrapper?.dispose();
  }
}

/** s_d from the CSPRNG (X25519 clamps it), S_d = X25519(s_d, 9); refuses a low-order hub key (an all-zero shared secret). */
function newCredential(hub: HubStaticPublic, random: (length: number) => Uint8Array): RecoveryCredential {
  if (!(hub.publicKey instanceof Uint8Array) || hub.publicKey.length !== 32) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the hub static public key is 32 bytes');
  if (!Number.isInteger(hub.id) || hub.id < 0 || hub.id > 0xffffffff) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the hub static id is a u32');
  const privateKey = random(32);
  let shared: Uint8Array | undefined;
  try {
    shared = nodeKeyAgreement.x25519(privateKey, hub.publicKey);
  } catch {
    shared = undefined;
  }
  const usable = shared !== undefined && shared.some((b) => b !== 0);
  shared?.fill(0);
  if (!usable) {
    privateKey.fill(0);
    throw new LockstepError('BAD_KEY_SHARE', 'the hub static public key is not usable (low order)');
  }
  return { device: { privateKey, publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) }, hubStaticId: hub.id, hubPublicKey: hub.publicKey.slice() };
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
