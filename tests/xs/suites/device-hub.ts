/**
 * The device and hub cores on XS, talking through the in-memory link of
 * tools/testing/pair.ts (virtual clock, simulated storage) with the native
 * AEAD, over rotations, dropped connections, device power loss, hub restarts
 * and application data both ways. After every event the safety invariant
 * (docs/PROTOCOL.md §9, Pair.assertSafe: each side's sealing key is accepted
 * by the other, and a key id never names two keys) must hold; each scenario
 * must end with both sides on one shared key.
 */
import { nativeAead, nativeKeyAgreement } from '../../../hosts/moddable/native/native-aead';
import type { RekeyMode } from '../../../modules/platform/keys';
import { isLockstepError } from '../../../modules/errors';
import { Pair } from '../../../tools/testing/pair';
import { assert, assertEqual, test } from '../harness';

const G = 'core';
const MODES: readonly RekeyMode[] = ['classic', 'dh'];
/** Long enough for every re-offer and reconnect timer of the cores to fire. */
const SETTLE_MS = 10 * 60 * 1000;

/** The rekey mode of the scenarios below; each runs in both (docs/PROTOCOL.md §11: dh with the native X25519 and HKDF). */
let mode: RekeyMode = 'classic';

function established(seed: number): Pair {
  const pair = new Pair({ seed, aead: nativeAead, keyAgreement: nativeKeyAgreement, mode });
  pair.connect();
  pair.runUntilIdle();
  pair.assertSafe();
  assert(pair.inSync(), 'in sync after the handshake');
  return pair;
}

/** Reconnects and lets timers and the link run until both sides share one key. */
function converge(pair: Pair, context: string): void {
  for (let attempt = 0; attempt < 20 && !pair.inSync(); attempt++) {
    if (!pair.connected) pair.connect();
    pair.runUntilIdle();
    pair.assertSafe();
    pair.advance(SETTLE_MS / 20);
    pair.runUntilIdle();
    pair.assertSafe();
  }
  assert(pair.inSync(), `${context}: did not converge to one shared key`);
}

function dataPayloads(events: readonly { type: string }[]): number[] {
  const out: number[] = [];
  for (const event of events) {
    if (event.type === 'data') out.push((event as unknown as { payload: Uint8Array }).payload[0] as number);
  }
  return out;
}

/** Runs a driver action, tolerating local refusals (LOCAL_OUTBOX_FULL, LOCAL_PAYLOAD_TOO_LARGE, ...): they change no state. */
function tolerateLocal(action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!(isLockstepError(error) && error.code.startsWith('LOCAL_'))) throw error;
  }
}

/**
 * Starts a rotation and steps it `cut` deliveries far, asserting safety after
 * each; returns false when the rotation had already completed (both sides on
 * one newer key), i.e. there is nothing left to interrupt.
 */
function rotatePartly(pair: Pair, cut: number): boolean {
  const before = pair.device.keys.active.id;
  pair.rotate();
  pair.assertSafe();
  for (let i = 0; i < cut && pair.step(); i++) pair.assertSafe();
  return !(pair.inSync() && pair.device.keys.active.id > before);
}

for (const m of MODES) test(G, `${m}: handshake, then 20 rotations with data both ways, in order, under the native AEAD`, () => {
  mode = m;
  const pair = established(7);
  for (let i = 0; i < 20; i++) {
    pair.rotate();
    pair.deviceSend(Uint8Array.of(i));
    pair.hubSend(Uint8Array.of(100 + i));
    pair.runUntilIdle();
    pair.assertSafe();
    assert(pair.inSync(), `in sync after rotation ${i + 1}`);
    assertEqual(pair.device.keys.active.id, 2 + i, 'active key id');
  }
  const up = dataPayloads(pair.hubEvents);
  const down = dataPayloads(pair.deviceEvents);
  assertEqual(up.join(','), [...Array(20).keys()].join(','), 'device → hub data');
  assertEqual(down.join(','), [...Array(20).keys()].map((i) => 100 + i).join(','), 'hub → device data');
});

for (const m of MODES) test(G, `${m}: a connection dropped after every delivery of a rotation: safe throughout, then one shared newer key`, () => {
  mode = m;
  let cuts = 0;
  for (let cut = 0; cut < 64; cut++) {
    const pair = established(100 + cut);
    const before = pair.device.keys.active.id;
    if (!rotatePartly(pair, cut)) break;
    cuts++;
    pair.disconnect();
    pair.assertSafe();
    converge(pair, `cut after ${cut} deliveries`);
    assert(pair.device.keys.active.id > before, `cut ${cut}: the rotation completed after reconnecting`);
  }
  assert(cuts >= 3, `a rotation takes several deliveries (${cuts})`);
});

for (const m of MODES) test(G, `${m}: device power loss after every delivery of a rotation (persists outstanding): safe, converges`, () => {
  mode = m;
  let cuts = 0;
  for (let cut = 0; cut < 64; cut++) {
    const pair = established(200 + cut);
    pair.autoPersist = false;
    if (!rotatePartly(pair, cut)) break;
    cuts++;
    pair.rebootDevice();
    pair.assertSafe();
    pair.autoPersist = true;
    converge(pair, `device reboot after ${cut} deliveries`);
  }
  assert(cuts >= 3, `cuts ${cuts}`);
});

for (const m of MODES) test(G, `${m}: hub restart after every delivery of a rotation: safe, converges`, () => {
  mode = m;
  let cuts = 0;
  for (let cut = 0; cut < 64; cut++) {
    const pair = established(300 + cut);
    if (!rotatePartly(pair, cut)) break;
    cuts++;
    pair.restartHub();
    pair.assertSafe();
    converge(pair, `hub restart after ${cut} deliveries`);
  }
  assert(cuts >= 3, `cuts ${cuts}`);
});

for (const m of MODES) test(G, `${m}: seeded random soak: 400 events of rotate, data, drop, reboot, restart, time; safe after each`, () => {
  mode = m;
  const pair = established(4242);
  let state = 4242;
  const next = (n: number): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
  let rotations = 0;
  for (let event = 0; event < 400; event++) {
    const choice = next(100);
    tolerateLocal(() => {
      if (choice < 15) {
        pair.rotate();
        rotations++;
      } else if (choice < 30) pair.deviceSend(Uint8Array.of(event & 0xff));
      else if (choice < 45) pair.hubSend(Uint8Array.of(event & 0xff));
      else if (choice < 52) pair.disconnect();
      else if (choice < 56) pair.rebootDevice();
      else if (choice < 60) pair.restartHub();
      else if (choice < 70) pair.advance(1000 * (1 + next(120)));
      else if (choice < 75 && !pair.connected) pair.connect();
      else for (let i = next(6); i >= 0 && pair.step(); i--) pair.assertSafe();
    });
    pair.assertSafe();
  }
  converge(pair, 'after the soak');
  assert(rotations > 20, `rotations ${rotations}`);
});
