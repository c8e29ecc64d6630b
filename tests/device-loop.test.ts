/**
 * The portable device loop (modules/device/loop.ts) on a virtual clock with
 * fake timers: the real DeviceCore, the real Keystore on the NOR model
 * (behind a KeyStorage that can fail, answer PERSIST_LATER or cut the
 * power) and a real HubCore behind an in-memory network that can refuse,
 * hang, stay silent, flood or answer synchronously. A core method is
 * replaced only where a test needs behaviour the real core never shows (an
 * exception).
 *
 * Ported from the Moddable firmware's former host (hosts/moddable/device-host.ts):
 * persist ordering, storage failure → remount, close by the core, connect
 * timeout, backoff and its reset, the core timer, send refusals, exceptions,
 * rotations across faults. New: power off/on, PERSIST_LATER, sends from
 * event handlers (sequence order), beforeAction, the input queue's bound,
 * transports that report synchronously, a storage failure while connecting.
 */
import { toHex } from '../modules/bytes';
import { copyHubRow, hubRowAfter, type HubRow } from '../tools/testing/hub-row';
import { describePersistOp, type DeviceAction } from '../modules/device/actions';
import {
  DeviceLoop,
  MAX_QUEUED_INPUTS,
  type DeviceConnection,
  type DeviceLoopEvent,
  type DeviceLoopOptions,
  type DeviceTransportEvents,
} from '../modules/device/loop';
import { isLockstepError, LockstepError } from '../modules/errors';
import { NorFlash } from '../modules/flash/nor-flash';
import { HubCore, type HubAction, type HubEvent } from '../modules/hub/hub';
import { PERSIST_LATER, type KeyStorage, type PersistLater } from '../modules/keystore/key-storage';
import { Keystore, type MountResult } from '../modules/keystore/keystore';
import type { DeviceKeys, KeySlot } from '../modules/platform/keys';
import { MAX_APP_PAYLOAD_BYTES, MAX_REJECTED_FRAMES, OUTBOX_MESSAGES } from '../modules/protocol/constants';
import { decodeHeader } from '../modules/protocol/header';
import { nodeAead } from '../hosts/node/crypto';
import { seededRandom } from '../tools/testing/deterministic-random';

/** Timers on a virtual clock; `run` fires them in deadline order. */
class VirtualTimers {
  now = 1_000_000;
  #next = 1;
  #timers = new Map<number, { at: number; callback: () => void }>();
  set = (callback: () => void, delayMs: number): unknown => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + Math.max(0, delayMs), callback });
    return id;
  };
  clear = (handle: unknown): void => {
    this.#timers.delete(handle as number);
  };
  /** Runs every timer due up to now + ms (including ones they schedule). */
  run(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let first: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (first === undefined || entry[1].at < first[1].at || (entry[1].at === first[1].at && entry[0] < first[0])) first = entry;
      if (first === undefined || first[1].at > end) break;
      this.#timers.delete(first[0]);
      this.now = Math.max(this.now, first[1].at);
      first[1].callback();
    }
    this.now = end;
  }
  /** Runs in small steps until `done` (at most `limitMs`). */
  runUntil(done: () => boolean, limitMs = 60_000, stepMs = 1): void {
    for (let waited = 0; !done(); waited += stepMs) {
      if (waited > limitMs) throw new Error('condition not reached');
      this.run(stepMs);
    }
  }
}

// ---------------------------------------------------------------------------
// Key storage: the real Keystore, with faults

class TestStorage implements KeyStorage {
  readonly calls: string[] = [];
  /** The next write of this kind throws (before touching the flash). */
  failNext: 'storeFuture' | 'promote' | undefined;
  /** Writes complete on the flash but answer PERSIST_LATER. */
  later = false;
  /** Runs after a write reached the flash (a power cut: loop.powerOff()). */
  afterWrite: (() => void) | undefined;
  readonly #keystore: Keystore;

  constructor(flash: NorFlash) {
    this.#keystore = new Keystore(flash);
  }
  mount(): MountResult {
    this.calls.push('mount');
    return this.#keystore.mount();
  }
  get keys(): DeviceKeys {
    return this.#keystore.keys;
  }
  get deviceId(): Uint8Array {
    return this.#keystore.deviceId;
  }
  format(deviceId: Uint8Array, initial: KeySlot): void {
    this.#keystore.format(deviceId, initial, 'classic');
  }
  storeFuture(id: number, key: Uint8Array): void | PersistLater {
    this.calls.push(`storeFuture ${id}`);
    this.#fault('storeFuture');
    this.#keystore.storeFuture(id, key);
    return this.#answer();
  }
  promote(expectedId?: number): KeySlot | PersistLater {
    this.calls.push(`promote ${expectedId}`);
    this.#fault('promote');
    const slot = this.#keystore.promote(expectedId);
    return this.#answer() ?? slot;
  }
  #fault(kind: 'storeFuture' | 'promote'): void {
    if (this.failNext !== kind) return;
    this.failNext = undefined;
    throw new LockstepError('STORAGE_CORRUPT', 'flash write failed');
  }
  #answer(): PersistLater | undefined {
    this.afterWrite?.();
    return this.later ? PERSIST_LATER : undefined;
  }
}

// ---------------------------------------------------------------------------
// An in-memory network in front of a real HubCore

/** How the next dial is answered: the hub; refused; never opened; opened but the hub says nothing. */
type DialMode = 'hub' | 'refuse' | 'hang' | 'silent';

interface Link {
  readonly id: number;
  readonly events: DeviceTransportEvents;
  /** Frames the device wrote, in order (each one length-prefixed frame). */
  readonly written: Uint8Array[];
  /** Closed by the device (DeviceConnection.close). */
  closedByDevice: boolean;
  /** Delivering both ways (false once either side closed it). */
  live: boolean;
}

class FakeNetwork {
  hub: HubCore;
  durable: HubRow;
  mode: DialMode = 'hub';
  restarts = 0;
  /** Bytes delivered synchronously (re-entrantly) per chunk the device writes on its next link. */
  floodNext = 0;
  readonly links: Link[] = [];
  readonly hubEvents: HubEvent[] = [];
  readonly #timers: VirtualTimers;
  readonly #deviceId: string;
  /** 0: every delivery is synchronous, from inside the call that caused it. */
  readonly #latencyMs: number;
  readonly #random = seededRandom(99);
  #up = true;

  constructor(timers: VirtualTimers, deviceId: string, initial: KeySlot, latencyMs: number) {
    this.#timers = timers;
    this.#deviceId = deviceId;
    this.#latencyMs = latencyMs;
    this.durable = { mode: 'classic', active: { id: initial.id, key: initial.key.slice() } };
    this.hub = this.#boot();
    const tick = (): void => {
      if (this.#up) this.#apply(this.hub.tick(this.#timers.now));
      this.#timers.set(tick, 200);
    };
    this.#timers.set(tick, 200);
  }

  get lastLink(): Link {
    const link = this.links.at(-1);
    if (link === undefined) throw new Error('no link yet');
    return link;
  }

  /** The DeviceTransport. */
  transport = (events: DeviceTransportEvents): DeviceConnection => {
    const link: Link = { id: this.links.length + 1, events, written: [], closedByDevice: false, live: true };
    this.links.push(link);
    const mode = this.#up ? this.mode : 'refuse';
    const flood = this.floodNext;
    this.floodNext = 0;
    if (mode === 'refuse') {
      this.#later(() => {
        if (!link.live) return;
        link.live = false;
        events.onClosed('refused');
      });
    } else if (mode !== 'hang') {
      this.#later(() => {
        if (!link.live) return;
        events.onConnected();
        if (mode === 'hub') this.#apply(this.hub.opened(link.id, this.#timers.now));
      });
    }
    return {
      write: (bytes) => {
        const copy = bytes.slice();
        link.written.push(copy);
        for (let i = 0; i < flood && link.live; i++) events.onData(new Uint8Array([0, 0]));
        if (mode !== 'hub') return;
        this.#later(() => {
          if (link.live) this.#apply(this.hub.receive(link.id, copy, this.#timers.now));
        });
      },
      close: () => {
        link.closedByDevice = true;
        if (!link.live) return;
        link.live = false;
        if (mode === 'hub' && this.#up) this.#apply(this.hub.closed(link.id, this.#timers.now));
      },
    };
  };

  /** The network drops every connection (both ends see it). */
  dropAll(): void {
    for (const link of this.links.filter((l) => l.live)) {
      link.live = false;
      if (this.#up) this.#apply(this.hub.closed(link.id, this.#timers.now));
      link.events.onClosed('dropped');
    }
  }

  /** Hub process crash and restart: memory gone, durable store kept. */
  crash(downForMs: number): void {
    for (const link of this.links.filter((l) => l.live)) {
      link.live = false;
      link.events.onClosed('hub crashed');
    }
    this.#up = false;
    this.restarts++;
    this.#timers.set(() => {
      this.hub = this.#boot();
      this.#up = true;
    }, downForMs);
  }

  rotate(): void {
    const result = this.hub.rotate(this.#deviceId, this.#timers.now);
    if (result.ok) this.#apply(result.actions);
  }

  send(payload: Uint8Array): void {
    const result = this.hub.send(this.#deviceId, payload, this.#timers.now);
    if (!result.ok) throw result.error;
    this.#apply(result.actions);
  }

  #boot(): HubCore {
    return new HubCore({ aead: nodeAead, random: this.#random, devices: [{ deviceId: this.#deviceId, ...copyHubRow(this.durable) }] });
  }

  #later(run: () => void): void {
    if (this.#latencyMs === 0) run();
    else this.#timers.set(run, this.#latencyMs);
  }

  #apply(actions: readonly HubAction[]): void {
    for (const action of actions) {
      const link = 'connection' in action ? this.links[action.connection - 1] : undefined;
      switch (action.type) {
        case 'transmit': {
          const copy = action.bytes.slice();
          if (link?.live) this.#later(() => link.live && link.events.onData(copy));
          break;
        }
        case 'close':
          if (link?.live) {
            link.live = false;
            this.#apply(this.hub.closed(link.id, this.#timers.now));
            link.events.onClosed('closed by hub');
          }
          break;
        case 'persist': {
          const op = action.op;
          this.durable = hubRowAfter(this.durable, op);
          this.#apply(this.hub.persisted(this.#deviceId, this.#timers.now));
          break;
        }
        case 'event':
          this.hubEvents.push(action.event);
          break;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// A device: loop + storage + network

interface Setup {
  readonly timers: VirtualTimers;
  readonly net: FakeNetwork;
  readonly storage: TestStorage;
  readonly flash: NorFlash;
  readonly loop: DeviceLoop;
  readonly log: string[];
  readonly events: DeviceLoopEvent[];
  /** beforeAction's view of every action carried out, and the storage calls, interleaved. */
  readonly trace: string[];
  readonly deviceId: string;
  /** Set by a test: runs on every loop event (after it is recorded). */
  onEvent: ((event: DeviceLoopEvent) => void) | undefined;
  /** Set by a test: runs before every action (after it is traced). */
  beforeAction: ((action: DeviceAction) => void) | undefined;
}

function setup(options: { latencyMs?: number; loop?: Partial<DeviceLoopOptions> } = {}): Setup {
  const timers = new VirtualTimers();
  const random = seededRandom(21);
  const deviceIdBytes = new Uint8Array([1, 1, 2, 3, 5, 8, 13, 21]);
  const deviceId = toHex(deviceIdBytes);
  const initialKey = new Uint8Array(64);
  random.fill(initialKey);
  const flash = new NorFlash({ sectors: 4 });
  new Keystore(flash).format(deviceIdBytes, { id: 1, key: initialKey }, 'classic');
  const storage = new TestStorage(flash);
  const net = new FakeNetwork(timers, deviceId, { id: 1, key: initialKey }, options.latencyMs ?? 3);
  const log: string[] = [];
  const events: DeviceLoopEvent[] = [];
  const trace: string[] = [];
  const originalStoreFuture = storage.storeFuture.bind(storage);
  storage.storeFuture = (id, key) => {
    trace.push(`storage storeFuture ${id}`);
    return originalStoreFuture(id, key);
  };
  const s: Setup = {
    timers,
    net,
    storage,
    flash,
    log,
    events,
    trace,
    deviceId,
    onEvent: undefined,
    beforeAction: undefined,
    loop: new DeviceLoop({
      storage,
      transport: net.transport,
      timers,
      clock: { now: () => timers.now },
      random,
      aead: nodeAead,
      reconnectBaseMs: 1000,
      reconnectMaxMs: 16_000,
      connectTimeoutMs: 5000,
      log: (line) => log.push(line),
      onEvent: (event) => {
        events.push(event);
        s.onEvent?.(event);
      },
      beforeAction: (action) => {
        trace.push(describeAction(action));
        s.beforeAction?.(action);
      },
      ...options.loop,
    }),
  };
  return s;
}

function describeAction(action: DeviceAction): string {
  switch (action.type) {
    case 'transmit':
      return `transmit ${decodeHeader(action.bytes.subarray(2)).sequence}`;
    case 'close':
      return `close ${action.error.code}`;
    case 'persist':
      return `persist ${describePersistOp(action.op)}`;
    case 'event':
      return `event ${action.event.type}`;
  }
}

const retryDelays = (log: string[]): number[] =>
  log.flatMap((line) => {
    const match = /^reconnecting in (\d+) ms/.exec(line);
    return match ? [Number(match[1])] : [];
  });

const types = (events: readonly DeviceLoopEvent[]): string[] => events.map((event) => event.type);
const established = (s: Setup) => (): boolean => s.loop.established;
const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Starts the loop and waits for the first session. */
function startEstablished(s: Setup): void {
  s.loop.start();
  s.timers.runUntil(established(s));
}

/** A session, then a rotation whose storeFuture the storage answered with PERSIST_LATER. */
function rotationWriteOutstanding(): Setup {
  const s = setup();
  startEstablished(s);
  s.storage.later = true;
  s.net.rotate();
  s.timers.runUntil(() => s.loop.persistOutstanding !== undefined);
  return s;
}

// ---------------------------------------------------------------------------

describe('DeviceLoop: persist and storage', () => {
  test('a persist goes to the storage, then persisted(), whose actions run before the rest', () => {
    const s = setup();
    startEstablished(s);
    s.net.rotate();
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
    const persist = s.trace.indexOf('persist storeFuture 2');
    expect(persist).toBeGreaterThanOrEqual(0);
    // The write, then what persisted() returned (the event, then the REKEY_ACK), nothing in between.
    expect(s.trace.slice(persist, persist + 4)).toEqual(['persist storeFuture 2', 'storage storeFuture 2', 'event keyStored', expect.stringMatching(/^transmit /)]);
    expect(s.storage.calls).toEqual(['mount', 'storeFuture 2', 'promote 2']);
    expect(types(s.events)).toEqual(expect.arrayContaining(['booted', 'connecting', 'connected', 'established', 'keyStored', 'keyPromoted']));
  });

  test('a storage failure halts the core (persistFailed), drops the connection and remounts a new core', () => {
    const s = setup();
    startEstablished(s);
    const first = s.loop.core!;
    s.storage.failNext = 'storeFuture';
    s.net.rotate();
    s.timers.runUntil(() => s.events.some((e) => e.type === 'storageFailed'));
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.log.some((line) => line === 'keystore storeFuture failed: STORAGE_CORRUPT: flash write failed; remounting')).toBe(true);
    expect(first.halted).toBe(true);
    expect(s.loop.core).not.toBe(first); // dropped; a new one is mounted (at once: retry delay 0)
    expect(s.loop.counters.storageFailures).toBe(1);
    // Remounted at once; the hub offers the key again on the new connection and the rotation completes.
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
    expect(s.loop.counters.boots).toBe(2);
    expect(s.storage.calls.filter((c) => c === 'mount')).toHaveLength(2);
    expect(s.net.links).toHaveLength(2);
    expect(s.net.hub.deviceKeys(s.deviceId).active.id).toBe(2);
  });

  test('PERSIST_LATER: nothing proceeds until persistCompleted(); input arriving meanwhile is kept by the core and parsed after', () => {
    const s = rotationWriteOutstanding();
    expect(s.loop.persistOutstanding).toMatchObject({ kind: 'storeFuture', id: 2 });
    const written = s.net.links[0]!.written.length;
    s.net.send(bytesOf('meanwhile'));
    s.timers.run(50);
    expect(s.loop.core!.heldInputBytes).toBeGreaterThan(0);
    expect(types(s.events)).not.toContain('data');
    expect(types(s.events)).not.toContain('keyStored');
    expect(s.net.links[0]!.written).toHaveLength(written); // no REKEY_ACK before the write is durable
    s.storage.later = false;
    s.loop.persistCompleted();
    expect(s.loop.persistOutstanding).toBeUndefined();
    const after = types(s.events).filter((t) => t === 'keyStored' || t === 'data');
    expect(after).toEqual(['keyStored', 'data']);
    expect(s.loop.core!.heldInputBytes).toBe(0);
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
    expect(() => s.loop.persistCompleted()).toThrow(expect.objectContaining({ code: 'LOCAL_NOT_READY' }));
  });

  test('a storage failure reported by persistCompleted() while the next connection opens closes that connection too', () => {
    const s = rotationWriteOutstanding();
    s.net.mode = 'hang';
    s.net.dropAll();
    s.timers.runUntil(() => s.net.links.length === 2);
    expect(s.loop.state).toBe('connecting');
    s.loop.persistCompleted(new Error('flash died'));
    expect(s.net.links[1]!.closedByDevice).toBe(true); // not leaked under the halted core
    expect(s.events.at(-1)).toMatchObject({ type: 'disconnected', reason: 'STORAGE_CORRUPT' });
    s.net.mode = 'hub';
    s.storage.later = false;
    s.timers.runUntil(established(s));
    expect(s.loop.counters.boots).toBe(2);
    expect(s.net.links.filter((link) => link.live)).toHaveLength(1);
  });
});

describe('DeviceLoop: connections, timers, backoff', () => {
  test('a close asked for by the core (handshake timeout on its timer) closes the transport, reports it and backs off; late events are ignored', () => {
    const s = setup({ loop: { timing: { handshakeTimeoutMs: 2000 } } });
    s.net.mode = 'silent';
    s.loop.start();
    s.timers.runUntil(() => s.loop.state === 'connected');
    const openedAt = s.timers.now;
    s.timers.run(1998);
    expect(s.net.links[0]!.closedByDevice).toBe(false);
    s.timers.run(2);
    expect(s.timers.now - openedAt).toBe(2000);
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.log).toContain('closing: TIMEOUT: DS4: handshake');
    expect(s.events.at(-1)).toMatchObject({ type: 'disconnected', reason: 'TIMEOUT' });
    expect(s.loop.state).toBe('waiting');
    expect(s.loop.core!.session).toBe('offline');
    expect(s.loop.counters.closes).toBe(1);
    // Late events from the dropped connection are ignored.
    const seen = s.events.length;
    s.net.links[0]!.events.onData(new Uint8Array([0, 40]));
    s.net.links[0]!.events.onConnected();
    s.net.links[0]!.events.onClosed('late');
    expect(s.events).toHaveLength(seen);
    expect(s.loop.counters.closes).toBe(1);
    expect(retryDelays(s.log)).toHaveLength(1);
    s.net.mode = 'hub';
    s.timers.runUntil(established(s));
    expect(s.net.links).toHaveLength(2);
  });

  test('backoff doubles with jitter up to the maximum, and resets once a session is established', () => {
    const s = setup();
    s.net.mode = 'refuse';
    s.loop.start();
    s.timers.runUntil(() => retryDelays(s.log).length === 7, 120_000);
    const delays = retryDelays(s.log);
    expect(delays).toHaveLength(7);
    const ceilings = [1000, 2000, 4000, 8000, 16_000, 16_000, 16_000];
    delays.forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(ceilings[i]! / 2);
      expect(delay).toBeLessThanOrEqual(ceilings[i]!);
    });
    expect(new Set(delays.slice(4)).size).toBeGreaterThan(1); // jittered, not fixed
    s.net.mode = 'hub';
    s.timers.runUntil(established(s), 120_000);
    expect(s.loop.counters.sessions).toBe(1);
    s.net.dropAll();
    expect(retryDelays(s.log).at(-1)).toBeLessThanOrEqual(1000);
    expect(s.loop.established).toBe(false);
  });

  test('an attempt that never opens times out and is retried', () => {
    const s = setup();
    s.net.mode = 'hang';
    s.loop.start();
    s.timers.run(4999);
    expect(s.net.links[0]!.closedByDevice).toBe(false);
    s.timers.run(1);
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.events.at(-1)).toEqual({ type: 'disconnected', reason: 'no connection after 5000 ms' });
    expect(s.log.at(-1)).toMatch(/^reconnecting in \d+ ms \(attempt 1, no connection after 5000 ms\)$/);
    s.timers.run(1000);
    expect(s.net.links).toHaveLength(2);
  });

  test('a transport that throws is a failed attempt, retried with backoff', () => {
    let dials = 0;
    const s = setup();
    const fallback = s.net.transport;
    const loop = new DeviceLoop({
      storage: s.storage,
      transport: (events) => {
        if (++dials === 1) throw new Error('no route to host');
        return fallback(events);
      },
      timers: s.timers,
      clock: { now: () => s.timers.now },
      random: seededRandom(4),
      aead: nodeAead,
      log: (line) => s.log.push(line),
    });
    loop.start();
    expect(s.log).toContainEqual(expect.stringMatching(/^reconnecting in \d+ ms \(attempt 1, connect failed: no route to host\)$/));
    s.timers.runUntil(() => loop.established);
    expect(dials).toBe(2);
  });

  test('stop() closes the connection for good: the core hears it, nothing reconnects', () => {
    const s = setup();
    startEstablished(s);
    s.loop.stop();
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.loop.state).toBe('stopped');
    expect(s.loop.core!.session).toBe('offline');
    s.timers.run(120_000);
    expect(s.net.links).toHaveLength(1);
  });
});

describe('DeviceLoop: run to completion and its bounds', () => {
  test('send() answers at the call: the id, or a typed refusal with nothing queued and the connection kept', () => {
    const s = setup();
    const early = s.loop.send(bytesOf('x'));
    expect(!early.ok && isLockstepError(early.error, 'LOCAL_NOT_READY')).toBe(true); // not mounted yet
    s.net.mode = 'hang';
    s.loop.start();
    const ids: number[] = [];
    for (let i = 0; i < OUTBOX_MESSAGES; i++) {
      const sent = s.loop.send(bytesOf(`m${i}`));
      if (!sent.ok) throw sent.error;
      ids.push(sent.messageId);
    }
    expect(new Set(ids).size).toBe(OUTBOX_MESSAGES);
    expect(s.loop.send(bytesOf('one too many'))).toMatchObject({ ok: false, error: { code: 'LOCAL_OUTBOX_FULL' } });
    s.loop.core!.flush(s.timers.now); // no session: nothing to seal, nothing lost
    expect(s.loop.send(new Uint8Array(MAX_APP_PAYLOAD_BYTES + 1))).toMatchObject({ ok: false, error: { code: 'LOCAL_PAYLOAD_TOO_LARGE' } });
    expect(s.net.links[0]!.closedByDevice).toBe(false);
    // The queued messages go out once a session is up.
    s.net.mode = 'hub';
    s.timers.runUntil(() => s.net.hubEvents.filter((e) => e.type === 'data').length === OUTBOX_MESSAGES, 60_000, 10);
    s.loop.powerOff();
    expect(s.loop.send(bytesOf('x'))).toMatchObject({ ok: false, error: { code: 'LOCAL_NOT_READY', message: 'LOCAL_NOT_READY: device is off' } });
  });

  test('sends from inside event handlers leave in sequence order, after the actions of the input that raised the event', () => {
    const s = setup();
    s.onEvent = (event) => {
      if (event.type === 'established') s.loop.send(bytesOf('hello'));
      if (event.type === 'keyStored') {
        s.loop.send(bytesOf('stored 1'));
        s.loop.send(bytesOf('stored 2'));
      }
      if (event.type === 'data') s.loop.send(bytesOf('echo'));
    };
    startEstablished(s);
    s.net.rotate();
    s.net.send(bytesOf('ping'));
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
    s.timers.run(1000);
    const sequences = s.net.links[0]!.written.map((frame) => decodeHeader(frame.subarray(2)).sequence);
    expect(sequences.length).toBeGreaterThanOrEqual(6); // hello, REKEY_ACK, 2 stored, echo, ...
    expect(sequences).toEqual(sequences.map((_, i) => sequences[0]! + i));
    // The REKEY_ACK (sealed by persisted()) precedes what the keyStored handler sent.
    const stored = s.trace.indexOf('event keyStored');
    expect(s.trace.slice(stored, stored + 4)).toEqual(['event keyStored', expect.stringMatching(/^transmit/), expect.stringMatching(/^transmit/), expect.stringMatching(/^transmit/)]);
    // And the hub accepted every one.
    const received = s.net.hubEvents.flatMap((e) => (e.type === 'data' ? [new TextDecoder().decode(e.payload)] : []));
    expect(received).toEqual(expect.arrayContaining(['hello', 'stored 1', 'stored 2', 'echo']));
    expect(s.events.filter((e) => e.type === 'rejected')).toEqual([]);
  });

  test('input beyond MAX_QUEUED_INPUTS drops the connection once, and the loop carries on', () => {
    const s = setup();
    s.net.floodNext = MAX_QUEUED_INPUTS * 3; // bytes delivered re-entrantly from inside every write
    s.loop.start();
    s.timers.runUntil(() => s.log.includes('input queue full; dropping the connection'));
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.loop.counters.closes).toBe(1);
    expect(retryDelays(s.log)).toHaveLength(1);
    s.timers.runUntil(established(s));
    expect(s.net.links).toHaveLength(2);
    expect(s.log.filter((line) => line.startsWith('error:'))).toEqual([]);
  });

  test('an overflow drops the connection input, never a persist completing', () => {
    const s = rotationWriteOutstanding();
    s.storage.later = false;
    // While the core takes the next bytes (inside the loop's run), the storage completes and the link floods.
    const core = s.loop.core!;
    const receive = core.receive.bind(core);
    jest.spyOn(core, 'receive').mockImplementationOnce((bytes, now) => {
      const actions = receive(bytes, now);
      s.loop.persistCompleted();
      for (let i = 0; i <= MAX_QUEUED_INPUTS; i++) s.net.lastLink.events.onData(new Uint8Array(0));
      return actions;
    });
    s.net.send(bytesOf('meanwhile'));
    s.timers.runUntil(() => s.log.includes('input queue full; dropping the connection'));
    expect(types(s.events)).toContain('keyStored');
    expect(core.persisting).toBeUndefined();
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
  });

  test('queued input of a connection the core has closed is skipped, not fed to the offline core', () => {
    const s = setup();
    const junk = (frames: number): Uint8Array => {
      const out = new Uint8Array(frames * 42);
      for (let i = 0; i < frames; i++) out[i * 42 + 1] = 40; // length 40, then 40 zero bytes: no valid version
      return out;
    };
    let fired = false;
    s.onEvent = (event) => {
      if (event.type !== 'established' || fired) return;
      fired = true;
      const link = s.net.lastLink;
      link.events.onData(junk(MAX_REJECTED_FRAMES + 1)); // the core closes: too many rejected frames
      link.events.onData(junk(1)); // queued behind it, from the same connection
    };
    startEstablished(s);
    s.timers.runUntil(() => s.loop.counters.closes > 0);
    expect(s.events.filter((e) => e.type === 'disconnected')).toEqual([{ type: 'disconnected', reason: 'PEER_ERROR' }]);
    expect(s.log.filter((line) => line.startsWith('error:'))).toEqual([]);
    expect(s.loop.counters.closes).toBe(1);
    expect(retryDelays(s.log)).toHaveLength(1);
  });

  test('many sends from one event handler queue one flush, not one input each', () => {
    const s = setup();
    let fired = false;
    s.onEvent = (event) => {
      if (event.type !== 'established' || fired) return;
      fired = true;
      for (let i = 0; i < OUTBOX_MESSAGES; i++) expect(s.loop.send(bytesOf(`burst ${i}`)).ok).toBe(true);
      s.net.lastLink.events.onData(new Uint8Array(0)); // and the connection reports something meanwhile
    };
    startEstablished(s);
    s.timers.run(100);
    expect(s.log.filter((line) => line.startsWith('input queue'))).toEqual([]);
    expect(s.net.hubEvents.filter((e) => e.type === 'data')).toHaveLength(OUTBOX_MESSAGES);
    expect(s.loop.counters.closes).toBe(0);
  });

  test('a transport that reports synchronously (from inside the dial and inside write) still runs the protocol', () => {
    const s = setup({ latencyMs: 0 });
    s.loop.start();
    expect(s.loop.established).toBe(true); // all within start()
    for (let id = 2; id <= 4; id++) {
      s.net.rotate();
      s.timers.run(500);
      expect(s.loop.keys?.active.id).toBe(id);
    }
    expect(s.net.hub.deviceKeys(s.deviceId).active.id).toBe(4);
    expect(s.loop.counters.closes).toBe(0);
    expect(s.log.filter((line) => line.startsWith('error:') || line.startsWith('input queue'))).toEqual([]);
  });

  test('an unexpected core exception drops the connection and starts over', () => {
    const s = setup();
    startEstablished(s);
    const core = s.loop.core!;
    jest.spyOn(core, 'receive').mockImplementationOnce(() => {
      throw new Error('bug');
    });
    s.net.send(bytesOf('boom'));
    expect(() => s.timers.run(20)).not.toThrow();
    expect(s.log).toContain('error: bug; dropping the connection');
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    expect(s.loop.counters.closes).toBe(1);
    s.timers.runUntil(() => s.loop.counters.sessions === 2);
    expect(s.loop.core).toBe(core); // same core, same keys
    expect(s.net.links).toHaveLength(2);
  });

  test('an event handler that throws is logged; the protocol carries on', () => {
    const s = setup();
    s.onEvent = (event) => {
      if (event.type === 'established') throw new Error('app bug');
    };
    startEstablished(s);
    expect(s.log).toContain('event handler failed: app bug');
    s.net.rotate();
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
  });
});

describe('DeviceLoop: power', () => {
  test('powerOff() abandons the connection without a close event; powerOn() boots from the storage and reconnects', () => {
    const s = setup();
    startEstablished(s);
    const link = s.net.links[0]!;
    const seen = s.events.length;
    s.loop.powerOff();
    expect(link.closedByDevice).toBe(true);
    expect(s.events).toHaveLength(seen); // no 'disconnected': memory is gone, nobody to tell
    expect(s.loop.state).toBe('off');
    expect(s.loop.powered).toBe(false);
    expect(s.loop.core).toBeUndefined();
    // Late events of the dead connection do nothing; nothing is scheduled.
    link.events.onData(new Uint8Array([0, 40]));
    link.events.onClosed('late');
    s.timers.run(120_000);
    expect(s.events).toHaveLength(seen);
    expect(s.net.links).toHaveLength(1);
    s.loop.start(); // no effect while off
    expect(s.net.links).toHaveLength(1);
    s.loop.powerOn();
    expect(s.events[seen]).toMatchObject({ type: 'booted', keys: { active: { id: 1 } } });
    s.timers.runUntil(established(s));
    expect(s.loop.counters.boots).toBe(2);
    expect(s.loop.counters.closes).toBe(0);
  });

  test('a power cut during a keystore write: no action of the dead core is carried out; the write survives the boot', () => {
    const s = setup();
    startEstablished(s);
    s.storage.afterWrite = () => {
      s.storage.afterWrite = undefined;
      s.loop.powerOff();
    };
    s.net.rotate();
    s.timers.runUntil(() => !s.loop.powered);
    const persist = s.trace.indexOf('persist storeFuture 2');
    expect(s.trace.slice(persist)).toEqual(['persist storeFuture 2', 'storage storeFuture 2']); // no keyStored, no REKEY_ACK
    expect(types(s.events)).not.toContain('keyStored');
    expect(s.net.links[0]!.closedByDevice).toBe(true);
    s.loop.powerOn(); // boots now, connects at its next turn
    expect(s.events.at(-1)).toMatchObject({ type: 'booted', keys: { active: { id: 1 }, future: { id: 2 } } });
    s.timers.runUntil(() => s.loop.keys?.active.id === 2);
    expect(s.net.hub.deviceKeys(s.deviceId).active.id).toBe(2);
  });

  test('a beforeAction hook that cuts the power stops the rest of the actions', () => {
    const s = setup();
    startEstablished(s);
    s.beforeAction = (action) => {
      if (action.type === 'persist') s.loop.powerOff();
    };
    s.net.rotate();
    s.timers.runUntil(() => !s.loop.powered);
    expect(s.trace.at(-1)).toBe('persist storeFuture 2'); // traced, never carried out
    expect(s.storage.calls).toEqual(['mount']);
    s.timers.run(10_000);
    expect(s.trace.at(-1)).toBe('persist storeFuture 2');
  });
});

describe('DeviceLoop with the real device core, keystore and hub core', () => {
  test('rotates keys across dropped connections and hub restarts, never out of sync', () => {
    const s = setup();
    const { timers, net, flash, loop, deviceId } = s;

    /** Safety (docs/PROTOCOL.md §9): each side's seal key is one the other accepts, with the same bytes. */
    const assertSafe = (): void => {
      const device = loop.keys!;
      const hubKeys = net.hub.deviceKeys(deviceId);
      const deviceSeal = device.future ?? device.active;
      expect(net.hub.acceptedKeyIds(deviceId)).toContain(deviceSeal.id);
      const held = [device.active, ...(device.future ? [device.future] : [])].find((slot) => slot.id === hubKeys.active.id);
      expect(held).toBeDefined();
      expect(toHex(held!.key)).toBe(toHex(hubKeys.active.key));
      // And the flash agrees with the core.
      const mounted = new Keystore(flash).mount();
      expect(mounted.provisioned && mounted.keys.active.id).toBe(device.active.id);
    };

    startEstablished(s);
    const faults = seededRandom(5);
    for (let round = 0; round < 40; round++) {
      net.rotate();
      // Let the rotation run a random distance, then maybe inject a fault.
      const steps = faults.nextUint32() % 12;
      for (let i = 0; i < steps; i++) {
        timers.run(3);
        assertSafe();
      }
      const fault = faults.nextUint32() % 4;
      if (fault === 0) net.dropAll();
      if (fault === 1) net.crash(500 + (faults.nextUint32() % 3000));
      for (let i = 0; i < 20; i++) {
        timers.run(500);
        assertSafe();
      }
      if (round % 10 === 9) expect(loop.send(new Uint8Array([round])).ok).toBe(true);
    }
    // No more faults: everything settles on one shared key.
    timers.run(120_000);
    assertSafe();
    const device = loop.keys!;
    const hubKeys = net.hub.deviceKeys(deviceId);
    expect(device.future).toBeUndefined();
    expect(hubKeys.pending).toBeUndefined();
    expect(device.active.id).toBe(hubKeys.active.id);
    expect(device.active.id).toBeGreaterThanOrEqual(30);
    expect(net.restarts).toBeGreaterThan(3);
    expect(loop.established).toBe(true);
    expect(loop.counters.boots).toBe(1);
    expect(s.events.filter((e) => e.type === 'keyPromoted')).toHaveLength(device.active.id - 1);
    expect(loop.counters.closes).toBeGreaterThan(10);
    expect(s.log.filter((line) => line.startsWith('error:'))).toEqual([]);
  });
});
