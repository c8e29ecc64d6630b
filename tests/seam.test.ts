/**
 * The seam between the cores and their hosts (docs/PROTOCOL.md §8,
 * modules/device/device.ts, modules/hub/hub.ts): input is never refused by
 * an exception but kept, bounded, while a persist is outstanding; send and
 * rotate answer at the call; and the state tables in the code are the
 * spec's tables, row id for row id.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEVICE_KEY_ROWS, DEVICE_REJECT_ROW, DEVICE_REKEY_ROWS, DEVICE_SESSION_TABLE } from '../modules/device/table';
import { HUB_CONNECTION_TABLE, HUB_ENROL_ROWS, HUB_KEY_ROWS, HUB_OPEN_ROW, HUB_RECOVERY_ROWS, HUB_REJECT_ROWS, HUB_ROTATE_ROWS } from '../modules/hub/table';
import { MAX_APP_PAYLOAD_BYTES, OUTBOX_MESSAGES, RECEIVE_BUFFER_BYTES } from '../modules/protocol/constants';
import { HeldInput } from '../modules/protocol/held-input';
import { Pair } from '../tools/testing/pair';

function established(seed = 21): Pair {
  const pair = new Pair({ seed });
  pair.connect();
  pair.runUntilIdle();
  return pair;
}

describe('input kept while a persist is outstanding, within the stated bound', () => {
  test('device: up to RECEIVE_BUFFER_BYTES are kept and parsed after persisted(); one byte more closes with BUFFER_FULL', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.rotate();
    pair.step(); // the hub's write completes: REKEY on its way
    const rekey = pair.toDevice.shift()!;
    expect(pair.device.receive(rekey, pair.now).map((a) => a.type)).toEqual(['persist']);
    const keysBefore = pair.device.keys;
    expect(pair.device.wantsInput).toBe(false);
    expect(pair.device.receive(new Uint8Array(RECEIVE_BUFFER_BYTES), pair.now)).toEqual([]);
    expect(pair.device.heldInputBytes).toBe(RECEIVE_BUFFER_BYTES);
    const over = pair.device.receive(new Uint8Array(1), pair.now);
    expect(over).toEqual([expect.objectContaining({ type: 'close', error: expect.objectContaining({ code: 'BUFFER_FULL' }) })]);
    expect(pair.device.heldInputBytes).toBe(0);
    expect(pair.device.keys).toEqual(keysBefore); // the key state is untouched; the write still completes
    pair.device.persisted(pair.now);
    expect(pair.device.keys.future?.id).toBe(2);
  });

  test('hub: the same bound per connection; the promotion still completes', () => {
    const pair = established();
    pair.rotate();
    pair.deliverToDevice(pair.toDevice.shift()!); // the device stores key 2 and acknowledges under it
    pair.autoPersist = false;
    const ack = pair.toHub.shift()!;
    expect(pair.hub.receive(pair.connectionId, ack, pair.now).map((a) => a.type)).toEqual(['persist']);
    expect(pair.hub.wantsInput(pair.connectionId)).toBe(false);
    expect(pair.hub.receive(pair.connectionId, new Uint8Array(RECEIVE_BUFFER_BYTES), pair.now)).toEqual([]);
    const over = pair.hub.receive(pair.connectionId, new Uint8Array(1), pair.now);
    expect(over[0]).toMatchObject({ type: 'close', error: { code: 'BUFFER_FULL' } });
    expect(pair.hub.connectionCount).toBe(0);
    // The promotion still completes when durable.
    pair.hub.persisted(pair.deviceId, pair.now);
    expect(pair.hub.acceptedKeyIds(pair.deviceId)).toEqual([2]);
  });
});

describe('send and rotate answer at the call', () => {
  test('device and hub: the id the core assigned, or a typed error with nothing queued', () => {
    const pair = established();
    expect(pair.deviceSend(Uint8Array.of(1))).toBe(1);
    expect(pair.hubSend(Uint8Array.of(1))).toBe(1);
    const tooLarge = new Uint8Array(MAX_APP_PAYLOAD_BYTES + 1);
    expect(pair.loop.send(tooLarge)).toMatchObject({ ok: false, error: { code: 'LOCAL_PAYLOAD_TOO_LARGE' } });
    expect(pair.hub.send(pair.deviceId, tooLarge, pair.now)).toMatchObject({ ok: false, error: { code: 'LOCAL_PAYLOAD_TOO_LARGE' } });
    expect(pair.device.outboxLength).toBe(1);
    for (let i = 1; i < OUTBOX_MESSAGES; i++) expect(pair.loop.send(Uint8Array.of(i)).ok).toBe(true);
    expect(pair.loop.send(Uint8Array.of(9))).toMatchObject({ ok: false, error: { code: 'LOCAL_OUTBOX_FULL' } });
    expect(pair.device.outboxLength).toBe(OUTBOX_MESSAGES);
    pair.runUntilIdle();
    expect(pair.device.outboxLength).toBe(0);
    expect(pair.deviceSend(Uint8Array.of(10))).toBe(OUTBOX_MESSAGES + 1);
  });

  test('hub send during its own write: queued in the core, id returned, sent once durable', () => {
    const pair = established();
    pair.autoPersist = false;
    pair.rotate(); // storePending outstanding
    const id = pair.hubSend(Uint8Array.of(42));
    expect(id).toBe(1);
    expect(pair.toDevice).toEqual([]);
    pair.runUntilIdle();
    expect(pair.deviceEvents.filter((e) => e.type === 'data').map((e) => (e.type === 'data' ? e.payload[0] : 0))).toEqual([42]);
  });
});

describe("the code's tables are the spec's tables (docs/PROTOCOL.md §8)", () => {
  const spec = readFileSync(join(__dirname, '..', 'docs', 'PROTOCOL.md'), 'utf8');
  const specRows = (prefix: string): string[] => [...new Set([...spec.matchAll(new RegExp(`^\\| (${prefix}\\d+) \\|`, 'gm'))].map((m) => m[1] as string))].sort();
  const sorted = (ids: Iterable<string>): string[] => [...new Set(ids)].sort();
  const sessionIds = (table: Readonly<Record<string, Readonly<Record<string, { id: string } | undefined>>>>): string[] =>
    Object.values(table).flatMap((events) => Object.values(events).flatMap((row) => (row === undefined ? [] : [row.id])));

  test('device session table D-S', () => {
    expect(sorted([...sessionIds(DEVICE_SESSION_TABLE), DEVICE_REJECT_ROW])).toEqual(specRows('DS'));
  });
  test('device key table D-K', () => {
    expect(sorted([...DEVICE_REKEY_ROWS.map((row) => row.id), ...Object.values(DEVICE_KEY_ROWS)])).toEqual(specRows('DK'));
  });
  test('hub connection table H-S', () => {
    // HE… rows (§12.4's enrolment table) are checked below; HS12's decision rows are HS12.
    const ids = sessionIds(HUB_CONNECTION_TABLE).filter((id) => id !== 'HSX' && !id.startsWith('HE'));
    expect(sorted([...ids, HUB_OPEN_ROW, ...Object.values(HUB_REJECT_ROWS), ...HUB_RECOVERY_ROWS.map((row) => row.id)])).toEqual(specRows('HS'));
  });
  test('hub enrolment table H-E', () => {
    const ids = sessionIds(HUB_CONNECTION_TABLE).filter((id) => id.startsWith('HE'));
    expect(sorted([...ids, ...Object.values(HUB_ENROL_ROWS)])).toEqual(specRows('HE'));
  });
  test('hub key table H-K', () => {
    expect(sorted([...HUB_ROTATE_ROWS.map((row) => row.id), ...Object.values(HUB_KEY_ROWS)])).toEqual(specRows('HK'));
  });
  test('the comparison can fail: a spec with one row more does not match', () => {
    const extended = `${spec}\n| DS99 | established | something | established | — |\n`;
    const rows = [...new Set([...extended.matchAll(/^\| (DS\d+) \|/gm)].map((m) => m[1] as string))].sort();
    expect(sorted([...sessionIds(DEVICE_SESSION_TABLE), DEVICE_REJECT_ROW])).not.toEqual(rows);
  });
});

describe('HeldInput (the cores\' receive buffer)', () => {
  test('keeps bytes in order up to the limit, refuses one byte more, and empties when taken', () => {
    const held = new HeldInput(1000);
    for (let i = 0; i < 1000; i++) expect(held.append(Uint8Array.of(i & 0xff))).toBe(true);
    expect(held.append(Uint8Array.of(0))).toBe(false);
    const all = held.take()!;
    expect(all.length).toBe(1000);
    expect([...all.subarray(0, 3)]).toEqual([0, 1, 2]);
    expect(all[999]).toBe(999 & 0xff);
    expect(held.length).toBe(0);
    expect(held.take()).toBeUndefined();
  });
});
