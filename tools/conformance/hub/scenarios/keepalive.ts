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

export const DEFAULT_KEEPALIVE = { intervalMs: 15_000, waitMs: 50_000 } as const;

export const keepaliveScenario: Scenario = {
  name: 'keepalive',
  description: 'a quiet device sending only a PING every 15 s is not dropped (runs alongside the other scenarios)',
  covers: ['H-TIMER-1', 'W-PING-1'],
  async run(context, run) {
    const intervalMs = context.options.keepAlive?.intervalMs ?? DEFAULT_KEEPALIVE.intervalMs;
    const waitMs = context.options.keepAlive?.waitMs ?? DEFAULT_KEEPALIVE.waitMs;
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
      if (waitMs >= IDLE_TIMEOUT_MS) run.pass('H-TIMER-1');
      else run.notApplicable('H-TIMER-1', `shortened wait: the device stayed quiet (PING every ${intervalMs} ms) for ${waitMs} ms and was not dropped; proving the requirement needs --keepalive-wait 50s`);
      session.close();
    } finally {
      context.release(device);
    }
  },
};
