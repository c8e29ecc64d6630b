/**
 * One accepted transport connection (TCP or TLS socket) as the hub host
 * sees it: the socket, its id in the core, and the write-side limit.
 *
 * The link keeps no input: every chunk goes straight to `HubCore.receive`,
 * which keeps (bounded) what it cannot parse yet. The link only pauses its
 * socket while the core does not want input (tools/hub/connections.ts) and
 * drops the connection when more than `maxWriteBufferBytes` wait in user
 * space. A misbehaving peer costs only its own connection.
 */
import type { Socket } from 'node:net';
import type { ConnectionId } from '../../modules/hub/actions';

export type Transport = 'tcp' | 'tls';

/**
 * A transport connection from the kernel's accept (for TLS: before the TLS
 * handshake) until it closes: what the caps count (tools/hub/connections.ts).
 * `raw` is the TCP socket (under the TLS socket for TLS); `handshakeKey`
 * finds a TLS one again when its handshake completes.
 */
export interface Admission {
  readonly raw: Socket;
  readonly source: string;
  readonly handshakeKey: string | undefined;
  link: Link | undefined;
  counted: boolean;
}

export class Link {
  readonly id: ConnectionId;
  readonly socket: Socket;
  readonly transport: Transport;
  readonly remoteAddress: string;
  readonly admission: Admission;
  deviceId: string | undefined;
  closed = false;
  paused = false;

  constructor(id: ConnectionId, socket: Socket, transport: Transport, admission: Admission) {
    this.id = id;
    this.socket = socket;
    this.transport = transport;
    this.admission = admission;
    this.remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket.resume();
  }

  /** Writes; false when the peer is not reading fast enough (caller drops the link). */
  write(bytes: Uint8Array, limit: number): boolean {
    if (this.closed) return true;
    this.socket.write(bytes);
    return this.socket.writableLength <= limit;
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }
}
