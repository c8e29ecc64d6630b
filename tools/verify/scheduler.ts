/**
 * Which event comes next (docs/VERIFICATION.md §1): the earliest of every
 * pending one; ties are broken by a fixed rank (commands, then database
 * commit and acknowledgement, boots, notices, deliveries — device-bound
 * after hub-bound —, core timers, reconnects), then by link id. Time never
 * goes back: an event already due is due now. Nothing of a paused hub
 * instance runs (its commits, acknowledgements, timers, lease steps, input
 * and notices wait) until its resume event.
 */
import type { SimEvent } from './faults';
import type { SimWorld } from './sim-types';

const RANK: Record<SimEvent['kind'], number> = {
  command: 0,
  dbCommit: 1,
  dbAck: 2,
  hubRestart: 3,
  deviceBoot: 3,
  resume: 3,
  lease: 3,
  leaseNotice: 4,
  notice: 4,
  deliver: 5,
  deviceTimer: 7,
  hubTimer: 8,
  reconnect: 9,
  storeTimer: 10,
};

export function nextEvent(world: SimWorld): SimEvent | undefined {
  const now = world.now;
  if (world.driver.ready(world)) return { kind: 'command', at: now };
  let best: SimEvent | undefined;
  const consider = (event: SimEvent): void => {
    if (best === undefined || event.at < best.at || (event.at === best.at && RANK[event.kind] < RANK[best.kind])) best = event;
  };
  const commandAt = world.driver.nextAt?.(world);
  if (commandAt !== undefined) consider({ kind: 'command', at: Math.max(now, commandAt) });
  const paused = (instance: number): boolean => world.hubs[instance]?.pausedUntil !== undefined;
  world.db.writes.forEach((write, index) => {
    if (paused(write.instance)) return;
    if (!write.commitDone) consider({ kind: 'dbCommit', at: Math.max(now, write.commitAt), index });
    if (write.ackAt !== undefined && !write.acked) consider({ kind: 'dbAck', at: Math.max(now, write.ackAt), index });
  });
  for (const hub of world.hubs) {
    const instance = hub.index;
    if (hub.restartAt !== undefined) consider({ kind: 'hubRestart', at: hub.restartAt, instance });
    if (hub.pausedUntil !== undefined) {
      consider({ kind: 'resume', at: Math.max(now, hub.pausedUntil), instance });
      continue;
    }
    const deadline = hub.nextDeadline();
    if (deadline !== undefined) consider({ kind: 'hubTimer', at: Math.max(now, deadline), instance });
    const lease = hub.nextLeaseStep();
    if (lease !== undefined) consider({ kind: 'lease', at: Math.max(now, lease.at), instance, index: lease.index });
    const notified = hub.nextNotice();
    if (notified !== undefined) consider({ kind: 'leaseNotice', at: Math.max(now, notified), instance });
  }
  if (world.device.bootAt !== undefined) consider({ kind: 'deviceBoot', at: world.device.bootAt });
  for (const notice of world.notices) {
    if (notice.side === 'hub' && paused(notice.link.instance)) continue;
    consider({ kind: 'notice', at: notice.at, link: notice.link.id, side: notice.side });
  }
  for (const link of world.links.values()) {
    for (const direction of ['up', 'down'] as const) {
      if (direction === 'up' && link.hubAttached && paused(link.instance)) continue;
      const head = link.head(direction);
      if (head !== undefined) consider({ kind: 'deliver', at: Math.max(now, head.at), link: link.id, direction });
    }
  }
  const deviceDeadline = world.device.nextDeadline();
  if (deviceDeadline !== undefined) consider({ kind: 'deviceTimer', at: Math.max(now, deviceDeadline) });
  if (world.device.reconnectAt !== undefined && world.device.up) consider({ kind: 'reconnect', at: Math.max(now, world.device.reconnectAt) });
  const storeDeadline = world.device.store.nextDeadline?.();
  if (storeDeadline !== undefined) consider({ kind: 'storeTimer', at: Math.max(now, storeDeadline) });
  return best;
}
