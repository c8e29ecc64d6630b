/**
 * Accepted sockets and their Link table: the only place that touches a
 * socket after accept (tools/hub/listeners.ts accepts, tools/hub/link.ts
 * wraps one socket).
 *
 * The path of one frame, from here:
 *   socket 'data' → `#onData` → `HubCore.receive(conn, chunk)` (the core
 *   parses it, or keeps it while the device's persist is outstanding) →
 *   actions → tools/hub/pipeline.ts → … → `transmit` comes back to `write`.
 *
 * Rules:
 * - Bytes are never held here: every chunk goes to the core at once.
 * - Back-pressure is the core's flag: when `HubCore.wantsInput(conn)` is
 *   false after a chunk, the socket is paused; after each commit batch
 *   (`resumeReady`) the paused links, and only those, are resumed once the
 *   core wants input again.
 * - Limits (docs/HUB.md §5): a connection is counted from the kernel's
 *   accept — for TLS before its handshake — until it closes (`opened`,
 *   `#release`). `maxConnections` open in all: at the cap a
 *   pre-authentication connection is evicted to admit the new one, which is
 *   refused only when every open connection is authenticated.
 *   `maxUnauthenticated` before the HELLO authenticates: beyond it the
 *   source holding the most gives way, its oldest first
 *   (tools/hub/eviction.ts). `maxWriteBufferBytes` waiting to be written
 *   (beyond: dropped as a slow reader). The core closes a connection whose
 *   kept input exceeds its receive buffer (BUFFER_FULL). No per-connection
 *   timer: the core's tick ends handshakes that take too long, Node's
 *   `handshakeTimeout` TLS ones (tools/hub/listeners.ts destroys them).
 * - The Link table and the core's connections are the same set: a link is
 *   forgotten when its socket closes (`HubCore.closed` follows) or when the
 *   core closed it (a `close` action: the core already forgot it).
 */
import type { Socket } from 'node:net';
import { describeError, type LockstepError } from '../../modules/errors';
import type { ConnectionId } from '../../modules/hub/actions';
import type { HubCore } from '../../modules/hub/hub';
import { SourceCap, sourceOf } from './eviction';
import { Link, type Admission, type Transport } from './link';
import type { Logger } from './log';
import type { ConnectionLimits } from './options';
import type { ActionPipeline } from './pipeline';

export interface ConnectionCounters {
  refused: number;
  evicted: number;
  droppedSlowReaders: number;
  droppedInputOverflow: number;
  tlsHandshakeFailures: number;
  /** The most input the core kept for one connection during a persist. */
  maxQueuedInputBytes: number;
}

/**
 * Sees a link's input before the core (the PostgreSQL hub's lease gate,
 * tools/hub/postgres/lease-gate.ts): returns true when it took the chunk
 * (it hands the bytes on later with `Connections.feed`).
 */
export interface InputGate {
  take(link: Link, chunk: Uint8Array): boolean;
}

export class Connections {
  /** Set once by a host that fences its devices (PostgreSQL); none on SQLite. */
  gate: InputGate | undefined;
  readonly counters: ConnectionCounters = {
    refused: 0,
    evicted: 0,
    droppedSlowReaders: 0,
    droppedInputOverflow: 0,
    tlsHandshakeFailures: 0,
    maxQueuedInputBytes: 0,
  };
  readonly #links = new Map<ConnectionId, Link>();
  /** Pre-authentication connections, TLS handshakes included. */
  readonly #unauthenticated: SourceCap<Admission>;
  /** TLS connections whose handshake has not completed, by remote address:port. */
  readonly #handshaking = new Map<string, Admission>();
  /** Counted connections (admitted, not yet released). */
  #open = 0;
  /** Links whose socket is paused because the core did not want input. */
  readonly #paused = new Set<Link>();
  #nextId = 0;
  #stopped = false;

  constructor(
    private readonly core: HubCore,
    private readonly pipeline: ActionPipeline,
    private readonly limits: ConnectionLimits,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly recoveryAllowed: (source: string) => boolean = () => true,
  ) {
    this.#unauthenticated = new SourceCap(limits.maxUnauthenticated);
  }

  get size(): number {
    return this.#open;
  }

  get unauthenticated(): number {
    return this.#unauthenticated.size;
  }

  get(connection: ConnectionId): Link | undefined {
    return this.#links.get(connection);
  }

  /**
   * A TCP connection the kernel accepted (for TLS: before the handshake).
   * Counted from now; at a cap a pre-authentication connection gives way.
   * A TCP one goes to the core at once, a TLS one when `secured`.
   */
  opened(raw: Socket, transport: Transport): void {
    if (this.#stopped || (this.#open >= this.limits.maxConnections && !this.#evictOne('connection cap'))) {
      this.counters.refused++;
      raw.destroy();
      return;
    }
    const admission: Admission = {
      raw,
      source: sourceOf(raw.remoteAddress),
      handshakeKey: transport === 'tls' ? handshakeKey(raw) : undefined,
      link: undefined,
      counted: true,
    };
    this.#open++;
    raw.on('error', () => {});
    raw.once('close', () => this.#release(admission));
    this.#unauthenticated.add(admission, admission.source);
    if (this.#unauthenticated.over) this.#evictOne('unauthenticated cap');
    if (!admission.counted) return;
    if (admission.handshakeKey === undefined) this.#accept(raw, transport, admission);
    else this.#handshaking.set(admission.handshakeKey, admission);
  }

  /** A TLS handshake completed ('secureConnection'): the connection goes to the core. */
  secured(socket: Socket): void {
    const key = handshakeKey(socket);
    const admission = this.#handshaking.get(key);
    this.#handshaking.delete(key);
    if (admission === undefined || !admission.counted) {
      socket.destroy();
      return;
    }
    this.#accept(socket, 'tls', admission);
  }

  #accept(socket: Socket, transport: Transport, admission: Admission): void {
    const link = new Link(++this.#nextId, socket, transport, admission);
    admission.link = link;
    this.#links.set(link.id, link);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(link, chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.#forget(link));
    this.log.debug('connectionOpened', { connection: link.id, transport, remote: link.remoteAddress, source: admission.source });
    // Issue 14: the per-source recovery bucket decides whether a failing HELLO may get NO_KEY (docs/HUB.md §14.2).
    this.pipeline.apply(this.core.opened(link.id, this.now(), { recoveryAllowed: this.recoveryAllowed(admission.source) }));
  }

  /** Evicts the pre-authentication connection the policy picks (tools/hub/eviction.ts); false when there is none. */
  #evictOne(reason: string): boolean {
    const victim = this.#unauthenticated.victim();
    if (victim === undefined) return false;
    this.counters.evicted++;
    this.log.debug('connectionEvicted', { reason, source: victim.source, connection: victim.link?.id });
    if (victim.link !== undefined) this.drop(victim.link, `evicted: ${reason}`);
    else victim.raw.destroy();
    this.#release(victim);
    return true;
  }

  /** The connection no longer counts (closed, dropped or evicted); idempotent. */
  #release(admission: Admission): void {
    if (!admission.counted) return;
    admission.counted = false;
    this.#open--;
    this.#unauthenticated.remove(admission);
    if (admission.handshakeKey !== undefined && this.#handshaking.get(admission.handshakeKey) === admission) this.#handshaking.delete(admission.handshakeKey);
  }

  /** The connection's HELLO authenticated (a `deviceConnected` event): it no longer counts against the cap. */
  authenticated(connection: ConnectionId, deviceId: string): Link | undefined {
    const link = this.#links.get(connection);
    if (link === undefined) return undefined;
    link.deviceId = deviceId;
    this.#unauthenticated.remove(link.admission);
    return link;
  }

  /** A `transmit` action. */
  write(connection: ConnectionId, bytes: Uint8Array): void {
    const link = this.#links.get(connection);
    if (link === undefined || link.closed) return;
    if (!link.write(bytes, this.limits.maxWriteBufferBytes)) {
      this.counters.droppedSlowReaders++;
      this.drop(link, 'write buffer limit');
    }
  }

  /** A `close` action: the core already forgot the connection; only the socket remains. */
  closedByCore(connection: ConnectionId, error: LockstepError): void {
    const link = this.#links.get(connection);
    if (link === undefined) return;
    if (error.code === 'BUFFER_FULL') this.counters.droppedInputOverflow++;
    this.log.debug('connectionClosed', { connection: link.id, code: error.code, device: link.deviceId, source: link.admission.source });
    link.destroy();
    this.#remove(link);
  }

  /** After a commit batch: resumes the paused links whose device's input the core wants again. */
  resumeReady(): void {
    for (const link of this.#paused) {
      if (link.closed) {
        this.#paused.delete(link);
      } else if (this.core.wantsInput(link.id)) {
        this.#paused.delete(link);
        link.resume();
      }
    }
  }

  /** Ends a connection from this side (limits, eviction, shutdown). */
  drop(link: Link, reason: string): void {
    if (link.closed) return;
    this.log.debug('connectionDropped', { connection: link.id, reason, remote: link.remoteAddress, source: link.admission.source });
    link.destroy();
    this.#forget(link);
  }

  /** Refuses new sockets and drops every open one. */
  stop(reason: string): void {
    this.#stopped = true;
    for (const link of [...this.#links.values()]) this.drop(link, reason);
    for (const admission of [...this.#handshaking.values()]) {
      admission.raw.destroy();
      this.#release(admission);
    }
  }

  #onData(link: Link, chunk: Uint8Array): void {
    if (link.closed) return;
    if (this.gate?.take(link, chunk) === true) return;
    this.feed(link, chunk);
  }

  /** Hands input to the core (from the socket, or from the gate once it let the link through). */
  feed(link: Link, chunk: Uint8Array): void {
    if (link.closed) return;
    try {
      this.pipeline.apply(this.core.receive(link.id, chunk, this.now()));
    } catch (error) {
      // Only a core bug gets here (the core takes any bytes of a connection it knows); it costs this connection only.
      this.log.error('receiveFailed', { connection: link.id, message: describeError(error) });
      this.drop(link, 'receive failed');
      return;
    }
    if (link.closed || this.core.wantsInput(link.id)) return;
    this.counters.maxQueuedInputBytes = Math.max(this.counters.maxQueuedInputBytes, this.core.heldInputBytes(link.id));
    link.pause();
    this.#paused.add(link);
  }

  /** The socket is gone: the core learns it (`closed`). */
  #forget(link: Link): void {
    link.closed = true;
    if (!this.#remove(link)) return;
    this.pipeline.apply(this.core.closed(link.id, this.now()));
  }

  #remove(link: Link): boolean {
    if (!this.#links.delete(link.id)) return false;
    this.#release(link.admission);
    this.#paused.delete(link);
    return true;
  }
}

/** The same for the raw socket and the TLS socket over it. */
function handshakeKey(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
}
