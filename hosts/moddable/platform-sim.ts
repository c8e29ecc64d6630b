/**
 * The simulator platform (lin, mac, win), mapped as `hosts/moddable/platform`.
 * - AEAD: the portable composition (modules/crypto/a256cbc-hs512.ts) over the
 *   crypto shim on the SDK's own crypt classes;
 * - randomness: the host OS (sim-random.c: getrandom / arc4random_buf / rand_s);
 * - keystore flash: a file-backed NOR image (file-flash.ts) through the SDK's
 *   `file` module; relative paths live under `config.file.root` (/tmp/ on lin);
 * - network: the host's, already up.
 */
import { File } from 'file';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import { cryptPrimitives } from './crypt-shim';
import { FileNorFlash, type FileApi, type FileHandle } from './file-flash';
import type { Platform } from './platform-types';
import { BlockCipher, Digest, HMAC, Mode } from './sdk-crypt';
import { fillRandom } from './sim-random';
import { KEYSTORE_SECTOR_BYTES } from './config';

const files: FileApi = {
  exists: (path) => File.exists(path),
  openReadWrite: (path) => new File(path, true) as unknown as FileHandle,
};

export const platform: Platform = {
  name: 'simulator',
  aead: composeAead(cryptPrimitives({ BlockCipher, Mode, Digest, HMAC }), 'A256CBC-HS512 (crypt shim)'),
  random: { fill: (bytes) => fillRandom(bytes) },
  openKeystoreFlash: (config) => new FileNorFlash(files, config.keystoreImage, config.keystoreBytes, KEYSTORE_SECTOR_BYTES),
  startNetwork: (_config, _log, ready) => ready(),
};
