/**
 * What every hub-mode scenario works with: the link to the hub under test
 * (target, connection budget), the devices it may claim, the hooks that
 * make the hub rotate / crash / restart, the timeouts, and a ScenarioRun
 * that records its frames and files verdicts with them as evidence.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequirementFeature } from '../requirements';
import type { RekeyMode } from '../../../modules/platform/keys';
import type { Report } from '../report';
import { FrameRecording } from '../wire/recording';
import { WirePeer, type WireTarget } from '../wire/peer';
import type { HubStaticPublic, KitDevice } from './kit-devices';
import { KitSession, type KitLink } from './session';

/** How the kit makes the hub under test act (the CLI builds them from --rotate-cmd, --kill-cmd, --start-cmd). */
export interface HubHooks {
  /** Make the hub start a rotation of this device now (HK1). */
  readonly rotate?: (deviceId: string) => Promise<void>;
  /** Crash the hub now (SIGKILL or the like: nothing flushed). */
  readonly kill?: () => Promise<void>;
  /** Start the hub again on its database; the kit then waits until it accepts connections. */
  readonly start?: () => Promise<void>;
}

export interface HubKitTimeouts {
  /** An answer the hub owes at once (CHALLENGE, WELCOME, PONG, DATA_ACK, CONFIRM). Default 3 s. */
  readonly frameMs: number;
  /** From a rotation request to the REKEY on an established session. Default 15 s. */
  readonly rotationMs: number;
  /** How long to wait for a re-offer of an unacknowledged REKEY (H-RETRY-1 needs ≥ 30 s to fail a hub). Default 35 s. */
  readonly reofferMs: number;
  /** After a rejected frame: silence this long counts as "nothing sent in answer". Default 400 ms. */
  readonly silenceMs: number;
  /** After --start-cmd: the hub accepts connections within this. Default 30 s. */
  readonly startMs: number;
  /** TCP connect (+ TLS handshake). Default 5 s. */
  readonly connectMs: number;
  /**
   * A recovery the hub closed without an answer after it had answered NO_KEY before (its per-source limit, H-RATE-2,
   * probably): the kit waits this long, quiet, and tries once more before judging. Default 15 s.
   */
  readonly rateRetryMs: number;
}

export const DEFAULT_TIMEOUTS: HubKitTimeouts = { frameMs: 3_000, rotationMs: 15_000, reofferMs: 35_000, silenceMs: 400, startMs: 30_000, connectMs: 5_000, rateRetryMs: 15_000 };

export interface KeepAliveOptions {
  /** How often the quiet device sends PING (the spec's keep-alive interval: 15 s). */
  readonly intervalMs: number;
  /** How long the device stays quiet but for PINGs; below IDLE_TIMEOUT (45 s) a pass is inconclusive (n/a). Default 65 s (also the handshake timeout's 60 s bound). */
  readonly waitMs: number;
}

export interface HubKitOptions {
  readonly target: WireTarget;
  readonly devices: KitDevice[];
  readonly hubStatic?: HubStaticPublic;
  readonly hooks?: HubHooks;
  /** Without a rotate hook: the hub rotates on its own schedule at least this often. */
  readonly waitRotationMs?: number;
  /** Run only these scenarios (names of SCENARIOS). */
  readonly scenarios?: readonly string[];
  /** Optional features (PROTOCOL.md §15) the hub under test declares absent: never exercised, their ids n/a. */
  readonly without?: readonly RequirementFeature[];
  /** Randomized fault runs: this long (0: none). */
  readonly durationMs?: number;
  /** Devices in the randomized fault runs (claimed from the pool). Default 4. */
  readonly faultDevices?: number;
  /** Sockets open at once, at most. Default 32. */
  readonly maxConnections?: number;
  /** The whole run, at most (scenarios still running are cut short and their requirements fail as unfinished). Default 15 min. */
  readonly totalTimeoutMs?: number;
  readonly timeouts?: Partial<HubKitTimeouts>;
  readonly keepAlive?: Partial<KeepAliveOptions>;
  /**
   * At least this long between two connections whose HELLO the kit expects to fail (the negative vectors, the
   * recovery's NO_KEYs): what a hub's per-source limit (H-RATE-2) must allow is then 1000 / recoveryPaceMs a second.
   * Default 0 (unpaced).
   */
  readonly recoveryPaceMs?: number;
  /** Cut the rotation at every `cutStride`-th byte (1: every byte). */
  readonly cutStride?: number;
  /** The crash scenario's parts: the rekey modes whose three moments it crashes at (default both), and the crash after RECOVER_RESULT (default on). */
  readonly crash?: { readonly modes?: readonly RekeyMode[]; readonly recovery?: boolean };
  /** Seed of the randomized fault runs (printed; the same seed replays the same choices). */
  readonly seed?: number;
  readonly log?: (line: string) => void;
  /** Called whenever the devices' keys changed (the CLI rewrites the kit-private file). */
  readonly onDevicesChanged?: (devices: readonly KitDevice[]) => void;
}

export class ScenarioRun {
  readonly recording = new FrameRecording();
  readonly #report: Report;
  readonly name: string;

  constructor(name: string, report: Report) {
    this.name = name;
    this.#report = report;
  }

  pass(id: string): void {
    this.#report.pass(id, this.name);
  }

  /** Fails `id` with the note and the last frames of this scenario as evidence. */
  fail(id: string, note: string, frames = 12): void {
    this.#report.fail(id, { scenario: this.name, note, frames: this.recording.evidence(frames) });
  }

  check(id: string, ok: boolean, note: string): boolean {
    if (ok) this.pass(id);
    else this.fail(id, note);
    return ok;
  }

  notApplicable(id: string, reason: string): void {
    this.#report.notApplicable(id, reason);
  }
}

export class HubKitContext {
  readonly link: KitLink;
  readonly report: Report;
  readonly options: HubKitOptions;
  readonly timeouts: HubKitTimeouts;
  readonly #free: KitDevice[];
  readonly deadline: number;

  /** NO_KEY answers seen in this run: a hub that answered some and then closes a HELLO without one is limiting the source. */
  noKeyAnswers = 0;
  #lastFailingHello = -Infinity;

  /** Waits until the next failing HELLO keeps `recoveryPaceMs` from the previous one. */
  async paceFailingHello(): Promise<void> {
    const pace = this.options.recoveryPaceMs ?? 0;
    const wait = this.#lastFailingHello + pace - performance.now();
    if (pace > 0 && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.#lastFailingHello = performance.now();
  }

  constructor(options: HubKitOptions, report: Report, link: KitLink) {
    this.options = options;
    this.report = report;
    this.link = link;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.#free = [...options.devices];
    this.deadline = performance.now() + (options.totalTimeoutMs ?? 15 * 60_000);
  }

  get target(): WireTarget {
    return this.options.target;
  }

  get canRotate(): boolean {
    return this.options.hooks?.rotate !== undefined || this.options.waitRotationMs !== undefined;
  }

  get canCrash(): boolean {
    return this.options.hooks?.kill !== undefined && this.options.hooks.start !== undefined;
  }

  log(line: string): void {
    this.options.log?.(line);
  }

  /** A device not used by another scenario: of this mode, with a recovery credential if asked. */
  claim(want: { mode?: RekeyMode; credential?: boolean } = {}): KitDevice | undefined {
    const without = this.options.without ?? [];
    const fits = (d: KitDevice): boolean =>
      (want.mode === undefined || d.mode === want.mode) &&
      (want.credential !== true || d.credential !== undefined) &&
      // A hub without dh gets classic devices only; without recovery, no scenario relies on a credential.
      !(without.includes('dh') && d.mode === 'dh') &&
      !(without.includes('recovery') && want.credential === true);
    // A device no scenario used yet first (its state is settled at the hub), then one without a future key, then any.
    let at = this.#free.findIndex((d) => fits(d) && !this.#used.has(d) && d.future === undefined);
    if (at < 0) at = this.#free.findIndex((d) => fits(d) && d.future === undefined);
    if (at < 0) at = this.#free.findIndex(fits);
    if (at < 0) return undefined;
    const device = this.#free.splice(at, 1)[0] as KitDevice;
    this.#used.add(device);
    return device;
  }

  readonly #used = new Set<KitDevice>();

  /** The device is free again (its keys as they are now). */
  release(device: KitDevice): void {
    this.#free.push(device);
    this.options.onDevicesChanged?.(this.options.devices);
  }

  devicesChanged(): void {
    this.options.onDevicesChanged?.(this.options.devices);
  }

  /** Asks the hub to rotate the device (the hook), or relies on its schedule. */
  async requestRotation(deviceId: string): Promise<void> {
    await this.options.hooks?.rotate?.(deviceId);
  }

  /** How long to wait for a REKEY after requestRotation. */
  get rotationWaitMs(): number {
    return this.options.hooks?.rotate !== undefined ? this.timeouts.rotationMs : (this.options.waitRotationMs ?? this.timeouts.rotationMs);
  }

  /** Connects a device and reads the CHALLENGE; undefined (and the reason) when that fails. */
  async open(device: KitDevice, run: ScenarioRun): Promise<{ session?: KitSession; note?: string }> {
    let session: KitSession;
    try {
      session = await KitSession.connect(this.link, device, run.recording);
    } catch (error) {
      return { note: `cannot connect: ${(error as Error).message}` };
    }
    const challenge = await session.readChallenge(this.timeouts.frameMs);
    if (!challenge.ok) {
      session.destroy();
      return { note: challenge.note };
    }
    return { session };
  }

  /** Crashes the hub and starts it again; resolves once it accepts a connection (false if it did not within startMs). */
  async crashAndRestart(): Promise<boolean> {
    const hooks = this.options.hooks;
    if (hooks?.kill === undefined || hooks.start === undefined) return false;
    await hooks.kill();
    await hooks.start();
    const until = performance.now() + this.timeouts.startMs;
    while (performance.now() < until) {
      try {
        const peer = await WirePeer.connect(this.target, { budget: this.link.budget, connectTimeoutMs: this.timeouts.connectMs });
        const first = await peer.next(this.timeouts.frameMs);
        peer.destroy();
        if (first.kind === 'frame') return true;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    return false;
  }
}
