/**
 * A small TCP load balancer for a hub tier (tests, `npm start -- --postgres`,
 * the benchmark): each accepted connection is piped to one backend picked at
 * random among those that accept it (a refused backend is skipped, as a
 * balancer's health check would), and closed when either side closes. It
 * keeps no state about devices: any instance may get any device at any time,
 * which is exactly what the fencing must survive.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface Backend {
  readonly host: string;
  readonly port: number;
}

export class TcpBalancer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Proxied client sockets by the backend port they were piped to. */
  readonly #byBackend = new Map<number, Set<Socket>>();
  #backends: Backend[];
  port = 0;
  connections = 0;

  private constructor(backends: Backend[], private readonly random: () => number) {
    this.#backends = backends;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(backends: Backend[], options: { host?: string; port?: number; random?: () => number } = {}): Promise<TcpBalancer> {
    const balancer = new TcpBalancer(backends, options.random ?? Math.random);
    await new Promise<void>((resolve, reject) => {
      balancer.#server.once('error', reject);
      balancer.#server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    const address = balancer.#server.address();
    balancer.port = typeof address === 'object' && address !== null ? address.port : 0;
    return balancer;
  }

  setBackends(backends: Backend[]): void {
    this.#backends = backends;
  }

  /** Drops every proxied connection (a balancer restart). */
  dropAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  /** Drops the connections piped to one backend (its clients re-dial and land elsewhere, or there again). */
  dropBackend(port: number): number {
    const sockets = this.#byBackend.get(port);
    if (sockets === undefined) return 0;
    const count = sockets.size;
    for (const socket of sockets) socket.destroy();
    return count;
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.connections++;
    this.#track(client);
    client.pause();
    const order = [...this.#backends].sort(() => this.random() - 0.5);
    const attempt = (i: number): void => {
      const backend = order[i];
      if (backend === undefined || client.destroyed) {
        client.destroy();
        return;
      }
      const upstream = connect(backend.port, backend.host);
      this.#track(upstream);
      upstream.once('error', () => {
        if (!upstream.readyState.startsWith('open')) attempt(i + 1);
      });
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        const group = this.#byBackend.get(backend.port) ?? new Set<Socket>();
        this.#byBackend.set(backend.port, group);
        group.add(client);
        client.on('close', () => group.delete(client));
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    client.on('error', () => {});
    attempt(0);
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
  }
}
