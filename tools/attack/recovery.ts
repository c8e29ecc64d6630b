/**
 * The recovery handshake of docs/PROTOCOL.md §12.2–12.3, written from the
 * spec with node:crypto (X25519 through ./dh.ts, HKDF-SHA-512) and no import
 * from modules/: what an impostor computes with whatever it holds. Each side
 * takes the static private key it *believes* to be the right one; an
 * impostor without the real one passes its own (or a guess), and the tags it
 * makes are then exactly as good as that key.
 *
 * Used by tests/recovery-attack.test.ts; checked against the spec's
 * Appendix A vectors (docs/vectors/recovery-vectors.json) there, so that an
 * attack that fails does not fail for a bug of this file.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { x25519, x25519PublicKey } from './dh';

export const RECOVERY_LABEL = Buffer.from('Lockstep v1 recovery', 'ascii');
export const HEADER_BYTES = 36;
export const MESSAGE = { CHALLENGE: 0x01, HELLO: 0x02, NO_KEY: 0x04, RECOVER_INIT: 0x05, RECOVER_REPLY: 0x06, RECOVER_FINISH: 0x07, RECOVER_RESULT: 0x08 } as const;
export const STATUS = { ACCEPTED: 0, IN_SYNC: 1, AWAITING_APPROVAL: 2, REFUSED: 3, RATE_LIMITED: 4, KEY_IDS_EXHAUSTED: 5 } as const;

const u32 = (value: number): Buffer => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out;
};

const hkdf = (salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Buffer => Buffer.from(hkdfSync('sha512', ikm, salt, info, length));
const info = (byte: number, ...tail: Uint8Array[]): Buffer => Buffer.concat([RECOVERY_LABEL, Buffer.of(byte), ...tail]);

/** §3: version 1 ‖ type ‖ flags (bit 0: from the hub) ‖ device id ‖ key id 0 ‖ seq ‖ session id. */
export function header(type: number, fromHub: boolean, deviceId: Uint8Array, sequence: number, hubNonce: Uint8Array): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out[0] = 1;
  out[1] = type;
  out.writeUInt16BE(fromHub ? 1 : 0, 2);
  Buffer.from(deviceId).copy(out, 4);
  out.writeUInt32BE(0, 12);
  out.writeUInt32BE(sequence, 16);
  Buffer.from(hubNonce).copy(out, 20);
  return out;
}

function agree(privateKey: Uint8Array, publicKey: Uint8Array): Buffer {
  const shared = x25519(privateKey, publicKey);
  if (shared === undefined) throw new Error('attacker: X25519 refused the share');
  return Buffer.from(shared);
}

export interface InitFields {
  readonly deviceShare: Buffer;
  readonly hubStaticId: number;
  readonly activeKeyId: number;
  readonly futureKeyId: number;
  readonly check: Buffer;
  readonly tag1: Buffer;
}

export function parseInit(frame: Uint8Array): InitFields {
  if (frame.length !== 128) throw new Error(`attacker: RECOVER_INIT of ${frame.length} bytes`);
  const b = Buffer.from(frame);
  return { deviceShare: b.subarray(36, 68), hubStaticId: b.readUInt32BE(68), activeKeyId: b.readUInt32BE(72), futureKeyId: b.readUInt32BE(76), check: b.subarray(80, 96), tag1: b.subarray(96, 128) };
}

/** k1 of §12.3 from the hub's side: es = X25519(s_h, E_d), ss = X25519(s_h, S_d). */
function hubK1(hubPrivate: Uint8Array, hubPublic: Uint8Array, devicePublic: Uint8Array, deviceId: Uint8Array, hubNonce: Uint8Array, deviceShare: Uint8Array): Buffer {
  return hkdf(hubNonce, Buffer.concat([agree(hubPrivate, deviceShare), agree(hubPrivate, devicePublic)]), info(0x01, deviceId, devicePublic, hubPublic), 64);
}

/** The hub's part of a handshake, as an impostor holding `hubPrivate` (the real s_h, or not) runs it. */
export class ImpostorHubHandshake {
  #macKey: Buffer | undefined;
  recoveredKey: Buffer | undefined;
  /** Whether tag1 verified under this hub's k1 (an impostor may go on regardless). */
  tag1Valid = false;

  constructor(
    private readonly context: {
      readonly hubPrivate: Uint8Array;
      /** S_h as the device knows it (public: in every device image). */
      readonly hubPublic: Uint8Array;
      readonly devicePublic: Uint8Array;
      readonly deviceId: Uint8Array;
      readonly hubNonce: Uint8Array;
    },
  ) {}

  /** RECOVER_REPLY for `init` with `newKeyId`, from a fresh e_h (or `ephemeral`). */
  reply(init: Uint8Array, newKeyId: number, ephemeral: Uint8Array = randomPrivate()): Buffer {
    const c = this.context;
    const fields = parseInit(init);
    const k1 = hubK1(c.hubPrivate, c.hubPublic, c.devicePublic, c.deviceId, c.hubNonce, fields.deviceShare);
    this.tag1Valid = hkdf(k1, Buffer.from(init).subarray(0, 96), info(0x11), 32).equals(fields.tag1);
    const m2 = Buffer.concat([header(MESSAGE.RECOVER_REPLY, true, c.deviceId, 2, c.hubNonce), Buffer.from(x25519PublicKey(ephemeral)), u32(newKeyId)]);
    const out = hkdf(k1, Buffer.concat([agree(ephemeral, fields.deviceShare), agree(ephemeral, c.devicePublic)]), info(0x02, init.subarray(0, 96), init.subarray(96, 128), m2), 128);
    this.#macKey = out.subarray(0, 64);
    this.recoveredKey = out.subarray(64);
    return Buffer.concat([m2, hkdf(this.#macKey, m2, info(0x12), 32)]);
  }

  /** Whether a RECOVER_FINISH carries a valid tag3 under this handshake's MAC key. */
  finishValid(finish: Uint8Array): boolean {
    if (this.#macKey === undefined || finish.length !== 68) return false;
    return hkdf(this.#macKey, finish.subarray(0, 36), info(0x13), 32).equals(Buffer.from(finish.subarray(36)));
  }

  /** RECOVER_RESULT with `status`. */
  result(status: number, retryAfterSeconds = 0): Buffer {
    if (this.#macKey === undefined) throw new Error('attacker: no reply sent');
    const c = this.context;
    const m4 = Buffer.concat([header(MESSAGE.RECOVER_RESULT, true, c.deviceId, 3, c.hubNonce), Buffer.from([status >> 8, status & 0xff]), u32(retryAfterSeconds)]);
    return Buffer.concat([m4, hkdf(this.#macKey, m4, info(0x14), 32)]);
  }
}

/** The device's part, as an impostor holding `devicePrivate` (the real s_d, or not) and the device's newest key runs it. */
export class ImpostorDeviceHandshake {
  #k1: Buffer | undefined;
  #init: Buffer | undefined;
  #ephemeral: Uint8Array;
  #macKey: Buffer | undefined;
  recoveredKey: Buffer | undefined;
  newKeyId: number | undefined;

  constructor(
    private readonly context: {
      readonly devicePrivate: Uint8Array;
      /** S_d as the hub's record has it. */
      readonly devicePublic: Uint8Array;
      readonly hubPublic: Uint8Array;
      readonly hubStaticId: number;
      readonly deviceId: Uint8Array;
      readonly hubNonce: Uint8Array;
      readonly activeKeyId: number;
      readonly futureKeyId: number;
      /** The key the device seals with (the attacker stole it). */
      readonly newestKey: Uint8Array;
    },
    ephemeral: Uint8Array = randomPrivate(),
  ) {
    this.#ephemeral = ephemeral;
  }

  init(): Buffer {
    const c = this.context;
    const share = Buffer.from(x25519PublicKey(this.#ephemeral));
    const k1 = hkdf(c.hubNonce, Buffer.concat([agree(this.#ephemeral, c.hubPublic), agree(c.devicePrivate, c.hubPublic)]), info(0x01, c.deviceId, c.devicePublic, c.hubPublic), 64);
    const check = hkdf(c.newestKey, Buffer.concat([c.hubNonce, share]), info(0x10), 16);
    const m1 = Buffer.concat([header(MESSAGE.RECOVER_INIT, false, c.deviceId, 1, c.hubNonce), share, u32(c.hubStaticId), u32(c.activeKeyId), u32(c.futureKeyId), check]);
    this.#k1 = k1;
    this.#init = Buffer.concat([m1, hkdf(k1, m1, info(0x11), 32)]);
    return this.#init;
  }

  /** RECOVER_FINISH for `reply` (tag2 is not checked: the impostor answers whatever comes). */
  finish(reply: Uint8Array): Buffer {
    const c = this.context;
    if (this.#k1 === undefined || this.#init === undefined) throw new Error('attacker: no init sent');
    if (reply.length !== 104) throw new Error(`attacker: RECOVER_REPLY of ${reply.length} bytes`);
    const hubShare = reply.subarray(36, 68);
    this.newKeyId = Buffer.from(reply).readUInt32BE(68);
    const m2 = reply.subarray(0, 72);
    const out = hkdf(this.#k1, Buffer.concat([agree(this.#ephemeral, hubShare), agree(c.devicePrivate, hubShare)]), info(0x02, this.#init.subarray(0, 96), this.#init.subarray(96), m2), 128);
    this.#macKey = out.subarray(0, 64);
    this.recoveredKey = out.subarray(64);
    const hdr3 = header(MESSAGE.RECOVER_FINISH, false, c.deviceId, 2, c.hubNonce);
    return Buffer.concat([hdr3, hkdf(this.#macKey, hdr3, info(0x13), 32)]);
  }

  /** The hub's decision, if tag4 verifies under this handshake's MAC key. */
  readResult(result: Uint8Array): { status: number; retryAfterSeconds: number } | undefined {
    if (this.#macKey === undefined || result.length !== 74) return undefined;
    const b = Buffer.from(result);
    if (!hkdf(this.#macKey, b.subarray(0, 42), info(0x14), 32).equals(b.subarray(42))) return undefined;
    return { status: b.readUInt16BE(36), retryAfterSeconds: b.readUInt32BE(38) };
  }
}

export function randomPrivate(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}
