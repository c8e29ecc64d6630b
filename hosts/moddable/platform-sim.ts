/**
 * The simulator platform (lin, mac, win), mapped as `hosts/moddable/platform`.
 * - AEAD: the portable composition (modules/crypto/a256cbc-hs512.ts) over the
 *   crypto shim on the SDK's own crypt classes;
 * - key agreement (DH rekey mode): X25519 and HKDF-SHA-512 from @noble on XS
 *   (the SDK's crypt modules do neither; manifest_noble.json);
 * - randomness: the host OS (sim-random.c: getrandom / arc4random_buf / rand_s);
 * - keystore: a file-backed NOR image (file-flash.ts) through the SDK's
 *   `file` module; relative paths live under `config.file.root` (/tmp/ on lin);
 *   keys wrapped under the KWK of the `keyWrapImage` file when it exists
 *   (provision --key-wrap's keywrap.bin), else plain with a loud warning
 *   (refused if `keyWrapRequired`), the same rule as on ESP32;
 * - network: the host's, already up.
 */
// First: @noble (below) needs a global TextEncoder while it loads.
import './text-encoder-global';
import { File } from 'file';
import { wipe } from '../../modules/bytes';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import { openKeystore } from '../../modules/keystore/wrapped-keystore';
import { nobleKeyAgreement } from '../noble/key-agreement';
import { cryptPrimitives } from './crypt-shim';
import { FileNorFlash, type FileApi, type FileHandle } from './file-flash';
import { readKeyWrapFile, type KeyWrapFiles } from './key-wrap-source';
import type { Platform } from './platform-types';
import { BlockCipher, Digest, HMAC, Mode } from './sdk-crypt';
import { fillRandom } from './sim-random';
import { KEYSTORE_SECTOR_BYTES } from './config';

const files: FileApi = {
  exists: (path) => File.exists(path),
  openReadWrite: (path) => new File(path, true) as unknown as FileHandle,
};

const keyWrapFiles: KeyWrapFiles = {
  exists: (path) => File.exists(path),
  readStart(path, count) {
    const file = new File(path);
    try {
      return file.read(ArrayBuffer, Math.min(count, file.length));
    } finally {
      file.close();
    }
  },
};

const primitives = cryptPrimitives({ BlockCipher, Mode, Digest, HMAC });

export const platform: Platform = {
  name: 'simulator',
  aead: composeAead(primitives, 'A256CBC-HS512 (crypt shim)'),
  random: { fill: (bytes) => fillRandom(bytes) },
  keyAgreement: nobleKeyAgreement,
  openKeystore(config, log) {
    const keyWrapImage = readKeyWrapFile(keyWrapFiles, config.keyWrapImage);
    try {
      return openKeystore({
        openFlash: () => new FileNorFlash(files, config.keystoreImage, config.keystoreBytes, KEYSTORE_SECTOR_BYTES),
        keyWrapImage,
        primitives,
        requireKeyWrap: config.keyWrapRequired,
        warn: log,
      });
    } finally {
      wipe(keyWrapImage);
    }
  },
  startNetwork: (_config, _log, ready) => ready(),
};
