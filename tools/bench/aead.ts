/**
 * AEAD benchmark: seal and open through our A256CBC-HS512 composition over
 * node:crypto, against two baselines measured in the same run:
 * - bare node:crypto calls doing the same work (cipher with built-in
 *   padding, one HMAC): the ratio bare/ours is our overhead (goal ≤ 1.15×);
 * - a peer: the `jose` package's JWE with alg "dir", enc "A256CBC-HS512"
 *   (compact encrypt / compactDecrypt, the same key and payload sizes; its
 *   AAD is the encoded protected header). jose's API is asynchronous, so it
 *   is timed awaiting each operation in turn. The ratio ours/jose says how
 *   many times faster we are (goal > 1).
 * Figures only; nothing here is asserted.
 */
import { CompactEncrypt, compactDecrypt } from 'jose';
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { nodeAead } from '../../hosts/node/crypto';
import { nobleAead } from '../../hosts/noble/primitives';

const AAD = randomBytes(36);
const AL = Buffer.from('0000000000000120', 'hex');

function bareSeal(key: Buffer, iv: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-cbc', key.subarray(32), iv);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const tag = createHmac('sha512', key.subarray(0, 32)).update(AAD).update(iv).update(ct).update(AL).digest().subarray(0, 32);
  return Buffer.concat([ct, tag]);
}

function bareOpen(key: Buffer, iv: Buffer, sealed: Buffer): Buffer {
  const ct = sealed.subarray(0, sealed.length - 32);
  const tag = createHmac('sha512', key.subarray(0, 32)).update(AAD).update(iv).update(ct).update(AL).digest().subarray(0, 32);
  if (!timingSafeEqual(tag, sealed.subarray(sealed.length - 32))) throw new Error('tag');
  const decipher = createDecipheriv('aes-256-cbc', key.subarray(32), iv);
  return Buffer.concat([decipher.update(ct), decipher.final()]);
}

/** Operations per second of `fn` for about `ms` (calls in batches of 100). */
async function timeOnce(fn: () => unknown, ms: number): Promise<number> {
  let count = 0;
  const start = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < ms) {
    for (let i = 0; i < 100; i++) {
      const result = fn();
      if (result instanceof Promise) await result;
    }
    count += 100;
    elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (count * 1000) / elapsedMs;
}

/**
 * Operations per second of each of `fns`, best of `rounds`. The rounds are
 * interleaved (each round times every function in turn), so a burst of load
 * from elsewhere on this shared machine hits all of them alike.
 */
async function compareOpsPerSecond(fns: readonly (() => unknown)[], ms = 120, rounds = 7): Promise<number[]> {
  const best = fns.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < fns.length; i++) best[i] = Math.max(best[i] as number, await timeOnce(fns[i] as () => unknown, ms));
  }
  return best;
}

const JWE_HEADER = { alg: 'dir', enc: 'A256CBC-HS512' } as const;

export async function run(): Promise<void> {
  console.log('\n== AEAD: A256CBC-HS512 seal/open (ops/s, best of 7 interleaved rounds; bare/ours goal ≤ 1.15×; ours/jose goal > 1×) ==');
  console.log('size    op     ours(node)   bare node:crypto  bare/ours   jose (dir JWE)  ours/jose   @noble (pure JS)');
  const key = randomBytes(64);
  const iv = randomBytes(16);
  for (const size of [64, 256, 1024]) {
    const plaintext = randomBytes(size);
    const sealed = Buffer.from(nodeAead.seal(key, iv, AAD, plaintext));
    const ct = sealed.subarray(0, sealed.length - 32);
    const tag = sealed.subarray(sealed.length - 32);
    if (!bareOpen(key, iv, sealed).equals(plaintext) || !bareSeal(key, iv, plaintext).equals(sealed)) throw new Error('bench baseline disagrees');
    const jwe = await new CompactEncrypt(plaintext).setProtectedHeader(JWE_HEADER).encrypt(key);
    if (!Buffer.from((await compactDecrypt(jwe, key)).plaintext).equals(plaintext)) throw new Error('jose baseline disagrees');
    const rows: [string, () => unknown, () => unknown, () => unknown, () => unknown][] = [
      [
        'seal',
        () => nodeAead.seal(key, iv, AAD, plaintext),
        () => bareSeal(key, iv, plaintext),
        () => new CompactEncrypt(plaintext).setProtectedHeader(JWE_HEADER).encrypt(key),
        () => nobleAead.seal(key, iv, AAD, plaintext),
      ],
      [
        'open',
        () => nodeAead.open(key, iv, AAD, ct, tag),
        () => bareOpen(key, iv, sealed),
        () => compactDecrypt(jwe, key),
        () => nobleAead.open(key, iv, AAD, ct, tag),
      ],
    ];
    for (const [op, ours, bare, jose, noble] of rows) {
      const [o, b, j, n] = (await compareOpsPerSecond([ours, bare, jose, noble])) as [number, number, number, number];
      console.log(
        `${String(size).padEnd(7)} ${op.padEnd(6)} ${o.toFixed(0).padStart(10)}   ${b.toFixed(0).padStart(14)}   ${(b / o).toFixed(2).padStart(8)}×   ` +
          `${j.toFixed(0).padStart(14)}   ${(o / j).toFixed(2).padStart(8)}×   ${n.toFixed(0).padStart(10)}`,
      );
    }
  }
}
