/**
 * The compromise scenario shared by tests/compromise.test.ts and
 * `npm run demo:compromise`: a real hub (the library API, SQLite + KEK) and
 * real Node devices (the device loop on a socket, flash images in files, one
 * of them key-wrapped) talk through the recording proxy on loopback; keys
 * are rotated several times before and after a moment t at which the hub's
 * durable state (database + WAL + keyring file) and each device's flash
 * (keystore.bin, keywrap.bin) are copied — mid-rotation, so the copies hold
 * a pending ephemeral (hub) or a stored future key (device). In that
 * rotation the first device's REKEY_ACK is lost (its connection drops right
 * after the key is durable), so the hub completes it on the next HELLO.
 *
 * The scenario is the project under test; only tools/attack/attacker.ts and
 * its readers must not use the project's code. What the scenario records
 * beside the transcript is ground truth for the test: every key that was
 * ever active (from the hub), every X25519 private key each side's
 * key-agreement backend produced or was handed (docs/PROTOCOL.md §11.3: a
 * pair from the backend's generator, or 32 bytes the core drew and asked the
 * public key of — both pass through the KeyAgreementPrimitives the hub and
 * the device are given, which the scenario wraps; the test ties each to its
 * rotation by its public key), and every wrapped form the hub stored (for
 * the file scans).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { NodeDevice } from '../../hosts/node/device-host';
import { FileFlash } from '../../hosts/node/flash-file';
import { openFlashKeystore } from '../../hosts/node/flash-key-storage';
import { defaultKeyringPath } from '../hub/kek';
import { parseHubRecord } from '../hub/records';
import { LockstepHub } from '../hub/server';
import { provisionDevice } from '../provision/provision';
import { recorderNow, RecordingProxy, type Transcript } from './recording-proxy';

export type Mode = 'classic' | 'dh';

export interface ScenarioOptions {
  readonly mode: Mode;
  /** Devices; the odd-numbered ones wrap their keys (docs/KEYSTORE.md §10). Default 2. */
  readonly devices?: number;
  /** Completed rotations before the one during which the state leaks. Default 2. */
  readonly rotationsBefore?: number;
  /** Rotations after that one. Default 3. */
  readonly rotationsAfter?: number;
  /** Called with a line per step (the demo prints them). */
  readonly log?: (line: string) => void;
}

export interface Draw {
  readonly at: number;
  readonly bytes: Uint8Array;
}

export interface ScenarioDevice {
  readonly deviceId: string;
  readonly keyWrap: boolean;
  readonly imagePath: string;
  readonly keyWrapPath: string | undefined;
  /** The X25519 private keys of this device's key-agreement backend (its ephemerals in the dh mode). */
  readonly draws: Draw[];
}

export interface HubLeakCopy {
  readonly at: number;
  readonly database: string;
  readonly keyringFile: string;
  /** The device whose rotation was pending at t, and that rotation's key id. */
  readonly pendingDeviceId: string;
  readonly pendingKeyId: number;
}

export interface DeviceLeakCopy {
  readonly deviceId: string;
  readonly at: number;
  readonly keystore: Uint8Array;
  readonly keyWrap: Uint8Array | undefined;
  /** The device held (activeKeyId, futureKeyId) at t. */
  readonly activeKeyId: number;
  readonly futureKeyId: number;
}

export interface SentMessage {
  readonly deviceId: string;
  readonly direction: 'up' | 'down';
  readonly text: string;
  readonly at: number;
}

/** A wrapped blob the hub stored: a key, or (dh) a pending ephemeral pair h ‖ H. */
export interface StoredBlob {
  readonly deviceId: string;
  readonly keyId: number;
  readonly slot: 'active' | 'pending';
  readonly bytes: Uint8Array;
}

export interface ScenarioResult {
  readonly mode: Mode;
  readonly dir: string;
  readonly transcript: Transcript;
  readonly devices: ScenarioDevice[];
  readonly hubLeak: HubLeakCopy;
  readonly deviceLeaks: DeviceLeakCopy[];
  /** Every key each device ever had active, by id (from the hub after each confirmation). */
  readonly truth: Map<string, Map<number, Uint8Array>>;
  /** The X25519 private keys of the hub's key-agreement backend. */
  readonly hubDraws: Draw[];
  readonly hubBlobs: StoredBlob[];
  readonly messages: SentMessage[];
  /** The hub's files and the device images after the last rotation settled (copies). */
  readonly finalFiles: { readonly hub: string[]; readonly devices: Map<string, string> };
  /** Removes the scenario's directory. */
  cleanUp(): void;
}

/** node:crypto's X25519/HKDF, recording every private key it generates or computes a public key for. */
function recordingKeyAgreement(draws: Draw[]): KeyAgreementPrimitives {
  const note = (privateKey: Uint8Array) => {
    if (!draws.some((d) => Buffer.from(d.bytes).equals(Buffer.from(privateKey)))) draws.push({ at: recorderNow(), bytes: privateKey.slice() });
  };
  const generate = nodeKeyAgreement.x25519GenerateKeyPair;
  return {
    name: `${nodeKeyAgreement.name}, recorded`,
    x25519PublicKey(privateKey) {
      note(privateKey);
      return nodeKeyAgreement.x25519PublicKey(privateKey);
    },
    x25519: (privateKey, publicKey) => nodeKeyAgreement.x25519(privateKey, publicKey),
    hkdfSha512: (salt, ikm, info, length) => nodeKeyAgreement.hkdfSha512(salt, ikm, info, length),
    ...(generate === undefined
      ? {}
      : {
          x25519GenerateKeyPair() {
            const pair = generate.call(nodeKeyAgreement);
            note(pair.privateKey);
            return pair;
          },
        }),
  };
}

async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`compromise scenario: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function copyHubFiles(database: string, to: string): string[] {
  mkdirSync(to, { recursive: true });
  const out: string[] = [];
  for (const suffix of ['', '-wal', '-shm']) {
    if (!existsSync(`${database}${suffix}`)) continue;
    copyFileSync(`${database}${suffix}`, join(to, `hub.db${suffix}`));
    out.push(join(to, `hub.db${suffix}`));
  }
  return out;
}

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const log = options.log ?? (() => {});
  const before = options.rotationsBefore ?? 2;
  const after = options.rotationsAfter ?? 3;
  const dir = mkdtempSync(join(tmpdir(), `lockstep-compromise-${options.mode}-`));
  const database = join(dir, 'hub', 'hub.db');
  mkdirSync(join(dir, 'hub'), { recursive: true });
  const hubDraws: Draw[] = [];
  const hub = await LockstepHub.start({
    database,
    tcp: { port: 0 },
    keyAgreement: recordingKeyAgreement(hubDraws),
    tickMs: 20,
    controlPollMs: 1000,
    timing: { rekeyRetryInitialMs: 200, rekeyRetryMaxMs: 1000 },
  });
  const proxy = await RecordingProxy.start({ target: { host: '127.0.0.1', port: hub.addresses[0]!.port }, maxConnections: 64, maxDurationMs: 60_000 });
  const hubBlobs: StoredBlob[] = [];
  const noteBlobs = (deviceId: string) => {
    const forms = hub.store.wrappedForms(deviceId);
    const summary = hub.store.getSummary(deviceId);
    if (forms === undefined || summary === undefined) return;
    const add = (slot: 'active' | 'pending', keyId: number, bytes: Uint8Array) => {
      if (!hubBlobs.some((b) => b.slot === slot && Buffer.from(b.bytes).equals(Buffer.from(bytes)))) hubBlobs.push({ deviceId, keyId, slot, bytes: new Uint8Array(bytes) });
    };
    add('active', summary.activeKeyId, forms.active.bytes);
    if (forms.pending !== undefined && summary.pendingKeyId !== undefined) add('pending', summary.pendingKeyId, forms.pending.bytes);
  };
  // Every wrapped form the hub ever stores, right after each group commit (as tests/hub-retired-keys.test.ts does).
  const commit = hub.store.commit.bind(hub.store);
  hub.store.commit = (ops, now) => {
    const applied = commit(ops, now);
    for (const op of ops) noteBlobs(op.deviceId);
    return applied;
  };

  const devices: ScenarioDevice[] = [];
  const hosts: NodeDevice[] = [];
  const flashes: FileFlash[] = [];
  const truth = new Map<string, Map<number, Uint8Array>>();
  const messages: SentMessage[] = [];
  const received = new Set<string>();
  const count = options.devices ?? 2;
  let result: ScenarioResult | undefined;
  try {
    for (let i = 0; i < count; i++) {
      const outDir = join(dir, `device-${i}`);
      const keyWrap = i % 2 === 1;
      const provisioned = provisionDevice({ outDir, mode: options.mode, keyWrap });
      const record = parseHubRecord(provisioned.record);
      hub.provision(record);
      noteBlobs(record.deviceId);
      truth.set(record.deviceId, new Map([[record.active.id, record.active.key.slice()]]));
      const draws: Draw[] = [];
      const flash = new FileFlash(provisioned.imagePath, { create: false });
      flashes.push(flash);
      const keyWrapImage = provisioned.keyWrapPath === undefined ? undefined : new Uint8Array(readFileSync(provisioned.keyWrapPath));
      const host = new NodeDevice({
        storage: openFlashKeystore(flash, keyWrapImage === undefined ? {} : { keyWrapImage }),
        endpoint: { host: '127.0.0.1', port: proxy.port },
        keyAgreement: recordingKeyAgreement(draws),
        reconnectInitialMs: 20,
        reconnectMaxMs: 200,
      });
      host.on('data', ({ payload }) => received.add(`down ${host.deviceId} ${Buffer.from(payload).toString('utf8')}`));
      devices.push({ deviceId: record.deviceId, keyWrap, imagePath: provisioned.imagePath, keyWrapPath: provisioned.keyWrapPath, draws });
      hosts.push(host);
    }
    hub.on('data', ({ deviceId, payload }) => received.add(`up ${deviceId} ${Buffer.from(payload).toString('utf8')}`));
    for (const host of hosts) host.start();
    await until(() => devices.every((d) => hub.deviceState(d.deviceId).connected), 'every device online');
    log(`${options.mode}: hub and ${count} devices online through the recording proxy (port ${proxy.port})`);

    const exchange = async (i: number, label: string) => {
      const device = devices[i]!;
      const keyId = hub.deviceState(device.deviceId).activeKeyId;
      const up = `reading ${label} of ${device.deviceId.slice(0, 6)} under key ${keyId}: ${(20 + Math.random() * 5).toFixed(2)} °C`;
      const down = `command ${label} for ${device.deviceId.slice(0, 6)} under key ${keyId}: valve=${Math.random() < 0.5 ? 'open' : 'closed'}`;
      messages.push({ deviceId: device.deviceId, direction: 'up', text: up, at: recorderNow() });
      hosts[i]!.send(Buffer.from(up));
      messages.push({ deviceId: device.deviceId, direction: 'down', text: down, at: recorderNow() });
      hub.send(device.deviceId, Buffer.from(down));
      await until(() => received.has(`up ${device.deviceId} ${up}`) && received.has(`down ${device.deviceId} ${down}`), `messages of ${label}`);
    };

    let hubLeak: HubLeakCopy | undefined;
    const deviceLeaks: DeviceLeakCopy[] = [];
    const rotateOnce = async (i: number, leakHere: boolean) => {
      const device = devices[i]!;
      const host = hosts[i]!;
      const from = hub.deviceState(device.deviceId).activeKeyId;
      const next = from + 1;
      let confirmed = false;
      let promoted = false;
      const onConfirmed = ({ deviceId, keyId }: { deviceId: string; keyId: number }) => {
        if (deviceId === device.deviceId && keyId === next) confirmed = true;
      };
      const onPromoted = ({ keyId }: { keyId: number }) => {
        if (keyId === next) promoted = true;
      };
      // The leaks: copies taken synchronously inside the event, between two durable writes.
      const onStarted = ({ deviceId, keyId }: { deviceId: string; keyId: number }) => {
        if (!leakHere || hubLeak !== undefined || deviceId !== device.deviceId || keyId !== next) return;
        const to = join(dir, 'leak', 'hub');
        copyHubFiles(database, to);
        copyFileSync(defaultKeyringPath(database), join(to, 'hub.db.kek'));
        hubLeak = { at: recorderNow(), database: join(to, 'hub.db'), keyringFile: join(to, 'hub.db.kek'), pendingDeviceId: deviceId, pendingKeyId: keyId };
      };
      const onStored = ({ keyId }: { keyId: number }) => {
        if (!leakHere || keyId !== next || deviceLeaks.some((l) => l.deviceId === device.deviceId)) return;
        deviceLeaks.push({
          deviceId: device.deviceId,
          at: recorderNow(),
          keystore: new Uint8Array(readFileSync(device.imagePath)),
          keyWrap: device.keyWrapPath === undefined ? undefined : new Uint8Array(readFileSync(device.keyWrapPath)),
          activeKeyId: from,
          futureKeyId: next,
        });
        if (i === 0) {
          // The first device's REKEY_ACK of this rotation is lost: the connection drops right after the
          // key is durable (the ACK is dropped with it), so the derived key's share reaches the hub on
          // the next connection's HELLO (docs/PROTOCOL.md §11.2) — the attacker must follow that too.
          host.stop();
          setTimeout(() => host.start(), 30);
        }
      };
      hub.on('keyConfirmed', onConfirmed);
      hub.on('rotationStarted', onStarted);
      host.on('keyPromoted', onPromoted);
      host.on('keyStored', onStored);
      try {
        mustBe(hub.rotate(device.deviceId), 'started');
        await until(() => confirmed && promoted, `rotation to key ${next} of ${device.deviceId}`);
      } finally {
        hub.off('keyConfirmed', onConfirmed);
        hub.off('rotationStarted', onStarted);
        host.off('keyPromoted', onPromoted);
        host.off('keyStored', onStored);
      }
      truth.get(device.deviceId)!.set(next, hub.deviceKeys(device.deviceId).active.key.slice());
    };

    const total = before + 1 + after;
    for (let r = 1; r <= total; r++) {
      const leakHere = r === before + 1;
      for (let i = 0; i < devices.length; i++) {
        await exchange(i, `#${2 * r - 1}`);
        await rotateOnce(i, leakHere);
        await exchange(i, `#${2 * r}`);
      }
      log(`${options.mode}: rotation ${r} of ${total} done on every device (active key ${hub.deviceState(devices[0]!.deviceId).activeKeyId})${leakHere ? ' — the state leaked during this one' : ''}`);
      if (r === before + 2) {
        // A reconnection after t: the attacker must follow a new session (CHALLENGE, HELLO, WELCOME) too.
        for (const host of hosts) host.stop();
        await until(() => devices.every((d) => !hub.deviceState(d.deviceId).connected), 'devices offline');
        for (const host of hosts) host.start();
        await until(() => devices.every((d) => hub.deviceState(d.deviceId).connected), 'devices online again');
        for (let i = 0; i < devices.length; i++) await exchange(i, `after reconnecting`);
      }
    }
    if (hubLeak === undefined || deviceLeaks.length !== devices.length) throw new Error('compromise scenario: a leak was not taken');

    const finalHub = copyHubFiles(database, join(dir, 'final', 'hub'));
    const finalDevices = new Map<string, string>();
    for (const device of devices) {
      const to = join(dir, 'final', `${device.deviceId}.bin`);
      copyFileSync(device.imagePath, to);
      finalDevices.set(device.deviceId, to);
    }
    const leakCopy = hubLeak;
    result = {
      mode: options.mode,
      dir,
      transcript: proxy.transcript,
      devices,
      hubLeak: leakCopy,
      deviceLeaks,
      truth,
      hubDraws,
      hubBlobs,
      messages,
      finalFiles: { hub: finalHub, devices: finalDevices },
      cleanUp: () => rmSync(dir, { recursive: true, force: true }),
    };
    return result;
  } finally {
    for (const host of hosts) host.stop();
    await proxy.close();
    await hub.close();
    for (const flash of flashes) flash.close();
    if (result === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

function mustBe(actual: string, expected: string): void {
  if (actual !== expected) throw new Error(`compromise scenario: rotate answered ${actual}, expected ${expected}`);
}
