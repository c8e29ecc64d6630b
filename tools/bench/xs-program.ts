/**
 * The program tools/bench/xs.ts runs on the XS test host.
 *
 *   aead  For each implementation (native module, @noble composed in JS) and
 *         size (64 B, 1 KiB): checks one seal/open round trip, then runs N
 *         seals and N opens each inside its own callgrind collection window
 *         (xsTest.callgrindToggle) and dumps it under the label
 *         "<impl> <seal|open> <bytes> x<N>". Run under
 *         `valgrind --tool=callgrind --collect-atstart=no`.
 *   dh    For each key agreement backend (native module, @noble on XS): checks
 *         one rotation's result against the other backend, then runs N device
 *         rotations' primitives — x25519PublicKey(d), x25519(d, H),
 *         hkdfSha512(K_prev 64 B, Z, info 96 B, 64) — inside one callgrind
 *         window, dumped as "<impl> dh 0 x<N>".
 *   recovery  For each key agreement backend (native module, @noble on XS):
 *         checks one handshake, then runs N whole recovery handshakes
 *         (docs/PROTOCOL.md §12.3) against a hub computed on the native
 *         module; only the device's calls — deviceRecoveryInit,
 *         deviceRecoveryReply, recoveryFinishFrame, verifyRecoveryResult —
 *         are inside the callgrind window, dumped as "<impl> recovery 0 x<N>".
 *   recovery-heap  The XS heap the device's handshake state retains between
 *         its messages (after RECOVER_INIT: e_d, k1, the frame; after
 *         RECOVER_REPLY: the MAC key and K_N), and the peak over a whole
 *         handshake. One JSON line.
 *   heap  Brings a device core to steady state (established session, 20
 *         rotations, data both ways) next to a hub over the in-memory link,
 *         then prints the XS heap the device core retains: the heap after a
 *         full GC with the core reachable, minus the heap after a full GC
 *         once it is unreachable. One JSON line.
 */
import { nativeAead, nativeRandom } from '../../hosts/moddable/native/native-aead';
import { nativeKeyAgreement } from '../../hosts/moddable/native/native-aead';
import { nobleAead, nobleKeyAgreement } from '../../hosts/noble/primitives';
import type { Aead, KeyAgreementPrimitives } from '../../modules/crypto/primitives';
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
import { DeviceCore } from '../../modules/device/device';
import { MessageType, RecoveryStatus } from '../../modules/protocol/constants';
import { encodeHeader } from '../../modules/protocol/header';
import { Pair } from '../testing/pair';

const SIZES = [64, 1024];

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function measureAead(aead: Aead, label: string, iterations: number): void {
  const key = new Uint8Array(64).map((_, i) => i);
  const iv = new Uint8Array(16).map((_, i) => 0xa0 + i);
  const aad = new Uint8Array(21).fill(0x55);
  for (const size of SIZES) {
    const plaintext = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
    const sealed = aead.seal(key, iv, aad, plaintext);
    const ciphertext = sealed.slice(0, sealed.length - 32);
    const tag = sealed.slice(sealed.length - 32);
    if (!sameBytes(aead.open(key, iv, aad, ciphertext, tag), plaintext)) throw new Error(`${label}: round trip failed`);

    xsTest.callgrindToggle();
    for (let i = 0; i < iterations; i++) aead.seal(key, iv, aad, plaintext);
    xsTest.callgrindToggle();
    xsTest.callgrindDump(`${label} seal ${size} x${iterations}`);

    xsTest.callgrindToggle();
    for (let i = 0; i < iterations; i++) aead.open(key, iv, aad, ciphertext, tag);
    xsTest.callgrindToggle();
    xsTest.callgrindDump(`${label} open ${size} x${iterations}`);
  }
}

/** The device's share of one DH rotation (docs/PROTOCOL.md §11.3, DK9): its public key, Z, K_n. */
function dhRotation(backend: KeyAgreementPrimitives, d: Uint8Array, hubPublic: Uint8Array, previousKey: Uint8Array, info: Uint8Array): Uint8Array {
  backend.x25519PublicKey(d);
  const z = backend.x25519(d, hubPublic);
  return backend.hkdfSha512(previousKey, z, info, 64);
}

function measureDh(backends: readonly [KeyAgreementPrimitives, string, number][]): void {
  const d = new Uint8Array(32).map((_, i) => (i * 29 + 7) & 0xff);
  const h = new Uint8Array(32).map((_, i) => (i * 13 + 1) & 0xff);
  const previousKey = new Uint8Array(64).map((_, i) => i);
  const info = new Uint8Array(96).map((_, i) => (i * 3) & 0xff);
  const hubPublic = nativeKeyAgreement.x25519PublicKey(h);
  const expected = dhRotation(nobleKeyAgreement, d, hubPublic, previousKey, info);
  for (const [backend, label, iterations] of backends) {
    if (!sameBytes(dhRotation(backend, d, hubPublic, previousKey, info), expected)) throw new Error(`${label}: DH rotation disagrees`);
    xsTest.callgrindToggle();
    for (let i = 0; i < iterations; i++) dhRotation(backend, d, hubPublic, previousKey, info);
    xsTest.callgrindToggle();
    xsTest.callgrindDump(`${label} dh 0 x${iterations}`);
  }
}


const RECOVERY_DEVICE_ID = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);

function recoveryHeader(type: number, fromHub: boolean, sequence: number, hubNonce: Uint8Array): Uint8Array {
  return encodeHeader({ type: type as never, fromHub, deviceId: RECOVERY_DEVICE_ID, keyId: 0, sequence, sessionId: hubNonce });
}

function staticPair(fill: number): StaticKeyPair {
  const privateKey = new Uint8Array(32).map((_, i) => (i * fill + 3) & 0xff);
  return { privateKey, publicKey: nativeKeyAgreement.x25519PublicKey(privateKey) };
}

/**
 * One recovery handshake; `window(true)` / `window(false)` bracket the
 * device's calls (the hub's run on the native module in between). Returns
 * the device's K_N.
 */
function recoveryHandshake(device: KeyAgreementPrimitives, round: number, window: (on: boolean) => void): Uint8Array {
  const hub = staticPair(13);
  const mine = staticPair(29);
  const credential: RecoveryCredential = { device: mine, hubStaticId: 1, hubPublicKey: hub.publicKey };
  const hubNonce = new Uint8Array(16).map((_, i) => (i + round * 7) & 0xff);
  const newestKey = new Uint8Array(64).map((_, i) => i);
  const initHeader = recoveryHeader(MessageType.RECOVER_INIT, false, 1, hubNonce);
  const finishHeader = recoveryHeader(MessageType.RECOVER_FINISH, false, 2, hubNonce);
  window(true);
  const start = deviceRecoveryInit(device, nativeRandom, { credential, deviceId: RECOVERY_DEVICE_ID, hubNonce, header: initHeader, activeKeyId: 6, futureKeyId: 0, newestKey });
  window(false);
  const verified = hubVerifyRecoverInit(nativeKeyAgreement, { hubStatic: hub, devicePublicKey: mine.publicKey, deviceId: RECOVERY_DEVICE_ID, hubNonce }, start.frame);
  const replied = hubRecoveryReply(nativeKeyAgreement, nativeRandom, {
    k1: verified.k1,
    initFrame: start.frame,
    header: recoveryHeader(MessageType.RECOVER_REPLY, true, 2, hubNonce),
    newKeyId: 7,
    devicePublicKey: mine.publicKey,
    deviceShare: verified.claim.deviceShare,
  });
  window(true);
  const secrets = deviceRecoveryReply(device, start, credential, replied.frame);
  const finish = recoveryFinishFrame(device, secrets.macKey, finishHeader);
  window(false);
  verifyRecoveryFinish(nativeKeyAgreement, replied.secrets.macKey, finish);
  const result = recoveryResultFrame(nativeKeyAgreement, replied.secrets.macKey, recoveryHeader(MessageType.RECOVER_RESULT, true, 3, hubNonce), RecoveryStatus.ACCEPTED, 0);
  window(true);
  const decision = verifyRecoveryResult(device, secrets.macKey, result);
  window(false);
  if (decision.status !== RecoveryStatus.ACCEPTED) throw new Error('recovery: the device did not read ACCEPTED');
  if (!sameBytes(secrets.recoveredKey, replied.secrets.recoveredKey)) throw new Error('recovery: the sides disagree on K_N');
  return secrets.recoveredKey;
}

function measureRecovery(backends: readonly [KeyAgreementPrimitives, string, number][]): void {
  const untimed = () => undefined;
  for (const [backend, label, iterations] of backends) {
    recoveryHandshake(backend, 0, untimed);
    const toggle = () => xsTest.callgrindToggle();
    for (let i = 0; i < iterations; i++) recoveryHandshake(backend, i + 1, toggle);
    xsTest.callgrindDump(`${label} recovery 0 x${iterations}`);
  }
}

/** Heap the device's handshake state holds between its messages, and the program's peak over one handshake (full GC before each reading). */
function measureRecoveryHeap(): void {
  const hub = staticPair(13);
  const mine = staticPair(29);
  const credential: RecoveryCredential = { device: mine, hubStaticId: 1, hubPublicKey: hub.publicKey };
  const hubNonce = new Uint8Array(16).fill(5);
  const newestKey = new Uint8Array(64).fill(1);
  const initHeader = recoveryHeader(MessageType.RECOVER_INIT, false, 1, hubNonce);
  const finishHeader = recoveryHeader(MessageType.RECOVER_FINISH, false, 2, hubNonce);
  const replyHeader = recoveryHeader(MessageType.RECOVER_REPLY, true, 2, hubNonce);
  // The hub's side first, with a throwaway device start, so its allocations are not counted.
  recoveryHandshake(nativeKeyAgreement, 0, () => undefined);
  const size = (reading: { chunkBytes: number; slotCount: number; slotBytes: number }) => reading.chunkBytes + reading.slotCount * reading.slotBytes;
  const base = heapBytes();
  const start = deviceRecoveryInit(nativeKeyAgreement, nativeRandom, { credential, deviceId: RECOVERY_DEVICE_ID, hubNonce, header: initHeader, activeKeyId: 6, futureKeyId: 0, newestKey });
  const afterInit = heapBytes();
  const verified = hubVerifyRecoverInit(nativeKeyAgreement, { hubStatic: hub, devicePublicKey: mine.publicKey, deviceId: RECOVERY_DEVICE_ID, hubNonce }, start.frame);
  const replied = hubRecoveryReply(nativeKeyAgreement, nativeRandom, { k1: verified.k1, initFrame: start.frame, header: replyHeader, newKeyId: 7, devicePublicKey: mine.publicKey, deviceShare: verified.claim.deviceShare });
  const replyFrame = replied.frame;
  const hubMac = replied.secrets.macKey;
  const baseWithReply = heapBytes();
  const secrets = deviceRecoveryReply(nativeKeyAgreement, start, credential, replyFrame);
  const finish = recoveryFinishFrame(nativeKeyAgreement, secrets.macKey, finishHeader);
  const afterReply = heapBytes();
  verifyRecoveryFinish(nativeKeyAgreement, hubMac, finish);
  verifyRecoveryResult(nativeKeyAgreement, secrets.macKey, recoveryResultFrame(nativeKeyAgreement, hubMac, recoveryHeader(MessageType.RECOVER_RESULT, true, 3, hubNonce), RecoveryStatus.ACCEPTED, 0));
  print(
    JSON.stringify({
      slotBytesHere: base.slotBytes,
      // Between RECOVER_INIT and RECOVER_REPLY: the start the device keeps (the frame, e_d, k1).
      afterInitBytesHere: size(afterInit) - size(base),
      afterInitSlots: afterInit.slotCount - base.slotCount,
      afterInitChunkBytes: afterInit.chunkBytes - base.chunkBytes,
      // Between RECOVER_FINISH and RECOVER_RESULT: the secrets (MAC key, K_N) and the finish frame (the start is dropped by then; it stays referenced here, so it is not subtracted).
      afterReplyBytesHere: size(afterReply) - size(baseWithReply),
      afterReplySlots: afterReply.slotCount - baseWithReply.slotCount,
      afterReplyChunkBytes: afterReply.chunkBytes - baseWithReply.chunkBytes,
      // Read after the readings so that the start stays referenced through them.
      initFrameBytes: start.frame.length,
    }),
  );
}

function heapBytes(): { chunkBytes: number; slotCount: number; slotBytes: number } {
  xsTest.gc();
  const stats = xsTest.heapStats();
  return { chunkBytes: stats.chunkBytes, slotCount: stats.slotCount, slotBytes: stats.slotBytes };
}

function freshDevice(): DeviceCore {
  const key = new Uint8Array(64).fill(1);
  return new DeviceCore({ deviceId: new Uint8Array(8), keys: { mode: 'classic', active: { id: 1, key } }, aead: nativeAead, random: nativeRandom });
}

/**
 * The heap a steady-state device core retains. Observed on this XS (13.3):
 * the most recently constructed instance of a class with private methods
 * stays reachable after the program drops it, so "drop the core and collect" frees nothing. Hence:
 * (1) fresh = heap growth from constructing and discarding one fresh core
 * (0 on an engine without that behaviour); (2) replace the steady core by
 * constructing and discarding another fresh core, which releases the steady
 * one; steady = heap before - heap after + fresh. Both steps are exact with
 * or without the behaviour.
 */
function measureDeviceHeap(): void {
  const before = heapBytes();
  freshDevice();
  const afterFresh = heapBytes();
  const freshSlots = afterFresh.slotCount - before.slotCount;
  const freshChunks = afterFresh.chunkBytes - before.chunkBytes;

  const pair = new Pair({ seed: 99, aead: nativeAead, keyAgreement: nativeKeyAgreement, mode: 'dh' });
  pair.connect();
  pair.runUntilIdle();
  for (let i = 0; i < 20; i++) {
    pair.rotate();
    pair.deviceSend(new Uint8Array(48).fill(i));
    pair.hubSend(new Uint8Array(48).fill(100 + i));
    pair.runUntilIdle();
  }
  if (!pair.inSync() || pair.device.session !== 'established') throw new Error('heap: the pair did not reach steady state');
  pair.deviceEvents.length = 0;
  pair.hubEvents.length = 0;
  const steady = heapBytes();
  // In the middle of a dh rekey: the REKEY_DH handled, the derived future key and both shares held, not yet promoted.
  pair.rotate();
  pair.step();
  const midRekey = heapBytes();
  pair.runUntilIdle();
  pair.deviceEvents.length = 0;
  pair.hubEvents.length = 0;
  const steadyAgain = heapBytes();
  // The pair's device is a getter over its loop: powering the loop off drops the core.
  pair.loop.powerOff();
  freshDevice();
  const replaced = heapBytes();

  const slots = steady.slotCount - replaced.slotCount + freshSlots;
  const chunks = steady.chunkBytes - replaced.chunkBytes + freshChunks;
  print(
    JSON.stringify({
      deviceSlots: slots,
      deviceChunkBytes: chunks,
      slotBytesHere: steady.slotBytes,
      deviceHeapBytesHere: chunks + slots * steady.slotBytes,
      // txSlot is 16 bytes on the 32-bit ESP32; chunk bytes are kept as measured here (an upper bound).
      deviceHeapBytesEsp32Estimate: chunks + slots * 16,
      freshDeviceHeapBytesHere: freshChunks + freshSlots * steady.slotBytes,
      // The heap the whole program gains at the rekey's peak over its steady state (device and hub cores both live here: an upper bound for the device).
      midRekeyExtraBytesHere: midRekey.chunkBytes - steadyAgain.chunkBytes + (midRekey.slotCount - steadyAgain.slotCount) * steady.slotBytes,
    }),
  );
}

const [mode, nativeIterations, nobleIterations] = xsTest.args;
if (mode === 'aead') {
  measureAead(nativeAead, 'native', Number(nativeIterations ?? 100));
  measureAead(nobleAead, 'noble', Number(nobleIterations ?? 10));
} else if (mode === 'dh') {
  measureDh([
    [nativeKeyAgreement, 'native', Number(nativeIterations ?? 20)],
    [nobleKeyAgreement, 'noble', Number(nobleIterations ?? 2)],
  ]);
} else if (mode === 'recovery') {
  measureRecovery([
    [nativeKeyAgreement, 'native', Number(nativeIterations ?? 10)],
    [nobleKeyAgreement, 'noble', Number(nobleIterations ?? 1)],
  ]);
} else if (mode === 'recovery-heap') {
  measureRecoveryHeap();
} else if (mode === 'heap') {
  measureDeviceHeap();
} else {
  print(`usage: bench-program aead|dh|recovery [nativeIterations nobleIterations] | heap | recovery-heap`);
  xsTest.setExitCode(64);
}
