/**
 * Recovery on XS (docs/PROTOCOL.md §12): the device core runs the handshake
 * with the native X25519/HKDF against the crypto module playing the hub,
 * stores the recovered key in the keystore journal (with its credential)
 * before it seals under it, and refuses an N not above its ids and a bad
 * tag4. The same core and keystore as on Node, unchanged.
 */
import { nativeAead, nativeKeyAgreement } from '../../../hosts/moddable/native/native-aead';
import { hubRecoveryReply, hubVerifyRecoverInit, recoveryResultFrame, verifyRecoveryFinish, type RecoveryCredential } from '../../../modules/crypto/recovery';
import { DeviceCore } from '../../../modules/device/device';
import type { DeviceAction } from '../../../modules/device/actions';
import { NorFlash } from '../../../modules/flash/nor-flash';
import { Keystore } from '../../../modules/keystore/keystore';
import { MessageType, RecoveryStatus } from '../../../modules/protocol/constants';
import { encodeChallenge } from '../../../modules/protocol/frame';
import { withLengthPrefix } from '../../../modules/protocol/framing';
import { decodeHeader, encodeHeader } from '../../../modules/protocol/header';
import { seededRandom } from '../../../tools/testing/deterministic-random';
import { assert, assertBytes, assertEqual, test } from '../harness';

const G = 'core';
const ka = nativeKeyAgreement;
const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const hubPrivate = new Uint8Array(32).fill(0x42);
const hubPublic = ka.x25519PublicKey(hubPrivate);
const devicePrivate = new Uint8Array(32).fill(0x17);
const credential: RecoveryCredential = { device: { privateKey: devicePrivate, publicKey: ka.x25519PublicKey(devicePrivate) }, hubStaticId: 1, hubPublicKey: hubPublic };

function hdr(type: number, sequence: number, nonce: Uint8Array): Uint8Array {
  return encodeHeader({ type: type as never, fromHub: true, deviceId, keyId: 0, sequence, sessionId: nonce });
}
function frames(actions: readonly DeviceAction[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const a of actions) if (a.type === 'transmit') out.push(a.bytes.subarray(2));
  return out;
}

function run(newKeyId: number, tamperResult: boolean) {
  const flash = new NorFlash({ sectorSize: 1024, sectors: 4 });
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 5, key: new Uint8Array(64).fill(5) }, 'dh', credential);
  const mounted = keystore.mount();
  assert(mounted.provisioned && mounted.credential !== undefined, 'the credential mounts');
  if (!mounted.provisioned || mounted.credential === undefined) throw new Error('unreachable');
  const core = new DeviceCore({ deviceId, keys: mounted.keys, credential: mounted.credential, aead: nativeAead, keyAgreement: ka, random: seededRandom(3) });
  const nonce = new Uint8Array(16).fill(9);
  core.connected(0);
  core.receive(withLengthPrefix(encodeChallenge(nonce)), 0);
  const init = frames(core.receive(withLengthPrefix(hdr(MessageType.NO_KEY, 1, nonce)), 0))[0];
  assert(init !== undefined, 'RECOVER_INIT sent');
  if (init === undefined) throw new Error('unreachable');
  const verified = hubVerifyRecoverInit(ka, { hubStatic: { privateKey: hubPrivate, publicKey: hubPublic }, devicePublicKey: credential.device.publicKey, deviceId, hubNonce: nonce }, init);
  const reply = hubRecoveryReply(ka, seededRandom(4), { k1: verified.k1, initFrame: init, header: hdr(MessageType.RECOVER_REPLY, 2, nonce), newKeyId, devicePublicKey: credential.device.publicKey, deviceShare: verified.claim.deviceShare });
  const finish = frames(core.receive(withLengthPrefix(reply.frame), 0))[0];
  return { core, keystore, flash, finish, reply, nonce, tamperResult };
}

test(G, 'recovery on XS: ACCEPTED is persisted in the journal before anything is sealed under N', () => {
  const { core, keystore, flash, finish, reply, nonce } = run(12, false);
  assert(finish !== undefined, 'RECOVER_FINISH sent');
  if (finish === undefined) return;
  verifyRecoveryFinish(ka, reply.secrets.macKey, finish);
  const result = recoveryResultFrame(ka, reply.secrets.macKey, hdr(MessageType.RECOVER_RESULT, 3, nonce), RecoveryStatus.ACCEPTED, 0);
  const actions = core.receive(withLengthPrefix(result), 0);
  const persist = actions.find((a) => a.type === 'persist');
  assert(persist !== undefined && persist.type === 'persist' && persist.op.kind === 'storeRecovered', 'DK14 persist');
  assertEqual(frames(actions).length, 0, 'nothing sealed before the persist');
  if (persist === undefined || persist.type !== 'persist' || persist.op.kind !== 'storeRecovered') return;
  keystore.storeRecovered(persist.op.id, persist.op.key);
  const after = core.persisted(1);
  assert(after.some((a) => a.type === 'close' && a.reconnectNow === true), 'close and reconnect at once');
  const again = new Keystore(flash).mount();
  assert(again.provisioned && again.keys.future?.id === 12, 'the journal holds N');
  if (again.provisioned && again.keys.future !== undefined) assertBytes(again.keys.future.key, reply.secrets.recoveredKey, 'the same K_N as the hub');
  core.connected(2);
  const hello = frames(core.receive(withLengthPrefix(encodeChallenge(new Uint8Array(16).fill(8))), 2))[0];
  assert(hello !== undefined && decodeHeader(hello).keyId === 12, 'the next HELLO is sealed under N');
});

test(G, 'recovery on XS: an N equal to the active id, or a bad tag4, changes nothing', () => {
  const reused = run(5, false);
  assertEqual(reused.finish, undefined, 'no RECOVER_FINISH for N = active');
  assertEqual(reused.core.keys.future, undefined, 'no future key');
  const { core, finish, reply, nonce } = run(12, true);
  if (finish === undefined) throw new Error('no finish');
  const result = recoveryResultFrame(ka, reply.secrets.macKey, hdr(MessageType.RECOVER_RESULT, 3, nonce), RecoveryStatus.ACCEPTED, 0);
  result[result.length - 1] = (result[result.length - 1] as number) ^ 1;
  const actions = core.receive(withLengthPrefix(result), 0);
  assert(!actions.some((a) => a.type === 'persist'), 'a bad tag4 persists nothing');
  assertEqual(core.keys.future, undefined, 'no future key');
});
