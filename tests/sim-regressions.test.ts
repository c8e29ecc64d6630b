/**
 * Bugs the verification simulation found (tools/verify, docs/VERIFICATION.md
 * §6), each reproduced minimally on the in-memory pair. Every bug the
 * simulation ever finds gets a named test here.
 */
import { Pair } from './support/pair';

function deliveredToDevice(pair: Pair): number[] {
  return pair.deviceEvents.flatMap((e) => (e.type === 'data' ? [e.payload[0] as number] : []));
}

function deliveredToHub(pair: Pair): number[] {
  return pair.hubEvents.flatMap((e) => (e.type === 'data' ? [e.payload[0] as number] : []));
}

describe('simulation findings', () => {
  // F2 (random mode, seed 2493169483): the hub queued app data while a
  // database write was outstanding and sent it only at the next send() or
  // the next session, so on a healthy, quiet session it waited forever.
  test('F2 hub app data queued during a persist is sent when the persist completes', () => {
    const pair = new Pair({ seed: 3 });
    pair.connect();
    pair.runUntilIdle();
    pair.autoPersist = false;
    pair.rotate();
    expect(pair.hubPersistPending).toBe(true);
    pair.hubSend(new Uint8Array([42]));
    pair.runUntilIdle();
    expect(pair.inSync()).toBe(true);
    expect(deliveredToDevice(pair)).toEqual([42]);
    expect(pair.hub.deviceState(pair.deviceId).outboxLength).toBe(0);
  });

  // F2, device side: the same for the device's outbox while its keystore write is outstanding.
  test('F2 device app data queued during a persist is sent when the persist completes', () => {
    const pair = new Pair({ seed: 4 });
    pair.connect();
    pair.runUntilIdle();
    pair.autoPersist = false;
    pair.rotate();
    for (let i = 0; i < 20 && !pair.devicePersistPending; i++) pair.step();
    expect(pair.devicePersistPending).toBe(true);
    pair.deviceSend(new Uint8Array([7]));
    pair.runUntilIdle();
    expect(pair.inSync()).toBe(true);
    expect(deliveredToHub(pair)).toEqual([7]);
    expect(pair.device.outboxLength).toBe(0);
  });
});
