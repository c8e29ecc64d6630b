/**
 * SocketTransport (hosts/moddable/socket-transport.ts) over a fake of the
 * SDK's legacy callback socket, which behaves like the simulator's
 * (modules/network/socket/lin/modSocket.c): write() reports the room left,
 * a write that does not fit throws "can't write all data", read(ArrayBuffer)
 * takes what is buffered, close() on an already-closed socket throws, and
 * — as lin/modSocket.c does — the SDK touches the socket object again after
 * each callback returns: a close() made inside the callback `xsForget`s the
 * object first, so that later touch may find it collected (recorded as
 * `useAfterClose`; in mcsim it was a segmentation fault).
 */
import {
  MAX_PENDING_BYTES,
  SOCKET_CONNECTED,
  SOCKET_DISCONNECTED,
  SOCKET_ERROR,
  SOCKET_READABLE,
  SOCKET_WRITABLE,
  SocketTransport,
  type LegacySocket,
} from '../hosts/moddable/socket-transport';
import type { DeviceTransportEvents } from '../modules/device/loop';

class FakeSocket implements LegacySocket {
  callback: (message: number, value?: number) => void = () => {
    throw new Error('callback not set');
  };
  room = 1024;
  written: number[] = [];
  inbound: Uint8Array[] = [];
  closed = false;
  closeThrows = false;
  writeThrows = false;
  /** Depth of SDK callbacks on the stack. */
  dispatching = 0;
  closedInsideCallback = false;
  /** The SDK read the object after a callback in which it was closed. */
  useAfterClose = false;

  /** The SDK calling the callback, then touching the object (socketDownUseCount). */
  dispatch(message: number, value?: number): void {
    this.dispatching++;
    try {
      this.callback(message, value);
    } finally {
      this.dispatching--;
    }
    if (this.closedInsideCallback) this.useAfterClose = true;
  }

  read(type?: typeof ArrayBuffer): ArrayBuffer | number {
    if (type === undefined) return this.inbound[0]?.length ?? 0;
    const chunk = this.inbound.shift() ?? new Uint8Array(0);
    return chunk.slice().buffer;
  }
  write(...data: Uint8Array[]): number | void {
    if (data.length === 0) return this.room;
    if (this.writeThrows) throw new Error('write failed');
    let needed = 0;
    for (const part of data) needed += part.length;
    if (needed > this.room) throw new Error("can't write all data");
    for (const part of data) this.written.push(...part);
    this.room -= needed;
  }
  close(): void {
    if (this.closeThrows || this.closed) throw new Error('close on closed socket');
    this.closed = true;
    if (this.dispatching > 0) this.closedInsideCallback = true;
  }
  /** The SDK delivering bytes: buffers them and signals readable with the count. */
  deliver(...chunks: Uint8Array[]): void {
    this.inbound.push(...chunks);
    this.dispatch(SOCKET_READABLE, chunks[0]?.length ?? 0);
  }
}

/** Zero-delay timers, run by hand (`runDeferred`). */
class Deferred {
  queue: Array<() => void> = [];
  readonly defer = (callback: () => void): void => {
    this.queue.push(callback);
  };
  run(): void {
    const due = this.queue;
    this.queue = [];
    for (const callback of due) callback();
  }
}

interface Opened {
  socket: FakeSocket;
  transport: SocketTransport;
  log: string[];
  received: number[];
  deferred: Deferred;
}

function open(onData?: (bytes: Uint8Array, opened: Opened) => void, defer?: (callback: () => void) => void): Opened {
  const socket = new FakeSocket();
  const log: string[] = [];
  const received: number[] = [];
  const deferred = new Deferred();
  const opened = { socket, log, received, deferred } as Omit<Opened, 'transport'> as Opened;
  const events: DeviceTransportEvents = {
    onConnected: () => log.push('connected'),
    onData: (bytes) => {
      log.push(`data ${bytes.length}`);
      received.push(...bytes);
      onData?.(bytes, opened);
    },
    onClosed: (reason) => log.push(`closed ${reason}`),
  };
  opened.transport = new SocketTransport(() => socket, events, defer ?? deferred.defer);
  return opened;
}

const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);

describe('SocketTransport', () => {
  test('holds writes until connected, then writes them in order', () => {
    const { socket, transport, log } = open();
    transport.write(bytes(3, 1));
    transport.write(bytes(2, 2));
    expect(socket.written).toEqual([]);
    socket.callback(SOCKET_CONNECTED);
    expect(log).toEqual(['connected']);
    expect(socket.written).toEqual([1, 1, 1, 2, 2]);
    expect(transport.pendingBytes).toBe(0);
  });

  test('cuts writes to the room the socket reports and resumes on writable', () => {
    const { socket, transport } = open();
    socket.callback(SOCKET_CONNECTED);
    socket.room = 100;
    transport.write(bytes(250, 7));
    expect(socket.written).toHaveLength(100);
    expect(transport.pendingBytes).toBe(150);
    socket.room = 1024;
    socket.callback(SOCKET_WRITABLE, 1024);
    expect(socket.written).toEqual([...bytes(250, 7)]);
    expect(transport.pendingBytes).toBe(0);
  });

  test('more than MAX_PENDING_BYTES waiting fails the connection (bounded queue)', () => {
    const { socket, transport, log } = open();
    transport.write(bytes(MAX_PENDING_BYTES));
    expect(log).toEqual([]);
    transport.write(bytes(1));
    expect(log).toEqual([expect.stringMatching(/^closed BUFFER_FULL/)]);
    expect(socket.closed).toBe(true);
    expect(transport.pendingBytes).toBe(0);
  });

  test('reads everything buffered on one readable callback', () => {
    const { socket, received, log } = open();
    socket.callback(SOCKET_CONNECTED);
    socket.deliver(new Uint8Array([1, 2]), new Uint8Array([3]));
    expect(received).toEqual([1, 2, 3]);
    expect(log).toEqual(['connected', 'data 2', 'data 1']);
  });

  test.each([
    [SOCKET_DISCONNECTED, 'closed disconnected'],
    [SOCKET_ERROR, 'closed socket error'],
  ])('message %d ends the connection once, never closes the SDK socket a second time, and nothing fires afterwards', (message, expected) => {
    const { socket, transport, log } = open();
    socket.callback(SOCKET_CONNECTED);
    let closes = 0;
    socket.close = () => {
      closes++; // a second close of a securesocket from its own callback crashed the simulator
    };
    const callback = socket.callback;
    callback(message);
    expect(log).toEqual(['connected', expected]);
    expect(closes).toBe(0);
    callback(SOCKET_READABLE, 1);
    callback(message);
    socket.callback(SOCKET_CONNECTED); // the transport left a harmless callback behind
    expect(log).toEqual(['connected', expected]);
    transport.write(bytes(1));
    transport.close();
    expect(transport.connected).toBe(false);
  });

  test('a throwing SDK write fails the connection instead of escaping into the SDK', () => {
    const { socket, transport, log } = open();
    socket.callback(SOCKET_CONNECTED);
    socket.writeThrows = true;
    transport.write(bytes(1));
    expect(log).toEqual(['connected', 'closed exception: write failed']);
  });

  test('an exception from a handler fails the connection', () => {
    const socket = new FakeSocket();
    const closed: string[] = [];
    const deferred = new Deferred();
    new SocketTransport(() => socket, {
      onConnected: () => {
        throw new Error('handler bug');
      },
      onData: () => undefined,
      onClosed: (reason) => closed.push(reason),
    }, deferred.defer);
    expect(() => socket.callback(SOCKET_CONNECTED)).not.toThrow();
    expect(closed).toEqual(['exception: handler bug']);
    expect(socket.closed).toBe(false); // closed once the SDK's callback has returned
    deferred.run();
    expect(socket.closed).toBe(true);
  });

  test('a close asked for while the SDK hands over bytes waits until its callback has returned (W-REJECT-1 close in mcsim)', () => {
    // The core rejects a frame once too often and closes from inside onData, with more bytes still buffered.
    const { socket, transport, log, deferred } = open((bytes, { transport }) => {
      if (bytes[0] === 9) transport.close();
    });
    socket.dispatch(SOCKET_CONNECTED);
    socket.deliver(bytes(2, 8), bytes(2, 9), bytes(2, 10));
    expect(log).toEqual(['connected', 'data 2', 'data 2']); // nothing read after the close
    expect(transport.connected).toBe(false);
    expect(socket.closed).toBe(false); // not from inside the callback…
    expect(deferred.queue).toHaveLength(1); // …one deferred close, bounded
    deferred.run();
    expect(socket.closed).toBe(true);
    expect(socket.useAfterClose).toBe(false);
    socket.dispatch(SOCKET_READABLE, 2); // a late callback of the old socket is ignored
    expect(log).toEqual(['connected', 'data 2', 'data 2']);
    transport.close();
    expect(deferred.queue).toHaveLength(0);
  });

  test('broken variant: closing synchronously inside the data callback is the use-after-close the simulator crashed on', () => {
    const { socket } = open(
      (_bytes, { transport }) => transport.close(),
      (callback) => callback(),
    );
    socket.dispatch(SOCKET_CONNECTED);
    socket.deliver(bytes(2, 9));
    expect(socket.closed).toBe(true);
    expect(socket.useAfterClose).toBe(true);
  });

  test('a failure inside a callback (BUFFER_FULL from onData) also closes only after the callback', () => {
    const { socket, log, deferred } = open((_bytes, { transport }) => transport.write(bytes(MAX_PENDING_BYTES + 1)));
    socket.dispatch(SOCKET_CONNECTED);
    socket.deliver(bytes(1));
    expect(log).toEqual(['connected', 'data 1', expect.stringMatching(/^closed BUFFER_FULL/)]);
    expect(socket.closed).toBe(false);
    deferred.run();
    expect(socket.closed).toBe(true);
    expect(socket.useAfterClose).toBe(false);
  });

  test('close() by the owner reports nothing and closes the socket', () => {
    const { socket, transport, log } = open();
    socket.callback(SOCKET_CONNECTED);
    transport.close();
    transport.close();
    expect(socket.closed).toBe(true);
    expect(log).toEqual(['connected']);
  });
});
