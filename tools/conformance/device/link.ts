/**
 * The kit's side of one TCP connection from the device under test, at the
 * frame level: every frame received is recorded (with its time) and queued
 * for the scenario to take; every frame sent is recorded too, so a failed
 * check can show the frames around it. Bounded: the evidence ring keeps the
 * last EVIDENCE_FRAMES frames, the queue at most QUEUE_FRAMES (a device that
 * floods is cut off), and the FrameReader refuses a length above 1280
 * before allocating (docs/PROTOCOL.md §2).
 *
 * The listener accepts only on the address it is given and hands
 * connections out one at a time, in order; at most MAX_PENDING wait, and a
 * run accepts at most `maxConnections` in all (the rest are closed at once).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { toHex } from '../../../modules/bytes';
import { asLockstepError, type LockstepError } from '../../../modules/errors';
import { FrameReader, withLengthPrefix } from '../../../modules/protocol/framing';
import { decodeHeader, type Header } from '../../../modules/protocol/header';
import type { FrameEvidence } from '../report';

const EVIDENCE_FRAMES = 24;
const QUEUE_FRAMES = 64;
const MAX_PENDING = 4;

export interface ReceivedFrame {
  /** The frame without its length prefix. */
  readonly frame: Uint8Array;
  readonly atMs: number;
  /** The decoded header, or why it does not decode (§3). */
  readonly header?: Header;
  readonly headerError?: LockstepError;
  /** The length prefix was out of range (§2): the frame was skipped unread. */
  readonly lengthError?: LockstepError;
}

export class FrameLink {
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #started: number;
  readonly #queue: ReceivedFrame[] = [];
  readonly #evidence: FrameEvidence[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #closedAtMs: number | undefined;
  /** Set when the device sent more than the queue holds. */
  overflowed = false;
  /** Frames received in all (for the log). */
  received = 0;

  constructor(socket: Socket, started: number) {
    this.#socket = socket;
    this.#started = started;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      this.#closedAtMs = this.nowMs();
      this.#notify();
    });
  }

  /** Milliseconds since the run started. */
  nowMs(): number {
    return Date.now() - this.#started;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get closedAtMs(): number | undefined {
    return this.#closedAtMs;
  }

  /** Sends one frame (given without its prefix, or raw bytes with `raw`). */
  send(frame: Uint8Array, raw = false): void {
    const wire = raw ? frame : withLengthPrefix(frame);
    this.#record({ direction: 'sent', hex: toHex(wire), atMs: this.nowMs() });
    if (!this.#closed) this.#socket.write(wire);
  }

  /** The next frame, or undefined when the connection closed or `timeoutMs` passed first. */
  async next(timeoutMs: number): Promise<ReceivedFrame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#queue.shift();
      if (frame !== undefined) return frame;
      if (this.#closed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await this.#sleepOrWake(left);
    }
  }

  /** Every frame that arrives within `ms` (fewer when the connection closes). */
  async collect(ms: number): Promise<ReceivedFrame[]> {
    const deadline = Date.now() + ms;
    const out: ReceivedFrame[] = [];
    for (;;) {
      const frame = await this.next(Math.max(0, deadline - Date.now()));
      if (frame === undefined) return out;
      out.push(frame);
    }
  }

  /** True once the peer closed (within `timeoutMs`); frames still queued are left for `next`. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.#sleepOrWake(left);
    }
    return true;
  }

  /** The last frames both ways, for a failure's evidence. */
  evidence(last = 8): FrameEvidence[] {
    return this.#evidence.slice(-last);
  }

  close(): void {
    this.#closed = true;
    this.#socket.destroy();
    this.#notify();
  }

  #onData(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const result = this.#reader.feed(bytes, at);
      at += result.consumed;
      if (result.error !== undefined) this.#push({ frame: new Uint8Array(0), atMs: this.nowMs(), lengthError: result.error });
      else if (result.frame !== undefined) this.#push(this.#decode(result.frame));
      if (result.consumed === 0 && result.frame === undefined && result.error === undefined) break;
    }
  }

  #decode(frame: Uint8Array): ReceivedFrame {
    const atMs = this.nowMs();
    try {
      return { frame, atMs, header: decodeHeader(frame) };
    } catch (error) {
      return { frame, atMs, headerError: asLockstepError(error) };
    }
  }

  #push(frame: ReceivedFrame): void {
    this.received++;
    if (frame.lengthError === undefined) this.#record({ direction: 'received', hex: toHex(withLengthPrefix(frame.frame)), atMs: frame.atMs });
    if (this.#queue.length >= QUEUE_FRAMES) {
      this.overflowed = true;
      this.close();
      return;
    }
    this.#queue.push(frame);
    this.#notify();
  }

  #record(evidence: FrameEvidence): void {
    this.#evidence.push(evidence);
    if (this.#evidence.length > EVIDENCE_FRAMES) this.#evidence.shift();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #sleepOrWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** The kit's listening socket: only the address given, connections handed out in order, bounded. */
export class KitListener {
  readonly #server: Server;
  readonly #started: number;
  readonly #maxConnections: number;
  readonly #pending: FrameLink[] = [];
  #wake: (() => void) | undefined;
  #accepted = 0;
  /** Connections refused because the run's bound or the waiting queue was full. */
  refused = 0;

  private constructor(server: Server, started: number, maxConnections: number) {
    this.#server = server;
    this.#started = started;
    this.#maxConnections = maxConnections;
    server.on('connection', (socket) => this.#onConnection(socket));
  }

  static listen(host: string, port: number, options: { readonly started: number; readonly maxConnections: number }): Promise<KitListener> {
    const server = createServer({ noDelay: true });
    const listener = new KitListener(server, options.started, options.maxConnections);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', reject);
        resolve(listener);
      });
    });
  }

  get address(): { host: string; port: number } {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('not listening');
    return { host: address.address, port: address.port };
  }

  get accepted(): number {
    return this.#accepted;
  }

  /** The next connection (oldest waiting first), or undefined after `timeoutMs`. */
  async next(timeoutMs: number): Promise<FrameLink | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const link = this.#pending.shift();
      if (link !== undefined) return link;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#wake = undefined;
          resolve();
        }, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Puts a connection taken with `next` back at the head of the queue (a scenario that only timed its arrival). */
  requeue(link: FrameLink): void {
    this.#pending.unshift(link);
  }

  /** Drops connections waiting (e.g. left over from before a power cut). */
  drain(): number {
    let n = 0;
    for (const link of this.#pending.splice(0)) {
      link.close();
      n++;
    }
    return n;
  }

  close(): Promise<void> {
    for (const link of this.#pending.splice(0)) link.close();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #onConnection(socket: Socket): void {
    if (this.#accepted >= this.#maxConnections || this.#pending.length >= MAX_PENDING) {
      this.refused++;
      socket.destroy();
      return;
    }
    this.#accepted++;
    this.#pending.push(new FrameLink(socket, this.#started));
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
