/**
 * A quiet device kept alive only by keep-alives (docs/PROTOCOL.md §6.4,
 * §8.4): after its HELLO it sends nothing but a PING every keep-alive
 * interval (15 s), and the hub must not drop it (its idle timeout is at
 * least 45 s). A drop within the wait is a failure whatever the wait; no
 * drop proves the requirement only for a wait of at least 45 s — a shorter
 * wait (`--keepalive-wait`) is reported n/a, saying so.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { IDLE_TIMEOUT_MS, MessageType } from '../../../../modules/protocol/constants';
import { describeReceived } from '../session';
import { establish } from './handshake';
import type { Scenario } from './scenario';
import type { HubKitContext, ScenarioRun } from '../context';
import type { KitDevice } from '../kit-devices';

export const DEFAULT_KEEPALIVE = { intervalMs: 15_000, waitMs: 65_000 } as const;

/** The handshake timeout's bounds (§8.4: 10…60 s). */
const HANDSHAKE_MIN_MS = 10_000;
const HANDSHAKE_MAX_MS = 60_000;

/**
 * Alongside: a connection that never sends its HELLO must be closed by the hub between 10 and 60 s after its
 * CHALLENGE (H-TIMER-2). Within a wait shorter than 61 s, no close is inconclusive (n/a); a close before 10 s fails.
 */
async function silentHandshake(context: HubKitContext, run: ScenarioRun, waitMs: number): Promise<void> {
  const stranger: KitDevice = { deviceId: '', idBytes: new Uint8Array(8), mode: 'classic', active: { id: 1, key: new Uint8Array(64) } };
  const opened = await context.open(stranger, run);
  if (opened.session === undefined) return;
  const started = performance.now();
  const limit = Math.max(waitMs, 0);
  const outcome = await opened.session.peer.waitClosed(Math.min(limit, HANDSHAKE_MAX_MS + 1_000));
  const after = Math.round(performance.now() - started);
  opened.session.destroy();
  if (outcome.closed) {
    run.check('H-TIMER-2', after >= HANDSHAKE_MIN_MS - 250 && after <= HANDSHAKE_MAX_MS + 1_000 && outcome.frames.length === 0, `a connection without a HELLO was closed ${after} ms after its CHALLENGE (the handshake timeout is 10…60 s), ${outcome.frames.length} frame(s) sent`);
  } else if (after >= HANDSHAKE_MAX_MS + 1_000) {
    run.fail('H-TIMER-2', `a connection without a HELLO was still open ${after} ms after its CHALLENGE (the handshake timeout is at most 60 s)`);
  } else {
    run.notApplicable('H-TIMER-2', `shortened wait: a connection without a HELLO stayed open for the ${after} ms waited (it must close within 10…60 s: --keepalive-wait 65s)`);
  }
}

export const keepaliveScenario: Scenario = {
  name: 'keepalive',
  description: 'a quiet device sending only a PING every 15 s is not dropped (runs alongside the other scenarios)',
  covers: ['H-TIMER-1', 'H-TIMER-2', 'W-PING-1'],
  async run(context, run) {
    const intervalMs = context.options.keepAlive?.intervalMs ?? DEFAULT_KEEPALIVE.intervalMs;
    const waitMs = context.options.keepAlive?.waitMs ?? DEFAULT_KEEPALIVE.waitMs;
    const handshake = silentHandshake(context, run, waitMs);
    const device = context.claim();
    if (device === undefined) return;
    try {
      const session = await establish(context, run, device, { check: false });
      if (session === undefined) return;
      const started = performance.now();
      let nextPing = started + intervalMs;
      while (performance.now() - started < waitMs) {
        const until = Math.min(nextPing, started + waitMs);
        // Read (and answer) whatever the hub sends while waiting; a close ends the scenario.
        const received = await session.receive(Math.max(1, until - performance.now()));
        if (received.kind === 'closed') {
          const after = Math.round(performance.now() - started);
          run.fail('H-TIMER-1', `the hub dropped a device sending PING every ${intervalMs} ms after ${after} ms (its idle timeout must be at least ${IDLE_TIMEOUT_MS} ms)`);
          return;
        }
        if (received.kind === 'opened' && received.message.type === MessageType.PING) session.send({ type: MessageType.PONG });
        if (received.kind === 'refused') run.fail('W-PING-1', `while quiet: ${describeReceived(received)}`);
        if (performance.now() >= nextPing && performance.now() - started < waitMs) {
          session.send({ type: MessageType.PING });
          const pong = await session.receiveUntil([MessageType.PONG], context.timeouts.frameMs);
          run.check('W-PING-1', pong.found !== undefined, `a keep-alive PING got ${describeReceived(pong.last)}`);
          nextPing += intervalMs;
        }
        await sleep(0);
      }
      await handshake;
      if (waitMs >= IDLE_TIMEOUT_MS) run.pass('H-TIMER-1');
      else run.notApplicable('H-TIMER-1', `shortened wait: the device stayed quiet (PING every ${intervalMs} ms) for ${waitMs} ms and was not dropped; proving the requirement needs --keepalive-wait 50s or more`);
      session.close();
    } finally {
      context.release(device);
    }
  },
};
