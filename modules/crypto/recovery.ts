/**
 * The recovery handshake's cryptography (docs/PROTOCOL.md §12.3), modelled
 * on Noise KK (-> e, es, ss / <- e, ee, se) with the CHALLENGE nonce as the
 * prologue, a third message that proves the device live, and a fourth that
 * carries the hub's decision:
 *
 *   check = HKDF(K_newest, Nh ‖ E_d, LABEL ‖ 0x10, 16)
 *   k1    = HKDF(Nh, es ‖ ss, LABEL ‖ 0x01 ‖ id ‖ S_d ‖ S_h, 64)      tag1 = HKDF(k1, m1, LABEL ‖ 0x11, 32)
 *   m ‖ K = HKDF(k1, ee ‖ se, LABEL ‖ 0x02 ‖ m1 ‖ tag1 ‖ m2, 128)   tag2/3/4 = HKDF(m, …, LABEL ‖ 0x12/13/14, 32)
 *
 * Only X25519 and HKDF-SHA-512 (KeyAgreementPrimitives) are used; this file
 * composes them and owns the checks every side shares: exact lengths,
 * all-zero X25519 results (BAD_KEY_SHARE), tags compared in constant time
 * (AUTH_FAILED) before any field of their message is used. Nothing here
 * keeps state or does I/O; the cores own the ephemerals and wipe them.
 */
import { concatBytes, constantTimeEqual } from '../bytes';
import { LockstepError } from '../errors';
import {
  DEVICE_ID_BYTES,
  HEADER_BYTES,
  KEY_BYTES,
  KEY_SHARE_BYTES,
  NONCE_BYTES,
  RECOVER_FINISH_FRAME_BYTES,
  RECOVER_INIT_FRAME_BYTES,
  RECOVER_REPLY_FRAME_BYTES,
  RECOVER_RESULT_FRAME_BYTES,
  RECOVERY_CHECK_BYTES,
  RECOVERY_TAG_BYTES,
  X25519_PRIVATE_KEY_BYTES,
} from '../protocol/constants';
import { drawEphemeral, type EphemeralKeyPair } from './dh-rekey';
import type { KeyAgreementPrimitives, RandomSource } from './primitives';

/** "Lockstep v1 recovery" in ASCII (§12.3). */
export const RECOVERY_LABEL = Uint8Array.of(0x4c, 0x6f, 0x63, 0x6b, 0x73, 0x74, 0x65, 0x70, 0x20, 0x76, 0x31, 0x20, 0x72, 0x65, 0x63, 0x6f, 0x76, 0x65, 0x72, 0x79);

/** A static X25519 pair: the device's (s_d, S_d) or one of the hub's (s_h, S_h). */
export interface StaticKeyPair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** What a device holds to recover (§12.6): its own static pair and the hub's public key with its id. */
export interface RecoveryCredential {
  readonly device: StaticKeyPair;
  readonly hubStaticId: number;
  readonly hubPublicKey: Uint8Array;
}

/** RECOVER_INIT's fields after the header (§12.2), as the device sent them. */
export interface RecoveryClaim {
  readonly deviceShare: Uint8Array;
  readonly hubStaticId: number;
  readonly activeKeyId: number;
  /** 0 when the device holds no future key. */
  readonly futureKeyId: number;
  readonly check: Uint8Array;
}

/** The result of the second message on either side: the handshake's MAC key and the recovered key. */
export interface RecoverySecrets {
  readonly newKeyId: number;
  /** 64 bytes; the owner wipes it when the handshake ends. */
  readonly macKey: Uint8Array;
  /** K_N, 64 bytes. */
  readonly recoveredKey: Uint8Array;
}

const INFO_CHECK = 0x10;
const INFO_K1 = 0x01;
const INFO_SPLIT = 0x02;
const INFO_TAG1 = 0x11;
const INFO_TAG2 = 0x12;
const INFO_TAG3 = 0x13;
const INFO_TAG4 = 0x14;

// RECOVER_INIT body offsets (after the 36-byte header).
const INIT_SHARE_AT = HEADER_BYTES;
const INIT_HUB_STATIC_AT = INIT_SHARE_AT + KEY_SHARE_BYTES;
const INIT_ACTIVE_AT = INIT_HUB_STATIC_AT + 4;
const INIT_FUTURE_AT = INIT_ACTIVE_AT + 4;
const INIT_CHECK_AT = INIT_FUTURE_AT + 4;
const INIT_TAG_AT = INIT_CHECK_AT + RECOVERY_CHECK_BYTES;
// RECOVER_REPLY body offsets.
const REPLY_SHARE_AT = HEADER_BYTES;
const REPLY_ID_AT = REPLY_SHARE_AT + KEY_SHARE_BYTES;
const REPLY_TAG_AT = REPLY_ID_AT + 4;
// RECOVER_RESULT body offsets.
const RESULT_STATUS_AT = HEADER_BYTES;
const RESULT_RETRY_AT = RESULT_STATUS_AT + 2;
const RESULT_TAG_AT = RESULT_RETRY_AT + 4;

function labelled(tail: readonly Uint8Array[], infoByte: number): Uint8Array {
  let length = RECOVERY_LABEL.length + 1;
  for (const part of tail) length += part.length;
  const out = new Uint8Array(length);
  out.set(RECOVERY_LABEL, 0);
  out[RECOVERY_LABEL.length] = infoByte;
  let at = RECOVERY_LABEL.length + 1;
  for (const part of tail) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) throw new LockstepError('LOCAL_BAD_ARGUMENT', `${what} must be ${length} bytes`);
}

/** X25519 with the all-zero check of RFC 7748 §6.1, in constant time; a backend's refusal is BAD_KEY_SHARE too. */
function agree(primitives: KeyAgreementPrimitives, privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== KEY_SHARE_BYTES) throw new LockstepError('BAD_KEY_SHARE', 'a public key is 32 bytes');
  let shared: Uint8Array;
  try {
    shared = primitives.x25519(privateKey, publicKey);
  } catch {
    throw new LockstepError('BAD_KEY_SHARE', 'the X25519 backend refused the key');
  }
  let any = 0;
  for (let i = 0; i < shared.length; i++) any |= shared[i] as number;
  if (shared.length !== 32 || any === 0) {
    shared.fill(0);
    throw new LockstepError('BAD_KEY_SHARE', 'all-zero X25519 result');
  }
  return shared;
}

/** Two agreements concatenated (es ‖ ss, ee ‖ se); the parts are wiped. */
function agreeTwice(primitives: KeyAgreementPrimitives, first: [Uint8Array, Uint8Array], second: [Uint8Array, Uint8Array]): Uint8Array {
  const a = agree(primitives, first[0], first[1]);
  let b: Uint8Array;
  try {
    b = agree(primitives, second[0], second[1]);
  } catch (error) {
    a.fill(0);
    throw error;
  }
  const ikm = concatBytes([a, b]);
  a.fill(0);
  b.fill(0);
  return ikm;
}

function tag(primitives: KeyAgreementPrimitives, key: Uint8Array, message: Uint8Array, infoByte: number): Uint8Array {
  return primitives.hkdfSha512(key, message, labelled([], infoByte), RECOVERY_TAG_BYTES);
}

function requireTag(primitives: KeyAgreementPrimitives, key: Uint8Array, message: Uint8Array, infoByte: number, received: Uint8Array): void {
  const expected = tag(primitives, key, message, infoByte);
  const ok = constantTimeEqual(expected, received);
  expected.fill(0);
  if (!ok) throw new LockstepError('AUTH_FAILED');
}

function u32(view: DataView, at: number): number {
  return view.getUint32(at);
}

function checkFrame(frame: Uint8Array, length: number, what: string): DataView {
  if (frame.length !== length) throw new LockstepError('BAD_PAYLOAD', `${what} of ${frame.length} bytes, expected ${length}`);
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
}

/** `check` (16 bytes): lets the hub tell, after authentication, whether the device's newest key is one it holds. */
export function recoveryCheck(primitives: KeyAgreementPrimitives, newestKey: Uint8Array, hubNonce: Uint8Array, deviceShare: Uint8Array): Uint8Array {
  requireLength(newestKey, KEY_BYTES, 'a key');
  requireLength(hubNonce, NONCE_BYTES, 'the hub nonce');
  requireLength(deviceShare, KEY_SHARE_BYTES, 'E_d');
  return primitives.hkdfSha512(newestKey, concatBytes([hubNonce, deviceShare]), labelled([], INFO_CHECK), RECOVERY_CHECK_BYTES);
}

/** Constant-time: does `claim.check` say the device seals with `key`? */
export function checkMatches(primitives: KeyAgreementPrimitives, key: Uint8Array, hubNonce: Uint8Array, claim: RecoveryClaim): boolean {
  const expected = recoveryCheck(primitives, key, hubNonce, claim.deviceShare);
  const ok = constantTimeEqual(expected, claim.check);
  expected.fill(0);
  return ok;
}

function k1Info(deviceId: Uint8Array, devicePublic: Uint8Array, hubPublic: Uint8Array): Uint8Array {
  requireLength(deviceId, DEVICE_ID_BYTES, 'a device id');
  return labelled([deviceId, devicePublic, hubPublic], INFO_K1);
}

/** Reads RECOVER_INIT's fields without verifying anything: the hub needs the hub static id to pick its key. */
export function parseRecoverInit(frame: Uint8Array): RecoveryClaim & { readonly tag: Uint8Array } {
  const view = checkFrame(frame, RECOVER_INIT_FRAME_BYTES, 'RECOVER_INIT');
  return {
    deviceShare: frame.slice(INIT_SHARE_AT, INIT_SHARE_AT + KEY_SHARE_BYTES),
    hubStaticId: u32(view, INIT_HUB_STATIC_AT),
    activeKeyId: u32(view, INIT_ACTIVE_AT),
    futureKeyId: u32(view, INIT_FUTURE_AT),
    check: frame.slice(INIT_CHECK_AT, INIT_CHECK_AT + RECOVERY_CHECK_BYTES),
    tag: frame.slice(INIT_TAG_AT),
  };
}

/** The device's handshake state between RECOVER_INIT and RECOVER_REPLY. */
export interface DeviceRecoveryStart {
  /** The whole RECOVER_INIT frame (header ‖ body), to send. */
  readonly frame: Uint8Array;
  /** e_d; wiped by deviceRecoveryReply, or by the core if the handshake ends first. */
  readonly ephemeral: EphemeralKeyPair;
  readonly k1: Uint8Array;
}

export interface DeviceRecoveryInput {
  readonly credential: RecoveryCredential;
  readonly deviceId: Uint8Array;
  readonly hubNonce: Uint8Array;
  /** The 36-byte RECOVER_INIT header as it will be sent. */
  readonly header: Uint8Array;
  readonly activeKeyId: number;
  readonly futureKeyId: number;
  /** The key the device seals with (future if held, else active). */
  readonly newestKey: Uint8Array;
}

/** Message 1 (RECOVER_INIT): draws e_d, computes es, ss, k1, check and tag1. */
export function deviceRecoveryInit(primitives: KeyAgreementPrimitives, random: RandomSource, input: DeviceRecoveryInput): DeviceRecoveryStart {
  requireLength(input.header, HEADER_BYTES, 'the header');
  requireLength(input.credential.device.privateKey, X25519_PRIVATE_KEY_BYTES, 's_d');
  const ephemeral = drawEphemeral(primitives, random);
  try {
    const ikm = agreeTwice(primitives, [ephemeral.privateKey, input.credential.hubPublicKey], [input.credential.device.privateKey, input.credential.hubPublicKey]);
    const k1 = primitives.hkdfSha512(input.hubNonce, ikm, k1Info(input.deviceId, input.credential.device.publicKey, input.credential.hubPublicKey), 64);
    ikm.fill(0);
    const frame = new Uint8Array(RECOVER_INIT_FRAME_BYTES);
    const view = new DataView(frame.buffer);
    frame.set(input.header, 0);
    frame.set(ephemeral.publicKey, INIT_SHARE_AT);
    view.setUint32(INIT_HUB_STATIC_AT, input.credential.hubStaticId);
    view.setUint32(INIT_ACTIVE_AT, input.activeKeyId);
    view.setUint32(INIT_FUTURE_AT, input.futureKeyId);
    frame.set(recoveryCheck(primitives, input.newestKey, input.hubNonce, ephemeral.publicKey), INIT_CHECK_AT);
    frame.set(tag(primitives, k1, frame.subarray(0, INIT_TAG_AT), INFO_TAG1), INIT_TAG_AT);
    return { frame, ephemeral, k1 };
  } catch (error) {
    ephemeral.privateKey.fill(0);
    throw error;
  }
}

function split(primitives: KeyAgreementPrimitives, k1: Uint8Array, ikm: Uint8Array, initFrame: Uint8Array, m2: Uint8Array, newKeyId: number): RecoverySecrets {
  const out = primitives.hkdfSha512(k1, ikm, labelled([initFrame, m2], INFO_SPLIT), 2 * KEY_BYTES);
  const secrets = { newKeyId, macKey: out.slice(0, KEY_BYTES), recoveredKey: out.slice(KEY_BYTES) };
  out.fill(0);
  return secrets;
}

/** Message 2 on the device: verifies tag2 (the hub holds s_h), then derives m and K_N. Wipes e_d either way. */
export function deviceRecoveryReply(primitives: KeyAgreementPrimitives, start: DeviceRecoveryStart, credential: RecoveryCredential, replyFrame: Uint8Array): RecoverySecrets {
  try {
    const view = checkFrame(replyFrame, RECOVER_REPLY_FRAME_BYTES, 'RECOVER_REPLY');
    const hubShare = replyFrame.subarray(REPLY_SHARE_AT, REPLY_SHARE_AT + KEY_SHARE_BYTES);
    const m2 = replyFrame.subarray(0, REPLY_TAG_AT);
    const ikm = agreeTwice(primitives, [start.ephemeral.privateKey, hubShare], [credential.device.privateKey, hubShare]);
    const secrets = split(primitives, start.k1, ikm, start.frame, m2, u32(view, REPLY_ID_AT));
    ikm.fill(0);
    try {
      requireTag(primitives, secrets.macKey, m2, INFO_TAG2, replyFrame.subarray(REPLY_TAG_AT));
    } catch (error) {
      secrets.macKey.fill(0);
      secrets.recoveredKey.fill(0);
      throw error;
    }
    return secrets;
  } finally {
    start.ephemeral.privateKey.fill(0);
    start.k1.fill(0);
  }
}

/** Message 3 (RECOVER_FINISH): `header` is its 36-byte header; returns the whole frame. */
export function recoveryFinishFrame(primitives: KeyAgreementPrimitives, macKey: Uint8Array, header: Uint8Array): Uint8Array {
  requireLength(header, HEADER_BYTES, 'the header');
  const frame = new Uint8Array(RECOVER_FINISH_FRAME_BYTES);
  frame.set(header, 0);
  frame.set(tag(primitives, macKey, header, INFO_TAG3), HEADER_BYTES);
  return frame;
}

/** Message 4 on the device: verifies tag4 and returns the hub's decision. */
export function verifyRecoveryResult(primitives: KeyAgreementPrimitives, macKey: Uint8Array, frame: Uint8Array): { status: number; retryAfterSeconds: number } {
  const view = checkFrame(frame, RECOVER_RESULT_FRAME_BYTES, 'RECOVER_RESULT');
  requireTag(primitives, macKey, frame.subarray(0, RESULT_TAG_AT), INFO_TAG4, frame.subarray(RESULT_TAG_AT));
  return { status: view.getUint16(RESULT_STATUS_AT), retryAfterSeconds: u32(view, RESULT_RETRY_AT) };
}

export interface HubRecoveryContext {
  readonly hubStatic: StaticKeyPair;
  readonly devicePublicKey: Uint8Array;
  readonly deviceId: Uint8Array;
  readonly hubNonce: Uint8Array;
}

/** Message 1 on the hub: verifies tag1 and returns the claim with k1. Stores nothing (rule R1). */
export function hubVerifyRecoverInit(primitives: KeyAgreementPrimitives, context: HubRecoveryContext, frame: Uint8Array): { claim: RecoveryClaim; k1: Uint8Array } {
  const parsed = parseRecoverInit(frame);
  const ikm = agreeTwice(primitives, [context.hubStatic.privateKey, parsed.deviceShare], [context.hubStatic.privateKey, context.devicePublicKey]);
  const k1 = primitives.hkdfSha512(context.hubNonce, ikm, k1Info(context.deviceId, context.devicePublicKey, context.hubStatic.publicKey), 64);
  ikm.fill(0);
  try {
    requireTag(primitives, k1, frame.subarray(0, INIT_TAG_AT), INFO_TAG1, parsed.tag);
  } catch (error) {
    k1.fill(0);
    throw error;
  }
  const { tag: _tag, ...claim } = parsed;
  return { claim, k1 };
}

/** Message 2 on the hub (RECOVER_REPLY): draws e_h, derives m and K_N, wipes e_h and k1. */
export function hubRecoveryReply(
  primitives: KeyAgreementPrimitives,
  random: RandomSource,
  input: { readonly k1: Uint8Array; readonly initFrame: Uint8Array; readonly header: Uint8Array; readonly newKeyId: number; readonly devicePublicKey: Uint8Array; readonly deviceShare: Uint8Array },
): { frame: Uint8Array; secrets: RecoverySecrets } {
  requireLength(input.header, HEADER_BYTES, 'the header');
  const ephemeral = drawEphemeral(primitives, random);
  try {
    const frame = new Uint8Array(RECOVER_REPLY_FRAME_BYTES);
    const view = new DataView(frame.buffer);
    frame.set(input.header, 0);
    frame.set(ephemeral.publicKey, REPLY_SHARE_AT);
    view.setUint32(REPLY_ID_AT, input.newKeyId);
    const m2 = frame.subarray(0, REPLY_TAG_AT);
    const ikm = agreeTwice(primitives, [ephemeral.privateKey, input.deviceShare], [ephemeral.privateKey, input.devicePublicKey]);
    const secrets = split(primitives, input.k1, ikm, input.initFrame, m2, input.newKeyId);
    ikm.fill(0);
    frame.set(tag(primitives, secrets.macKey, m2, INFO_TAG2), REPLY_TAG_AT);
    return { frame, secrets };
  } finally {
    ephemeral.privateKey.fill(0);
    input.k1.fill(0);
  }
}

/** Message 3 on the hub: verifies tag3 — the device holds s_d and took part in this handshake. */
export function verifyRecoveryFinish(primitives: KeyAgreementPrimitives, macKey: Uint8Array, frame: Uint8Array): void {
  checkFrame(frame, RECOVER_FINISH_FRAME_BYTES, 'RECOVER_FINISH');
  requireTag(primitives, macKey, frame.subarray(0, HEADER_BYTES), INFO_TAG3, frame.subarray(HEADER_BYTES));
}

/** Message 4 (RECOVER_RESULT): `header` is its 36-byte header; returns the whole frame. */
export function recoveryResultFrame(primitives: KeyAgreementPrimitives, macKey: Uint8Array, header: Uint8Array, status: number, retryAfterSeconds: number): Uint8Array {
  requireLength(header, HEADER_BYTES, 'the header');
  if (!Number.isInteger(status) || status < 0 || status > 0xffff) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'status is a u16');
  if (!Number.isInteger(retryAfterSeconds) || retryAfterSeconds < 0 || retryAfterSeconds > 0xffffffff) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'retry after is a u32');
  const frame = new Uint8Array(RECOVER_RESULT_FRAME_BYTES);
  const view = new DataView(frame.buffer);
  frame.set(header, 0);
  view.setUint16(RESULT_STATUS_AT, status);
  view.setUint32(RESULT_RETRY_AT, retryAfterSeconds);
  frame.set(tag(primitives, macKey, frame.subarray(0, RESULT_TAG_AT), INFO_TAG4), RESULT_TAG_AT);
  return frame;
}

/** RECOVER_REPLY's proposed id, read without verification (the device verifies tag2 first in deviceRecoveryReply). */
export function replyKeyId(frame: Uint8Array): number {
  const view = checkFrame(frame, RECOVER_REPLY_FRAME_BYTES, 'RECOVER_REPLY');
  return u32(view, REPLY_ID_AT);
}
