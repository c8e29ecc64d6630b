/**
 * The faults that strike before a step's event (faults.ts BeforeFault):
 * power cut, hub crash (process or machine), link reset or silent cut,
 * delay, the adversary's moves, and a hub instance paused (SIGSTOP). Each one that takes effect is counted,
 * with the moment the environment is calm again (for the liveness bound).
 */
import { RESET_NOTICE_MS } from './constants';
import type { BeforeFault } from './faults';
import type { SimWorld } from './sim-types';

export function applyBeforeFault(world: SimWorld, fault: BeforeFault): void {
  switch (fault.kind) {
    case 'devicePowerCut':
      if (!world.device.up) return;
      world.device.powerCut(world.now, 'injected');
      world.countFault('device power cut', world.device.bootAt ?? world.now);
      return;
    case 'hubCrash': {
      const hub = fault.instance === undefined ? world.hub : world.hubs[fault.instance];
      if (hub === undefined || !hub.up) return;
      hub.crash(world.now, fault.silent, 'injected');
      world.countFault(fault.silent ? 'hub silent crash' : 'hub crash', hub.restartAt ?? world.now);
      return;
    }
    case 'pause': {
      const hub = world.hubs[fault.instance];
      if (hub === undefined || !hub.up || hub.pausedUntil !== undefined) return;
      hub.pause(world.now, world.now + fault.ms);
      world.countFault('instance paused', world.now + fault.ms);
      return;
    }
    case 'reset': {
      const link = world.device.link;
      if (link === undefined || link.dead) return;
      world.trace.log(() => `LINK ${link.id} ${fault.silent ? 'SILENTLY CUT' : 'RESET'}`);
      world.resetLink(link, fault.silent);
      world.countFault(fault.silent ? 'link silent cut' : 'link reset', world.now + RESET_NOTICE_MS);
      return;
    }
    case 'delay': {
      const link = world.device.link;
      if (link === undefined || link.dead) return;
      link.delay(fault.direction, fault.ms);
      world.trace.log(() => `LINK ${link.id} ${fault.direction} DELAYED by ${fault.ms} ms`);
      world.countFault('delay', link.lastArrival[fault.direction]);
      return;
    }
    case 'adversary': {
      const link = world.device.link;
      if (link === undefined || link.dead) return;
      const keyIds = world.hub.up ? world.hub.core!.acceptedKeyIds(world.deviceId) : [world.initialKeyId];
      const what = world.adversary.act(fault.move, link, world.now, world.latency(), world.rng, keyIds);
      if (what === undefined) return;
      world.trace.log(() => `ADVERSARY ${what}`);
      world.countFault(`adversary ${fault.move}`, Math.max(link.lastArrival.up, link.lastArrival.down));
      return;
    }
  }
}
