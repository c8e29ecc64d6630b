/**
 * Key-state safety invariants, checked after every step
 * (docs/VERIFICATION.md §3). Each side is looked at twice: as its running
 * core holds it (live) and as its storage would restore it after a crash
 * right now (durable). A crash is always one step away, so every pairing
 * of a device view with a hub view must be safe:
 * - S1 the hub accepts every key id the device may seal with, so it never
 *   retires a key the device may still use;
 * - S2 the device holds the key the hub seals with, with the same bytes;
 * - S3 at most two keys per side, the newer id above the active one;
 * - S4 key ids never decrease (per view, across restarts);
 * - S5 no key id ever names two different keys (across all views, ever).
 *
 * Rollbacks (docs/VERIFICATION.md §11, docs/PROTOCOL.md §12.5) break some
 * of these by design, and the checks say exactly which hold instead:
 * - S1/S2 (and the pairings' S5) are not expected right after a rollback:
 *   they are off from the rollback until the pair is next in sync, and
 *   hold from then on ("after convergence");
 * - S4 starts again for the views of the side that was rolled back;
 * - S5 becomes per side: no id ever names two keys on the device across
 *   all its lives (single-side rollbacks: hub restored, or device
 *   re-flashed); on the hub across its lives while only the device is
 *   rolled back, and from each restore on (a restored hub may reissue an id
 *   it issued after the backup, which never reached the device). After a
 *   double rollback (both at once, or the second before the pair converged
 *   from the first) neither side remembers the ids issued in between: the
 *   device's S5 then holds from that rollback on (a new epoch), as §12.5
 *   states, and the global S5 (one id, one key, everywhere, ever) holds only
 *   in runs without rollbacks.
 */
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { hasKey, resolveHubKeys, type HubKeysView } from '../testing/hub-keys-view';
import { fnv1a } from './rng';

/** A hub view: its pending slot may be a dh exchange, resolved against each device view (§11). */
export type HubKeys = HubKeysView;

export interface KeyViews {
  readonly deviceLive: DeviceKeys | undefined;
  readonly deviceDurable: DeviceKeys;
  readonly hubLive: HubKeys | undefined;
  readonly hubDurable: HubKeys;
}

type Report = (invariant: string, detail: string) => void;

type ViewName = 'deviceLive' | 'deviceDurable' | 'hubLive' | 'hubDurable';

/** Per-view memory for S4: the highest active id and the highest id held. */
interface Highest {
  active: number;
  newest: number;
}

export class KeyInvariants {
  /** S5: the bytes each key id named when first seen. */
  readonly #keyOfId = new Map<number, Uint8Array>();
  /** S5 per side across rollbacks (see above). */
  readonly #deviceKeyOfId = new Map<number, Uint8Array>();
  readonly #hubKeyOfId = new Map<number, Uint8Array>();
  /** A rollback struck: the global S5 no longer applies (from then on, per side). */
  #rolledBack = false;
  /** S1/S2 are off from a rollback until the pair is next in sync. */
  #pairsOff = false;
  /** The side rolled back since the pair was last in sync (a rollback of the other one is a double rollback). */
  #unconverged: 'device' | 'hub' | 'both' | undefined;
  /** Double rollbacks seen (each starts a new epoch of the device's S5). */
  doubleRollbacks = 0;
  readonly #highest: Record<ViewName, Highest> = {
    deviceLive: { active: 0, newest: 0 },
    deviceDurable: { active: 0, newest: 0 },
    hubLive: { active: 0, newest: 0 },
    hubDurable: { active: 0, newest: 0 },
  };
  checks = 0;

  stateText(): string {
    const ids = (map: Map<number, Uint8Array>) => [...map.entries()].map(([id, key]) => `${id}:${fnv1a(key)}`).join(',');
    const highest = Object.values(this.#highest).map((h) => `${h.active}/${h.newest}`);
    const rollback = this.#rolledBack ? `|${ids(this.#deviceKeyOfId)}|${ids(this.#hubKeyOfId)}|${this.#pairsOff ? 1 : 0}${this.#unconverged ?? '-'}${this.doubleRollbacks}` : '';
    return `${ids(this.#keyOfId)}|${highest.join(',')}${rollback}`;
  }

  /**
   * A rollback struck `side` (world.rolledBack). `discardedLife`: the device
   * was re-flashed with an image taken before the last double rollback, so
   * it holds keys of a discarded life again — one more double rollback
   * (§12.5: "restoring one of those again is one more rollback").
   */
  rolledBack(side: 'device' | 'hub' | 'both', discardedLife = false): void {
    this.#rolledBack = true;
    this.#pairsOff = true;
    const double = side === 'both' || discardedLife || (this.#unconverged !== undefined && this.#unconverged !== side);
    this.#unconverged = double ? 'both' : side;
    if (double) {
      this.doubleRollbacks++;
      this.#deviceKeyOfId.clear();
    }
    if (side !== 'device') this.#hubKeyOfId.clear();
    for (const view of side === 'device' ? (['deviceLive', 'deviceDurable'] as const) : side === 'hub' ? (['hubLive', 'hubDurable'] as const) : (['deviceLive', 'deviceDurable', 'hubLive', 'hubDurable'] as const)) {
      this.#highest[view] = { active: 0, newest: 0 };
    }
  }

  /** S1/S2 are off (a rollback struck and the pair has not been in sync since). */
  get pairsOff(): boolean {
    return this.#pairsOff;
  }

  /**
   * `liveOnly`: only S1/S2 between the running cores — do device and hub
   * actually disagree? (shows that a broken variant really loses sync after
   * some crash, not only that it could).
   */
  /** `deviceId` (hex) binds a dh derivation (§11.3): the checks resolve the hub's dh pending slot with it. */
  constructor(readonly deviceId: string) {}

  /** `synced`: the pair is in sync this step (sync.ts); after a rollback that re-arms S1/S2. */
  check(views: KeyViews, report: Report, liveOnly = false, synced = false): void {
    const { deviceLive, deviceDurable, hubLive, hubDurable } = views;
    if (synced && this.#pairsOff) {
      this.#pairsOff = false;
      this.#unconverged = undefined;
    }
    if (this.#pairsOff) {
      this.#sides(views, report);
      return;
    }
    if (liveOnly) {
      if (deviceLive !== undefined && hubLive !== undefined) this.#pair(deviceLive, 'live', hubLive, 'live', report);
      return;
    }
    if (deviceLive !== undefined) {
      if (hubLive !== undefined) this.#pair(deviceLive, 'live', hubLive, 'live', report);
      this.#pair(deviceLive, 'live', hubDurable, 'durable', report);
    }
    if (hubLive !== undefined) this.#pair(deviceDurable, 'durable', hubLive, 'live', report);
    this.#pair(deviceDurable, 'durable', hubDurable, 'durable', report);
    this.#sides(views, report);
  }

  /** The checks of each side on its own (S3, S4, S5), which hold at every step, rollbacks or not. */
  #sides(views: KeyViews, report: Report): void {
    const { deviceLive, deviceDurable, hubLive, hubDurable } = views;
    if (deviceLive !== undefined) this.#device(deviceLive, 'deviceLive', report);
    this.#device(deviceDurable, 'deviceDurable', report);
    if (hubLive !== undefined) this.#hub(hubLive, 'hubLive', report);
    this.#hub(hubDurable, 'hubDurable', report);
  }

  /** S1 and S2 for one device view against one hub view. */
  #pair(d: DeviceKeys, dName: string, hubView: HubKeys, hName: string, report: Report): void {
    this.checks += 2;
    const h = resolveHubKeys(hubView, d, this.deviceId);
    const seal = d.future ?? d.active;
    const accepted = seal.id === h.active.id ? h.active : seal.id === h.pending?.id ? h.pending : undefined;
    if (accepted === undefined) {
      report('S1 hub accepts the device key', `device (${dName}) seals with ${seal.id}; hub (${hName}) accepts ${h.active.id}${h.pending ? `,${h.pending.id}` : ''}`);
    } else if (!sameKey(accepted.key, seal.key)) {
      report('S5 one key per id', `key id ${seal.id} is one key at the device (${dName}) and another at the hub (${hName})`);
    }
    const held = h.active.id === d.active.id ? d.active : h.active.id === d.future?.id ? d.future : undefined;
    if (held === undefined) {
      report('S2 device holds the hub key', `hub (${hName}) seals with ${h.active.id}; device (${dName}) holds ${d.active.id}${d.future ? `,${d.future.id}` : ''}`);
    } else if (!sameKey(held.key, h.active.key)) {
      report('S5 one key per id', `key id ${h.active.id} is one key at the hub (${hName}) and another at the device (${dName})`);
    }
  }

  #device(d: DeviceKeys, view: ViewName, report: Report): void {
    this.checks++;
    if (d.future !== undefined && d.future.id <= d.active.id) report('S3 two keys, newer above', `${view} future ${d.future.id} <= active ${d.active.id}`);
    this.#monotonic(view, d.active.id, d.future?.id ?? d.active.id, report);
    this.#register(d.active, view, report);
    if (d.future !== undefined) this.#register(d.future, view, report);
  }

  /** S5 where a rollback leaves it: the global registry until the first rollback, per side always. */
  #register(slot: KeySlot, where: ViewName, report: Report): void {
    this.checks++;
    if (!this.#rolledBack) this.#registerIn(this.#keyOfId, slot, where, 'S5 one key per id', report);
    const device = where === 'deviceLive' || where === 'deviceDurable';
    const epoch = this.doubleRollbacks > 0 ? ' (since the last double rollback)' : '';
    if (device) this.#registerIn(this.#deviceKeyOfId, slot, where, 'S5 one key per id on the device, across its lives', report, epoch);
    else this.#registerIn(this.#hubKeyOfId, slot, where, 'S5 one key per id on the hub', report);
  }

  #hub(h: HubKeys, view: ViewName, report: Report): void {
    this.checks++;
    if (h.pending !== undefined && h.pending.id <= h.active.id) report('S3 two keys, newer above', `${view} pending ${h.pending.id} <= active ${h.active.id}`);
    // After a rollback, until the pair converges, a restored hub may replace a recovered pending key
    // the device refuses (its id above A + 1) by A + 1 (docs/PROTOCOL.md §12.4): its newest id may go down then.
    this.#monotonic(view, h.active.id, this.#pairsOff ? Math.max(h.active.id, this.#highest[view].newest) : h.pending?.id ?? h.active.id, report);
    this.#register(h.active, view, report);
    // A dh pending slot names no key bytes yet (its key exists once derived: then it is the device's and the pair checks compare it).
    // Until a rolled-back pair converges, the hub may drop a pending key the device refused (and never held) and reuse its id:
    // its pending slot is left out of S5 then (the device's S5 covers every key the device holds).
    if (!this.#pairsOff && h.pending?.key !== undefined && hasKey({ id: h.pending.id, key: h.pending.key })) this.#register({ id: h.pending.id, key: h.pending.key }, view, report);
  }

  /** S4: the active id of a view never decreases, nor does the newest id it holds. */
  #monotonic(view: ViewName, active: number, newest: number, report: Report): void {
    this.checks += 2;
    const highest = this.#highest[view];
    if (active < highest.active) report('S4 ids never decrease', `${view} active id went from ${highest.active} to ${active}`);
    else highest.active = active;
    if (newest < highest.newest) report('S4 ids never decrease', `${view} newest id went from ${highest.newest} to ${newest}`);
    else highest.newest = newest;
  }

  /** S5: the first key seen under an id is the only key that id may ever name (in this registry). */
  #registerIn(registry: Map<number, Uint8Array>, slot: KeySlot, where: string, invariant: string, report: Report, epoch = ''): void {
    const known = registry.get(slot.id);
    if (known === undefined) registry.set(slot.id, slot.key.slice());
    else if (!sameKey(known, slot.key)) report(invariant, `key id ${slot.id} at the ${where} differs from the key that id named before${epoch}`);
  }
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
