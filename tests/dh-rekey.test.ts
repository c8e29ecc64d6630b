/**
 * The dh rekey mode (docs/PROTOCOL.md §11) on the real cores over an
 * in-memory link: rotations, idempotent repeats, the crash trap of §11.2,
 * a cut at every byte, mode rules, and bad shares.
 */
import { bytesEqual, toHex } from '../modules/bytes';
import { deriveRekeyKey, DH_REKEY_LABEL } from '../modules/crypto/dh-rekey';
import { MessageType, WireError } from '../modules/protocol/constants';
import { decodeHeader } from '../modules/protocol/header';
import { nodeKeyAgreement } from '../hosts/node/key-agreement';
import { copyHubRow } from '../tools/testing/hub-row';
import { Pair } from '../tools/testing/pair';
import { cutRotation } from '../tools/testing/pair-cuts';

function frames(chunks: readonly Uint8Array[]) {
  return chunks.map((bytes) => decodeHeader(bytes.subarray(2)));
}

describe('dh rekey mode on the cores', () => {
  test('20 rotations with data both ways stay in sync, every key derived by X25519', () => {
    const pair = new Pair({ seed: 3, mode: 'dh' });
    pair.connect();
    pair.runUntilIdle();
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      pair.rotate();
      pair.deviceSend(Uint8Array.of(i));
      pair.hubSend(Uint8Array.of(100 + i));
      pair.runUntilIdle();
      pair.assertSafe();
      expect(pair.inSync()).toBe(true);
      expect(pair.device.keys.active.id).toBe(2 + i);
      expect(pair.device.keys.mode).toBe('dh');
      seen.add(toHex(pair.device.keys.active.key));
    }
    expect(seen.size).toBe(20);
    const up = pair.hubEvents.filter((e) => e.type === 'data').map((e) => (e.type === 'data' ? e.payload[0] : -1));
    expect(up).toEqual([...Array(20).keys()]);
  });

  test('REKEY_DH carries the hub share; the REKEY_ACK and every frame under the future key carry the device share', () => {
    const pair = new Pair({ seed: 4, mode: 'dh' });
    pair.connect();
    pair.runUntilIdle();
    pair.autoPersist = false;
    pair.rotate();
    pair.step(); // the hub's pending record becomes durable (H4), then the offer leaves
    const offer = frames(pair.toDevice);
    expect(offer.map((h) => h.type)).toEqual([MessageType.REKEY_DH]);
    pair.step(); // the REKEY_DH reaches the device, which persists its future key first (D6)
    expect(pair.toHub).toHaveLength(0);
    pair.step();
    const ack = frames(pair.toHub);
    expect(ack.map((h) => h.type)).toEqual([MessageType.REKEY_ACK]);
    expect(ack[0]!.keyId).toBe(2);
    expect(ack[0]!.share).toEqual(pair.device.keys.future!.shares!.device);
    pair.deviceSend(Uint8Array.of(9));
    const data = frames(pair.toHub).at(-1)!;
    expect(data.type).toBe(MessageType.DATA);
    expect(data.share).toEqual(pair.device.keys.future!.shares!.device);
  });

  test('a repeated REKEY_DH is answered with the identical REKEY_ACK (same share, same key), never a fresh exchange', () => {
    const pair = new Pair({ seed: 5, mode: 'dh' });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate();
    // The hub's REKEY_DH reaches the device; its ack is lost with the connection.
    pair.step();
    pair.toHub.length = 0;
    const future = pair.device.keys.future!;
    pair.disconnect();
    pair.connect();
    pair.runUntilIdle();
    expect(pair.inSync()).toBe(true);
    expect(bytesEqual(pair.device.keys.active.key, future.key)).toBe(true);
  });

  test('the crash trap of §11.2: hub dies after the REKEY_ACK, before its promotion commits; the HELLO under the derived key carries the share', () => {
    const pair = new Pair({ seed: 6, mode: 'dh' });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate();
    pair.step(); // REKEY_DH → device stores (n, K, H, D) and acks
    const beforePromotion = copyHubRow(pair.hubStore);
    pair.step(); // REKEY_ACK → hub derives and promotes
    expect(pair.hubStore.pending).toBeUndefined();
    pair.hubStore = beforePromotion; // ... but it crashed before that commit landed
    pair.restartHub(); // it holds only its ephemeral pair
    expect(pair.hub.deviceKeys(pair.deviceId).pending?.dh).toBeDefined();
    expect(pair.device.keys.future?.id).toBe(2);
    pair.connect();
    pair.runUntilIdle();
    pair.assertSafe();
    expect(pair.inSync()).toBe(true);
    expect(pair.device.keys.active.id).toBe(2);
    expect(pair.hub.deviceKeys(pair.deviceId).pending).toBeUndefined();
  });

  test('a connection cut at every byte of a dh rotation converges (and the hub ephemeral is gone after)', () => {
    let cuts = 0;
    for (let cutAfter = 0; cutAfter < 2000; cutAfter += 7) {
      const pair = new Pair({ seed: 30, mode: 'dh' });
      pair.connect();
      pair.runUntilIdle();
      pair.rotate();
      const { cut } = cutRotation(pair, cutAfter);
      if (!cut) break;
      cuts++;
      expect(pair.inSync()).toBe(true);
      expect(pair.device.keys.active.id).toBe(2);
      expect(pair.hubStore.pending).toBeUndefined();
    }
    expect(cuts).toBeGreaterThan(20);
  });

  test('DK12: a device in the dh mode refuses a classic REKEY (no fall-back); the hub keeps its pending key', () => {
    const pair = new Pair({ seed: 7, mode: 'dh' });
    pair.hubStore = { ...pair.hubStore, mode: 'classic' };
    pair.restartHub();
    pair.connect();
    pair.runUntilIdle();
    const before = pair.device.snapshot();
    pair.rotate();
    pair.runUntilIdle();
    expect(pair.device.keys.future).toBeUndefined();
    expect(pair.device.snapshot().mode).toBe(before.mode);
    const errors = pair.hubEvents.filter((e) => e.type === 'peerError');
    expect(errors.some((e) => e.type === 'peerError' && e.code === WireError.REKEY_MODE_MISMATCH && e.detail === 2)).toBe(true);
    expect(pair.hub.deviceKeys(pair.deviceId).pending?.id).toBe(2);
  });

  test('a classic device upgrades: a REKEY_DH is accepted and its promotion moves the device to dh for good', () => {
    const pair = new Pair({ seed: 8, mode: 'classic' });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate(); // classic rotation
    pair.runUntilIdle();
    expect(pair.device.keys.mode).toBe('classic');
    pair.hub.setMode(pair.deviceId, 'dh');
    pair.hubStore = { ...pair.hubStore, mode: 'dh' };
    expect(() => pair.hub.setMode(pair.deviceId, 'classic')).toThrow(/never moves back/);
    pair.rotate();
    pair.runUntilIdle();
    expect(pair.inSync()).toBe(true);
    expect(pair.device.keys.mode).toBe('dh');
    expect(pair.device.keys.active.id).toBe(3);
  });

  test('DK13: a low-order hub share (all-zero X25519 result) is refused with BAD_KEY_SHARE and changes nothing', () => {
    const pair = new Pair({ seed: 9, mode: 'dh' });
    pair.connect();
    pair.runUntilIdle();
    pair.rotate();
    // Replace the hub's pending share by the point of order 1 (u = 0) — as a malicious hub would.
    const record = pair.hubStore;
    if (record.pending?.dh === undefined) throw new Error('expected a dh pending slot');
    pair.hubStore = { ...record, pending: { id: record.pending.id, dh: { privateKey: record.pending.dh.privateKey, publicKey: new Uint8Array(32) } } };
    pair.toDevice.length = 0;
    pair.restartHub();
    pair.connect();
    const before = pair.device.snapshot();
    pair.runUntilIdle();
    expect(pair.device.keys.future).toBeUndefined();
    expect(pair.device.snapshot().futureKeyId).toBe(before.futureKeyId);
    const refused = pair.deviceEvents.filter((e) => e.type === 'rekeyRefused');
    expect(refused.length).toBeGreaterThan(0);
    expect(pair.hubEvents.some((e) => e.type === 'peerError' && e.code === WireError.BAD_KEY_SHARE)).toBe(true);
  });

  test('the derivation binds the label, device id, key id and both shares (§11.3)', () => {
    const prev = new Uint8Array(64).fill(1);
    const d = new Uint8Array(32).fill(2);
    const h = new Uint8Array(32).fill(3);
    const D = nodeKeyAgreement.x25519PublicKey(d);
    const H = nodeKeyAgreement.x25519PublicKey(h);
    const id = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const base = { previousKey: prev, privateKey: d, peerShare: H, deviceId: id, newKeyId: 2, hubShare: H, deviceShare: D };
    const k = deriveRekeyKey(nodeKeyAgreement, base);
    expect(toHex(deriveRekeyKey(nodeKeyAgreement, { ...base, privateKey: h, peerShare: D }))).toBe(toHex(k));
    const z = nodeKeyAgreement.x25519(d, H);
    const info = new Uint8Array([...DH_REKEY_LABEL, ...id, 0, 0, 0, 2, ...H, ...D]);
    expect(toHex(nodeKeyAgreement.hkdfSha512(prev, z, info, 64))).toBe(toHex(k));
    for (const changed of [{ newKeyId: 3 }, { deviceId: new Uint8Array(8) }, { previousKey: new Uint8Array(64) }, { deviceShare: H }]) {
      expect(toHex(deriveRekeyKey(nodeKeyAgreement, { ...base, ...changed }))).not.toBe(toHex(k));
    }
    expect(() => deriveRekeyKey(nodeKeyAgreement, { ...base, peerShare: new Uint8Array(32) })).toThrow(/BAD_KEY_SHARE/);
  });
});
