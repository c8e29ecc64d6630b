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
 */
import { toHex } from '../../modules/bytes';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { fnv1a } from './rng';

export interface HubKeys {
  readonly active: KeySlot;
  readonly pending?: KeySlot;
}

export interface KeyViews {
  readonly deviceLive: DeviceKeys | undefined;
  readonly deviceDurable: DeviceKeys;
  readonly hubLive: HubKeys | undefined;
  readonly hubDurable: HubKeys;
}

type Report = (invariant: string, detail: string) => void;

export class KeyInvariants {
  readonly #keyOfId = new Map<number, string>();
  readonly #highest = new Map<string, number>();
  checks = 0;

  stateText(): string {
    return `${[...this.#keyOfId.entries()].join(',')}|${[...this.#highest.entries()].join(',')}`;
  }

  check(views: KeyViews, report: Report): void {
    const devices: [string, DeviceKeys][] = [['durable', views.deviceDurable]];
    if (views.deviceLive !== undefined) devices.unshift(['live', views.deviceLive]);
    const hubs: [string, HubKeys][] = [['durable', views.hubDurable]];
    if (views.hubLive !== undefined) hubs.unshift(['live', views.hubLive]);

    for (const [dName, d] of devices) {
      const seal = d.future ?? d.active;
      for (const [hName, h] of hubs) {
        this.checks++;
        if (seal.id !== h.active.id && seal.id !== h.pending?.id) {
          report('S1 hub accepts the device key', `device (${dName}) seals with ${seal.id}; hub (${hName}) accepts ${h.active.id}${h.pending ? `,${h.pending.id}` : ''}`);
        }
        this.checks++;
        const held = h.active.id === d.active.id ? d.active : h.active.id === d.future?.id ? d.future : undefined;
        if (held === undefined) {
          report('S2 device holds the hub key', `hub (${hName}) seals with ${h.active.id}; device (${dName}) holds ${d.active.id}${d.future ? `,${d.future.id}` : ''}`);
        } else if (!sameKey(held.key, h.active.key)) {
          report('S5 one key per id', `key id ${h.active.id} is one key at the hub (${hName}) and another at the device (${dName})`);
        }
      }
    }

    for (const [name, d] of devices) {
      this.checks++;
      if (d.future !== undefined && d.future.id <= d.active.id) report('S3 two keys, newer above', `device (${name}) future ${d.future.id} <= active ${d.active.id}`);
      this.#monotonic(`device ${name}`, Math.max(d.active.id, d.future?.id ?? 0), d.active.id, report);
      this.#register(d.active, `device ${name}`, report);
      if (d.future !== undefined) this.#register(d.future, `device ${name}`, report);
    }
    for (const [name, h] of hubs) {
      this.checks++;
      if (h.pending !== undefined && h.pending.id <= h.active.id) report('S3 two keys, newer above', `hub (${name}) pending ${h.pending.id} <= active ${h.active.id}`);
      this.#monotonic(`hub ${name}`, Math.max(h.active.id, h.pending?.id ?? 0), h.active.id, report);
      this.#register(h.active, `hub ${name}`, report);
      if (h.pending !== undefined) this.#register(h.pending, `hub ${name}`, report);
    }
  }

  /** S4: the active id of a view never decreases, nor does the newest id it holds. */
  #monotonic(view: string, newest: number, active: number, report: Report): void {
    for (const [what, id] of [['active', active], ['newest', newest]] as const) {
      this.checks++;
      const key = `${view}:${what}`;
      const last = this.#highest.get(key) ?? 0;
      if (id < last) report('S4 ids never decrease', `${view} ${what} id went from ${last} to ${id}`);
      else this.#highest.set(key, id);
    }
  }

  /** S5: the first key seen under an id is the only key that id may ever name. */
  #register(slot: KeySlot, where: string, report: Report): void {
    this.checks++;
    const digest = toHex(slot.key.subarray(0, 8)) + fnv1a(slot.key).toString(16);
    const known = this.#keyOfId.get(slot.id);
    if (known === undefined) this.#keyOfId.set(slot.id, digest);
    else if (known !== digest) report('S5 one key per id', `key id ${slot.id} at the ${where} differs from the key that id named before`);
  }
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
