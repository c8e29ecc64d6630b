/**
 * A recording TCP proxy on loopback between devices and the hub: every byte
 * of every connection, per direction, with the time it passed (a tap on the
 * link, as a passive attacker has it). It forwards unchanged and never
 * parses. Bounded: it stops by itself — closing its listener and every
 * connection — at the connection after `maxConnections`, after `maxBytes`
 * recorded bytes or after `maxDurationMs`, whichever comes first, so a test or demo that forgets
 * it cannot leave it running or growing.
 *
 * `recorderNow()` is the clock of the timestamps; a caller that marks the
 * moment of a leak with it can cut the transcript there (attacker.ts).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Direction } from './wire';

/** Milliseconds (fractional) on the recorder's clock. */
export function recorderNow(): number {
  return performance.timeOrigin + performance.now();
}

/** What one recorded chunk costs beyond its bytes, for the `maxBytes` bound. */
const CHUNK_OVERHEAD_BYTES = 64;

export interface RecordedChunk {
  /** up = device → hub, down = hub → device. */
  readonly direction: Direction;
  readonly at: number;
  readonly bytes: Uint8Array;
}

export interface RecordedConnection {
  readonly index: number;
  readonly openedAt: number;
  closedAt: number | undefined;
  readonly chunks: RecordedChunk[];
}

export interface Transcript {
  readonly connections: readonly RecordedConnection[];
  /** Why the proxy stopped, if it did. */
  readonly stoppedBy: string | undefined;
}

export interface RecordingProxyOptions {
  readonly target: { readonly host: string; readonly port: number };
  readonly host?: string;
  /** Defaults: 64 connections, 8 MiB (bytes recorded plus 64 per chunk), 5 minutes. */
  readonly maxConnections?: number;
  readonly maxBytes?: number;
  readonly maxDurationMs?: number;
}

export class RecordingProxy {
  readonly #server: Server;
  readonly #options: RecordingProxyOptions;
  readonly #connections: RecordedConnection[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #timer: NodeJS.Timeout;
  #bytes = 0;
  #stoppedBy: string | undefined;
  #port = 0;

  static async start(options: RecordingProxyOptions): Promise<RecordingProxy> {
    const proxy = new RecordingProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, options.host ?? '127.0.0.1', () => resolve());
    });
    const address = proxy.#server.address();
    proxy.#port = typeof address === 'object' && address !== null ? address.port : 0;
    return proxy;
  }

  private constructor(options: RecordingProxyOptions) {
    this.#options = options;
    this.#server = createServer((socket) => this.#accept(socket));
    this.#timer = setTimeout(() => this.stop(`duration ${this.#limits.maxDurationMs} ms`), this.#limits.maxDurationMs);
    this.#timer.unref();
  }

  get port(): number {
    return this.#port;
  }

  get transcript(): Transcript {
    return { connections: this.#connections, stoppedBy: this.#stoppedBy };
  }

  get stopped(): boolean {
    return this.#stoppedBy !== undefined;
  }

  get #limits() {
    return {
      maxConnections: this.#options.maxConnections ?? 64,
      maxBytes: this.#options.maxBytes ?? 8 * 1024 * 1024,
      maxDurationMs: this.#options.maxDurationMs ?? 300_000,
    };
  }

  /** Stops accepting, closes every connection; the transcript stays readable. */
  stop(reason = 'stopped'): void {
    if (this.#stoppedBy !== undefined) return;
    this.#stoppedBy = reason;
    clearTimeout(this.#timer);
    this.#server.close();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  async close(): Promise<void> {
    this.stop();
    await new Promise<void>((resolve) => (this.#server.listening ? this.#server.once('close', () => resolve()) : resolve()));
  }

  #accept(device: Socket): void {
    if (this.#stoppedBy === undefined && this.#connections.length >= this.#limits.maxConnections) this.stop(`more than ${this.#limits.maxConnections} connections`);
    if (this.#stoppedBy !== undefined) {
      device.destroy();
      return;
    }
    const record: RecordedConnection = { index: this.#connections.length, openedAt: recorderNow(), closedAt: undefined, chunks: [] };
    this.#connections.push(record);
    const hub = connect({ host: this.#options.target.host, port: this.#options.target.port, noDelay: true });
    device.setNoDelay(true);
    this.#sockets.add(device).add(hub);
    const relay = (from: Socket, to: Socket, direction: Direction) => {
      from.on('data', (chunk: Buffer) => {
        if (this.#stoppedBy !== undefined) return;
        // Each chunk also costs its record: counted so that a stream of 1-byte chunks is bounded too.
        this.#bytes += chunk.length + CHUNK_OVERHEAD_BYTES;
        record.chunks.push({ direction, at: recorderNow(), bytes: new Uint8Array(chunk) });
        to.write(chunk);
        if (this.#bytes >= this.#limits.maxBytes) this.stop(`${this.#limits.maxBytes} bytes recorded`);
      });
      from.on('error', () => {});
      from.on('close', () => {
        this.#sockets.delete(from);
        record.closedAt ??= recorderNow();
        to.end();
        setTimeout(() => to.destroy(), 100).unref();
      });
    };
    relay(device, hub, 'up');
    relay(hub, device, 'down');
  }
}

/** A transcript as JSON lines (one chunk a line, bytes in hex), for saving and for the attacker's command line. */
export function transcriptToJsonLines(transcript: Transcript): string {
  return transcript.connections
    .flatMap((c) => c.chunks.map((chunk) => JSON.stringify({ connection: c.index, direction: chunk.direction, at: chunk.at, hex: Buffer.from(chunk.bytes).toString('hex') })))
    .join('\n');
}

/** The inverse of transcriptToJsonLines; a line that is not a chunk is refused with its number. */
export function transcriptFromJsonLines(text: string): Transcript {
  const connections: RecordedConnection[] = [];
  text.split('\n').forEach((line, number) => {
    if (line.trim() === '') return;
    const chunk = JSON.parse(line) as { connection?: unknown; direction?: unknown; at?: unknown; hex?: unknown };
    const { connection, direction, at, hex } = chunk;
    if (typeof connection !== 'number' || !Number.isInteger(connection) || connection < 0 || connection > 1_000_000 ||
        (direction !== 'up' && direction !== 'down') || typeof at !== 'number' || typeof hex !== 'string' || !/^([0-9a-f]{2})*$/.test(hex)) {
      throw new Error(`transcript line ${number + 1}: expected {"connection", "direction": "up"|"down", "at", "hex"}`);
    }
    while (connections.length <= connection) connections.push({ index: connections.length, openedAt: at, closedAt: undefined, chunks: [] });
    connections[connection]!.chunks.push({ direction, at, bytes: new Uint8Array(Buffer.from(hex, 'hex')) });
  });
  return { connections, stoppedBy: undefined };
}
