/**
 * What differs between the ESP32 and the simulator, behind one interface.
 * The manifest maps the module name `hosts/moddable/platform` to
 * platform-esp32.ts or platform-sim.ts (platform.d.ts declares it for
 * TypeScript); main.ts only sees this interface.
 */
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import type { FirmwareConfig } from './config';

export interface Platform {
  readonly name: string;
  /** The AEAD: the native module on ESP32, the crypto shim over the SDK's crypt in the simulator. */
  readonly aead: Aead;
  /** Secure randomness: hardware RNG on ESP32, the OS source in the simulator. Never Math.random. */
  readonly random: RandomSource;
  /**
   * X25519 and HKDF-SHA-512 for the DH rekey mode (docs/PROTOCOL.md §11): the
   * native module (PSA) on ESP32, @noble on XS in the simulator (the SDK's
   * crypt modules have neither). Both throw LockstepError('BAD_KEY_SHARE') for
   * a low-order peer key. Optional for test platforms: without it the device
   * runs classic rotations only.
   */
  readonly keyAgreement?: KeyAgreementPrimitives;
  /**
   * The keystore (not mounted yet): on the keystore partition (ESP32) or a
   * file-backed NOR image (simulator), with keys wrapped under the key-wrap
   * partition's (or file's) KWK when it holds one, plain with a loud `log`
   * warning when there is none or it is erased (unless keyWrapRequired).
   * Throws a typed LockstepError if the key-wrap image is unusable.
   */
  openKeystore(config: FirmwareConfig, log: (line: string) => void): KeyStorage;
  /** Brings the network up (Wi-Fi on ESP32, nothing in the simulator) and calls `ready` once. */
  startNetwork(config: FirmwareConfig, log: (line: string) => void, ready: () => void): void;
}
