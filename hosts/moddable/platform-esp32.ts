/**
 * The ESP32 platform, mapped as `hosts/moddable/platform`.
 * - AEAD, randomness and key agreement: the native module
 *   (hosts/moddable/native): the chip's AES/SHA accelerators and hardware RNG
 *   through ESP-IDF, X25519 and HKDF-SHA-512 through PSA;
 * - keystore: the SDK's `flash` module on the `keystore` data partition of
 *   partitions.csv (never encrypted: the journal needs NOR semantics), keys
 *   wrapped under the KWK read from the `lskeywrap` partition (flagged
 *   `encrypted`: esp_partition_read decrypts it, see key-wrap-source.ts);
 *   plain keys with a loud warning if that partition is blank
 *   (development), refused if `keyWrapRequired` (docs/FIRMWARE.md);
 * - network: Wi-Fi station mode from config `ssid` / `password`; `ready` is
 *   called on the first IP address. Later drops are left to the ESP-IDF
 *   Wi-Fi driver (it reconnects) and to the host's socket reconnect loop.
 */
import Flash from 'flash';
import WiFi from 'wifi';
import { wipe } from '../../modules/bytes';
import { openKeystore } from '../../modules/keystore/wrapped-keystore';
import { readKeyWrapPartition, type SdkFlashReader } from './key-wrap-source';
import { nativeAead, nativeKeyAgreement, nativePrimitives, nativeRandom } from './native/native-aead';
import { PartitionFlash, type SdkFlash } from './partition-flash';
import type { Platform } from './platform-types';

/** Keeps the Wi-Fi monitor alive (the SDK stops notifying a collected instance). */
let monitor: WiFi | undefined;

export const platform: Platform = {
  name: 'esp32',
  aead: nativeAead,
  random: nativeRandom,
  keyAgreement: nativeKeyAgreement,
  openKeystore(config, log) {
    // The casts: the typings widen read() to ArrayBuffer | HostBuffer for its optional
    // third argument, which neither caller passes (then it is an ArrayBuffer).
    const keyWrapImage = readKeyWrapPartition((label) => new Flash(label) as unknown as SdkFlashReader, config.keyWrapPartition);
    try {
      return openKeystore({
        openFlash: () => new PartitionFlash(new Flash(config.keystorePartition) as unknown as SdkFlash),
        keyWrapImage,
        primitives: nativePrimitives,
        requireKeyWrap: config.keyWrapRequired,
        warn: log,
      });
    } finally {
      wipe(keyWrapImage);
    }
  },
  startNetwork(config, log, ready) {
    if (config.ssid === undefined) {
      log('Wi-Fi: no ssid configured; assuming the network is up');
      ready();
      return;
    }
    let up = false;
    const options = config.password === undefined ? { ssid: config.ssid } : { ssid: config.ssid, password: config.password };
    monitor = new WiFi(options, (message) => {
      if (message === WiFi.gotIP) {
        log('Wi-Fi: got IP address');
        if (!up) {
          up = true;
          ready();
        }
      } else if (message === WiFi.disconnected) {
        log('Wi-Fi: disconnected; reconnecting');
        WiFi.connect(options);
      } else {
        log(`Wi-Fi: ${message}`);
      }
    });
  },
};
