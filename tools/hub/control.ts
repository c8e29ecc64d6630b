/**
 * The control poll: what other processes ask of the serving hub through the
 * database (the CLI, tools/hub/cli.ts), and what the hub writes back that is
 * not safety-relevant.
 *
 * Each `poll`: renew this hub's exclusive lock (heartbeat), register devices
 * provisioned by another process (rows after the highest rowid seen), and
 * pass rotation requests to tools/hub/rotation.ts. `flushLastSeen` writes
 * the last-seen times tools/hub/presence.ts collected, in one transaction.
 */
import { describeError } from '../../modules/errors';
import type { Logger } from './log';
import type { DevicePresence } from './presence';
import type { Rotations } from './rotation';
import type { HubStore, StoredDevice } from './store';

export class ControlPoll {
  #lastRowid = 0;

  constructor(
    private readonly store: HubStore,
    private readonly heartbeat: (() => void) | undefined,
    private readonly register: (device: StoredDevice) => void,
    private readonly rotations: Rotations,
    private readonly presence: DevicePresence,
    private readonly log: Logger,
    private readonly modeChanged: (deviceId: string) => void = () => {},
    /** Issue 14: a record changed by another process (enrolment armed); returns whether it was applied (else retried at the next poll). */
    private readonly recordChanged: (deviceId: string) => boolean = () => true,
  ) {}

  /** A device row this hub already serves (loaded or registered): later polls look after it. */
  seen(rowid: number): void {
    this.#lastRowid = Math.max(this.#lastRowid, rowid);
  }

  poll(): void {
    try {
      this.heartbeat?.();
      for (const device of this.store.devicesAfter(this.#lastRowid)) {
        if (!this.presence.has(device.deviceId)) this.register(device);
        this.seen(device.rowid);
      }
      for (const deviceId of this.store.rotationRequests()) {
        if (this.presence.has(deviceId)) this.rotations.requested(deviceId);
      }
      for (const deviceId of this.store.modeChanges()) {
        if (this.presence.has(deviceId)) this.modeChanged(deviceId);
        this.store.clearModeChange(deviceId);
      }
      for (const deviceId of this.store.recordChanges()) {
        if (!this.presence.has(deviceId)) this.store.clearRecordChange(deviceId);
        else this.recordChanged(deviceId);
      }
    } catch (error) {
      this.log.error('controlPollFailed', { message: describeError(error) });
    }
  }

  flushLastSeen(): void {
    const dirty = this.presence.takeDirty();
    if (dirty === undefined) return;
    try {
      this.store.touch(dirty);
    } catch (error) {
      this.log.warn('lastSeenFailed', { message: describeError(error) });
    }
  }
}
