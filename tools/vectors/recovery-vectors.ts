/**
 * Recovery vectors (docs/PROTOCOL.md §12.3, Appendix A): one whole handshake
 * from fixed static and ephemeral private keys, with every intermediate value,
 * so another implementation can check each step. Deterministic: the
 * ephemerals come from a random source that hands out the fixed keys.
 */
import { toHex } from '../../modules/bytes';
import type { KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import {
  deviceRecoveryInit,
  deviceRecoveryReply,
  hubRecoveryReply,
  hubVerifyRecoverInit,
  recoveryFinishFrame,
  recoveryResultFrame,
  RECOVERY_LABEL,
  type RecoveryCredential,
} from '../../modules/crypto/recovery';
import { HEADER_BYTES, MessageType, RecoveryStatus } from '../../modules/protocol/constants';
import { withLengthPrefix } from '../../modules/protocol/framing';
import { encodeHeader } from '../../modules/protocol/header';
import { VECTOR_INPUTS } from './protocol-vectors';

export interface RecoveryVectors {
  readonly inputs: Record<string, string | number>;
  readonly intermediate: Record<string, string>;
  readonly frames: { readonly name: string; readonly direction: 'hub→device' | 'device→hub'; readonly sequence: number; readonly wire: string }[];
  readonly recoveredKey: string;
}

function bytes(start: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (start + i) & 0xff);
}

/** Hands out the given private keys in order, then refuses (a vector must not draw more than it lists). */
function fixedRandom(queue: Uint8Array[]): RandomSource {
  return {
    fill(out: Uint8Array) {
      const next = queue.shift();
      if (next === undefined || next.length !== out.length) throw new Error('recovery vectors: unexpected draw');
      out.set(next);
    },
  };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `ka` must draw its ephemerals from the random source (no x25519GenerateKeyPair). */
export function generateRecoveryVectors(ka: KeyAgreementPrimitives): RecoveryVectors {
  if (ka.x25519GenerateKeyPair !== undefined) throw new Error('recovery vectors need a backend that draws from the injected random source');
  const deviceId = Uint8Array.from(Buffer.from(VECTOR_INPUTS.deviceId, 'hex'));
  const hubNonce = VECTOR_INPUTS.hubNonce;
  const deviceStaticPrivate = bytes(0x20);
  const hubStaticPrivate = bytes(0x40);
  const deviceEphemeralPrivate = bytes(0xa0);
  const hubEphemeralPrivate = bytes(0xc0);
  const device = { privateKey: deviceStaticPrivate, publicKey: ka.x25519PublicKey(deviceStaticPrivate) };
  const hub = { privateKey: hubStaticPrivate, publicKey: ka.x25519PublicKey(hubStaticPrivate) };
  const credential: RecoveryCredential = { device, hubStaticId: 1, hubPublicKey: hub.publicKey };
  // The scenario: the hub was restored to a backup holding key id 4; the device holds only key 6
  // (bytes of the vectors' key 2). N = max(4, 0, 6, 0) + 1 = 7.
  const deviceActiveId = 6;
  const hubActiveId = 4;
  const newKeyId = 7;
  const newestKey = VECTOR_INPUTS.key2;
  const header = (type: number, fromHub: boolean, sequence: number) => encodeHeader({ type: type as MessageType, fromHub, deviceId, keyId: 0, sequence, sessionId: hubNonce });
  const random = fixedRandom([deviceEphemeralPrivate.slice(), hubEphemeralPrivate.slice()]);
  const noKey = header(MessageType.NO_KEY, true, 1);
  const start = deviceRecoveryInit(ka, random, { credential, deviceId, hubNonce, header: header(MessageType.RECOVER_INIT, false, 1), activeKeyId: deviceActiveId, futureKeyId: 0, newestKey });
  const init = start.frame.slice();
  const k1 = start.k1.slice();
  const verified = hubVerifyRecoverInit(ka, { hubStatic: hub, devicePublicKey: device.publicKey, deviceId, hubNonce }, init);
  const replied = hubRecoveryReply(ka, random, { k1: verified.k1, initFrame: init, header: header(MessageType.RECOVER_REPLY, true, 2), newKeyId, devicePublicKey: device.publicKey, deviceShare: verified.claim.deviceShare });
  const secrets = deviceRecoveryReply(ka, start, credential, replied.frame);
  const finish = recoveryFinishFrame(ka, secrets.macKey, header(MessageType.RECOVER_FINISH, false, 2));
  const result = recoveryResultFrame(ka, replied.secrets.macKey, header(MessageType.RECOVER_RESULT, true, 3), RecoveryStatus.ACCEPTED, 0);
  const deviceEphemeralPublic = ka.x25519PublicKey(deviceEphemeralPrivate);
  const hubEphemeralPublic = ka.x25519PublicKey(hubEphemeralPrivate);
  return {
    inputs: {
      label: toHex(RECOVERY_LABEL),
      deviceId: VECTOR_INPUTS.deviceId,
      hubNonce: toHex(hubNonce),
      deviceStaticPrivate: toHex(deviceStaticPrivate),
      deviceStaticPublic: toHex(device.publicKey),
      hubStaticPrivate: toHex(hubStaticPrivate),
      hubStaticPublic: toHex(hub.publicKey),
      hubStaticId: 1,
      deviceEphemeralPrivate: toHex(deviceEphemeralPrivate),
      deviceEphemeralPublic: toHex(deviceEphemeralPublic),
      hubEphemeralPrivate: toHex(hubEphemeralPrivate),
      hubEphemeralPublic: toHex(hubEphemeralPublic),
      deviceActiveKeyId: deviceActiveId,
      deviceFutureKeyId: 0,
      deviceNewestKey: toHex(newestKey),
      hubActiveKeyId: hubActiveId,
      newKeyId,
    },
    intermediate: {
      check: toHex(verified.claim.check),
      es: toHex(ka.x25519(deviceEphemeralPrivate, hub.publicKey)),
      ss: toHex(ka.x25519(deviceStaticPrivate, hub.publicKey)),
      k1: toHex(k1),
      ee: toHex(ka.x25519(deviceEphemeralPrivate, hubEphemeralPublic)),
      se: toHex(ka.x25519(deviceStaticPrivate, hubEphemeralPublic)),
      macKey: toHex(secrets.macKey),
      infoOfSplit: toHex(concat(RECOVERY_LABEL, Uint8Array.of(0x02), init, replied.frame.subarray(0, HEADER_BYTES + 36))),
    },
    frames: [
      { name: 'NO_KEY', direction: 'hub→device', sequence: 1, wire: toHex(withLengthPrefix(noKey)) },
      { name: 'RECOVER_INIT', direction: 'device→hub', sequence: 1, wire: toHex(withLengthPrefix(init)) },
      { name: 'RECOVER_REPLY', direction: 'hub→device', sequence: 2, wire: toHex(withLengthPrefix(replied.frame)) },
      { name: 'RECOVER_FINISH', direction: 'device→hub', sequence: 2, wire: toHex(withLengthPrefix(finish)) },
      { name: 'RECOVER_RESULT', direction: 'hub→device', sequence: 3, wire: toHex(withLengthPrefix(result)) },
    ],
    recoveredKey: toHex(secrets.recoveredKey),
  };
}

export function recoveryVectorsMarkdown(v: RecoveryVectors): string {
  const lines = ['### Recovery (§12.3): a whole handshake', ''];
  lines.push('The hub was restored to a backup holding key id 4; the device holds only key id 6 (bytes of key id 2 above), so its HELLO fails and the hub answers NO_KEY; `N` = 7. Inputs, then every intermediate value (info of the second derivation = LABEL ‖ 02 ‖ m1 ‖ tag1 ‖ m2):', '');
  for (const [name, value] of Object.entries(v.inputs)) lines.push(`- ${name}: \`${value}\``);
  for (const [name, value] of Object.entries(v.intermediate)) lines.push(`- ${name}: \`${value}\``);
  lines.push(`- K_7 (the recovered key): \`${v.recoveredKey}\``, '');
  for (const frame of v.frames) {
    lines.push(`#### ${frame.name} (${frame.direction}, key id 0, seq ${frame.sequence})`, '', '```');
    for (let i = 0; i < frame.wire.length; i += 64) lines.push(frame.wire.slice(i, i + 64));
    lines.push('```', '');
  }
  return lines.join('\n');
}
