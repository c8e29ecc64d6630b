/**
 * The hub's listening sockets: plain TCP and/or TLS (node:net, node:tls).
 *
 * Rules:
 * - Every TCP connection goes to `opened` as soon as the kernel accepted
 *   it — for TLS before the handshake (the tls.Server's raw 'connection') —
 *   so TLS handshakes in progress are counted and evictable like
 *   pre-authentication TCP connections (tools/hub/connections.ts).
 * - `server.maxConnections` is not used: Node would refuse at the cap
 *   before the hub can evict a pre-authentication connection.
 * - A TLS handshake must finish within `tlsHandshakeTimeoutMs`; a failed
 *   or timed-out one is destroyed here (with a 'tlsClientError' listener,
 *   Node leaves the socket open) and never reaches the core.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Transport } from './link';
import type { Logger } from './log';
import { DEFAULT_HOST, DEFAULT_TCP_PORT, type ConnectionLimits, type HubOptions } from './options';

/**
 * TLS 1.2 suites: ECDHE only (forward secrecy) and AEAD only (no CBC-SHA1,
 * no CCM8, no ARIA). The Moddable SDK's TLS client (modules/crypt/ssl,
 * TLS 1.2) negotiates ECDHE-ECDSA-AES128-GCM-SHA256 with the hub's ECDSA
 * certificate, and ECDHE-RSA-AES128-GCM-SHA256 with an RSA one; both are
 * kept. TLS 1.3 keeps Node's defaults (AEAD only by definition).
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export interface Listener {
  readonly server: Server;
  readonly address: { transport: Transport; host: string; port: number };
}

export interface ListenerHooks {
  /** A TCP connection the kernel accepted (TLS: before its handshake). */
  readonly opened: (raw: Socket, transport: Transport) => void;
  /** A TLS handshake completed. */
  readonly secured: (socket: Socket) => void;
  readonly tlsHandshakeFailed: (code: string | undefined, remote: string | undefined) => void;
  readonly log: Logger;
}

export async function openListeners(options: HubOptions, limits: ConnectionLimits, hooks: ListenerHooks): Promise<Listener[]> {
  const listeners: Listener[] = [];
  try {
    if (options.tcp !== false) {
      const server = createServer({ noDelay: true }, (socket) => hooks.opened(socket, 'tcp'));
      listeners.push(await bind(server, 'tcp', options.tcp?.host ?? DEFAULT_HOST, options.tcp?.port ?? DEFAULT_TCP_PORT, hooks));
    }
    if (options.tls !== undefined) {
      const server = createTlsServer(
        { cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2', ciphers: TLS12_CIPHERS, honorCipherOrder: true, handshakeTimeout: limits.tlsHandshakeTimeoutMs },
        (socket) => hooks.secured(socket),
      );
      // Registered after the tls.Server's own 'connection' listener, which wraps the raw socket first.
      server.on('connection', (raw: Socket) => hooks.opened(raw, 'tls'));
      server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: Socket) => {
        hooks.tlsHandshakeFailed(error.code, socket.remoteAddress);
        socket.destroy();
      });
      listeners.push(await bind(server, 'tls', options.tls.host ?? DEFAULT_HOST, options.tls.port ?? 0, hooks));
    }
  } catch (error) {
    for (const listener of listeners) listener.server.close();
    throw error;
  }
  return listeners;
}

async function bind(server: Server, transport: Transport, host: string, port: number, hooks: ListenerHooks): Promise<Listener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => hooks.log.error('listenerError', { transport, message: error.message }));
  const info = server.address() as AddressInfo;
  const address = { transport, host: info.address, port: info.port };
  hooks.log.info('listening', address);
  return { server, address };
}
