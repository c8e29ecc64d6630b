/**
 * The device under test for the kit's own tests: the REAL Node device host
 * (hosts/node/device-host.ts on modules/device/device.ts, keys in a keystore
 * image file) — unchanged, or with one of the excluded designs of
 * docs/PROTOCOL.md §8.5 injected around it, the way tools/verify/variants.ts
 * injects them into the simulation (through what a host controls, never by
 * editing the core):
 *
 *   acks-before-persisting        a flash that reports every write durable at
 *                                 once and really writes it WRITE_BACK_MS later
 *                                 (variants 1 and 7: rules D1, D6); a power cut
 *                                 (SIGKILL, or powerOff in process) loses it
 *   seals-old-until-hub-uses-new  a transport interposer that re-seals every
 *                                 frame under the future key with the active key,
 *                                 the REKEY_ACK excepted (variant 3: rule D3)
 *   dh-hello-without-share        an interposer that re-seals a HELLO under a
 *                                 dh-derived future key without its share
 *                                 (variant 10: §11.2)
 *
 * Each must fail device mode with the requirement it breaks; the reference
 * design passes every applicable one (tests/conformance-device*.test.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nodeAead, nodeRandom } from '../../../hosts/node/crypto';
import { NodeDevice } from '../../../hosts/node/device-host';
import { FileFlash } from '../../../hosts/node/flash-file';
import { openFlashKeystore } from '../../../hosts/node/flash-key-storage';
import type { DeviceTiming } from '../../../modules/device/device';
import type { DeviceTransport } from '../../../modules/device/loop';
import { IV_BYTES, MessageType } from '../../../modules/protocol/constants';
import { openFrame, sealFrame } from '../../../modules/protocol/frame';
import { withLengthPrefix } from '../../../modules/protocol/framing';
import { decodeHeader } from '../../../modules/protocol/header';
import type { Flash } from '../../../modules/platform/flash';
import type { DeviceKeys } from '../../../modules/platform/keys';

export const DEVICE_DESIGNS = ['reference', 'acks-before-persisting', 'seals-old-until-hub-uses-new', 'dh-hello-without-share'] as const;
export type DeviceDesign = (typeof DEVICE_DESIGNS)[number];

/** How long the lying flash takes to really write (as tools/verify/variants.ts). */
export const WRITE_BACK_MS = 2_000;

/** A flash that acknowledges writes before they reach the medium: reads see them, a power cut loses them. */
export class WriteBackFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  readonly #inner: Flash;
  readonly #delayMs: number;
  #overlay: Uint8Array;
  #queue: ({ kind: 'program'; offset: number; data: Uint8Array } | { kind: 'erase'; sector: number })[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(inner: Flash, delayMs = WRITE_BACK_MS) {
    this.#inner = inner;
    this.#delayMs = delayMs;
    this.size = inner.size;
    this.sectorSize = inner.sectorSize;
    this.#overlay = inner.read(0, inner.size);
  }

  read(offset: number, length: number): Uint8Array {
    return this.#overlay.slice(offset, offset + length);
  }

  program(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.#overlay[offset + i] = (this.#overlay[offset + i] as number) & (data[i] as number);
    this.#queue.push({ kind: 'program', offset, data: data.slice() });
    this.#schedule();
  }

  erase(sector: number): void {
    this.#overlay.fill(0xff, sector * this.sectorSize, (sector + 1) * this.sectorSize);
    this.#queue.push({ kind: 'erase', sector });
    this.#schedule();
  }

  /** Power lost: what was not written back is gone; the medium is what it is. */
  powerLost(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#overlay = this.#inner.read(0, this.#inner.size);
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      for (const op of this.#queue.splice(0)) {
        if (op.kind === 'program') this.#inner.program(op.offset, op.data);
        else this.#inner.erase(op.sector);
      }
    }, this.#delayMs);
  }
}

function reseal(frame: Uint8Array, openKey: Uint8Array, seal: { id: number; key: Uint8Array }, keepShare: boolean): Uint8Array {
  const header = decodeHeader(frame);
  // The sender re-sealing its own frame (not an acceptance): the plain AEAD.
  const message = openFrame(nodeAead, openKey, frame, header);
  const iv = new Uint8Array(IV_BYTES);
  nodeRandom.fill(iv);
  const { share, ...bare } = header;
  const out = { ...bare, keyId: seal.id, ...(keepShare && share !== undefined ? { share } : {}) };
  return withLengthPrefix(sealFrame({ aead: nodeAead, key: seal.key, iv, header: out, message }));
}

/** The interposers of §8.5's transport designs, on the device's own outgoing frames. */
function interposer(design: DeviceDesign, keys: () => DeviceKeys | undefined): ((bytes: Uint8Array) => Uint8Array) | undefined {
  if (design === 'seals-old-until-hub-uses-new') {
    return (bytes) => {
      const held = keys();
      if (held?.future === undefined || bytes.length < 38) return bytes;
      const header = decodeHeader(bytes.subarray(2));
      if (header.keyId !== held.future.id || header.type === MessageType.REKEY_ACK) return bytes;
      return reseal(bytes.subarray(2), held.future.key, held.active, false);
    };
  }
  if (design === 'dh-hello-without-share') {
    return (bytes) => {
      const held = keys();
      if (held?.future?.shares === undefined || bytes.length < 38) return bytes;
      const header = decodeHeader(bytes.subarray(2));
      if (header.type !== MessageType.HELLO || header.share === undefined) return bytes;
      return reseal(bytes.subarray(2), held.future.key, held.future, false);
    };
  }
  return undefined;
}

export interface LaunchOptions {
  readonly image: string;
  readonly host: string;
  readonly port: number;
  readonly design: DeviceDesign;
  readonly timing?: Partial<DeviceTiming>;
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  readonly writeBackMs?: number;
}

export interface LaunchedDevice {
  readonly device: NodeDevice;
  /** A power cut (in process): memory and unwritten flash are gone. */
  powerOff(): void;
  powerOn(): void;
  stop(): void;
}

/** Starts the real Node device host from a keystore image, with `design` injected. */
export function launchDevice(options: LaunchOptions): LaunchedDevice {
  const file = new FileFlash(options.image, { create: false });
  const flash = options.design === 'acks-before-persisting' ? new WriteBackFlash(file, options.writeBackMs) : undefined;
  let device: NodeDevice | undefined;
  const transform = interposer(options.design, () => device?.loop.keys);
  const wrapTransport =
    transform === undefined
      ? undefined
      : (transport: DeviceTransport): DeviceTransport =>
          (events) => {
            const connection = transport(events);
            return { write: (bytes) => connection.write(transform(bytes)), close: () => connection.close() };
          };
  // keywrap.bin next to the image (provisioned with --key-wrap): the keys are wrapped under its KWK.
  const keyWrapPath = join(dirname(options.image), 'keywrap.bin');
  const keyWrapImage = existsSync(keyWrapPath) ? new Uint8Array(readFileSync(keyWrapPath)) : undefined;
  device = new NodeDevice({
    storage: openFlashKeystore(flash ?? file, keyWrapImage === undefined ? {} : { keyWrapImage }),
    endpoint: { host: options.host, port: options.port },
    ...(wrapTransport === undefined ? {} : { wrapTransport }),
    ...(options.timing === undefined ? {} : { timing: options.timing }),
    reconnectInitialMs: options.reconnectInitialMs ?? 100,
    reconnectMaxMs: options.reconnectMaxMs ?? 1_000,
  });
  const launched = device;
  launched.start();
  return {
    device: launched,
    powerOff: () => {
      launched.powerOff();
      flash?.powerLost();
    },
    powerOn: () => {
      launched.powerOn();
      launched.start();
    },
    stop: () => {
      launched.stop();
      file.close();
    },
  };
}
