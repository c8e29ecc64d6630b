/**
 * The reference application: telemetry up, three text commands down
 * (hosts/moddable/app-messages.ts), on the Lockstep library's API alone
 * (`lockstep`, hosts/moddable/lockstep/lockstep.d.ts). Everything about
 * keys, the hub connection and the keystore is the library's.
 *
 * Telemetry goes up every `telemetryMs` while a session is established;
 * it is skipped, not queued, while there is none or the outbox is full.
 */
import config from 'mc/config';
import Time from 'time';
import Timer from 'timer';
import { Lockstep } from 'lockstep';
import { decodeCommand, encodeReply, encodeTelemetry, printable, readTelemetryMs } from './hosts/moddable/app-messages';
import { heapBytes } from './hosts/moddable/heap';

const started = Time.ticks;
const uptimeMs = (): number => Math.max(0, Time.delta(started));

function log(line: string): void {
  trace(`[app ${(uptimeMs() / 1000).toFixed(3)}] ${line}\n`);
}

const telemetrySetting = readTelemetryMs((config as Record<string, unknown>)['telemetryMs']);
if ('problem' in telemetrySetting) {
  log(telemetrySetting.problem);
  throw new Error(telemetrySetting.problem);
}

let telemetrySeq = 0;
let telemetryTimer: Timer | undefined;

const hub = new Lockstep({
  onConnecting(attempt) {
    if (attempt > 0) log(`connecting (attempt ${attempt})`);
  },
  onEstablished(keyId) {
    log(`session established under key ${keyId}`);
  },
  onDisconnected(reason) {
    log(`connection closed: ${reason}`);
  },
  onRekeying(keyId) {
    log(`future key ${keyId} stored`);
  },
  onKeyPromoted(keyId) {
    log(`key ${keyId} promoted: now active`);
  },
  onReadable() {
    for (let message = this.read(); message !== undefined; message = this.read()) onCommand(message);
  },
  onError(error) {
    log(`lockstep failed: ${error.message}`);
  },
});

function onCommand(payload: Uint8Array): void {
  const command = decodeCommand(payload);
  log(`command: ${printable(payload)}`);
  switch (command.kind) {
    case 'ping':
      send(encodeReply('pong'), 'reply');
      break;
    case 'telemetry':
      sendTelemetry();
      break;
    case 'interval':
      scheduleTelemetry(command.ms);
      send(encodeReply('ok'), 'reply');
      break;
    case 'invalid':
      send(encodeReply('error', command.reason), 'reply');
      break;
  }
}

function send(payload: Uint8Array, what: string): void {
  const sent = hub.write(payload);
  if (typeof sent !== 'number') log(`${what} dropped: ${sent.code}`);
}

function sendTelemetry(): void {
  if (hub.state !== 'established' && hub.state !== 'rekeying') return;
  const stats = hub.stats;
  send(encodeTelemetry({ seq: ++telemetrySeq, uptimeMs: uptimeMs(), keyId: hub.keyId, sessions: stats.sessions, closes: stats.closes, heapBytes: heapBytes() }), 'telemetry');
}

function scheduleTelemetry(periodMs: number): void {
  if (telemetryTimer !== undefined) Timer.clear(telemetryTimer);
  telemetryTimer = periodMs > 0 ? Timer.repeat(sendTelemetry, periodMs) : undefined;
}

scheduleTelemetry(telemetrySetting.ms);
