/**
 * The recovery rules of docs/PROTOCOL.md §12.4 checked on the real code
 * (docs/VERIFICATION.md §11), at the moments they are about:
 * - R1 nothing acts before the peer is authenticated: a recovered key the
 *   device stores is one the hub core decided (no impostor's); the hub
 *   commits a recovered key only after an authentic RECOVER_FINISH (one the
 *   device core sent) reached it;
 * - R2 persist before acting: when the device stores a recovered (N, K) the
 *   hub's database holds it (unless the hub was restored after it answered:
 *   a further rollback); the hub sends RECOVER_RESULT ACCEPTED only with its
 *   pending N durable; the device seals under a recovered key only once its
 *   own storage holds it;
 * - R3 N is above every id the device holds (the device's keystore refuses
 *   otherwise; checked here too, on the keys before the write).
 */
import { bytesEqual } from '../../modules/bytes';
import type { DevicePersistOp } from '../../modules/device/actions';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import type { SimWorld } from './sim-types';

type RecoveryWorld = SimWorld & {
  readonly hubRecovered: Map<number, Uint8Array[]>;
  hubRestoredSinceResult: boolean;
  readonly deviceRecovered: Map<number, Uint8Array>;
  violation(invariant: string, detail: string): void;
};

function holds(keys: { active: KeySlot; pending?: { id: number; key?: Uint8Array | undefined } }, id: number, key: Uint8Array): boolean {
  if (keys.active.id === id) return bytesEqual(keys.active.key, key);
  return keys.pending?.id === id && keys.pending.key !== undefined && bytesEqual(keys.pending.key, key);
}

function deviceHolds(keys: DeviceKeys, id: number, key: Uint8Array): boolean {
  if (keys.active.id === id) return bytesEqual(keys.active.key, key);
  return keys.future?.id === id && bytesEqual(keys.future.key, key);
}

export class RecoveryChecks {
  /** The recovered ids for which the device core sent RECOVER_FINISH (it had verified tag2, so the hub static key). */
  readonly finishedFor = new Set<number>();
  checks = 0;

  stateText(): string {
    return [...this.finishedFor].join(',');
  }

  /** The hub's database commits a recovered key (hub-host.ts). */
  hubCommits(world: RecoveryWorld, id: number): void {
    this.checks++;
    if (!this.finishedFor.has(id)) world.violation('R1 nothing acts before authentication', `the hub's database commits recovered key ${id} before the device sent RECOVER_FINISH for it`);
  }

  /** The hub sends RECOVER_RESULT ACCEPTED; `pending` is its live pending slot (the key it decided). */
  hubAnswersAccepted(world: RecoveryWorld, pending: KeySlot | undefined): void {
    this.checks++;
    world.hubRestoredSinceResult = false;
    if (pending === undefined || !holds(world.db.row(world.deviceId), pending.id, pending.key)) {
      world.violation('R2 persisted before use', `the hub sends RECOVER_RESULT ACCEPTED${pending ? ` for ${pending.id}` : ''} before its database holds the recovered key`);
    }
  }

  /** The hub core decides a recovered key (its storeRecovered op). */
  hubDecides(world: RecoveryWorld, id: number, key: Uint8Array): void {
    const keys = world.hubRecovered.get(id) ?? [];
    keys.push(key.slice());
    world.hubRecovered.set(id, keys);
  }

  /** The device begins a keystore write. */
  deviceStores(world: RecoveryWorld, op: DevicePersistOp): void {
    if (op.kind !== 'storeRecovered') return;
    this.checks += 3;
    const decided = world.hubRecovered.get(op.id)?.some((key) => bytesEqual(key, op.key)) === true;
    if (!decided) world.violation('R1 nothing acts before authentication', `the device stores recovered key ${op.id}, which no hub decision produced`);
    const before = world.device.store.durable();
    if (op.id <= Math.max(before.active.id, before.future?.id ?? 0)) {
      world.violation('R3 recovered id above every id held', `the device stores recovered key ${op.id} while it holds ${before.active.id}${before.future ? `,${before.future.id}` : ''}`);
    }
    if (decided && !world.hubRestoredSinceResult && !holds(world.db.row(world.deviceId), op.id, op.key)) {
      world.violation('R2 persisted before use', `the device stores recovered key ${op.id}, which the hub's database does not hold`);
    }
    world.deviceRecovered.set(op.id, op.key.slice());
  }

  /** The device seals a frame under `keyId` (seal-check.ts). */
  deviceSeals(world: RecoveryWorld, keyId: number, key: Uint8Array): void {
    const recovered = world.deviceRecovered.get(keyId);
    if (recovered === undefined || !bytesEqual(recovered, key)) return;
    this.checks++;
    if (!deviceHolds(world.device.store.durable(), keyId, key)) world.violation('R2 persisted before use', `the device seals under recovered key ${keyId} before its storage holds it`);
  }
}
