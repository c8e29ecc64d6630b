import { Pair } from '../tools/testing/pair';
import { cutRotation } from '../tools/testing/pair-cuts';

describe('device and hub over an in-memory link', () => {
  test('handshake establishes a session', () => {
    const pair = new Pair();
    pair.connect();
    pair.runUntilIdle();
    expect(pair.device.session).toBe('established');
    expect(pair.hubEvents.some((e) => e.type === 'deviceConnected')).toBe(true);
    expect(pair.inSync()).toBe(true);
  });

  test('20 rotations with data both ways stay in sync', () => {
    const pair = new Pair({ seed: 7 });
    pair.connect();
    pair.runUntilIdle();
    for (let i = 0; i < 20; i++) {
      pair.rotate();
      pair.deviceSend(new Uint8Array([i]));
      pair.hubSend(new Uint8Array([100 + i]));
      pair.runUntilIdle();
      pair.assertSafe();
      expect(pair.inSync()).toBe(true);
      expect(pair.device.keys.active.id).toBe(2 + i);
    }
    const up = pair.hubEvents.filter((e) => e.type === 'data').map((e) => (e.type === 'data' ? e.payload[0] : -1));
    const down = pair.deviceEvents.filter((e) => e.type === 'data').map((e) => (e.type === 'data' ? e.payload[0] : -1));
    expect(up).toEqual([...Array(20).keys()]);
    expect(down).toEqual([...Array(20).keys()].map((i) => 100 + i));
  });
});

describe('connection cut at every byte of a rotation', () => {
  /**
   * Runs a rotation, cutting the connection after `cutAfter` bytes have
   * crossed the link (either direction), then reconnects and lets the pair
   * converge. Safety is checked after every delivered chunk.
   */
  function rotateWithCut(cutAfter: number): { pair: Pair; cut: boolean } {
    const pair = new Pair({ seed: 21 });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate();
    pair.deviceSend(Uint8Array.of(1));
    pair.hubSend(Uint8Array.of(2));
    return cutRotation(pair, cutAfter);
  }

  test('every cut point converges to one shared key with app data delivered once', () => {
    let points = 0;
    for (let cutAfter = 0; ; cutAfter++) {
      const { pair, cut } = rotateWithCut(cutAfter);
      expect(pair.inSync()).toBe(true);
      expect(pair.device.keys.active.id).toBe(2);
      const up = pair.hubEvents.filter((e) => e.type === 'data');
      const down = pair.deviceEvents.filter((e) => e.type === 'data');
      expect(up).toHaveLength(1);
      expect(down).toHaveLength(1);
      points++;
      if (!cut) break;
    }
    expect(points).toBeGreaterThan(500);
  });
});
