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
import { inspectFrame } from '../../wire/sealer';
import type { HubKitContext, ScenarioRun } from '../context';
import type { KitDevice } from '../kit-devices';
import { adoptKeys, realDevice } from '../real-device';
import type { Scenario } from './scenario';

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]).finally(() => clearTimeout(timer));
}

/** Runs one recovery of `device`; with `crash`, the hub is crashed and restarted right after RECOVER_RESULT. */
export async function recoverDevice(context: HubKitContext, run: ScenarioRun, device: KitDevice, options: { crash?: boolean } = {}): Promise<void> {
  const hubActive = device.active.id;
  const claimed = hubActive + 2;
  const release = await context.link.budget.acquire();
  const node = realDevice(device, { target: context.target, recording: run.recording, keys: { active: { id: claimed, key: new Uint8Array(randomBytes(64)) } } });
  const limit = context.timeouts.frameMs * 4;
  try {
    const lost = once(node, 'hubLostKey');
    const recovered = once(node, 'recovered') as Promise<[{ newKeyId: number }]>;
    const refused = once(node, 'recoveryRefused') as Promise<[{ reason: string }]>;
    node.start();
    const noKey = await withTimeout(lost, limit);
    if (noKey === 'timeout') {
      run.fail('H-REC-1', `a HELLO under key ${claimed}, which the hub does not hold, got no NO_KEY within ${limit} ms`);
      return;
    }
    run.pass('H-REC-1');
    const outcome = await withTimeout(Promise.race([recovered.then(([e]) => ({ recovered: e })), refused.then(([e]) => ({ refused: e }))]), limit);
    if (outcome === 'timeout' || 'refused' in outcome) {
      run.fail('H-REC-3', `the recovery of a device holding ${claimed} (the hub ${hubActive}) ${outcome === 'timeout' ? `did not finish within ${limit} ms` : `was refused: ${outcome.refused.reason}`}`);
      return;
    }
    const N = outcome.recovered.newKeyId;
    run.check('H-REC-3', N === Math.max(hubActive, claimed) + 1, `the recovered key id is ${N}, expected max(${hubActive}, ${claimed}) + 1 = ${Math.max(hubActive, claimed) + 1}`);
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
    const established = once(node, 'established') as Promise<[{ keyId: number }]>;
    if (options.crash === true) {
      node.stop();
      const restarted = await context.crashAndRestart();
      if (!restarted) {
        run.fail('H-REC-6', `the hub did not accept connections within ${context.timeouts.startMs} ms of --start-cmd`);
        return;
      }
      node.start();
    }
    const session = await withTimeout(established, limit);
    const ok = session !== 'timeout' && session[0].keyId === N;
    run.check('H-REC-6', ok, `${options.crash === true ? 'after a crash right after RECOVER_RESULT, ' : ''}the device's HELLO under the recovered key ${N} ${session === 'timeout' ? 'was never welcomed' : `was welcomed under ${session[0].keyId}`}`);
    if (ok) {
      // The promotion happens on the WELCOME under N (DK5); give the device's keystore its turn.
      await new Promise((resolve) => setTimeout(resolve, 50));
      adoptKeys(device, node.keys);
      context.devicesChanged();
    }
  } finally {
    node.stop();
    release();
  }
}

export const recoveryScenario: Scenario = {
  name: 'recovery',
  description: 'the real device core with a key the hub does not hold: NO_KEY, the Noise-KK recovery, ACCEPTED, then the HELLO under N promotes; an unknown device gets NO_KEY too',
  covers: ['H-REC-1', 'H-REC-3', 'H-REC-4', 'H-REC-5', 'H-REC-6', 'H-REC-8', 'H-REC-10', 'W-REC-1', 'W-REC-2'],
  unavailable: (context) =>
    context.options.devices.some((d) => d.credential !== undefined) ? undefined : 'no device with a recovery credential: write the records with --hub-static-public and --hub-static-id',
  async run(context, run) {
    // An unknown device: the same NO_KEY answer, telling an impostor nothing (HS9).
    const stranger: KitDevice = { deviceId: '', idBytes: new Uint8Array(randomBytes(8)), mode: 'classic', active: { id: 1, key: new Uint8Array(randomBytes(64)) } };
    const opened = await context.open(stranger, run);
    if (opened.session !== undefined) {
      opened.session.hello();
      const answer = await opened.session.peer.next(context.timeouts.frameMs);
      const inspected = answer.kind === 'frame' ? inspectFrame(answer.frame) : undefined;
      const noKey = inspected !== undefined && 'header' in inspected && inspected.header.type === MessageType.NO_KEY && inspected.header.sequence === 1;
      run.check('H-REC-1', noKey, `a HELLO of an unknown device got ${answer.kind === 'frame' ? `a frame of type 0x${(answer.frame[1] as number).toString(16)}` : answer.kind}, not NO_KEY`);
      opened.session.destroy();
    }
    // In a recovery state, anything but the next recovery message closes the connection, nothing sent (HS13).
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
  const node = realDevice(device, { target: context.target, recording: run.recording, corruptFirstHello: true });
  const limit = context.timeouts.frameMs * 4;
  try {
    const inSync = once(node, 'recoveryInSync');
    const established = once(node, 'established') as Promise<[{ keyId: number }]>;
    node.start();
    const answer = await withTimeout(inSync, limit);
    run.check('H-REC-5', answer !== 'timeout', `a device whose HELLO was corrupted in transit, holding the hub's key ${device.active.id}, got no IN_SYNC within ${limit} ms`);
    const session = await withTimeout(established, limit);
    run.check('H-REC-5', session !== 'timeout' && session[0].keyId === device.active.id, `after IN_SYNC the device's next HELLO under ${device.active.id} ${session === 'timeout' ? 'was never welcomed' : `was welcomed under ${session[0].keyId}`}`);
  } finally {
    node.stop();
    release();
  }
}
