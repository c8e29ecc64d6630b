/**
 * Declarations for the parts of the Moddable SDK's `crypt` and `hmac`
 * modules that the crypto shim uses (modules/crypt/digest/crypt.js,
 * modules/crypt/etc/hmac.js, modules/crypt/digest/modCrypt.c), because
 * @moddable/typings lacks them. Buffer rules from modCrypt.c:
 * - BlockCipher's key and Mode's iv must be ArrayBuffers (xsmcToArrayBuffer);
 * - Mode.encrypt's `result` must be an ArrayBuffer; input may be any view;
 * - Digest.write and HMAC.process accept any buffer or view.
 */
export type BufferSource = ArrayBuffer | Uint8Array;

export declare class BlockCipher {
  constructor(cipher: 'AES', key: ArrayBuffer);
  readonly keySize: number;
  readonly blockSize: number;
}

export declare class Mode {
  constructor(mode: 'CBC', cipher: BlockCipher, iv?: ArrayBuffer, padding?: boolean);
  encrypt(data: BufferSource, result?: ArrayBuffer): ArrayBuffer;
  decrypt(data: BufferSource, result?: ArrayBuffer): ArrayBuffer;
  setIV(iv: ArrayBuffer): void;
}

export declare class Digest {
  constructor(type: 'SHA512');
  readonly blockSize: number;
  readonly outputSize: number;
}

export declare class HMAC {
  constructor(digest: Digest, key: BufferSource);
  process(...items: BufferSource[]): ArrayBuffer;
}
