/**
 * The firmware's event loop (hosts/moddable/device-host.ts) on a virtual
 * clock with fake timers, without the SDK:
 * - with a scripted core: persist → keystore → persisted ordering, keystore
 *   failure → persistFailed → remount, core-requested close, connect
 *   timeout, backoff growth and its reset on `established`;
 * - with the real DeviceCore, the real Keystore on the NOR model and a real
 *   HubCore behind a fake network: rotations across dropped connections and
 *   hub restarts, checking the safety invariant after every event and that
 *   both sides converge on the same key.
 */
import type { DeviceAction } from '../modules/device/actions';
import { DeviceCore } from '../modules/device/device';
import { LockstepError } from '../modules/errors';
import { NorFlash } from '../modules/flash/nor-flash';
import { HubCore, type HubAction } from '../modules/hub/hub';
import { Keystore } from '../modules/keystore/keystore';
import type { KeySlot } from '../modules/platform/keys';
import { toHex } from '../modules/bytes';
import { nodeAead } from '../hosts/node/crypto';
import { DeviceHost, type Connection, type DeviceCoreLike, type DeviceHostOptions, type KeyPersistence } from '../hosts/moddable/device-host';
import type { TransportEvents } from '../hosts/moddable/socket-transport';
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
  get pending(): number {
    return this.#timers.size;
  }
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
}

function baseOptions(timers: VirtualTimers, log: string[]): Omit<DeviceHostOptions, 'createCore' | 'connect'> {
  return {
    now: () => timers.now,
    timers,
    random: seededRandom(3),
    reconnectBaseMs: 1000,
    reconnectMaxMs: 16_000,
    connectTimeoutMs: 5000,
    log: (line) => log.push(line),
  };
}

// ---------------------------------------------------------------------------
// Scripted core

class ScriptedCore implements DeviceCoreLike {
  readonly calls: string[] = [];
  onConnected: DeviceAction[] = [];
  onReceive: DeviceAction[][] = [];
  onPersisted: DeviceAction[] = [];
  deadline: number | undefined;
  connected(): DeviceAction[] {
    this.calls.push('connected');
    return this.onConnected;
  }
  receive(bytes: Uint8Array): DeviceAction[] {
    this.calls.push(`receive ${bytes.length}`);
    return this.onReceive.shift() ?? [];
  }
  disconnected(): DeviceAction[] {
    this.calls.push('disconnected');
    return [];
  }
  tick(now: number): DeviceAction[] {
    this.calls.push(`tick ${now}`);
    this.deadline = undefined;
    return [];
  }
  persisted(): DeviceAction[] {
    this.calls.push('persisted');
    return this.onPersisted;
  }
  persistFailed(error: LockstepError): DeviceAction[] {
    this.calls.push(`persistFailed ${error.code}`);
    return [{ type: 'close', error }];
  }
  send(payload: Uint8Array): DeviceAction[] {
    this.calls.push(`send ${payload.length}`);
    return [{ type: 'transmit', bytes: payload }];
  }
  nextDeadline(): number | undefined {
    return this.deadline;
  }
}

/** A connection the test drives by hand. */
interface ManualConnection extends Connection {
  readonly events: TransportEvents;
  readonly written: Uint8Array[];
  closed: boolean;
}

function scripted(options: { failPersist?: boolean } = {}) {
  const timers = new VirtualTimers();
  const log: string[] = [];
  const cores: ScriptedCore[] = [];
  const keystoreCalls: string[] = [];
  const connections: ManualConnection[] = [];
  const keystore: KeyPersistence = {
    storeFuture(id) {
      keystoreCalls.push(`storeFuture ${id}`);
      if (options.failPersist) throw new LockstepError('STORAGE_CORRUPT', 'flash write failed');
    },
    promote() {
      keystoreCalls.push('promote');
    },
  };
  const host = new DeviceHost({
    ...baseOptions(timers, log),
    createCore: () => {
      const core = new ScriptedCore();
      cores.push(core);
      return { core, keystore };
    },
    connect: (events) => {
      const connection: ManualConnection = {
        events,
        written: [],
        closed: false,
        write(bytes) {
          this.written.push(bytes);
        },
        close() {
          this.closed = true;
        },
      };
      connections.push(connection);
      return connection;
    },
  });
  return { timers, log, cores, keystoreCalls, connections, host };
}

const retryDelays = (log: string[]): number[] =>
  log.flatMap((line) => {
    const match = /^reconnecting in (\d+) ms/.exec(line);
    return match ? [Number(match[1])] : [];
  });

describe('DeviceHost with a scripted core', () => {
  test('a persist runs on the keystore, then persisted(), whose actions run before the rest', () => {
    const { host, cores, keystoreCalls, connections } = scripted();
    host.start();
    const core = cores[0]!;
    const connection = connections[0]!;
    connection.events.onConnected();
    core.onReceive.push([
      { type: 'persist', op: { kind: 'storeFuture', id: 2, key: new Uint8Array(64) } },
      { type: 'transmit', bytes: new Uint8Array([2]) },
    ]);
    core.onPersisted = [{ type: 'transmit', bytes: new Uint8Array([1]) }];
    connection.events.onData(new Uint8Array(10));
    expect(keystoreCalls).toEqual(['storeFuture 2']);
    expect(core.calls).toEqual(['connected', 'receive 10', 'persisted']);
    expect(connection.written.map((b) => b[0])).toEqual([1, 2]);
  });

  test('a keystore failure halts the core (persistFailed), drops the connection and remounts a new core', () => {
    const { host, cores, connections, timers, log } = scripted({ failPersist: true });
    host.start();
    connections[0]!.events.onConnected();
    cores[0]!.onReceive.push([{ type: 'persist', op: { kind: 'storeFuture', id: 2, key: new Uint8Array(64) } }]);
    connections[0]!.events.onData(new Uint8Array(1));
    expect(cores[0]!.calls).toEqual(['connected', 'receive 1', 'persistFailed STORAGE_CORRUPT']);
    expect(connections[0]!.closed).toBe(true);
    expect(log.some((line) => line.startsWith('keystore storeFuture failed'))).toBe(true);
    timers.run(2000);
    expect(cores).toHaveLength(2); // remounted
    expect(connections).toHaveLength(2);
  });

  test('a close asked for by the core closes the transport, reports disconnected, and backs off', () => {
    const { host, cores, connections, timers, log } = scripted();
    host.start();
    connections[0]!.events.onConnected();
    cores[0]!.onReceive.push([{ type: 'close', error: new LockstepError('TIMEOUT', 'idle') }]);
    connections[0]!.events.onData(new Uint8Array(1));
    expect(connections[0]!.closed).toBe(true);
    expect(cores[0]!.calls).toEqual(['connected', 'receive 1', 'disconnected']);
    expect(host.state).toBe('waiting');
    // Late events from the dropped connection are ignored.
    connections[0]!.events.onData(new Uint8Array(1));
    connections[0]!.events.onClosed('late');
    expect(cores[0]!.calls).toHaveLength(3);
    timers.run(1000);
    expect(connections).toHaveLength(2);
    expect(log.filter((line) => line.startsWith('connection closed'))).toEqual([]);
  });

  test('backoff doubles with jitter up to the maximum, and resets once a session is established', () => {
    const { host, cores, connections, timers, log } = scripted();
    host.start();
    for (let i = 0; i < 7; i++) {
      const count = connections.length;
      connections.at(-1)!.events.onClosed('refused');
      while (connections.length === count) timers.run(100); // until the retry dials (before its connect timeout)
    }
    const delays = retryDelays(log);
    expect(delays).toHaveLength(7);
    const ceilings = [1000, 2000, 4000, 8000, 16_000, 16_000, 16_000];
    delays.forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(ceilings[i]! / 2);
      expect(delay).toBeLessThanOrEqual(ceilings[i]!);
    });
    const connection = connections.at(-1)!;
    cores[0]!.onConnected = [{ type: 'event', event: { type: 'established', keyId: 1 } }];
    connection.events.onConnected();
    expect(host.established).toBe(true);
    connection.events.onClosed('dropped');
    expect(retryDelays(log).at(-1)).toBeLessThanOrEqual(1000);
    expect(host.established).toBe(false);
  });

  test('an attempt that never opens times out and is retried', () => {
    const { host, connections, timers, log } = scripted();
    host.start();
    timers.run(5000);
    expect(connections[0]!.closed).toBe(true);
    expect(log).toContain('connection closed: no connection after 5000 ms');
    timers.run(1000);
    expect(connections).toHaveLength(2);
  });

  test('the core deadline drives tick() through one timer', () => {
    const { host, cores, connections, timers } = scripted();
    host.start();
    const core = cores[0]!;
    core.deadline = timers.now + 300;
    connections[0]!.events.onConnected();
    const before = timers.pending;
    timers.run(299);
    expect(core.calls.filter((c) => c.startsWith('tick'))).toEqual([]);
    timers.run(1);
    expect(core.calls.filter((c) => c.startsWith('tick'))).toEqual([`tick ${timers.now}`]);
    expect(timers.pending).toBeLessThan(before);
  });

  test('send() reports a full outbox as false without breaking the loop', () => {
    const { host, cores, connections } = scripted();
    host.start();
    connections[0]!.events.onConnected();
    expect(host.send(new Uint8Array(3))).toBe(true);
    cores[0]!.send = () => {
      throw new LockstepError('LOCAL_OUTBOX_FULL', 'full');
    };
    expect(host.send(new Uint8Array(3))).toBe(false);
    expect(connections[0]!.closed).toBe(false);
  });

  test('an unexpected core exception drops the connection and starts over', () => {
    const { host, cores, connections, log, timers } = scripted();
    host.start();
    connections[0]!.events.onConnected();
    cores[0]!.receive = () => {
      throw new Error('bug');
    };
    expect(() => connections[0]!.events.onData(new Uint8Array(1))).not.toThrow();
    expect(connections[0]!.closed).toBe(true);
    expect(log).toContain('error: bug; dropping the connection');
    timers.run(1000);
    expect(connections).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------
// Real device core, keystore and hub core over a fake network

const LATENCY_MS = 3;

class FakeHubSide {
  hub: HubCore;
  durable: { active: KeySlot; pending?: KeySlot };
  up = true;
  restarts = 0;
  #nextConnection = 1;
  /** connection id → the device-side events of that connection. */
  #links = new Map<number, TransportEvents>();
  readonly #timers: VirtualTimers;
  readonly #deviceId: string;
  readonly #random = seededRandom(99);

  constructor(timers: VirtualTimers, deviceId: string, initial: KeySlot) {
    this.#timers = timers;
    this.#deviceId = deviceId;
    this.durable = { active: { id: initial.id, key: initial.key.slice() } };
    this.hub = this.#boot();
    const tick = (): void => {
      this.#apply(this.hub.tick(this.#timers.now));
      this.#timers.set(tick, 200);
    };
    this.#timers.set(tick, 200);
  }

  #boot(): HubCore {
    return new HubCore({ aead: nodeAead, random: this.#random, devices: [{ deviceId: this.#deviceId, ...this.durable }] });
  }

  /** The device dials: refused (hub down) or accepted after the latency. */
  connect(events: TransportEvents): Connection {
    const id = this.#nextConnection++;
    let open = true;
    if (!this.up) {
      this.#timers.set(() => open && events.onClosed('refused'), LATENCY_MS);
    } else {
      this.#timers.set(() => {
        if (!open || !this.up) return;
        this.#links.set(id, events);
        events.onConnected();
        this.#apply(this.hub.opened(id, this.#timers.now));
      }, LATENCY_MS);
    }
    return {
      write: (bytes) => {
        const copy = bytes.slice();
        this.#timers.set(() => {
          if (open && this.#links.has(id)) this.#apply(this.hub.receive(id, copy, this.#timers.now));
        }, LATENCY_MS);
      },
      close: () => {
        open = false;
        if (this.#links.delete(id)) this.#apply(this.hub.closed(id, this.#timers.now));
      },
    };
  }

  /** The network drops every connection (both ends see it). */
  dropAll(): void {
    for (const [id, events] of [...this.#links]) {
      this.#links.delete(id);
      this.#apply(this.hub.closed(id, this.#timers.now));
      events.onClosed('dropped');
    }
  }

  /** Hub process crash and restart: memory gone, durable store kept. */
  crash(downForMs: number): void {
    for (const [id, events] of [...this.#links]) {
      this.#links.delete(id);
      events.onClosed('hub crashed');
    }
    this.up = false;
    this.restarts++;
    this.#timers.set(() => {
      this.hub = this.#boot();
      this.up = true;
    }, downForMs);
  }

  rotate(): void {
    this.#apply(this.hub.rotate(this.#deviceId, this.#timers.now));
  }

  #apply(actions: HubAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit': {
          const events = this.#links.get(action.connection);
          const copy = action.bytes.slice();
          if (events) this.#timers.set(() => this.#links.get(action.connection) === events && events.onData(copy), LATENCY_MS);
          break;
        }
        case 'close': {
          const events = this.#links.get(action.connection);
          if (events) {
            this.#links.delete(action.connection);
            this.#apply(this.hub.closed(action.connection, this.#timers.now));
            events.onClosed('closed by hub');
          }
          break;
        }
        case 'persist': {
          const op = action.op;
          if (op.kind === 'storePending') this.durable = { active: this.durable.active, pending: { id: op.id, key: op.key.slice() } };
          else this.durable = { active: this.durable.pending! };
          this.#apply(this.hub.persisted(this.#deviceId, this.#timers.now));
          break;
        }
        case 'event':
          break;
      }
    }
  }
}

describe('DeviceHost with the real device core, keystore and hub core', () => {
  test('rotates keys across dropped connections and hub restarts, never out of sync', () => {
    const timers = new VirtualTimers();
    const log: string[] = [];
    const random = seededRandom(21);
    const deviceIdBytes = new Uint8Array([1, 1, 2, 3, 5, 8, 13, 21]);
    const deviceId = toHex(deviceIdBytes);
    const initialKey = new Uint8Array(64);
    random.fill(initialKey);
    const flash = new NorFlash({ sectors: 4 });
    new Keystore(flash).format(deviceIdBytes, { id: 1, key: initialKey });
    const hubSide = new FakeHubSide(timers, deviceId, { id: 1, key: initialKey });
    let core: DeviceCore | undefined;
    let mounts = 0;
    const events: string[] = [];
    const host = new DeviceHost({
      ...baseOptions(timers, log),
      createCore: () => {
        const keystore = new Keystore(flash);
        const mounted = keystore.mount();
        if (!mounted.provisioned) throw new LockstepError('UNPROVISIONED', mounted.reason);
        mounts++;
        core = new DeviceCore({ deviceId: mounted.deviceId, keys: mounted.keys, aead: nodeAead, random });
        return { core, keystore };
      },
      connect: (linkEvents) => hubSide.connect(linkEvents),
      onEvent: (event) => events.push(event.type),
    });

    /** Safety (docs/PROTOCOL.md §9): each side's seal key is one the other accepts, with the same bytes. */
    const assertSafe = (): void => {
      const device = core!.keys;
      const hubKeys = hubSide.hub.deviceKeys(deviceId);
      const deviceSeal = device.future ?? device.active;
      expect(hubSide.hub.acceptedKeyIds(deviceId)).toContain(deviceSeal.id);
      const held = [device.active, ...(device.future ? [device.future] : [])].find((slot) => slot.id === hubKeys.active.id);
      expect(held).toBeDefined();
      expect(toHex(held!.key)).toBe(toHex(hubKeys.active.key));
      // And the flash agrees with the core.
      const mounted = new Keystore(flash).mount();
      expect(mounted.provisioned && mounted.keys.active.id).toBe(device.active.id);
    };

    host.start();
    timers.run(100);
    expect(host.established).toBe(true);

    const faults = seededRandom(5);
    for (let round = 0; round < 40; round++) {
      hubSide.rotate();
      // Let the rotation run a random distance, then maybe inject a fault.
      const steps = faults.nextUint32() % 12;
      for (let i = 0; i < steps; i++) {
        timers.run(LATENCY_MS);
        assertSafe();
      }
      const fault = faults.nextUint32() % 4;
      if (fault === 0) hubSide.dropAll();
      if (fault === 1) hubSide.crash(500 + (faults.nextUint32() % 3000));
      for (let i = 0; i < 20; i++) {
        timers.run(500);
        assertSafe();
      }
      if (round % 10 === 9) host.send(new Uint8Array([round]));
    }
    // No more faults: everything settles on one shared key.
    timers.run(120_000);
    assertSafe();
    const device = core!.keys;
    const hubKeys = hubSide.hub.deviceKeys(deviceId);
    expect(device.future).toBeUndefined();
    expect(hubKeys.pending).toBeUndefined();
    expect(device.active.id).toBe(hubKeys.active.id);
    expect(device.active.id).toBeGreaterThanOrEqual(30);
    expect(hubSide.restarts).toBeGreaterThan(3);
    expect(host.established).toBe(true);
    expect(mounts).toBe(1);
    expect(events.filter((e) => e === 'keyPromoted').length).toBe(device.active.id - 1);
    expect(host.closes).toBeGreaterThan(10);
  });
});
