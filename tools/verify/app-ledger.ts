/**
 * Application data, end to end (safety invariant S9, docs/PROTOCOL.md §7).
 * Every payload names its sender, the sender's incarnation (boot or
 * restart count) and a counter. The ledger checks every delivery:
 * - it was really sent (that sender, that incarnation, that counter);
 * - per receiver incarnation and sender incarnation, counters strictly
 *   increase (at most once, in order) and, after the first, without gaps
 *   (exactly once while both ends stay up).
 * A receiver that restarts has forgotten what it delivered: the protocol
 * promises nothing across that (§7), so the memory is per incarnation.
 */
import type { Side } from './frame-audit';

const PAYLOAD_BYTES = 16;

export class AppLedger {
  readonly #lastDelivered = new Map<string, number>();
  readonly #sent: Record<Side, Map<number, number>> = { device: new Map(), hub: new Map() };
  readonly #violation: (invariant: string, detail: string) => void;
  delivered = 0;
  sent = 0;

  constructor(violation: (invariant: string, detail: string) => void) {
    this.#violation = violation;
  }

  stateText(): string {
    return `${[...this.#lastDelivered.entries()].join(',')}|${[...this.#sent.device.entries()].join(',')}|${[...this.#sent.hub.entries()].join(',')}`;
  }

  /** A new message from `sender` (its counters run 1, 2, … per incarnation). */
  payload(sender: Side, incarnation: number, counter: number): Uint8Array {
    const sent = this.#sent[sender];
    sent.set(incarnation, Math.max(sent.get(incarnation) ?? 0, counter));
    this.sent++;
    return encode(sender, incarnation, counter);
  }

  /**
   * With hub instances (docs/VERIFICATION.md §5a) the receiver's memory has
   * a narrower scope: `sessions.order` names what at most once and in order
   * hold within (besides the incarnation), `sessions.gaps` what exactly once
   * holds within. A hub instance delivers without gaps within one lease
   * (another instance delivers in between), at most once within its run.
   * The device remembers one sender stream (app-channel.ts): a device that
   * returns to an instance after another one is a new receiver for it
   * (finding F3).
   */
  deliveredTo(receiver: Side, receiverIncarnation: number, payload: Uint8Array, sessions: { readonly order?: string; readonly gaps?: string } = {}): void {
    this.delivered++;
    const sender: Side = receiver === 'device' ? 'hub' : 'device';
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    if (payload.length !== PAYLOAD_BYTES || payload[0] !== (sender === 'device' ? 0x44 : 0x48)) {
      this.#violation('S9 app data at most once, in order', `${receiver} got a payload its peer never sent`);
      return;
    }
    const incarnation = view.getUint16(2);
    const counter = view.getUint32(4);
    const expected = encode(sender, incarnation, counter);
    let same = true;
    for (let i = 0; i < PAYLOAD_BYTES; i++) if (expected[i] !== payload[i]) same = false;
    if (!same || counter > (this.#sent[sender].get(incarnation) ?? 0) || counter === 0) {
      this.#violation('S9 app data at most once, in order', `${receiver} got ${sender} message ${incarnation}/${counter}, which was never sent`);
      return;
    }
    const key = sessions.order === undefined ? `${receiver}:${receiverIncarnation}:${incarnation}` : `${receiver}:${receiverIncarnation}:${incarnation}:${sessions.order}`;
    const last = this.#lastDelivered.get(key);
    const gapKey = sessions.gaps === undefined ? key : `${key}/${sessions.gaps}`;
    const lastInSession = sessions.gaps === undefined ? last : this.#lastDelivered.get(gapKey);
    if (last !== undefined && counter <= last) {
      this.#violation('S9 app data at most once, in order', `${receiver} got ${sender} message ${incarnation}/${counter} after ${last}`);
    } else if (lastInSession !== undefined && counter !== lastInSession + 1) {
      this.#violation('S9 app data at most once, in order', `${receiver} skipped from ${sender} message ${incarnation}/${lastInSession} to ${counter}`);
    }
    this.#lastDelivered.set(key, counter);
    if (sessions.gaps !== undefined) this.#lastDelivered.set(gapKey, counter);
  }
}

function encode(sender: Side, incarnation: number, counter: number): Uint8Array {
  const bytes = new Uint8Array(PAYLOAD_BYTES);
  const view = new DataView(bytes.buffer);
  bytes[0] = sender === 'device' ? 0x44 : 0x48;
  view.setUint16(2, incarnation);
  view.setUint32(4, counter);
  for (let i = 8; i < PAYLOAD_BYTES; i++) bytes[i] = (counter * 31 + i) & 0xff;
  return bytes;
}
