/**
 * The crypto shim (hosts/moddable/crypt-shim.ts) against fakes of the
 * Moddable SDK's crypt classes built on node:crypto. The fakes enforce the
 * SDK's buffer rules (modules/crypt/digest/modCrypt.c): BlockCipher's key and
 * Mode's iv are read with xsmcToArrayBuffer (whole ArrayBuffers only), and
 * Mode.encrypt's result must be an ArrayBuffer big enough. Then the whole AEAD
 * suite (RFC 7518 B.3, Wycheproof) runs on the composition over the shim.
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { composeAead } from '../modules/crypto/a256cbc-hs512';
import { isLockstepError } from '../modules/errors';
import { cryptPrimitives, type CryptClasses } from '../hosts/moddable/crypt-shim';
import { nodePrimitives } from '../hosts/node/crypto';
import { aeadConformanceSuite } from './support/aead-suite';
import { seededRandom } from '../tools/testing/deterministic-random';

function requireArrayBuffer(value: unknown, what: string): ArrayBuffer {
  if (!(value instanceof ArrayBuffer)) throw new TypeError(`${what}: xsmcToArrayBuffer needs an ArrayBuffer`);
  return value;
}

class FakeBlockCipher {
  readonly key: Buffer;
  constructor(cipher: 'AES', key: ArrayBuffer) {
    if (cipher !== 'AES') throw new Error('unsupported cipher');
    const bytes = Buffer.from(requireArrayBuffer(key, 'BlockCipher key'));
    if (![16, 24, 32].includes(bytes.length)) throw new Error('bad key size');
    this.key = Buffer.from(bytes); // the native side keeps its own copy
  }
}

class FakeMode {
  readonly #cipher: FakeBlockCipher;
  readonly #iv: Buffer;
  constructor(mode: 'CBC', cipher: FakeBlockCipher, iv: ArrayBuffer, padding: boolean) {
    if (mode !== 'CBC' || padding) throw new Error('the shim must ask for CBC without padding');
    this.#cipher = cipher;
    this.#iv = Buffer.from(requireArrayBuffer(iv, 'Mode iv'));
  }
  #run(encrypt: boolean, data: Uint8Array, result: ArrayBuffer): ArrayBuffer {
    requireArrayBuffer(result, 'Mode result');
    if (result.byteLength < data.length) throw new Error('output too small');
    const algorithm = `aes-${this.#cipher.key.length * 8}-cbc`;
    const engine = encrypt ? createCipheriv(algorithm, this.#cipher.key, this.#iv) : createDecipheriv(algorithm, this.#cipher.key, this.#iv);
    engine.setAutoPadding(false);
    const out = Buffer.concat([engine.update(data), engine.final()]);
    new Uint8Array(result).set(out);
    return result;
  }
  encrypt(data: Uint8Array, result: ArrayBuffer): ArrayBuffer {
    return this.#run(true, data, result);
  }
  decrypt(data: Uint8Array, result: ArrayBuffer): ArrayBuffer {
    return this.#run(false, data, result);
  }
}

class FakeDigest {
  constructor(readonly type: 'SHA512') {}
}

class FakeHmac {
  readonly #key: Buffer;
  ipad = new Uint8Array(128).fill(0x36);
  opad = new Uint8Array(128).fill(0x5c);
  constructor(digest: FakeDigest, key: Uint8Array) {
    if (digest.type !== 'SHA512') throw new Error('unsupported digest');
    this.#key = Buffer.from(key);
  }
  process(...items: Uint8Array[]): ArrayBuffer {
    const mac = createHmac('sha512', this.#key);
    for (const item of items) mac.update(item);
    const out = mac.digest();
    return out.buffer.slice(out.byteOffset, out.byteOffset + out.length) as ArrayBuffer;
  }
}

const fakes: CryptClasses<FakeBlockCipher, FakeDigest> = { BlockCipher: FakeBlockCipher, Mode: FakeMode, Digest: FakeDigest, HMAC: FakeHmac };
const shim = cryptPrimitives(fakes);

describe('crypt shim primitives', () => {
  const random = seededRandom(7);
  const bytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n);
    random.fill(b);
    return b;
  };

  test('AES-256-CBC and HMAC-SHA-512 agree with node:crypto, also for views into larger buffers', () => {
    for (let blocks = 0; blocks <= 8; blocks++) {
      const backing = bytes(32 + 16 + 16 * blocks + 9);
      const key = backing.subarray(3, 35); // a view: the shim must copy it to a whole ArrayBuffer
      const iv = backing.subarray(35, 51);
      const data = backing.subarray(51, 51 + 16 * blocks);
      const sealed = shim.aes256CbcEncrypt(key, iv, data);
      expect(Buffer.from(sealed)).toEqual(Buffer.from(nodePrimitives.aes256CbcEncrypt(key, iv, data)));
      expect(Buffer.from(shim.aes256CbcDecrypt(key, iv, sealed))).toEqual(Buffer.from(data));
      const parts = [data, iv, key.subarray(0, 5)];
      expect(Buffer.from(shim.hmacSha512(key, parts))).toEqual(Buffer.from(nodePrimitives.hmacSha512(key, parts)));
    }
  });

  test('wrong lengths are LOCAL_BAD_ARGUMENT before any cipher is built', () => {
    const built: string[] = [];
    const counting = cryptPrimitives({
      ...fakes,
      BlockCipher: class extends FakeBlockCipher {
        constructor(cipher: 'AES', key: ArrayBuffer) {
          built.push('cipher');
          super(cipher, key);
        }
      },
    });
    const cases: Array<[Uint8Array, Uint8Array, Uint8Array]> = [
      [new Uint8Array(31), new Uint8Array(16), new Uint8Array(16)],
      [new Uint8Array(32), new Uint8Array(15), new Uint8Array(16)],
      [new Uint8Array(32), new Uint8Array(16), new Uint8Array(17)],
    ];
    for (const [key, iv, data] of cases) {
      expect(() => counting.aes256CbcEncrypt(key, iv, data)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
      expect(() => counting.aes256CbcDecrypt(key, iv, data)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
    }
    expect(built).toEqual([]);
  });

  test("the SDK HMAC's key pads are wiped after use", () => {
    const instances: FakeHmac[] = [];
    const spying = cryptPrimitives({
      ...fakes,
      HMAC: class extends FakeHmac {
        constructor(digest: FakeDigest, key: Uint8Array) {
          super(digest, key);
          instances.push(this);
        }
      },
    });
    spying.hmacSha512(bytes(32), [bytes(10)]);
    expect(instances).toHaveLength(1);
    expect(instances[0]!.ipad.every((b) => b === 0)).toBe(true);
    expect(instances[0]!.opad.every((b) => b === 0)).toBe(true);
  });

  test('a forged tag is AUTH_FAILED through the composition over the shim', () => {
    const aead = composeAead(shim, 'shim');
    const key = bytes(64);
    const iv = bytes(16);
    const sealed = aead.seal(key, iv, bytes(5), bytes(40));
    const ciphertext = sealed.subarray(0, sealed.length - 32);
    const tag = sealed.slice(sealed.length - 32);
    tag[0]! ^= 1;
    try {
      aead.open(key, iv, bytes(5), ciphertext, tag);
      throw new Error('opened a forged tag');
    } catch (error) {
      expect(isLockstepError(error, 'AUTH_FAILED')).toBe(true);
    }
  });
});

describe('AEAD suite on the composition over the crypt shim', () => {
  aeadConformanceSuite(() => composeAead(shim, 'A256CBC-HS512 (crypt shim over fakes)'));
});
