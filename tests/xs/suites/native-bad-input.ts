/**
 * The native module's edges, on the raw natives (lockstep_aead.c contract:
 * misuse throws TypeError/RangeError, authentication failure returns
 * undefined) and through the wrapper (native-aead.ts: LockstepError codes).
 * Every case must end in a clean JS error or refusal; the sanitizer build of
 * the host turns any out-of-bounds access into a crash.
 */
import { nativeAead, nativePrimitives, nativeRandom } from '../../../hosts/moddable/native/native-aead';
import * as natives from '../../../hosts/xs-test/lockstep_aead_shim';
import { isLockstepError } from '../../../modules/errors';
import { assert, assertBytes, assertEqual, assertThrows, test } from '../harness';
import { RFC7518_B3 } from './aead-vectors';

const MAX_INPUT_BYTES = 1024 * 1024;
const v = RFC7518_B3;

const isTypeError = (error: unknown): boolean => error instanceof TypeError;
const isRangeError = (error: unknown): boolean => error instanceof RangeError;
const isMisuse = (error: unknown): boolean => isLockstepError(error, 'LOCAL_BAD_ARGUMENT');
const isAuthFailed = (error: unknown): boolean => isLockstepError(error, 'AUTH_FAILED');

function detached(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  (bytes.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
  return bytes;
}

function bigEndian64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(4, value >>> 0);
  new DataView(out.buffer).setUint32(0, Math.floor(value / 0x100000000));
  return out;
}

/** Encrypts already-padded blocks and tags them correctly, so only the padding can be wrong. */
function sealPaddedBlocks(padded: Uint8Array): { ciphertext: Uint8Array; tag: Uint8Array } {
  const ciphertext = new Uint8Array(natives.cbc(true, v.key.subarray(32), v.iv, padded));
  const mac = new Uint8Array(natives.hmac(v.key.subarray(0, 32), v.aad, v.iv, ciphertext, bigEndian64(v.aad.length * 8)));
  return { ciphertext, tag: mac.slice(0, 32) };
}

const G = 'native';

test(G, 'raw: argument count, non-buffers and wrong lengths throw TypeError/RangeError', () => {
  const seal = natives.seal as unknown as (...args: unknown[]) => unknown;
  const open = natives.open as unknown as (...args: unknown[]) => unknown;
  assertThrows(() => seal(v.key, v.iv, v.aad), isTypeError, 'three arguments');
  assertThrows(() => open(v.key, v.iv, v.aad, v.ciphertext), isTypeError, 'four arguments');
  for (const value of [undefined, null, 1, 'x', {}, [1, 2, 3], new Uint16Array(32), new DataView(new ArrayBuffer(0)).getInt8]) {
    assertThrows(() => seal(value, v.iv, v.aad, v.plaintext), (e) => isTypeError(e) || isRangeError(e), `key ${String(value)}`);
    assertThrows(() => seal(v.key, v.iv, value, v.plaintext), isTypeError, `aad ${String(value)}`);
  }
  for (const length of [0, 32, 63, 65]) {
    assertThrows(() => natives.seal(new Uint8Array(length), v.iv, v.aad, v.plaintext), isRangeError, `key ${length}`);
    assertThrows(() => natives.open(new Uint8Array(length), v.iv, v.aad, v.ciphertext, v.tag), isRangeError, `open key ${length}`);
  }
  for (const length of [0, 12, 15, 17]) {
    assertThrows(() => natives.seal(v.key, new Uint8Array(length), v.aad, v.plaintext), isRangeError, `iv ${length}`);
  }
});

test(G, 'raw: ciphertext not a multiple of 16, empty, or tag not 32 bytes is an auth failure (undefined)', () => {
  for (const length of [1, 15, 17, 31, 33, 143]) {
    assertEqual(natives.open(v.key, v.iv, v.aad, v.ciphertext.subarray(0, length), v.tag), undefined, `ct ${length}`);
  }
  assertEqual(natives.open(v.key, v.iv, v.aad, new Uint8Array(0), v.tag), undefined, 'empty ct');
  for (const length of [0, 16, 31, 33, 64]) {
    const tag = new Uint8Array(length);
    tag.set(v.tag.subarray(0, Math.min(32, length)));
    assertEqual(natives.open(v.key, v.iv, v.aad, v.ciphertext, tag), undefined, `tag ${length}`);
  }
});

test(G, 'raw: a flipped bit anywhere in ciphertext, tag, AAD, IV or key is refused', () => {
  const inputs = { key: v.key, iv: v.iv, aad: v.aad, ciphertext: v.ciphertext, tag: v.tag };
  for (const field of Object.keys(inputs) as (keyof typeof inputs)[]) {
    const original = inputs[field];
    for (const index of [0, original.length >> 1, original.length - 1]) {
      const changed = original.slice();
      changed[index] = (changed[index] as number) ^ 0x01;
      const args = { ...inputs, [field]: changed };
      assertEqual(natives.open(args.key, args.iv, args.aad, args.ciphertext, args.tag), undefined, `${field}[${index}]`);
    }
  }
});

test(G, 'raw: every PKCS#7 pad length 1..16 opens; malformed padding under a valid tag is refused', () => {
  for (let pad = 1; pad <= 16; pad++) {
    const padded = new Uint8Array(32).fill(0x41);
    padded.fill(pad, 32 - pad);
    const { ciphertext, tag } = sealPaddedBlocks(padded);
    const opened = natives.open(v.key, v.iv, v.aad, ciphertext, tag);
    assert(opened !== undefined, `pad ${pad} refused`);
    assertBytes(new Uint8Array(opened), padded.subarray(0, 32 - pad), `pad ${pad}`);
  }
  const malformed: [string, (block: Uint8Array) => void][] = [
    ['pad byte 0', (b) => (b[15] = 0)],
    ['pad byte 17', (b) => (b[15] = 17)],
    ['pad byte 0xff', (b) => (b[15] = 0xff)],
    ['pad 2 with a 3 before', (b) => ((b[14] = 3), (b[15] = 2))],
    ['pad 16 with one byte 15', (b) => (b.fill(16), (b[0] = 15))],
    ['pad 5 with a zero inside', (b) => (b.fill(5, 11), (b[12] = 0))],
  ];
  for (const [name, corrupt] of malformed) {
    for (const blocks of [1, 3]) {
      const padded = new Uint8Array(16 * blocks).fill(0x41);
      corrupt(padded.subarray(padded.length - 16));
      const { ciphertext, tag } = sealPaddedBlocks(padded);
      assertEqual(natives.open(v.key, v.iv, v.aad, ciphertext, tag), undefined, `${name}, ${blocks} block(s)`);
      assertThrows(() => nativeAead.open(v.key, v.iv, v.aad, ciphertext, tag), isAuthFailed, `wrapper: ${name}`);
    }
  }
});

test(G, 'raw: detached buffers throw TypeError for every argument', () => {
  const args = [v.key, v.iv, v.aad, v.ciphertext, v.tag];
  for (let i = 0; i < args.length; i++) {
    const withDetached = args.slice();
    withDetached[i] = detached((args[i] as Uint8Array).length);
    const [key, iv, aad, ciphertext, tag] = withDetached as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    assertThrows(() => natives.open(key, iv, aad, ciphertext, tag), isTypeError, `open argument ${i}`);
    if (i < 3) assertThrows(() => natives.seal(key, iv, aad, v.plaintext), isTypeError, `seal argument ${i}`);
  }
  assertThrows(() => natives.seal(v.key, v.iv, v.aad, detached(10)), isTypeError, 'seal plaintext');
  assertThrows(() => natives.random(detached(8)), isTypeError, 'random');
  assertThrows(() => nativeAead.seal(v.key, v.iv, detached(4), v.plaintext), isMisuse, 'wrapper maps to LOCAL_BAD_ARGUMENT');
});

test(G, 'raw: shared and out-of-bounds views are refused', () => {
  if (typeof SharedArrayBuffer === 'function') {
    const shared = new Uint8Array(new SharedArrayBuffer(64));
    shared.set(v.key);
    assertThrows(() => natives.seal(shared, v.iv, v.aad, v.plaintext), isTypeError, 'shared key');
    assertThrows(() => natives.random(new Uint8Array(new SharedArrayBuffer(8))), isTypeError, 'shared random');
  }
  const resizable = new (ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer & {
    resize(length: number): void;
  })(64, { maxByteLength: 128 });
  const view = new Uint8Array(resizable, 0, 48);
  resizable.resize(16);
  assertThrows(() => natives.seal(v.key, v.iv, view, v.plaintext), isTypeError, 'out-of-bounds view');
  const tracking = new Uint8Array(resizable);
  assertEqual(tracking.length, 16, 'length-tracking view');
  assertEqual(natives.seal(v.key, v.iv, tracking, v.plaintext).byteLength, 144 + 32, 'length-tracking view accepted');
});

test(G, 'raw: seal inputs above 1 MiB throw RangeError, open refuses oversize input; exactly 1 MiB round-trips', () => {
  const huge = new Uint8Array(MAX_INPUT_BYTES + 32);
  const overMax = huge.subarray(0, MAX_INPUT_BYTES + 1);
  assertThrows(() => natives.seal(v.key, v.iv, v.aad, overMax), isRangeError, 'plaintext');
  assertThrows(() => natives.seal(v.key, v.iv, overMax, v.plaintext), isRangeError, 'aad');
  assertThrows(() => natives.random(overMax), isRangeError, 'random');
  assertThrows(() => nativeAead.seal(v.key, v.iv, v.aad, overMax), isMisuse, 'wrapper');
  assertEqual(natives.open(v.key, v.iv, v.aad, huge, v.tag), undefined, 'ciphertext 1 MiB + 32');
  assertEqual(natives.open(v.key, v.iv, overMax, v.ciphertext, v.tag), undefined, 'aad 1 MiB + 1');
  assertThrows(() => nativeAead.open(v.key, v.iv, v.aad, huge, v.tag), isAuthFailed, 'wrapper open');
  const max = huge.subarray(0, MAX_INPUT_BYTES);
  max[7] = 7;
  const sealed = nativeAead.seal(v.key, v.iv, v.aad, max);
  assertEqual(sealed.length, MAX_INPUT_BYTES + 16 + 32, 'sealed length');
  assertBytes(nativeAead.open(v.key, v.iv, v.aad, sealed.subarray(0, MAX_INPUT_BYTES + 16), sealed.subarray(MAX_INPUT_BYTES + 16)), max, '1 MiB');
});

test(G, 'raw: unaligned and overlapping views give the same results as aligned copies', () => {
  const backing = new Uint8Array(1 + 64 + 16 + 300);
  backing.set(v.key, 1);
  backing.set(v.iv, 65);
  backing.set(v.plaintext, 81);
  const key = backing.subarray(1, 65);
  const iv = backing.subarray(65, 81);
  const plaintext = backing.subarray(81, 81 + v.plaintext.length);
  const aad = backing.subarray(3, 3 + v.aad.length); // overlaps the key: inputs are read-only
  const expected = nativeAead.seal(v.key.slice(), v.iv.slice(), aad.slice(), v.plaintext.slice());
  const sealed = nativeAead.seal(key, iv, aad, plaintext);
  assertBytes(sealed, expected, 'unaligned seal');
  const odd = new Uint8Array(sealed.length + 3);
  odd.set(sealed, 3);
  const opened = nativeAead.open(key, iv, aad, odd.subarray(3, 3 + sealed.length - 32), odd.subarray(3 + sealed.length - 32));
  assertBytes(opened, v.plaintext, 'unaligned open');
  assert(opened.buffer !== odd.buffer && sealed.buffer !== backing.buffer, 'results are fresh buffers');
});

test(G, 'raw: results stay correct while the allocation of the result moves the heap (GC stress)', () => {
  const key = v.key.slice();
  const iv = v.iv.slice();
  let garbage: Uint8Array[] = [];
  for (let round = 0; round < 400; round++) {
    for (let i = 0; i < 8; i++) garbage.push(new Uint8Array(97 + ((round * 31 + i * 17) % 1500)));
    if (garbage.length > 64) garbage = garbage.slice(32);
    const plaintext = new Uint8Array(round % 200).fill(round & 0xff);
    const aad = new Uint8Array(round % 7).fill(0xaa);
    const sealed = nativeAead.seal(key, iv, aad, plaintext);
    garbage.push(new Uint8Array(300 + (round % 900)));
    const opened = nativeAead.open(key, iv, aad, sealed.subarray(0, sealed.length - 32), sealed.subarray(sealed.length - 32));
    assertBytes(opened, plaintext, `round ${round}`);
    if (round % 50 === 0) xsTest.gc();
  }
});

test(G, 'primitives: cbc and hmac check their inputs', () => {
  assertThrows(() => natives.cbc(true, v.key.subarray(0, 32), v.iv, new Uint8Array(15)), isRangeError, 'cbc 15 bytes');
  assertThrows(() => natives.cbc(true, v.key.subarray(0, 32), v.iv, new Uint8Array(0)), isRangeError, 'cbc empty');
  assertThrows(() => natives.cbc(true, v.key, v.iv, new Uint8Array(16)), isRangeError, 'cbc 64-byte key');
  const part = new Uint8Array(1);
  assertThrows(() => natives.hmac(v.key.subarray(0, 32), part, part, part, part, part, part, part, part, part), isRangeError, 'nine parts');
  assertThrows(() => natives.hmac(v.key, part), isRangeError, 'hmac 64-byte key');
  assertThrows(() => nativePrimitives.hmacSha512(v.key.subarray(0, 31), [part]), isMisuse, 'wrapper');
  const whole = new Uint8Array(natives.hmac(v.key.subarray(0, 32), v.aad));
  const split = new Uint8Array(natives.hmac(v.key.subarray(0, 32), v.aad.subarray(0, 5), new Uint8Array(0), v.aad.subarray(5)));
  assertBytes(split, whole, 'parts concatenate');
  const ciphertext = nativePrimitives.aes256CbcEncrypt(v.key.subarray(32), v.iv, new Uint8Array(48).fill(9));
  assertBytes(nativePrimitives.aes256CbcDecrypt(v.key.subarray(32), v.iv, ciphertext), new Uint8Array(48).fill(9), 'cbc round trip');
});

test(G, 'random: fills, differs between calls, accepts empty, refuses non-buffers', () => {
  const a = new Uint8Array(64);
  const b = new Uint8Array(64);
  nativeRandom.fill(a);
  nativeRandom.fill(b);
  assert(a.some((x) => x !== 0) && a.some((x, i) => x !== b[i]), 'random bytes');
  nativeRandom.fill(new Uint8Array(0));
  const window = new Uint8Array(10);
  nativeRandom.fill(window.subarray(3, 5));
  assert(window[0] === 0 && window[9] === 0, 'fills only the view');
  assertThrows(() => (natives.random as (value: unknown) => void)(5), isTypeError, 'number');
  assertThrows(() => (nativeRandom.fill as (value: unknown) => void)('x'), isMisuse, 'wrapper');
});
