/**
 * Example: a sensor reading to the hub every `periodMs`, over Lockstep.
 * Commands from the hub (one ASCII line each):
 *   `period <ms>`  change the period (1000..3600000)
 *   `read`         send a reading now
 * Readings are JSON: {"seq":1,"sensor":"adc","value":512,"keyId":3}.
 * While there is no session, readings are skipped: the outbox is for
 * messages the hub must get, not a backlog of stale samples.
 */
import config from 'mc/config';
import Timer from 'timer';
import { Lockstep } from 'lockstep';
import { readSensor, sensorName } from './reading';

const settings = config as Record<string, unknown>;
const pin = Number(settings['sensorPin'] ?? 0);
let periodMs = Number(settings['periodMs'] ?? 5000);
if (!Number.isInteger(pin) || pin < 0 || pin > 39) throw new Error(`config sensorPin: expected an integer in [0, 39]`);
if (!Number.isInteger(periodMs) || periodMs < 1000 || periodMs > 3_600_000) throw new Error(`config periodMs: expected an integer in [1000, 3600000]`);

let seq = 0;

const lockstep = new Lockstep({
  outboxMessages: 4,
  maxMessageBytes: 128,
  onEstablished(keyId) {
    trace(`sensor: connected, key ${keyId}\n`);
  },
  onReadable() {
    for (let message = this.read(); message !== undefined; message = this.read()) onCommand(String.fromCharCode(...message));
  },
  onError(error) {
    trace(`sensor: lockstep stopped: ${error.message}\n`);
  },
});

function send(text: string): void {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0x7f;
  const id = lockstep.write(bytes);
  if (typeof id !== 'number') trace(`sensor: not sent (${id.code})\n`);
}

function sendReading(): void {
  if (lockstep.state !== 'established' && lockstep.state !== 'rekeying') return;
  send(JSON.stringify({ seq: ++seq, sensor: sensorName, value: readSensor(pin), keyId: lockstep.keyId }));
}

function onCommand(command: string): void {
  const [verb, arg] = command.trim().split(' ');
  if (verb === 'read') sendReading();
  else if (verb === 'period' && arg !== undefined && /^[0-9]{4,7}$/.test(arg) && Number(arg) <= 3_600_000) {
    periodMs = Number(arg);
    Timer.schedule(timer, periodMs, periodMs);
    send(JSON.stringify({ ok: 'period', periodMs }));
  } else send(JSON.stringify({ error: 'unknown command' }));
}

const timer = Timer.repeat(sendReading, periodMs);
