/**
 * X25519 and HKDF-SHA-512 on XS: the native module (whichever backend the
 * host was built with: Debian's mbedTLS, or backend_esp32.c's PSA calls over
 * the stand-in) and @noble on XS (the simulator's backend), against RFC 7748
 * §5.2/§6.1 and all Wycheproof x25519 (518) and hkdf_sha512 (83) cases, with
 * the expectations of tools/testing/key-agreement-cases.ts; plus the raw
 * natives' edges (misuse, low-order refusal, detached buffers, GC stress).
 */
import hkdfFile from 'xs-test-vectors:wycheproof/hkdf_sha512_test.json';
import x25519File from 'xs-test-vectors:wycheproof/x25519_test.json';
import rfc7748File from 'xs-test-vectors:rfc7748/x25519.json';
import { nativeKeyAgreement } from '../../../hosts/moddable/native/native-aead';
import { nobleKeyAgreement } from '../../../hosts/noble/primitives';
import * as natives from '../../../hosts/xs-test/lockstep_aead_shim';
import { fromHex } from '../../../modules/bytes';
import type { KeyAgreementPrimitives } from '../../../modules/crypto/primitives';
import { isLockstepError } from '../../../modules/errors';
import {
  keyAgreementCaseGroups,
  type BackendBehaviour,
  type HkdfCase,
  type KeyAgreementVectors,
  type Rfc7748Vectors,
  type WycheproofCases,
  type X25519Case,
} from '../../../tools/testing/key-agreement-cases';
import { assert, assertBytes, assertEqual, assertThrows, test } from '../harness';

export const KEY_AGREEMENT_VECTORS: KeyAgreementVectors = {
  x25519: x25519File as WycheproofCases<X25519Case>,
  hkdf: hkdfFile as WycheproofCases<HkdfCase>,
  rfc7748: rfc7748File as Rfc7748Vectors,
};

/** Registers every case of every group as one XS test each. */
export function registerKeyAgreementCases(group: string, backend: KeyAgreementPrimitives, behaviour: BackendBehaviour): void {
  for (const caseGroup of keyAgreementCaseGroups(backend, behaviour, KEY_AGREEMENT_VECTORS)) {
    for (const c of caseGroup.cases) test(group, `${caseGroup.name}: ${c.name}`, c.run);
  }
}

/**
 * The native module refuses a low-order key on both backends (the library's
 * own refusal and an all-zero result are one outcome in lockstep_aead.c).
 * @noble on XS costs ~0.1 s per X25519 here, so it runs the 1-round iterated
 * vector only; the native module runs the 1,000-round one too.
 */
registerKeyAgreementCases('dh', nativeKeyAgreement, { lowOrder: 'throws', iterations: [1, 1000] });
registerKeyAgreementCases('dh-noble', nobleKeyAgreement, { lowOrder: 'throws', iterations: [1] });

const G = 'dh';
const isTypeError = (error: unknown): boolean => error instanceof TypeError;
const isRangeError = (error: unknown): boolean => error instanceof RangeError;
const isMisuse = (error: unknown): boolean => isLockstepError(error, 'LOCAL_BAD_ARGUMENT');
const dh = KEY_AGREEMENT_VECTORS.rfc7748.diffieHellman;

function detached(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  (bytes.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
  return bytes;
}

test(G, 'raw x25519/x25519Public/hkdf: argument count, non-buffers, wrong lengths, detached buffers throw', () => {
  const x25519 = natives.x25519 as unknown as (...args: unknown[]) => unknown;
  const x25519Public = natives.x25519Public as unknown as (...args: unknown[]) => unknown;
  const hkdf = natives.hkdf as unknown as (...args: unknown[]) => unknown;
  const k = fromHex(dh.alicePrivate);
  const u = fromHex(dh.bobPublic);
  assertThrows(() => x25519(k), isTypeError, 'one argument');
  assertThrows(() => x25519Public(), isTypeError, 'no argument');
  assertThrows(() => hkdf(k, k, k), isTypeError, 'three arguments');
  for (const value of [undefined, null, 1, 'x', {}, new Uint16Array(16)]) {
    assertThrows(() => x25519(value, u), (e) => isTypeError(e) || isRangeError(e), `private ${String(value)}`);
    assertThrows(() => x25519Public(value), (e) => isTypeError(e) || isRangeError(e), `public of ${String(value)}`);
    assertThrows(() => hkdf(k, value, k, 64), (e) => isTypeError(e) || isRangeError(e), `ikm ${String(value)}`);
  }
  for (const length of [0, 31, 33, 64]) {
    assertThrows(() => natives.x25519(new Uint8Array(length), u), isRangeError, `private ${length}`);
    assertThrows(() => natives.x25519(k, new Uint8Array(length)), isRangeError, `public ${length}`);
    assertThrows(() => natives.x25519Public(new Uint8Array(length)), isRangeError, `x25519Public ${length}`);
  }
  for (const length of [0, -1, 16321, 2 ** 31 - 1]) {
    assertThrows(() => natives.hkdf(k, k, k, length), isRangeError, `hkdf length ${length}`);
  }
  assertThrows(() => natives.x25519(detached(32), u), isTypeError, 'detached private');
  assertThrows(() => natives.x25519(k, detached(32)), isTypeError, 'detached public');
  assertThrows(() => natives.hkdf(detached(0), k, k, 64), isTypeError, 'detached salt');
  assertThrows(() => nativeKeyAgreement.x25519(detached(32), u), isMisuse, 'wrapper: detached is LOCAL_BAD_ARGUMENT');
});

test(G, 'raw x25519: every low-order public key gives undefined, never bytes (wrapper: BAD_KEY_SHARE)', () => {
  const lowOrder = KEY_AGREEMENT_VECTORS.x25519.testGroups[0]!.tests.filter((t) => t.flags.includes('ZeroSharedSecret'));
  assert(lowOrder.length === 31, `31 low-order cases, found ${lowOrder.length}`);
  for (const t of lowOrder) {
    assertEqual(natives.x25519(fromHex(t.private), fromHex(t.public)), undefined, `#${t.tcId}`);
  }
});

test(G, 'raw x25519: unaligned views, and inputs left unchanged', () => {
  const backing = new Uint8Array(1 + 32 + 32);
  backing.set(fromHex(dh.alicePrivate), 1);
  backing.set(fromHex(dh.bobPublic), 33);
  const before = backing.slice();
  assertBytes(nativeKeyAgreement.x25519(backing.subarray(1, 33), backing.subarray(33, 65)), fromHex(dh.shared), 'unaligned');
  assertBytes(nativeKeyAgreement.x25519PublicKey(backing.subarray(1, 33)), fromHex(dh.alicePublic), 'unaligned public');
  assertBytes(backing, before, 'inputs unchanged');
  const info = backing.subarray(3, 40); // overlaps both keys: inputs are read-only
  assertBytes(nativeKeyAgreement.hkdfSha512(backing.subarray(1, 33), backing.subarray(33), info, 64), nobleKeyAgreement.hkdfSha512(backing.slice(1, 33), backing.slice(33), info.slice(), 64), 'unaligned hkdf');
});

test(G, 'raw x25519/hkdf: results stay correct while the result allocation moves the heap (GC stress)', () => {
  const k = fromHex(dh.alicePrivate);
  const u = fromHex(dh.bobPublic);
  const z = fromHex(dh.shared);
  const reference = nobleKeyAgreement.hkdfSha512(k, z, u, 100);
  let garbage: Uint8Array[] = [];
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 8; i++) garbage.push(new Uint8Array(97 + ((round * 31 + i * 17) % 1500)));
    if (garbage.length > 64) garbage = garbage.slice(32);
    assertBytes(nativeKeyAgreement.x25519(k, u), z, `x25519 round ${round}`);
    garbage.push(new Uint8Array(300 + (round % 900)));
    assertBytes(nativeKeyAgreement.hkdfSha512(k, z, u, 100), reference, `hkdf round ${round}`);
    if (round % 50 === 0) xsTest.gc();
  }
});

test('dh-noble', 'native module and @noble on XS agree on 16 derived key pairs and HKDF outputs', () => {
  let seed = fromHex(dh.alicePrivate);
  for (let i = 0; i < 16; i++) {
    const a = nativeKeyAgreement.hkdfSha512(seed, seed, new Uint8Array([i]), 32);
    const b = nativeKeyAgreement.hkdfSha512(seed, a, new Uint8Array([i, 1]), 32);
    const aPublic = nativeKeyAgreement.x25519PublicKey(a);
    assertBytes(nobleKeyAgreement.x25519PublicKey(a), aPublic, `public ${i}`);
    const bPublic = nobleKeyAgreement.x25519PublicKey(b);
    const z = nativeKeyAgreement.x25519(a, bPublic);
    assertBytes(nobleKeyAgreement.x25519(b, aPublic), z, `shared ${i}`);
    assertBytes(nobleKeyAgreement.hkdfSha512(a, z, b, 64 + i), nativeKeyAgreement.hkdfSha512(a, z, b, 64 + i), `hkdf ${i}`);
    seed = z;
  }
});
