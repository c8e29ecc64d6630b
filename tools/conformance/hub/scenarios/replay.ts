/**
 * Replays within a session (a frame sent again, a seq skipped, another
 * session id or device id), across sessions (an old HELLO into a new
 * connection), and reflection (a hub frame sent back to the hub): each is
 * rejected with nothing sent in answer, and the session's state is
 * unchanged — the next frame with the next seq is still accepted.
 */
import { MessageType } from '../../../../modules/protocol/constants';
import { freshBytes } from '../../wire/sealer';
import { describeReceived } from '../session';
import { establish } from './handshake';
import { pingPong } from './messages';
import type { Scenario } from './scenario';

export const replayScenario: Scenario = {
  name: 'replay',
  description: 'replays within a session (seq), across sessions (an old HELLO), another session or device id, and reflection of hub frames',
  covers: ['W-CHECK-3', 'W-CHECK-4', 'W-CHECK-5', 'W-CHECK-8', 'W-CHECK-9', 'W-HDR-4', 'H-REJECT-1', 'W-TCP-1'],
  async run(context, run) {
    const device = context.claim();
    if (device === undefined) return;
    try {
      const session = await establish(context, run, device, { check: false });
      if (session === undefined) return;
      const helloFrame = run.recording.frames.filter((f) => f.direction === 'sent').at(-1)?.bytes.subarray(2).slice() as Uint8Array;
      const welcomeFrame = run.recording.frames.filter((f) => f.direction === 'received').at(-1)?.bytes.subarray(2).slice() as Uint8Array;

      // The rejected frame, then at once a valid PING with the next seq: the hub answers in order, so the first frame back must be its PONG.
      const rejected = async (id: string, what: string, send: () => void): Promise<void> => {
        send();
        const next = await pingPong(context, session);
        const ok = next.kind === 'opened' && next.message.type === MessageType.PONG;
        run.check('W-CHECK-9', ok || next.kind === 'timeout', `${what} was answered: ${describeReceived(next)} came before the PONG`);
        run.check(id, ok, `${what}: then a PING with the next seq got ${describeReceived(next)}`);
        run.check('W-CHECK-8', ok, `after ${what} the next valid frame got ${describeReceived(next)}`);
      };

      // The last PING sent again, byte for byte.
      const ping = session.seal({ type: MessageType.PING });
      session.peer.sendFrame(ping);
      await session.receive(context.timeouts.frameMs);
      await rejected('W-CHECK-5', 'the same PING sent again (a replay)', () => session.peer.sendFrame(ping));
      await rejected('W-CHECK-5', `a PING with seq ${session.deviceSeq + 3} (skipping)`, () => session.send({ type: MessageType.PING }, { seq: session.deviceSeq + 3 }));
      await rejected('W-CHECK-5', `a PING with seq ${session.deviceSeq - 1} (reordered)`, () => session.send({ type: MessageType.PING }, { seq: session.deviceSeq - 1 }));
      await rejected('W-CHECK-4', 'a PING with another session id', () => session.send({ type: MessageType.PING }, { seq: session.deviceSeq, sessionId: freshBytes(16) }));
      await rejected('W-CHECK-3', 'a PING with another device id', () => session.send({ type: MessageType.PING }, { seq: session.deviceSeq, deviceId: freshBytes(8) }));
      await rejected('W-HDR-4', 'the hub\'s WELCOME sent back to it (reflection)', () => session.peer.sendFrame(welcomeFrame));
      // A frame sealed correctly with the direction bit of a hub frame: what a reflected PING would be.
      await rejected('W-HDR-4', 'a PING with the from-hub direction bit', () => session.send({ type: MessageType.PING }, { seq: session.deviceSeq, fromHub: true }));
      session.close();

      // Across sessions: the HELLO of the last connection into a new one (another Nh).
      const fresh = await context.open(device, run);
      if (fresh.session !== undefined) {
        fresh.session.peer.sendFrame(helloFrame);
        const outcome = await fresh.session.peer.waitClosed(context.timeouts.frameMs);
        run.check('W-CHECK-4', outcome.frames.length === 0, `a HELLO recorded in another session got ${outcome.frames.length} frame(s) in answer`);
        run.check('H-REJECT-1', outcome.closed && outcome.frames.length === 0, `a replayed HELLO: ${outcome.closed ? 'closed' : `still open after ${context.timeouts.frameMs} ms`}, ${outcome.frames.length} frame(s) sent`);
        run.check('W-TCP-1', outcome.frames.length === 0, 'the session of an earlier connection continued on a new one (its HELLO was answered)');
        fresh.session.destroy();
      }
      // Reflection before the HELLO: the CHALLENGE sent back.
      const again = await context.open(device, run);
      if (again.session !== undefined) {
        again.session.peer.sendFrame(again.session.challenge as Uint8Array);
        const outcome = await again.session.peer.waitClosed(context.timeouts.frameMs);
        run.check('H-REJECT-1', outcome.closed && outcome.frames.length === 0, `the CHALLENGE sent back: ${outcome.closed ? 'closed' : 'still open'}, ${outcome.frames.length} frame(s) sent`);
        run.check('W-HDR-4', outcome.frames.length === 0, 'the CHALLENGE sent back was answered');
        again.session.destroy();
      }
    } finally {
      context.release(device);
    }
  },
};
