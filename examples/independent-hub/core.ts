// An independent Lockstep 1.1 hub, written from docs/PROTOCOL.md alone: classic and dh modes over TCP.
// One process; durable state in one JSON file (store.ts), written synchronously before every action
// the device can observe, so "persist before acting" holds across a kill -9 and input is never
// processed while a write is outstanding (§8.6 holds trivially: the event loop is blocked).
import { randomBytes, randomInt } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import {
  DEFINED_TYPES, FLAG_FROM_HUB, FLAG_KEY_SHARE, HEADER_BYTES, MAX_FRAME_BYTES, Rejection, SHARE_BYTES, T, UNSEALED_TYPES,
  WIRE_ERROR, aeadOpen, bodyLengthValid, decodeHeader, encodeHeader, deriveDhKey, sealFrame, unsealedFrame, x25519, x25519Public, type Header,
} from './wire';
import { Store, loadOrCreateKek, type DeviceRecord } from './store';
import { checkImport } from './provisioning';
import { STATUS, checkOf, equal, replyKeys, tag3Of, tag4Of, verifyInit, type InitCheck } from './recovery';

export const IDLE_TIMEOUT_MIN_MS = 45_000;
export const HANDSHAKE_TIMEOUT_MIN_MS = 10_000;
export const HANDSHAKE_TIMEOUT_MAX_MS = 60_000;
export const REKEY_RETRY_INITIAL_MS = 2_000;
export const REKEY_RETRY_MAX_MS = 30_000;
export const MAX_REJECTED_FRAMES = 8;
const OUTBOX_LIMIT = 8;
const REMEMBERED_STREAMS = 4;
const MAX_QUEUED_OUTPUT_BYTES = 256 * 1024;
const LAST_ID = 0xffffffff;
const MAX_CONNECTIONS = 4096;
const LOG_BUDGET_PER_SECOND = 200;
const SOURCE_BURST = 60;
const SOURCE_RATE = 10; // tokens a second

export interface HubOptions {
  statePath: string;
  /** The KEK file (64 hex digits, created 0600 when absent); default `<statePath>.kek`. */
  kekPath?: string;
  port?: number;
  host?: string;
  idleTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  /** Rotate every device this often (0: only on command). */
  rotateEveryMs?: number;
  /** Apply HK11 (move a classic device that refuses with REKEY_MODE_MISMATCH to dh). Default on. */
  applyHk11?: boolean;
  /** Hub static keys for recovery (§12), by hub static id: 32-byte X25519 private keys. None: no recovery. */
  staticKeys?: Map<number, Buffer>;
  /** The recovery policy for devices without one of their own (§12.7); default auto with static keys, else off. */
  recoveryPolicy?: 'auto' | 'approve' | 'off';
  /** Accepted recoveries per device per hour (H-RATE-1). */
  recoveriesPerHour?: number;
  log?: (event: Record<string, unknown>) => void;
  /** Called with every DATA delivered to the application. */
  onDeliver?: (deviceId: string, payload: Buffer) => void;
}

type ConnState = 'awaitingHello' | 'awaitingRecoverInit' | 'awaitingRecoverFinish' | 'established' | 'closed';

interface Connection {
  id: number;
  socket: Socket;
  nh: Buffer;
  state: ConnState;
  deviceId?: string;
  deviceIdBytes?: Buffer;
  expectedSeq: number; // next device → hub seq
  nextSendSeq: number; // next hub → device seq
  rejected: number; // consecutive rejections
  input: Buffer;
  skip: number; // bytes of an out-of-range frame still to skip (W-FRAME-3)
  handshakeTimer?: NodeJS.Timeout;
  idleTimer?: NodeJS.Timeout;
  reofferTimer?: NodeJS.Timeout;
  reofferCount: number;
  recoveryDeviceId?: Buffer; // the HELLO's device id, bound by NO_KEY (HS9)
  recovery?: { init: InitCheck; ed: Buffer; check: Buffer; n: number; exhausted: boolean; m: Buffer; kN: Buffer };
}

interface DeviceRuntime {
  connection?: Connection;
  rotateQueued: boolean;
  streamId: Buffer;
  nextMessageId: number;
  outbox: { id: number; payload: Buffer }[];
  received: Map<string, number>; // sender stream → last delivered id, least recent first
  refusalReported: boolean;
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

export class IndependentHub {
  readonly store: Store;
  readonly #options: Required<Omit<HubOptions, 'onDeliver' | 'log' | 'kekPath' | 'staticKeys'>> & Pick<HubOptions, 'onDeliver'>;
  readonly #log: (event: Record<string, unknown>) => void;
  readonly #runtime = new Map<string, DeviceRuntime>();
  readonly #connections = new Set<Connection>();
  #server?: Server;
  #rotateTimer?: NodeJS.Timeout;
  #nextConnectionId = 1;
  readonly #staticKeys = new Map<number, { priv: Buffer; pub: Buffer }>();
  readonly #sourceBuckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: HubOptions) {
    const idle = options.idleTimeoutMs ?? IDLE_TIMEOUT_MIN_MS;
    const handshake = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MIN_MS;
    if (!(idle >= IDLE_TIMEOUT_MIN_MS)) throw new Error(`idle timeout must be at least ${IDLE_TIMEOUT_MIN_MS} ms (H-TIMER-1)`);
    if (!(handshake >= HANDSHAKE_TIMEOUT_MIN_MS && handshake <= HANDSHAKE_TIMEOUT_MAX_MS)) {
      throw new Error(`handshake timeout must be within ${HANDSHAKE_TIMEOUT_MIN_MS}…${HANDSHAKE_TIMEOUT_MAX_MS} ms (H-TIMER-2)`);
    }
    this.#options = {
      statePath: options.statePath, port: options.port ?? 7700, host: options.host ?? '127.0.0.1',
      idleTimeoutMs: idle, handshakeTimeoutMs: handshake, rotateEveryMs: options.rotateEveryMs ?? 0,
      applyHk11: options.applyHk11 ?? true, onDeliver: options.onDeliver,
      recoveryPolicy: options.recoveryPolicy ?? (options.staticKeys?.size ? 'auto' : 'off'), recoveriesPerHour: options.recoveriesPerHour ?? 3,
    };
    for (const [id, priv] of options.staticKeys ?? []) {
      if (priv.length !== 32 || !Number.isInteger(id) || id < 1 || id > LAST_ID) throw new Error(`static key ${id}: bad id or length`);
      this.#staticKeys.set(id, { priv: Buffer.from(priv), pub: x25519Public(priv) });
    }
    if (options.recoveryPolicy && options.recoveryPolicy !== 'off' && this.#staticKeys.size === 0) throw new Error('recovery needs at least one hub static key');
    const sink = options.log ?? ((event) => process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), ...event })}\n`));
    // Bounded log volume under any input: events an unauthenticated peer can cause share a budget of
    // LOG_BUDGET_PER_SECOND lines; what is over it is counted and reported once the budget refills.
    let budget = LOG_BUDGET_PER_SECOND;
    let budgetAt = Date.now();
    let suppressed = 0;
    this.#log = (event) => {
      if (event.event === 'rejected' || event.event === 'closed' || event.event === 'recoveryNeeded') {
        const now = Date.now();
        budget = Math.min(LOG_BUDGET_PER_SECOND, budget + ((now - budgetAt) / 1000) * LOG_BUDGET_PER_SECOND);
        budgetAt = now;
        if (budget < 1) {
          suppressed++;
          return;
        }
        budget -= 1;
        if (suppressed > 0) {
          sink({ event: 'log-suppressed', lines: suppressed });
          suppressed = 0;
        }
      }
      sink(event);
    };
    this.store = new Store(options.statePath, loadOrCreateKek(options.kekPath ?? `${options.statePath}.kek`));
  }

  // ---------- operator commands ----------

  importRecords(text: string): number {
    const records = checkImport(text, new Set(this.store.deviceIds()));
    this.store.commit((state) => {
      for (const record of records) state.devices[record.deviceId] = record;
    });
    for (const record of records) {
      if (record.deviceId === '0000000000000000') this.#log({ event: 'warning', message: 'device id all zero (§14: SHOULD NOT)' });
    }
    this.#log({ event: 'imported', devices: records.length });
    return records.length;
  }

  importFile(path: string): number {
    return this.importRecords(readFileSync(path, 'utf8'));
  }

  /** HK1 / HK2 / H-KEY-2. Returns what happened. */
  rotate(deviceId: string): 'started' | 'queued' | 'exhausted' | 'unknown' | 'failed' {
    const record = this.store.device(deviceId);
    if (!record) return 'unknown';
    if (record.active.id === LAST_ID || record.pending?.id === LAST_ID) {
      this.#log({ event: 'rotate-refused', device: deviceId, code: 'LOCAL_KEY_IDS_EXHAUSTED' });
      return 'exhausted';
    }
    const runtime = this.#rt(deviceId);
    if (record.pending) {
      runtime.rotateQueued = true; // HK2: never replace an unconfirmed pending key
      return 'queued';
    }
    return this.#startRotation(record) ? 'started' : 'failed';
  }

  rotateAll(): void {
    for (const id of this.store.deviceIds()) this.rotate(id);
  }

  /** §11.6: classic → dh only, never back (H-DH-6). */
  setMode(deviceId: string, mode: 'classic' | 'dh'): void {
    const record = this.store.device(deviceId);
    if (!record) throw new Error(`unknown device ${deviceId}`);
    if (mode === 'classic' && record.mode === 'dh') throw new Error('LOCAL_BAD_ARGUMENT: a device never moves back to classic (H-DH-6)');
    if (record.mode === mode) return;
    this.store.commit((state) => {
      state.devices[deviceId]!.mode = 'dh';
    });
  }

  /** Queue an application message to a device (§7). */
  send(deviceId: string, payload: Buffer): number {
    if (!this.store.device(deviceId)) throw new Error(`unknown device ${deviceId}`);
    if (payload.length > 1024) throw new Error('LOCAL_BAD_ARGUMENT: payload over 1024 bytes');
    const runtime = this.#rt(deviceId);
    if (runtime.outbox.length >= OUTBOX_LIMIT) throw new Error('LOCAL_OUTBOX_FULL');
    if (runtime.nextMessageId > LAST_ID) throw new Error('LOCAL_OUTBOX_FULL: stream exhausted');
    const id = runtime.nextMessageId++;
    runtime.outbox.push({ id, payload });
    const conn = runtime.connection;
    if (conn?.state === 'established') this.#sendData(conn, id, payload);
    return id;
  }

  status(): Record<string, unknown>[] {
    return this.store.deviceIds().map((id) => {
      const r = this.store.device(id)!;
      return {
        device: id, mode: r.mode, active: r.active.id, pending: r.pending?.id ?? null, pendingKind: r.pending?.kind ?? null,
        connected: this.#runtime.get(id)?.connection?.state === 'established',
      };
    });
  }

  // ---------- server ----------

  listen(): Promise<number> {
    const server = createServer((socket) => this.#accept(socket));
    server.maxConnections = MAX_CONNECTIONS; // unauthenticated connections cost bounded memory
    this.#server = server;
    if (this.#options.rotateEveryMs > 0) {
      this.#rotateTimer = setInterval(() => this.rotateAll(), this.#options.rotateEveryMs);
    }
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host, () => {
        const address = server.address();
        const port = typeof address === 'object' && address ? address.port : this.#options.port;
        this.#log({ event: 'listening', host: this.#options.host, port });
        resolve(port);
      });
    });
  }

  async close(): Promise<void> {
    if (this.#rotateTimer) clearInterval(this.#rotateTimer);
    for (const conn of [...this.#connections]) this.#close(conn, 'hub stopping');
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  #rt(deviceId: string): DeviceRuntime {
    let runtime = this.#runtime.get(deviceId);
    if (!runtime) {
      // The hub's stream towards this device starts when the hub starts (W-DATA-1).
      runtime = { rotateQueued: false, streamId: randomBytes(8), nextMessageId: 1, outbox: [], received: new Map(), refusalReported: false };
      this.#runtime.set(deviceId, runtime);
    }
    return runtime;
  }

  #accept(socket: Socket): void {
    socket.setNoDelay(true);
    const conn: Connection = {
      id: this.#nextConnectionId++, socket, nh: randomBytes(16), state: 'awaitingHello', expectedSeq: 0, nextSendSeq: 0,
      rejected: 0, input: Buffer.alloc(0), skip: 0, reofferCount: 0,
    };
    this.#connections.add(conn);
    socket.on('data', (chunk: Buffer) => this.#onData(conn, chunk));
    socket.on('error', () => this.#close(conn, 'socket error'));
    socket.on('close', () => this.#close(conn, 'peer closed'));
    // H-SESSION-1: CHALLENGE at once, unsealed, device id zero, key id 0, seq 0.
    this.#write(conn, unsealedFrame({
      version: 1, type: T.CHALLENGE, flags: FLAG_FROM_HUB, deviceId: Buffer.alloc(8), keyId: 0, seq: 0, sessionId: conn.nh,
    }));
    conn.nextSendSeq = 1;
    conn.handshakeTimer = setTimeout(() => this.#close(conn, 'handshake timeout (HS4)'), this.#options.handshakeTimeoutMs);
  }

  /** Closes at once; `flush` lets the bytes already written (RECOVER_RESULT) leave first. */
  #close(conn: Connection, reason: string, flush = false): void {
    if (conn.state === 'closed') return;
    conn.state = 'closed';
    clearTimeout(conn.handshakeTimer);
    clearTimeout(conn.idleTimer);
    clearTimeout(conn.reofferTimer);
    this.#connections.delete(conn);
    if (conn.deviceId) {
      const runtime = this.#runtime.get(conn.deviceId);
      if (runtime?.connection === conn) delete runtime.connection;
    }
    if (flush) {
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 2_000).unref();
    } else {
      conn.socket.destroy();
    }
    this.#log({ event: 'closed', connection: conn.id, device: conn.deviceId ?? null, reason });
  }

  #write(conn: Connection, bytes: Buffer): void {
    if (conn.state === 'closed') return;
    if (conn.socket.writableLength > MAX_QUEUED_OUTPUT_BYTES) {
      this.#close(conn, 'peer does not read (output bound)');
      return;
    }
    conn.socket.write(bytes);
  }

  // ---------- framing (§2) ----------

  #onData(conn: Connection, chunk: Buffer): void {
    conn.input = conn.input.length === 0 ? chunk : Buffer.concat([conn.input, chunk]);
    while (conn.state !== 'closed') {
      if (conn.skip > 0) {
        const n = Math.min(conn.skip, conn.input.length);
        conn.skip -= n;
        conn.input = conn.input.subarray(n);
        if (conn.skip > 0) break;
      }
      if (conn.input.length < 2) break;
      const length = conn.input.readUInt16BE(0);
      if (length < HEADER_BYTES || length > MAX_FRAME_BYTES) {
        // W-FRAME-2/3: never allocate it; skip it (the stream stays parseable) and count it as rejected.
        conn.input = conn.input.subarray(2);
        conn.skip = length;
        this.#rejected(conn, new Rejection(length < HEADER_BYTES ? 'FRAME_TOO_SHORT' : 'FRAME_TOO_LONG', `length ${length}`), undefined);
        continue;
      }
      if (conn.input.length < 2 + length) break;
      const frame = Buffer.from(conn.input.subarray(2, 2 + length));
      conn.input = conn.input.subarray(2 + length);
      this.#onFrame(conn, frame);
    }
    conn.input = Buffer.from(conn.input); // own the partial frame's bytes, not the whole chunk
  }

  // ---------- the receive order (§4) ----------

  #onFrame(conn: Connection, frame: Buffer): void {
    const header = decodeHeader(frame);
    let opened: { body: Buffer; underPending: boolean; derivedKey?: Buffer; unsealed?: boolean };
    try {
      opened = this.#check(conn, frame, header);
    } catch (error) {
      if (error instanceof Rejection) {
        this.#rejected(conn, error, header);
        return;
      }
      throw error;
    }
    // Accepted (W-CHECK-1): seq advances, the idle timer and the rejection count reset.
    conn.rejected = 0;
    conn.expectedSeq++;
    this.#resetIdle(conn);
    if (opened.unsealed) this.#onRecoveryFrame(conn, header, frame);
    else this.#act(conn, header, opened.body, opened.underPending, opened.derivedKey);
  }

  #rejected(conn: Connection, rejection: Rejection, header: Header | undefined): void {
    this.#log({ event: 'rejected', connection: conn.id, device: conn.deviceId ?? null, code: rejection.code, type: header?.type ?? null });
    if (conn.state === 'awaitingHello') {
      // HS9: a HELLO with seq 0 and this session's Nh failing at step 3 (unknown device), 4 or 5.
      if (rejection.recoverable && header?.type === T.HELLO && header.seq === 0 && header.sessionId.equals(conn.nh)) {
        this.#answerNoKey(conn, header, rejection.code);
        return;
      }
      this.#close(conn, `rejected before HELLO (HS3, H-REJECT-1): ${rejection.code}`);
      return;
    }
    if (conn.state === 'awaitingRecoverInit' || conn.state === 'awaitingRecoverFinish') {
      this.#close(conn, `recovery: ${rejection.code} (HS13)`);
      return;
    }
    conn.rejected++;
    if (conn.rejected > MAX_REJECTED_FRAMES) this.#close(conn, 'rejection limit (W-REJECT-1)');
  }

  #check(conn: Connection, frame: Buffer, h: Header): { body: Buffer; underPending: boolean; derivedKey?: Buffer; unsealed?: boolean } {
    // Step 1: header fields.
    if (h.version !== 1) throw new Rejection('BAD_VERSION', `${h.version}`);
    if (!DEFINED_TYPES.has(h.type)) throw new Rejection('UNKNOWN_TYPE', `${h.type}`);
    if ((h.flags & ~(FLAG_FROM_HUB | FLAG_KEY_SHARE)) !== 0) throw new Rejection('BAD_HEADER', 'reserved flag');
    const hasShare = (h.flags & FLAG_KEY_SHARE) !== 0;
    if (hasShare && ((h.flags & FLAG_FROM_HUB) !== 0 || UNSEALED_TYPES.has(h.type))) throw new Rejection('BAD_HEADER', 'key share placement (W-HDR-6)');
    // Step 2: direction, then a row for the type in this state.
    if ((h.flags & FLAG_FROM_HUB) !== 0) throw new Rejection('BAD_HEADER', 'reflected frame (W-HDR-4)');
    const allowed = conn.state === 'awaitingHello' ? h.type === T.HELLO
      : conn.state === 'awaitingRecoverInit' ? h.type === T.RECOVER_INIT
      : conn.state === 'awaitingRecoverFinish' ? h.type === T.RECOVER_FINISH
      : h.type === T.DATA || h.type === T.DATA_ACK || h.type === T.PING || h.type === T.PONG || h.type === T.ERROR || h.type === T.REKEY_ACK || h.type === T.ENROL_ACK;
    if (!allowed) throw new Rejection('UNEXPECTED_MESSAGE', `type ${h.type} in ${conn.state}`);
    // Step 3: session binding.
    const deviceId = hex(h.deviceId);
    if (conn.state === 'awaitingHello') {
      if (!this.store.device(deviceId)) throw new Rejection('UNKNOWN_DEVICE', deviceId, true);
    } else if (conn.state === 'awaitingRecoverInit' || conn.state === 'awaitingRecoverFinish') {
      if (!h.deviceId.equals(conn.recoveryDeviceId!)) throw new Rejection('BAD_HEADER', 'foreign device id');
    } else if (deviceId !== conn.deviceId) {
      throw new Rejection('BAD_HEADER', 'foreign device id');
    }
    if (!h.sessionId.equals(conn.nh)) throw new Rejection('BAD_SESSION', 'session id');
    if (h.seq !== conn.expectedSeq) throw new Rejection('BAD_SEQUENCE', `${h.seq} ≠ ${conn.expectedSeq}`);
    if (UNSEALED_TYPES.has(h.type)) {
      // Unsealed recovery frames: their exact length, then their own tags (checked where they are used).
      if (h.keyId !== 0) throw new Rejection('BAD_HEADER', 'key id of an unsealed frame (W-HDR-7)');
      const exact = h.type === T.RECOVER_INIT ? 128 : 68;
      if (frame.length !== exact) throw new Rejection('BAD_PAYLOAD', `recovery frame of ${frame.length} bytes (W-REC-1)`);
      return { body: frame.subarray(HEADER_BYTES), underPending: false, unsealed: true };
    }
    // Sealed-frame minimum length (§4: a receiver MAY check it before step 5, same code).
    const aadLength = HEADER_BYTES + (hasShare ? SHARE_BYTES : 0);
    if (frame.length < aadLength + 16 + 16 + 32) throw new Rejection('FRAME_TOO_SHORT', `sealed frame of ${frame.length}`);
    const share = hasShare ? frame.subarray(HEADER_BYTES, HEADER_BYTES + SHARE_BYTES) : undefined;
    // Step 4: the key id names a key held for this device.
    const record = this.store.device(deviceId)!;
    let key: Buffer;
    let underPending = false;
    let derivedKey: Buffer | undefined;
    if (h.keyId !== 0 && h.keyId === record.active.id) {
      key = Buffer.from(record.active.key, 'hex');
    } else if (h.keyId !== 0 && record.pending && h.keyId === record.pending.id) {
      underPending = true;
      if (record.pending.kind === 'classic') {
        key = Buffer.from(record.pending.key!, 'hex');
      } else {
        // HK8: derive the dh pending key from the frame's share.
        if (!share) throw new Rejection('BAD_HEADER', 'frame under a dh pending key without a share (HK8)', true);
        const z = x25519(Buffer.from(record.pending.h!, 'hex'), share);
        if (!z) throw new Rejection('BAD_KEY_SHARE', 'all-zero X25519 result');
        derivedKey = deriveDhKey(Buffer.from(record.active.key, 'hex'), z, h.deviceId, record.pending.id, Buffer.from(record.pending.H!, 'hex'), share);
        key = derivedKey;
      }
    } else {
      throw new Rejection('UNKNOWN_KEY_ID', `${h.keyId}`, true);
    }
    // Step 5: tag in constant time, then decrypt and padding — all AUTH_FAILED (wire.ts).
    let body: Buffer;
    try {
      body = aeadOpen(key, frame.subarray(0, aadLength), frame.subarray(aadLength));
    } catch (error) {
      if (error instanceof Rejection) throw new Rejection(error.code, error.message, true);
      throw error;
    }
    // Step 6: body length and content.
    if (!bodyLengthValid(h.type, body.length)) throw new Rejection('BAD_PAYLOAD', `body of ${body.length} bytes for type ${h.type}`);
    if (h.type === T.REKEY_ACK && body.readUInt32BE(0) !== h.keyId) throw new Rejection('BAD_PAYLOAD', 'REKEY_ACK id ≠ header key id (W-MSG-2)');
    return derivedKey ? { body, underPending, derivedKey } : { body, underPending };
  }

  // ---------- acting on accepted frames (§8.2) ----------

  #act(conn: Connection, h: Header, body: Buffer, underPending: boolean, derivedKey: Buffer | undefined): void {
    const deviceId = hex(h.deviceId);
    if (h.type === T.HELLO) {
      this.#onHello(conn, h, body, underPending, derivedKey);
      return;
    }
    if (underPending) {
      // HK5 on any device frame under P: persist the promotion, then CONFIRM(P) under P.
      const promotedId = h.keyId;
      if (!this.#promote(deviceId, derivedKey)) return;
      this.#sendSealed(conn, T.CONFIRM, u32(promotedId));
      this.#afterPromotion(conn);
      if (h.type === T.REKEY_ACK) return; // H-CONFIRM-4: exactly one CONFIRM answers the promoting REKEY_ACK
    }
    switch (h.type) {
      case T.REKEY_ACK: {
        // HK6: a REKEY_ACK of the active key (a re-offer crossed the promotion): CONFIRM(A) again.
        this.#sendSealed(conn, T.CONFIRM, u32(h.keyId));
        return;
      }
      case T.DATA:
        this.#onDeviceData(conn, deviceId, body);
        return;
      case T.DATA_ACK: {
        const runtime = this.#rt(deviceId);
        if (body.subarray(0, 8).equals(runtime.streamId)) {
          const upTo = body.readUInt32BE(8);
          runtime.outbox = runtime.outbox.filter((m) => m.id > upTo); // W-DATA-5
        }
        return;
      }
      case T.PING:
        this.#sendSealed(conn, T.PONG, Buffer.alloc(0));
        return;
      case T.PONG:
        return;
      case T.ERROR:
        this.#onDeviceError(conn, deviceId, h, body);
        return;
      case T.ENROL_ACK: {
        // This hub never sends ENROL. HE2: an ENROL_ACK that would change an enrolled S_d gets
        // STATIC_KEY_LOCKED; H-ENROL-3: any other that answers no ENROL of this session gets
        // UNEXPECTED_MESSAGE. (HE2 also names "arrives unarmed" for code 10: SPEC-FINDINGS.md §8.)
        // Detail: the hub static id the ENROL_ACK names. Nothing changes.
        const record = this.store.device(deviceId)!;
        const offered = hex(body.subarray(4, 36));
        if (record.devicePublicKey === offered && record.hubStaticId === body.readUInt32BE(0)) {
          // The enrolled credential acknowledged again: an idempotent repeat, answered with nothing
          // (what the conformance kit expects; H-ENROL-3 read literally says ERROR 5: SPEC-FINDINGS §8).
          this.#log({ event: 'repeated-enrol-ack', device: deviceId });
          return;
        }
        const changesEnrolled = record.devicePublicKey !== undefined;
        const error = Buffer.alloc(6);
        error.writeUInt16BE(changesEnrolled ? WIRE_ERROR.STATIC_KEY_LOCKED : WIRE_ERROR.UNEXPECTED_MESSAGE, 0);
        body.copy(error, 2, 0, 4);
        this.#log({ event: 'unexpected-enrol-ack', device: deviceId, hubStaticId: body.readUInt32BE(0), code: error.readUInt16BE(0) });
        this.#sendSealed(conn, T.ERROR, error);
        return;
      }
    }
  }

  #onHello(conn: Connection, h: Header, body: Buffer, underPending: boolean, derivedKey: Buffer | undefined): void {
    const deviceId = hex(h.deviceId);
    const current = this.store.device(deviceId)!;
    if (!underPending && current.pending && current.pending.id !== current.active.id + 1) {
      // HS2 amended (finding F4): a recovered pending N ≠ A + 1 never gets a session under A; the
      // HELLO is answered like a failing one (HS9, reason unusablePending).
      this.#answerNoKey(conn, h, 'unusablePending');
      return;
    }
    clearTimeout(conn.handshakeTimer);
    const runtime = this.#rt(deviceId);
    // H-SESSION-3: close the device's older connection.
    if (runtime.connection && runtime.connection !== conn) this.#close(runtime.connection, 'superseded by a new session (H-SESSION-3)');
    conn.deviceId = deviceId;
    conn.deviceIdBytes = Buffer.from(h.deviceId);
    conn.state = 'established';
    runtime.connection = conn;
    this.#resetIdle(conn);
    this.#log({
      event: 'session', connection: conn.id, device: deviceId, keyId: h.keyId,
      reportedActive: body.readUInt32BE(16), reportedFuture: body.readUInt32BE(20), // H-HELLO-1: reported, never checked
    });
    if (underPending && !this.#promote(deviceId, derivedKey)) return; // HK5 before the WELCOME, which is then under P
    const welcome = Buffer.alloc(20);
    body.copy(welcome, 0, 0, 16);
    welcome.writeUInt32BE(this.store.device(deviceId)!.active.id, 16);
    this.#sendSealed(conn, T.WELCOME, welcome);
    // HK4: offer the pending key right after the WELCOME; the backoff starts at n = 0. (A rotation
    // queued behind the key this HELLO promoted starts now and offers itself.)
    conn.reofferCount = 0;
    if (underPending) this.#startQueuedRotation(deviceId);
    if (this.store.device(deviceId)?.pending && !conn.reofferTimer) this.#offer(conn);
    for (const message of runtime.outbox) this.#sendData(conn, message.id, message.payload); // W-DATA-2
  }

  #onDeviceData(conn: Connection, deviceId: string, body: Buffer): void {
    const runtime = this.#rt(deviceId);
    const stream = hex(body.subarray(0, 8));
    const messageId = body.readUInt32BE(8);
    const last = runtime.received.get(stream);
    let highest: number;
    if (last === undefined || messageId > last) {
      runtime.received.delete(stream);
      runtime.received.set(stream, messageId);
      while (runtime.received.size > REMEMBERED_STREAMS) runtime.received.delete(runtime.received.keys().next().value!);
      highest = messageId;
      this.#log({ event: 'delivered', device: deviceId, stream, messageId, bytes: body.length - 12 });
      this.#options.onDeliver?.(deviceId, Buffer.from(body.subarray(12)));
    } else {
      highest = last; // a duplicate: acknowledged, not delivered (W-DATA-3/4)
      runtime.received.delete(stream);
      runtime.received.set(stream, last);
    }
    const ack = Buffer.alloc(12);
    body.copy(ack, 0, 0, 8);
    ack.writeUInt32BE(highest, 8);
    this.#sendSealed(conn, T.DATA_ACK, ack);
  }

  #onDeviceError(conn: Connection, deviceId: string, h: Header, body: Buffer): void {
    const code = body.readUInt16BE(0);
    const detail = body.readUInt32BE(2);
    this.#log({ event: 'peer-error', device: deviceId, code, detail }); // W-ERROR-1: reported; W-ERROR-2: never answered
    const record = this.store.device(deviceId)!;
    const runtime = this.#rt(deviceId);
    if (code === WIRE_ERROR.REKEY_MODE_MISMATCH && this.#options.applyHk11 && record.pending?.kind === 'classic'
      && detail === record.pending.id && h.keyId === record.active.id) {
      // HK11 (H-DH-7): one commit for mode dh and a dh pending P' = P with a fresh h; then REKEY_DH.
      const hPriv = randomBytes(32);
      const hPub = x25519Public(hPriv);
      try {
        this.store.commit((state) => {
          const d = state.devices[deviceId]!;
          d.mode = 'dh';
          d.pending = { id: record.pending!.id, kind: 'dh', h: hex(hPriv), H: hex(hPub) };
        });
      } catch (error) {
        this.#writeFailed(deviceId, error);
        return;
      } finally {
        hPriv.fill(0);
      }
      conn.reofferCount = 0;
      this.#offer(conn);
      return;
    }
    if (code === WIRE_ERROR.REKEY_ID_NOT_NEXT && record.pending && detail === record.pending.id
      && record.pending.id !== record.active.id + 1 && h.keyId === record.active.id) {
      // HK12 (H-REC-9): the device refuses a recovered N in a session under A: close; its next HELLO
      // under A gets NO_KEY (unusablePending) and a recovery replaces N.
      this.#log({ event: 'recoveryNeeded', device: deviceId, reason: 'rekeyRefused', pending: record.pending.id });
      this.#close(conn, 'recovered pending key refused (HK12)');
      return;
    }
    if ([WIRE_ERROR.REKEY_CONFLICT, WIRE_ERROR.REKEY_ID_NOT_NEWER, WIRE_ERROR.REKEY_ID_NOT_NEXT, WIRE_ERROR.REKEY_MODE_MISMATCH].includes(code as 2)) {
      if (!runtime.refusalReported) this.#log({ event: 'rekey-refused', device: deviceId, code, detail }); // once per episode; keep P (H1)
      runtime.refusalReported = true;
    }
  }

  // ---------- recovery (§12) ----------

  #policyOf(record: DeviceRecord | undefined): 'auto' | 'approve' | 'off' {
    return record?.recoveryPolicy ?? this.#options.recoveryPolicy;
  }

  /**
   * H-RATE-2: a token bucket per source address (burst SOURCE_BURST, SOURCE_RATE tokens a second), in
   * bounded memory (at most 10 000 addresses, least recently seen evicted). One token per NO_KEY and
   * per RECOVER_INIT check (two X25519 each): at most ~40 X25519 a second per address.
   */
  #takeSourceToken(conn: Connection): boolean {
    const source = conn.socket.remoteAddress ?? '?';
    const now = Date.now();
    let bucket = this.#sourceBuckets.get(source);
    if (bucket) {
      this.#sourceBuckets.delete(source); // re-inserted below: the map's order is least recent first
    } else {
      if (this.#sourceBuckets.size >= 10_000) this.#sourceBuckets.delete(this.#sourceBuckets.keys().next().value!);
      bucket = { tokens: SOURCE_BURST, at: now };
    }
    this.#sourceBuckets.set(source, bucket);
    bucket.tokens = Math.min(SOURCE_BURST, bucket.tokens + ((now - bucket.at) / 1000) * SOURCE_RATE);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** HS9: answer NO_KEY (seq 1), unsealed, or close (HS3) when recovery is off or the source is over its limit. */
  #answerNoKey(conn: Connection, h: Header, reason: string): void {
    const deviceId = hex(h.deviceId);
    const record = this.store.device(deviceId);
    // "Recovery not off" (HS9) is read as: this hub runs recovery at all (it holds a static key). A
    // device whose policy is off still gets NO_KEY and, after tag3, REFUSED (§12.7).
    if (this.#staticKeys.size === 0) {
      this.#close(conn, `HELLO failed (${reason}); no recovery on this hub (HS3)`);
      return;
    }
    if (!this.#takeSourceToken(conn)) {
      this.#close(conn, `HELLO failed (${reason}); source over its recovery limit (H-RATE-2)`);
      return;
    }
    if (record) this.#log({ event: 'recoveryNeeded', device: deviceId, reason, active: record.active.id, pending: record.pending?.id ?? null });
    clearTimeout(conn.handshakeTimer);
    conn.recoveryDeviceId = Buffer.from(h.deviceId);
    conn.state = 'awaitingRecoverInit';
    conn.expectedSeq = 1; // HELLO was device seq 0
    this.#write(conn, unsealedFrame({ version: 1, type: T.NO_KEY, flags: FLAG_FROM_HUB, deviceId: conn.recoveryDeviceId, keyId: 0, seq: 1, sessionId: conn.nh }));
    conn.nextSendSeq = 2;
    this.#restartStageTimer(conn);
  }

  #restartStageTimer(conn: Connection): void {
    clearTimeout(conn.handshakeTimer);
    conn.handshakeTimer = setTimeout(() => this.#close(conn, 'recovery stage timeout (HS13)'), this.#options.handshakeTimeoutMs);
  }

  #onRecoveryFrame(conn: Connection, h: Header, frame: Buffer): void {
    if (h.type === T.RECOVER_INIT) this.#onRecoverInit(conn, frame);
    else this.#onRecoverFinish(conn, frame);
  }

  /** HS10: verify tag1; draw e_h; N = max(A, P, active, future) + 1; RECOVER_REPLY. Nothing stored. */
  #onRecoverInit(conn: Connection, frame: Buffer): void {
    const deviceId = hex(conn.recoveryDeviceId!);
    const record = this.store.device(deviceId);
    const staticId = frame.readUInt32BE(68);
    const staticKey = this.#staticKeys.get(staticId);
    if (!record?.devicePublicKey || !staticKey) {
      this.#close(conn, 'RECOVER_INIT: unknown device, no device static key, or unknown hub static id (HS13)');
      return;
    }
    if (!this.#takeSourceToken(conn)) {
      this.#close(conn, 'RECOVER_INIT: source over its recovery limit (H-RATE-2)');
      return;
    }
    const devicePublic = Buffer.from(record.devicePublicKey, 'hex');
    const init = verifyInit(frame, staticKey.priv, staticKey.pub, devicePublic, conn.recoveryDeviceId!, conn.nh);
    if (!init) {
      this.#close(conn, 'RECOVER_INIT: tag1 (HS13)');
      return;
    }
    const ed = Buffer.from(frame.subarray(36, 68));
    const deviceActive = frame.readUInt32BE(72);
    const deviceFuture = frame.readUInt32BE(76);
    const highest = Math.max(record.active.id, record.pending?.id ?? 0, deviceActive, deviceFuture);
    const exhausted = highest >= LAST_ID;
    const n = exhausted ? LAST_ID : highest + 1;
    const eh = randomBytes(32);
    const ehPublic = x25519Public(eh);
    const hdr2 = encodeHeader({ version: 1, type: T.RECOVER_REPLY, flags: FLAG_FROM_HUB, deviceId: conn.recoveryDeviceId!, keyId: 0, seq: 2, sessionId: conn.nh });
    const m2 = Buffer.concat([hdr2, ehPublic, u32(n)]);
    const keys = replyKeys(init, eh, ed, devicePublic, m2);
    eh.fill(0); // e_h is not needed after the derivation (HS13: wiped)
    if (!keys) {
      this.#close(conn, 'RECOVER_INIT: all-zero X25519 (BAD_KEY_SHARE)');
      return;
    }
    conn.recovery = { init, ed, check: Buffer.from(frame.subarray(80, 96)), n, exhausted, m: Buffer.from(keys.m), kN: Buffer.from(keys.kN) };
    conn.state = 'awaitingRecoverFinish';
    this.#write(conn, unsealedFrame({ version: 1, type: T.RECOVER_REPLY, flags: FLAG_FROM_HUB, deviceId: conn.recoveryDeviceId!, keyId: 0, seq: 2, sessionId: conn.nh }, Buffer.concat([ehPublic, u32(n), keys.tag2])));
    conn.nextSendSeq = 3;
    this.#restartStageTimer(conn);
  }

  /** HS11 + HS12: tag3 authenticates the device; then the key, the policy and the limits decide. */
  #onRecoverFinish(conn: Connection, frame: Buffer): void {
    const rec = conn.recovery!;
    const deviceId = hex(conn.recoveryDeviceId!);
    if (!equal(tag3Of(rec.m, frame.subarray(0, 36)), frame.subarray(36, 68))) {
      this.#close(conn, 'RECOVER_FINISH: tag3 (HS13)');
      return;
    }
    clearTimeout(conn.handshakeTimer);
    const record = this.store.device(deviceId)!;
    const now = Date.now();
    let status: number;
    let retryAfter = 0;
    const matches = (keyHex: string) => equal(checkOf(Buffer.from(keyHex, 'hex'), conn.nh, rec.ed), rec.check);
    const pendingIsNext = !record.pending || record.pending.id === record.active.id + 1;
    const highestHeld = Math.max(record.active.id, record.pending?.id ?? 0);
    const recent = (record.recoveries ?? []).filter((t) => now - t < 3_600_000);
    const policy = this.#policyOf(record);
    let accept = false;
    if ((record.pending?.kind === 'classic' && matches(record.pending.key!)) || (pendingIsNext && matches(record.active.key))) {
      status = STATUS.IN_SYNC; // R4: the device seals with a key the hub holds; nothing changes
    } else if (rec.exhausted) {
      status = STATUS.KEY_IDS_EXHAUSTED;
      retryAfter = 3600;
    } else if (policy === 'off') {
      status = STATUS.REFUSED;
      retryAfter = 3600;
    } else if (policy === 'approve' && !record.recoveryApproved) {
      status = STATUS.AWAITING_APPROVAL;
      retryAfter = 60;
    } else if (recent.length >= this.#options.recoveriesPerHour) {
      status = STATUS.RATE_LIMITED;
      retryAfter = Math.max(1, Math.ceil((recent[0]! + 3_600_000 - now) / 1000));
    } else if (!(rec.n > highestHeld)) {
      // R3 recheck: the scheduler moved since RECOVER_REPLY (a rotation made P ≥ N); try again soon.
      status = STATUS.RATE_LIMITED;
      retryAfter = 1;
    } else {
      status = STATUS.ACCEPTED;
      accept = true;
    }
    try {
      this.store.commit((state) => {
        const d = state.devices[deviceId]!;
        if (accept) {
          // HK9: pending (N, K_N) in the classic form, replacing P; the approval is used up.
          d.pending = { id: rec.n, kind: 'classic', key: hex(rec.kN) };
          d.recoveries = [...recent, now];
          delete d.recoveryApproved;
          delete d.recoveryRequested;
        } else if (status === STATUS.AWAITING_APPROVAL) {
          d.recoveryRequested = true;
        }
      });
    } catch (error) {
      this.#writeFailed(deviceId, error);
      return;
    }
    this.#log({ event: 'recovery-decision', device: deviceId, status, n: rec.n, retryAfter }); // the audit trail
    const hdr4 = encodeHeader({ version: 1, type: T.RECOVER_RESULT, flags: FLAG_FROM_HUB, deviceId: conn.recoveryDeviceId!, keyId: 0, seq: 3, sessionId: conn.nh });
    const statusBytes = Buffer.alloc(6);
    statusBytes.writeUInt16BE(status, 0);
    statusBytes.writeUInt32BE(retryAfter, 2);
    const tag4 = tag4Of(rec.m, Buffer.concat([hdr4, statusBytes]));
    this.#write(conn, unsealedFrame({ version: 1, type: T.RECOVER_RESULT, flags: FLAG_FROM_HUB, deviceId: conn.recoveryDeviceId!, keyId: 0, seq: 3, sessionId: conn.nh }, Buffer.concat([statusBytes, tag4])));
    rec.m.fill(0);
    rec.kN.fill(0);
    delete conn.recovery;
    this.#close(conn, `recovery finished (status ${status})`, true); // R6: one handshake per connection
    if (accept) {
      this.#rt(deviceId).rotateQueued = false;
      const live = this.#runtime.get(deviceId)?.connection;
      if (live?.state === 'established') {
        live.reofferCount = 0; // §8.4: HK9 offers at once in a live session and restarts the backoff
        this.#offer(live);
      }
    }
  }

  approveRecovery(deviceId: string): void {
    if (!this.store.device(deviceId)) throw new Error(`unknown device ${deviceId}`);
    this.store.commit((state) => {
      state.devices[deviceId]!.recoveryApproved = true;
    });
  }

  setRecoveryPolicy(deviceId: string, policy: 'auto' | 'approve' | 'off'): void {
    if (!this.store.device(deviceId)) throw new Error(`unknown device ${deviceId}`);
    this.store.commit((state) => {
      state.devices[deviceId]!.recoveryPolicy = policy;
    });
  }

  // ---------- keys (§8.2 H-K) ----------

  #startRotation(record: DeviceRecord): boolean {
    const deviceId = record.deviceId;
    const nextId = record.active.id + 1; // H-REKEY-3
    let secret: Buffer;
    try {
      if (record.mode === 'dh') {
        secret = randomBytes(32); // h
        const pub = x25519Public(secret);
        this.store.commit((state) => {
          state.devices[deviceId]!.pending = { id: nextId, kind: 'dh', h: hex(secret), H: hex(pub) };
        });
      } else {
        secret = randomBytes(64); // H-KEY-1: OS CSPRNG
        this.store.commit((state) => {
          state.devices[deviceId]!.pending = { id: nextId, kind: 'classic', key: hex(secret) };
        });
      }
      secret.fill(0);
    } catch (error) {
      this.#writeFailed(deviceId, error);
      return false;
    }
    this.#rt(deviceId).refusalReported = false;
    this.#log({ event: 'rotation', device: deviceId, pending: nextId, mode: record.mode });
    const conn = this.#runtime.get(deviceId)?.connection;
    if (conn?.state === 'established') {
      conn.reofferCount = 0; // a new pending key offers at once and restarts the backoff (§8.4)
      this.#offer(conn);
    }
    return true;
  }

  #startQueuedRotation(deviceId: string): void {
    const runtime = this.#rt(deviceId);
    if (!runtime.rotateQueued) return;
    runtime.rotateQueued = false;
    this.rotate(deviceId);
  }

  /** HK5: persist the promotion (A deleted; a dh h erased in the same commit, H-DH-3). */
  #promote(deviceId: string, derivedKey: Buffer | undefined): boolean {
    try {
      this.store.commit((state) => {
        const d = state.devices[deviceId]!;
        const p = d.pending!;
        d.active = { id: p.id, key: p.kind === 'classic' ? p.key! : hex(derivedKey!) };
        if (p.kind === 'dh') d.mode = 'dh';
        delete d.pending;
      });
    } catch (error) {
      this.#writeFailed(deviceId, error);
      return false;
    } finally {
      derivedKey?.fill(0);
    }
    this.#log({ event: 'promoted', device: deviceId, active: this.store.device(deviceId)!.active.id });
    return true;
  }

  #afterPromotion(conn: Connection): void {
    clearTimeout(conn.reofferTimer);
    conn.reofferTimer = undefined;
    this.#startQueuedRotation(conn.deviceId!);
  }

  /** HK7 (H-KEY-5): the durable state is the one in memory; close the device's connections. */
  #writeFailed(deviceId: string, error: unknown): void {
    this.#log({ event: 'storage-failed', device: deviceId, message: (error as Error).message });
    for (const conn of [...this.#connections]) if (conn.deviceId === deviceId) this.#close(conn, 'durable write failed (HK7)');
  }

  /** Send REKEY / REKEY_DH for the pending key and schedule the next re-offer (HK3, H-RETRY-1/2). */
  #offer(conn: Connection): void {
    clearTimeout(conn.reofferTimer);
    conn.reofferTimer = undefined;
    const record = this.store.device(conn.deviceId!);
    if (conn.state !== 'established' || !record?.pending) return;
    const p = record.pending;
    if (p.kind === 'classic') {
      this.#sendSealed(conn, T.REKEY, Buffer.concat([u32(p.id), Buffer.from(p.key!, 'hex')]));
    } else {
      this.#sendSealed(conn, T.REKEY_DH, Buffer.concat([u32(p.id), Buffer.from(p.H!, 'hex')]));
    }
    if (conn.state !== 'established') return;
    const d = Math.min(REKEY_RETRY_MAX_MS, REKEY_RETRY_INITIAL_MS * 2 ** Math.min(conn.reofferCount, 16));
    const delay = Math.ceil(d / 2) + randomInt(0, Math.floor(d / 2) + 1); // equal jitter in [d/2, d]
    conn.reofferCount++;
    conn.reofferTimer = setTimeout(() => this.#offer(conn), delay);
  }

  // ---------- sending ----------

  #sendData(conn: Connection, id: number, payload: Buffer): void {
    const runtime = this.#rt(conn.deviceId!);
    this.#sendSealed(conn, T.DATA, Buffer.concat([runtime.streamId, u32(id), payload]));
  }

  /** Every hub frame is sealed under the device's active key (H-KEY-3). */
  #sendSealed(conn: Connection, type: number, body: Buffer): void {
    if (conn.state !== 'established') return;
    if (conn.nextSendSeq > LAST_ID) {
      this.#close(conn, 'sequence exhausted (W-SESSION-2)');
      return;
    }
    const record = this.store.device(conn.deviceId!)!;
    const key = Buffer.from(record.active.key, 'hex');
    const frame = sealFrame({
      version: 1, type, flags: FLAG_FROM_HUB, deviceId: conn.deviceIdBytes!, keyId: record.active.id, seq: conn.nextSendSeq, sessionId: conn.nh,
    }, key, body);
    key.fill(0);
    conn.nextSendSeq++;
    this.#write(conn, frame);
  }

  #resetIdle(conn: Connection): void {
    if (conn.state !== 'established') return;
    clearTimeout(conn.idleTimer);
    conn.idleTimer = setTimeout(() => this.#close(conn, 'idle timeout (HS5)'), this.#options.idleTimeoutMs);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
