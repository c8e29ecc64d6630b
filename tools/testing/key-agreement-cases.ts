/**
 * The key agreement conformance cases (RFC 7748 §5.2 and §6.1, Wycheproof
 * x25519_test.json and hkdf_sha512_test.json) as a function of a backend, so
 * the same checks run under jest (node:crypto, @noble) and inside XS (the
 * native module, @noble on XS). Portable: no Node, no jest; the vector files
 * are passed in already parsed (jest reads them with fs, XS bundles them).
 *
 * Every Wycheproof x25519 case is "valid" or "acceptable". A backend declares
 * what it does with a low-order peer key (flag ZeroSharedSecret, expected
 * shared secret all zero): `lowOrder: 'throws'` (it must throw
 * LockstepError('BAD_KEY_SHARE')) or `'zeros'` (it must return 32 zero bytes).
 * Every other case, whatever its flags (Twist, NonCanonicalPublic,
 * EdgeCase*, SmallPublicKey, ...), must give exactly `shared`. So each case's
 * expected outcome is asserted per backend; nothing is skipped.
 */
import { bytesEqual, fromHex, toHex } from '../../modules/bytes';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';
import { isLockstepError } from '../../modules/errors';

export interface X25519Case {
  tcId: number;
  comment: string;
  flags: string[];
  public: string;
  private: string;
  shared: string;
  result: 'valid' | 'acceptable' | 'invalid';
}
export interface HkdfCase {
  tcId: number;
  comment: string;
  flags: string[];
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
  result: 'valid' | 'acceptable' | 'invalid';
}
export interface WycheproofCases<T> {
  numberOfTests: number;
  testGroups: { tests: T[] }[];
}
export interface Rfc7748Vectors {
  single: { name: string; scalar: string; u: string; output: string }[];
  iterated: { start: string; after: Record<string, string> };
  diffieHellman: {
    alicePrivate: string;
    alicePublic: string;
    bobPrivate: string;
    bobPublic: string;
    shared: string;
  };
}
export interface KeyAgreementVectors {
  x25519: WycheproofCases<X25519Case>;
  hkdf: WycheproofCases<HkdfCase>;
  rfc7748: Rfc7748Vectors;
}

export interface BackendBehaviour {
  /** What the backend does with a low-order peer key (an all-zero result). */
  lowOrder: 'throws' | 'zeros';
  /** Iterations of the RFC 7748 §5.2 iterated vector to run: 1 or 1000 (1,000,000 only in the long run). */
  iterations: readonly number[];
}

export interface CaseOutcome {
  name: string;
  /** Undefined when the case passed. */
  failure?: string;
}

export interface CaseGroup {
  name: string;
  cases: { name: string; run: () => void }[];
}

function fail(message: string): never {
  throw new Error(message);
}

function expectBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (!(actual instanceof Uint8Array)) fail(`${what}: not a Uint8Array`);
  if (!bytesEqual(actual, expected)) fail(`${what}: expected ${toHex(expected)}, got ${toHex(actual)}`);
}

function expectThrows(call: () => unknown, code: 'BAD_KEY_SHARE' | 'LOCAL_BAD_ARGUMENT', what: string): void {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    if (isLockstepError(error, code)) return;
    fail(`${what}: expected LockstepError(${code}), got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  }
  fail(`${what}: expected LockstepError(${code}), got ${result instanceof Uint8Array ? toHex(result) : String(result)}`);
}

const ZERO_32 = new Uint8Array(32);

export function x25519CaseGroup(backend: KeyAgreementPrimitives, behaviour: BackendBehaviour, file: WycheproofCases<X25519Case>): CaseGroup {
  const cases = file.testGroups.flatMap((group) => group.tests);
  return {
    name: `${backend.name}: Wycheproof x25519_test.json`,
    cases: [
      {
        name: 'has all 518 cases, none invalid',
        run: () => {
          if (file.numberOfTests !== 518 || cases.length !== 518) fail(`expected 518 cases, found ${cases.length}`);
          if (cases.some((c) => c.result === 'invalid')) fail('an invalid case appeared: decide its expected outcome');
        },
      },
      ...cases.map((c) => ({
        name: `#${c.tcId} (${c.result}; ${c.flags.join(', ')}) ${c.comment}`,
        run: () => {
          const privateKey = fromHex(c.private);
          const publicKey = fromHex(c.public);
          const shared = fromHex(c.shared);
          const zero = c.flags.includes('ZeroSharedSecret');
          if (zero !== bytesEqual(shared, ZERO_32)) fail('flag ZeroSharedSecret does not match the expected shared secret');
          if (zero && behaviour.lowOrder === 'throws') {
            expectThrows(() => backend.x25519(privateKey, publicKey), 'BAD_KEY_SHARE', 'low-order peer key');
          } else {
            expectBytes(backend.x25519(privateKey, publicKey), shared, 'shared secret');
          }
        },
      })),
    ],
  };
}

export function hkdfCaseGroup(backend: KeyAgreementPrimitives, file: WycheproofCases<HkdfCase>): CaseGroup {
  const cases = file.testGroups.flatMap((group) => group.tests);
  return {
    name: `${backend.name}: Wycheproof hkdf_sha512_test.json`,
    cases: [
      {
        name: 'has all 83 cases',
        run: () => {
          if (file.numberOfTests !== 83 || cases.length !== 83) fail(`expected 83 cases, found ${cases.length}`);
        },
      },
      ...cases.map((c) => ({
        name: `#${c.tcId} (${c.result}; ${c.flags.join(', ')}) size ${c.size}`,
        run: () => {
          const call = (): Uint8Array => backend.hkdfSha512(fromHex(c.salt), fromHex(c.ikm), fromHex(c.info), c.size);
          if (c.result === 'invalid') expectThrows(call, 'LOCAL_BAD_ARGUMENT', 'oversized output');
          else expectBytes(call(), fromHex(c.okm), 'okm');
        },
      })),
    ],
  };
}

/** Runs the RFC 7748 §5.2 iterated vector for `rounds` rounds and returns k. */
export function iterateX25519(backend: KeyAgreementPrimitives, start: string, rounds: number): Uint8Array {
  let k = fromHex(start);
  let u = fromHex(start);
  for (let i = 0; i < rounds; i++) {
    const next = backend.x25519(k, u);
    u = k;
    k = next;
  }
  return k;
}

export function rfc7748CaseGroup(backend: KeyAgreementPrimitives, behaviour: BackendBehaviour, rfc: Rfc7748Vectors): CaseGroup {
  const dh = rfc.diffieHellman;
  return {
    name: `${backend.name}: RFC 7748`,
    cases: [
      ...rfc.single.map((v) => ({
        name: v.name,
        run: () => expectBytes(backend.x25519(fromHex(v.scalar), fromHex(v.u)), fromHex(v.output), 'output'),
      })),
      ...behaviour.iterations.map((rounds) => ({
        name: `§5.2 after ${rounds} iteration${rounds === 1 ? '' : 's'}`,
        run: () => {
          const expected = rfc.iterated.after[String(rounds)];
          if (expected === undefined) fail(`no vector for ${rounds} iterations`);
          expectBytes(iterateX25519(backend, rfc.iterated.start, rounds), fromHex(expected), 'k');
        },
      })),
      {
        name: '§6.1 Alice and Bob: both public keys and the shared secret',
        run: () => {
          expectBytes(backend.x25519PublicKey(fromHex(dh.alicePrivate)), fromHex(dh.alicePublic), "Alice's public key");
          expectBytes(backend.x25519PublicKey(fromHex(dh.bobPrivate)), fromHex(dh.bobPublic), "Bob's public key");
          expectBytes(backend.x25519(fromHex(dh.alicePrivate), fromHex(dh.bobPublic)), fromHex(dh.shared), "Alice's K");
          expectBytes(backend.x25519(fromHex(dh.bobPrivate), fromHex(dh.alicePublic)), fromHex(dh.shared), "Bob's K");
        },
      },
      {
        name: 'x25519PublicKey(k) equals x25519(k, 9) for the Wycheproof-style edge scalars',
        run: () => {
          const base = fromHex(rfc.iterated.start);
          for (const fillByte of [0x00, 0x01, 0x07, 0x80, 0xff]) {
            const k = new Uint8Array(32).fill(fillByte);
            expectBytes(backend.x25519PublicKey(k), backend.x25519(k, base), `k = ${fillByte.toString(16)}…`);
          }
        },
      },
      {
        name: 'wrong lengths are LOCAL_BAD_ARGUMENT, HKDF length 0 and 16,321 too',
        run: () => {
          const k = fromHex(dh.alicePrivate);
          expectThrows(() => backend.x25519PublicKey(k.subarray(1)), 'LOCAL_BAD_ARGUMENT', 'short private key');
          expectThrows(() => backend.x25519(k, fromHex(dh.bobPublic).subarray(0, 31)), 'LOCAL_BAD_ARGUMENT', 'short public key');
          expectThrows(() => backend.x25519(new Uint8Array(33), fromHex(dh.bobPublic)), 'LOCAL_BAD_ARGUMENT', 'long private key');
          expectThrows(() => backend.hkdfSha512(k, k, k, 0), 'LOCAL_BAD_ARGUMENT', 'length 0');
          expectThrows(() => backend.hkdfSha512(k, k, k, 255 * 64 + 1), 'LOCAL_BAD_ARGUMENT', 'length 16321');
          expectBytes(backend.hkdfSha512(k, k, k, 255 * 64).subarray(0, 0), new Uint8Array(0), 'length 16320 works');
        },
      },
      {
        name: 'inputs are not modified (the private key is clamped on a copy)',
        run: () => {
          const k = new Uint8Array(32).fill(0xff);
          const u = fromHex(rfc.single[1]?.u ?? fail('no second vector'));
          const kBefore = k.slice();
          const uBefore = u.slice();
          backend.x25519(k, u);
          backend.x25519PublicKey(k);
          expectBytes(k, kBefore, 'private key after use');
          expectBytes(u, uBefore, 'public key after use');
        },
      },
    ],
  };
}

/** Every group for one backend. */
export function keyAgreementCaseGroups(backend: KeyAgreementPrimitives, behaviour: BackendBehaviour, vectors: KeyAgreementVectors): CaseGroup[] {
  return [
    rfc7748CaseGroup(backend, behaviour, vectors.rfc7748),
    x25519CaseGroup(backend, behaviour, vectors.x25519),
    hkdfCaseGroup(backend, vectors.hkdf),
  ];
}

/** Runs a group's cases and returns one outcome per case. */
export function runCaseGroup(group: CaseGroup): CaseOutcome[] {
  return group.cases.map((c) => {
    try {
      c.run();
      return { name: c.name };
    } catch (error) {
      return { name: c.name, failure: error instanceof Error ? error.message : String(error) };
    }
  });
}

export function failures(outcomes: readonly CaseOutcome[]): string[] {
  return outcomes.filter((o) => o.failure !== undefined).map((o) => `${o.name}: ${o.failure}`);
}
