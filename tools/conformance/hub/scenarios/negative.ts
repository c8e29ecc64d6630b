/**
 * Every negative vector (tools/vectors/negative.ts, docs/PROTOCOL.md
 * Appendix A) as live input to the hub under test, built for the live
 * session's parameters. What a hub must do, seen from outside:
 * - before a HELLO authenticates (HS3): close, sending nothing — except
 *   NO_KEY (seq 1) for a HELLO failing at §4 step 3–5 when the hub runs
 *   recovery (HS9);
 * - in a session: send nothing in answer (W-CHECK-9), change nothing (the
 *   next valid frame with the same seq is accepted: W-CHECK-8), tolerate 8
 *   rejected frames in a row and close at the 9th (W-REJECT-1).
 */
import { MessageType } from '../../../../modules/protocol/constants';
import { inspectFrame, typeName } from '../../wire/sealer';
import { NEGATIVE_REQUIREMENTS, negativeVectors, type NegativeVector } from '../../../vectors/negative';
import { REQUIREMENTS } from '../../requirements';
import { sealingKey } from '../kit-devices';
import { describeReceived, type KitSession } from '../session';
import type { HubKitContext, ScenarioRun } from '../context';
import { establish } from './handshake';
import { pingPong, silence } from './messages';
import { awaitOffer } from './rotation';
import type { Scenario } from './scenario';

const KNOWN = new Set(REQUIREMENTS.map((r) => r.id));
const warned = new Set<string>();

/** The vector's own requirement when the catalogue names it, else the generic one (and the log says so). */
function vectorRequirement(context: HubKitContext, vector: NegativeVector, fallback: string): string {
  if (KNOWN.has(vector.requirement)) return vector.requirement;
  if (!warned.has(vector.requirement)) context.log(`negative vectors name ${vector.requirement}, not in the catalogue: filed under ${fallback}`);
  warned.add(vector.requirement);
  return fallback;
}

function heldKeyIds(session: KitSession): number[] {
  // What the hub holds for the device as far as the kit knows: its active key, and the future key the device holds (the hub's pending).
  return [session.device.active.id, ...(session.device.future === undefined ? [] : [session.device.future.id])];
}

/**
 * Waits for the close; a NO_KEY (HS9: the hub then waits for a RECOVER_INIT, up to its handshake timeout) ends the wait
 * after `silenceMs` more without another frame.
 */
async function closedOrNoKey(session: KitSession, timeoutMs: number, silenceMs: number): Promise<{ closed: boolean; noKey: boolean; frames: Uint8Array[] }> {
  const frames: Uint8Array[] = [];
  let noKey = false;
  let deadline = performance.now() + timeoutMs;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { closed: false, noKey, frames };
    const event = await session.peer.next(left);
    if (event.kind === 'closed') return { closed: true, noKey, frames };
    if (event.kind === 'timeout') return { closed: false, noKey, frames };
    if (event.kind !== 'frame') continue;
    frames.push(event.frame);
    const inspected = inspectFrame(event.frame);
    if (frames.length === 1 && 'header' in inspected && inspected.header.type === MessageType.NO_KEY && inspected.header.sequence === 1) {
      noKey = true;
      deadline = performance.now() + silenceMs;
    }
  }
}

async function beforeHello(context: HubKitContext, run: ScenarioRun, index: number): Promise<'done' | 'end'> {
  const device = context.claim();
  if (device === undefined) return 'end';
  try {
    // Paced before the connection opens: a hub may decide its per-source allowance there (H-RATE-2).
    await context.paceFailingHello();
    const opened = await context.open(device, run);
    if (opened.session === undefined) {
      run.fail('H-SESSION-1', opened.note ?? 'no CHALLENGE');
      return 'end';
    }
    const session = opened.session;
    const key = sealingKey(device);
    const vectors = negativeVectors({
      receiver: 'hub',
      state: 'awaitingHello',
      deviceId: device.idBytes,
      sessionId: session.nh,
      sequence: 0,
      sealKey: { id: key.id, key: key.key },
      heldKeyIds: heldKeyIds(session),
      helloKeyIds: { active: device.active.id, future: device.future?.id ?? 0 },
    }).filter((v) => !v.dhOnly || device.mode === 'dh');
    const vector = vectors[index];
    if (vector === undefined) {
      session.destroy();
      return 'end';
    }
    session.peer.sendRaw(vector.wire, vector.name);
    const outcome = await closedOrNoKey(session, context.timeouts.frameMs, context.timeouts.silenceMs);
    const noKeyOnly = outcome.noKey && outcome.frames.length === 1;
    if (outcome.noKey) context.noKeyAnswers++;
    // HS9: a HELLO failing at §4 step 3–5 (a dh one without its share or with a low-order share included) may get NO_KEY.
    const failingHello = ['UNKNOWN_DEVICE', 'UNKNOWN_KEY_ID', 'AUTH_FAILED', 'BAD_KEY_SHARE'].includes(vector.expectedError) || vector.requirement === NEGATIVE_REQUIREMENTS.dhShareMissing;
    const answered = outcome.frames.length > 0 && !(noKeyOnly && failingHello);
    const what = `vector "${vector.name}" (${vector.expectedError}) before the HELLO`;
    run.check(vectorRequirement(context, vector, 'W-CHECK-1'), !answered, `${what} was answered: ${outcome.frames.map((f) => typeName(f[1] as number)).join(', ')}`);
    run.check('W-CHECK-9', !answered, `${what} was answered with ${outcome.frames.length} frame(s)`);
    // Every case has one thing wrong and stops the checks there (§4): a hub that answered it went past that check.
    run.check('W-CHECK-1', !answered && (outcome.closed || noKeyOnly), `${what}: ${answered ? 'answered' : 'left open'}`);
    run.check('H-REJECT-1', outcome.closed || noKeyOnly, `${what}: the connection stayed open ${context.timeouts.frameMs} ms (HS3: close at the first rejected frame)`);
    if (noKeyOnly && failingHello) run.pass('H-REC-1');
    session.destroy();
    return 'done';
  } finally {
    context.release(device);
  }
}

export const negativeScenario: Scenario = {
  name: 'negative',
  description: 'every negative vector of tools/vectors/negative.ts as live input, before the HELLO and in a session; 8 rejections tolerated, the 9th closes',
  // And every requirement a vector names (tools/vectors/negative.ts), as far as the catalogue knows it.
  covers: ['W-CHECK-1', 'W-CHECK-7', 'W-CHECK-8', 'W-CHECK-9', 'H-REJECT-1', 'W-REJECT-1', ...new Set(Object.values(NEGATIVE_REQUIREMENTS).filter((id) => KNOWN.has(id)))],
  async run(context, run) {
    // Before the HELLO: one connection per vector (each closes it).
    for (let index = 0; ; index++) {
      if (performance.now() > context.deadline) return;
      if ((await beforeHello(context, run, index)) === 'end') break;
    }
    // In a session: every vector, a valid PING after each (the count never reaches 9 and the seq must be unchanged).
    const device = context.claim();
    if (device === undefined) return;
    try {
      let session = await establish(context, run, device, { check: false });
      if (session === undefined) return;
      const build = (s: KitSession): NegativeVector[] => {
        const key = sealingKey(device);
        return negativeVectors({
          receiver: 'hub',
          state: 'established',
          deviceId: device.idBytes,
          sessionId: s.nh,
          sequence: s.deviceSeq,
          sealKey: { id: key.id, key: key.key },
          heldKeyIds: heldKeyIds(s),
        }).filter((v) => !v.dhOnly || device.mode === 'dh');
      };
      const count = build(session).length;
      for (let index = 0; index < count; index++) {
        const vector = build(session)[index] as NegativeVector;
        // The vector, then at once a valid PING with the same seq: the hub answers in order, so the first frame back must be its PONG.
        session.peer.sendRaw(vector.wire, vector.name);
        const next = await pingPong(context, session);
        const what = `vector "${vector.name}" (${vector.expectedError}) in a session`;
        if (next.kind === 'closed') {
          // Closing on one rejection is allowed only where the vector says so (an out-of-range length: §2 lets the receiver close).
          run.check(vectorRequirement(context, vector, 'W-CHECK-8'), vector.closes || vector.expectedError === 'FRAME_TOO_LONG' || vector.expectedError === 'FRAME_TOO_SHORT', `${what}: the hub closed the session on one rejected frame`);
          session.destroy();
          session = await establish(context, run, device, { check: false });
          if (session === undefined) return;
          continue;
        }
        const accepted = next.kind === 'opened' && next.message.type === MessageType.PONG;
        run.check('W-CHECK-9', accepted || next.kind === 'timeout', `${what} was answered: ${describeReceived(next)} before the PONG of the next PING`);
        run.check(vectorRequirement(context, vector, 'W-CHECK-8'), accepted, `${what}: then a PING with the same seq got ${describeReceived(next)}`);
        run.check('W-CHECK-8', accepted, `after ${what} the next valid frame (same seq) got ${describeReceived(next)}`);
        run.check('W-CHECK-1', accepted, `${what}: the checks of §4 did not stop it (the next frame got ${describeReceived(next)})`);
        if (vector.expectedError === 'BAD_PAYLOAD') run.check('W-CHECK-7', accepted, `${what}: an authenticated body of the wrong length changed the session (${describeReceived(next)})`);
        if (!accepted) {
          session.destroy();
          session = await establish(context, run, device, { check: false });
          if (session === undefined) return;
        }
      }
      // The rejection limit: 8 rejected in a row are tolerated, the 9th closes (W-REJECT-1).
      const tag = build(session).find((v) => v.expectedError === 'AUTH_FAILED') ?? (build(session)[0] as NegativeVector);
      for (let i = 0; i < 8; i++) session.peer.sendRaw(tag.wire, `${tag.name} #${i + 1}`);
      const afterEight = await silence(session, context.timeouts.silenceMs);
      run.check('W-REJECT-1', afterEight === undefined, `after 8 rejected frames in a row: ${afterEight === undefined ? '' : describeReceived(afterEight)} (8 must be tolerated)`);
      if (afterEight === undefined) {
        session.peer.sendRaw(tag.wire, `${tag.name} #9`);
        const ninth = await session.peer.waitClosed(context.timeouts.frameMs);
        run.check('W-REJECT-1', ninth.closed && ninth.frames.length === 0, `the 9th rejected frame in a row: ${ninth.closed ? 'closed' : `still open after ${context.timeouts.frameMs} ms`}, ${ninth.frames.length} frame(s) sent`);
      }
      session.destroy();
    } finally {
      context.release(device);
    }
    if (context.canRotate) await underDhPending(context, run);
  },
};

/** The vectors of frames under a dh pending key (HK8): offered by a REKEY_DH the kit's device has not taken yet. */
async function underDhPending(context: HubKitContext, run: ScenarioRun): Promise<void> {
  const device = context.claim({ mode: 'dh' });
  if (device === undefined) return;
  try {
    const session = await establish(context, run, device, { check: false });
    if (session === undefined) return;
    await context.requestRotation(device.deviceId);
    const { offer } = await awaitOffer(context, session, context.rotationWaitMs);
    if (offer === undefined || offer.message.type !== MessageType.REKEY_DH) return session.destroy();
    const pending = offer.message.newKeyId;
    const families: string[] = [NEGATIVE_REQUIREMENTS.dhShareMissing, NEGATIVE_REQUIREMENTS.dhShareLowOrder, NEGATIVE_REQUIREMENTS.dhShareForeign];
    const build = (): NegativeVector[] =>
      negativeVectors({
        receiver: 'hub',
        state: 'established',
        deviceId: device.idBytes,
        sessionId: session.nh,
        sequence: session.deviceSeq,
        sealKey: { id: device.active.id, key: device.active.key },
        heldKeyIds: [device.active.id, pending],
        dhPendingKeyId: pending,
      }).filter((v) => families.includes(v.requirement));
    const count = build().length;
    for (let index = 0; index < count; index++) {
      const vector = build()[index] as NegativeVector;
      session.peer.sendRaw(vector.wire, vector.name);
      const next = await pingPong(context, session);
      const accepted = next.kind === 'opened' && next.message.type === MessageType.PONG;
      const what = `vector "${vector.name}" (${vector.expectedError}) while REKEY_DH(${pending}) is pending`;
      run.check(vectorRequirement(context, vector, 'W-CHECK-8'), accepted, `${what}: then a PING with the same seq got ${describeReceived(next)}`);
      run.check('W-CHECK-8', accepted, `after ${what} the next valid frame got ${describeReceived(next)}`);
      if (!accepted) break;
    }
    session.destroy();
  } finally {
    context.release(device);
  }
}
