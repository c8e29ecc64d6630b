/**
 * Handing a chunk of a link's stream to the receiving host, with the
 * delivery faults of the step (faults.ts): a cut after any byte (then the
 * link is reset), and, in the random mode, TCP chunking — a chunk split,
 * or joined with the next ones already arrived. The hub host may leave
 * input in the network while a write of the device is outstanding (it
 * pauses the connection): the chunk then stays queued until the write is
 * acknowledged.
 */
import type { StepFaults } from './faults';
import type { Direction, Link } from './network';
import { RESET_NOTICE_MS } from './constants';
import { fnv1a } from './rng';
import type { SimWorld } from './sim-types';

export function deliver(world: SimWorld, linkId: number, direction: Direction, faults: StepFaults | undefined): void {
  const link = world.links.get(linkId);
  if (link === undefined || link.head(direction) === undefined) return;
  if (faults?.coalesce === true) coalesce(world, link, direction);
  const chunk = link.head(direction)!;
  const hub = world.hubOf(link);
  const cutAtByte = faults?.cutAtByte;
  const split = faults?.splitAtByte;
  if (split !== undefined && cutAtByte === undefined && !chunk.fin && split > 0 && split < chunk.bytes.length) {
    const whole = chunk.bytes;
      const hub = world.hubOf(link);
    const delivered = direction === 'up' && link.hubAttached && hub.up ? hub.receive(link, whole.subarray(0, split), world.now) : true;
    if (!delivered) return;
    if (direction === 'down') handOver(world, link, direction, whole.subarray(0, split));
    chunk.bytes = whole.subarray(split);
    return;
  }
  const profile = world.profile;
  if (profile) {
    profile.delivery = { direction, length: chunk.bytes.length, frameType: chunk.bytes.length >= 4 ? chunk.bytes[3] : undefined, fin: chunk.fin };
    if (direction === 'up') {
      profile.hubInput = link.hubAttached && hub.up;
      if (profile.hubInput) profile.hubInstance = hub.index;
    }
    else profile.deviceInput = link.deviceAttached && world.device.link === link;
    profile.digest = fnv1a(chunk.bytes, profile.digest);
  }
  if (cutAtByte !== undefined) {
    const prefix = Math.min(cutAtByte, chunk.bytes.length);
    world.countFault(prefix > 0 && prefix < chunk.bytes.length ? 'link cut inside a frame' : 'link reset', world.now + RESET_NOTICE_MS);
    world.trace.log(() => `LINK ${link.id} CUT after ${prefix} of ${chunk.bytes.length} bytes of a ${direction} ${world.describeFrame(chunk.bytes)}`);
    if (prefix > 0 && !chunk.fin) {
      link.queues[direction].shift();
      handOver(world, link, direction, chunk.bytes.subarray(0, prefix));
    }
    world.resetLink(link, false);
    return;
  }
  if (chunk.fin) {
    link.queues[direction].shift();
    if (direction === 'up') hub.linkClosed(link, world.now);
    else world.device.linkClosed(link, world.now);
    return;
  }
  if (direction === 'up' && link.hubAttached && hub.up) {
    if (hub.receive(link, chunk.bytes, world.now)) link.queues.up.shift();
    return;
  }
  link.queues[direction].shift();
  handOver(world, link, direction, chunk.bytes);
}

/** Joins the head chunk with the following data chunks that have already arrived. */
function coalesce(world: SimWorld, link: Link, direction: Direction): void {
  const queue = link.queues[direction];
  if (queue[0]?.fin !== false) return;
  let count = 1;
  while (count < queue.length && !queue[count]!.fin && queue[count]!.at <= world.now) count++;
  if (count === 1) return;
  const parts = queue.splice(0, count);
  const total = parts.reduce((n, c) => n + c.bytes.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    bytes.set(part.bytes, at);
    at += part.bytes.length;
  }
  queue.unshift({ ...parts[0]!, bytes });
}

function handOver(world: SimWorld, link: Link, direction: Direction, bytes: Uint8Array): void {
  if (direction === 'up') {
    const hub = world.hubOf(link);
    if (link.hubAttached && hub.up) hub.receive(link, bytes, world.now);
  } else if (link.deviceAttached && world.device.link === link) {
    world.device.receive(bytes, world.now);
  }
}
