/**
 * The hub's listening sockets: plain TCP and/or TLS (node:net, node:tls).
 * Connections beyond `maxConnections` are refused by Node itself ('drop');
 * a TLS handshake must finish within `tlsHandshakeTimeoutMs` and a failed
 * one never reaches the core.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Transport } from './link';
import type { Logger } from './log';
import { DEFAULT_HOST, DEFAULT_TCP_PORT, type ConnectionLimits, type HubOptions } from './options';

export interface Listener {
  readonly server: Server;
  readonly address: { transport: Transport; host: string; port: number };
}

export interface ListenerHooks {
  readonly accept: (socket: Socket, transport: Transport) => void;
  readonly refused: () => void;
  readonly tlsHandshakeFailed: () => void;
  readonly log: Logger;
}

export async function openListeners(options: HubOptions, limits: ConnectionLimits, hooks: ListenerHooks): Promise<Listener[]> {
  const listeners: Listener[] = [];
  try {
    if (options.tcp !== false) {
      const server = createServer({ noDelay: true }, (socket) => hooks.accept(socket, 'tcp'));
      listeners.push(await bind(server, 'tcp', options.tcp?.host ?? DEFAULT_HOST, options.tcp?.port ?? DEFAULT_TCP_PORT, limits, hooks));
    }
    if (options.tls !== undefined) {
      const server = createTlsServer(
        { cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2', handshakeTimeout: limits.tlsHandshakeTimeoutMs },
        (socket) => hooks.accept(socket, 'tls'),
      );
      server.on('tlsClientError', () => hooks.tlsHandshakeFailed());
      listeners.push(await bind(server, 'tls', options.tls.host ?? DEFAULT_HOST, options.tls.port ?? 0, limits, hooks));
    }
  } catch (error) {
    for (const listener of listeners) listener.server.close();
    throw error;
  }
  return listeners;
}

async function bind(server: Server, transport: Transport, host: string, port: number, limits: ConnectionLimits, hooks: ListenerHooks): Promise<Listener> {
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => hooks.refused());
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
