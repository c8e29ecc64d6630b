// The recovery handshake's derivations, hub side (§12.3). X25519 and HKDF-SHA-512 only.
import { hkdfSync, timingSafeEqual } from 'node:crypto';
import { x25519 } from './wire';

export const LABEL = Buffer.from('Lockstep v1 recovery', 'ascii');
export const RECOVER_INIT_FRAME = 128;
export const RECOVER_FINISH_FRAME = 68;

export const STATUS = { ACCEPTED: 0, IN_SYNC: 1, AWAITING_APPROVAL: 2, REFUSED: 3, RATE_LIMITED: 4, KEY_IDS_EXHAUSTED: 5 } as const;

function hkdf(salt: Buffer, ikm: Buffer, info: Buffer, length: number): Buffer {
  return Buffer.from(hkdfSync('sha512', ikm, salt, info, length));
}

const infoByte = (b: number) => Buffer.concat([LABEL, Buffer.from([b])]);

export function checkOf(newestKey: Buffer, nh: Buffer, ed: Buffer): Buffer {
  return hkdf(newestKey, Buffer.concat([nh, ed]), infoByte(0x10), 16);
}

export function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface InitCheck { k1: Buffer; m1: Buffer; tag1: Buffer }

/** Verifies tag1 of RECOVER_INIT (frame = header ‖ body, 128 bytes). Null on an all-zero X25519 or a bad tag. */
export function verifyInit(frame: Buffer, hubStaticPrivate: Buffer, hubStaticPublic: Buffer, devicePublic: Buffer, deviceId: Buffer, nh: Buffer): InitCheck | null {
  const ed = frame.subarray(36, 68);
  const m1 = frame.subarray(0, 96);
  const tag1 = frame.subarray(96, 128);
  const es = x25519(hubStaticPrivate, ed);
  const ss = x25519(hubStaticPrivate, devicePublic);
  if (!es || !ss) return null;
  const k1 = hkdf(nh, Buffer.concat([es, ss]), Buffer.concat([infoByte(0x01), deviceId, devicePublic, hubStaticPublic]), 64);
  const expected = hkdf(k1, m1, infoByte(0x11), 32);
  if (!equal(expected, tag1)) return null;
  return { k1, m1: Buffer.from(m1), tag1: Buffer.from(tag1) };
}

/** From RECOVER_INIT's values and the hub's ephemeral: m, K_N and tag2 (m2 = hdr2 ‖ E_h ‖ N). */
export function replyKeys(init: InitCheck, ehPrivate: Buffer, ed: Buffer, devicePublic: Buffer, m2: Buffer): { m: Buffer; kN: Buffer; tag2: Buffer } | null {
  const ee = x25519(ehPrivate, ed);
  const se = x25519(ehPrivate, devicePublic);
  if (!ee || !se) return null;
  const out = hkdf(init.k1, Buffer.concat([ee, se]), Buffer.concat([infoByte(0x02), init.m1, init.tag1, m2]), 128);
  const m = out.subarray(0, 64);
  return { m, kN: out.subarray(64, 128), tag2: hkdf(m, m2, infoByte(0x12), 32) };
}

export function tag3Of(m: Buffer, hdr3: Buffer): Buffer {
  return hkdf(m, hdr3, infoByte(0x13), 32);
}

export function tag4Of(m: Buffer, m4: Buffer): Buffer {
  return hkdf(m, m4, infoByte(0x14), 32);
}
