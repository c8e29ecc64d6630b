/**
 * DH rekey primitives benchmark (docs/PROTOCOL.md §11.3): X25519 public key,
 * X25519 agreement, HKDF-SHA-512 to 64 bytes, and one rotation's worth of
 * them (what each side computes per DH rotation: its public key, Z, K_n),
 * in operations per second on one core (a fresh private key for every call,
 * so no cache hides an import), for
 * - nodeKeyAgreement (hosts/node/key-agreement.ts: node:crypto, a private key
 *   seen first imported through a JWK, Node 20's path to
 *   EVP_PKEY_new_raw_private_key; pairs from generateKeyPairSync, their
 *   KeyObjects cached for the agreement), the hub's backend;
 * - nodeKeyAgreementDer (every private key imported as PKCS#8 DER, through
 *   OpenSSL 3's generic decoder), the baseline the JWK import is measured against;
 * - nobleKeyAgreement (@noble, pure JS), the peer.
 * The hub's goal is 2,000 DH rotations/s on 2 cores; these are the
 * primitives alone, on one core (`npm run bench -- dh`, tools/bench/dh.ts,
 * measures the hub). `npm run bench -- dh-primitives`.
 * Figures only; nothing here is asserted.
 */
import { randomBytes } from 'node:crypto';
import { nodeKeyAgreement, nodeKeyAgreementDer } from '../../hosts/node/key-agreement';
import { nobleKeyAgreement } from '../../hosts/noble/primitives';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';

const HUB_GOAL_ROTATIONS_PER_SECOND_2_CORES = 2000;

function opsPerSecond(fn: () => unknown, ms: number): number {
  let count = 0;
  const start = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < ms) {
    for (let i = 0; i < 10; i++) fn();
    count += 10;
    elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (count * 1000) / elapsedMs;
}

/** Best of `rounds` interleaved rounds, so a burst of load elsewhere on this shared machine hits every backend alike. */
function compare(fns: readonly (() => unknown)[], ms = 150, rounds = 5): number[] {
  const best = fns.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < fns.length; i++) best[i] = Math.max(best[i]!, opsPerSecond(fns[i]!, ms));
  }
  return best;
}

export async function run(): Promise<void> {
  const backends: KeyAgreementPrimitives[] = [nodeKeyAgreement, nodeKeyAgreementDer, nobleKeyAgreement];
  const d = randomBytes(32);
  const h = randomBytes(32);
  const hubPublic = nodeKeyAgreement.x25519PublicKey(h);
  const previousKey = randomBytes(64);
  const info = randomBytes(96);
  const reference = nodeKeyAgreement.hkdfSha512(previousKey, nodeKeyAgreement.x25519(d, hubPublic), info, 64);
  for (const backend of backends) {
    const derived = backend.hkdfSha512(previousKey, backend.x25519(d, hubPublic), info, 64);
    if (!Buffer.from(derived).equals(Buffer.from(reference))) throw new Error(`dh bench: ${backend.name} disagrees`);
  }
  const fresh = (): Uint8Array => randomBytes(32);
  const operations: [string, (b: KeyAgreementPrimitives) => (() => unknown) | undefined][] = [
    ['x25519PublicKey', (b) => () => b.x25519PublicKey(fresh())],
    ['x25519', (b) => () => b.x25519(fresh(), hubPublic)],
    ['hkdfSha512 (64 B)', (b) => () => b.hkdfSha512(previousKey, reference, info, 64)],
    [
      'rotation, drawn key',
      (b) => () => {
        const k = fresh();
        b.x25519PublicKey(k);
        return b.hkdfSha512(previousKey, b.x25519(k, hubPublic), info, 64);
      },
    ],
    [
      'rotation, generated pair',
      (b) => {
        const generate = b.x25519GenerateKeyPair;
        if (generate === undefined) return undefined;
        return () => b.hkdfSha512(previousKey, b.x25519(generate().privateKey, hubPublic), info, 64);
      },
    ],
  ];
  console.log('\n== DH rekey primitives: X25519 + HKDF-SHA-512 (ops/s on one core, best of 5 interleaved rounds) ==');
  console.log('operation                  nodeKeyAgreement   node:crypto (DER)   JWK/DER   @noble (pure JS)   node/noble');
  let rotations = 0;
  for (const [label, make] of operations) {
    const fns = backends.map(make);
    const measured = compare(fns.map((fn) => fn ?? (() => undefined)));
    const [jwk, der, noble] = measured.map((value, i) => (fns[i] === undefined ? undefined : value)) as (number | undefined)[];
    if (label === 'rotation, generated pair' && jwk !== undefined) rotations = jwk;
    const cell = (value: number | undefined, width: number): string => (value === undefined ? 'n/a' : value.toFixed(0)).padStart(width);
    const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? 'n/a' : `${(a / b).toFixed(1)}x`).padStart(7);
    console.log(`${label.padEnd(26)} ${cell(jwk, 18)}   ${cell(der, 17)}   ${ratio(jwk, der)}   ${cell(noble, 16)}   ${ratio(jwk, noble)}`);
  }
  console.log(
    `  hub (generated pair, X25519, HKDF): ${rotations.toFixed(0)} rotations' primitives/s on one core, so at most ${(2 * rotations).toFixed(0)} on 2 cores ` +
      `before any protocol, storage or I/O work (goal ${HUB_GOAL_ROTATIONS_PER_SECOND_2_CORES} DH rotations/s on 2 cores: ` +
      `${2 * rotations >= HUB_GOAL_ROTATIONS_PER_SECOND_2_CORES ? 'the primitives leave room for it' : 'NOT reachable with these primitives'})`,
  );
}

if (process.argv[1] !== undefined && /tools[\\/]bench[\\/]dh-primitives\.ts$/.test(process.argv[1])) {
  run().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
