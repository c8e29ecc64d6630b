/**
 * Scenario drivers: what the operator and the applications do.
 *
 * RoundsDriver (exhaustive mode and the suites): whenever device and hub
 * are in sync, issue the next round — one app message each way and one
 * rotation, all at once, so DATA frames interleave with REKEY/REKEY_ACK. A
 * rotation lost to a hub crash before its commit is issued again (the
 * operator's scheduler retries); app messages lost with a rebooted sender
 * are not (at most once). Done when every round is issued, the hub's
 * active id is `initial + rounds` and the pair is in sync.
 */
import type { Driver, SimWorld } from './sim-types';

export class RoundsDriver implements Driver {
  readonly rounds: number;
  issued = 0;

  constructor(rounds: number) {
    this.rounds = rounds;
  }

  #target(world: SimWorld): number {
    return world.initialKeyId + this.issued;
  }

  #hubActive(world: SimWorld): number {
    return world.hub.core?.deviceState(world.deviceId).activeKeyId ?? 0;
  }

  ready(world: SimWorld): boolean {
    if (!world.synced()) return false;
    return this.issued < this.rounds || this.#hubActive(world) < this.#target(world);
  }

  run(world: SimWorld, now: number): void {
    if (this.#hubActive(world) < this.#target(world)) {
      world.trace.log(() => 'operator: rotation lost to a crash, rotating again');
      world.hub.rotate(now);
      world.liveness.roundIssued(now);
      return;
    }
    this.issued++;
    world.trace.log(() => `operator: round ${this.issued}: app data both ways + rotate`);
    world.hub.send(now);
    world.device.send(now);
    world.hub.rotate(now);
    world.liveness.roundIssued(now);
  }

  stateText(): string {
    return `rounds ${this.issued}/${this.rounds}`;
  }

  done(world: SimWorld): boolean {
    return this.issued >= this.rounds && this.#hubActive(world) >= this.#target(world) && world.synced();
  }
}
