/**
 * Lockstep device firmware (Moddable XS): wiring only.
 *
 * Boot: read the config (mc/config), bring the network up, mount the
 * keystore, build the device core from the keys it holds, and connect to the
 * hub; from then on hosts/moddable/device-host.ts runs the core (bytes in and
 * out, timers, keystore writes, reconnects with backoff and jitter).
 * Telemetry goes up every `telemetryMs` while a session is established;
 * commands come down as DATA (hosts/moddable/app-messages.ts).
 * Everything is reported through `trace`, one line per event.
 *
 * Bounded: the core's outbox (OUTBOX_MESSAGES) and receive buffer, the
 * transport's MAX_PENDING_BYTES, the host's MAX_QUEUED_INPUTS; telemetry is
 * skipped, not queued, while there is no session.
 */
import config from 'mc/config';
import Time from 'time';
import Timer from 'timer';
import { bytesEqual, toHex } from './modules/bytes';
import { DeviceCore } from './modules/device/device';
import type { DeviceEvent } from './modules/device/actions';
import { LockstepError } from './modules/errors';
import type { KeyStorage } from './modules/keystore/wrapped-keystore';
import { decodeCommand, encodeReply, encodeTelemetry, printable } from './hosts/moddable/app-messages';
import { MonotonicClock } from './hosts/moddable/clock';
import { parseFirmwareConfig } from './hosts/moddable/config';
import { DeviceHost } from './hosts/moddable/device-host';
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

let keystore: KeyStorage | undefined;
let activeKeyId = 0;
let telemetrySeq = 0;
let telemetryTimer: Timer | undefined;

/** Mounts the keystore and builds a core from it (again after a keystore failure). */
function createCore(): { core: DeviceCore; keystore: KeyStorage } {
  keystore ??= platform.openKeystore(settings, log); // wrapped or plain: docs/FIRMWARE.md, flash encryption
  const mounted = keystore.mount();
  if (!mounted.provisioned) throw new LockstepError('UNPROVISIONED', `${mounted.reason}: ${mounted.detail}`);
  if (settings.deviceId !== undefined && !bytesEqual(settings.deviceId, mounted.deviceId)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `keystore holds device ${toHex(mounted.deviceId)}, config says ${toHex(settings.deviceId)}`);
  }
  activeKeyId = mounted.keys.active.id;
  log(`keystore: device ${toHex(mounted.deviceId)}, active key ${activeKeyId}, future key ${mounted.keys.future?.id ?? 'none'}`);
  const core = new DeviceCore({ deviceId: mounted.deviceId, keys: mounted.keys, aead: platform.aead, random: platform.random });
  return { core, keystore };
}

const host: DeviceHost = new DeviceHost({
  createCore,
  connect: (events) => new SocketTransport(() => openHubSocket(settings), events),
  now: () => clock.now(),
  timers: { set: (callback, delayMs) => Timer.set(callback, delayMs), clear: (handle) => Timer.clear(handle as Timer) },
  random: platform.random,
  reconnectBaseMs: settings.reconnectBaseMs,
  reconnectMaxMs: settings.reconnectMaxMs,
  connectTimeoutMs: settings.connectTimeoutMs,
  log,
  onEvent,
});

function onEvent(event: DeviceEvent): void {
  switch (event.type) {
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
    case 'delivered':
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
  }
}

function onCommand(payload: Uint8Array): void {
  const command = decodeCommand(payload);
  log(`command: ${printable(payload)}`);
  switch (command.kind) {
    case 'ping':
      host.send(encodeReply('pong'));
      break;
    case 'telemetry':
      sendTelemetry();
      break;
    case 'interval':
      scheduleTelemetry(command.ms);
      host.send(encodeReply('ok'));
      break;
    case 'invalid':
      host.send(encodeReply('error', command.reason));
      break;
  }
}

function sendTelemetry(): void {
  if (!host.established) return;
  const payload = encodeTelemetry({
    seq: ++telemetrySeq,
    uptimeMs: clock.now(),
    keyId: activeKeyId,
    sessions: host.sessions,
    closes: host.closes,
    heapBytes: heapBytes(),
  });
  if (!host.send(payload)) log('telemetry dropped: outbox full');
}

function scheduleTelemetry(periodMs: number): void {
  if (telemetryTimer !== undefined) Timer.clear(telemetryTimer);
  telemetryTimer = periodMs > 0 ? Timer.repeat(sendTelemetry, periodMs) : undefined;
}

platform.startNetwork(settings, log, () => {
  host.start();
  scheduleTelemetry(settings.telemetryMs);
});
