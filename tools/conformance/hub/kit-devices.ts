/**
 * The devices the kit plays in hub mode, and their provisioning
 * (docs/CONFORMANCE.md): the kit writes hub records in the spec's format
 * (docs/HUB.md §2: JSON lines of {deviceId, keyId, key, mode,
 * devicePublicKey, hubStaticId}) for the hub under test to import, and
 * beside them a kit-private file (0600) with what a device holds and a hub
 * never sees: the static private key s_d, the hub static public key, and the
 * keys each device holds now (they move with every rotation the run does,
 * so the file is rewritten after a run and the next run starts where this
 * one ended).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fromHex, toHex } from '../../../modules/bytes';
import { LockstepError } from '../../../modules/errors';
import type { RecoveryCredential } from '../../../modules/crypto/recovery';
import type { FutureSlot, KeySlot, RekeyMode } from '../../../modules/platform/keys';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../../../modules/protocol/constants';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import { parseHubRecords, toHubRecordJson } from '../../hub/records';
import { replacePrivateFile } from '../../hub/private-file';

/** The hub's static public key and its id (`hub static-key status`), for recovery. */
export interface HubStaticPublic {
  readonly id: number;
  readonly publicKey: Uint8Array;
}

/** One device as the kit holds it: the keys, the mode, and the recovery credential if provisioned with one. */
export interface KitDevice {
  readonly deviceId: string;
  readonly idBytes: Uint8Array;
  mode: RekeyMode;
  active: KeySlot;
  future?: FutureSlot;
  readonly credential?: RecoveryCredential;
  /**
   * Keys this device retired in this run, newest last (at most RETIRED_KEPT): a device erases them, the
   * kit keeps them to probe that the hub refuses them (H2) and to tell a hub sealing under an old key.
   */
  retired?: Map<number, Uint8Array>;
}

const RETIRED_KEPT = 4;

interface KitFileDevice {
  readonly deviceId: string;
  readonly mode: RekeyMode;
  readonly active: { id: number; key: string };
  readonly future?: { id: number; key: string; hubShare?: string; deviceShare?: string };
  readonly staticPrivateKey?: string;
  readonly hubStaticId?: number;
  readonly hubStaticPublic?: string;
}

interface KitFile {
  readonly kind: 'lockstep-conformance-devices';
  readonly version: 1;
  readonly devices: readonly KitFileDevice[];
}

/** The kit-private file beside a records file. */
export function kitFileFor(recordsPath: string): string {
  return `${recordsPath}.kit.json`;
}

/** `count` fresh devices of each mode (classic first, then dh), with a credential for `hubStatic` when given. */
export function newKitDevices(counts: { readonly classic: number; readonly dh: number }, hubStatic?: HubStaticPublic): KitDevice[] {
  const devices: KitDevice[] = [];
  for (const mode of ['classic', 'dh'] as const) {
    for (let i = 0; i < counts[mode]; i++) devices.push(newKitDevice(mode, hubStatic));
  }
  return devices;
}

export function newKitDevice(mode: RekeyMode, hubStatic?: HubStaticPublic): KitDevice {
  const idBytes = new Uint8Array(randomBytes(DEVICE_ID_BYTES));
  const key = new Uint8Array(randomBytes(KEY_BYTES));
  let credential: RecoveryCredential | undefined;
  if (hubStatic !== undefined) {
    const privateKey = new Uint8Array(randomBytes(32));
    credential = { device: { privateKey, publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) }, hubStaticId: hubStatic.id, hubPublicKey: hubStatic.publicKey.slice() };
  }
  return { deviceId: toHex(idBytes), idBytes, mode, active: { id: 1, key }, ...(credential === undefined ? {} : { credential }) };
}

/** The hub record of a device (docs/HUB.md §2), from its current active key. */
export function hubRecordLine(device: KitDevice): string {
  return JSON.stringify(
    toHubRecordJson({
      deviceId: device.deviceId,
      active: device.active,
      mode: device.mode,
      ...(device.credential === undefined ? {} : { devicePublicKey: device.credential.device.publicKey, hubStaticId: device.credential.hubStaticId }),
    }),
  );
}

/** Writes the hub records (JSON lines, 0600: they hold the initial keys) and the kit-private file beside them. */
export function writeKitRecords(recordsPath: string, devices: readonly KitDevice[]): void {
  replacePrivateFile(recordsPath, `${devices.map(hubRecordLine).join('\n')}\n`);
  saveKitDevices(recordsPath, devices);
}

/** Rewrites the kit-private file with the keys the devices hold now. */
export function saveKitDevices(recordsPath: string, devices: readonly KitDevice[]): void {
  const file: KitFile = {
    kind: 'lockstep-conformance-devices',
    version: 1,
    devices: devices.map((device) => ({
      deviceId: device.deviceId,
      mode: device.mode,
      active: { id: device.active.id, key: toHex(device.active.key) },
      ...(device.future === undefined
        ? {}
        : {
            future: {
              id: device.future.id,
              key: toHex(device.future.key),
              ...(device.future.shares === undefined ? {} : { hubShare: toHex(device.future.shares.hub), deviceShare: toHex(device.future.shares.device) }),
            },
          }),
      ...(device.credential === undefined
        ? {}
        : { staticPrivateKey: toHex(device.credential.device.privateKey), hubStaticId: device.credential.hubStaticId, hubStaticPublic: toHex(device.credential.hubPublicKey) }),
    })),
  };
  replacePrivateFile(kitFileFor(recordsPath), `${JSON.stringify(file, null, 2)}\n`);
}

/**
 * Reads the devices for a run: the kit-private file when it exists (the
 * keys the devices hold now), else the hub records alone (devices without a
 * recovery credential: the kit cannot recover a device whose s_d it never had).
 */
export function loadKitDevices(recordsPath: string): KitDevice[] {
  const records = parseHubRecords(readFileSync(recordsPath, 'utf8'));
  let kit: KitFile | undefined;
  try {
    kit = JSON.parse(readFileSync(kitFileFor(recordsPath), 'utf8')) as KitFile;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw new LockstepError('LOCAL_BAD_ARGUMENT', `${kitFileFor(recordsPath)}: ${(error as Error).message}`);
  }
  if (kit !== undefined && (kit.kind !== 'lockstep-conformance-devices' || kit.version !== 1 || !Array.isArray(kit.devices))) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${kitFileFor(recordsPath)} is not a conformance kit device file`);
  }
  const byId = new Map((kit?.devices ?? []).map((device) => [device.deviceId, device]));
  return records.map((record) => {
    const saved = byId.get(record.deviceId);
    if (saved === undefined) return { deviceId: record.deviceId, idBytes: fromHex(record.deviceId), mode: record.mode, active: record.active };
    const credential: RecoveryCredential | undefined =
      saved.staticPrivateKey === undefined || saved.hubStaticId === undefined || saved.hubStaticPublic === undefined
        ? undefined
        : {
            device: { privateKey: hexBytes(saved.staticPrivateKey, 32, 'staticPrivateKey'), publicKey: nodeKeyAgreement.x25519PublicKey(hexBytes(saved.staticPrivateKey, 32, 'staticPrivateKey')) },
            hubStaticId: saved.hubStaticId,
            hubPublicKey: hexBytes(saved.hubStaticPublic, 32, 'hubStaticPublic'),
          };
    const future: FutureSlot | undefined =
      saved.future === undefined
        ? undefined
        : {
            id: saved.future.id,
            key: hexBytes(saved.future.key, KEY_BYTES, 'future key'),
            ...(saved.future.hubShare === undefined || saved.future.deviceShare === undefined
              ? {}
              : { shares: { hub: hexBytes(saved.future.hubShare, 32, 'hubShare'), device: hexBytes(saved.future.deviceShare, 32, 'deviceShare') } }),
          };
    return {
      deviceId: record.deviceId,
      idBytes: fromHex(record.deviceId),
      mode: saved.mode,
      active: { id: saved.active.id, key: hexBytes(saved.active.key, KEY_BYTES, 'active key') },
      ...(future === undefined ? {} : { future }),
      ...(credential === undefined ? {} : { credential }),
    };
  });
}

function hexBytes(hex: string, length: number, what: string): Uint8Array {
  if (typeof hex !== 'string' || hex.length !== length * 2 || !/^[0-9a-fA-F]+$/.test(hex)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `${what} must be ${length * 2} hex digits`);
  return fromHex(hex);
}

/** The key a device seals with (D3): its future key if it holds one, else its active key. */
export function sealingKey(device: KitDevice): KeySlot & { readonly share?: Uint8Array } {
  if (device.future !== undefined) return device.future.shares === undefined ? device.future : { ...device.future, share: device.future.shares.device };
  return device.active;
}

/** The key the device holds under `keyId`, if any. */
export function keyOf(device: KitDevice, keyId: number): Uint8Array | undefined {
  if (device.active.id === keyId) return device.active.key;
  if (device.future?.id === keyId) return device.future.key;
  return undefined;
}

/** DK5: a hub frame under the future key promotes it (the mode becomes dh with a dh-derived key). */
export function promote(device: KitDevice): void {
  if (device.future === undefined) return;
  if (device.future.shares !== undefined) device.mode = 'dh';
  retire(device, device.active);
  device.active = { id: device.future.id, key: device.future.key };
  delete device.future;
}

/** Keeps a retired key for the kit's probes (bounded). */
export function retire(device: KitDevice, slot: KeySlot): void {
  device.retired ??= new Map();
  device.retired.set(slot.id, slot.key);
  while (device.retired.size > RETIRED_KEPT) device.retired.delete(device.retired.keys().next().value as number);
}
