/**
 * Sealing and opening frames for the conformance kit, on the core's own
 * codec (modules/protocol/frame.ts, header.ts, messages.ts) and node:crypto
 * (hosts/node/crypto.ts): the kit builds exactly the bytes docs/PROTOCOL.md
 * §3–§6 define, in either direction, and can also build what no compliant
 * peer would (a wrong direction bit, a reused seq, another session id) —
 * the header fields are all the caller's.
 */
import type { Aead } from '../../../modules/crypto/primitives';
import { LockstepError } from '../../../modules/errors';
import { IV_BYTES, MessageType, NONCE_BYTES } from '../../../modules/protocol/constants';
import { decodeChallenge, encodeChallenge, openFrame, sealFrame } from '../../../modules/protocol/frame';
import { decodeHeader, type Header } from '../../../modules/protocol/header';
import type { Message } from '../../../modules/protocol/messages';
import { nodeAead, nodeRandom } from '../../../hosts/node/crypto';

export type { Header } from '../../../modules/protocol/header';
export type { Message } from '../../../modules/protocol/messages';

export interface SealArgs {
  /** The direction bit (flags bit 0): true for hub → device frames. */
  readonly fromHub: boolean;
  readonly deviceId: Uint8Array;
  readonly keyId: number;
  readonly seq: number;
  readonly sessionId: Uint8Array;
  /** The 64-byte key named by keyId (or any other key: a frame that must fail authentication). */
  readonly key: Uint8Array;
  readonly message: Message;
  /** The KEY_SHARE extension (flags bit 1, §11.2): device → hub only. */
  readonly share?: Uint8Array;
  /** A fixed IV (vectors); fresh random bytes otherwise. */
  readonly iv?: Uint8Array;
  readonly aead?: Aead;
}

/** A sealed frame (without its length prefix). */
export function sealWire(args: SealArgs): Uint8Array {
  const iv = args.iv ?? freshBytes(IV_BYTES);
  return sealFrame({
    aead: args.aead ?? nodeAead,
    key: args.key,
    iv,
    header: {
      fromHub: args.fromHub,
      deviceId: args.deviceId,
      keyId: args.keyId,
      sequence: args.seq,
      sessionId: args.sessionId,
      ...(args.share === undefined ? {} : { share: args.share }),
    },
    message: args.message,
  });
}

/** The header of a received frame, or the typed error its header checks give (§3). Never throws. */
export function inspectFrame(frame: Uint8Array): { readonly header: Header } | { readonly error: LockstepError } {
  try {
    return { header: decodeHeader(frame) };
  } catch (error) {
    return { error: error instanceof LockstepError ? error : new LockstepError('BAD_HEADER', String(error)) };
  }
}

export interface Opened {
  readonly header: Header;
  readonly message: Message;
}

/**
 * Verifies and decrypts a sealed frame under `key` (the tag first, in
 * constant time, §4 step 5). Throws the core's typed error (AUTH_FAILED,
 * BAD_PAYLOAD, BAD_HEADER …).
 */
export function openWire(frame: Uint8Array, key: Uint8Array, aead: Aead = nodeAead): Opened {
  const header = decodeHeader(frame);
  if (header.type === MessageType.CHALLENGE) throw new LockstepError('UNEXPECTED_MESSAGE', 'a CHALLENGE is not sealed');
  return { header, message: openFrame(aead, key, frame, header) };
}

/** Opens under whichever key `keyFor` gives for the header's key id; undefined key → UNKNOWN_KEY_ID. */
export function openWithKeys(frame: Uint8Array, keyFor: (keyId: number) => Uint8Array | undefined, aead: Aead = nodeAead): Opened {
  const header = decodeHeader(frame);
  const key = keyFor(header.keyId);
  if (key === undefined) throw new LockstepError('UNKNOWN_KEY_ID', `key id ${header.keyId}`);
  return openWire(frame, key, aead);
}

/** A CHALLENGE frame (hub → device, unsealed, §6.1). */
export function challengeWire(hubNonce: Uint8Array): Uint8Array {
  return encodeChallenge(hubNonce);
}

/** The hub nonce of a CHALLENGE; throws BAD_HEADER for a malformed one (§6.1: key id 0, seq 0, device id zero, direction hub). */
export function readChallenge(frame: Uint8Array): Uint8Array {
  const header = decodeHeader(frame);
  if (header.type !== MessageType.CHALLENGE) throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${header.type.toString(16)}, not CHALLENGE`);
  return decodeChallenge(frame, header);
}

/** Fresh bytes from node:crypto (IVs, nonces, keys, stream ids). */
export function freshBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  nodeRandom.fill(bytes);
  return bytes;
}

/** A fresh device nonce for a HELLO. */
export function freshNonce(): Uint8Array {
  return freshBytes(NONCE_BYTES);
}

/** The name of a message type, for evidence ("0x21 REKEY_ACK"). */
export function typeName(type: number): string {
  const entry = Object.entries(MessageType).find(([, value]) => value === type);
  return `0x${type.toString(16).padStart(2, '0')} ${entry?.[0] ?? 'unknown'}`;
}
