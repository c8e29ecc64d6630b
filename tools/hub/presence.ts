/**
 * What the host knows about each device beyond its keys (those are the
 * core's): when its active key was confirmed, when it was last seen, and
 * which connection has it online. None of it is safety-relevant; last-seen
 * times are written in batches by tools/hub/control.ts.
 */
import type { ConnectionId } from '../../modules/hub/actions';
import type { StoredDevice } from './store';

interface Presence {
  connection: ConnectionId | undefined;
  activeSince: number;
  lastSeenAt: number | undefined;
}

export class DevicePresence {
  readonly #devices = new Map<string, Presence>();
  /** Last-seen times not yet written to the database. */
  readonly #dirty = new Map<string, number>();
  /** The devices online now: what the rotation schedule walks each tick (not every device known). */
  readonly #online = new Set<string>();

  get online(): number {
    return this.#online.size;
  }

  onlineDevices(): ReadonlySet<string> {
    return this.#online;
  }

  has(deviceId: string): boolean {
    return this.#devices.has(deviceId);
  }

  track(stored: StoredDevice): void {
    this.#devices.set(stored.deviceId, { connection: undefined, activeSince: stored.activeSince, lastSeenAt: stored.lastSeenAt });
  }

  view(deviceId: string): { activeSince: number; lastSeenAt: number | undefined } {
    const presence = this.#devices.get(deviceId.toLowerCase());
    return { activeSince: presence?.activeSince ?? 0, lastSeenAt: presence?.lastSeenAt };
  }

  connected(deviceId: string, connection: ConnectionId, now: number): void {
    const presence = this.#devices.get(deviceId);
    if (presence === undefined) return;
    this.#online.add(deviceId);
    presence.connection = connection;
    this.#seen(deviceId, presence, now);
  }

  /** Only the connection that has the device online takes it offline (a newer one may have replaced it). */
  disconnected(deviceId: string, connection: ConnectionId, now: number): void {
    const presence = this.#devices.get(deviceId);
    if (presence === undefined || presence.connection !== connection) return;
    presence.connection = undefined;
    this.#online.delete(deviceId);
    this.#seen(deviceId, presence, now);
  }

  /** A revoked device (issue 17). */
  forget(deviceId: string): void {
    const presence = this.#devices.get(deviceId);
    if (presence === undefined) return;
    this.#online.delete(deviceId);
    this.#devices.delete(deviceId);
    this.#dirty.delete(deviceId);
  }

  keyConfirmed(deviceId: string, now: number): void {
    const presence = this.#devices.get(deviceId);
    if (presence !== undefined) presence.activeSince = now;
  }

  /** The last-seen times to write, handed over once. */
  takeDirty(): Map<string, number> | undefined {
    if (this.#dirty.size === 0) return undefined;
    const dirty = new Map(this.#dirty);
    this.#dirty.clear();
    return dirty;
  }

  #seen(deviceId: string, presence: Presence, now: number): void {
    presence.lastSeenAt = now;
    this.#dirty.set(deviceId, now);
  }
}
