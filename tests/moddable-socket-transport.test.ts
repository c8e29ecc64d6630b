/**
 * SocketTransport (hosts/moddable/socket-transport.ts) over a fake of the
 * SDK's legacy callback socket, which behaves like the simulator's
 * (modules/network/socket/lin/modSocket.c): write() reports the room left,
 * a write that does not fit throws "can't write all data", read(ArrayBuffer)
 * takes what is buffered, close() on an already-closed socket throws.
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
  }
  /** The SDK delivering bytes: buffers them and signals readable with the count. */
  deliver(...chunks: Uint8Array[]): void {
    this.inbound.push(...chunks);
    this.callback(SOCKET_READABLE, chunks[0]?.length ?? 0);
  }
}

function open(): { socket: FakeSocket; transport: SocketTransport; log: string[]; received: number[] } {
  const socket = new FakeSocket();
  const log: string[] = [];
  const received: number[] = [];
  const events: DeviceTransportEvents = {
    onConnected: () => log.push('connected'),
    onData: (bytes) => {
      log.push(`data ${bytes.length}`);
      received.push(...bytes);
    },
    onClosed: (reason) => log.push(`closed ${reason}`),
  };
  const transport = new SocketTransport(() => socket, events);
  return { socket, transport, log, received };
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
    new SocketTransport(() => socket, {
      onConnected: () => {
        throw new Error('handler bug');
      },
      onData: () => undefined,
      onClosed: (reason) => closed.push(reason),
    });
    expect(() => socket.callback(SOCKET_CONNECTED)).not.toThrow();
    expect(closed).toEqual(['exception: handler bug']);
    expect(socket.closed).toBe(true);
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
