/**
 * Simulated devices for the demo, the end-to-end tests and the benchmark:
 * provisioning (keystore image + hub record), a NodeDevice (the device loop
 * on a real socket) per device with its flash keystore, the chaos wrapped
 * around it (chaos.ts: connections cut at random byte positions, power cut
 * in the middle of flash writes), and a small app loop (telemetry up) whose
 * messages are booked in a Ledger.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex } from '../../modules/bytes';
import type { CutPlan } from '../../modules/flash/nor-flash';
import { Keystore } from '../../modules/keystore/keystore';
import type { Flash } from '../../modules/platform/flash';
import { CuttableFlash } from '../testing/cuttable-flash';
import { NodeDevice, type DeviceEndpoint, type NodeDeviceOptions } from '../../hosts/node/device-host';
import { FileFlash } from '../../hosts/node/flash-file';
import { openFlashKeystore } from '../../hosts/node/flash-key-storage';
import { cuttingTransport, PowerCutStorage } from './chaos';
import { memoryFlash } from '../../hosts/node/flash-memory';
import { provisionDevice, type HubStaticPublic } from '../provision/provision';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { newDeviceRecord, parseHubRecord, toHubRecordJson, type DeviceRecord, type HubRecordJson } from '../hub/records';
import type { Ledger } from './ledger';

export interface ChaosSettings {
  /** Probability that a connection is cut at a random byte position. */
  readonly cutProbability: number;
  /** The cut lands uniformly in [0, cutMaxBytes) bytes (both directions counted). */
  readonly cutMaxBytes: number;
  /** Probability that a keystore write loses power part-way. */
  readonly powerCutProbability: number;
}

export const NO_CHAOS: ChaosSettings = { cutProbability: 0, cutMaxBytes: 0, powerCutProbability: 0 };

export interface ProvisionedDevice {
  readonly record: DeviceRecord;
  readonly recordJson: HubRecordJson;
  readonly flash: CuttableFlash;
}

/**
 * Provisions a device: with `dir`, through tools/provision (a keystore.bin
 * image file and device.json, exactly what a real device gets); otherwise in
 * an in-memory NOR flash.
 */
export function provisionSimulatedDevice(dir?: string, hubStatic?: HubStaticPublic): ProvisionedDevice {
  if (dir !== undefined) {
    mkdirSync(dir, { recursive: true });
    const result = provisionDevice({ outDir: dir, ...(hubStatic === undefined ? {} : { hubStatic }) });
    const record = parseHubRecord(result.record);
    return { record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(new FileFlash(result.imagePath, { create: false })) };
  }
  const record = newDeviceRecord();
  const flash: Flash = memoryFlash();
  new Keystore(flash).format(fromHex(record.deviceId), record.active, 'classic');
  return { record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(flash) };
}

/** With `hubStatic` (issue 14) every device gets a recovery credential (tools/provision writes it) and keeps a copy of its image as provisioned. */
export function provisionFleet(count: number, dir?: string, hubStatic?: HubStaticPublic): ProvisionedDevice[] {
  return Array.from({ length: count }, (_, i) => {
    const provisioned = provisionSimulatedDevice(dir === undefined ? undefined : join(dir, `device-${String(i).padStart(3, '0')}`), hubStatic);
    return hubStatic === undefined ? provisioned : withRecoveryCredential(provisioned, hubStatic);
  });
}

/**
 * Issue 14: the recovery credential — the one tools/provision wrote into
 * the image, or, for an in-memory device, a static pair drawn here and
 * stored with the hub's static public key; S_d and the hub static id in the
 * hub record — and a copy of the whole image as provisioned, for the demo's
 * re-flash fault.
 */
export function withRecoveryCredential(provisioned: ProvisionedDevice, hub: HubStaticPublic): ProvisionedDevice & { readonly provisioningImage: Uint8Array } {
  const storage = openFlashKeystore(provisioned.flash);
  storage.mount();
  let credential = storage.credential;
  if (credential === undefined) {
    const pair = nodeKeyAgreement.x25519GenerateKeyPair?.();
    if (pair === undefined) throw new Error('node:crypto generates X25519 pairs');
    credential = { device: pair, hubStaticId: hub.id, hubPublicKey: hub.publicKey.slice() };
    const later = storage.storeCredential?.(credential);
    if (later !== undefined) throw new Error('the provisioning keystore stores synchronously');
  }
  const record: DeviceRecord = { ...provisioned.record, devicePublicKey: credential.device.publicKey.slice(), hubStaticId: credential.hubStaticId };
  const provisioningImage = provisioned.flash.read(0, provisioned.flash.size);
  return { ...provisioned, record, recordJson: toHubRecordJson(record), provisioningImage };
}

export interface SimulatedDeviceOptions {
  readonly endpoint: DeviceEndpoint | (() => DeviceEndpoint);
  readonly chaos?: ChaosSettings;
  readonly ledger?: Ledger;
  /** Telemetry period; 0 = no app traffic. */
  readonly telemetryEveryMs?: number;
  readonly random?: () => number;
  readonly host?: Partial<Omit<NodeDeviceOptions, 'storage' | 'endpoint' | 'wrapTransport'>> & { readonly bootDelayMs?: number };
  /** The key-wrap partition image when the keystore was provisioned with --key-wrap. */
  readonly keyWrapImage?: Uint8Array;
}

export class SimulatedDevice {
  readonly host: NodeDevice;
  readonly flash: CuttableFlash;
  readonly deviceId: string;
  /** Connections cut by the chaos. */
  cuts = 0;
  /** Boots so far (power losses end an epoch). */
  epoch = 0;
  telemetrySent = 0;
  commandsReceived = 0;
  #telemetry: NodeJS.Timeout | undefined;
  #tag = 0;
  readonly #options: SimulatedDeviceOptions;
  readonly #random: () => number;
  chaos: ChaosSettings;

  constructor(provisioned: ProvisionedDevice, options: SimulatedDeviceOptions) {
    this.#options = options;
    this.#random = options.random ?? Math.random;
    this.chaos = options.chaos ?? NO_CHAOS;
    this.flash = provisioned.flash;
    this.deviceId = provisioned.record.deviceId;
    const keyWrapImage = options.keyWrapImage;
    const bootDelayMs = options.host?.bootDelayMs ?? 50;
    const storage = new PowerCutStorage(this.flash, () => openFlashKeystore(this.flash, keyWrapImage === undefined ? {} : { keyWrapImage }), {
      nextCut: () => (this.#random() < this.chaos.powerCutProbability ? this.#powerCutPlan() : undefined),
      onPowerLoss: () => this.host.powerCycle(bootDelayMs),
    });
    const { bootDelayMs: _bootDelay, ...hostOptions } = options.host ?? {};
    this.host = new NodeDevice({
      reconnectInitialMs: 50,
      reconnectMaxMs: 2000,
      ...hostOptions,
      storage,
      endpoint: options.endpoint,
      wrapTransport: (socket) =>
        cuttingTransport(
          socket,
          () => (this.#random() < this.chaos.cutProbability ? Math.floor(this.#random() * this.chaos.cutMaxBytes) : undefined),
          () => this.cuts++,
        ),
    });
    const ledger = options.ledger;
    ledger?.setEpoch(this.deviceId, 0);
    this.host.on('powerLost', () => {
      this.epoch++;
      ledger?.setEpoch(this.deviceId, this.epoch);
    });
    this.host.on('data', ({ payload }) => {
      this.commandsReceived++;
      const text = Buffer.from(payload).toString('latin1');
      ledger?.delivered('down', this.deviceId, text.startsWith('d:') ? text.slice(2) : `?${text}`, this.epoch);
    });
  }

  start(): void {
    this.host.start();
    const every = this.#options.telemetryEveryMs ?? 0;
    if (every > 0 && this.#telemetry === undefined) {
      // Spread the fleet's samples over the period.
      const first = setTimeout(() => {
        this.#telemetry = setInterval(() => this.sendTelemetry(), every);
        this.sendTelemetry();
      }, Math.floor(this.#random() * every));
      this.#telemetry = first;
    }
  }

  stopTelemetry(): void {
    if (this.#telemetry !== undefined) {
      clearTimeout(this.#telemetry);
      clearInterval(this.#telemetry);
    }
    this.#telemetry = undefined;
  }

  stop(): void {
    this.stopTelemetry();
    this.host.stop();
  }

  /**
   * Issue 14's chaos fault: the device re-flashed with `image` (its
   * provisioning image): off, every sector erased and the image programmed,
   * then booted from it. Its keys go back to the provisioned ones.
   */
  reflash(image: Uint8Array): void {
    // Off (a power loss: the 'powerLost' listener ends the epoch), programmed, on. A device off
    // already (between a power cut and its reboot) is programmed and boots on its own timer.
    const wasOn = this.host.powered;
    this.host.powerOff();
    const sectors = this.flash.size / this.flash.sectorSize;
    for (let sector = 0; sector < sectors; sector++) this.flash.erase(sector);
    this.flash.program(0, image);
    this.reflashes++;
    if (wasOn) this.host.powerOn();
  }

  /** Re-flashes so far (each also counts as one power loss of the host). */
  reflashes = 0;

  /** Power loss now (not during a write), then a reboot from the flash image. */
  powerCycle(): void {
    this.host.powerCycle(this.#options.host?.bootDelayMs ?? 50);
  }

  /** Releases the flash image (after stop). */
  close(): void {
    this.flash.close();
  }

  /** One telemetry sample up; skipped while the outbox is full or the device is off. */
  sendTelemetry(): boolean {
    const tag = String(++this.#tag);
    const ledger = this.#options.ledger;
    ledger?.sent('up', this.deviceId, tag, this.epoch);
    try {
      this.host.send(Buffer.from(`u:${tag}`, 'latin1'));
      this.telemetrySent++;
      return true;
    } catch {
      ledger?.cancelled('up', this.deviceId, tag);
      return false;
    }
  }

  #powerCutPlan(): CutPlan {
    const r = this.#random;
    const patterns: ((previous: Uint8Array) => Uint8Array)[] = [
      (p) => p,
      (p) => p.fill(0),
      (p) => p.fill(0xff, 0, p.length >> 1),
      (p) => p.map(() => Math.floor(r() * 256)),
    ];
    return {
      // storeFuture programs twice (more when it compacts: erase first); promote once.
      atOperation: Math.floor(r() * 3),
      programmedBytes: (length: number) => Math.floor(r() * (length + 1)),
      inFlightBits: Math.floor(r() * 256),
      tornErase: patterns[Math.floor(r() * patterns.length)] as (p: Uint8Array) => Uint8Array,
    };
  }
}
