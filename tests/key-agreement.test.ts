/**
 * X25519 and HKDF-SHA-512 backends of KeyAgreementPrimitives under Node:
 * node:crypto (both key-import paths) and @noble, against RFC 7748 §5.2
 * (incl. the 1 and 1,000 iteration vectors) and §6.1, all 518 Wycheproof
 * x25519 cases and all 83 Wycheproof hkdf_sha512 cases
 * (tools/testing/key-agreement-cases.ts says what each case must give). The
 * native module runs the same cases on the XS test host (tests/xs).
 * Deliberately broken backends (no cofactor clamping, the wrong half of the
 * HKDF output, a silent all-zero result) must fail them.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { montgomery } from '@noble/curves/abstract/montgomery.js';
import { mod } from '@noble/curves/abstract/modular.js';
import { nodeKeyAgreement, nodeKeyAgreementDer, nodeKeyAgreementDrawn } from '../hosts/node/key-agreement';
import { nobleKeyAgreement } from '../hosts/noble/primitives';
import type { KeyAgreementPrimitives } from '../modules/crypto/primitives';
import { isLockstepError } from '../modules/errors';
import {
  failures,
  keyAgreementCaseGroups,
  runCaseGroup,
  type BackendBehaviour,
  type KeyAgreementVectors,
  x25519CaseGroup,
} from '../tools/testing/key-agreement-cases';

function loadJson<T>(...path: string[]): T {
  return JSON.parse(readFileSync(join(__dirname, 'vectors', ...path), 'utf8')) as T;
}

const vectors: KeyAgreementVectors = {
  x25519: loadJson('wycheproof', 'x25519_test.json'),
  hkdf: loadJson('wycheproof', 'hkdf_sha512_test.json'),
  rfc7748: loadJson('rfc7748', 'x25519.json'),
};

/** Both node:crypto (OpenSSL) and @noble throw for a low-order peer key. */
const BACKENDS: [KeyAgreementPrimitives, BackendBehaviour][] = [
  [nodeKeyAgreement, { lowOrder: 'throws', iterations: [1, 1000] }],
  [nodeKeyAgreementDrawn, { lowOrder: 'throws', iterations: [1] }],
  [nodeKeyAgreementDer, { lowOrder: 'throws', iterations: [1] }],
  [nobleKeyAgreement, { lowOrder: 'throws', iterations: [1, 1000] }],
];

describe.each(BACKENDS)('%s', (backend, behaviour) => {
  for (const group of keyAgreementCaseGroups(backend, behaviour, vectors)) {
    test(`${group.name.slice(backend.name.length + 2)}: every case (${group.cases.length})`, () => {
      expect(failures(runCaseGroup(group))).toEqual([]);
    });
  }
});

test("node:crypto's generated pairs are X25519 pairs (@noble recomputes each public key) and agree", () => {
  const generate = nodeKeyAgreement.x25519GenerateKeyPair!;
  for (let i = 0; i < 32; i++) {
    const a = generate();
    const b = generate();
    expect(nobleKeyAgreement.x25519PublicKey(a.privateKey)).toEqual(a.publicKey);
    expect(nodeKeyAgreement.x25519(a.privateKey, b.publicKey)).toEqual(nobleKeyAgreement.x25519(b.privateKey, a.publicKey));
  }
});

test('node:crypto and @noble agree on 64 random key pairs and derivations', () => {
  for (let i = 0; i < 64; i++) {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const aPublic = nodeKeyAgreement.x25519PublicKey(a);
    const bPublic = nobleKeyAgreement.x25519PublicKey(b);
    expect(nobleKeyAgreement.x25519PublicKey(a)).toEqual(aPublic);
    expect(nodeKeyAgreementDer.x25519PublicKey(b)).toEqual(bPublic);
    const z = nodeKeyAgreement.x25519(a, bPublic);
    expect(nobleKeyAgreement.x25519(b, aPublic)).toEqual(z);
    const salt = randomBytes(64);
    const info = randomBytes(i * 3);
    expect(nobleKeyAgreement.hkdfSha512(salt, z, info, 64)).toEqual(nodeKeyAgreement.hkdfSha512(salt, z, info, 64));
  }
});

describe('broken backends fail the cases', () => {
  function failuresOf(backend: KeyAgreementPrimitives, behaviour: BackendBehaviour): string[] {
    return keyAgreementCaseGroups(backend, behaviour, vectors).flatMap((group) => failures(runCaseGroup(group)));
  }

  test('X25519 that skips the cofactor clamping (keeps the low 3 bits of the scalar)', () => {
    const P = 2n ** 255n - 19n;
    const unclamped = montgomery({
      P,
      type: 'x25519',
      powPminus2: (x: bigint) => powMod(x, P - 2n, P),
      adjustScalarBytes: (bytes: Uint8Array) => {
        bytes[31] = ((bytes[31] as number) & 127) | 64; // bit 254 set, bit 255 clear, as RFC 7748 says
        return bytes; // ... but bits 0-2 kept: the scalar is no longer a multiple of the cofactor
      },
    });
    const broken: KeyAgreementPrimitives = {
      ...nobleKeyAgreement,
      name: 'broken: no cofactor clamping',
      x25519PublicKey: (k) => unclamped.getPublicKey(k),
      x25519: (k, u) => unclamped.getSharedSecret(k, u),
    };
    const found = failuresOf(broken, { lowOrder: 'throws', iterations: [1] });
    // Wycheproof stores its private keys clamped but for one case: that one must fail, as must RFC 7748's (unclamped as printed).
    const unclampedCases = vectors.x25519.testGroups[0]!.tests.filter(
      (t) => (parseInt(t.private.slice(0, 2), 16) & 7) !== 0 && !t.flags.includes('ZeroSharedSecret'),
    );
    expect(unclampedCases.length).toBe(1);
    for (const t of unclampedCases) expect(found.some((f) => f.startsWith(`#${t.tcId} `))).toBe(true);
    expect(found.some((f) => f.startsWith('RFC 7748 section 5.2, first vector'))).toBe(true);
    expect(found.some((f) => f.startsWith('§6.1 Alice and Bob'))).toBe(true);
  });

  test('HKDF that returns the second half of a double-length output', () => {
    const broken: KeyAgreementPrimitives = {
      ...nodeKeyAgreement,
      name: 'broken: wrong half of HKDF',
      hkdfSha512: (salt, ikm, info, length) =>
        new Uint8Array(hkdfSync('sha512', ikm, salt, info, Math.min(2 * length, 255 * 64))).slice(-length),
    };
    const found = failuresOf(broken, { lowOrder: 'throws', iterations: [1] }).filter((f) => f.includes('hkdf') || f.includes('size'));
    expect(found.length).toBe(80); // every valid HKDF case (the 3 oversized ones are still refused)
  });

  test('X25519 that returns the all-zero result of a low-order key where it declares it throws', () => {
    const broken: KeyAgreementPrimitives = {
      ...nodeKeyAgreementDrawn,
      name: 'broken: silent all-zero',
      x25519: (k, u) => {
        try {
          return nodeKeyAgreementDrawn.x25519(k, u);
        } catch (error) {
          if (isLockstepError(error, 'BAD_KEY_SHARE')) return new Uint8Array(32);
          throw error;
        }
      },
    };
    const x25519Failures = (lowOrder: 'throws' | 'zeros'): string[] =>
      failures(runCaseGroup(x25519CaseGroup(broken, { lowOrder, iterations: [] }, vectors.x25519)));
    const found = x25519Failures('throws');
    expect(found).toHaveLength(vectors.x25519.testGroups[0]!.tests.filter((t) => t.flags.includes('ZeroSharedSecret')).length);
    // ... and the same backend passes once it declares 'zeros': the declaration is what is asserted.
    expect(x25519Failures('zeros')).toEqual([]);
  });
});

function powMod(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = mod(base, modulus);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}
