/**
 * The Lockstep application API's implementation (declared in lockstep.d.ts)
 * over the device loop (modules/device/loop.ts), with every platform service
 * injected: sdk.ts gives it the Moddable SDK's, the tests give it fakes
 * (tools/testing/channel-rig.ts), on Node and on XS.
 *
 * Rules:
 * 1. Bad settings never start anything: every option and every Lockstep
 *    key of mc/config is checked first; each bad one is logged as one line,
 *    then the constructor throws one LOCAL_BAD_ARGUMENT listing them all.
 * 2. Nothing happens inside the constructor: the network, the keystore and
 *    the first connection start from `defer`, so callbacks never run before
 *    the application holds the instance.
 * 3. The host only moves bytes: the core assigns message ids and keeps the
 *    outbox; this class only counts what the core reported (`delivered`) to
 *    enforce the application's smaller bound, and keeps the bounded inbox.
 * 4. `closed` is final; after it no callback is called.
 */
import { describeError, isLockstepError, LockstepError } from '../../../modules/errors';
import { DeviceLoop, type DeviceConnection, type DeviceLoopEvent, type DeviceTransportEvents, type LoopTimers, type MonotonicClock } from '../../../modules/device/loop';
import { MAX_APP_PAYLOAD_BYTES, OUTBOX_MESSAGES } from '../../../modules/protocol/constants';
import { bytesEqual, toHex } from '../../../modules/bytes';
import type { KeyStorage } from '../../../modules/keystore/key-storage';
import { checkFirmwareConfig, Reader, type FirmwareConfig } from '../config';
import type { Platform } from '../platform-types';
import type { Lockstep, LockstepOptions, LockstepState, LockstepStats, WriteError } from './lockstep';

export const MAX_INBOX_MESSAGES = 16;
export const DEFAULT_INBOX_MESSAGES = 4;

/** What the channel needs from the platform; sdk.ts binds the Moddable SDK's. */
export interface ChannelServices {
  /** The `mc/config` object (the manifests' config sections and mcconfig's key=value). */
  readonly config: Readonly<Record<string, unknown>>;
  /** Prefix of relative file paths (the SDK's `config.file.root`). */
  readonly fileRoot: string;
  readonly platform: Platform;
  /** Opens one connection to the hub (SocketTransport over the SDK socket). */
  readonly openConnection: (settings: FirmwareConfig, events: DeviceTransportEvents) => DeviceConnection;
  readonly timers: LoopTimers;
  readonly clock: MonotonicClock;
  /** The default log (options.log replaces it). */
  readonly log: (line: string) => void;
  /** Runs `callback` after the current turn (Timer.set(callback, 0)). */
  readonly defer: (callback: () => void) => void;
}

const OPTION_KEYS: readonly (keyof LockstepOptions)[] = [
  'hub',
  'port',
  'tls',
  'reconnectBaseMs',
  'reconnectMaxMs',
  'connectTimeoutMs',
  'outboxMessages',
  'maxMessageBytes',
  'inboxMessages',
  'onReadable',
  'onWritable',
  'onDelivered',
  'onError',
  'onConnecting',
  'onEstablished',
  'onDisconnected',
  'onRekeying',
  'onKeyPromoted',
  'onRecovery',
  'onClosed',
  'log',
];
const CALLBACK_KEYS = OPTION_KEYS.filter((key) => key.startsWith('on') || key === 'log');
const TLS_KEYS = ['verify', 'ca'];

interface Checked {
  readonly settings: FirmwareConfig;
  readonly outboxMessages: number;
  readonly maxMessageBytes: number;
  readonly inboxMessages: number;
}

/**
 * Rule 1: options first (unknown keys, types, ranges), then mc/config with
 * the valid options laid over it; one line per problem.
 */
export function checkChannelSettings(options: LockstepOptions, config: Readonly<Record<string, unknown>>, fileRoot: string): { ok: true; checked: Checked } | { ok: false; problems: string[] } {
  if (typeof options !== 'object' || options === null) return { ok: false, problems: ['option: expected an object'] };
  const problems: string[] = [];
  const raw = options as Readonly<Record<string, unknown>>;
  const r = new Reader(raw, problems, 'option');
  for (const key of Object.keys(raw)) if (!(OPTION_KEYS as readonly string[]).includes(key)) r.bad(key, 'unknown option');
  for (const key of CALLBACK_KEYS) if (raw[key] !== undefined && typeof raw[key] !== 'function') r.bad(key, 'expected a function');
  const overrides: Record<string, unknown> = {};
  if (raw['hub'] !== undefined) {
    const count = problems.length;
    r.hostPort('hub', r.string('hub', 'localhost'));
    if (problems.length === count) overrides['hub'] = raw['hub'];
  }
  for (const [key, min, max] of [
    ['port', 1, 65535],
    ['reconnectBaseMs', 10, 86_400_000],
    ['reconnectMaxMs', 10, 86_400_000],
    ['connectTimeoutMs', 100, 86_400_000],
  ] as const) {
    if (raw[key] === undefined) continue;
    const count = problems.length;
    if (typeof raw[key] !== 'number') r.bad(key, 'expected an integer');
    else r.integer(key, 0, min, max);
    if (problems.length === count) overrides[key] = raw[key];
  }
  const tls = raw['tls'];
  if (tls === true || tls === false) overrides['hubTls'] = tls;
  else if (typeof tls === 'object' && tls !== null) {
    const tlsRaw = tls as Readonly<Record<string, unknown>>;
    const tr = new Reader(tlsRaw, problems, 'option tls.');
    for (const key of Object.keys(tlsRaw)) if (!TLS_KEYS.includes(key)) tr.bad(key, 'unknown option');
    overrides['hubTls'] = true;
    if (tlsRaw['verify'] !== undefined) {
      if (typeof tlsRaw['verify'] !== 'boolean') tr.bad('verify', 'expected true or false');
      else overrides['hubTlsVerify'] = tlsRaw['verify'];
    }
    if (tlsRaw['ca'] !== undefined) {
      const ca = tr.certificate('ca');
      if (ca !== undefined) overrides['hubCa'] = ca;
    }
  } else if (tls !== undefined) r.bad('tls', 'expected true, false or { verify, ca }');
  const outboxMessages = boundedOption(r, raw, 'outboxMessages', OUTBOX_MESSAGES, 1, OUTBOX_MESSAGES);
  const maxMessageBytes = boundedOption(r, raw, 'maxMessageBytes', MAX_APP_PAYLOAD_BYTES, 1, MAX_APP_PAYLOAD_BYTES);
  const inboxMessages = boundedOption(r, raw, 'inboxMessages', DEFAULT_INBOX_MESSAGES, 1, MAX_INBOX_MESSAGES);
  // mc/config is shared with the SDK and the application: checkFirmwareConfig reads the library's keys and flags look-alikes.
  const merged: Record<string, unknown> = { ...config, ...overrides };
  // An option's hub without a port in it must not inherit config's port for another hub.
  if (overrides['hub'] !== undefined && overrides['port'] === undefined) delete merged['port'];
  const check = checkFirmwareConfig(merged, fileRoot);
  if (!check.ok) problems.push(...check.problems);
  if (problems.length > 0 || !check.ok) return { ok: false, problems };
  return { ok: true, checked: { settings: check.config, outboxMessages, maxMessageBytes, inboxMessages } };
}

function boundedOption(r: Reader, raw: Readonly<Record<string, unknown>>, key: string, fallback: number, min: number, max: number): number {
  if (raw[key] === undefined) return fallback;
  if (typeof raw[key] !== 'number') {
    r.bad(key, 'expected an integer');
    return fallback;
  }
  return r.integer(key, fallback, min, max);
}

function writeError(code: WriteError['code'], message: string): WriteError {
  return new LockstepError(code, message) as WriteError;
}

export class LockstepChannel {
  readonly outboxMessages: number;
  readonly maxMessageBytes: number;
  readonly inboxMessages: number;
  readonly #options: LockstepOptions;
  readonly #services: ChannelServices;
  readonly #settings: FirmwareConfig;
  readonly #log: (line: string) => void;
  #state: LockstepState = 'starting';
  #loop: DeviceLoop | undefined;
  #keyId = 0;
  #hasFuture = false;
  #outstanding = 0;
  #inbox: Uint8Array[] = [];
  #inboxDropped = 0;

  constructor(options: LockstepOptions, services: ChannelServices) {
    this.#services = services;
    const log = typeof options?.log === 'function' ? options.log : services.log;
    const check = checkChannelSettings(options, services.config, services.fileRoot);
    if (!check.ok) {
      for (const problem of check.problems) log(`lockstep: ${problem}`);
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `${check.problems.length} bad setting${check.problems.length === 1 ? '' : 's'}: ${check.problems.join('; ')}`);
    }
    this.#options = options;
    this.#log = log;
    this.#settings = check.checked.settings;
    this.outboxMessages = check.checked.outboxMessages;
    this.maxMessageBytes = check.checked.maxMessageBytes;
    this.inboxMessages = check.checked.inboxMessages;
    const s = this.#settings;
    log(`${services.platform.name}: hub ${s.hubHost}:${s.hubPort} ${s.tls ? `TLS${s.tlsVerify ? '' : ' (verification off)'}${s.hubCa === undefined ? '' : ', pinned CA'}` : 'TCP'}, aead ${services.platform.aead.name}`);
    services.defer(() => {
      if (this.#state === 'closed') return;
      services.platform.startNetwork(s, log, () => this.#start());
    });
  }

  get state(): LockstepState {
    return this.#state;
  }
  get keyId(): number {
    return this.#keyId;
  }
  get outboxLength(): number {
    return this.#outstanding;
  }
  get stats(): LockstepStats {
    const c = this.#loop?.counters;
    return { connects: c?.connects ?? 0, sessions: c?.sessions ?? 0, closes: c?.closes ?? 0, boots: c?.boots ?? 0, inboxDropped: this.#inboxDropped };
  }

  read(): Uint8Array | undefined {
    return this.#inbox.shift();
  }

  write(payload: ArrayBuffer | ArrayBufferView): number | WriteError {
    let bytes: Uint8Array;
    if (payload instanceof ArrayBuffer) bytes = new Uint8Array(payload);
    else if (ArrayBuffer.isView(payload)) bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    else throw new LockstepError('LOCAL_BAD_ARGUMENT', 'write: expected an ArrayBuffer or ArrayBufferView');
    if (this.#state === 'closed') return writeError('LOCAL_NOT_READY', 'closed');
    if (bytes.length > this.maxMessageBytes) return writeError('LOCAL_PAYLOAD_TOO_LARGE', `${bytes.length} > ${this.maxMessageBytes} bytes`);
    if (this.#outstanding >= this.outboxMessages) return writeError('LOCAL_OUTBOX_FULL', `${this.outboxMessages} messages unacknowledged`);
    const loop = this.#loop;
    if (loop === undefined) return writeError('LOCAL_NOT_READY', 'starting');
    const sent = loop.send(bytes);
    if (!sent.ok) return sent.error as WriteError;
    this.#outstanding++;
    return sent.messageId;
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#loop?.stop();
    this.#inbox = [];
    this.#outstanding = 0;
    this.#call(() => this.#options.onClosed?.call(this.#self));
  }

  /** The instance as the declared class (callbacks get it as `this`). */
  get #self(): Lockstep {
    return this as unknown as Lockstep;
  }

  #start(): void {
    if (this.#state === 'closed') return;
    let storage: KeyStorage;
    try {
      storage = this.#services.platform.openKeystore(this.#settings, this.#log); // wrapped or plain: docs/FIRMWARE.md
    } catch (error) {
      this.#fatal(isLockstepError(error) ? error : new LockstepError('STORAGE_CORRUPT', describeError(error)));
      return;
    }
    const s = this.#settings;
    this.#loop = new DeviceLoop({
      storage,
      transport: (events) => this.#services.openConnection(s, events),
      timers: this.#services.timers,
      clock: this.#services.clock,
      random: this.#services.platform.random,
      aead: this.#services.platform.aead,
      ...(this.#services.platform.keyAgreement === undefined ? {} : { keyAgreement: this.#services.platform.keyAgreement }),
      reconnectBaseMs: s.reconnectBaseMs,
      reconnectMaxMs: s.reconnectMaxMs,
      connectTimeoutMs: s.connectTimeoutMs,
      acceptMount: (deviceId) => {
        if (s.deviceId !== undefined && !bytesEqual(s.deviceId, deviceId)) {
          throw new LockstepError('LOCAL_BAD_ARGUMENT', `keystore holds device ${toHex(deviceId)}, config says ${toHex(s.deviceId)}`);
        }
      },
      onEvent: (event) => this.#onEvent(event),
      log: this.#log,
    });
    this.#state = 'connecting';
    this.#loop.start();
  }

  /** onError once, then closed (rule 4). */
  #fatal(error: LockstepError): void {
    if (this.#state === 'closed') return;
    this.#log(`lockstep: ${error.message}; closing`);
    this.#call(() => this.#options.onError?.call(this.#self, error));
    this.close();
  }

  /** A callback's exception is the application's: logged, never into the protocol. */
  #call(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.#log(`lockstep: callback failed: ${describeError(error)}`);
    }
  }

  /** A recovery event: the library's line, and the application's onRecovery with the same text. */
  #recovery(detail: string): void {
    this.#log(`recovery: ${detail}`);
    this.#call(() => this.#options.onRecovery?.call(this.#self, detail));
  }

  #sessionState(): LockstepState {
    return this.#hasFuture ? 'rekeying' : 'established';
  }

  #onEvent(event: DeviceLoopEvent): void {
    if (this.#state === 'closed') return;
    const o = this.#options;
    const self = this.#self;
    switch (event.type) {
      case 'booted':
        if (this.#outstanding > 0) this.#log(`lockstep: ${this.#outstanding} unacknowledged messages lost with the restarted core`);
        this.#outstanding = 0;
        this.#keyId = event.keys.active.id;
        this.#hasFuture = event.keys.future !== undefined;
        this.#log(`keystore: device ${toHex(event.deviceId)}, active key ${this.#keyId}, future key ${event.keys.future?.id ?? 'none'}`);
        break;
      case 'bootFailed':
        // A keystore of another device is final; an unprovisioned or damaged one is mounted again later (the loop logs it).
        if (event.error.code === 'LOCAL_BAD_ARGUMENT') this.#fatal(event.error);
        break;
      case 'connecting':
        this.#state = 'connecting';
        this.#call(() => o.onConnecting?.call(self, event.attempt));
        break;
      case 'disconnected':
        this.#state = 'connecting';
        this.#call(() => o.onDisconnected?.call(self, event.reason));
        break;
      case 'established':
        this.#keyId = event.keyId;
        this.#state = this.#sessionState();
        this.#call(() => o.onEstablished?.call(self, event.keyId));
        if (this.#outstanding < this.outboxMessages) this.#call(() => o.onWritable?.call(self, this.outboxMessages - this.#outstanding));
        break;
      case 'keyStored':
        this.#hasFuture = true;
        if (this.#state === 'established') this.#state = 'rekeying';
        this.#call(() => o.onRekeying?.call(self, event.id));
        break;
      case 'keyPromoted':
        this.#hasFuture = false;
        this.#keyId = event.id;
        if (this.#state === 'rekeying') this.#state = 'established';
        this.#call(() => o.onKeyPromoted?.call(self, event.id));
        break;
      case 'data':
        if (this.#inbox.length >= this.inboxMessages) {
          this.#inboxDropped++;
          this.#log(`lockstep: inbox full (${this.inboxMessages}); message dropped`);
        } else {
          this.#inbox.push(event.payload);
        }
        this.#call(() => o.onReadable?.call(self, this.#inbox.length));
        break;
      case 'delivered':
        if (this.#outstanding > 0) this.#outstanding--;
        this.#call(() => o.onDelivered?.call(self, event.messageId));
        this.#call(() => o.onWritable?.call(self, this.outboxMessages - this.#outstanding));
        break;
      case 'rekeyRefused':
        this.#log(`rekey to ${event.id} refused: ${event.error.message}`);
        break;
      case 'rejected':
        this.#log(`frame rejected: ${event.error.message}`);
        break;
      case 'peerError':
        this.#log(`hub reported error ${event.code} (${event.detail})`);
        break;
      // Recovery (docs/PROTOCOL.md §12): one line per event, and onRecovery with the same text; the core reports hubLostKey once per episode.
      case 'hubLostKey':
        this.#recovery(`the hub does not know our key (active ${event.activeKeyId}, future ${event.futureKeyId || 'none'})`);
        break;
      case 'recovered':
        this.#hasFuture = true;
        this.#recovery(`key ${event.newKeyId} stored; reconnecting under it`);
        break;
      case 'recoveryRefused':
        this.#recovery(`no key (${event.reason}); next attempt in ${Math.round(event.retryAfterMs / 1000)} s`);
        break;
      case 'recoveryInSync':
        this.#recovery('the hub says our key works; reconnecting');
        break;
      case 'enrolled':
        this.#recovery(`credential enrolled for hub static key ${event.hubStaticId}`);
        break;
      case 'staticKeyLocked':
        this.#recovery('refused an ENROL for another hub static key (STATIC_KEY_LOCKED)');
        break;
      case 'connected':
      case 'storageFailed': // the loop logs 'keystore <op> failed: ...'
        break;
    }
  }
}
