/**
 * What differs between the ESP32 and the simulator, behind one interface.
 * The manifest maps the module name `hosts/moddable/platform` to
 * platform-esp32.ts or platform-sim.ts (platform.d.ts declares it for
 * TypeScript); main.ts only sees this interface.
 */
import type { Aead, RandomSource } from '../../modules/crypto/primitives';
import type { Flash } from '../../modules/platform/flash';
import type { FirmwareConfig } from './config';

export interface Platform {
  readonly name: string;
  /** The AEAD: the native module on ESP32, the crypto shim over the SDK's crypt in the simulator. */
  readonly aead: Aead;
  /** Secure randomness: hardware RNG on ESP32, the OS source in the simulator. Never Math.random. */
  readonly random: RandomSource;
  /** The keystore's flash: the keystore partition on ESP32, a file-backed NOR image in the simulator. */
  openKeystoreFlash(config: FirmwareConfig): Flash;
  /** Brings the network up (Wi-Fi on ESP32, nothing in the simulator) and calls `ready` once. */
  startNetwork(config: FirmwareConfig, log: (line: string) => void, ready: () => void): void;
}
