/**
 * The hub's protocol state machine (docs/PROTOCOL.md §8.2), sans-IO, for
 * many devices and connections.
 *
 * Call order: `opened(conn)` when a transport connection is accepted, then
 * `receive(conn, bytes)` / `tick` / `send` / `rotate`, then `closed(conn)`.
 * After every `persist` action the host makes the database change durable
 * and calls `persisted(deviceId)` (or `persistFailed`). `now` is a
 * non-decreasing millisecond count; randomness comes from the injected
 * source only.
 *
 * Input is never refused: `receive` takes any bytes. While a persist of the
 * connection's device is outstanding the core parses nothing for it and
 * keeps the bytes in its own per-connection buffer (at most
 * RECEIVE_BUFFER_BYTES; past it the connection is closed with BUFFER_FULL);
 * `wantsInput(conn)` is false meanwhile so the host can pause the socket,
 * and `persisted` parses what was kept. `send` and `rotate` answer at the
 * call (the message id the core assigned, or a typed error), so no host
 * keeps a copy of the core's queues or predicts its ids.
 *
 * Dispatch goes through modules/hub/table.ts, whose row ids are those of
 * docs/PROTOCOL.md §8.2 (HS…, HK…).
 *
 * Key slots per device (docs/PROTOCOL.md §5): `active` and at most one
 * `pending`. They change in exactly three places: #pendingStored (HK1, rule
 * H1: pending is durable before it is first offered, and never replaced
 * while unconfirmed), #pendingPromoted (HK5, rule H2: promotion on the first
 * device frame that authenticates under the pending key, durable before
 * anything is sealed under it, then confirmed under the new key),
 * #recoveredStored (HK9, §12: an authenticated, accepted recovery replaces
 * the pending slot by (N, K_N), durable before RECOVER_RESULT ACCEPTED),
 * and #reloaded (HK7: after a failed write the database holds the state
 * before or after it, and the core adopts whichever it is).
 *
 * Recovery (docs/PROTOCOL.md §12), when HubConfig.recovery is set: a HELLO
 * that fails at §4 step 3, 4 or 5 is answered by NO_KEY (HS9) — the same
 * for an unknown device, so it tells an impostor nothing — and the
 * connection may then run one recovery handshake (HS10–HS13), whose
 * cryptography is modules/crypto/recovery.ts. Nothing is stored, charged or
 * requested before tag3 authenticates the device (rule R1); the host's
 * policy decides (recoveryRequest → decideRecovery); an accepted key is
 * durable before RECOVER_RESULT ACCEPTED leaves (R2); N is above every id
 * either side holds, rechecked when the decision is applied (R3). Memory:
 * at most one handshake state per connection (the host bounds the number of
 * unauthenticated connections), and at most one connection per device past
 * tag3. Without HubConfig.recovery the core behaves exactly as before (HS3).
 */
import { bytesEqual, fromHex, toHex } from '../bytes';
import { drawEphemeral, type EphemeralKeyPair } from '../crypto/dh-rekey';
import {
  checkMatches,
  hubRecoveryReply,
  hubVerifyRecoverInit,
  parseRecoverInit,
  recoveryResultFrame,
  verifyRecoveryFinish,
  type RecoveryClaim,
  type RecoverySecrets,
  type StaticKeyPair,
} from '../crypto/recovery';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../crypto/primitives';
import { asLockstepError, LockstepError } from '../errors';
import { checkSlot, copySlot, type KeySlot, type RekeyMode } from '../platform/keys';
import {
  DEVICE_ID_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  IV_BYTES,
  KEY_BYTES,
  MAX_KEY_ID,
  MAX_REJECTED_FRAMES,
  MAX_SEQUENCE,
  MessageType,
  NO_KEY_ID,
  NONCE_BYTES,
  RECEIVE_BUFFER_BYTES,
  KEY_SHARE_BYTES,
  RECOVER_INIT_FRAME_BYTES,
  RECOVERY_RETRY_MAX_MS,
  RecoveryStatus,
  REKEY_RETRY_INITIAL_MS,
  REKEY_RETRY_MAX_MS,
  STREAM_ID_BYTES,
  WireError,
} from '../protocol/constants';
import { checkSealedShape, encodeChallenge, openFrame, sealFrame } from '../protocol/frame';
import { FrameReader, withLengthPrefix } from '../protocol/framing';
import { decodeHeader, encodeHeader, type Header } from '../protocol/header';
import type { Message } from '../protocol/messages';
import { HeldInput } from '../protocol/held-input';
import { AppChannel, type EnqueueResult } from '../session/app-channel';
import { backoffDelayMs } from '../session/backoff';
import { derivePendingKey } from './pending-key';
import type { ConnectionId, HubAction, HubEvent, HubPersistOp, HubRotateResult, HubSendResult, RecoveryDecision, RecoveryNeededReason } from './actions';
import {
  type HubConnectionEvent,
  type HubConnectionRow,
  type HubConnectionState,
  hubConnectionRow,
  hubFrameEvent,
  hubRecoveryRow,
  hubRotateRow,
  requireHubConnectionRow,
} from './table';

export type { ConnectionId, HubAction, HubEvent, HubPersistOp, HubRotateResult, HubSendResult, RecoveryDecision, RecoveryNeededReason } from './actions';

/**
 * A pending key (rule H1). Classic: its bytes. dh (§11): the hub's ephemeral
 * X25519 pair for that id; the key itself exists only once a device frame
 * brings the device's share (HK8).
 */
export type HubPendingSlot =
  | { readonly id: number; readonly key: Uint8Array; readonly dh?: undefined }
  | { readonly id: number; readonly key?: undefined; readonly dh: EphemeralKeyPair };

/** A device as the hub's database holds it. */
export interface HubDeviceRecord {
  /** 16 lowercase hex digits (8 bytes). */
  readonly deviceId: string;
  /** How this device's keys are rotated (§11.6); only ever moves from classic to dh. */
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly pending?: HubPendingSlot;
  /** §12.6: the device's static X25519 public key S_d (32 bytes); absent = not enrolled (no recovery for this device). */
  readonly devicePublicKey?: Uint8Array;
  /** §12.6: the id of the hub static key this device knows. */
  readonly hubStaticId?: number;
  /** §12.6, HE1: 'armed' by an operator; 'ready' once a dh-derived key was promoted after arming (ENROL may be sent under it). */
  readonly enrolment?: 'armed' | 'ready';
}

/** One of the hub's static X25519 pairs (§12.6), named by its hub static id (u32). */
export interface HubStaticKey extends StaticKeyPair {
  readonly id: number;
}

/** Recovery (§12): the hub's static keys (outside its database) and the one given to devices from now on (ENROL). Absent = recovery off. */
export interface HubRecoveryConfig {
  readonly hubKeys: readonly HubStaticKey[];
  readonly currentHubStaticId: number;
}

/** Per-connection options of `opened` (§12.7). */
export interface HubOpenOptions {
  /** The host's per-source limit: false → a failing HELLO is closed as in HS3, without NO_KEY. Default true. */
  readonly recoveryAllowed?: boolean;
}

/** A copy whose bytes the caller owns. */
export function copyPending(pending: HubPendingSlot): HubPendingSlot {
  if (pending.dh === undefined) return { id: pending.id, key: pending.key.slice() };
  return { id: pending.id, dh: { privateKey: pending.dh.privateKey.slice(), publicKey: pending.dh.publicKey.slice() } };
}

function wipePending(pending: HubPendingSlot | undefined): void {
  pending?.key?.fill(0);
  pending?.dh?.privateKey.fill(0);
}

function checkPending(pending: HubPendingSlot, active: KeySlot): void {
  if (pending.dh === undefined) checkSlot(pending);
  else if (!Number.isInteger(pending.id) || pending.id > 0xffffffff || pending.dh.privateKey.length !== 32 || pending.dh.publicKey.length !== 32) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a dh pending slot has a u32 id and a 32-byte X25519 pair');
  }
  if (pending.id <= active.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'pending id must exceed active id');
}

export interface HubDeviceState {
  readonly deviceId: string;
  readonly activeKeyId: number;
  readonly pendingKeyId: number | undefined;
  readonly mode: RekeyMode;
  readonly connected: boolean;
  readonly persisting: boolean;
  readonly outboxLength: number;
  /** A rotation asked for while another was in flight, started once that one is confirmed (HK2). */
  readonly rotationQueued: boolean;
  /** §12.6: the hub holds the device's static key S_d. */
  readonly enrolled: boolean;
  readonly enrolment: 'armed' | 'ready' | undefined;
  /** A connection of this device is past tag3 (deciding, or writing an accepted key). */
  readonly recovering: boolean;
}

export interface HubTiming {
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly rekeyRetryInitialMs: number;
  readonly rekeyRetryMaxMs: number;
}

export interface HubConfig {
  readonly aead: Aead;
  readonly random: RandomSource;
  /** X25519 and HKDF for dh-mode devices (§11); required once any device is in the dh mode. */
  readonly keyAgreement?: KeyAgreementPrimitives;
  readonly devices?: readonly HubDeviceRecord[];
  readonly timing?: Partial<HubTiming>;
  /** Bytes kept per connection while its device's persist is outstanding; default RECEIVE_BUFFER_BYTES. */
  readonly receiveBufferBytes?: number;
  /** Recovery after a rollback (§12); needs `keyAgreement`. Absent = recovery off: a failing HELLO is closed (HS3), no NO_KEY. */
  readonly recovery?: HubRecoveryConfig;
}

interface DeviceEntry {
  readonly id: string;
  readonly idBytes: Uint8Array;
  mode: RekeyMode;
  active: KeySlot;
  pending: HubPendingSlot | undefined;
  connection: ConnectionId | undefined;
  readonly channel: AppChannel;
  persisting: HubPersistOp | undefined;
  /** The connection whose input stopped on this device's persist (resumed by persisted()). */
  blocked: ConnectionId | undefined;
  /** The connection and authenticated message that wait for a promotion to persist (HK5). */
  deferred: { connection: ConnectionId; message: Message; row: HubConnectionRow } | undefined;
  /** HK2: one rotation to start once the pending key is confirmed. */
  rotationQueued: boolean;
  offerAttempt: number;
  nextOfferAt: number;
  /** §12.6: S_d, the hub static id the device knows, the enrolment state. */
  devicePublicKey: Uint8Array | undefined;
  hubStaticId: number | undefined;
  enrolment: 'armed' | 'ready' | undefined;
  /** recoveryNeeded was reported in this episode (reset by an established session). */
  recoveryReported: boolean;
  /** The connection of this device past tag3 (at most one: a newer one supersedes it). */
  recoveryConnection: ConnectionId | undefined;
  /** That connection's ACCEPTED waits for another write of this device to be durable. */
  recoveryWaiting: boolean;
}

/**
 * One recovery handshake (§12.3), at most one per connection. Holds no
 * ephemeral private key and no k1 (hubRecoveryReply wipes both); the MAC key
 * m and K_N are wiped when the connection ends.
 */
interface RecoveryHandshake {
  /** The device id the HELLO named (the device is not authenticated before tag3). */
  readonly deviceIdBytes: Uint8Array;
  readonly helloKeyId: number;
  /** The HELLO's KEY_SHARE, if any (public): lets R4 test a dh pending key (see #checkMatchesHeld). */
  readonly helloShare: Uint8Array | undefined;
  /** init: NO_KEY sent; finish: RECOVER_REPLY sent; asked: recoveryRequest out; accepted: ACCEPTED waits for another write; storing: its own write is out. */
  phase: 'init' | 'finish' | 'asked' | 'accepted' | 'storing';
  /** The storeRecovered op of this handshake, while it is outstanding (persisted() matches it by identity). */
  storing: HubPersistOp | undefined;
  device: DeviceEntry | undefined;
  claim: RecoveryClaim | undefined;
  secrets: RecoverySecrets | undefined;
  /** N = max(A, P, claimed active, claimed future) + 1 at HS10; above MAX_KEY_ID when the ids are used up. */
  newKeyId: number;
}

interface Connection {
  readonly id: ConnectionId;
  state: HubConnectionState;
  readonly hubNonce: Uint8Array;
  readonly reader: FrameReader;
  device: DeviceEntry | undefined;
  sequenceIn: number;
  sequenceOut: number;
  rejectedFrames: number;
  readonly openedAt: number;
  lastReceivedAt: number;
  /** Received bytes kept unparsed while the device's persist is outstanding (the core's own copy). */
  held: HeldInput | undefined;
  /** The host's per-source limit for this connection (§12.7). */
  readonly recoveryAllowed: boolean;
  /** When the current handshake stage began (CHALLENGE, NO_KEY, RECOVER_REPLY): its timeout counts from here. */
  stageStartedAt: number;
  recovery: RecoveryHandshake | undefined;
  /** HE1: the hub static id of the ENROL sent in this session, if one was. */
  enrolOffered: number | undefined;
}

export class HubCore {
  readonly #aead: Aead;
  readonly #keyAgreement: KeyAgreementPrimitives | undefined;
  readonly #random: RandomSource;
  readonly #timing: HubTiming;
  readonly #devices = new Map<string, DeviceEntry>();
  readonly #connections = new Map<ConnectionId, Connection>();
  readonly #receiveBufferBytes: number;
  /** The hub's static keys (its own copies), by id; undefined = recovery off. */
  readonly #hubKeys: ReadonlyMap<number, HubStaticKey> | undefined;
  readonly #currentHubKey: HubStaticKey | undefined;

  constructor(config: HubConfig) {
    this.#aead = config.aead;
    this.#keyAgreement = config.keyAgreement;
    if (config.recovery !== undefined) {
      const { keys, current } = checkRecoveryConfig(config.recovery, this.#requireKeyAgreement());
      this.#hubKeys = keys;
      this.#currentHubKey = current;
    }
    this.#receiveBufferBytes = config.receiveBufferBytes ?? RECEIVE_BUFFER_BYTES;
    this.#random = config.random;
    this.#timing = {
      handshakeTimeoutMs: config.timing?.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: config.timing?.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      rekeyRetryInitialMs: config.timing?.rekeyRetryInitialMs ?? REKEY_RETRY_INITIAL_MS,
      rekeyRetryMaxMs: config.timing?.rekeyRetryMaxMs ?? REKEY_RETRY_MAX_MS,
    };
    for (const record of config.devices ?? []) this.addDevice(record);
  }

  // ---- Devices ----

  /** Registers a provisioned device (already in the host's database). */
  addDevice(record: HubDeviceRecord): void {
    const idBytes = parseDeviceId(record.deviceId);
    this.#checkRecord(record);
    const id = toHex(idBytes);
    if (this.#devices.has(id)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${id} already registered`);
    this.#devices.set(id, {
      id,
      idBytes,
      mode: record.mode,
      active: copySlot(record.active),
      pending: record.pending === undefined ? undefined : copyPending(record.pending),
      connection: undefined,
      channel: new AppChannel(this.#randomBytes(STREAM_ID_BYTES)),
      persisting: undefined,
      blocked: undefined,
      deferred: undefined,
      rotationQueued: false,
      offerAttempt: 0,
      nextOfferAt: 0,
      devicePublicKey: record.devicePublicKey?.slice(),
      hubStaticId: record.hubStaticId,
      enrolment: record.enrolment,
      recoveryReported: false,
      recoveryConnection: undefined,
      recoveryWaiting: false,
    });
  }

  deviceState(deviceId: string): HubDeviceState {
    const device = this.#device(deviceId);
    return {
      deviceId: device.id,
      activeKeyId: device.active.id,
      pendingKeyId: device.pending?.id,
      mode: device.mode,
      connected: device.connection !== undefined,
      persisting: device.persisting !== undefined,
      outboxLength: device.channel.outboxLength,
      rotationQueued: device.rotationQueued,
      enrolled: device.devicePublicKey !== undefined,
      enrolment: device.enrolment,
      recovering: device.recoveryConnection !== undefined,
    };
  }

  /** A copy of the device's whole record as the core holds it (bytes owned by the caller). */
  deviceRecord(deviceId: string): HubDeviceRecord {
    const device = this.#device(deviceId);
    return {
      deviceId: device.id,
      mode: device.mode,
      active: copySlot(device.active),
      ...(device.pending === undefined ? {} : { pending: copyPending(device.pending) }),
      ...(device.devicePublicKey === undefined ? {} : { devicePublicKey: device.devicePublicKey.slice() }),
      ...(device.hubStaticId === undefined ? {} : { hubStaticId: device.hubStaticId }),
      ...(device.enrolment === undefined ? {} : { enrolment: device.enrolment }),
    };
  }

  /** Key ids under which the hub accepts this device's frames (safety invariant S1). */
  acceptedKeyIds(deviceId: string): number[] {
    const device = this.#device(deviceId);
    return device.pending === undefined ? [device.active.id] : [device.active.id, device.pending.id];
  }

  /** Copies of the device's key slots, for the host's checks and traces. */
  deviceKeys(deviceId: string): { mode: RekeyMode; active: KeySlot; pending?: HubPendingSlot } {
    const device = this.#device(deviceId);
    const active = copySlot(device.active);
    return device.pending === undefined ? { mode: device.mode, active } : { mode: device.mode, active, pending: copyPending(device.pending) };
  }

  /**
   * §11.6: the device's mode moves from classic to dh (the host has made the
   * change durable first). It applies from the next rotation: a pending key
   * keeps the mode it was offered in (rule H1). Towards classic: refused.
   */
  setMode(deviceId: string, mode: RekeyMode): void {
    const device = this.#device(deviceId);
    if (mode === device.mode) return;
    if (mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${device.id}: the rekey mode never moves back from dh`);
    if (this.#keyAgreement === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the dh mode needs keyAgreement primitives');
    device.mode = mode;
  }

  /**
   * Every piece of protocol state of one device and its connection, as
   * plain data (rejection counters excluded: they bound abuse).
   */
  snapshot(deviceId: string): Record<string, unknown> {
    const device = this.#device(deviceId);
    const connections = [...this.#connections.values()]
      .filter((conn) => conn.device === device || conn.device === undefined)
      .map((conn) => ({
        id: conn.id,
        state: conn.state,
        hubNonce: toHex(conn.hubNonce),
        sequenceIn: conn.sequenceIn,
        sequenceOut: conn.sequenceOut,
        lastReceivedAt: conn.lastReceivedAt,
        readerIdle: conn.reader.idle,
        heldInput: conn.held?.length ?? 0,
        // Only present while a recovery runs, so 1.0 snapshots are unchanged.
        ...(conn.recovery === undefined ? {} : { recovery: { phase: conn.recovery.phase, newKeyId: conn.recovery.newKeyId, stageStartedAt: conn.stageStartedAt } }),
        ...(conn.enrolOffered === undefined ? {} : { enrolOffered: conn.enrolOffered }),
      }));
    return {
      mode: device.mode,
      activeKeyId: device.active.id,
      activeKey: toHex(device.active.key),
      pendingKeyId: device.pending?.id,
      pendingKey: device.pending === undefined ? undefined : device.pending.dh === undefined ? toHex(device.pending.key) : `dh:${toHex(device.pending.dh.publicKey)}`,
      connection: device.connection,
      persisting: device.persisting?.kind,
      offerAttempt: device.offerAttempt,
      rotationQueued: device.rotationQueued,
      nextOfferAt: device.nextOfferAt,
      channel: device.channel.snapshot(),
      connections,
      ...(device.devicePublicKey === undefined ? {} : { devicePublicKey: toHex(device.devicePublicKey), hubStaticId: device.hubStaticId }),
      ...(device.enrolment === undefined ? {} : { enrolment: device.enrolment }),
      ...(device.recoveryConnection === undefined ? {} : { recoveryConnection: device.recoveryConnection, recoveryWaiting: device.recoveryWaiting }),
    };
  }

  get deviceIds(): string[] {
    return [...this.#devices.keys()];
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  // ---- Commands ----

  /**
   * Starts a rotation (HK1): a fresh key with the next id is persisted as
   * pending (rule H1) and offered once durable. With a pending key already
   * in flight, or a write of the device outstanding, nothing is replaced
   * (HK2): the rotation is remembered (once) and starts when that one is
   * confirmed. Refused with LOCAL_KEY_IDS_EXHAUSTED at the last id.
   */
  rotate(deviceId: string, _now: number): HubRotateResult {
    const device = this.#device(deviceId);
    if (device.active.id >= MAX_KEY_ID || device.pending?.id === MAX_KEY_ID) {
      return { ok: false, error: new LockstepError('LOCAL_KEY_IDS_EXHAUSTED', `device ${device.id} must be re-provisioned`) };
    }
    const row = hubRotateRow(device.pending?.id, device.persisting !== undefined);
    if (row.action === 'queueAfterConfirm') {
      device.rotationQueued = true;
      return { ok: true, outcome: 'queued', actions: [] };
    }
    const actions: HubAction[] = [];
    this.#storePending(device, actions);
    return { ok: true, outcome: 'started', actions };
  }

  /**
   * Application data to a device: the id the core assigned (a later
   * `delivered` event names it) and the actions to carry out now, or a typed
   * error with nothing queued (LOCAL_PAYLOAD_TOO_LARGE, LOCAL_OUTBOX_FULL).
   * While a write of the device is outstanding the message waits in the
   * outbox and goes out once it is durable (docs/VERIFICATION.md finding F2).
   * Equal to `enqueue` then `flush`.
   */
  send(deviceId: string, payload: Uint8Array, now: number): HubSendResult {
    const queued = this.enqueue(deviceId, payload);
    if (queued.error !== undefined) return { ok: false, error: queued.error };
    return { ok: true, messageId: queued.messageId, actions: this.flush(deviceId, now) };
  }

  /**
   * Queues application data without sealing anything yet: for a host that is
   * still carrying out earlier actions (frames must leave in the order they
   * were sealed), which then calls `flush` in turn.
   */
  enqueue(deviceId: string, payload: Uint8Array): EnqueueResult {
    return this.#device(deviceId).channel.enqueue(payload);
  }

  /** Seals what the device's outbox has not sent in this session (when it has a session and no write is outstanding). */
  flush(deviceId: string, now: number): HubAction[] {
    const device = this.#device(deviceId);
    const out: HubAction[] = [];
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    return out;
  }

  // ---- Connection inputs ----

  /** HS1. `options.recoveryAllowed` is the host's per-source limit (§12.7; default true). */
  opened(connection: ConnectionId, now: number, options?: HubOpenOptions): HubAction[] {
    if (this.#connections.has(connection)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `connection ${connection} already open`);
    const conn: Connection = {
      id: connection,
      state: 'awaitingHello',
      hubNonce: this.#randomBytes(NONCE_BYTES),
      reader: new FrameReader(),
      device: undefined,
      sequenceIn: 0,
      sequenceOut: 1,
      rejectedFrames: 0,
      openedAt: now,
      lastReceivedAt: now,
      held: undefined,
      recoveryAllowed: options?.recoveryAllowed ?? true,
      stageStartedAt: now,
      recovery: undefined,
      enrolOffered: undefined,
    };
    this.#connections.set(connection, conn);
    return [{ type: 'transmit', connection, bytes: withLengthPrefix(encodeChallenge(conn.hubNonce)) }];
  }

  closed(connection: ConnectionId, _now: number): HubAction[] {
    const conn = this.#connections.get(connection);
    const out: HubAction[] = [];
    if (conn !== undefined) this.#forget(conn, out);
    return out;
  }

  /**
   * Bytes from a connection, any amount: parsed at once, or kept (bounded)
   * while the device's persist is outstanding. Never refused by an exception
   * (a connection the core no longer knows is LOCAL_NOT_READY: misuse).
   */
  receive(connection: ConnectionId, bytes: Uint8Array, now: number): HubAction[] {
    const conn = this.#connections.get(connection);
    if (conn === undefined) throw new LockstepError('LOCAL_NOT_READY', `connection ${connection} is not open`);
    const out: HubAction[] = [];
    if (conn.held !== undefined || conn.device?.persisting !== undefined) this.#hold(conn, bytes, out);
    else this.#parse(conn, bytes, now, out);
    return out;
  }

  /** Bytes of this connection the core keeps unparsed (while its device's persist is outstanding): for statistics and pausing. */
  heldInputBytes(connection: ConnectionId): number {
    return this.#connections.get(connection)?.held?.length ?? 0;
  }

  /** False while the connection's device has a persist outstanding (its input is kept, not parsed), or once it is closed. */
  wantsInput(connection: ConnectionId): boolean {
    const conn = this.#connections.get(connection);
    return conn !== undefined && conn.device?.persisting === undefined && conn.held === undefined;
  }

  persisted(deviceId: string, now: number): HubAction[] {
    const device = this.#device(deviceId);
    const op = device.persisting;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', `no persist outstanding for ${device.id}`);
    device.persisting = undefined;
    const out: HubAction[] = [];
    switch (op.kind) {
      case 'storePending':
        this.#pendingStored(device, op, now, out);
        break;
      case 'promote':
        this.#pendingPromoted(device, op, now, out);
        break;
      case 'storeRecovered':
        this.#recoveredStored(device, op, now, out);
        break;
      case 'storeDeviceStatic':
        this.#deviceStaticStored(device, op, out);
        break;
    }
    // App data queued by send() while the write was outstanding goes out now (docs/VERIFICATION.md finding F2).
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    // An ACCEPTED recovery that waited for this write goes first (its R3 recheck sees the write's result).
    if (device.recoveryWaiting && device.persisting === undefined) {
      device.recoveryWaiting = false;
      const conn = this.#recoveryConnectionOf(device);
      if (conn?.recovery?.phase === 'accepted') this.#applyAccepted(conn, device, now, out);
    }
    // HK2: a rotation asked for meanwhile starts once no pending key is in flight.
    if (device.rotationQueued && device.pending === undefined && device.persisting === undefined) {
      device.rotationQueued = false;
      this.#storePending(device, out);
    }
    // Resume the connection that stopped on this device's persist (O(1): no scan of all connections).
    if (device.persisting === undefined) {
      const blocked = device.blocked === undefined ? undefined : this.#connections.get(device.blocked);
      device.blocked = undefined;
      if (blocked !== undefined) this.#resumeHeld(blocked, now, out);
    }
    return out;
  }

  /**
   * HK7: the database did not confirm the write. Its state is before or
   * after; the host must reload the device's record and call `reloadDevice`.
   * Connections of the device are closed meanwhile.
   */
  persistFailed(deviceId: string, error: LockstepError): HubAction[] {
    const device = this.#device(deviceId);
    if (device.persisting === undefined) throw new LockstepError('LOCAL_NOT_READY', `no persist outstanding for ${device.id}`);
    device.persisting = undefined;
    device.deferred = undefined;
    device.blocked = undefined;
    device.recoveryWaiting = false;
    const out: HubAction[] = [];
    for (const conn of [...this.#connections.values()]) {
      if (conn.device === device || conn.recovery?.device === device) this.#close(conn, error, out);
    }
    return out;
  }

  /** HK7, second half: adopts the device's slots as the database holds them (after persistFailed). */
  reloadDevice(record: HubDeviceRecord): void {
    const device = this.#device(record.deviceId);
    if (device.persisting !== undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'reloadDevice() with a persist outstanding');
    this.#checkRecord(record);
    this.#reloaded(device, record);
  }

  /**
   * Forgets a device for good (revocation, docs/HUB.md §12): its connections
   * are closed with `error`, its key slots zeroed, a queued rotation and a
   * deferred reply dropped. A later HELLO naming it is refused as any unknown
   * device's (UNKNOWN_DEVICE). A persist of it still outstanding is the
   * host's to discard (`hasDevice` is false from now on).
   */
  removeDevice(deviceId: string, error: LockstepError): HubAction[] {
    const device = this.#device(deviceId);
    const out: HubAction[] = [];
    for (const conn of [...this.#connections.values()]) {
      if (conn.device === device || conn.recovery?.device === device) this.#close(conn, error, out);
    }
    this.#devices.delete(device.id);
    device.active.key.fill(0);
    wipePending(device.pending);
    device.pending = undefined;
    device.deferred = undefined;
    device.blocked = undefined;
    device.persisting = undefined;
    device.rotationQueued = false;
    device.recoveryWaiting = false;
    return out;
  }

  hasDevice(deviceId: string): boolean {
    return this.#devices.has(deviceId.toLowerCase());
  }

  tick(now: number): HubAction[] {
    const out: HubAction[] = [];
    // Iterates the live map (no copy per tick): #close deletes only the entry being visited, which Map iteration allows.
    for (const conn of this.#connections.values()) {
      // A connection whose input waits on a persist is not timed out: the wait is the hub's.
      if (conn.held !== undefined) continue;
      if (conn.state === 'awaitingHello') {
        if (now - conn.openedAt >= this.#timing.handshakeTimeoutMs) this.#timedOut(conn, 'handshakeTimeout', out);
        continue;
      }
      if (conn.state === 'awaitingRecoverInit' || conn.state === 'awaitingRecoverFinish') {
        if (now - conn.stageStartedAt >= this.#timing.handshakeTimeoutMs) this.#timedOut(conn, 'handshakeTimeout', out); // HS13
        continue;
      }
      if (conn.state === 'deciding') continue; // the wait is the hub's (its host, its database)
      if (now - conn.lastReceivedAt >= this.#timing.idleTimeoutMs) {
        this.#timedOut(conn, 'idleTimeout', out);
        continue;
      }
      const device = conn.device;
      if (device !== undefined && device.pending !== undefined && device.persisting === undefined && now >= device.nextOfferAt) {
        this.#offer(device, conn, now, out); // HK3
      }
    }
    return out;
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (at: number) => {
      if (next === undefined || at < next) next = at;
    };
    for (const conn of this.#connections.values()) {
      if (conn.held !== undefined) continue;
      if (conn.state === 'awaitingHello') {
        consider(conn.openedAt + this.#timing.handshakeTimeoutMs);
        continue;
      }
      if (conn.state === 'awaitingRecoverInit' || conn.state === 'awaitingRecoverFinish') {
        consider(conn.stageStartedAt + this.#timing.handshakeTimeoutMs);
        continue;
      }
      if (conn.state === 'deciding') continue;
      consider(conn.lastReceivedAt + this.#timing.idleTimeoutMs);
      const device = conn.device;
      if (device?.pending !== undefined && device.persisting === undefined) consider(device.nextOfferAt);
    }
    return next;
  }

  // ---- Key transitions (the only three places that change active/pending) ----

  /**
   * HK1: a fresh key with the next id (classic), or a fresh ephemeral X25519
   * pair for it (dh, §11), to be made durable before it is ever offered
   * (rules H1, H4).
   */
  #storePending(device: DeviceEntry, out: HubAction[]): void {
    const id = device.active.id + 1;
    const op: HubPersistOp =
      device.mode === 'dh'
        ? { kind: 'storePending', deviceId: device.id, id, dh: drawEphemeral(this.#requireKeyAgreement(), this.#random) }
        : { kind: 'storePending', deviceId: device.id, id, key: this.#randomBytes(KEY_BYTES) };
    device.persisting = op;
    out.push({ type: 'persist', op });
  }

  /** Rule H1: the pending key is durable, so it may now be offered (and re-offered, unchanged, until confirmed). */
  #pendingStored(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'storePending' }>, now: number, out: HubAction[]): void {
    // HK11: the refused key is replaced (the device is (A) and never stored it); its bytes are wiped.
    if (device.pending !== undefined) wipePending(device.pending);
    if (op.modeChange === 'dh') device.mode = 'dh';
    device.pending = op.dh === undefined ? { id: op.id, key: op.key } : { id: op.id, dh: op.dh };
    device.offerAttempt = 0;
    device.nextOfferAt = now;
    const conn = this.#establishedConnection(device);
    if (conn !== undefined) this.#offer(device, conn, now, out);
  }

  /**
   * Rule H2: the device proved it holds the pending key (durably, by rule
   * D1), and the promotion is now durable too, so the old key is deleted and
   * the new one may seal. The first frame sealed under it confirms the
   * rotation to the device (rule H3).
   */
  #pendingPromoted(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'promote' }>, now: number, out: HubAction[]): void {
    const pending = device.pending;
    if (pending === undefined || pending.id !== op.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'promotion without matching pending key');
    const key = pending.dh === undefined ? pending.key : op.key;
    if (key === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the promotion of a dh pending key carries the derived key');
    device.active.key.fill(0);
    device.active = { id: pending.id, key };
    // Rule H5: the ephemeral private key is gone with the commit that promoted.
    pending.dh?.privateKey.fill(0);
    device.pending = undefined;
    if (op.enrolmentReady === true && device.enrolment === 'armed') device.enrolment = 'ready';
    out.push(event({ type: 'keyConfirmed', deviceId: device.id, id: pending.id }));
    const deferred = device.deferred;
    device.deferred = undefined;
    if (deferred === undefined) return;
    const conn = this.#connections.get(deferred.connection);
    if (conn === undefined) return;
    if (deferred.row.id === 'HS2') {
      // The HELLO's WELCOME, now under P, is the confirmation (rule H3).
      this.#dispatch(conn, device, deferred.message, deferred.row, now, out);
      return;
    }
    this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: pending.id }, now, out);
    if (conn.state === 'established') this.#offerEnrolment(conn, device, now, out); // HE1, under the key just promoted
    // HS8: the REKEY_ACK that triggered the promotion is fully answered by that CONFIRM.
    if (deferred.row.id !== 'HS8') this.#dispatch(conn, device, deferred.message, deferred.row, now, out);
  }

  /** HK7: the database's state (before or after the failed write) replaces the core's. */
  #reloaded(device: DeviceEntry, record: HubDeviceRecord): void {
    device.active.key.fill(0);
    wipePending(device.pending);
    device.mode = record.mode;
    device.active = copySlot(record.active);
    device.pending = record.pending === undefined ? undefined : copyPending(record.pending);
    device.devicePublicKey = record.devicePublicKey?.slice();
    device.hubStaticId = record.hubStaticId;
    device.enrolment = record.enrolment;
  }

  #checkRecord(record: HubDeviceRecord): void {
    checkSlot(record.active);
    if (record.mode !== 'classic' && record.mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `unknown rekey mode ${String(record.mode)}`);
    if (record.pending !== undefined) checkPending(record.pending, record.active);
    if ((record.mode === 'dh' || record.pending?.dh !== undefined) && this.#keyAgreement === undefined) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId} is in the dh mode: the hub needs keyAgreement primitives`);
    }
    if (record.devicePublicKey !== undefined && record.devicePublicKey.length !== KEY_SHARE_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: a static public key is ${KEY_SHARE_BYTES} bytes`);
    }
    if (record.hubStaticId !== undefined && !isU32(record.hubStaticId)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: the hub static id is a u32`);
    if (record.enrolment !== undefined && record.enrolment !== 'armed' && record.enrolment !== 'ready') {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: unknown enrolment state ${String(record.enrolment)}`);
    }
  }

  #requireKeyAgreement(): KeyAgreementPrimitives {
    if (this.#keyAgreement === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the dh mode needs keyAgreement primitives');
    return this.#keyAgreement;
  }

  /**
   * The key a device frame is sealed under (§4 step 4), or why not. For a dh
   * pending key (HK8) the frame must carry the device's share; the key is
   * derived from it (§11.3) and returned as `derived` (the caller wipes it
   * unless a promotion takes it).
   */
  #frameKey(device: DeviceEntry, frame: Uint8Array, header: Header): { key: Uint8Array; derived: boolean } | LockstepError {
    if (header.keyId === device.active.id) return { key: device.active.key, derived: false };
    const pending = device.pending;
    if (pending === undefined || header.keyId !== pending.id) return new LockstepError('UNKNOWN_KEY_ID', `key id ${header.keyId} for ${device.id}`);
    if (pending.dh === undefined) return { key: pending.key, derived: false };
    if (header.share === undefined) return new LockstepError('BAD_HEADER', `a frame under the dh pending key ${pending.id} without its key share`);
    try {
      checkSealedShape(frame, header);
      const key = derivePendingKey(this.#requireKeyAgreement(), device.active, { id: pending.id, dh: pending.dh }, device.idBytes, header.share);
      return { key, derived: true };
    } catch (error) {
      return asLockstepError(error);
    }
  }

  // ---- Frame handling ----

  /** Parses `input` frame by frame; what is left when a persist of the device starts is kept for later. */
  #parse(conn: Connection, input: Uint8Array, now: number, out: HubAction[]): void {
    let at = 0;
    while (at < input.length && this.#connections.get(conn.id) === conn) {
      if (conn.device?.persisting !== undefined) {
        this.#hold(conn, input.subarray(at), out);
        return;
      }
      const result = conn.reader.feed(input, at);
      at += result.consumed;
      if (result.error !== undefined) this.#reject(conn, result.error, out);
      else if (result.frame !== undefined) this.#handleFrame(conn, result.frame, now, out);
    }
  }

  /** Keeps a copy of `bytes` after what the connection already has kept; over the bound it is closed (BUFFER_FULL). */
  #hold(conn: Connection, bytes: Uint8Array, out: HubAction[]): void {
    if (conn.device !== undefined) conn.device.blocked = conn.id;
    if (bytes.length === 0) return;
    conn.held ??= new HeldInput(this.#receiveBufferBytes);
    if (conn.held.append(bytes)) return;
    conn.held = undefined;
    this.#close(conn, new LockstepError('BUFFER_FULL', `more than ${this.#receiveBufferBytes} bytes received during a persist`), out);
  }

  #resumeHeld(conn: Connection, now: number, out: HubAction[]): void {
    if (conn.held === undefined || conn.device?.persisting !== undefined) return;
    const held = conn.held.take();
    conn.held = undefined;
    if (held !== undefined) this.#parse(conn, held, now, out);
  }

  #handleFrame(conn: Connection, frame: Uint8Array, now: number, out: HubAction[]): void {
    let header: Header;
    try {
      header = decodeHeader(frame);
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    if (header.fromHub) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'frame sealed by a hub (reflected?)'), out);
      return;
    }
    const frameEvent = hubFrameEvent(header.type);
    const row = frameEvent === undefined ? undefined : hubConnectionRow(conn.state, frameEvent);
    if (row === undefined) {
      this.#reject(conn, new LockstepError('UNEXPECTED_MESSAGE', `type 0x${header.type.toString(16)} in ${conn.state}`), out);
      return;
    }
    if (conn.recovery !== undefined) {
      this.#handleRecoveryFrame(conn, frame, header, row, now, out);
      return;
    }
    const device = conn.device ?? this.#devices.get(toHex(header.deviceId));
    if (device === undefined) {
      const error = new LockstepError('UNKNOWN_DEVICE', toHex(header.deviceId));
      if (!this.#noKey(conn, header, undefined, error, now, out)) this.#reject(conn, error, out);
      return;
    }
    if (!bytesEqual(header.deviceId, device.idBytes)) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'device id changed within a session'), out);
      return;
    }
    if (!bytesEqual(header.sessionId, conn.hubNonce)) {
      this.#reject(conn, new LockstepError('BAD_SESSION'), out);
      return;
    }
    if (header.sequence !== conn.sequenceIn) {
      this.#reject(conn, new LockstepError('BAD_SEQUENCE', `got ${header.sequence}, expected ${conn.sequenceIn}`), out);
      return;
    }
    if (conn.state === 'awaitingHello' && device.persisting !== undefined) {
      // Another connection of this device is mid-persist; the device will retry.
      this.#close(conn, new LockstepError('DEVICE_BUSY', 'a write of this device is outstanding; retry'), out);
      return;
    }
    const slot = this.#frameKey(device, frame, header);
    if (slot instanceof LockstepError) {
      if (!this.#noKey(conn, header, device, slot, now, out)) this.#reject(conn, slot, out);
      return;
    }
    let message: Message;
    try {
      message = openFrame(this.#aead, slot.key, frame, header);
      if (message.type === MessageType.REKEY_ACK && message.newKeyId !== header.keyId) {
        throw new LockstepError('BAD_PAYLOAD', 'REKEY_ACK must be sealed under the key it acknowledges');
      }
    } catch (error) {
      if (slot.derived) slot.key.fill(0);
      const rejected = asLockstepError(error);
      if (!this.#noKey(conn, header, device, rejected, now, out)) this.#reject(conn, rejected, out);
      return;
    }
    // HS2 with a recovered pending N > A + 1 (HK9): a HELLO under A shows the device sealing with A — so it holds no
    // future key (D3) and never stored N — after a further rollback. No session: it would offer N, which the device must
    // refuse (DK8), for ever (finding F4). The HELLO is answered like a failing one (HS9), and the recovery's `check`
    // under A is not IN_SYNC (#checkMatchesHeld), so N is replaced by an N' above every id either side holds (R3).
    if (
      message.type === MessageType.HELLO &&
      conn.state === 'awaitingHello' &&
      header.keyId === device.active.id &&
      device.pending !== undefined &&
      device.pending.id !== device.active.id + 1 &&
      this.#noKey(conn, header, device, new LockstepError('UNKNOWN_KEY_ID', `sealed under ${header.keyId} while the recovered key ${device.pending.id} is pending`), now, out, 'unusablePending')
    ) {
      return;
    }
    // Authenticated and well-formed: from here the frame counts.
    conn.sequenceIn++;
    conn.lastReceivedAt = now;
    conn.rejectedFrames = 0;
    if (conn.state === 'awaitingHello') this.#bind(conn, device, out);
    if (device.pending !== undefined && header.keyId === device.pending.id) {
      // HK5 (and HK10 for a recovered key): persist the promotion first; the frame is acted on once it is durable.
      device.deferred = { connection: conn.id, message, row };
      // HE1: an armed enrolment becomes ready with the promotion of a dh-derived key, in the same commit.
      const ready = slot.derived && device.enrolment === 'armed' ? ({ enrolmentReady: true } as const) : {};
      const op: HubPersistOp = slot.derived ? { kind: 'promote', deviceId: device.id, id: header.keyId, key: slot.key, ...ready } : { kind: 'promote', deviceId: device.id, id: header.keyId };
      device.persisting = op;
      out.push({ type: 'persist', op });
      return;
    }
    this.#dispatch(conn, device, message, row, now, out);
  }

  // ---- Recovery (§12.3, §12.4) ----

  /**
   * HS9: a HELLO (seq 0, this session) that failed at §4 step 3 (unknown
   * device), 4 (unknown key id) or 5 (AUTH_FAILED), with recovery configured
   * and the source's limit allowing: NO_KEY, the same for every device id,
   * known or not, so it tells an impostor nothing. Nothing else changes: the
   * connection is not tied to the device (nothing is authenticated). False
   * when HS3 applies instead.
   */
  #noKey(conn: Connection, header: Header, device: DeviceEntry | undefined, error: LockstepError, now: number, out: HubAction[], forced?: RecoveryNeededReason): boolean {
    if (this.#hubKeys === undefined || conn.state !== 'awaitingHello') return false;
    if (header.type !== MessageType.HELLO || header.sequence !== 0 || conn.sequenceIn !== 0 || !bytesEqual(header.sessionId, conn.hubNonce)) return false;
    // A HELLO under the id of a dh pending key without a share (§11.2) cannot be opened either: the device holds that id
    // as its *active* key (it promoted a key from that very exchange, and the hub was restored to before its own
    // promotion), so it never sends D again. Only a recovery gets the pair out; the hub cannot derive the key (step 5).
    const noShare = error.code === 'BAD_HEADER' && device?.pending?.dh !== undefined && header.keyId === device.pending.id && header.share === undefined;
    const reason: RecoveryNeededReason | undefined = forced ?? (error.code === 'UNKNOWN_KEY_ID' ? 'unknownKeyId' : error.code === 'AUTH_FAILED' || noShare ? 'authFailed' : undefined);
    if (reason === undefined && error.code !== 'UNKNOWN_DEVICE') return false;
    // Detection is for operators and costs nothing: reported even when the source's limit forbids the NO_KEY (HS3 then).
    if (device !== undefined && reason !== undefined) this.#reportRecoveryNeeded(device, reason, header.keyId, out);
    if (!conn.recoveryAllowed) return false;
    const row = requireHubConnectionRow(conn.state, 'helloFailed');
    out.push(event({ type: 'rejected', connection: conn.id, error }));
    conn.state = row.next;
    conn.sequenceIn = 1;
    conn.lastReceivedAt = now;
    conn.stageStartedAt = now;
    conn.recovery = {
      deviceIdBytes: header.deviceId.slice(),
      helloKeyId: header.keyId,
      helloShare: header.share?.slice(),
      phase: 'init',
      device: undefined,
      claim: undefined,
      secrets: undefined,
      newKeyId: 0,
      storing: undefined,
    };
    this.#transmitRaw(conn, this.#recoveryHeader(conn, MessageType.NO_KEY), out);
    return true;
  }

  /** recoveryNeeded, once per episode per device (an established session ends the episode); only with recovery configured. */
  #reportRecoveryNeeded(device: DeviceEntry, reason: RecoveryNeededReason, helloKeyId: number, out: HubAction[]): void {
    if (this.#hubKeys === undefined || device.recoveryReported) return;
    device.recoveryReported = true;
    out.push(event({ type: 'recoveryNeeded', deviceId: device.id, reason, helloKeyId, activeKeyId: device.active.id, pendingKeyId: device.pending?.id }));
  }

  /** HS10/HS11/HS13: recovery frames are unsealed (key id 0, no share), of the HELLO's device id, this session, the next seq. */
  #handleRecoveryFrame(conn: Connection, frame: Uint8Array, header: Header, row: HubConnectionRow, now: number, out: HubAction[]): void {
    const recovery = conn.recovery;
    if (recovery === undefined) return;
    if (header.keyId !== NO_KEY_ID || header.share !== undefined) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'recovery frames are unsealed: key id 0, no key share'), out);
      return;
    }
    if (!bytesEqual(header.deviceId, recovery.deviceIdBytes)) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'device id changed within a session'), out);
      return;
    }
    if (!bytesEqual(header.sessionId, conn.hubNonce)) {
      this.#reject(conn, new LockstepError('BAD_SESSION'), out);
      return;
    }
    if (header.sequence !== conn.sequenceIn) {
      this.#reject(conn, new LockstepError('BAD_SEQUENCE', `got ${header.sequence}, expected ${conn.sequenceIn}`), out);
      return;
    }
    if (row.id === 'HS10') this.#recoverInit(conn, recovery, frame, now, out);
    else if (row.id === 'HS11') this.#recoverFinish(conn, recovery, frame, now, out);
    else this.#reject(conn, new LockstepError('UNEXPECTED_MESSAGE', `row ${row.id} in a recovery`), out);
  }

  /**
   * HS10: RECOVER_INIT of a known device with a static key, for a hub static
   * id the hub holds, tag1 valid → RECOVER_REPLY with a fresh e_h and N.
   * Nothing is stored, charged or asked (R1): tag1 can be forged by whoever
   * holds s_h, and replayed but for Nh.
   */
  #recoverInit(conn: Connection, recovery: RecoveryHandshake, frame: Uint8Array, now: number, out: HubAction[]): void {
    const primitives = this.#requireKeyAgreement();
    if (frame.length !== RECOVER_INIT_FRAME_BYTES) {
      this.#reject(conn, new LockstepError('BAD_PAYLOAD', `RECOVER_INIT of ${frame.length} bytes`), out);
      return;
    }
    const device = this.#devices.get(toHex(recovery.deviceIdBytes));
    if (device === undefined) {
      this.#reject(conn, new LockstepError('UNKNOWN_DEVICE', 'no such device to recover'), out);
      return;
    }
    const devicePublicKey = device.devicePublicKey;
    if (devicePublicKey === undefined) {
      this.#reject(conn, new LockstepError('NO_CREDENTIAL', `device ${device.id} has no static key enrolled`), out);
      return;
    }
    const hubStaticId = parseRecoverInit(frame).hubStaticId;
    const hubStatic = this.#hubKeys?.get(hubStaticId);
    if (hubStatic === undefined) {
      this.#reject(conn, new LockstepError('UNKNOWN_KEY_ID', `hub static id ${hubStaticId}`), out);
      return;
    }
    let verified: { claim: RecoveryClaim; k1: Uint8Array };
    try {
      verified = hubVerifyRecoverInit(primitives, { hubStatic, devicePublicKey, deviceId: device.idBytes, hubNonce: conn.hubNonce }, frame);
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    const claim = verified.claim;
    if (claim.activeKeyId === 0 || (claim.futureKeyId !== 0 && claim.futureKeyId <= claim.activeKeyId)) {
      verified.k1.fill(0);
      this.#reject(conn, new LockstepError('BAD_PAYLOAD', 'RECOVER_INIT ids: active above 0, future 0 or above active'), out);
      return;
    }
    // R3: above every id either side holds (may pass MAX_KEY_ID: then the answer is KEY_IDS_EXHAUSTED, after tag3).
    const newKeyId = Math.max(this.#highestHeld(device), claim.activeKeyId, claim.futureKeyId) + 1;
    const row = requireHubConnectionRow(conn.state, 'recoverInit');
    let reply: { frame: Uint8Array; secrets: RecoverySecrets };
    try {
      // Draws e_h; wipes e_h and k1 whatever happens.
      reply = hubRecoveryReply(primitives, this.#random, {
        k1: verified.k1,
        initFrame: frame,
        header: this.#recoveryHeaderAt(conn, MessageType.RECOVER_REPLY, conn.sequenceOut),
        newKeyId: Math.min(newKeyId, MAX_KEY_ID),
        devicePublicKey,
        deviceShare: claim.deviceShare,
      });
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    conn.sequenceIn++;
    conn.sequenceOut++;
    conn.lastReceivedAt = now;
    conn.stageStartedAt = now;
    conn.state = row.next;
    recovery.phase = 'finish';
    recovery.device = device;
    recovery.claim = claim;
    recovery.secrets = reply.secrets;
    recovery.newKeyId = newKeyId;
    out.push({ type: 'transmit', connection: conn.id, bytes: withLengthPrefix(reply.frame) });
  }

  /**
   * HS11: RECOVER_FINISH with a valid tag3 — only the holder of s_d could
   * compute it, for this handshake's e_h — authenticates the device. Then
   * HS12's rows (table.ts) decide what the core can decide alone, and
   * otherwise ask the host (recoveryRequest).
   */
  #recoverFinish(conn: Connection, recovery: RecoveryHandshake, frame: Uint8Array, now: number, out: HubAction[]): void {
    const primitives = this.#requireKeyAgreement();
    const secrets = recovery.secrets;
    const device = recovery.device;
    if (secrets === undefined || device === undefined) {
      this.#reject(conn, new LockstepError('UNEXPECTED_MESSAGE', 'RECOVER_FINISH before RECOVER_REPLY'), out);
      return;
    }
    try {
      verifyRecoveryFinish(primitives, secrets.macKey, frame);
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    const row = requireHubConnectionRow(conn.state, 'recoverFinish');
    conn.sequenceIn++;
    conn.lastReceivedAt = now;
    conn.state = row.next;
    recovery.phase = 'asked';
    if (this.#devices.get(device.id) !== device) {
      this.#close(conn, new LockstepError('UNKNOWN_DEVICE', `device ${device.id} was removed`), out);
      return;
    }
    // The device is live on this connection: older ones of it are stale (as an authenticated HELLO closes them).
    const previous = this.#recoveryConnectionOf(device);
    if (previous !== undefined && previous !== conn) this.#close(previous, new LockstepError('PEER_ERROR', 'superseded by a newer recovery'), out);
    const established = device.connection === undefined ? undefined : this.#connections.get(device.connection);
    if (established !== undefined) this.#close(established, new LockstepError('PEER_ERROR', 'superseded by a recovery of the device'), out);
    device.recoveryConnection = conn.id;
    this.#decideByCore(conn, recovery, device, now, out);
  }

  /** HS12, the core's part (table.ts HUB_RECOVERY_ROWS): IN_SYNC (R4), ids moved (R3), ids exhausted, else the host's policy. */
  #decideByCore(conn: Connection, recovery: RecoveryHandshake, device: DeviceEntry, _now: number, out: HubAction[]): void {
    const claim = recovery.claim;
    if (claim === undefined) return;
    const row = hubRecoveryRow({ checkMatchesHeld: this.#checkMatchesHeld(conn, recovery, device), newKeyId: recovery.newKeyId, highestHeld: this.#highestHeld(device) });
    switch (row.outcome) {
      case 'inSync':
        this.#finishRecovery(conn, recovery, device, RecoveryStatus.IN_SYNC, 0, out);
        return;
      case 'idsMoved':
        this.#idsMoved(conn, recovery, device, out);
        return;
      case 'idsExhausted':
        this.#finishRecovery(conn, recovery, device, RecoveryStatus.KEY_IDS_EXHAUSTED, RECOVERY_RETRY_MAX_MS / 1000, out);
        return;
      case 'askHost':
        out.push({ type: 'recoveryRequest', connection: conn.id, deviceId: device.id, newKeyId: recovery.newKeyId, claimedActive: claim.activeKeyId, claimedFuture: claim.futureKeyId });
        return;
    }
  }

  /**
   * R4: does `check` say the device seals with a key the hub holds? A and a
   * classic P are tested directly. A dh pending P has no key until a device
   * share is known, and the device's newest key can be P's only if it holds
   * the key derived from the hub's h and its own D — and then every frame it
   * seals under P carries that D (§11.2), so its HELLO under P would have
   * authenticated. The one share the hub can test is the HELLO's own (a HELLO
   * corrupted in transit elsewhere than in D): K_P is derived from it and
   * tested, then wiped. With no such share, P is not the device's key, and
   * replacing it (HK9) loses nothing the device uses. Should a corrupted D
   * hide a P the device does hold, the recovery still converges: DK14
   * replaces the device's F by N, or, if RECOVER_RESULT is lost, its next
   * HELLO under P finds no P and recovers again with an N' above N.
   */
  #checkMatchesHeld(conn: Connection, recovery: RecoveryHandshake, device: DeviceEntry): boolean {
    const primitives = this.#requireKeyAgreement();
    const claim = recovery.claim;
    if (claim === undefined) return false;
    const pending = device.pending;
    // Sealing with A while a recovered N > A + 1 is pending is not in sync (HS2 above, finding F4): N must be replaced.
    if (checkMatches(primitives, device.active.key, conn.hubNonce, claim)) return pending === undefined || pending.id === device.active.id + 1;
    if (pending === undefined) return false;
    if (pending.dh === undefined) return checkMatches(primitives, pending.key, conn.hubNonce, claim);
    if (recovery.helloKeyId !== pending.id || recovery.helloShare === undefined) return false;
    let derived: Uint8Array;
    try {
      derived = derivePendingKey(primitives, device.active, { id: pending.id, dh: pending.dh }, device.idBytes, recovery.helloShare);
    } catch {
      return false; // BAD_KEY_SHARE: no key at all
    }
    const matches = checkMatches(primitives, derived, conn.hubNonce, claim);
    derived.fill(0);
    return matches;
  }

  /**
   * The host's decision for a recoveryRequest (HS12, §12.7). ACCEPTED: HK9 —
   * (N, K_N) replaces the pending slot, durably (persist storeRecovered),
   * and RECOVER_RESULT ACCEPTED is sent once `persisted` says so (R2); N is
   * rechecked against the hub's slots first (R3: if they reached N, the
   * connection closes without a result and the device tries again). Any
   * other status: RECOVER_RESULT with it, then close. A decision for a
   * connection that has closed meanwhile does nothing (the device retries).
   * IN_SYNC is not the host's to give (LOCAL_BAD_ARGUMENT), nor a decision
   * without a request outstanding (LOCAL_NOT_READY).
   */
  decideRecovery(connection: ConnectionId, decision: RecoveryDecision, now: number): HubAction[] {
    if (!HOST_STATUSES.has(decision.status)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `status ${decision.status} is not a host's decision`);
    if (!isU32(decision.retryAfterSeconds)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'retry after is a u32 of seconds');
    const out: HubAction[] = [];
    const conn = this.#connections.get(connection);
    if (conn === undefined) return out;
    const recovery = conn.recovery;
    const device = recovery?.device;
    if (conn.state !== 'deciding' || recovery === undefined || recovery.phase !== 'asked' || device === undefined) {
      throw new LockstepError('LOCAL_NOT_READY', `connection ${connection} has no recovery request outstanding`);
    }
    if (decision.status !== RecoveryStatus.ACCEPTED) {
      this.#finishRecovery(conn, recovery, device, decision.status, decision.retryAfterSeconds, out);
      return out;
    }
    recovery.phase = 'accepted';
    this.#applyAccepted(conn, device, now, out);
    return out;
  }

  /** HK9, once no other write of the device is outstanding: R3 rechecked, then persist (N, K_N). */
  #applyAccepted(conn: Connection, device: DeviceEntry, _now: number, out: HubAction[]): void {
    const recovery = conn.recovery;
    const secrets = recovery?.secrets;
    if (recovery === undefined || secrets === undefined) return;
    if (recovery.newKeyId <= this.#highestHeld(device)) {
      this.#idsMoved(conn, recovery, device, out);
      return;
    }
    // R4 again: a pending key written since tag3 (never offered: the device's sessions were closed then) is tested too.
    if (this.#checkMatchesHeld(conn, recovery, device)) {
      this.#finishRecovery(conn, recovery, device, RecoveryStatus.IN_SYNC, 0, out);
      return;
    }
    if (device.persisting !== undefined) {
      device.recoveryWaiting = true; // resumed by persisted(), which rechecks R3 with the write's result
      return;
    }
    const op: HubPersistOp = { kind: 'storeRecovered', deviceId: device.id, id: recovery.newKeyId, key: secrets.recoveredKey.slice() };
    recovery.phase = 'storing';
    recovery.storing = op;
    device.persisting = op;
    out.push({ type: 'persist', op });
  }

  /** R3 at decision time: the hub's slots reached N since RECOVER_REPLY; no result (the device refuses nothing, changes nothing, and tries again). */
  #idsMoved(conn: Connection, recovery: RecoveryHandshake, device: DeviceEntry, out: HubAction[]): void {
    this.#close(conn, new LockstepError('RECOVERY_REFUSED', `R3: device ${device.id} now holds key id ${this.#highestHeld(device)} ≥ N = ${recovery.newKeyId}; closed without a result`), out);
  }

  /**
   * HK9 is durable: (N, K_N) is the pending key (classic form; the old
   * pending key, which the device does not seal with (R4), is wiped), the
   * active key stays until a frame under N promotes it (HK10 = HK5). Then,
   * and only then, RECOVER_RESULT ACCEPTED (R2). A connection gone
   * meanwhile gets nothing: the device recovers again with an N' above N.
   */
  #recoveredStored(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'storeRecovered' }>, now: number, out: HubAction[]): void {
    if (device.pending !== undefined) wipePending(device.pending);
    device.pending = { id: op.id, key: op.key };
    device.offerAttempt = 0;
    device.nextOfferAt = now;
    const conn = this.#recoveryConnectionOf(device);
    const recovery = conn?.recovery;
    // Only the handshake whose K_N this is may be told ACCEPTED (a newer one of the device rechecks R3 and finds N taken).
    if (conn !== undefined && recovery?.phase === 'storing' && recovery.storing === op) {
      this.#finishRecovery(conn, recovery, device, RecoveryStatus.ACCEPTED, 0, out);
      return;
    }
    out.push(event({ type: 'recoveryDecided', deviceId: device.id, status: RecoveryStatus.ACCEPTED, newKeyId: op.id }));
  }

  /** HS12: RECOVER_RESULT (seq 3, tag4 under m), the audit event, and the end of the connection (its secrets wiped). */
  #finishRecovery(conn: Connection, recovery: RecoveryHandshake, device: DeviceEntry, status: RecoveryStatus, retryAfterSeconds: number, out: HubAction[]): void {
    const secrets = recovery.secrets;
    if (secrets === undefined) return;
    const retry = status === RecoveryStatus.ACCEPTED || status === RecoveryStatus.IN_SYNC ? 0 : retryAfterSeconds;
    const frame = recoveryResultFrame(this.#requireKeyAgreement(), secrets.macKey, this.#recoveryHeaderAt(conn, MessageType.RECOVER_RESULT, conn.sequenceOut++), status, retry);
    out.push({ type: 'transmit', connection: conn.id, bytes: withLengthPrefix(frame) });
    const newKeyId = Math.min(recovery.newKeyId, MAX_KEY_ID);
    out.push(event({ type: 'recoveryDecided', deviceId: device.id, status, newKeyId }));
    requireHubConnectionRow(conn.state, 'decided');
    const ended = status === RecoveryStatus.ACCEPTED || status === RecoveryStatus.IN_SYNC;
    this.#close(conn, new LockstepError(ended ? 'PEER_ERROR' : 'RECOVERY_REFUSED', `recovery of ${device.id} ended with status ${status}`), out);
  }

  #recoveryConnectionOf(device: DeviceEntry): Connection | undefined {
    return device.recoveryConnection === undefined ? undefined : this.#connections.get(device.recoveryConnection);
  }

  #highestHeld(device: DeviceEntry): number {
    return Math.max(device.active.id, device.pending?.id ?? 0);
  }

  /** The header of an unsealed recovery frame of this connection (§12.2): key id 0, the HELLO's device id, seq `sequence`. */
  #recoveryHeaderAt(conn: Connection, type: MessageType, sequence: number): Uint8Array {
    const deviceId = conn.recovery?.deviceIdBytes ?? new Uint8Array(DEVICE_ID_BYTES);
    return encodeHeader({ type, fromHub: true, deviceId, keyId: NO_KEY_ID, sequence, sessionId: conn.hubNonce });
  }

  /** The next frame's header (consumes a hub seq). */
  #recoveryHeader(conn: Connection, type: MessageType): Uint8Array {
    return this.#recoveryHeaderAt(conn, type, conn.sequenceOut++);
  }

  #transmitRaw(conn: Connection, frame: Uint8Array, out: HubAction[]): void {
    out.push({ type: 'transmit', connection: conn.id, bytes: withLengthPrefix(frame) });
  }

  // ---- Refusals after a rollback (§12.4) and enrolment (§12.6) ----

  /**
   * An authenticated ERROR of an established session. HK11: REKEY_MODE_MISMATCH
   * for the classic pending P says the device is (A) in the dh mode and will
   * never take a classic key (DK12 fires only in (A)), so the refused P is
   * replaced by a dh pending under the same id, with the mode, in one
   * commit. HK12: REKEY_ID_NOT_NEXT for a recovered pending N above A + 1,
   * in a session established before N became pending: the session is
   * closed, and the next HELLO under A starts a recovery (the HS2 rule in
   * #handleFrame, finding F4) whose N' is above every id — never a reissued
   * A + 1, which the device may have held in a discarded life.
   * The other refusals cannot arise between compliant peers (§12.4):
   * reported (recoveryNeeded, rekeyRefused), the pending key kept (H1).
   * All only with recovery configured; without it the 1.0/§11.6 behaviour
   * stands (report, keep the pending key).
   */
  #peerRefused(device: DeviceEntry, code: number, detail: number, out: HubAction[]): void {
    if (this.#hubKeys === undefined) return;
    const pending = device.pending;
    if (code === WireError.REKEY_MODE_MISMATCH) {
      if (pending === undefined || pending.dh !== undefined || pending.id !== detail || device.persisting !== undefined) return;
      const op: HubPersistOp = { kind: 'storePending', deviceId: device.id, id: pending.id, dh: drawEphemeral(this.#requireKeyAgreement(), this.#random), modeChange: 'dh', replaces: pending.id };
      device.persisting = op;
      out.push({ type: 'persist', op });
      return;
    }
    if (code === WireError.REKEY_ID_NOT_NEXT && pending !== undefined && pending.id === detail && pending.id > device.active.id + 1) {
      // HK12: a session that was established before the recovered N became pending. Close it: the device's next HELLO,
      // under A, starts a recovery (HS2 above), whose N' is above every id either side holds — never a reissued A + 1.
      this.#reportRecoveryNeeded(device, 'rekeyRefused', device.active.id, out);
      const conn = this.#establishedConnection(device);
      if (conn !== undefined) this.#close(conn, new LockstepError('REKEY_REJECTED', `recovered key ${pending.id} refused (not next); a recovery replaces it`), out);
      return;
    }
    if (code === WireError.REKEY_CONFLICT || code === WireError.REKEY_ID_NOT_NEWER || code === WireError.REKEY_ID_NOT_NEXT) {
      this.#reportRecoveryNeeded(device, 'rekeyRefused', device.active.id, out);
    } else if (code === WireError.STATIC_KEY_LOCKED) {
      out.push(event({ type: 'staticKeyLocked', deviceId: device.id })); // DK17: the device holds another hub key
    }
  }

  /**
   * HE1: enrolment ready (armed, then a dh-derived key promoted — the key
   * this session is under), no static key yet, recovery configured: send
   * ENROL(id, S_h) of the current hub static key, once per session.
   */
  #offerEnrolment(conn: Connection, device: DeviceEntry, now: number, out: HubAction[]): void {
    const current = this.#currentHubKey;
    if (current === undefined || device.enrolment !== 'ready' || device.devicePublicKey !== undefined || conn.enrolOffered !== undefined) return;
    if (device.persisting !== undefined || conn.state !== 'established') return;
    conn.enrolOffered = current.id;
    this.#sendSealed(conn, { type: MessageType.ENROL, hubStaticId: current.id, hubPublicKey: current.publicKey }, now, out);
  }

  /**
   * HE2: ENROL_ACK(id, S_d), authenticated under the active key. Enrolled
   * already: the same (id, S_d) again changes nothing; another one is
   * STATIC_KEY_LOCKED. Not ready (unarmed, or armed without a dh rotation
   * since): STATIC_KEY_LOCKED — no static key enters but through HE1. An
   * answer to no ENROL of this session, or naming another hub key:
   * UNEXPECTED_MESSAGE. A low-order S_d (no recovery could ever work):
   * BAD_KEY_SHARE. Else persist S_d and disarm.
   */
  #enrolAcknowledged(conn: Connection, device: DeviceEntry, message: Extract<Message, { type: typeof MessageType.ENROL_ACK }>, now: number, out: HubAction[]): void {
    const refuse = (wire: number, error?: 'staticKeyLocked') => {
      if (error !== undefined) out.push(event({ type: 'staticKeyLocked', deviceId: device.id }));
      this.#sendSealed(conn, { type: MessageType.ERROR, code: wire, detail: message.hubStaticId }, now, out);
    };
    if (device.devicePublicKey !== undefined) {
      if (!bytesEqual(device.devicePublicKey, message.devicePublicKey) || device.hubStaticId !== message.hubStaticId) refuse(WireError.STATIC_KEY_LOCKED, 'staticKeyLocked');
      return;
    }
    const current = this.#currentHubKey;
    if (current === undefined || device.enrolment !== 'ready') {
      refuse(WireError.STATIC_KEY_LOCKED, 'staticKeyLocked');
      return;
    }
    if (conn.enrolOffered === undefined || conn.enrolOffered !== message.hubStaticId) {
      refuse(WireError.UNEXPECTED_MESSAGE);
      return;
    }
    const hubKey = this.#hubKeys?.get(message.hubStaticId);
    if (hubKey === undefined || !this.#agrees(hubKey.privateKey, message.devicePublicKey)) {
      refuse(WireError.BAD_KEY_SHARE);
      return;
    }
    const op: HubPersistOp = { kind: 'storeDeviceStatic', deviceId: device.id, publicKey: message.devicePublicKey.slice(), hubStaticId: message.hubStaticId };
    device.persisting = op;
    out.push({ type: 'persist', op });
  }

  /** X25519(privateKey, publicKey) is not all zero (RFC 7748 §6.1); the result is wiped. */
  #agrees(privateKey: Uint8Array, publicKey: Uint8Array): boolean {
    let shared: Uint8Array;
    try {
      shared = this.#requireKeyAgreement().x25519(privateKey, publicKey);
    } catch {
      return false;
    }
    let any = 0;
    for (let i = 0; i < shared.length; i++) any |= shared[i] as number;
    shared.fill(0);
    return shared.length === 32 && any !== 0;
  }

  /** HE2 is durable: S_d and its hub static id are the device's from now on; enrolment is disarmed. */
  #deviceStaticStored(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'storeDeviceStatic' }>, out: HubAction[]): void {
    device.devicePublicKey = op.publicKey;
    device.hubStaticId = op.hubStaticId;
    device.enrolment = undefined;
    out.push(event({ type: 'enrolled', deviceId: device.id, hubStaticId: op.hubStaticId }));
  }

  /** An authenticated HELLO ties the connection to its device; an older connection of the device is closed. */
  #bind(conn: Connection, device: DeviceEntry, out: HubAction[]): void {
    const previous = device.connection === undefined ? undefined : this.#connections.get(device.connection);
    if (previous !== undefined && previous !== conn) this.#close(previous, new LockstepError('PEER_ERROR', 'superseded by a new connection'), out);
    conn.device = device;
    device.connection = conn.id;
  }

  /** HS2, after the HELLO authenticated (and any promotion it implied is durable). */
  #welcome(conn: Connection, device: DeviceEntry, row: HubConnectionRow, deviceNonce: Uint8Array, now: number, out: HubAction[]): void {
    conn.state = row.next;
    this.#sendSealed(conn, { type: MessageType.WELCOME, deviceNonce, hubKeyId: device.active.id }, now, out);
    out.push(event({ type: 'deviceConnected', deviceId: device.id, connection: conn.id, keyId: device.active.id }));
    device.channel.restartSession();
    // An established session ends a recovery episode: the next failure is reported again.
    device.recoveryReported = false;
    if (device.pending !== undefined) {
      device.offerAttempt = 0;
      this.#offer(device, conn, now, out); // HK4
    }
    this.#flushOutbox(device, now, out);
    this.#offerEnrolment(conn, device, now, out); // HE1
  }

  /** Acts on an authenticated device frame by its connection row; any promotion it implied (HK5) is done. */
  #dispatch(conn: Connection, device: DeviceEntry, message: Message, row: HubConnectionRow, now: number, out: HubAction[]): void {
    switch (row.id) {
      case 'HS2':
        if (message.type === MessageType.HELLO) this.#welcome(conn, device, row, message.deviceNonce, now, out);
        return;
      case 'HS8':
        // HK6: a repeated ack of the active key is answered idempotently (a fresh one was answered by HK5).
        if (message.type === MessageType.REKEY_ACK && message.newKeyId === device.active.id) {
          this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: device.active.id }, now, out);
        }
        return;
      case 'HS7':
        this.#handleAppFrame(conn, device, message, now, out);
        return;
      case 'HE2':
        if (message.type === MessageType.ENROL_ACK) this.#enrolAcknowledged(conn, device, message, now, out);
        return;
      default:
        throw new LockstepError('UNEXPECTED_MESSAGE', `row ${row.id} does not take a frame`);
    }
  }

  /** HS7: application data (§7), keep-alive, and the device's error reports. */
  #handleAppFrame(conn: Connection, device: DeviceEntry, message: Message, now: number, out: HubAction[]): void {
    switch (message.type) {
      case MessageType.DATA: {
        const verdict = device.channel.receive(message.streamId, message.messageId);
        if (verdict.deliver) out.push(event({ type: 'data', deviceId: device.id, payload: message.payload }));
        this.#sendSealed(conn, { type: MessageType.DATA_ACK, streamId: message.streamId, messageId: verdict.ackId }, now, out);
        return;
      }
      case MessageType.DATA_ACK:
        for (const messageId of device.channel.acknowledge(message.streamId, message.messageId)) {
          out.push(event({ type: 'delivered', deviceId: device.id, messageId }));
        }
        return;
      case MessageType.PING:
        this.#sendSealed(conn, { type: MessageType.PONG }, now, out);
        return;
      case MessageType.PONG:
        return;
      case MessageType.ERROR:
        out.push(event({ type: 'peerError', deviceId: device.id, code: message.code, detail: message.detail }));
        this.#peerRefused(device, message.code, message.detail, out);
        return;
      default:
        throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${message.type.toString(16)} is not an application frame`);
    }
  }

  /** (Re-)offers the unchanged pending key under the active key, then backs off. */
  #offer(device: DeviceEntry, conn: Connection, now: number, out: HubAction[]): void {
    const pending = device.pending;
    if (pending === undefined) return;
    // HK3/HK4: the identical offer every time (rules H1, H4).
    const offer: Message =
      pending.dh === undefined ? { type: MessageType.REKEY, newKeyId: pending.id, newKey: pending.key } : { type: MessageType.REKEY_DH, newKeyId: pending.id, hubShare: pending.dh.publicKey };
    this.#sendSealed(conn, offer, now, out);
    out.push(event({ type: 'keyOffered', deviceId: device.id, id: pending.id }));
    device.nextOfferAt = now + backoffDelayMs(device.offerAttempt++, this.#timing.rekeyRetryInitialMs, this.#timing.rekeyRetryMaxMs, this.#random);
  }

  #flushOutbox(device: DeviceEntry, now: number, out: HubAction[]): void {
    const conn = this.#establishedConnection(device);
    if (conn === undefined) return;
    for (const entry of device.channel.takeUnsent()) {
      this.#sendSealed(conn, { type: MessageType.DATA, streamId: device.channel.streamId, messageId: entry.messageId, payload: entry.payload }, now, out);
    }
  }

  /** Everything the hub sends is sealed under the device's active key (rule H2). */
  #sendSealed(conn: Connection, message: Message, _now: number, out: HubAction[]): void {
    const device = conn.device;
    if (device === undefined || this.#connections.get(conn.id) !== conn) return;
    if (conn.sequenceOut > MAX_SEQUENCE) {
      this.#close(conn, new LockstepError('BAD_SEQUENCE', 'sequence space exhausted'), out);
      return;
    }
    const frame = sealFrame({
      aead: this.#aead,
      key: device.active.key,
      iv: this.#randomBytes(IV_BYTES),
      header: { fromHub: true, deviceId: device.idBytes, keyId: device.active.id, sequence: conn.sequenceOut++, sessionId: conn.hubNonce },
      message,
    });
    out.push({ type: 'transmit', connection: conn.id, bytes: withLengthPrefix(frame) });
  }

  #establishedConnection(device: DeviceEntry): Connection | undefined {
    if (device.connection === undefined) return undefined;
    const conn = this.#connections.get(device.connection);
    return conn?.state === 'established' ? conn : undefined;
  }

  /**
   * HS3: before the HELLO authenticates, any bad frame ends the connection; HS6: after, MAX_REJECTED_FRAMES in a row are tolerated.
   * HS13: in a recovery handshake any bad frame ends it (reported for the host's per-source limit while the device is unauthenticated).
   */
  #reject(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push(event({ type: 'rejected', connection: conn.id, ...(conn.device ? { deviceId: conn.device.id } : {}), error }));
    this.#reportUnauthenticated(conn, error, out);
    if (conn.state !== 'established' || ++conn.rejectedFrames > MAX_REJECTED_FRAMES) this.#close(conn, error, out);
  }

  #reportUnauthenticated(conn: Connection, error: LockstepError, out: HubAction[]): void {
    const phase = conn.recovery?.phase;
    if (phase === 'init' || phase === 'finish') out.push(event({ type: 'recoveryUnauthenticated', connection: conn.id, stage: phase, code: error.code }));
  }

  /** HS4 / HS5 / HS13. */
  #timedOut(conn: Connection, eventName: HubConnectionEvent, out: HubAction[]): void {
    const row = requireHubConnectionRow(conn.state, eventName);
    const error = new LockstepError('TIMEOUT', `${row.id}: ${eventName === 'handshakeTimeout' ? 'handshake' : 'idle'}`);
    this.#reportUnauthenticated(conn, error, out);
    this.#close(conn, error, out);
  }

  #close(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push({ type: 'close', connection: conn.id, error });
    this.#forget(conn, out);
  }

  #forget(conn: Connection, out: HubAction[]): void {
    if (this.#connections.get(conn.id) !== conn) return;
    this.#connections.delete(conn.id);
    conn.state = requireHubConnectionRow(conn.state, 'closed').next;
    conn.held = undefined;
    // R6: the handshake's secrets end with the connection (e_h and k1 were wiped when RECOVER_REPLY was built).
    const recovery = conn.recovery;
    if (recovery !== undefined) {
      conn.recovery = undefined;
      wipeSecrets(recovery);
      const recovering = recovery.device;
      if (recovering !== undefined && recovering.recoveryConnection === conn.id) {
        recovering.recoveryConnection = undefined;
        recovering.recoveryWaiting = false;
      }
    }
    const device = conn.device;
    if (device !== undefined && device.connection === conn.id) {
      device.connection = undefined;
      out.push(event({ type: 'deviceDisconnected', deviceId: device.id, connection: conn.id }));
    }
    // A deferred message of this connection stays: the promotion completes when
    // persisted, and #pendingPromoted drops the reply to a connection that is gone.
  }

  #device(deviceId: string): DeviceEntry {
    const device = this.#devices.get(deviceId.toLowerCase());
    if (device === undefined) throw new LockstepError('UNKNOWN_DEVICE', deviceId);
    return device;
  }

  #randomBytes(length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.#random.fill(bytes);
    return bytes;
  }
}

function event(value: HubEvent): HubAction {
  return { type: 'event', event: value };
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function wipeSecrets(recovery: RecoveryHandshake): void {
  recovery.secrets?.macKey.fill(0);
  recovery.secrets?.recoveredKey.fill(0);
  recovery.secrets = undefined;
}

/** The statuses a host may decide (IN_SYNC is the core's own answer: it needs the check, R4). */
const HOST_STATUSES: ReadonlySet<number> = new Set([RecoveryStatus.ACCEPTED, RecoveryStatus.AWAITING_APPROVAL, RecoveryStatus.REFUSED, RecoveryStatus.RATE_LIMITED, RecoveryStatus.KEY_IDS_EXHAUSTED]);

/** Validates the hub's static keys (each public key must be its private key's) and copies them. */
function checkRecoveryConfig(config: HubRecoveryConfig, primitives: KeyAgreementPrimitives): { keys: ReadonlyMap<number, HubStaticKey>; current: HubStaticKey } {
  const keys = new Map<number, HubStaticKey>();
  for (const key of config.hubKeys) {
    if (!isU32(key.id)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a hub static id is a u32');
    if (keys.has(key.id)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `hub static id ${key.id} appears twice`);
    if (key.privateKey.length !== 32 || key.publicKey.length !== KEY_SHARE_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', `hub static key ${key.id}: 32-byte X25519 keys`);
    const derived = primitives.x25519PublicKey(key.privateKey);
    if (!bytesEqual(derived, key.publicKey)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `hub static key ${key.id}: the public key is not the private key's`);
    keys.set(key.id, { id: key.id, privateKey: key.privateKey.slice(), publicKey: key.publicKey.slice() });
  }
  const current = keys.get(config.currentHubStaticId);
  if (current === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', `the current hub static id ${config.currentHubStaticId} names no key`);
  return { keys, current };
}

export function parseDeviceId(deviceId: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fromHex(deviceId);
  } catch {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id must be hex');
  }
  if (bytes.length !== DEVICE_ID_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id must be 16 hex digits');
  return bytes;
}



