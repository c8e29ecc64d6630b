/**
 * One accepted transport connection (TCP or TLS socket) as the hub host
 * sees it: the bytes the core could not take yet (while a commit for its
 * device is outstanding) and the write-side limit.
 *
 * Bounds: at most `maxQueuedInputBytes` of input are held (the socket is
 * paused as soon as anything is queued, so normally one chunk), and at most
 * `maxWriteBufferBytes` of output wait in user space; beyond either the
 * connection is dropped. A misbehaving peer costs only its own connection.
 */
import type { Socket } from 'node:net';
import type { ConnectionId } from '../../modules/hub/actions';

export type Transport = 'tcp' | 'tls';

export class Link {
  readonly id: ConnectionId;
  readonly socket: Socket;
  readonly transport: Transport;
  readonly remoteAddress: string;
  deviceId: string | undefined;
  closed = false;
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;

  constructor(id: ConnectionId, socket: Socket, transport: Transport) {
    this.id = id;
    this.socket = socket;
    this.transport = transport;
    this.remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get hasQueuedInput(): boolean {
    return this.#queue.length > 0;
  }

  /** Holds input the core refused (LOCAL_BUSY); false when over the limit. */
  hold(chunk: Uint8Array, limit: number): boolean {
    if (this.#queuedBytes + chunk.length > limit) return false;
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.length;
    this.socket.pause();
    return true;
  }

  /** The oldest held chunk, or undefined; `putBack` returns it if the core is still busy. */
  takeHeld(): Uint8Array | undefined {
    const chunk = this.#queue.shift();
    if (chunk !== undefined) this.#queuedBytes -= chunk.length;
    return chunk;
  }

  putBack(chunk: Uint8Array): void {
    this.#queue.unshift(chunk);
    this.#queuedBytes += chunk.length;
  }

  resumeIfDrained(): void {
    if (this.#queue.length === 0 && !this.closed) this.socket.resume();
  }

  /** Writes; false when the peer is not reading fast enough (caller drops the link). */
  write(bytes: Uint8Array, limit: number): boolean {
    if (this.closed) return true;
    this.socket.write(bytes);
    return this.socket.writableLength <= limit;
  }

  destroy(): void {
    this.closed = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.socket.destroy();
  }
}
