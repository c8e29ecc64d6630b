/**
 * Transcripts (docs/PROTOCOL.md Appendix A, docs/vectors/transcripts.json):
 * whole conversations between the REAL cores — modules/hub/hub.ts and
 * modules/device/device.ts — so each transcript is what the reference
 * implementation does, byte for byte, and what each side holds after every
 * step.
 *
 * Deterministic: each core gets its own random source that hands out fixed
 * patterns (draw k of n bytes: byte i = (base + 0x25·k + 7·i) mod 256), and
 * every draw is recorded in the step that consumed it (nonces, IVs, keys,
 * ephemeral private keys, stream ids, the re-offer jitter). The clock
 * advances 10 ms per step and no timer fires. Writes complete at once (the
 * state after a step is the state after every persist it caused).
 *
 * The links: frames are delivered in the order they were sent, one per
 * step; a close is delivered after the frames sent before it (TCP's FIN); a
 * frame can be lost (`lost: true`: sent, never delivered).
 */
import { toHex } from '../../modules/bytes';
import type { RandomSource } from '../../modules/crypto/primitives';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import { DeviceCore, type DeviceAction } from '../../modules/device/device';
import { HubCore, type HubAction, type HubDeviceRecord } from '../../modules/hub/hub';
import { describePersistOp } from '../../modules/device/actions';
import type { DeviceKeys } from '../../modules/platform/keys';
import { LENGTH_PREFIX_BYTES, MessageType, RecoveryStatus } from '../../modules/protocol/constants';
import { decodeHeader } from '../../modules/protocol/header';
import { nodeAead } from '../../hosts/node/crypto';
import { nodeKeyAgreementDrawn } from '../../hosts/node/key-agreement';

export const TRANSCRIPTS_VERSION = 1;

export interface HubView {
  /** The state of the hub's connection in use (`closed` once it is gone). */
  readonly connection: string;
  readonly activeKeyId: number;
  readonly pendingKeyId: number | null;
  /** Next seq the hub expects from the device, and the hub's next seq. */
  readonly sequenceIn: number;
  readonly sequenceOut: number;
}

export interface DeviceView {
  readonly session: string;
  readonly mode: string;
  readonly activeKeyId: number;
  readonly futureKeyId: number | null;
  readonly sequenceIn: number;
  readonly sequenceOut: number;
}

export type TranscriptStep =
  | { readonly kind: 'connect'; readonly connection: number; readonly draws: Draws; readonly after: Views }
  | { readonly kind: 'rotate'; readonly draws: Draws; readonly persisted: readonly string[]; readonly after: Views }
  | { readonly kind: 'send'; readonly side: 'device' | 'hub'; readonly payload: string; readonly draws: Draws; readonly after: Views }
  | {
      readonly kind: 'frame';
      readonly direction: 'hub→device' | 'device→hub';
      readonly type: string;
      readonly keyId: number;
      readonly sequence: number;
      /** The frame carries a KEY_SHARE (§11.2). */
      readonly share: boolean;
      /** Sent but never delivered (the connection drops before it arrives). */
      readonly lost: boolean;
      readonly wire: string;
      /** Random draws of each side since the previous step (hex, in order): the receiver's while it handled the frame. */
      readonly draws: Draws;
      /** Writes the receiver made durable while handling it, in order. */
      readonly persisted: readonly string[];
      /** What the receiver's host did besides (a recovery decision). */
      readonly host?: string;
      readonly after: Views;
    }
  | { readonly kind: 'close'; readonly by: 'hub' | 'device' | 'link'; readonly reason: string; readonly after: Views };

export interface Draws {
  readonly hub: readonly string[];
  readonly device: readonly string[];
}

export interface Views {
  readonly hub: HubView;
  readonly device: DeviceView;
}

export interface Transcript {
  readonly name: string;
  readonly description: string;
  readonly inputs: {
    readonly deviceId: string;
    /** The hub's record at the start (keys hex). */
    readonly hub: { readonly mode: string; readonly active: { readonly id: number; readonly key: string }; readonly recovery?: { readonly hubStaticId: number; readonly hubStaticPrivate: string; readonly hubStaticPublic: string; readonly devicePublicKey: string } };
    /** The device's keystore at the start. */
    readonly device: { readonly mode: string; readonly active: { readonly id: number; readonly key: string }; readonly recovery?: { readonly hubStaticId: number; readonly deviceStaticPrivate: string; readonly deviceStaticPublic: string; readonly hubStaticPublic: string } };
    /** The bases of the two random sources (see the file's description). */
    readonly hubRandomBase: number;
    readonly deviceRandomBase: number;
    /** Every key by id (hex) that seals a frame of the transcript, the derived and recovered ones included. */
    readonly keys: Readonly<Record<string, string>>;
  };
  readonly steps: readonly TranscriptStep[];
}

/** The pattern source: draw k of n bytes is byte i = (base + 0x25·k + 7·i) mod 256. Records every draw since the last `take`. */
export class PatternRandom implements RandomSource {
  #draws = 0;
  #recent: string[] = [];
  constructor(readonly base: number) {}
  fill(out: Uint8Array): void {
    const k = this.#draws++;
    for (let i = 0; i < out.length; i++) out[i] = (this.base + 0x25 * k + 7 * i) & 0xff;
    this.#recent.push(toHex(out));
  }
  take(): string[] {
    const recent = this.#recent;
    this.#recent = [];
    return recent;
  }
}

const TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, value]) => [value, name]));

function bytesOf(start: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (start + i) & 0xff);
}

interface InFlight {
  readonly from: 'hub' | 'device';
  readonly connection: number;
  /** A frame, or the close that follows the frames sent before it. */
  readonly bytes?: Uint8Array;
  readonly close?: string;
}

interface RigSetup {
  readonly name: string;
  readonly description: string;
  readonly mode: 'classic' | 'dh';
  readonly hubActive: { id: number; key: Uint8Array };
  readonly deviceActive: { id: number; key: Uint8Array };
  readonly recovery?: boolean;
  readonly hubRandomBase: number;
  readonly deviceRandomBase: number;
}

/** The two real cores on an in-memory link, recording a transcript. */
class TranscriptRig {
  readonly deviceIdBytes = Uint8Array.from([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
  readonly deviceId = toHex(this.deviceIdBytes);
  readonly hubRandom: PatternRandom;
  readonly deviceRandom: PatternRandom;
  readonly hub: HubCore;
  readonly device: DeviceCore;
  readonly steps: TranscriptStep[] = [];
  readonly keys = new Map<number, string>();
  readonly inputs: Transcript['inputs'];
  #now = 1_000;
  #connection = 0;
  #hubOpen = false;
  #deviceOpen = false;
  #queue: InFlight[] = [];
  #persisted: string[] = [];
  #host: string | undefined;

  constructor(readonly setup: RigSetup) {
    this.hubRandom = new PatternRandom(setup.hubRandomBase);
    this.deviceRandom = new PatternRandom(setup.deviceRandomBase);
    const ka = nodeKeyAgreementDrawn;
    let hubRecovery: Pick<HubDeviceRecord, 'devicePublicKey' | 'hubStaticId'> = {};
    let credential: RecoveryCredential | undefined;
    let hubKeys: { id: number; privateKey: Uint8Array; publicKey: Uint8Array } | undefined;
    const record: HubDeviceRecord = { deviceId: this.deviceId, mode: setup.mode, active: { id: setup.hubActive.id, key: setup.hubActive.key.slice() } };
    let inputsRecovery: { hub: NonNullable<Transcript['inputs']['hub']['recovery']>; device: NonNullable<Transcript['inputs']['device']['recovery']> } | undefined;
    if (setup.recovery === true) {
      // The static keys of the recovery vectors (recovery-vectors.ts): s_d = 0x20…0x3f, s_h = 0x40…0x5f, hub static id 1.
      const devicePrivate = bytesOf(0x20, 32);
      const hubPrivate = bytesOf(0x40, 32);
      hubKeys = { id: 1, privateKey: hubPrivate, publicKey: ka.x25519PublicKey(hubPrivate) };
      credential = { device: { privateKey: devicePrivate, publicKey: ka.x25519PublicKey(devicePrivate) }, hubStaticId: 1, hubPublicKey: hubKeys.publicKey.slice() };
      hubRecovery = { devicePublicKey: credential.device.publicKey.slice(), hubStaticId: 1 };
      inputsRecovery = {
        hub: { hubStaticId: 1, hubStaticPrivate: toHex(hubPrivate), hubStaticPublic: toHex(hubKeys.publicKey), devicePublicKey: toHex(credential.device.publicKey) },
        device: { hubStaticId: 1, deviceStaticPrivate: toHex(devicePrivate), deviceStaticPublic: toHex(credential.device.publicKey), hubStaticPublic: toHex(hubKeys.publicKey) },
      };
    }
    this.hub = new HubCore({
      aead: nodeAead,
      random: this.hubRandom,
      keyAgreement: ka,
      devices: [{ ...record, ...hubRecovery }],
      ...(hubKeys === undefined ? {} : { recovery: { hubKeys: [hubKeys], currentHubStaticId: hubKeys.id } }),
    });
    const keys: DeviceKeys = { mode: setup.mode, active: { id: setup.deviceActive.id, key: setup.deviceActive.key.slice() } };
    this.device = new DeviceCore({ deviceId: this.deviceIdBytes, keys, aead: nodeAead, random: this.deviceRandom, keyAgreement: ka, ...(credential === undefined ? {} : { credential }) });
    this.inputs = {
      deviceId: this.deviceId,
      hub: { mode: setup.mode, active: { id: setup.hubActive.id, key: toHex(setup.hubActive.key) }, ...(inputsRecovery === undefined ? {} : { recovery: inputsRecovery.hub }) },
      device: { mode: setup.mode, active: { id: setup.deviceActive.id, key: toHex(setup.deviceActive.key) }, ...(inputsRecovery === undefined ? {} : { recovery: inputsRecovery.device }) },
      hubRandomBase: setup.hubRandomBase,
      deviceRandomBase: setup.deviceRandomBase,
      keys: {},
    };
    this.#noteKeys();
  }

  // ---- Commands: each is one step ----

  /** The device opens a connection; the hub accepts it (HS1: CHALLENGE goes out). */
  connect(): this {
    this.#tick();
    this.#connection++;
    this.#queue = [];
    this.#deviceOpen = true;
    this.#hubOpen = true;
    this.#applyDevice(this.device.connected(this.#now));
    this.#applyHub(this.hub.opened(this.#connection, this.#now));
    this.steps.push({ kind: 'connect', connection: this.#connection, draws: this.#draws(), after: this.#views() });
    return this;
  }

  /** The hub's operator (or scheduler) starts a rotation (HK1). */
  rotate(): this {
    this.#tick();
    const result = this.hub.rotate(this.deviceId, this.#now);
    if (!result.ok) throw result.error;
    this.#applyHub(result.actions);
    this.steps.push({ kind: 'rotate', draws: this.#draws(), persisted: this.#takePersisted(), after: this.#views() });
    return this;
  }

  /** Application data from the device (§7). */
  deviceSends(text: string): this {
    this.#tick();
    const payload = new TextEncoder().encode(text);
    const result = this.device.send(payload, this.#now);
    if (!result.ok) throw result.error;
    this.#applyDevice(result.actions);
    this.steps.push({ kind: 'send', side: 'device', payload: toHex(payload), draws: this.#draws(), after: this.#views() });
    return this;
  }

  /** Delivers the next frame (or close) in flight. */
  deliver(expectedType?: string): this {
    const next = this.#queue.shift();
    if (next === undefined) throw new Error(`${this.setup.name}: nothing in flight`);
    this.#tick();
    if (next.close !== undefined) {
      if (expectedType !== undefined && expectedType !== 'close') throw new Error(`${this.setup.name}: expected ${expectedType}, got a close`);
      this.#closeOther(next.from, next.close);
      return this;
    }
    const bytes = next.bytes as Uint8Array;
    const type = this.#typeOf(bytes);
    if (expectedType !== undefined && type !== expectedType) throw new Error(`${this.setup.name}: expected ${expectedType}, got ${type}`);
    if (next.from === 'device') this.#applyHub(this.hub.receive(this.#connection, bytes, this.#now));
    else this.#applyDevice(this.device.receive(bytes, this.#now));
    this.#pushFrame(next.from, bytes, false);
    return this;
  }

  /** Delivers frames (and closes) until the link is idle. */
  deliverAll(): this {
    for (let i = 0; i < 100 && this.#queue.length > 0; i++) this.deliver();
    if (this.#queue.length > 0) throw new Error(`${this.setup.name}: the link does not go idle`);
    return this;
  }

  /** The next frame in flight is lost: the connection drops before it arrives (both ends hear the drop). */
  loseNextAndDrop(expectedType: string): this {
    const next = this.#queue.shift();
    if (next?.bytes === undefined) throw new Error(`${this.setup.name}: no frame in flight to lose`);
    const type = this.#typeOf(next.bytes);
    if (type !== expectedType) throw new Error(`${this.setup.name}: expected to lose ${expectedType}, got ${type}`);
    this.#tick();
    this.#pushFrame(next.from, next.bytes, true);
    this.#tick();
    this.#queue = [];
    if (this.#deviceOpen) this.#applyDevice(this.device.disconnected(this.#now));
    if (this.#hubOpen) this.#applyHub(this.hub.closed(this.#connection, this.#now));
    this.#deviceOpen = false;
    this.#hubOpen = false;
    this.steps.push({ kind: 'close', by: 'link', reason: 'the connection drops', after: this.#views() });
    return this;
  }

  transcript(): Transcript {
    if (this.#queue.length > 0) throw new Error(`${this.setup.name}: frames still in flight`);
    const keys: Record<string, string> = {};
    for (const [id, key] of [...this.keys.entries()].sort((a, b) => a[0] - b[0])) keys[String(id)] = key;
    return { name: this.setup.name, description: this.setup.description, inputs: { ...this.inputs, keys }, steps: this.steps };
  }

  // ---- The link and the hosts ----

  #tick(): void {
    this.#now += 10;
  }

  #typeOf(bytes: Uint8Array): string {
    return TYPE_NAMES.get(bytes[LENGTH_PREFIX_BYTES + 1] as number) ?? `0x${(bytes[LENGTH_PREFIX_BYTES + 1] as number).toString(16)}`;
  }

  #pushFrame(from: 'hub' | 'device', bytes: Uint8Array, lost: boolean): void {
    const header = decodeHeader(bytes.subarray(LENGTH_PREFIX_BYTES));
    const host = this.#host;
    this.#host = undefined;
    this.#noteKeys();
    this.steps.push({
      kind: 'frame',
      direction: from === 'hub' ? 'hub→device' : 'device→hub',
      type: this.#typeOf(bytes),
      keyId: header.keyId,
      sequence: header.sequence,
      share: header.share !== undefined,
      lost,
      wire: toHex(bytes),
      draws: this.#draws(),
      persisted: this.#takePersisted(),
      ...(host === undefined ? {} : { host }),
      after: this.#views(),
    });
  }

  /** The close of `from` reaches the other side (after the frames sent before it). */
  #closeOther(from: 'hub' | 'device', reason: string): void {
    if (from === 'hub' && this.#deviceOpen) {
      this.#deviceOpen = false;
      this.#applyDevice(this.device.disconnected(this.#now));
    }
    if (from === 'device' && this.#hubOpen) {
      this.#hubOpen = false;
      this.#applyHub(this.hub.closed(this.#connection, this.#now));
    }
    this.steps.push({ kind: 'close', by: from, reason, after: this.#views() });
  }

  #applyHub(actions: HubAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.#hubOpen && action.connection === this.#connection) this.#queue.push({ from: 'hub', connection: action.connection, bytes: action.bytes });
          break;
        case 'close':
          if (action.connection !== this.#connection || !this.#hubOpen) break;
          this.#hubOpen = false;
          this.#queue.push({ from: 'hub', connection: action.connection, close: action.error.code });
          break;
        case 'persist':
          this.#persisted.push(`hub: ${action.op.kind} ${'id' in action.op ? action.op.id : ''}`.trim());
          this.#applyHub(this.hub.persisted(this.deviceId, this.#now));
          break;
        case 'recoveryRequest':
          // The hub's host: policy `auto` (§12.7) accepts an authenticated recovery.
          this.#host = `recoveryRequest for N = ${action.newKeyId} answered ACCEPTED`;
          this.#applyHub(this.hub.decideRecovery(action.connection, { status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0 }, this.#now));
          break;
        case 'event':
          break;
      }
    }
  }

  #applyDevice(actions: DeviceAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.#deviceOpen) this.#queue.push({ from: 'device', connection: this.#connection, bytes: action.bytes });
          break;
        case 'close':
          if (!this.#deviceOpen) break;
          this.#deviceOpen = false;
          this.#queue.push({ from: 'device', connection: this.#connection, close: action.error.code });
          break;
        case 'persist':
          this.#persisted.push(`device: ${describePersistOp(action.op)}`);
          this.#applyDevice(this.device.persisted(this.#now));
          break;
        case 'event':
          break;
      }
    }
  }

  #draws(): Draws {
    return { hub: this.hubRandom.take(), device: this.deviceRandom.take() };
  }

  #takePersisted(): string[] {
    const persisted = this.#persisted;
    this.#persisted = [];
    return persisted;
  }

  /** Every key either side holds, by id (an id names one key: checked). */
  #noteKeys(): void {
    const d = this.device.keys;
    const h = this.hub.deviceKeys(this.deviceId);
    const slots = [d.active, d.future, h.active, h.pending?.key === undefined ? undefined : { id: h.pending.id, key: h.pending.key }];
    for (const slot of slots) {
      if (slot === undefined) continue;
      const hex = toHex(slot.key);
      const known = this.keys.get(slot.id);
      if (known !== undefined && known !== hex) throw new Error(`${this.setup.name}: key id ${slot.id} names two keys`);
      if (known === undefined) this.keys.set(slot.id, hex);
    }
  }

  #views(): Views {
    return { hub: hubView(this.hub, this.deviceId, this.#connection), device: deviceView(this.device) };
  }
}

/** What a hub core holds for the device and its connection `connection`. Exported for the replay test's comparison. */
export function hubView(hub: HubCore, deviceId: string, connection: number): HubView {
  const snapshot = hub.snapshot(deviceId) as { activeKeyId: number; pendingKeyId?: number; connections: { id: number; state: string; sequenceIn: number; sequenceOut: number }[] };
  const conn = snapshot.connections.find((c) => c.id === connection);
  return {
    connection: conn?.state ?? 'closed',
    activeKeyId: snapshot.activeKeyId,
    pendingKeyId: snapshot.pendingKeyId ?? null,
    sequenceIn: conn?.sequenceIn ?? 0,
    sequenceOut: conn?.sequenceOut ?? 0,
  };
}

export function deviceView(device: DeviceCore): DeviceView {
  const s = device.snapshot() as { session: string; mode: string; activeKeyId: number; futureKeyId?: number; sequenceIn: number; sequenceOut: number };
  return { session: s.session, mode: s.mode, activeKeyId: s.activeKeyId, futureKeyId: s.futureKeyId ?? null, sequenceIn: s.sequenceIn, sequenceOut: s.sequenceOut };
}

/** Key id 1 of the transcripts: bytes 0x00…0x3f, as in the protocol vectors. */
const KEY1 = bytesOf(0x00, 64);
/** Key id 2: bytes 0x40…0x7f. */
const KEY2 = bytesOf(0x40, 64);

export function generateTranscripts(): Transcript[] {
  const out: Transcript[] = [];
  {
    const rig = new TranscriptRig({
      name: 'classic rotation',
      description: 'A session, a classic rotation from key 1 to key 2 (REKEY under 1, REKEY_ACK under 2, CONFIRM under 2: HK1, DK1, HK5, DK5), then application data under key 2.',
      mode: 'classic',
      hubActive: { id: 1, key: KEY1 },
      deviceActive: { id: 1, key: KEY1 },
      hubRandomBase: 0x10,
      deviceRandomBase: 0x90,
    });
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('WELCOME');
    rig.rotate().deliver('REKEY').deliver('REKEY_ACK').deliver('CONFIRM');
    rig.deviceSends('after the rotation').deliver('DATA').deliver('DATA_ACK');
    out.push(rig.transcript());
  }
  {
    const rig = new TranscriptRig({
      name: 'dh rotation',
      description: 'A session, a dh rotation from key 1 to key 2 (§11: REKEY_DH under 1 with the hub share H; REKEY_ACK under the derived key 2 with the device share D in the header; CONFIRM under 2: HK1 (dh), DK9, HK8, DK5).',
      mode: 'dh',
      hubActive: { id: 1, key: KEY1 },
      deviceActive: { id: 1, key: KEY1 },
      hubRandomBase: 0x20,
      deviceRandomBase: 0xa0,
    });
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('WELCOME');
    rig.rotate().deliver('REKEY_DH').deliver('REKEY_ACK').deliver('CONFIRM');
    out.push(rig.transcript());
  }
  for (const mode of ['classic', 'dh'] as const) {
    const rig = new TranscriptRig({
      name: `reconnect mid-rotation (${mode})`,
      description:
        `The REKEY_ACK of a ${mode} rotation is lost and the connection drops: the hub holds (1, P 2), the device (1, F 2). On the new connection the device seals its HELLO under its future key 2 ` +
        `(body: active 1, future 2${mode === 'dh' ? '; with its share D, from which the hub derives key 2, HK8' : ''}); the hub promotes on it (HK5) and answers WELCOME under 2, which promotes the device (DK5).`,
      mode,
      hubActive: { id: 1, key: KEY1 },
      deviceActive: { id: 1, key: KEY1 },
      hubRandomBase: mode === 'classic' ? 0x30 : 0x40,
      deviceRandomBase: mode === 'classic' ? 0xb0 : 0xc0,
    });
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('WELCOME');
    rig.rotate().deliver(mode === 'classic' ? 'REKEY' : 'REKEY_DH').loseNextAndDrop('REKEY_ACK');
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('WELCOME');
    out.push(rig.transcript());
  }
  {
    const rig = new TranscriptRig({
      name: 'recovery',
      description:
        'The hub was restored to a backup holding key 1; the device holds key 2 (a rotation the backup lost). The HELLO under 2 fails (UNKNOWN_KEY_ID), the hub answers NO_KEY (HS9); the recovery handshake (§12.3) ' +
        'with the static keys of the recovery vectors runs RECOVER_INIT, RECOVER_REPLY (N = 3), RECOVER_FINISH; the host accepts; the hub persists pending 3 (HK9) and sends RECOVER_RESULT ACCEPTED, then closes; ' +
        'the device persists future 3 (DK14) and reconnects; its HELLO under 3 promotes the hub (HK10), the WELCOME under 3 the device (DK5).',
      mode: 'classic',
      hubActive: { id: 1, key: KEY1 },
      deviceActive: { id: 2, key: KEY2 },
      recovery: true,
      hubRandomBase: 0x50,
      deviceRandomBase: 0xd0,
    });
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('NO_KEY').deliver('RECOVER_INIT').deliver('RECOVER_REPLY').deliver('RECOVER_FINISH').deliver('RECOVER_RESULT');
    rig.deliverAll();
    rig.connect().deliver('CHALLENGE').deliver('HELLO').deliver('WELCOME');
    out.push(rig.transcript());
  }
  return out;
}

export interface TranscriptsFile {
  readonly version: number;
  readonly description: string;
  /** What every transcript shares; each transcript's own inputs follow it. */
  readonly inputs: Record<string, unknown>;
  readonly transcripts: readonly Transcript[];
}

export function transcriptsFile(): TranscriptsFile {
  return {
    version: TRANSCRIPTS_VERSION,
    description:
      'Lockstep protocol 1.1 transcripts (docs/PROTOCOL.md Appendix A), generated by `npm run vectors` (tools/vectors/transcripts.ts) by driving the reference hub and device cores. ' +
      'Each transcript: inputs (device id, both sides\' initial keys and recovery credentials, the bases of the two random sources, every key by id) and steps. ' +
      'Step kinds: connect (the device connects, the hub sends CHALLENGE), rotate (the hub starts a rotation), send (application data queued), frame (one frame delivered to the other side, or lost), close (a side closed, or the link dropped). ' +
      'Every step states what both sides hold afterwards (after.hub: connection state, active/pending key ids, next expected and next sent seq; after.device: session, mode, active/future key ids, seqs) and the random bytes each side drew while handling it. ' +
      'Random draws follow a fixed pattern: draw k (from 0) of n bytes is byte i = (base + 0x25·k + 7·i) mod 256. Wire bytes include the u16 length prefix.',
    inputs: {
      deviceId: toHex(Uint8Array.from([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77])),
      randomRule: 'each core has its own source; draw k (from 0) of n bytes is byte i = (base + 0x25·k + 7·i) mod 256; each step lists the draws (hex) of each side made since the previous step, in order (the first step\'s include those made when the cores were built: their stream ids); all of a side\'s draws in step order are its whole random input',
      clock: 'the cores\' clock starts at 1000 ms and advances 10 ms per step; no timer fires',
      writes: 'every persist a core asks for completes at once (the step states what was made durable)',
      recoveryPolicy: 'the hub\'s host answers every recoveryRequest ACCEPTED (policy auto, §12.7)',
      keyIds: 'each transcript\'s inputs.keys holds every key by id that seals one of its frames (an id names one key within a transcript, not across them); the initial keys are bytes 0x00…0x3f (key 1) and, for the recovery\'s device, 0x40…0x7f (key 2)',
    },
    transcripts: generateTranscripts(),
  };
}

function describeViews(views: Views): string {
  const h = views.hub;
  const d = views.device;
  const hubSlots = h.pendingKeyId === null ? `(${h.activeKeyId})` : `(${h.activeKeyId}, P ${h.pendingKeyId})`;
  const deviceSlots = d.futureKeyId === null ? `(${d.activeKeyId})` : `(${d.activeKeyId}, F ${d.futureKeyId})`;
  return `hub ${hubSlots} ${h.connection} in ${h.sequenceIn}/out ${h.sequenceOut}; device ${deviceSlots} ${d.session} in ${d.sequenceIn}/out ${d.sequenceOut}`;
}

/** Appendix A: each transcript as a numbered list of steps with what both sides hold afterwards. */
export function transcriptsMarkdown(file: TranscriptsFile): string {
  const lines = [
    '### Transcripts',
    '',
    `[vectors/transcripts.json](vectors/transcripts.json): ${file.transcripts.length} whole conversations of the reference hub and device cores, each step with its wire bytes and what both sides hold afterwards ` +
      '(slots as (active) / (active, P pending) / (active, F future), connection or session state, next seq expected in / next seq sent out). ' +
      'Inputs (keys, static keys, the random draws of every step: nonces, IVs, keys, ephemeral private keys) are in the file; the draws follow a fixed pattern (draw k of n bytes: byte i = (base + 0x25·k + 7·i) mod 256).',
    '',
  ];
  for (const t of file.transcripts) {
    lines.push(`#### ${t.name}`, '', t.description, '');
    t.steps.forEach((step, index) => {
      let what: string;
      switch (step.kind) {
        case 'connect':
          what = `connection ${step.connection} opens`;
          break;
        case 'rotate':
          what = `the hub rotates (${step.persisted.join(', ')})`;
          break;
        case 'send':
          what = `the ${step.side} queues ${step.payload.length / 2} bytes of data`;
          break;
        case 'close':
          what = step.by === 'link' ? 'the connection drops' : `the ${step.by} closes (${step.reason})`;
          break;
        case 'frame':
          what = `${step.type} ${step.direction}, key id ${step.keyId}, seq ${step.sequence}${step.share ? ', with a key share' : ''}${step.lost ? ' — **lost**' : ''}${step.persisted.length > 0 ? ` (${step.persisted.join(', ')})` : ''}${step.host === undefined ? '' : ` (${step.host})`}`;
          break;
      }
      lines.push(`${index + 1}. ${what} → ${describeViews(step.after)}`);
    });
    lines.push('');
  }
  return lines.join('\n');
}
