/**
 * Turns the core's events (`event` actions, in the pipeline's order) and the
 * host's own milestones (a rotation durable, a failed commit) into the
 * library's typed events (tools/hub/types.ts HubEvents) and log lines, and
 * keeps the counters and presence they imply.
 *
 * Listener exceptions are the application's: they are logged and never
 * break the order of the actions still to be carried out.
 */
import type { HubEvent, HubPersistOp } from '../../modules/hub/actions';
import { describeError } from '../../modules/errors';
import type { Connections } from './connections';
import type { Logger } from './log';
import type { DevicePresence } from './presence';
import type { RotationScheduler } from './scheduler';
import { WireError } from '../../modules/protocol/constants';
import type { HubEvents, RekeyRefusalCode } from './types';

export type Emit = <K extends keyof HubEvents>(name: K, ...args: HubEvents[K]) => void;

export interface EventCounters {
  rejectedFrames: number;
  rotationsStarted: number;
  rotationsConfirmed: number;
}

/** Wraps an emitter so a throwing listener is logged instead of propagating. */
export function safeEmitter(emit: (name: keyof HubEvents, ...args: unknown[]) => boolean, log: Logger): Emit {
  return (name, ...args) => {
    try {
      emit(name, ...args);
    } catch (error) {
      log.error('listenerFailed', { event: String(name), message: describeError(error) });
    }
  };
}

/** Wire error codes a device sends when it refuses an offered key (docs/PROTOCOL.md §9, §11.2). */
const REKEY_REFUSALS: ReadonlyMap<number, RekeyRefusalCode> = new Map<number, RekeyRefusalCode>([
  [WireError.REKEY_ID_NOT_NEWER, 'REKEY_ID_NOT_NEWER'],
  [WireError.REKEY_CONFLICT, 'REKEY_CONFLICT'],
  [WireError.REKEY_ID_NOT_NEXT, 'REKEY_ID_NOT_NEXT'],
  [WireError.REKEY_MODE_MISMATCH, 'REKEY_MODE_MISMATCH'],
  [WireError.BAD_KEY_SHARE, 'BAD_KEY_SHARE'],
]);
/** Bounds the per-device episode memory (a flood of devices cannot grow it). */
const MAX_REFUSAL_EPISODES = 65_536;

export class HubEventRouter {
  readonly counters: EventCounters = { rejectedFrames: 0, rotationsStarted: 0, rotationsConfirmed: 0 };
  /** Per device, the refusal being reported (logged once per episode). */
  readonly #refusals = new Map<string, string>();

  constructor(
    private readonly emit: Emit,
    private readonly log: Logger,
    private readonly connections: () => Connections,
    private readonly presence: DevicePresence,
    private readonly scheduler: RotationScheduler,
  ) {}

  /** An `event` action. */
  core(event: HubEvent): void {
    switch (event.type) {
      case 'deviceConnected': {
        const link = this.connections().authenticated(event.connection, event.deviceId);
        this.presence.connected(event.deviceId, event.connection, Date.now());
        this.log.info('deviceConnected', { deviceId: event.deviceId, keyId: event.keyId, transport: link?.transport, remote: link?.remoteAddress });
        this.emit('deviceConnected', {
          deviceId: event.deviceId,
          keyId: event.keyId,
          transport: link?.transport ?? 'tcp',
          remoteAddress: link?.remoteAddress ?? '?',
        });
        return;
      }
      case 'deviceDisconnected':
        this.presence.disconnected(event.deviceId, event.connection, Date.now());
        this.log.debug('deviceDisconnected', { deviceId: event.deviceId });
        this.emit('deviceDisconnected', { deviceId: event.deviceId });
        return;
      case 'data':
        this.scheduler.messageCounted(event.deviceId);
        this.emit('data', { deviceId: event.deviceId, payload: event.payload });
        return;
      case 'delivered':
        this.emit('delivered', { deviceId: event.deviceId, messageId: event.messageId });
        return;
      case 'keyOffered':
        this.log.debug('keyOffered', { deviceId: event.deviceId, keyId: event.id });
        this.emit('keyOffered', { deviceId: event.deviceId, keyId: event.id });
        return;
      case 'keyConfirmed': {
        const now = Date.now();
        this.presence.keyConfirmed(event.deviceId, now);
        this.scheduler.keyActivated(event.deviceId, now);
        this.counters.rotationsConfirmed++;
        this.#refusals.delete(event.deviceId);
        this.log.info('keyConfirmed', { deviceId: event.deviceId, keyId: event.id });
        this.emit('keyConfirmed', { deviceId: event.deviceId, keyId: event.id });
        return;
      }
      case 'rejected': {
        this.counters.rejectedFrames++;
        const link = this.connections().get(event.connection);
        this.log.debug('rejected', { connection: event.connection, deviceId: event.deviceId, code: event.error.code, source: link?.admission.source });
        this.emit('rejected', { deviceId: event.deviceId, code: event.error.code, remoteAddress: link?.remoteAddress ?? '?' });
        return;
      }
      case 'peerError': {
        const refusal = REKEY_REFUSALS.get(event.code);
        if (refusal !== undefined) {
          // Once per episode: the hub re-offers (H1) and the device refuses each offer alike.
          const episode = `${refusal}/${event.detail}`;
          if (this.#refusals.get(event.deviceId) !== episode) {
            if (this.#refusals.size >= MAX_REFUSAL_EPISODES) this.#refusals.clear();
            this.#refusals.set(event.deviceId, episode);
            this.log.warn('rekeyRefused', { deviceId: event.deviceId, keyId: event.detail, code: refusal });
            this.emit('rekeyRefused', { deviceId: event.deviceId, keyId: event.detail, code: refusal });
          }
          return;
        }
        this.log.warn('peerError', { deviceId: event.deviceId, code: event.code, detail: event.detail });
        this.emit('peerError', { deviceId: event.deviceId, code: event.code, detail: event.detail });
        return;
      }
    }
  }

  /** A storePending commit is durable (before the core is told, so this precedes the key's offer). */
  rotationDurable(op: Extract<HubPersistOp, { kind: 'storePending' }>): void {
    this.counters.rotationsStarted++;
    this.log.info('rotationStarted', { deviceId: op.deviceId, keyId: op.id });
    this.emit('rotationStarted', { deviceId: op.deviceId, keyId: op.id });
  }

  storageError(op: HubPersistOp, error: Error): void {
    this.log.error('commitFailed', { deviceId: op.deviceId, op: op.kind, keyId: 'id' in op ? op.id : undefined, message: error.message });
    this.emit('storageError', { deviceId: op.deviceId, error });
  }

  /** A group-commit transaction ended (for the metrics). */
  committed(ops: number, durationMs: number, ok: boolean): void {
    this.emit('committed', { ops, durationMs, ok });
  }

  deviceAdded(deviceId: string, keyId: number): void {
    this.log.info('deviceAdded', { deviceId, keyId });
    this.emit('deviceAdded', { deviceId });
  }
}
