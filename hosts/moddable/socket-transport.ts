/**
 * One connection over the Moddable SDK's legacy callback socket API, shared
 * by `socket` (TCP) and `securesocket` (TLS), which have the same shape:
 * `callback(message, value)` with 1 connected, 2 readable (value = bytes
 * available), 3 writable (value = bytes that can be written), -1
 * disconnected, -2 error; `read(ArrayBuffer)` takes what is available;
 * `write()` returns the room left; `write(bytes)` throws if it does not fit.
 *
 * Invariants:
 * - at most MAX_PENDING_BYTES wait to be written; beyond that the
 *   connection fails with BUFFER_FULL (no unbounded queue), and the core
 *   resends what matters on the next connection;
 * - writes are cut to the room the socket reports (the simulator's socket
 *   takes at most 1024 bytes per write), the rest waits for `writable`;
 * - `onClosed` fires exactly once, and no event fires after it or after
 *   `close()`; SDK exceptions never escape into the SDK's callback;
 * - the SDK socket is never closed from inside its own callback: a close
 *   asked for there (the core closing on a frame it was just handed) is
 *   handed to `defer` (a zero-delay Timer), whose closure keeps the socket
 *   object alive until the SDK's callback has returned. The simulator's
 *   socket (lin/modSocket.c) `xsForget`s its object in `close()` but reads
 *   it again after the callback returns (`socketDownUseCount` →
 *   `xsGetHostDestructor`); if the rest of the callback dropped the last
 *   reference and a garbage collection ran, that throws outside any XS try
 *   and mcsim dies with a segmentation fault. One deferred close per
 *   transport: bounded.
 */
import type { DeviceConnection, DeviceTransportEvents } from '../../modules/device/loop';
import { describeError, LockstepError } from '../../modules/errors';

export const SOCKET_CONNECTED = 1;
export const SOCKET_READABLE = 2;
export const SOCKET_WRITABLE = 3;
export const SOCKET_DISCONNECTED = -1;
export const SOCKET_ERROR = -2;

export const MAX_PENDING_BYTES = 8192;
/** Reads per readable callback before yielding back to the event loop. */
const MAX_READS_PER_CALLBACK = 16;

/** The subset of the SDK's `Socket` / `SecureSocket` instance used here. */
export interface LegacySocket {
  callback: (message: number, value?: number) => void;
  read(type?: typeof ArrayBuffer): ArrayBuffer | number;
  write(...data: Uint8Array[]): number | void;
  close(): void;
}

/** The device loop's connection (modules/device/loop.ts) over one SDK socket. */
export class SocketTransport implements DeviceConnection {
  #socket: LegacySocket | undefined;
  readonly #events: DeviceTransportEvents;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** Bytes of #pending[0] already written. */
  #headOffset = 0;
  #open = false;
  /** True while the SDK is calling `socket.callback`. */
  #inCallback = false;
  readonly #defer: (callback: () => void) => void;

  /**
   * `open` creates the SDK socket; the connection starts at once. Throws what the SDK throws.
   * `defer` runs its callback later, outside the SDK's callback (on the SDK: `Timer.set(callback, 0)`).
   */
  constructor(open: () => LegacySocket, events: DeviceTransportEvents, defer: (callback: () => void) => void) {
    this.#events = events;
    this.#defer = defer;
    const socket = open();
    this.#socket = socket;
    socket.callback = (message, value) => this.#onMessage(message, value ?? 0);
  }

  get connected(): boolean {
    return this.#open;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Queues `bytes` (the caller must not modify them afterwards) and writes what fits now. */
  write(bytes: Uint8Array): void {
    if (this.#socket === undefined || bytes.length === 0) return;
    if (this.#pendingBytes + bytes.length > MAX_PENDING_BYTES) {
      this.#fail(new LockstepError('BUFFER_FULL', `more than ${MAX_PENDING_BYTES} bytes waiting to be sent`).message);
      return;
    }
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    if (!this.#open) return;
    try {
      this.#flush();
    } catch (error) {
      this.#fail(`exception: ${describeError(error)}`);
    }
  }

  /** Closes without an onClosed event (the caller initiated it). */
  close(): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#release();
    this.#closeSocket(socket);
  }

  #onMessage(message: number, value: number): void {
    if (this.#socket === undefined) return;
    const outer = this.#inCallback;
    this.#inCallback = true;
    try {
      switch (message) {
        case SOCKET_CONNECTED:
          this.#open = true;
          this.#events.onConnected();
          if (this.#socket !== undefined) this.#flush();
          break;
        case SOCKET_READABLE:
          this.#drain(value);
          break;
        case SOCKET_WRITABLE:
          this.#flush();
          break;
        case SOCKET_DISCONNECTED:
          this.#fail('disconnected', false);
          break;
        case SOCKET_ERROR:
          this.#fail('socket error', false);
          break;
        default:
          break;
      }
    } catch (error) {
      this.#fail(`exception: ${describeError(error)}`);
    } finally {
      this.#inCallback = outer;
    }
  }

  #drain(available: number): void {
    for (let reads = 0; reads < MAX_READS_PER_CALLBACK && available > 0 && this.#socket !== undefined; reads++) {
      const chunk = this.#socket.read(ArrayBuffer);
      if (typeof chunk === 'number' || chunk.byteLength === 0) break;
      this.#events.onData(new Uint8Array(chunk));
      if (this.#socket === undefined) break;
      const rest = this.#socket.read();
      available = typeof rest === 'number' ? rest : 0;
    }
  }

  #flush(): void {
    const socket = this.#socket;
    if (socket === undefined || !this.#open) return;
    while (this.#pending.length > 0) {
      const room = socket.write();
      if (typeof room !== 'number' || room <= 0) return; // wait for `writable`
      const head = this.#pending[0] as Uint8Array;
      const take = Math.min(room, head.length - this.#headOffset);
      socket.write(head.subarray(this.#headOffset, this.#headOffset + take));
      this.#headOffset += take;
      this.#pendingBytes -= take;
      if (this.#headOffset === head.length) {
        this.#pending.shift();
        this.#headOffset = 0;
      }
    }
  }

  /**
   * The connection is over. `closeSocket` is false when the SDK reported the
   * end itself (disconnected, error): its socket is closed already, and
   * closing a `securesocket` a second time from inside its own callback
   * crashed the simulator (a segmentation fault after a hub restart over
   * TLS, before this was fixed).
   */
  #fail(reason: string, closeSocket = true): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#release();
    if (closeSocket) this.#closeSocket(socket);
    this.#events.onClosed(reason);
  }

  /** Closes at once outside the SDK's callback; from inside it, once the callback has returned. */
  #closeSocket(socket: LegacySocket): void {
    if (!this.#inCallback) {
      closeQuietly(socket);
      return;
    }
    try {
      this.#defer(() => closeQuietly(socket));
    } catch {
      // No timer to be had (out of memory): closing now risks the crash above, leaking the socket does not.
    }
  }

  #release(): void {
    const socket = this.#socket;
    // A function, not undefined: the SDK's native code calls it unconditionally.
    if (socket !== undefined) socket.callback = ignoreMessage;
    this.#socket = undefined;
    this.#open = false;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#headOffset = 0;
  }
}

function ignoreMessage(): void {}

function closeQuietly(socket: LegacySocket): void {
  try {
    socket.close();
  } catch {
    // Already closed by the SDK (the simulator's socket closes itself on disconnect).
  }
}
