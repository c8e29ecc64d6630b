/**
 * Which event comes next (docs/VERIFICATION.md §1): the earliest of every
 * pending one; ties are broken by a fixed rank (commands, then database
 * commit and acknowledgement, boots, notices, deliveries — device-bound
 * after hub-bound —, core timers, reconnects), then by link id. Time never
 * goes back: an event already due is due now.
 */
import type { SimEvent } from './faults';
import type { SimWorld } from './sim-types';

const RANK: Record<SimEvent['kind'], number> = {
  command: 0,
  dbCommit: 1,
  dbAck: 2,
  hubRestart: 3,
  deviceBoot: 3,
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
  world.db.writes.forEach((write, index) => {
    if (!write.commitDone) consider({ kind: 'dbCommit', at: Math.max(now, write.commitAt), index });
    if (write.ackAt !== undefined && !write.acked) consider({ kind: 'dbAck', at: Math.max(now, write.ackAt), index });
  });
  if (world.hub.restartAt !== undefined) consider({ kind: 'hubRestart', at: world.hub.restartAt });
  if (world.device.bootAt !== undefined) consider({ kind: 'deviceBoot', at: world.device.bootAt });
  for (const notice of world.notices) consider({ kind: 'notice', at: notice.at, link: notice.link.id, side: notice.side });
  for (const link of world.links.values()) {
    for (const direction of ['up', 'down'] as const) {
      const head = link.head(direction);
      if (head !== undefined) consider({ kind: 'deliver', at: Math.max(now, head.at), link: link.id, direction });
    }
  }
  const deviceDeadline = world.device.nextDeadline();
  if (deviceDeadline !== undefined) consider({ kind: 'deviceTimer', at: Math.max(now, deviceDeadline) });
  const hubDeadline = world.hub.nextDeadline();
  if (hubDeadline !== undefined) consider({ kind: 'hubTimer', at: Math.max(now, hubDeadline) });
  if (world.device.reconnectAt !== undefined && world.device.up) consider({ kind: 'reconnect', at: Math.max(now, world.device.reconnectAt) });
  const storeDeadline = world.device.store.nextDeadline?.();
  if (storeDeadline !== undefined) consider({ kind: 'storeTimer', at: Math.max(now, storeDeadline) });
  return best;
}
