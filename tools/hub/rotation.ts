/**
 * Asking the core to rotate: from the library (`LockstepHub.rotate`), from
 * the schedule (tools/hub/scheduler.ts, each tick), and from rotation
 * requests other processes left in the database (tools/hub/control.ts).
 *
 * The core owns the rotation state: it answers 'started' (a fresh pending
 * key goes to the commit pipeline) or 'queued' (one rotation is in flight;
 * the core remembers one more and starts it once that one is confirmed,
 * HK2), or refuses (LOCAL_KEY_IDS_EXHAUSTED). Nothing is remembered here.
 */
import type { LockstepError } from '../../modules/errors';
import type { HubCore } from '../../modules/hub/hub';
import type { Logger } from './log';
import type { ActionPipeline } from './pipeline';
import type { RotationScheduler } from './scheduler';
import type { RotateResult } from './types';

export class Rotations {

  constructor(
    private readonly core: HubCore,
    private readonly pipeline: ActionPipeline,
    private readonly scheduler: RotationScheduler,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** The core's outcome, or its typed error. */
  rotate(deviceId: string): RotateResult | LockstepError {
    const result = this.core.rotate(deviceId, this.now());
    if (!result.ok) return result.error;
    this.pipeline.apply(result.actions);
    return result.outcome;
  }

  /** Starts the rotations the schedule says are due (at `wallNow`), for devices online with no rotation in flight or queued. */
  startDue(wallNow: number, online: Iterable<string>): void {
    const due = this.scheduler.due(wallNow, online, (deviceId) => {
      const state = this.core.deviceState(deviceId);
      return state.connected && state.pendingKeyId === undefined && !state.persisting && !state.rotationQueued;
    });
    for (const deviceId of due) this.#startLogged(deviceId);
  }

  /**
   * A rotation another process asked for (the request stays in the database
   * until a pending key of the device is committed): asked of the core once,
   * not again while that rotation is being written or queued.
   */
  requested(deviceId: string): void {
    const state = this.core.deviceState(deviceId);
    if (state.persisting || state.rotationQueued) return;
    this.log.info('rotationRequested', { deviceId });
    this.#startLogged(deviceId);
  }

  #startLogged(deviceId: string): void {
    const outcome = this.rotate(deviceId);
    if (typeof outcome !== 'string') this.log.error('rotateFailed', { deviceId, code: outcome.code, message: outcome.message });
  }
}
