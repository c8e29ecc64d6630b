/**
 * Watches every frame the cores seal and every frame they authenticate,
 * through an Aead wrapper injected into each core (a host wrapper: the
 * cores are unchanged). Safety invariants S7 and S8 (docs/VERIFICATION.md):
 * - S8 genuine: a frame a core authenticates is byte-for-byte a frame the
 *   *peer* core sealed (not a forgery, not a modification, not one of its
 *   own reflected back) in the session it arrives on;
 * - S7 in order: within a session, authenticated sequence numbers run
 *   exactly 0,1,2… (device→hub) and 1,2,3… (hub→device): nothing accepted
 *   twice, nothing skipped, nothing out of order.
 * The cores check the sequence before they try a key, so a successful open
 * is an acceptance. Every seal is also reported (S1/S2 on the key a frame
 * is actually sealed with, whoever sealed it — an interposer included).
 */
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { decodeHeader } from '../../modules/protocol/header';
import { fnv1a } from './rng';

export type Side = 'device' | 'hub';

export interface AuditContext {
  /** Hex hub nonce of the connection the device is on (undefined when offline). */
  deviceSession(): string | undefined;
  /** Whether a connection with this hub nonce is open at the hub. */
  hubSessionOpen(nonceHex: string): boolean;
  /** A side sealed a frame under (keyId, key): S1/S2 at the moment of sealing. */
  sealing(side: Side, keyId: number, key: Uint8Array): void;
  violation(invariant: string, detail: string): void;
}

export class FrameAudit {
  readonly #sealed: Record<Side, Map<string, number>> = { device: new Map(), hub: new Map() };
  /** Last accepted sequence per (receiving side, session). */
  readonly #lastSequence = new Map<string, number>();
  readonly #context: AuditContext;
  opened = 0;
  sealed = 0;

  constructor(context: AuditContext) {
    this.#context = context;
  }

  /** Sequence memory (the seal logs only grow and are left out). */
  stateText(): string {
    return [...this.#lastSequence.entries()].map(([k, v]) => `${k}=${v}`).join(',');
  }

  wrap(base: Aead, side: Side): Aead {
    return {
      name: `${base.name} (audited, ${side})`,
      seal: (key, iv, aad, plaintext) => {
        this.#context.sealing(side, decodeHeader(aad).keyId, key);
        const sealed = base.seal(key, iv, aad, plaintext);
        const tag = sealed.subarray(sealed.length - 32);
        this.#sealed[side].set(toHex(tag), frameDigest(aad, iv, sealed.subarray(0, sealed.length - 32)));
        this.sealed++;
        return sealed;
      },
      open: (key, iv, aad, ciphertext, tag) => {
        const plaintext = base.open(key, iv, aad, ciphertext, tag);
        this.#accepted(side, aad, iv, ciphertext, tag);
        return plaintext;
      },
    };
  }

  #accepted(side: Side, aad: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): void {
    this.opened++;
    const peer: Side = side === 'device' ? 'hub' : 'device';
    const header = decodeHeader(aad);
    const what = `${side} accepted type 0x${header.type.toString(16)} key ${header.keyId} seq ${header.sequence}`;
    const sealedDigest = this.#sealed[peer].get(toHex(tag));
    if (sealedDigest === undefined) {
      const own = this.#sealed[side].has(toHex(tag));
      this.#context.violation('S8 genuine frames only', `${what}: ${own ? 'its own frame reflected back' : 'never sealed by the peer'}`);
    } else if (sealedDigest !== frameDigest(aad, iv, ciphertext)) {
      this.#context.violation('S8 genuine frames only', `${what}: a modified copy of a peer frame`);
    }
    const session = toHex(header.sessionId);
    if (side === 'device' && session !== this.#context.deviceSession()) {
      this.#context.violation('S8 genuine frames only', `${what}: from another session`);
    }
    if (side === 'hub' && !this.#context.hubSessionOpen(session)) {
      this.#context.violation('S8 genuine frames only', `${what}: for a session the hub does not have open`);
    }
    const slot = `${side}:${session}`;
    const expected = (this.#lastSequence.get(slot) ?? (side === 'hub' ? -1 : 0)) + 1;
    if (header.sequence !== expected) {
      this.#context.violation('S7 in order, once', `${what}: expected seq ${expected}`);
    }
    this.#lastSequence.set(slot, header.sequence);
  }
}

function frameDigest(aad: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): number {
  return fnv1a(ciphertext, fnv1a(iv, fnv1a(aad)));
}
