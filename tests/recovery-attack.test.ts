/**
 * The attacker cases of docs/PROTOCOL.md §12.1, against the real cores:
 *
 * 1. An impostor hub holding a copy of the hub's database and everything in
 *    it — the keyring (KEK) file too, every key unwrapped through
 *    tools/attack/hub-leak.ts, the device's S_d and hub static id, S_h (public,
 *    in every device image) — but not s_h, talking to the real device core
 *    (modules/device), cannot make the device accept any key: no persist, no
 *    slot changes, no `recovered` event. The copy is a backup the device has
 *    rotated past (the case recovery exists for). A copy of the *current*
 *    database holds the device's current session key, which is the 1.0
 *    compromise model (docs/PROTOCOL.md §11.1: the dh mode heals it, shown
 *    by `npm run demo:compromise`), not recovery's.
 * 2. An impostor device holding the device's current key but not s_d,
 *    talking to the real hub (tools/hub over a real socket), cannot make the
 *    hub accept a recovery: its database row, its recovery tables and its
 *    audit trail are unchanged.
 *
 * Both attackers compute the handshake with tools/attack/recovery.ts (from
 * the spec, node:crypto, no import from modules/: checked here against
 * Appendix A), and the same attacker given the missing private key succeeds
 * — so each "cannot" is a test that can fail.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ImpostorDeviceHandshake, ImpostorHubHandshake, MESSAGE, STATUS, header, randomPrivate } from '../tools/attack/recovery';
import { x25519PublicKey } from '../tools/attack/dh';
import { readHubLeak } from '../tools/attack/hub-leak';
import { openFrame, splitFrames } from '../tools/attack/wire';
import { nodeAead } from '../hosts/node/crypto';
import { nodeKeyAgreement } from '../hosts/node/key-agreement';
import { fromHex, toHex } from '../modules/bytes';
import type { RecoveryCredential } from '../modules/crypto/recovery';
import type { DeviceAction, DeviceEvent, DevicePersistOp } from '../modules/device/actions';
import { DeviceCore } from '../modules/device/device';
import { MessageType } from '../modules/protocol/constants';
import { sealFrame } from '../modules/protocol/frame';
import { withLengthPrefix } from '../modules/protocol/framing';
import { defaultKeyringPath } from '../tools/hub/kek';
import { LockstepHub } from '../tools/hub/server';
import { newStaticPair } from '../tools/hub/static-keys';
import { HubStore } from '../tools/hub/store';
import { seededRandom } from '../tools/testing/deterministic-random';

const vectors = JSON.parse(readFileSync(join(__dirname, '..', 'docs', 'vectors', 'recovery-vectors.json'), 'utf8')) as {
  inputs: Record<string, string | number>;
  frames: { name: string; wire: string }[];
  recoveredKey: string;
};

const frameOf = (name: string): Buffer => Buffer.from(vectors.frames.find((f) => f.name === name)!.wire, 'hex').subarray(2);
const hex = (name: string): Buffer => Buffer.from(vectors.inputs[name] as string, 'hex');

describe('the attacker\'s handshake (tools/attack/recovery.ts) is the spec\'s', () => {
  const context = {
    deviceId: hex('deviceId'),
    hubNonce: hex('hubNonce'),
    devicePublic: hex('deviceStaticPublic'),
    hubPublic: hex('hubStaticPublic'),
  };

  it('reproduces Appendix A from both sides', () => {
    const device = new ImpostorDeviceHandshake(
      {
        ...context,
        devicePrivate: hex('deviceStaticPrivate'),
        hubStaticId: vectors.inputs.hubStaticId as number,
        activeKeyId: vectors.inputs.deviceActiveKeyId as number,
        futureKeyId: vectors.inputs.deviceFutureKeyId as number,
        newestKey: hex('deviceNewestKey'),
      },
      hex('deviceEphemeralPrivate'),
    );
    expect(device.init().toString('hex')).toBe(frameOf('RECOVER_INIT').toString('hex'));
    const hub = new ImpostorHubHandshake({ ...context, hubPrivate: hex('hubStaticPrivate') });
    expect(hub.reply(frameOf('RECOVER_INIT'), vectors.inputs.newKeyId as number, hex('hubEphemeralPrivate')).toString('hex')).toBe(frameOf('RECOVER_REPLY').toString('hex'));
    expect(hub.tag1Valid).toBe(true);
    expect(device.finish(frameOf('RECOVER_REPLY')).toString('hex')).toBe(frameOf('RECOVER_FINISH').toString('hex'));
    expect(hub.finishValid(frameOf('RECOVER_FINISH'))).toBe(true);
    expect(hub.result(STATUS.ACCEPTED).toString('hex')).toBe(frameOf('RECOVER_RESULT').toString('hex'));
    expect(device.readResult(frameOf('RECOVER_RESULT'))).toEqual({ status: STATUS.ACCEPTED, retryAfterSeconds: 0 });
    expect(hub.recoveredKey?.toString('hex')).toBe(vectors.recoveredKey);
    expect(device.recoveredKey?.toString('hex')).toBe(vectors.recoveredKey);
  });

  it('fails the spec\'s checks with a wrong static key (the property the attacks below rely on)', () => {
    const hub = new ImpostorHubHandshake({ ...context, hubPrivate: randomPrivate() });
    hub.reply(frameOf('RECOVER_INIT'), 7);
    expect(hub.tag1Valid).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// 1. An impostor hub with the whole database, not s_h, against the device core.
// ---------------------------------------------------------------------------

const DEVICE_ID = '5eed0a11c0ffee01';
const deviceIdBytes = fromHex(DEVICE_ID);
const BACKUP_KEY_ID = 4;
const DEVICE_KEY_ID = 6;

interface World {
  readonly dir: string;
  /** The real hub's static pair (s_h stays out of the attacker's hands, except in the control). */
  readonly hubStatic: { privateKey: Uint8Array; publicKey: Uint8Array };
  readonly credential: RecoveryCredential;
  /** The device's key now (id 6): the hub's backup predates it. */
  readonly deviceKey: Uint8Array;
  /** What the impostor hub extracted from the stolen copy. */
  readonly stolen: { keys: { keyId: number; key: Uint8Array }[]; devicePublic: Uint8Array; hubStaticId: number };
}

function staticPair(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = randomPrivate();
  return { privateKey, publicKey: x25519PublicKey(privateKey) };
}

/**
 * A hub database written by the real store (KEK-wrapped keys, the device's
 * S_d and hub static id), copied with its keyring file as a thief would, and
 * read back through the attacker's tooling.
 */
function makeWorld(): World {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-attack-'));
  const hubStatic = staticPair();
  const device = staticPair();
  const database = join(dir, 'hub.db');
  const backupKey = new Uint8Array(64).map((_, i) => (i * 7 + 1) & 0xff);
  const store = new HubStore(database);
  store.insertDevices([{ deviceId: DEVICE_ID, active: { id: BACKUP_KEY_ID, key: backupKey }, mode: 'dh', devicePublicKey: device.publicKey, hubStaticId: 1 }], Date.now());
  store.close();
  const stolenDb = join(dir, 'stolen.db');
  copyFileSync(database, stolenDb);
  copyFileSync(defaultKeyringPath(database), join(dir, 'stolen.db.kek'));
  const leak = readHubLeak({ database: stolenDb, keyringFile: join(dir, 'stolen.db.kek') });
  const db = new Database(stolenDb, { readonly: true });
  const row = db.prepare('SELECT device_public_key, hub_static_id FROM devices WHERE device_id = ?').get(DEVICE_ID) as { device_public_key: Buffer; hub_static_id: number };
  db.close();
  const keys = leak.keys.filter((k) => k.deviceId === DEVICE_ID).map((k) => ({ keyId: k.keyId, key: k.key }));
  return {
    dir,
    hubStatic,
    credential: { device, hubStaticId: 1, hubPublicKey: hubStatic.publicKey },
    deviceKey: new Uint8Array(64).map((_, i) => (i * 13 + 5) & 0xff),
    stolen: { keys, devicePublic: new Uint8Array(row.device_public_key), hubStaticId: row.hub_static_id },
  };
}

/** The real device core, on a host that records everything it is asked to do and persists at once. */
class DeviceUnderAttack {
  readonly core: DeviceCore;
  now = 1_700_000_000_000;
  readonly frames: Buffer[] = [];
  readonly persists: DevicePersistOp[] = [];
  readonly events: DeviceEvent[] = [];
  closes = 0;
  readonly #before: string;

  constructor(world: World, seed: number) {
    this.core = new DeviceCore({
      deviceId: deviceIdBytes,
      keys: { mode: 'dh', active: { id: DEVICE_KEY_ID, key: world.deviceKey.slice() } },
      aead: nodeAead,
      random: seededRandom(seed),
      keyAgreement: nodeKeyAgreement,
      credential: world.credential,
    });
    this.#before = JSON.stringify(this.core.keys, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v));
    this.#apply(this.core.connected(this.now));
  }

  /** Frames that arrived after the device closed the connection (a real host drops them). */
  dropped = 0;

  /** Bytes from the (impostor) hub. */
  receive(frame: Uint8Array): void {
    this.now += 5;
    if (this.core.session === 'offline') {
      this.dropped++;
      return;
    }
    this.#apply(this.core.receive(withLengthPrefix(frame), this.now));
  }

  /** The last frame the device sent, of `type`. */
  last(type: number): Buffer | undefined {
    return [...this.frames].reverse().find((f) => f[1] === type);
  }

  keysUnchanged(): boolean {
    return JSON.stringify(this.core.keys, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v)) === this.#before;
  }

  #apply(actions: DeviceAction[]): void {
    for (const action of actions) {
      if (action.type === 'transmit') {
        for (const frame of splitFrames([{ at: 0, bytes: action.bytes }], 0, 'up')) this.frames.push(Buffer.from(frame.bytes));
      } else if (action.type === 'persist') {
        this.persists.push(action.op);
        this.#apply(this.core.persisted(this.now));
      } else if (action.type === 'event') {
        this.events.push(action.event);
      } else {
        this.closes++;
      }
    }
  }
}

/** The impostor hub's CHALLENGE with a nonce of its choosing; the device answers with a HELLO. */
function challenge(device: DeviceUnderAttack, hubNonce: Uint8Array): void {
  device.receive(header(MESSAGE.CHALLENGE, true, new Uint8Array(8), 0, hubNonce));
  expect(device.last(MESSAGE.HELLO)).toBeDefined();
}

const noKey = (hubNonce: Uint8Array): Buffer => header(MESSAGE.NO_KEY, true, deviceIdBytes, 1, hubNonce);

/** Every way the device could have accepted a key: a persist of any kind, a slot change, a `recovered` event. */
function acceptedSomething(device: DeviceUnderAttack): boolean {
  return device.persists.length > 0 || !device.keysUnchanged() || device.events.some((e) => e.type === 'recovered' || e.type === 'keyStored' || e.type === 'keyPromoted');
}

describe('an impostor hub with a copy of the hub database (KEK included) but not s_h', () => {
  let world: World;
  beforeAll(() => {
    world = makeWorld();
  });
  afterAll(() => rmSync(world.dir, { recursive: true, force: true }));

  it('holds everything the database has: the backup\'s key, S_d, the hub static id', () => {
    expect(world.stolen.keys.map((k) => k.keyId)).toEqual([BACKUP_KEY_ID]);
    expect(toHex(world.stolen.devicePublic)).toBe(toHex(world.credential.device.publicKey));
    expect(world.stolen.hubStaticId).toBe(1);
  });

  /** The impostor's handshake with `hubPrivate` for the static key the device knows. */
  function recoverWith(hubPrivate: Uint8Array, seed: number, hubNonce = randomPrivate().subarray(0, 16)): { device: DeviceUnderAttack; impostor: ImpostorHubHandshake } {
    const device = new DeviceUnderAttack(world, seed);
    challenge(device, hubNonce);
    device.receive(noKey(hubNonce));
    const init = device.last(MESSAGE.RECOVER_INIT);
    expect(init).toBeDefined();
    const impostor = new ImpostorHubHandshake({ hubPrivate, hubPublic: world.credential.hubPublicKey, devicePublic: world.stolen.devicePublic, deviceId: deviceIdBytes, hubNonce });
    device.receive(impostor.reply(init!, DEVICE_KEY_ID + 1));
    // Whatever came back, the impostor declares the recovery accepted.
    device.receive(impostor.result(STATUS.ACCEPTED));
    return { device, impostor };
  }

  it('control: the same attacker WITH s_h makes the device store its key (so the checks below can fail)', () => {
    const { device, impostor } = recoverWith(world.hubStatic.privateKey, 1);
    expect(device.last(MESSAGE.RECOVER_FINISH)).toBeDefined();
    expect(device.persists).toEqual([{ kind: 'storeRecovered', id: DEVICE_KEY_ID + 1, key: new Uint8Array(impostor.recoveredKey!) }]);
    expect(device.events).toContainEqual({ type: 'recovered', newKeyId: DEVICE_KEY_ID + 1 });
    expect(acceptedSomething(device)).toBe(true);
  });

  it('cannot complete a recovery with its own static key in place of s_h', () => {
    for (let seed = 10; seed < 14; seed++) {
      const { device } = recoverWith(randomPrivate(), seed);
      expect(device.last(MESSAGE.RECOVER_FINISH)).toBeUndefined();
      expect(acceptedSomething(device)).toBe(false);
      expect(device.events.map((e) => e.type)).toContain('recoveryRefused');
    }
  });

  it('cannot complete one by claiming its own public key as the hub\'s (the device only knows S_h)', () => {
    const own = staticPair();
    const hubNonce = randomPrivate().subarray(0, 16);
    const device = new DeviceUnderAttack(world, 20);
    challenge(device, hubNonce);
    device.receive(noKey(hubNonce));
    const impostor = new ImpostorHubHandshake({ hubPrivate: own.privateKey, hubPublic: own.publicKey, devicePublic: world.stolen.devicePublic, deviceId: deviceIdBytes, hubNonce });
    device.receive(impostor.reply(device.last(MESSAGE.RECOVER_INIT)!, DEVICE_KEY_ID + 1));
    device.receive(impostor.result(STATUS.ACCEPTED));
    expect(acceptedSomething(device)).toBe(false);
  });

  it('cannot replay a genuine RECOVER_REPLY and RECOVER_RESULT, even under the same CHALLENGE nonce it chose again', () => {
    const hubNonce = randomPrivate().subarray(0, 16);
    // A genuine recovery the thief recorded on the wire (the real hub, with s_h)…
    const recorded: { reply: Buffer; result: Buffer } = { reply: Buffer.alloc(0), result: Buffer.alloc(0) };
    {
      const device = new DeviceUnderAttack(world, 31);
      challenge(device, hubNonce);
      device.receive(noKey(hubNonce));
      const real = new ImpostorHubHandshake({ hubPrivate: world.hubStatic.privateKey, hubPublic: world.credential.hubPublicKey, devicePublic: world.stolen.devicePublic, deviceId: deviceIdBytes, hubNonce });
      recorded.reply = real.reply(device.last(MESSAGE.RECOVER_INIT)!, DEVICE_KEY_ID + 1);
      device.receive(recorded.reply);
      expect(device.last(MESSAGE.RECOVER_FINISH)).toBeDefined();
      recorded.result = real.result(STATUS.ACCEPTED);
      device.receive(recorded.result);
      expect(device.persists).toHaveLength(1);
    }
    // …replayed to the device in a new connection with the same nonce: its fresh e_d changes k1.
    const device = new DeviceUnderAttack(world, 32);
    challenge(device, hubNonce);
    device.receive(noKey(hubNonce));
    device.receive(recorded.reply);
    device.receive(recorded.result);
    expect(device.last(MESSAGE.RECOVER_FINISH)).toBeUndefined();
    expect(acceptedSomething(device)).toBe(false);
  });

  it('cannot skip to RECOVER_RESULT ACCEPTED, and no key of the backup opens anything on the device', () => {
    const hubNonce = randomPrivate().subarray(0, 16);
    const device = new DeviceUnderAttack(world, 40);
    challenge(device, hubNonce);
    device.receive(noKey(hubNonce));
    const impostor = new ImpostorHubHandshake({ hubPrivate: randomPrivate(), hubPublic: world.credential.hubPublicKey, devicePublic: world.stolen.devicePublic, deviceId: deviceIdBytes, hubNonce });
    impostor.reply(device.last(MESSAGE.RECOVER_INIT)!, DEVICE_KEY_ID + 1);
    device.receive(impostor.result(STATUS.ACCEPTED));
    expect(acceptedSomething(device)).toBe(false);

    // 1.0 frames sealed under every key the copy holds: WELCOME, then REKEY (classic) for id 7.
    for (const { keyId, key } of world.stolen.keys) {
      const d = new DeviceUnderAttack(world, 41 + keyId);
      challenge(d, hubNonce);
      const seal = (message: Parameters<typeof sealFrame>[0]['message'], sequence: number) =>
        sealFrame({ aead: nodeAead, key, iv: randomPrivate().subarray(0, 16), header: { fromHub: true, deviceId: deviceIdBytes, keyId, sequence, sessionId: hubNonce }, message });
      d.receive(seal({ type: MessageType.WELCOME, deviceNonce: new Uint8Array(16), hubKeyId: keyId }, 1));
      d.receive(seal({ type: MessageType.REKEY, newKeyId: DEVICE_KEY_ID + 1, newKey: new Uint8Array(64).fill(0xaa) }, 2));
      expect(d.core.session).not.toBe('established');
      expect(acceptedSomething(d)).toBe(false);
    }
  });

  it('control for the 1.0 frames: the same WELCOME under the device\'s current key is accepted', () => {
    const hubNonce = randomPrivate().subarray(0, 16);
    const d = new DeviceUnderAttack(world, 50);
    challenge(d, hubNonce);
    const hello = splitFrames([{ at: 0, bytes: withLengthPrefix(d.last(MESSAGE.HELLO)!) }], 0, 'up')[0]!;
    const body = openFrame(hello, world.deviceKey);
    expect(body).toBeDefined();
    const seal = (message: Parameters<typeof sealFrame>[0]['message'], sequence: number) =>
      sealFrame({ aead: nodeAead, key: world.deviceKey, iv: randomPrivate().subarray(0, 16), header: { fromHub: true, deviceId: deviceIdBytes, keyId: DEVICE_KEY_ID, sequence, sessionId: hubNonce }, message });
    d.receive(seal({ type: MessageType.WELCOME, deviceNonce: body!.subarray(0, 16), hubKeyId: DEVICE_KEY_ID }, 1));
    expect(d.core.session).toBe('established');
  });
});

// ---------------------------------------------------------------------------
// 2. An impostor device with the device's current key, not s_d, against the real hub.
// ---------------------------------------------------------------------------

/** A raw TCP client that speaks frames (u16 length prefix), as an attacker's tool would. */
class RawClient {
  readonly #socket: Socket;
  readonly #frames: Buffer[] = [];
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      while (this.#buffer.length >= 2 && this.#buffer.length >= 2 + this.#buffer.readUInt16BE(0)) {
        const length = this.#buffer.readUInt16BE(0);
        this.#frames.push(this.#buffer.subarray(2, 2 + length));
        this.#buffer = this.#buffer.subarray(2 + length);
      }
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** The next frame, or undefined once the hub closed (or after 5 s). */
  async next(): Promise<Buffer | undefined> {
    const deadline = Date.now() + 5000;
    while (this.#frames.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.#frames.shift();
  }

  send(frame: Uint8Array): void {
    if (!this.closed) this.#socket.write(withLengthPrefix(frame));
  }

  close(): void {
    this.#socket.destroy();
  }
}

describe('an impostor device with the device\'s current key but not s_d, against the real hub', () => {
  let dir: string;
  let hub: LockstepHub;
  let database: string;
  const device = staticPair();
  const currentKey = new Uint8Array(64).map((_, i) => (i * 11 + 3) & 0xff);
  const decided: unknown[] = [];
  const unauthenticated: unknown[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-attack-hub-'));
    database = join(dir, 'hub.db');
    hub = await LockstepHub.start({ database, tcp: { port: 0 }, staticKeys: { current: 1, keys: [newStaticPair(1, Date.now())] }, rotation: { intervalMs: 0 } });
    hub.provision({ deviceId: DEVICE_ID, active: { id: DEVICE_KEY_ID, key: currentKey }, mode: 'dh', devicePublicKey: device.publicKey, hubStaticId: 1 });
    hub.on('recoveryDecided', (e: unknown) => decided.push(e));
    hub.on('recoveryUnauthenticated', (e: unknown) => unauthenticated.push(e));
  });
  afterAll(async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The hub's durable view of the device: its row's slots, recovery rows, audit entries about recovery. */
  function hubState(): string {
    const db = new Database(database, { readonly: true });
    try {
      const row = db.prepare('SELECT active_id, active_key, pending_id, pending_key FROM devices WHERE device_id = ?').get(DEVICE_ID);
      const recoveries = db.prepare('SELECT count(*) AS n FROM recoveries').get();
      const requests = db.prepare('SELECT count(*) AS n FROM recovery_requests').get();
      const audit = db.prepare("SELECT action, outcome FROM audit_log WHERE action LIKE 'recovery%'").all();
      return JSON.stringify({ row, recoveries, requests, audit }, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v));
    } finally {
      db.close();
    }
  }

  /** One attempt: CHALLENGE, a HELLO that fails, NO_KEY, then RECOVER_INIT and RECOVER_FINISH from `devicePrivate`. */
  async function attempt(devicePrivate: Uint8Array, options: { newestKey?: Uint8Array; replay?: { init: Buffer; finish: Buffer } } = {}) {
    const client = await RawClient.connect(hub.addresses[0]!.port);
    try {
      const challengeFrame = await client.next();
      expect(challengeFrame?.[1]).toBe(MESSAGE.CHALLENGE);
      const hubNonce = challengeFrame!.subarray(20, 36);
      // A HELLO under an id the hub does not hold: how a device that lost sync starts (HS9).
      client.send(
        sealFrame({
          aead: nodeAead,
          key: new Uint8Array(64).fill(0x5a),
          iv: randomPrivate().subarray(0, 16),
          header: { fromHub: false, deviceId: deviceIdBytes, keyId: DEVICE_KEY_ID + 50, sequence: 0, sessionId: hubNonce },
          message: { type: MessageType.HELLO, deviceNonce: randomPrivate().subarray(0, 16), activeKeyId: DEVICE_KEY_ID + 50, futureKeyId: 0 },
        }),
      );
      const noKeyFrame = await client.next();
      expect(noKeyFrame?.[1]).toBe(MESSAGE.NO_KEY);
      const impostor = new ImpostorDeviceHandshake({
        devicePrivate,
        devicePublic: device.publicKey,
        hubPublic: hub.hubStatic!.publicKey,
        hubStaticId: 1,
        deviceId: deviceIdBytes,
        hubNonce,
        activeKeyId: DEVICE_KEY_ID + 50,
        futureKeyId: 0,
        newestKey: options.newestKey ?? new Uint8Array(64).fill(0x5a),
      });
      const init = options.replay?.init ?? impostor.init();
      client.send(init);
      const reply = await client.next();
      let finish: Buffer | undefined;
      let result: { status: number; retryAfterSeconds: number } | undefined;
      if (reply?.[1] === MESSAGE.RECOVER_REPLY) {
        finish = options.replay?.finish ?? impostor.finish(reply);
        client.send(finish);
        const resultFrame = await client.next();
        if (resultFrame !== undefined) result = impostor.readResult(resultFrame);
      } else {
        // No reply: the impostor sends a FINISH anyway, as if it had one.
        finish = options.replay?.finish ?? header(MESSAGE.RECOVER_FINISH, false, deviceIdBytes, 2, hubNonce);
        client.send(finish.length === 68 ? finish : Buffer.concat([finish, randomPrivate()]));
        await client.next();
      }
      return { init, finish, reply, result, recoveredKey: impostor.recoveredKey, newKeyId: impostor.newKeyId };
    } finally {
      client.close();
    }
  }

  it('cannot get past RECOVER_INIT with its own static key in place of s_d, whatever key it claims to seal with', async () => {
    const before = hubState();
    for (const newestKey of [currentKey, new Uint8Array(64).fill(0x5a)]) {
      const outcome = await attempt(randomPrivate(), { newestKey });
      expect(outcome.reply).toBeUndefined();
      expect(outcome.result).toBeUndefined();
    }
    expect(hubState()).toBe(before);
    expect(decided).toEqual([]);
    expect(unauthenticated.length).toBeGreaterThanOrEqual(2);
  });

  let genuine: { init: Buffer; finish: Buffer } | undefined;

  it('control: the same attacker WITH s_d makes the hub accept a recovery (so the checks above can fail)', async () => {
    const before = hubState();
    const outcome = await attempt(device.privateKey);
    expect(outcome.reply?.[1]).toBe(MESSAGE.RECOVER_REPLY);
    expect(outcome.result).toEqual({ status: STATUS.ACCEPTED, retryAfterSeconds: 0 });
    const after = hubState();
    expect(after).not.toBe(before);
    const db = new Database(database, { readonly: true });
    const row = db.prepare('SELECT pending_id FROM devices WHERE device_id = ?').get(DEVICE_ID) as { pending_id: number };
    db.close();
    expect(row.pending_id).toBe(outcome.newKeyId);
    expect(decided).toHaveLength(1);
    genuine = { init: outcome.init, finish: outcome.finish! };
  });

  it('cannot replay a genuine RECOVER_INIT and RECOVER_FINISH in another connection', async () => {
    expect(genuine).toBeDefined();
    const before = hubState();
    const outcome = await attempt(randomPrivate(), { replay: genuine! });
    expect(outcome.reply).toBeUndefined();
    expect(hubState()).toBe(before);
    expect(decided).toHaveLength(1);
  });
});
