/**
 * Recovery after a rollback (docs/PROTOCOL.md §12), played by the real
 * device core: the kit's device presents a key the hub does not hold (an
 * id above the hub's, other bytes: a device whose hub was restored from an
 * older backup), the hub answers NO_KEY, the Noise-KK handshake runs, the
 * hub accepts with N = max(ids) + 1 and closes, and the device's HELLO
 * under N is welcomed under N (the promotion). With --kill-cmd/--start-cmd
 * the crash scenario repeats it with the hub crashed right after it sent
 * RECOVER_RESULT: N must have been durable before (HK9, R2).
 */
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { MessageType } from '../../../../modules/protocol/constants';
import { inspectFrame, typeName } from '../../wire/sealer';
import type { HubKitContext, ScenarioRun } from '../context';
import type { KitDevice } from '../kit-devices';
import { adoptKeys, realDevice } from '../real-device';
import type { NodeDevice } from '../../../../hosts/node/device-host';
import type { Scenario } from './scenario';

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]).finally(() => clearTimeout(timer));
}

/** The device core's reconnect delays: no faster than the run's pace, so a retry spends the source's allowance slowly. */
function reconnectPace(context: HubKitContext): { reconnectInitialMs?: number; reconnectMaxMs?: number } {
  const pace = context.options.recoveryPaceMs ?? 0;
  return pace > 0 ? { reconnectInitialMs: pace, reconnectMaxMs: Math.max(pace, 2_000) } : {};
}

/**
 * A recovery step the hub did not answer, with the connections it closed meanwhile. After NO_KEYs earlier in the
 * run, a hub closing without an answer is limiting this source (H-RATE-2 allows that: HS3 instead of HS9), not
 * breaking the recovery: the kit waits `rateRetryMs`, quiet, and tries once more; only an unanswered retry on a
 * connection the hub kept open is a failure, a retry closed again is "rate limited, not judged" (n/a).
 */
function rateLimited(context: HubKitContext, closes: number): boolean {
  return context.noKeyAnswers > 0 && closes > 0;
}

function countCloses(node: NodeDevice): { readonly count: number } {
  const counter = { count: 0 };
  node.on('disconnected', () => counter.count++);
  return counter;
}

type RecoveryAttempt =
  | { kind: 'recovered'; node: NodeDevice; newKeyId: number }
  | { kind: 'refused'; node: NodeDevice; reason: string }
  | { kind: 'noNoKey' | 'unfinished'; node: NodeDevice; closes: number };

async function attemptRecovery(context: HubKitContext, run: ScenarioRun, device: KitDevice, claimed: { id: number; key: Uint8Array }, limit: number): Promise<RecoveryAttempt> {
  await context.paceFailingHello();
  const node = realDevice(device, { target: context.target, recording: run.recording, keys: { active: { id: claimed.id, key: claimed.key.slice() } }, ...reconnectPace(context) });
  const closes = countCloses(node);
  const lost = once(node, 'hubLostKey');
  const recovered = once(node, 'recovered') as Promise<[{ newKeyId: number }]>;
  const refused = once(node, 'recoveryRefused') as Promise<[{ reason: string }]>;
  node.start();
  if ((await withTimeout(lost, limit)) === 'timeout') return { kind: 'noNoKey', node, closes: closes.count };
  context.noKeyAnswers++;
  const outcome = await withTimeout(Promise.race([recovered.then(([e]) => ({ recovered: e })), refused.then(([e]) => ({ refused: e }))]), limit);
  if (outcome === 'timeout') return { kind: 'unfinished', node, closes: closes.count };
  if ('refused' in outcome) return { kind: 'refused', node, reason: outcome.refused.reason };
  return { kind: 'recovered', node, newKeyId: outcome.recovered.newKeyId };
}

/** Runs one recovery of `device`; with `crash`, the hub is crashed and restarted right after RECOVER_RESULT. */
export async function recoverDevice(context: HubKitContext, run: ScenarioRun, device: KitDevice, options: { crash?: boolean } = {}): Promise<void> {
  const hubActive = device.active.id;
  const claimed = { id: hubActive + 2, key: new Uint8Array(randomBytes(64)) };
  const release = await context.link.budget.acquire();
  const limit = context.timeouts.frameMs * 4;
  let attempt = await attemptRecovery(context, run, device, claimed, limit);
  const node = (): NodeDevice => attempt.node;
  try {
    if ((attempt.kind === 'noNoKey' || attempt.kind === 'unfinished') && rateLimited(context, attempt.closes)) {
      const first = attempt;
      first.node.stop();
      context.log(`recovery: the hub closed ${first.closes} connection(s) without ${first.kind === 'noNoKey' ? 'NO_KEY' : 'finishing the recovery'} after earlier NO_KEYs (its per-source limit?): one more try after ${context.timeouts.rateRetryMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, context.timeouts.rateRetryMs));
      attempt = await attemptRecovery(context, run, device, claimed, limit);
      if ((attempt.kind === 'noNoKey' || attempt.kind === 'unfinished') && attempt.closes > 0) {
        const why = `rate limited, not judged: the hub closed ${first.closes} and, after a quiet ${context.timeouts.rateRetryMs} ms, ${attempt.closes} more connection(s) of the recovery without ${attempt.kind === 'noNoKey' ? 'NO_KEY' : 'an answer'}, having answered NO_KEY ${context.noKeyAnswers} time(s) before — its per-source limit (H-RATE-2); give the run a larger allowance, --recovery-pace or --recovery-retry-wait (docs/CONFORMANCE.md)`;
        for (const id of attempt.kind === 'noNoKey' ? ['H-REC-1', 'H-REC-3', 'H-REC-4', 'H-REC-6'] : ['H-REC-3', 'H-REC-4', 'H-REC-6']) run.notApplicable(id, why);
        return;
      }
    }
    if (attempt.kind === 'noNoKey') {
      run.fail('H-REC-1', `a HELLO under key ${claimed.id}, which the hub does not hold, got no NO_KEY within ${limit} ms`);
      return;
    }
    run.pass('H-REC-1');
    if (attempt.kind !== 'recovered') {
      run.fail('H-REC-3', `the recovery of a device holding ${claimed.id} (the hub ${hubActive}) ${attempt.kind === 'refused' ? `was refused: ${attempt.reason}` : `did not finish within ${limit} ms`}`);
      return;
    }
    const outcome = { recovered: { newKeyId: attempt.newKeyId } };
    const N = outcome.recovered.newKeyId;
    run.check('H-REC-3', N === Math.max(hubActive, claimed.id) + 1, `the recovered key id is ${N}, expected max(${hubActive}, ${claimed.id}) + 1 = ${Math.max(hubActive, claimed.id) + 1}`);
    run.pass('H-REC-4');
    // The real device core checked every recovery frame's exact length and tag (§12.2, §12.3) before it got this far.
    run.pass('W-REC-1');
    run.pass('W-REC-2');
    // After RECOVER_RESULT the hub closes (one handshake per connection).
    const received = run.recording.frames.filter((f) => f.direction === 'received');
    const resultSeen = received.some((f) => {
      const inspected = inspectFrame(f.bytes.subarray(2));
      return 'header' in inspected && inspected.header.type === MessageType.RECOVER_RESULT;
    });
    run.check('H-REC-10', resultSeen, 'no RECOVER_RESULT among the frames received');
    if (options.crash !== true) {
      // H-REC-2: the hub now holds the recovered pending N ≠ A + 1 (unusablePending): a HELLO under its active key A
      // (the kit's device still holds it) must get NO_KEY, not a session. The device core waits meanwhile.
      node().stop();
      for (let tries = 0; tries < 2; tries++) {
        await context.paceFailingHello();
        const probe = await context.open(device, run);
        if (probe.session === undefined) break;
        probe.session.hello({ key: { id: device.active.id, key: device.active.key } });
        const answer = await probe.session.peer.next(context.timeouts.frameMs);
        probe.session.destroy();
        const inspected = answer.kind === 'frame' ? inspectFrame(answer.frame) : undefined;
        const noKey = inspected !== undefined && 'header' in inspected && inspected.header.type === MessageType.NO_KEY;
        if (noKey) context.noKeyAnswers++;
        if (!noKey && answer.kind === 'closed' && rateLimited(context, 1)) {
          // Closed without a frame after earlier NO_KEYs: the source's limit (HS3 instead of HS9), probably.
          if (tries === 0) {
            await new Promise((resolve) => setTimeout(resolve, context.timeouts.rateRetryMs));
            continue;
          }
          run.notApplicable('H-REC-2', `rate limited, not judged: the HELLO under ${device.active.id} after RECOVER_RESULT(${N}) was closed without NO_KEY twice, ${context.timeouts.rateRetryMs} ms apart, after ${context.noKeyAnswers} NO_KEY(s) before (H-RATE-2)`);
          break;
        }
        run.check('H-REC-2', noKey, `after RECOVER_RESULT(${N}), a HELLO under the hub's active key ${device.active.id} got ${inspected !== undefined && 'header' in inspected ? typeName(inspected.header.type) : answer.kind}, not NO_KEY (the pending ${N} is not ${device.active.id} + 1)`);
        break;
      }
    }
    const established = once(node(), 'established') as Promise<[{ keyId: number }]>;
    if (options.crash !== true) node().start();
    if (options.crash === true) {
      node().stop();
      const restarted = await context.crashAndRestart();
      if (!restarted) {
        run.fail('H-REC-6', `the hub did not accept connections within ${context.timeouts.startMs} ms of --start-cmd`);
        return;
      }
      node().start();
    }
    const session = await withTimeout(established, limit);
    const ok = session !== 'timeout' && session[0].keyId === N;
    run.check('H-REC-6', ok, `${options.crash === true ? 'after a crash right after RECOVER_RESULT, ' : ''}the device's HELLO under the recovered key ${N} ${session === 'timeout' ? 'was never welcomed' : `was welcomed under ${session[0].keyId}`}`);
    if (ok) {
      // The promotion happens on the WELCOME under N (DK5); give the device's keystore its turn.
      await new Promise((resolve) => setTimeout(resolve, 50));
      adoptKeys(device, node().keys);
      context.devicesChanged();
    }
  } finally {
    node().stop();
    release();
  }
}

export const recoveryScenario: Scenario = {
  name: 'recovery',
  description: 'the real device core with a key the hub does not hold: NO_KEY, the Noise-KK recovery, ACCEPTED, then the HELLO under N promotes; an unknown device gets NO_KEY too',
  covers: ['H-REC-1', 'H-REC-2', 'H-REC-3', 'H-REC-4', 'H-REC-5', 'H-REC-6', 'H-REC-8', 'H-REC-10', 'W-REC-1', 'W-REC-2'],
  unavailable: (context) =>
    context.options.devices.some((d) => d.credential !== undefined) ? undefined : 'no device with a recovery credential: write the records with --hub-static-public and --hub-static-id',
  async run(context, run) {
    // An unknown device: the same NO_KEY answer, telling an impostor nothing (HS9).
    const stranger: KitDevice = { deviceId: '', idBytes: new Uint8Array(randomBytes(8)), mode: 'classic', active: { id: 1, key: new Uint8Array(randomBytes(64)) } };
    for (let tries = 0; tries < 2; tries++) {
      await context.paceFailingHello();
      const opened = await context.open(stranger, run);
      if (opened.session === undefined) break;
      opened.session.hello();
      const answer = await opened.session.peer.next(context.timeouts.frameMs);
      opened.session.destroy();
      const inspected = answer.kind === 'frame' ? inspectFrame(answer.frame) : undefined;
      const noKey = inspected !== undefined && 'header' in inspected && inspected.header.type === MessageType.NO_KEY && inspected.header.sequence === 1;
      if (noKey) context.noKeyAnswers++;
      if (!noKey && answer.kind === 'closed' && rateLimited(context, 1)) {
        // Closed without a frame after earlier NO_KEYs: the source's limit (HS3 instead of HS9), probably.
        if (tries === 0) {
          context.log(`recovery: an unknown device's HELLO closed without NO_KEY after earlier NO_KEYs (its per-source limit?): one more try after ${context.timeouts.rateRetryMs} ms`);
          await new Promise((resolve) => setTimeout(resolve, context.timeouts.rateRetryMs));
          continue;
        }
        run.notApplicable('H-REC-1', `rate limited, not judged: an unknown device's HELLO was closed without NO_KEY twice, ${context.timeouts.rateRetryMs} ms apart, after ${context.noKeyAnswers} NO_KEY(s) before (H-RATE-2)`);
        break;
      }
      run.check('H-REC-1', noKey, `a HELLO of an unknown device got ${answer.kind === 'frame' ? `a frame of type 0x${(answer.frame[1] as number).toString(16)}` : answer.kind}, not NO_KEY`);
      break;
    }
    // In a recovery state, anything but the next recovery message closes the connection, nothing sent (HS13).
    await context.paceFailingHello();
    const lost = await context.open(stranger, run);
    if (lost.session !== undefined) {
      lost.session.hello();
      const first = await lost.session.peer.next(context.timeouts.frameMs);
      const inspected = first.kind === 'frame' ? inspectFrame(first.frame) : undefined;
      if (inspected !== undefined && 'header' in inspected && inspected.header.type === MessageType.NO_KEY) {
        lost.session.send({ type: MessageType.PING }, { seq: 1 });
        const outcome = await lost.session.peer.waitClosed(context.timeouts.frameMs);
        run.check('H-REC-8', outcome.closed && outcome.frames.length === 0, `a PING in place of RECOVER_INIT: ${outcome.closed ? 'closed' : 'still open'}, ${outcome.frames.length} frame(s) sent`);
      }
      lost.session.destroy();
    }
    const device = context.claim({ credential: true });
    if (device === undefined) return;
    try {
      await recoverDevice(context, run, device);
    } finally {
      context.release(device);
    }
    const inSync = context.claim({ credential: true });
    if (inSync === undefined) return;
    try {
      await inSyncRecovery(context, run, inSync);
    } finally {
      context.release(inSync);
    }
  },
};

/** A HELLO corrupted in transit: NO_KEY, and the recovery's check shows the device's key is one the hub holds: IN_SYNC, nothing changes (HS12, R4). */
async function inSyncRecovery(context: HubKitContext, run: ScenarioRun, device: KitDevice): Promise<void> {
  const release = await context.link.budget.acquire();
  const limit = context.timeouts.frameMs * 4;
  const attempt = async (): Promise<{ node: NodeDevice; inSync: boolean; closes: { readonly count: number }; established: Promise<[{ keyId: number }]> }> => {
    await context.paceFailingHello();
    const node = realDevice(device, { target: context.target, recording: run.recording, corruptFirstHello: true, ...reconnectPace(context) });
    const closes = countCloses(node);
    const inSync = once(node, 'recoveryInSync');
    const established = once(node, 'established') as Promise<[{ keyId: number }]>;
    node.start();
    return { node, inSync: (await withTimeout(inSync, limit)) !== 'timeout', closes, established };
  };
  let tried = await attempt();
  try {
    if (!tried.inSync && rateLimited(context, tried.closes.count)) {
      const first = tried.closes.count;
      tried.node.stop();
      context.log(`recovery: the hub closed ${first} connection(s) of the IN_SYNC check without an answer after earlier NO_KEYs (its per-source limit?): one more try after ${context.timeouts.rateRetryMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, context.timeouts.rateRetryMs));
      tried = await attempt();
      if (!tried.inSync && tried.closes.count > 0) {
        run.notApplicable('H-REC-5', `rate limited, not judged: the hub closed ${first} and, after a quiet ${context.timeouts.rateRetryMs} ms, ${tried.closes.count} more connection(s) of a device whose HELLO was corrupted in transit without IN_SYNC, having answered NO_KEY ${context.noKeyAnswers} time(s) before — its per-source limit (H-RATE-2); give the run a larger allowance, --recovery-pace or --recovery-retry-wait (docs/CONFORMANCE.md)`);
        return;
      }
    }
    run.check('H-REC-5', tried.inSync, `a device whose HELLO was corrupted in transit, holding the hub's key ${device.active.id}, got no IN_SYNC within ${limit} ms`);
    const session = await withTimeout(tried.established, limit);
    run.check('H-REC-5', session !== 'timeout' && session[0].keyId === device.active.id, `after IN_SYNC the device's next HELLO under ${device.active.id} ${session === 'timeout' ? 'was never welcomed' : `was welcomed under ${session[0].keyId}`}`);
  } finally {
    tried.node.stop();
    release();
  }
}
