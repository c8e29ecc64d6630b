/**
 * Interoperability with an implementation no one here wrote: the `jose`
 * package's JWE (alg "dir", enc "A256CBC-HS512", RFC 7516 §5.1: the AAD is
 * the ASCII of the BASE64URL-encoded protected header).
 */
import { CompactEncrypt, compactDecrypt } from 'jose';
import { randomBytes } from 'node:crypto';
import { nodeAead } from '../hosts/node/crypto';
import { nobleAead } from '../hosts/noble/primitives';

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const unb64url = (text: string) => Uint8Array.from(Buffer.from(text, 'base64url'));

describe.each([nodeAead, nobleAead])('jose interop: $name', (aead) => {
  test.each([0, 1, 15, 16, 17, 64, 1000])('a JWE from jose opens with our AEAD (%i bytes)', async (length) => {
    const key = randomBytes(64);
    const plaintext = randomBytes(length);
    const jwe = await new CompactEncrypt(plaintext).setProtectedHeader({ alg: 'dir', enc: 'A256CBC-HS512' }).encrypt(key);
    const [protectedHeader, encryptedKey, iv, ciphertext, tag] = jwe.split('.') as [string, string, string, string, string];
    expect(encryptedKey).toBe('');
    const opened = aead.open(key, unb64url(iv), new TextEncoder().encode(protectedHeader), unb64url(ciphertext), unb64url(tag));
    expect(Buffer.from(opened)).toEqual(plaintext);
  });

  test.each([0, 1, 16, 300])('a JWE sealed by our AEAD opens with jose (%i bytes)', async (length) => {
    const key = randomBytes(64);
    const plaintext = randomBytes(length);
    const iv = randomBytes(16);
    const protectedHeader = b64url(new TextEncoder().encode(JSON.stringify({ alg: 'dir', enc: 'A256CBC-HS512' })));
    const sealed = aead.seal(key, iv, new TextEncoder().encode(protectedHeader), plaintext);
    const jwe = [protectedHeader, '', b64url(iv), b64url(sealed.subarray(0, sealed.length - 32)), b64url(sealed.subarray(sealed.length - 32))].join('.');
    const { plaintext: opened } = await compactDecrypt(jwe, key);
    expect(Buffer.from(opened)).toEqual(plaintext);
  });

  test('a JWE whose tag we corrupt is refused by jose and by us', async () => {
    const key = randomBytes(64);
    const jwe = await new CompactEncrypt(randomBytes(40)).setProtectedHeader({ alg: 'dir', enc: 'A256CBC-HS512' }).encrypt(key);
    const parts = jwe.split('.') as [string, string, string, string, string];
    const tag = unb64url(parts[4]);
    tag[3]! ^= 0x10;
    parts[4] = b64url(tag);
    await expect(compactDecrypt(parts.join('.'), key)).rejects.toThrow();
    expect(() => aead.open(key, unb64url(parts[2]), new TextEncoder().encode(parts[0]), unb64url(parts[3]), tag)).toThrow(
      expect.objectContaining({ code: 'AUTH_FAILED' }),
    );
  });
});
