/**
 * A connection cut after `cutAfter` bytes of a rotation have crossed the
 * pair's link (either direction, hub-bound first), with safety checked after
 * every delivered chunk; then a reconnection and convergence. Shared by the
 * cut-at-every-byte tests of both rekey modes.
 */
import type { Pair } from './pair';

/** Runs the rotation already started on `pair` up to the cut; `cut` is false when the rotation finished within the budget. */
export function cutRotation(pair: Pair, cutAfter: number): { pair: Pair; cut: boolean } {
  let budget = cutAfter;
  let cut = false;
  for (let i = 0; i < 1000 && !cut; i++) {
    const toHub = pair.toHub.length > 0;
    const queue = toHub ? pair.toHub : pair.toDevice;
    const chunk = queue.shift();
    if (chunk === undefined) break;
    if (chunk.length > budget) {
      // Deliver only the first `budget` bytes, then the link breaks.
      if (budget > 0) (toHub ? pair.deliverToHub(chunk.subarray(0, budget)) : pair.deliverToDevice(chunk.subarray(0, budget)));
      pair.disconnect();
      cut = true;
    } else {
      budget -= chunk.length;
      if (toHub) pair.deliverToHub(chunk);
      else pair.deliverToDevice(chunk);
    }
    pair.assertSafe();
  }
  pair.connect();
  pair.runUntilIdle();
  pair.assertSafe();
  return { pair, cut };
}
