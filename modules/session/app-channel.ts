/**
 * The application-data channel (docs/PROTOCOL.md §7): at-most-once, in-order
 * delivery within a session, and exactly-once across reconnections while
 * both ends stay up.
 *
 * Sender: each message gets the next u32 id in the sender's stream (an
 * 8-byte random stream id chosen when the endpoint starts). Unacknowledged
 * messages stay in a bounded outbox and are sent again, in order, on every
 * new session. Receiver: remembers (stream id, last delivered id) and
 * delivers a message only if its id is greater than the last one of the same
 * stream; a new stream id (the peer restarted) resets the memory. Every DATA
 * is acknowledged with the highest id delivered (cumulative).
 */
import { bytesEqual, toHex } from '../bytes';
import { LockstepError } from '../errors';
import { MAX_APP_PAYLOAD_BYTES, OUTBOX_MESSAGES, STREAM_ID_BYTES } from '../protocol/constants';

/** What `enqueue` answers: the id the channel assigned, or why nothing was queued. */
export type EnqueueResult = { readonly messageId: number; readonly error?: undefined } | { readonly messageId?: undefined; readonly error: LockstepError };

export interface OutboxEntry {
  readonly messageId: number;
  readonly payload: Uint8Array;
}

export class AppChannel {
  readonly streamId: Uint8Array;
  #nextMessageId = 1;
  #outbox: OutboxEntry[] = [];
  /** Index into #outbox of the first entry not yet sent in this session. */
  #unsent = 0;
  #peerStream: Uint8Array | undefined;
  #lastDelivered = 0;
  readonly #capacity: number;

  constructor(streamId: Uint8Array, capacity = OUTBOX_MESSAGES) {
    if (streamId.length !== STREAM_ID_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'stream id is 8 bytes');
    this.streamId = streamId.slice();
    this.#capacity = capacity;
  }

  get outboxLength(): number {
    return this.#outbox.length;
  }

  get full(): boolean {
    return this.#outbox.length >= this.#capacity;
  }

  snapshot(): Record<string, unknown> {
    return {
      nextMessageId: this.#nextMessageId,
      outbox: this.#outbox.map((entry) => entry.messageId),
      unsent: this.#unsent,
      peerStream: this.#peerStream === undefined ? undefined : toHex(this.#peerStream),
      lastDelivered: this.#lastDelivered,
    };
  }

  /**
   * Queues a copy of `payload` and returns the id it will carry; or, with
   * nothing queued, LOCAL_PAYLOAD_TOO_LARGE or LOCAL_OUTBOX_FULL (the bounded
   * outbox is full: back-pressure, answered at the call, never thrown).
   */
  enqueue(payload: Uint8Array): EnqueueResult {
    if (payload.length > MAX_APP_PAYLOAD_BYTES) {
      return { error: new LockstepError('LOCAL_PAYLOAD_TOO_LARGE', `${payload.length} > ${MAX_APP_PAYLOAD_BYTES} bytes`) };
    }
    if (this.full) return { error: new LockstepError('LOCAL_OUTBOX_FULL', `${this.#capacity} messages unacknowledged`) };
    if (this.#nextMessageId > 0xffffffff) return { error: new LockstepError('LOCAL_OUTBOX_FULL', 'stream exhausted') };
    const entry = { messageId: this.#nextMessageId++, payload: payload.slice() };
    this.#outbox.push(entry);
    return { messageId: entry.messageId };
  }

  /** A new session started: everything unacknowledged is to be sent again. */
  restartSession(): void {
    this.#unsent = 0;
  }

  /** Entries not yet sent in this session, in order; marks them sent. */
  takeUnsent(): OutboxEntry[] {
    const out = this.#outbox.slice(this.#unsent);
    this.#unsent = this.#outbox.length;
    return out;
  }

  /** Cumulative acknowledgement; returns the ids newly acknowledged. */
  acknowledge(streamId: Uint8Array, messageId: number): number[] {
    if (!bytesEqual(streamId, this.streamId)) return [];
    const acked: number[] = [];
    while (this.#outbox.length > 0 && (this.#outbox[0] as OutboxEntry).messageId <= messageId) {
      acked.push((this.#outbox.shift() as OutboxEntry).messageId);
      if (this.#unsent > 0) this.#unsent--;
    }
    return acked;
  }

  /**
   * A DATA message arrived. Returns whether to deliver it, and the id to
   * acknowledge.
   */
  receive(streamId: Uint8Array, messageId: number): { deliver: boolean; ackId: number } {
    if (this.#peerStream === undefined || !bytesEqual(streamId, this.#peerStream)) {
      this.#peerStream = streamId.slice();
      this.#lastDelivered = messageId;
      return { deliver: true, ackId: messageId };
    }
    if (messageId > this.#lastDelivered) {
      this.#lastDelivered = messageId;
      return { deliver: true, ackId: messageId };
    }
    return { deliver: false, ackId: this.#lastDelivered };
  }
}
