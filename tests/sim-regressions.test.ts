/**
 * Bugs the verification simulation found (tools/verify, docs/VERIFICATION.md
 * §6), each reproduced minimally on the in-memory pair. Every bug the
 * simulation ever finds gets a named test here.
 */
import { Pair } from '../tools/testing/pair';

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

/**
 * F1 (random mode, adversary "reflect"; fixed): the header carried no
 * direction, and both sides use one key and the same session id, so a frame
 * a side sealed itself, reflected back to it when its expected sequence
 * number matched, authenticated. DATA, DATA_ACK, PING, PONG and ERROR are allowed
 * both ways, so the device accepts its own DATA as data from the hub (and
 * the hub its own). Key agreement is not affected (REKEY, REKEY_ACK,
 * CONFIRM, HELLO, WELCOME are one-way types), but S8 (no injected frame is
 * accepted) and S9 (app data integrity) are. Reported to the lead with a
 * fix: the direction is bound into the authenticated header (flags bit 0,
 * docs/PROTOCOL.md §3) and each side rejects a frame in its own direction
 * before it tries a key.
 */
describe('simulation findings: reflection (F1, fixed)', () => {
  test('F1 the device rejects its own DATA frame reflected back to it', () => {
    const pair = new Pair({ seed: 5 });
    pair.connect();
    pair.runUntilIdle();
    // The device sends DATA seq 1 and seq 2; it expects hub seq 2 next (CHALLENGE 0, WELCOME 1).
    pair.deviceSend(new Uint8Array([1]));
    pair.deviceSend(new Uint8Array([2]));
    const ownSeq2 = pair.toHub[1]!;
    const actions = pair.device.receive(ownSeq2, pair.now);
    expect(actions.filter((a) => a.type === 'event' && a.event.type === 'data')).toEqual([]);
    expect(actions.some((a) => a.type === 'event' && a.event.type === 'rejected')).toBe(true);
  });

  test('F1 the hub rejects its own DATA frame reflected back to it', () => {
    const pair = new Pair({ seed: 6 });
    pair.connect();
    pair.runUntilIdle();
    // The hub's next frame is seq 2 (CHALLENGE 0, WELCOME 1); it expects device seq 1 (HELLO was 0).
    pair.hubSend(new Uint8Array([1]));
    const ownSeq2 = pair.toDevice[0]!;
    pair.toDevice = [];
    pair.deviceSend(new Uint8Array([9]));
    pair.step(); // the hub accepts device DATA seq 1; it now expects device seq 2
    const actions = pair.hub.receive(pair.connectionId, ownSeq2, pair.now);
    expect(actions.filter((a) => a.type === 'event' && a.event.type === 'data')).toEqual([]);
    expect(deliveredToHub(pair)).toEqual([9]);
  });
});
