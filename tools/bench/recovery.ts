/**
 * `npm run bench -- recovery`: what a recovery handshake (docs/PROTOCOL.md
 * §12.3) costs the hub, against what a rotation costs it, in one run:
 *
 *  1. the hub's four handshake calls per recovery — hubVerifyRecoverInit,
 *     hubRecoveryReply, verifyRecoveryFinish, recoveryResultFrame — on
 *     node:crypto (the hub's backend) and on @noble (pure JS, the peer), in
 *     µs of CPU on one core, best of interleaved rounds; the device's half of each
 *     handshake runs between the hub's calls, outside the timed spans, so
 *     every handshake is a real one (fresh E_d, fresh E_h, every tag checked);
 *  2. the hub's primitives of one dh rotation in isolation on the same two
 *     backends (a fresh pair, X25519, HKDF: tools/bench/dh.ts's figure);
 *  3. the whole hub's CPU per rotation, classic and dh, with a device swarm
 *     (tools/bench/dh.ts's measureHubRotations, smaller by default);
 *  4. ratios: a recovery's handshake against a rotation, each way;
 *  5. the device's side on the XS test host under callgrind, native module
 *     against @noble, in the same run as a dh rotation's, and the heap its
 *     handshake state holds (tools/bench/xs.ts).
 *
 * Environment: LOCKSTEP_BENCH_RECOVERY_DEVICES (per mode, default 500),
 * LOCKSTEP_BENCH_RECOVERY_WINDOW_S (default 3), LOCKSTEP_BENCH_RECOVERY_HANDSHAKES
 * (per round and backend, default 200). Figures only; nothing is asserted.
 */
import { randomBytes } from 'node:crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { nobleKeyAgreement } from '../../hosts/noble/key-agreement';
import { deriveRekeyKey, drawEphemeral } from '../../modules/crypto/dh-rekey';
import type { KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import {
  deviceRecoveryInit,
  deviceRecoveryReply,
  hubRecoveryReply,
  hubVerifyRecoverInit,
  recoveryFinishFrame,
  recoveryResultFrame,
  verifyRecoveryFinish,
  verifyRecoveryResult,
  type RecoveryCredential,
  type StaticKeyPair,
} from '../../modules/crypto/recovery';
import { MessageType, RecoveryStatus } from '../../modules/protocol/constants';
import { encodeHeader } from '../../modules/protocol/header';
import { measureHubRotations } from './dh';
import { runRecovery as xsRecovery } from './xs';

const random: RandomSource = { fill: (bytes) => bytes.set(randomBytes(bytes.length)) };
const deviceId = Uint8Array.of(0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80);
const STEPS = ['hubVerifyRecoverInit', 'hubRecoveryReply', 'verifyRecoveryFinish', 'recoveryResultFrame'] as const;
type Step = (typeof STEPS)[number];

function staticPair(): StaticKeyPair {
  const privateKey = randomBytes(32);
  return { privateKey: new Uint8Array(privateKey), publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) };
}

function header(type: number, fromHub: boolean, sequence: number, hubNonce: Uint8Array): Uint8Array {
  return encodeHeader({ type: type as never, fromHub, deviceId, keyId: 0, sequence, sessionId: hubNonce });
}

/**
 * The process's CPU (user + system) since `since`, in µs: the same measure as
 * the hub's CPU per rotation it is compared with, and less disturbed than
 * wall time by the other processes of this shared machine.
 */
const now = (): NodeJS.CpuUsage => process.cpuUsage();
const elapsedUs = (since: NodeJS.CpuUsage): number => {
  const spent = process.cpuUsage(since);
  return spent.user + spent.system;
};

/**
 * `count` whole handshakes; the hub's calls run on `hubBackend` and are
 * timed one by one; the device's run on node:crypto, untimed. Returns µs per
 * recovery for each hub call.
 */
function hubHandshakes(hubBackend: KeyAgreementPrimitives, count: number, hub: StaticKeyPair, device: StaticKeyPair): Record<Step, number> {
  const credential: RecoveryCredential = { device, hubStaticId: 1, hubPublicKey: hub.publicKey };
  const spent: Record<Step, number> = { hubVerifyRecoverInit: 0, hubRecoveryReply: 0, verifyRecoveryFinish: 0, recoveryResultFrame: 0 };
  const newestKey = new Uint8Array(randomBytes(64));
  for (let i = 0; i < count; i++) {
    const hubNonce = new Uint8Array(randomBytes(16));
    const start = deviceRecoveryInit(nodeKeyAgreement, random, { credential, deviceId, hubNonce, header: header(MessageType.RECOVER_INIT, false, 1, hubNonce), activeKeyId: 6, futureKeyId: 0, newestKey });
    const init = start.frame.slice();
    let t = now();
    const verified = hubVerifyRecoverInit(hubBackend, { hubStatic: hub, devicePublicKey: device.publicKey, deviceId, hubNonce }, init);
    spent.hubVerifyRecoverInit += elapsedUs(t);
    const replyHeader = header(MessageType.RECOVER_REPLY, true, 2, hubNonce);
    t = now();
    const replied = hubRecoveryReply(hubBackend, random, { k1: verified.k1, initFrame: init, header: replyHeader, newKeyId: 7, devicePublicKey: device.publicKey, deviceShare: verified.claim.deviceShare });
    spent.hubRecoveryReply += elapsedUs(t);
    const deviceSecrets = deviceRecoveryReply(nodeKeyAgreement, start, credential, replied.frame);
    const finish = recoveryFinishFrame(nodeKeyAgreement, deviceSecrets.macKey, header(MessageType.RECOVER_FINISH, false, 2, hubNonce));
    t = now();
    verifyRecoveryFinish(hubBackend, replied.secrets.macKey, finish);
    spent.verifyRecoveryFinish += elapsedUs(t);
    const resultHeader = header(MessageType.RECOVER_RESULT, true, 3, hubNonce);
    t = now();
    const result = recoveryResultFrame(hubBackend, replied.secrets.macKey, resultHeader, RecoveryStatus.ACCEPTED, 0);
    spent.recoveryResultFrame += elapsedUs(t);
    if (verifyRecoveryResult(nodeKeyAgreement, deviceSecrets.macKey, result).status !== RecoveryStatus.ACCEPTED) throw new Error('recovery bench: the device did not read ACCEPTED');
    if (Buffer.compare(Buffer.from(deviceSecrets.recoveredKey), Buffer.from(replied.secrets.recoveredKey)) !== 0) throw new Error(`recovery bench: ${hubBackend.name} and the device disagree on K_N`);
    for (const secret of [deviceSecrets.macKey, deviceSecrets.recoveredKey, replied.secrets.macKey, replied.secrets.recoveredKey]) secret.fill(0);
  }
  for (const step of STEPS) spent[step] /= count;
  return spent;
}

/** The hub's primitives of one dh rotation, µs each (tools/bench/dh.ts's printPrimitiveCost, on any backend). */
function dhRotationPrimitives(backend: KeyAgreementPrimitives, count: number): number {
  const previousKey = new Uint8Array(randomBytes(64));
  const device = nodeKeyAgreement.x25519PublicKey(randomBytes(32));
  const t = now();
  for (let i = 0; i < count; i++) {
    const pair = drawEphemeral(backend, random);
    deriveRekeyKey(backend, { previousKey, privateKey: pair.privateKey, peerShare: device, deviceId, newKeyId: 2, hubShare: pair.publicKey, deviceShare: device }).fill(0);
  }
  return elapsedUs(t) / count;
}

interface CryptoCost {
  /** µs per recovery, by hub call (best round of each). */
  readonly steps: Record<Step, number>;
  readonly recovery: number;
  readonly dhRotation: number;
}

/** Best of `rounds` interleaved rounds over both backends, so a burst of load elsewhere hits both alike. */
function measureCrypto(backends: readonly KeyAgreementPrimitives[], handshakes: number, rounds: number): CryptoCost[] {
  const hub = staticPair();
  const device = staticPair();
  const best = backends.map(() => ({ steps: { hubVerifyRecoverInit: Infinity, hubRecoveryReply: Infinity, verifyRecoveryFinish: Infinity, recoveryResultFrame: Infinity } as Record<Step, number>, recovery: Infinity, dhRotation: Infinity }));
  for (let round = 0; round < rounds; round++) {
    backends.forEach((backend, i) => {
      const cost = best[i]!;
      // The @noble peer runs a tenth as many: same figures per handshake, a tenth of the wall time.
      const n = backend === nobleKeyAgreement ? Math.max(10, Math.round(handshakes / 10)) : handshakes;
      const steps = hubHandshakes(backend, n, hub, device);
      const total = STEPS.reduce((sum, step) => sum + steps[step], 0);
      if (total < cost.recovery) {
        cost.recovery = total;
        cost.steps = steps;
      }
      cost.dhRotation = Math.min(cost.dhRotation, dhRotationPrimitives(backend, n));
    });
  }
  return best;
}

export async function run(): Promise<void> {
  const perMode = Number(process.env.LOCKSTEP_BENCH_RECOVERY_DEVICES ?? 500);
  const windowMs = Number(process.env.LOCKSTEP_BENCH_RECOVERY_WINDOW_S ?? 3) * 1000;
  const handshakes = Number(process.env.LOCKSTEP_BENCH_RECOVERY_HANDSHAKES ?? 200);
  const backends = [nodeKeyAgreement, nobleKeyAgreement];
  console.log(`\n== Recovery handshake on the hub (docs/PROTOCOL.md §12.3) against a rotation, one run ==`);
  // Before and after the hub's rotation windows; the best of the two is kept (the machine is shared).
  const before = measureCrypto(backends, handshakes, 3);
  const rotations = await measureHubRotations({ perMode, windowMs, level: 256 });
  const after = measureCrypto(backends, handshakes, 3);
  const cost = before.map((b, i) => (b.recovery <= after[i]!.recovery ? { ...b, dhRotation: Math.min(b.dhRotation, after[i]!.dhRotation) } : { ...after[i]!, dhRotation: Math.min(b.dhRotation, after[i]!.dhRotation) }));
  const [node, noble] = cost as [CryptoCost, CryptoCost];
  const us = (value: number) => value.toFixed(0).padStart(9);
  console.log('hub call, µs per recovery (one core)   node:crypto     @noble   noble/node');
  for (const step of STEPS) console.log(`  ${step.padEnd(36)} ${us(node.steps[step])}  ${us(noble.steps[step])}   ${(noble.steps[step] / node.steps[step]).toFixed(1).padStart(7)}x`);
  console.log(`  ${'whole handshake (hub side)'.padEnd(36)} ${us(node.recovery)}  ${us(noble.recovery)}   ${(noble.recovery / node.recovery).toFixed(1).padStart(7)}x`);
  console.log(`  ${'dh rotation primitives (hub side)'.padEnd(36)} ${us(node.dhRotation)}  ${us(noble.dhRotation)}   ${(noble.dhRotation / node.dhRotation).toFixed(1).padStart(7)}x`);
  console.log(
    `  recovery handshake / dh rotation, primitives alone: node:crypto ${(node.recovery / node.dhRotation).toFixed(1)}x, @noble ${(noble.recovery / noble.dhRotation).toFixed(1)}x ` +
      `(a recovery is 4 X25519 on the hub, two of them with s_h, plus a fresh pair and 6 HKDFs; a dh rotation is 1 X25519, a fresh pair and 1 HKDF)`,
  );
  console.log(`whole hub, ${perMode} devices per mode, 256 rotations in flight (tools/bench/dh.ts): classic ${rotations.classic.rate.toFixed(0)}/s at ${rotations.classic.cpuMs.toFixed(3)} ms CPU each, dh ${rotations.dh.rate.toFixed(0)}/s at ${rotations.dh.cpuMs.toFixed(3)} ms CPU each`);
  const nodeMs = node.recovery / 1000;
  console.log(
    `  a recovery's handshake crypto (node:crypto, ${nodeMs.toFixed(3)} ms) = ${(nodeMs / rotations.classic.cpuMs).toFixed(2)}x a whole classic rotation's hub CPU, ${(nodeMs / rotations.dh.cpuMs).toFixed(2)}x a whole dh rotation's; ` +
      `so the hub's cores could run ~${Math.floor(2000 / nodeMs)} recovery handshakes/s on 2 cores, crypto alone (a restore of the whole fleet, tools/bench/recovery-fleet.ts, adds the storage, the policy and the sessions)`,
  );
  console.log('\n-- the device side, on the XS test host --');
  await xsRecovery();
}

if (process.argv[1] !== undefined && /tools[\\/]bench[\\/]recovery\.ts$/.test(process.argv[1])) {
  run().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
