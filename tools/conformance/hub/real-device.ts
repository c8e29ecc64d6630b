/**
 * The real device core (modules/device/ through hosts/node/device-host.ts)
 * as a kit device, for the well-behaved parts the kit does not script frame
 * by frame: recovery (the Noise-KK handshake of modules/crypto/recovery.ts)
 * and the randomized fault runs. Its keystore is an in-memory flash image
 * formatted with the kit device's keys and credential; every byte it sends
 * or receives is recorded (as written and read, in chunks) for evidence,
 * and a fault hook may cut the connection after any number of bytes.
 */
import { Keystore } from '../../../modules/keystore/keystore';
import type { DeviceTransport } from '../../../modules/device/loop';
import type { DeviceKeys, KeySlot } from '../../../modules/platform/keys';
import { memoryFlash } from '../../../hosts/node/flash-memory';
import { NodeDevice } from '../../../hosts/node/device-host';
import type { FrameRecording } from '../wire/recording';
import type { WireTarget } from '../wire/peer';
import type { KitDevice } from './kit-devices';

export interface RealDeviceOptions {
  readonly target: WireTarget;
  readonly recording: FrameRecording;
  /** Keys to format the keystore with instead of the kit device's (a device that lost sync). */
  readonly keys?: { readonly active: KeySlot };
  /** Bytes this connection may carry (either way) before the kit cuts it; undefined: no cut. Asked per connection. */
  readonly cutAfter?: () => number | undefined;
  /** Flip a bit of the first frame's tag the device sends (its first HELLO): a HELLO corrupted in transit. */
  readonly corruptFirstHello?: boolean;
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
}

export function realDevice(device: KitDevice, options: RealDeviceOptions): NodeDevice {
  const flash = memoryFlash();
  const keystore = new Keystore(flash);
  keystore.format(device.idBytes, options.keys?.active ?? device.active, device.mode, device.credential);
  let corrupt = options.corruptFirstHello === true;
  const wrap = (inner: DeviceTransport): DeviceTransport => (events) => {
    let budget = options.cutAfter?.();
    let connection: ReturnType<DeviceTransport> | undefined;
    const spend = (bytes: Uint8Array): Uint8Array | undefined => {
      if (budget === undefined) return bytes;
      if (budget <= 0) return undefined;
      const take = Math.min(budget, bytes.length);
      budget -= take;
      return take === bytes.length ? bytes : bytes.subarray(0, take);
    };
    const cutIfSpent = (): void => {
      if (budget !== undefined && budget <= 0) {
        connection?.close();
        events.onClosed('cut by the conformance kit');
      }
    };
    connection = inner({
      onConnected: () => events.onConnected(),
      onData: (bytes) => {
        const passed = spend(bytes);
        if (passed === undefined) return;
        options.recording.record('received', passed, 'device core input');
        events.onData(passed);
        cutIfSpent();
      },
      onClosed: (reason) => events.onClosed(reason),
    });
    return {
      write: (bytes) => {
        if (corrupt) {
          corrupt = false;
          bytes = bytes.slice();
          bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0x01;
        }
        const passed = spend(bytes);
        if (passed === undefined) return;
        options.recording.record('sent', passed, 'device core output');
        connection?.write(passed);
        if (budget !== undefined && budget <= 0) setImmediate(cutIfSpent);
      },
      close: () => connection?.close(),
    };
  };
  return new NodeDevice({
    storage: new Keystore(flash),
    endpoint: { host: options.target.host, port: options.target.port, ...(options.target.tls === undefined ? {} : { tls: options.target.tls }) },
    wrapTransport: wrap,
    reconnectInitialMs: options.reconnectInitialMs ?? 100,
    reconnectMaxMs: options.reconnectMaxMs ?? 1_000,
    recoveryRetryInitialMs: 200,
    recoveryRetryMaxMs: 2_000,
  });
}

/** Copies the real device's keys back into the kit device (the kit file then holds what the device holds). */
export function adoptKeys(device: KitDevice, keys: DeviceKeys): void {
  device.mode = keys.mode;
  device.active = { id: keys.active.id, key: keys.active.key.slice() };
  if (keys.future === undefined) delete device.future;
  else device.future = { id: keys.future.id, key: keys.future.key.slice(), ...(keys.future.shares === undefined ? {} : { shares: { hub: keys.future.shares.hub.slice(), device: keys.future.shares.device.slice() } }) };
}
