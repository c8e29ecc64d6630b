/**
 * Example: watch Lockstep keep the key in sync. Every state callback is one
 * console line (`[events t] ...`); a small heartbeat goes up every
 * `heartbeatMs` and its acknowledgement by the hub is logged too, so a
 * rotation, a hub restart or a device restart shows as it happens:
 *
 *   [events 0.412] connecting (attempt 0)
 *   [events 0.530] established under key 4
 *   [events 3.601] rekeying: key 5 stored
 *   [events 3.622] key 5 promoted
 *   [events 9.004] disconnected: closed by peer
 */
import config from 'mc/config';
import Time from 'time';
import Timer from 'timer';
import { Lockstep } from 'lockstep';

const started = Time.ticks;
function show(line: string): void {
  trace(`[events ${(Math.max(0, Time.delta(started)) / 1000).toFixed(3)}] ${line}\n`);
}

const heartbeatMs = Number((config as Record<string, unknown>)['heartbeatMs'] ?? 2000);
if (!Number.isInteger(heartbeatMs) || heartbeatMs < 100) throw new Error('config heartbeatMs: expected an integer >= 100');

const lockstep = new Lockstep({
  onConnecting: (attempt) => show(`connecting (attempt ${attempt})`),
  onEstablished: (keyId) => show(`established under key ${keyId}`),
  onRekeying: (keyId) => show(`rekeying: key ${keyId} stored`),
  onKeyPromoted: (keyId) => show(`key ${keyId} promoted`),
  onRecovery: (detail) => show(`recovery: ${detail}`),
  onDisconnected: (reason) => show(`disconnected: ${reason}`),
  onDelivered: (id) => show(`heartbeat ${id} delivered`),
  onWritable: (count) => {
    if (count === lockstep.outboxMessages) return; // nothing was waiting
    show(`outbox room: ${count}`);
  },
  onReadable() {
    for (let message = this.read(); message !== undefined; message = this.read()) show(`message from the hub: ${message.length} bytes`);
  },
  onError: (error) => show(`error: ${error.code}: ${error.message}`),
  onClosed: () => show('closed'),
});

Timer.repeat(() => {
  if (lockstep.state !== 'established' && lockstep.state !== 'rekeying') return;
  const id = lockstep.write(Uint8Array.of(0x68, 0x62)); // "hb"
  if (typeof id !== 'number') show(`heartbeat not sent: ${id.code}`);
}, heartbeatMs);
