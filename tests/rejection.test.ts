/**
 * Bad input gets a typed error and changes no state (docs/PROTOCOL.md §9):
 * every single-bit flip of a sealed frame, and truncated, oversized,
 * wrong-version, unknown-type, unknown-key-id and replayed frames, on both
 * the device and the hub. The protocol state (snapshot) is asserted equal
 * before and after; only the abuse counter moves.
 */
import fc from 'fast-check';
import type { DeviceAction } from '../modules/device/device';
import type { ErrorCode } from '../modules/errors';
import type { HubAction } from '../modules/hub/hub';
import { LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES } from '../modules/protocol/constants';
import { withLengthPrefix } from '../modules/protocol/framing';
import { Pair } from '../tools/testing/pair';

function establishedPair(seed = 3): Pair {
  const pair = new Pair({ seed });
  pair.connect();
  pair.runUntilIdle();
  return pair;
}

/** A hub→device DATA frame, captured and not delivered. */
function captureToDevice(pair: Pair): Uint8Array {
  pair.hubSend(new Uint8Array([1, 2, 3]));
  const chunk = pair.toDevice.shift()!;
  return chunk;
}

/** A device→hub DATA frame, captured and not delivered. */
function captureToHub(pair: Pair): Uint8Array {
  pair.deviceSend(new Uint8Array([4, 5, 6]));
  return pair.toHub.shift()!;
}

function rejectedCodes(actions: (DeviceAction | HubAction)[]): ErrorCode[] {
  return actions.flatMap((a) => (a.type === 'event' && a.event.type === 'rejected' ? [a.event.error.code] : []));
}

function expectDeviceRejects(pair: Pair, bytes: Uint8Array, codes?: ErrorCode[]): void {
  const before = pair.device.snapshot();
  const actions = pair.device.receive(bytes, pair.now);
  const rejected = rejectedCodes(actions);
  expect(rejected.length).toBeGreaterThan(0);
  if (codes) expect(codes).toContain(rejected[0]);
  expect(actions.filter((a) => a.type === 'transmit' || a.type === 'persist')).toEqual([]);
  expect(pair.device.snapshot()).toEqual(before);
}

function expectHubRejects(pair: Pair, bytes: Uint8Array, codes?: ErrorCode[]): void {
  const before = pair.hub.snapshot(pair.deviceId);
  const actions = pair.hub.receive(pair.connectionId, bytes, pair.now);
  const rejected = rejectedCodes(actions);
  expect(rejected.length).toBeGreaterThan(0);
  if (codes) expect(codes).toContain(rejected[0]);
  expect(actions.filter((a) => a.type === 'transmit' || a.type === 'persist' || a.type === 'close')).toEqual([]);
  expect(pair.hub.snapshot(pair.deviceId)).toEqual(before);
}

function reframe(frame: Uint8Array): Uint8Array {
  return withLengthPrefix(frame);
}

describe('the device rejects without changing state', () => {
  test('every single-bit flip of a sealed frame', () => {
    const pair = establishedPair();
    let chunk = captureToDevice(pair);
    const bits = (chunk.length - LENGTH_PREFIX_BYTES) * 8;
    for (let bit = 0; bit < bits; bit++) {
      const flipped = chunk.slice(LENGTH_PREFIX_BYTES);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      expectDeviceRejects(pair, reframe(flipped));
      if (bit % 8 === 7) {
        // The genuine frame is still accepted after the forgeries (and resets the abuse counter).
        const actions = pair.deliverToDevice(chunk);
        expect(actions.some((a) => a.type === 'event' && a.event.type === 'data')).toBe(true);
        pair.runUntilIdle();
        chunk = captureToDevice(pair);
      }
    }
  });

  test('truncated, oversized, wrong-version, unknown-type, unknown-key-id frames', () => {
    const pair = establishedPair();
    const frame = captureToDevice(pair).subarray(LENGTH_PREFIX_BYTES);
    expectDeviceRejects(pair, reframe(frame.subarray(0, frame.length - 1)), ['AUTH_FAILED', 'FRAME_TOO_SHORT']);
    expectDeviceRejects(pair, reframe(frame.subarray(0, frame.length - 16)), ['AUTH_FAILED', 'FRAME_TOO_SHORT']);
    expectDeviceRejects(pair, reframe(frame.subarray(0, 30)), ['FRAME_TOO_SHORT']);
    const oversized = new Uint8Array(2 + MAX_FRAME_BYTES + 1);
    oversized[0] = (MAX_FRAME_BYTES + 1) >> 8;
    oversized[1] = (MAX_FRAME_BYTES + 1) & 0xff;
    expectDeviceRejects(pair, oversized, ['FRAME_TOO_LONG']);
    const pair2 = establishedPair(4);
    const frame2 = captureToDevice(pair2).subarray(LENGTH_PREFIX_BYTES);
    const version = frame2.slice();
    version[0] = 9;
    expectDeviceRejects(pair2, reframe(version), ['BAD_VERSION']);
    const type = frame2.slice();
    type[1] = 0x55;
    expectDeviceRejects(pair2, reframe(type), ['UNKNOWN_TYPE']);
    const keyId = frame2.slice();
    keyId[15]! ^= 0x40;
    expectDeviceRejects(pair2, reframe(keyId), ['UNKNOWN_KEY_ID']);
    const session = frame2.slice();
    session[25]! ^= 1;
    expectDeviceRejects(pair2, reframe(session), ['BAD_SESSION']);
  });

  test('a replayed frame, in the same session and in a later one', () => {
    const pair = establishedPair();
    const chunk = captureToDevice(pair);
    const first = pair.deliverToDevice(chunk);
    pair.runUntilIdle();
    expect(first.some((a) => a.type === 'event' && a.event.type === 'data')).toBe(true);
    expectDeviceRejects(pair, chunk, ['BAD_SEQUENCE']);
    pair.disconnect();
    pair.connect();
    pair.runUntilIdle();
    expectDeviceRejects(pair, chunk, ['BAD_SESSION']);
  });

  test('random garbage never changes state', () => {
    const pair = establishedPair();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 36, maxLength: 300 }), (junk) => {
        expectDeviceRejects(pair, reframe(junk));
        if (pair.device.rejectedFrames >= 8) {
          pair.deliverToDevice(captureToDevice(pair));
          pair.runUntilIdle();
        }
        expect(pair.device.session).toBe('established');
      }),
      { numRuns: 300 },
    );
  });
});

describe('the hub rejects without changing state', () => {
  test('every single-bit flip of a sealed frame', () => {
    const pair = establishedPair();
    let chunk = captureToHub(pair);
    const bits = (chunk.length - LENGTH_PREFIX_BYTES) * 8;
    for (let bit = 0; bit < bits; bit++) {
      const flipped = chunk.slice(LENGTH_PREFIX_BYTES);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      // A flip in the device id names another (unknown) device: also a rejection.
      expectHubRejects(pair, reframe(flipped));
      if (bit % 8 === 7) {
        const actions = pair.deliverToHub(chunk);
        expect(actions.some((a) => a.type === 'event' && a.event.type === 'data')).toBe(true);
        pair.runUntilIdle();
        chunk = captureToHub(pair);
      }
    }
  });

  test('truncated, wrong-version, unknown-type, unknown-key-id, replayed frames', () => {
    const pair = establishedPair();
    const chunk = captureToHub(pair);
    const frame = chunk.subarray(LENGTH_PREFIX_BYTES);
    expectHubRejects(pair, reframe(frame.subarray(0, frame.length - 1)), ['AUTH_FAILED', 'FRAME_TOO_SHORT']);
    const version = frame.slice();
    version[0] = 0;
    expectHubRejects(pair, reframe(version), ['BAD_VERSION']);
    const type = frame.slice();
    type[1] = 0x99;
    expectHubRejects(pair, reframe(type), ['UNKNOWN_TYPE']);
    const keyId = frame.slice();
    keyId[12]! ^= 0x80;
    expectHubRejects(pair, reframe(keyId), ['UNKNOWN_KEY_ID']);
    pair.deliverToHub(chunk);
    pair.runUntilIdle();
    expectHubRejects(pair, chunk, ['BAD_SEQUENCE']);
  });

  test('before the handshake, any bad frame closes only that connection', () => {
    const pair = establishedPair();
    const before = pair.hub.snapshot(pair.deviceId);
    const actions = pair.hub.opened(99, pair.now);
    expect(actions).toHaveLength(1);
    const closing = pair.hub.receive(99, reframe(new Uint8Array(100).fill(1)), pair.now);
    expect(closing.some((a) => a.type === 'close' && a.connection === 99)).toBe(true);
    expect(pair.hub.snapshot(pair.deviceId)).toEqual(before);
  });
});
