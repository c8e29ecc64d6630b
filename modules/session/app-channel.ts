/**
 * The application-data channel (docs/PROTOCOL.md §7): at-most-once, in-order
 * delivery within a session, and exactly-once across reconnections while
 * both ends stay up.
 *
 * Sender: each message gets the next u32 id in the sender's stream (an
 * 8-byte random stream id chosen when the endpoint starts). Unacknowledged
 * messages stay in a bounded outbox and are sent again, in order, on every
 * new session. Receiver: remembers (stream id, last delivered id) for the
 * PEER_STREAMS most recent sender streams and delivers a message only if its
 * id is greater than the last one of its stream; an unknown stream id (the
 * peer restarted) is a new entry, evicting the least recent one. Several
 * entries, not one: a device served by several hub instances (one stream
 * each) would otherwise take a stream it had already seen, when it returns
 * to its instance, for a restart, and deliver again a message whose
 * acknowledgement was lost (docs/VERIFICATION.md finding F3). Every DATA is
 * acknowledged with the highest id delivered of its stream (cumulative).
 */
import { bytesEqual, toHex } from '../bytes';
import { LockstepError } from '../errors';
import { MAX_APP_PAYLOAD_BYTES, OUTBOX_MESSAGES, STREAM_ID_BYTES } from '../protocol/constants';

/** What `enqueue` answers: the id the channel assigned, or why nothing was queued. */
export type EnqueueResult = { readonly messageId: number; readonly error?: undefined } | { readonly messageId?: undefined; readonly error: LockstepError };

/** Sender streams a receiver remembers (docs/PROTOCOL.md §7): more than the hub instances a device may alternate between. */
export const PEER_STREAMS = 4;

interface PeerStream {
  readonly streamId: Uint8Array;
  lastDelivered: number;
}

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
  /** Most recent first; at most PEER_STREAMS entries (bounded memory). */
  #peers: PeerStream[] = [];
  readonly #capacity: number;
  readonly #peerStreams: number;

  /** `peerStreams` below PEER_STREAMS only for tests that show why one is not enough (finding F3). */
  constructor(streamId: Uint8Array, capacity = OUTBOX_MESSAGES, peerStreams = PEER_STREAMS) {
    if (streamId.length !== STREAM_ID_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'stream id is 8 bytes');
    if (!Number.isInteger(peerStreams) || peerStreams < 1) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'remember at least one peer stream');
    this.streamId = streamId.slice();
    this.#capacity = capacity;
    this.#peerStreams = peerStreams;
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
      peerStream: this.#peers[0] === undefined ? undefined : toHex(this.#peers[0].streamId),
      lastDelivered: this.#peers[0]?.lastDelivered ?? 0,
      peerStreams: this.#peers.length,
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
    const peers = this.#peers;
    let index = 0;
    while (index < peers.length && !bytesEqual((peers[index] as PeerStream).streamId, streamId)) index++;
    // Most recent first, moved by hand: no splice/unshift (XS's splice hands memmove a null pointer on small arrays,
    // which its sanitizer build reports). At most PEER_STREAMS entries.
    const known = index < peers.length;
    const peer: PeerStream = known ? (peers[index] as PeerStream) : { streamId: streamId.slice(), lastDelivered: messageId };
    if (!known && peers.length < this.#peerStreams) peers.push(peer);
    for (let i = Math.min(index, peers.length - 1); i > 0; i--) peers[i] = peers[i - 1] as PeerStream;
    peers[0] = peer;
    if (!known) return { deliver: true, ackId: messageId };
    if (messageId > peer.lastDelivered) {
      peer.lastDelivered = messageId;
      return { deliver: true, ackId: messageId };
    }
    return { deliver: false, ackId: peer.lastDelivered };
  }
}
