/**
 * S1/S2/S4/S5 on every frame as it is sealed (docs/VERIFICATION.md §3),
 * whoever seals it (a core, or a broken variant's interposer): a device
 * frame must be under a key the hub accepts, a hub frame under a key the
 * device holds, live and durable, with the same bytes; and the key of the
 * frames a side seals never goes back (a frame sealed under an older key
 * after a newer one may reach a hub that has retired the older key).
 */
import { bytesEqual } from '../../modules/bytes';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import type { Side } from './frame-audit';
import { resolveHubKeys } from '../testing/hub-keys-view';
import type { SimWorld } from './sim-types';

type Report = (invariant: string, detail: string) => void;

export class SealChecker {
  readonly #lastSealed: Record<Side, number> = { device: 0, hub: 0 };
  checks = 0;

  stateText(): string {
    return `${this.#lastSealed.device}/${this.#lastSealed.hub}`;
  }

  /** `liveOnly`: only S1/S2 against the running peer (see WorldOptions.liveViewsOnly). */
  check(world: SimWorld, side: Side, keyId: number, key: Uint8Array, liveOnly: boolean, report: Report): void {
    this.checks += 2;
    const last = this.#lastSealed[side];
    if (keyId < last && !liveOnly) report('S4 ids never decrease', `${side} sealed a frame under key ${keyId} after one under key ${last}`);
    else this.#lastSealed[side] = Math.max(last, keyId);
    if (side === 'device') {
      const device = world.device.core?.keys ?? world.device.store.durable();
      const live = world.currentHub()?.core?.deviceKeys(world.deviceId);
      this.#acceptedByHub(keyId, key, 'live', live === undefined ? undefined : resolveHubKeys(live, device, world.deviceId), report);
      if (!liveOnly) this.#acceptedByHub(keyId, key, 'durable', resolveHubKeys(world.db.row(world.deviceId), device, world.deviceId), report);
    } else {
      this.#heldByDevice(keyId, key, 'live', world.device.core?.keys, report);
      if (!liveOnly) this.#heldByDevice(keyId, key, 'durable', world.device.store.durable(), report);
    }
  }

  #acceptedByHub(keyId: number, key: Uint8Array, name: string, h: { active: KeySlot; pending?: KeySlot } | undefined, report: Report): void {
    if (h === undefined) return;
    const slot: KeySlot | undefined = h.active.id === keyId ? h.active : h.pending?.id === keyId ? h.pending : undefined;
    if (slot === undefined) report('S1 hub accepts the device key', `device sealed a frame under key ${keyId}; hub (${name}) accepts ${h.active.id}${h.pending ? `,${h.pending.id}` : ''}`);
    else if (!bytesEqual(slot.key, key)) report('S5 one key per id', `device sealed under key id ${keyId}, which names another key at the hub (${name})`);
  }

  #heldByDevice(keyId: number, key: Uint8Array, name: string, d: DeviceKeys | undefined, report: Report): void {
    if (d === undefined) return;
    const slot: KeySlot | undefined = d.active.id === keyId ? d.active : d.future?.id === keyId ? d.future : undefined;
    if (slot === undefined) report('S2 device holds the hub key', `hub sealed a frame under key ${keyId}; device (${name}) holds ${d.active.id}${d.future ? `,${d.future.id}` : ''}`);
    else if (!bytesEqual(slot.key, key)) report('S5 one key per id', `hub sealed under key id ${keyId}, which names another key at the device (${name})`);
  }
}
