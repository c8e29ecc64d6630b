/**
 * XS heap in use (slot heap + chunk heap), for telemetry and traces, from the
 * SDK's `instrumentation` module. Only instrumented builds (`mcconfig -i`,
 * `-d`) count; otherwise this returns undefined.
 */
import Instrumentation from 'instrumentation';

const SLOT_HEAP = Instrumentation.map('XS Slot Heap Used');
const CHUNK_HEAP = Instrumentation.map('XS Chunk Heap Used');

export function heapBytes(): number | undefined {
  const slots = Instrumentation.get(SLOT_HEAP);
  const chunks = Instrumentation.get(CHUNK_HEAP);
  return slots === undefined || chunks === undefined ? undefined : slots + chunks;
}
