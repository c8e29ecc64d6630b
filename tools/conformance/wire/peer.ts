/**
 * A raw socket peer for the conformance kit (both modes): it sends frames
 * (or any bytes, for cuts and malformed input) and receives length-prefixed
 * frames through the core's FrameReader, which checks the length before it
 * allocates (docs/PROTOCOL.md §2), into a bounded queue. Every frame either
 * way is recorded with its time (wire/recording.ts) for the evidence.
 *
 * Bounded: at most `maxQueuedFrames` received frames wait unread (more and
 * the peer is dropped: a hub that floods fails visibly, the kit's memory
 * does not grow); connections go through a ConnectionBudget, so a run never
 * holds more sockets than it was allowed.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { LockstepError } from '../../../modules/errors';
import { LENGTH_PREFIX_BYTES } from '../../../modules/protocol/constants';
import { FrameReader, withLengthPrefix } from '../../../modules/protocol/framing';
import { FrameRecording } from './recording';

export interface WireTarget {
  readonly host: string;
  readonly port: number;
  /** TLS with this trust anchor (PEM); plain TCP when absent. */
  readonly tls?: { readonly ca: string | Buffer; readonly servername?: string };
}

/** What `next` yields: a whole frame (no length prefix), a frame the reader refused (its bytes were skipped), the close, or nothing in time. */
export type WireEvent =
  | { readonly kind: 'frame'; readonly frame: Uint8Array; readonly atMs: number }
  | { readonly kind: 'invalid'; readonly error: LockstepError; readonly atMs: number }
  | { readonly kind: 'closed'; readonly atMs: number }
  | { readonly kind: 'timeout' };

export interface WirePeerOptions {
  /** Shared by every peer of one scenario (or of a whole run) so the evidence is in one timeline. */
  readonly recording?: FrameRecording;
  /** Received frames kept unread; one more drops the connection (`overflowed`). Default 256. */
  readonly maxQueuedFrames?: number;
  /** Connection timeout (TCP connect, plus the TLS handshake). Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Counts this socket against a run's limit. */
  readonly budget?: ConnectionBudget;
}

const DEFAULT_MAX_QUEUED_FRAMES = 256;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/**
 * The limit on sockets a run holds at once (`--max-connections`), and the
 * count of all it opened. `acquire` waits for a free slot (never more than
 * `max` open), up to `timeoutMs`.
 */
export class ConnectionBudget {
  #open = 0;
  #opened = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the connection budget is at least 1');
  }

  get open(): number {
    return this.#open;
  }

  /** Sockets opened so far. */
  get opened(): number {
    return this.#opened;
  }

  async acquire(timeoutMs = 30_000): Promise<() => void> {
    if (this.#open >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          const at = this.#waiting.indexOf(wake);
          if (at >= 0) this.#waiting.splice(at, 1);
          reject(new LockstepError('TIMEOUT', `no free connection within ${timeoutMs} ms (limit ${this.max})`));
        }, timeoutMs);
        const wake = (): void => {
          clearTimeout(timer);
          resolve();
        };
        this.#waiting.push(wake);
      });
    }
    this.#open++;
    this.#opened++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
      this.#waiting.shift()?.();
    };
  }
}

export class WirePeer {
  readonly recording: FrameRecording;
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #queue: WireEvent[] = [];
  readonly #maxQueued: number;
  #waiter: ((event: WireEvent) => void) | undefined;
  #closed = false;
  #closedAtMs: number | undefined;
  #overflowed = false;
  #release: (() => void) | undefined;
  readonly #startedAt = performance.now();
  /** Bytes written by this side (raw writes included). */
  bytesSent = 0;

  private constructor(socket: Socket, options: WirePeerOptions, release: (() => void) | undefined) {
    this.#socket = socket;
    this.recording = options.recording ?? new FrameRecording();
    this.#maxQueued = options.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES;
    this.#release = release;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)));
    socket.on('error', () => {});
    socket.on('close', () => this.#onClose());
  }

  /** Connects to the target (TCP or TLS), within the budget. */
  static async connect(target: WireTarget, options: WirePeerOptions = {}): Promise<WirePeer> {
    const release = options.budget === undefined ? undefined : await options.budget.acquire();
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    try {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const socket =
          target.tls === undefined
            ? connectTcp({ host: target.host, port: target.port })
            : connectTls({ host: target.host, port: target.port, ca: target.tls.ca, ...(target.tls.servername === undefined ? {} : { servername: target.tls.servername }) });
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new LockstepError('TIMEOUT', `connecting to ${target.host}:${target.port} took over ${timeoutMs} ms`));
        }, timeoutMs);
        socket.once(target.tls === undefined ? 'connect' : 'secureConnect', () => {
          clearTimeout(timer);
          socket.removeAllListeners('error');
          resolve(socket);
        });
        socket.once('error', (error) => {
          clearTimeout(timer);
          socket.destroy();
          reject(error);
        });
      });
      return new WirePeer(socket, options, release);
    } catch (error) {
      release?.();
      throw error;
    }
  }

  /** Wraps a socket accepted by a listener (device mode: the kit is the hub). */
  static fromSocket(socket: Socket, options: WirePeerOptions = {}): WirePeer {
    return new WirePeer(socket, options, undefined);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** When the peer closed (ms since this peer was created), if it did. */
  get closedAtMs(): number | undefined {
    return this.#closedAtMs;
  }

  /** The other side sent more unread frames than allowed: the kit dropped the connection. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** Frames received and not read yet. */
  get queued(): number {
    return this.#queue.filter((event) => event.kind !== 'closed').length;
  }

  /** Sends one frame (without its length prefix; the prefix is added). */
  sendFrame(frame: Uint8Array): void {
    this.sendRaw(withLengthPrefix(frame));
  }

  /** Writes bytes as they are: part of a frame (a cut), a bad length prefix, several frames at once. */
  sendRaw(bytes: Uint8Array, note?: string): void {
    if (this.#closed) return;
    this.recording.record('sent', bytes, note);
    this.bytesSent += bytes.length;
    this.#socket.write(bytes);
  }

  /** The next event: a frame, a refused frame, the close, or `timeout` after `timeoutMs`. Frames already queued come first. */
  next(timeoutMs: number): Promise<WireEvent> {
    const queued = this.#queue.shift();
    if (queued !== undefined) {
      if (queued.kind === 'closed') this.#queue.unshift(queued); // the close stays the last word
      return Promise.resolve(queued);
    }
    if (this.#waiter !== undefined) throw new LockstepError('LOCAL_BUSY', 'one next() at a time');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        resolve({ kind: 'timeout' });
      }, timeoutMs);
      this.#waiter = (event) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(event);
      };
    });
  }

  /**
   * Waits until the other side closes, up to `timeoutMs`; the frames it
   * sends meanwhile are returned (a hub that answers what it should not).
   */
  async waitClosed(timeoutMs: number): Promise<{ closed: boolean; frames: Uint8Array[] }> {
    const deadline = performance.now() + timeoutMs;
    const frames: Uint8Array[] = [];
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) return { closed: this.#closed, frames };
      const event = await this.next(left);
      if (event.kind === 'closed') return { closed: true, frames };
      if (event.kind === 'timeout') return { closed: false, frames };
      if (event.kind === 'frame') frames.push(event.frame);
    }
  }

  /** Half-closes after what was written, then drops the socket. */
  close(): void {
    if (this.#closed) return;
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 200).unref();
  }

  /** Drops the connection at once (a cut: nothing more leaves). */
  destroy(): void {
    this.#socket.destroy();
  }

  #now(): number {
    return Math.round(performance.now() - this.#startedAt);
  }

  #push(event: WireEvent): void {
    if (this.#waiter !== undefined) {
      this.#waiter(event);
      return;
    }
    if (event.kind !== 'closed' && this.#queue.length >= this.#maxQueued) {
      this.#overflowed = true;
      this.#socket.destroy();
      return;
    }
    this.#queue.push(event);
  }

  #onData(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && !this.#overflowed) {
      const result = this.#reader.feed(chunk, at);
      at += result.consumed;
      if (result.frame !== undefined) {
        this.recording.record('received', withLengthPrefix(result.frame));
        this.#push({ kind: 'frame', frame: result.frame, atMs: this.#now() });
      } else if (result.error !== undefined) {
        this.recording.record('received', chunk.subarray(at - Math.min(at, LENGTH_PREFIX_BYTES), at), `length prefix refused: ${result.error.code}`);
        this.#push({ kind: 'invalid', error: result.error, atMs: this.#now() });
      }
      if (result.consumed === 0) break;
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closedAtMs = this.#now();
    this.#release?.();
    this.#release = undefined;
    this.#push({ kind: 'closed', atMs: this.#closedAtMs });
  }
}
