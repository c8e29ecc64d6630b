/**
 * Lockstep device firmware (Moddable XS): wiring only.
 *
 * Boot: read the config (mc/config), bring the network up, then hand the
 * platform's pieces to the portable device loop (modules/device/loop.ts):
 * the keystore (a KeyStorage), the hub socket (hosts/moddable/socket-transport.ts),
 * the SDK's timers, a monotonic clock, the secure random source and the
 * AEAD. The loop mounts the keystore, runs the device core, carries out its
 * keystore writes and reconnects with backoff and jitter; this file only
 * logs what it reports and answers commands.
 * Telemetry goes up every `telemetryMs` while a session is established;
 * commands come down as DATA (hosts/moddable/app-messages.ts).
 * Everything is reported through `trace`, one line per event.
 *
 * Bounded: the core's outbox (OUTBOX_MESSAGES) and receive buffer, the
 * transport's MAX_PENDING_BYTES, the loop's MAX_QUEUED_INPUTS; telemetry is
 * skipped, not queued, while there is no session.
 */
import config from 'mc/config';
import Time from 'time';
import Timer from 'timer';
import { bytesEqual, toHex } from './modules/bytes';
import { DeviceLoop, type DeviceLoopEvent } from './modules/device/loop';
import type { DeviceKeys } from './modules/platform/keys';
import { describeError, LockstepError } from './modules/errors';
import type { KeyStorage } from './modules/keystore/key-storage';
import { decodeCommand, encodeReply, encodeTelemetry, printable } from './hosts/moddable/app-messages';
import { MonotonicClock } from './hosts/moddable/clock';
import { parseFirmwareConfig } from './hosts/moddable/config';
import { heapBytes } from './hosts/moddable/heap';
import { openHubSocket } from './hosts/moddable/hub-socket';
import { platform } from './hosts/moddable/platform';
import { SocketTransport } from './hosts/moddable/socket-transport';

const clock = new MonotonicClock(Time);

function log(line: string): void {
  trace(`[lockstep ${(clock.now() / 1000).toFixed(3)}] ${line}\n`);
}

const rawConfig = config as Readonly<Record<string, unknown>> & { file?: { root?: string } };
const settings = parseFirmwareConfig(rawConfig, rawConfig.file?.root ?? '');
log(`${platform.name}: hub ${settings.hubHost}:${settings.hubPort} ${settings.tls ? 'TLS' : 'TCP'}, aead ${platform.aead.name}`);

let activeKeyId = 0;
let telemetrySeq = 0;
let telemetryTimer: Timer | undefined;

/** A keystore for another device than the configured one is refused (guards against a wrong image). */
function acceptMount(deviceId: Uint8Array, _keys: DeviceKeys): void {
  if (settings.deviceId !== undefined && !bytesEqual(settings.deviceId, deviceId)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `keystore holds device ${toHex(deviceId)}, config says ${toHex(settings.deviceId)}`);
  }
}

function onEvent(event: DeviceLoopEvent): void {
  switch (event.type) {
    case 'booted':
      activeKeyId = event.keys.active.id;
      log(`keystore: device ${toHex(event.deviceId)}, active key ${activeKeyId}, future key ${event.keys.future?.id ?? 'none'}`);
      break;
    case 'connected':
      log('connected');
      break;
    case 'disconnected':
      log(`connection closed: ${event.reason}`);
      break;
    case 'established':
      log(`session established under key ${event.keyId}`);
      break;
    case 'keyStored':
      log(`future key ${event.id} stored`);
      break;
    case 'keyPromoted':
      activeKeyId = event.id;
      log(`key ${event.id} promoted: now active`);
      break;
    case 'data':
      onCommand(event.payload);
      break;
    case 'rekeyRefused':
      log(`rekey to ${event.id} refused: ${event.error.message}`);
      break;
    case 'rejected':
      log(`frame rejected: ${event.error.message}`);
      break;
    case 'peerError':
      log(`hub reported error ${event.code} (${event.detail})`);
      break;
    case 'connecting':
    case 'delivered':
    case 'bootFailed': // the loop logs 'keystore: ...'
    case 'storageFailed': // the loop logs 'keystore <op> failed: ...'
      break;
  }
}

function onCommand(payload: Uint8Array): void {
  const command = decodeCommand(payload);
  log(`command: ${printable(payload)}`);
  switch (command.kind) {
    case 'ping':
      reply(encodeReply('pong'));
      break;
    case 'telemetry':
      sendTelemetry();
      break;
    case 'interval':
      scheduleTelemetry(command.ms);
      reply(encodeReply('ok'));
      break;
    case 'invalid':
      reply(encodeReply('error', command.reason));
      break;
  }
}

function reply(payload: Uint8Array): void {
  const sent = loop.send(payload);
  if (!sent.ok) log(`reply dropped: ${sent.error.code}`);
}

function sendTelemetry(): void {
  if (!loop.established) return;
  const payload = encodeTelemetry({
    seq: ++telemetrySeq,
    uptimeMs: clock.now(),
    keyId: activeKeyId,
    sessions: loop.counters.sessions,
    closes: loop.counters.closes,
    heapBytes: heapBytes(),
  });
  const sent = loop.send(payload);
  if (!sent.ok) log(`telemetry dropped: ${sent.error.code}`);
}

function scheduleTelemetry(periodMs: number): void {
  if (telemetryTimer !== undefined) Timer.clear(telemetryTimer);
  telemetryTimer = periodMs > 0 ? Timer.repeat(sendTelemetry, periodMs) : undefined;
}

let loop: DeviceLoop;

platform.startNetwork(settings, log, () => {
  let storage: KeyStorage;
  try {
    storage = platform.openKeystore(settings, log); // wrapped or plain: docs/FIRMWARE.md, flash encryption
  } catch (error) {
    log(`keystore: ${describeError(error)}`); // an unusable key-wrap image: nothing to run on until it is reflashed
    return;
  }
  loop = new DeviceLoop({
    storage,
    transport: (events) => new SocketTransport(() => openHubSocket(settings), events),
    timers: { set: (callback, delayMs) => Timer.set(callback, delayMs), clear: (handle) => Timer.clear(handle as Timer) },
    clock,
    random: platform.random,
    aead: platform.aead,
    keyAgreement: platform.keyAgreement,
    reconnectBaseMs: settings.reconnectBaseMs,
    reconnectMaxMs: settings.reconnectMaxMs,
    connectTimeoutMs: settings.connectTimeoutMs,
    acceptMount,
    onEvent,
    log,
  });
  loop.start();
  scheduleTelemetry(settings.telemetryMs);
});
