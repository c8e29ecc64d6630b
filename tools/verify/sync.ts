/**
 * What each side holds (the views the invariants compare) and the "in
 * sync" predicate of the liveness checks (docs/VERIFICATION.md §4): one
 * shared active key (same bytes), no future or pending key, live and
 * durable; nothing being persisted; both app outboxes empty; a session
 * established on a live link — with hub instances, to the instance holding
 * the lease.
 */
import type { KeyViews } from './invariants';
import type { SimWorld } from './sim-types';

export function keyViews(world: SimWorld): KeyViews {
  return {
    deviceLive: world.device.core?.keys,
    deviceDurable: world.device.store.durable(),
    // With instances, the live hub view is the instance holding the lease (a stale instance's cache can neither write nor reach the device).
    hubLive: world.currentHub()?.core?.deviceKeys(world.deviceId),
    hubDurable: world.db.row(world.deviceId),
  };
}

export function inSync(world: SimWorld, views?: KeyViews): boolean {
  const device = world.device.core;
  const serving = world.currentHub();
  const hub = serving?.core;
  const link = world.device.link;
  if (device === undefined || hub === undefined || link === undefined || link.dead || !link.hubAttached) return false;
  if (world.hubOf(link) !== serving || serving.pausedUntil !== undefined) return false;
  if (device.session !== 'established' || device.persisting !== undefined || device.outboxLength > 0) return false;
  // One hub: nothing being persisted. Instances: nothing of the serving one (a paused instance's stale write is the fence's business).
  if (world.hubs.length === 1 ? world.db.writes.length > 0 : world.db.writesOf(serving.index) > 0) return false;
  const state = hub.deviceState(world.deviceId);
  if (state.pendingKeyId !== undefined || state.persisting || !state.connected || state.outboxLength > 0) return false;
  const v = views ?? keyViews(world);
  const d = v.deviceLive!;
  const h = v.hubLive!;
  if (d.future !== undefined || v.deviceDurable.future !== undefined || v.hubDurable.pending !== undefined) return false;
  if (d.active.id !== h.active.id || v.deviceDurable.active.id !== h.active.id || v.hubDurable.active.id !== h.active.id) return false;
  for (let i = 0; i < d.active.key.length; i++) if (d.active.key[i] !== h.active.key[i]) return false;
  return true;
}
