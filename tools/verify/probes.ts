/**
 * Probes for open findings (docs/VERIFICATION.md §6). F1: does a core
 * accept a frame it sealed itself, reflected back to it? While it does,
 * the random adversary leaves reflection out (so the other invariants stay
 * measured) and `npm run verify` reports F1 as open; once the cores reject
 * reflections, the adversary uses it again without any change here.
 */
import { RoundsDriver } from './driver';
import { World } from './world';

export interface ReflectionProbe {
  readonly deviceAcceptsOwnFrame: boolean;
  readonly hubAcceptsOwnFrame: boolean;
}

export function probeReflection(seed = 1): ReflectionProbe {
  return { deviceAcceptsOwnFrame: reflect(seed, 'down'), hubAcceptsOwnFrame: reflect(seed + 1, 'up') };
}

/** Sends two DATA frames from one side and reflects the second back to it when its sequence number is due. */
function reflect(seed: number, back: 'up' | 'down'): boolean {
  const world = new World({ seed, driver: new RoundsDriver(0), continueAfterViolation: true });
  for (let i = 0; i < 100 && !world.synced(); i++) world.stepOnce();
  const link = world.device.link;
  if (link === undefined) throw new Error('probe: no session');
  const from = back === 'down' ? 'up' : 'down';
  if (back === 'down') {
    world.device.send(world.now);
    world.device.send(world.now);
  } else {
    // The hub's next frame is seq 2; it expects device seq 1: let one device frame through first.
    world.hub.send(world.now);
    world.device.send(world.now);
  }
  const own = link.queues[from][back === 'down' ? 1 : 0];
  if (own === undefined) throw new Error('probe: nothing to reflect');
  if (back === 'up') {
    // Deliver the device's DATA (seq 1) so that the hub expects seq 2, then reflect the hub's seq 2.
    const deviceData = link.queues.up.shift()!;
    world.hub.receive(link, deviceData.bytes, world.now);
  }
  link.enqueue(back, own.bytes.slice(), world.now, 1, 'reflect');
  for (let i = 0; i < 50; i++) if (!world.stepOnce()) break;
  return world.violations.some((v) => v.invariant.startsWith('S8'));
}
