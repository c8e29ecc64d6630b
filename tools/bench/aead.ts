/**
 * AEAD benchmark: seal and open through our A256CBC-HS512 composition over
 * node:crypto, against the same work done with bare node:crypto calls
 * (cipher with built-in padding, one HMAC), measured in the same run. The
 * ratio is our overhead (goal: ≤ 1.3×).
 */
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

/** Operations per second of `fn`, best of several rounds (the machine is shared and noisy). */
function opsPerSecond(fn: () => void, minMs = 250, rounds = 5): number {
  let best = 0;
  for (let round = 0; round < rounds; round++) {
    let count = 0;
    const start = process.hrtime.bigint();
    let elapsedMs = 0;
    while (elapsedMs < minMs) {
      for (let i = 0; i < 100; i++) fn();
      count += 100;
      elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    }
    best = Math.max(best, (count * 1000) / elapsedMs);
  }
  return best;
}

export async function run(): Promise<void> {
  console.log('\n== AEAD: A256CBC-HS512 seal/open (ops/s, best of 5 rounds; ratio = bare / ours, goal ≤ 1.3×) ==');
  console.log('size    op     ours(node)   bare node:crypto  ratio   @noble (pure JS)');
  const key = randomBytes(64);
  const iv = randomBytes(16);
  for (const size of [64, 256, 1024]) {
    const plaintext = randomBytes(size);
    const sealed = Buffer.from(nodeAead.seal(key, iv, AAD, plaintext));
    const ct = sealed.subarray(0, sealed.length - 32);
    const tag = sealed.subarray(sealed.length - 32);
    if (!bareOpen(key, iv, sealed).equals(plaintext) || !bareSeal(key, iv, plaintext).equals(sealed)) throw new Error('bench baseline disagrees');
    const rows: [string, () => void, () => void, () => void][] = [
      ['seal', () => nodeAead.seal(key, iv, AAD, plaintext), () => bareSeal(key, iv, plaintext), () => nobleAead.seal(key, iv, AAD, plaintext)],
      ['open', () => nodeAead.open(key, iv, AAD, ct, tag), () => bareOpen(key, iv, sealed), () => nobleAead.open(key, iv, AAD, ct, tag)],
    ];
    for (const [op, ours, bare, noble] of rows) {
      const o = opsPerSecond(ours);
      const b = opsPerSecond(bare);
      const n = opsPerSecond(noble, 150, 3);
      console.log(`${String(size).padEnd(7)} ${op.padEnd(6)} ${o.toFixed(0).padStart(10)}   ${b.toFixed(0).padStart(14)}   ${(b / o).toFixed(2).padStart(5)}×   ${n.toFixed(0).padStart(10)}`);
    }
  }
}
