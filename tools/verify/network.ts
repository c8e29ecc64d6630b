/**
 * The simulated network: one Link per TCP connection, each with two
 * reliable, ordered byte streams (device→hub "up", hub→device "down").
 * Faults act on links, never inside the cores:
 * - reset: the link dies, bytes in flight are lost, each end is told after
 *   RESET_NOTICE_MS (or never: a silent cut leaves both ends half-open);
 * - cut at a byte: deliver only a prefix of a chunk, then reset;
 * - delay: everything queued in one direction arrives later (order kept);
 * - the adversary adds chunks (replays, forgeries) and flips bits.
 * A graceful close is a FIN chunk queued behind the data already sent.
 * Arrival times in one direction never decrease (no reordering).
 */
import { fnv1a } from './rng';

export type Direction = 'up' | 'down';

export interface Chunk {
  bytes: Uint8Array;
  at: number;
  fin: boolean;
  /** 'core' for what a core transmitted; anything else came from the adversary. */
  origin: 'core' | 'replay' | 'reflect' | 'forge' | 'flip';
}

export class Link {
  readonly id: number;
  readonly queues: Record<Direction, Chunk[]> = { up: [], down: [] };
  readonly lastArrival: Record<Direction, number> = { up: 0, down: 0 };
  deviceAttached = true;
  hubAttached = true;
  /** The hub instance at the other end (0 with one hub). */
  instance = 0;
  dead = false;
  /** Hex hub nonce of this connection's CHALLENGE (sim bookkeeping for the audit). */
  hubNonce: string | undefined;
  /** The hub host paused this connection's input (a write of its device is outstanding). */
  upBlocked = false;
  /** Frames the cores sent on this link, per direction (the adversary counts them to forge plausible sequence numbers). */
  readonly framesSent: Record<Direction, number> = { up: 0, down: 0 };
  /** Sees every frame a core sends (the adversary records them). */
  observer: ((direction: Direction, bytes: Uint8Array) => void) | undefined;

  constructor(id: number) {
    this.id = id;
  }

  enqueue(direction: Direction, bytes: Uint8Array, now: number, latency: number, origin: Chunk['origin'] = 'core', fin = false): void {
    if (this.dead) return;
    const at = Math.max(now + latency, this.lastArrival[direction]);
    this.lastArrival[direction] = at;
    this.queues[direction].push({ bytes, at, fin, origin });
    if (origin === 'core' && !fin) {
      this.framesSent[direction]++;
      this.observer?.(direction, bytes);
    }
  }

  /** Kills the link: nothing more is delivered, in either direction. */
  kill(): void {
    this.dead = true;
    this.queues.up.length = 0;
    this.queues.down.length = 0;
  }

  /** Delays everything queued in `direction` (and what follows it) by `ms`. */
  delay(direction: Direction, ms: number): void {
    for (const chunk of this.queues[direction]) chunk.at += ms;
    this.lastArrival[direction] += ms;
  }

  stateText(): string {
    const queue = (d: Direction) => this.queues[d].map((c) => `${c.at}:${c.fin ? 'F' : fnv1a(c.bytes)}:${c.origin}`).join(';');
    return `${this.id}${this.instance === 0 ? '' : `@${this.instance}`}${this.dead ? 'x' : ''}${this.deviceAttached ? 'd' : ''}${this.hubAttached ? 'h' : ''}${this.upBlocked ? 'b' : ''}:${this.hubNonce ?? '-'}:${this.framesSent.up}/${this.framesSent.down}:${this.lastArrival.up}/${this.lastArrival.down}[${queue('up')}][${queue('down')}]`;
  }

  head(direction: Direction): Chunk | undefined {
    if (this.dead || (direction === 'up' && this.upBlocked)) return undefined;
    return this.queues[direction][0];
  }
}
