/**
 * The network adversary: it sees every frame, keeps copies, and later
 * replays them (into any connection, either direction — including back to
 * the side that sent them), forges frames with plausible headers (the
 * receiver's session id, key ids and the next sequence number it expects,
 * a random body), flips bits in frames in flight, and injects garbage. It
 * never holds a key. Safety must not depend on anything it does (S7, S8,
 * S9); liveness only once it stops.
 */
import { DEVICE_ID_BYTES } from '../../modules/platform/keys';
import { HEADER_BYTES, IV_BYTES, MessageType, TAG_BYTES } from '../../modules/protocol/constants';
import { encodeHeader } from '../../modules/protocol/header';
import { withLengthPrefix } from '../../modules/protocol/framing';
import { fromHex } from '../../modules/bytes';
import type { Direction, Link } from './network';
import type { Rng } from './rng';

export type AdversaryMove = 'replay' | 'reflect' | 'forge' | 'flip' | 'garbage';
export const ADVERSARY_MOVES: readonly AdversaryMove[] = ['replay', 'reflect', 'forge', 'flip', 'garbage'];

interface Recorded {
  readonly link: number;
  readonly direction: Direction;
  readonly bytes: Uint8Array;
}

const MAX_RECORDED = 256;

export class Adversary {
  readonly #recorded: Recorded[] = [];
  readonly #deviceId: Uint8Array;
  readonly moves: Record<AdversaryMove, number> = { replay: 0, reflect: 0, forge: 0, flip: 0, garbage: 0 };

  constructor(deviceId: Uint8Array) {
    this.#deviceId = deviceId.slice();
  }

  record(link: Link, direction: Direction, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#recorded.push({ link: link.id, direction, bytes: bytes.slice() });
    if (this.#recorded.length > MAX_RECORDED) this.#recorded.shift();
  }

  /**
   * Performs `move` on `link` (the device's current connection), choosing
   * the details with `rng`. Returns a description, or undefined when the
   * move is impossible right now (nothing recorded, nothing in flight).
   */
  act(move: AdversaryMove, link: Link, now: number, latency: number, rng: Rng, keyIds: readonly number[]): string | undefined {
    const direction: Direction = rng.chance(0.5) ? 'up' : 'down';
    switch (move) {
      case 'replay': {
        if (this.#recorded.length === 0) return undefined;
        const frame = rng.pick(this.#recorded);
        link.enqueue(frame.direction, frame.bytes.slice(), now, latency, 'replay');
        this.moves.replay++;
        return `replays a ${frame.direction} frame of link ${frame.link} into link ${link.id}`;
      }
      case 'reflect': {
        const own = this.#recorded.filter((r) => r.link === link.id);
        if (own.length === 0) return undefined;
        const frame = rng.pick(own);
        const back: Direction = frame.direction === 'up' ? 'down' : 'up';
        link.enqueue(back, frame.bytes.slice(), now, latency, 'reflect');
        this.moves.reflect++;
        return `reflects a ${frame.direction} frame of link ${link.id} back ${back}`;
      }
      case 'forge': {
        if (link.hubNonce === undefined) return undefined;
        const sequence = link.framesSent[direction] + rng.between(-1, 1);
        const type = rng.pick(direction === 'down' ? FORGEABLE_DOWN : FORGEABLE_UP);
        const header = encodeHeader({
          type,
          fromHub: direction === 'down',
          deviceId: this.#deviceId.length === DEVICE_ID_BYTES ? this.#deviceId : new Uint8Array(DEVICE_ID_BYTES),
          keyId: keyIds.length > 0 ? rng.pick(keyIds) : 1,
          sequence: Math.max(0, sequence),
          sessionId: fromHex(link.hubNonce),
        });
        const body = new Uint8Array(IV_BYTES + 16 * rng.between(1, 6) + TAG_BYTES);
        rng.fill(body);
        const frame = new Uint8Array(HEADER_BYTES + body.length);
        frame.set(header, 0);
        frame.set(body, HEADER_BYTES);
        link.enqueue(direction, withLengthPrefix(frame), now, latency, 'forge');
        this.moves.forge++;
        return `forges a type 0x${type.toString(16)} frame, seq ${Math.max(0, sequence)}, ${direction} on link ${link.id}`;
      }
      case 'flip': {
        const queue = link.queues[direction];
        const victim = queue.findIndex((c) => !c.fin && c.bytes.length > 0);
        if (victim < 0) return undefined;
        const chunk = queue[victim]!;
        const bytes = chunk.bytes.slice();
        const at = rng.int(bytes.length);
        bytes[at] = (bytes[at] as number) ^ (1 << rng.int(8));
        chunk.bytes = bytes;
        chunk.origin = 'flip';
        this.moves.flip++;
        return `flips a bit of byte ${at} of a ${direction} chunk in flight on link ${link.id}`;
      }
      case 'garbage': {
        const bytes = new Uint8Array(rng.between(1, 120));
        rng.fill(bytes);
        link.enqueue(direction, bytes, now, latency, 'forge');
        this.moves.garbage++;
        return `injects ${bytes.length} random bytes ${direction} on link ${link.id}`;
      }
    }
  }
}

const FORGEABLE_DOWN = [MessageType.WELCOME, MessageType.DATA, MessageType.REKEY, MessageType.CONFIRM, MessageType.PING];
const FORGEABLE_UP = [MessageType.HELLO, MessageType.DATA, MessageType.REKEY_ACK, MessageType.PONG, MessageType.DATA_ACK];
