/**
 * Crashes of the hub under test at chosen moments (--kill-cmd, then
 * --start-cmd), and what it does after the restart (docs/PROTOCOL.md §8.2
 * H1–H3, §11.4 H4–H5, §12.4 R2):
 *   right after it sent a REKEY / REKEY_DH — it must offer the same (id,
 *     bytes) again (a hub that offers different bytes under an id it
 *     offered before did not persist the pending key first, H1 / H4), and
 *     welcome the device's HELLO under the offered key;
 *   right after the kit sent a REKEY_ACK — the HELLO under the new key
 *     (with its share in the dh mode) is welcomed under it (a dh hub that
 *     cannot open it erased h before the promotion committed, H5);
 *   right after it sent CONFIRM — a HELLO under the old key must not be
 *     welcomed under the old key (the hub sealed CONFIRM under the new key,
 *     so its promotion had to be durable first, H2);
 *   right after RECOVER_RESULT — the HELLO under N is welcomed (HK9).
 */
import { MessageType } from '../../../../modules/protocol/constants';
import type { RekeyMode } from '../../../../modules/platform/keys';
import type { HubKitContext, ScenarioRun } from '../context';
import type { KitDevice } from '../kit-devices';
import { describeReceived, type KitSession } from '../session';
import { establish } from './handshake';
import { awaitOffer, describeOffer, rotateAndOffer, sameOffer } from './rotation';
import { recoverDevice } from './recovery';
import type { Scenario } from './scenario';

async function helloUnder(context: HubKitContext, run: ScenarioRun, device: KitDevice, asActive: boolean): Promise<{ session?: KitSession; welcomeKey?: number; note: string; silent?: boolean }> {
  const opened = await context.open(device, run);
  if (opened.session === undefined) return { note: opened.note ?? 'no CHALLENGE' };
  const session = opened.session;
  session.hello(asActive ? { key: device.active, futureId: 0 } : {});
  const welcome = await session.receive(context.timeouts.frameMs);
  if (welcome.kind === 'opened' && welcome.message.type === MessageType.WELCOME) return { session, welcomeKey: welcome.header.keyId, note: describeReceived(welcome) };
  session.destroy();
  return { note: describeReceived(welcome), silent: welcome.kind === 'timeout' };
}

/** A HELLO under the key the hub offered must be welcomed under it: refused → `id`; no answer at all → the hub owes a WELCOME (H-CONFIRM-3). */
function checkWelcomed(run: ScenarioRun, id: string, outcome: { welcomeKey?: number; note: string; silent?: boolean }, key: number, what: string): boolean {
  if (outcome.silent === true) {
    run.fail('H-CONFIRM-3', `${what}: a HELLO under ${key} got no answer (the WELCOME under ${key} is owed)`);
    return false;
  }
  return run.check(id, outcome.welcomeKey === key, `${what}: a HELLO under ${key} got ${outcome.note}`);
}

async function restart(context: HubKitContext, run: ScenarioRun, id: string, moment: string): Promise<boolean> {
  context.log(`crash: killing the hub ${moment}`);
  const ok = await context.crashAndRestart();
  if (!ok) run.fail(id, `${moment}: after --kill-cmd and --start-cmd the hub did not accept connections within ${context.timeouts.startMs} ms`);
  return ok;
}

/** 1. Right after the hub sent the offer. */
async function afterOffer(context: HubKitContext, run: ScenarioRun, device: KitDevice, mode: RekeyMode): Promise<void> {
  const persistPending = mode === 'dh' ? 'H-DH-1' : 'H-REKEY-1';
  const session = await establish(context, run, device, { check: false });
  if (session === undefined) return;
  const offer = await rotateAndOffer(context, run, session);
  if (offer === undefined) return session.destroy();
  session.store(offer.message);
  session.destroy();
  if (!(await restart(context, run, persistPending, 'right after it sent ' + describeOffer(offer)))) return;
  const P = offer.message.newKeyId;
  const underA = await helloUnder(context, run, device, true);
  if (underA.session !== undefined) {
    const { offer: again, note } = await awaitOffer(context, underA.session, context.timeouts.frameMs);
    run.check(persistPending, again !== undefined && sameOffer(offer, again), `before the crash the hub offered ${describeOffer(offer)}; after the restart ${again === undefined ? `no offer (${note})` : describeOffer(again)}`);
    underA.session.destroy();
  }
  const underP = await helloUnder(context, run, device, false);
  checkWelcomed(run, persistPending, underP, P, `after a crash right after its offer of ${P}`);
  underP.session?.close();
  if (underP.welcomeKey === P) context.devicesChanged();
}

/** 2. Right after the kit sent the REKEY_ACK. */
async function afterAck(context: HubKitContext, run: ScenarioRun, device: KitDevice, mode: RekeyMode): Promise<void> {
  const session = await establish(context, run, device, { check: false });
  if (session === undefined) return;
  const offer2 = await rotateAndOffer(context, run, session);
  if (offer2 === undefined) return session.destroy();
  session.store(offer2.message);
  session.ack();
  // Give the hub its moment to read the REKEY_ACK (its CONFIRM, if it comes, is not read: the device still holds (A, F)).
  await session.peer.next(Math.min(300, context.timeouts.frameMs));
  session.destroy();
  const P2 = offer2.message.newKeyId;
  if (!(await restart(context, run, mode === 'dh' ? 'H-DH-3' : 'H-CONFIRM-1', `right after the kit sent REKEY_ACK(${P2})`))) return;
  const afterAckHello = await helloUnder(context, run, device, false);
  checkWelcomed(run, mode === 'dh' ? 'H-DH-3' : 'H-CONFIRM-1', afterAckHello, P2, `after a crash right after REKEY_ACK(${P2})${mode === 'dh' ? ' (the HELLO with its share)' : ''}`);
  afterAckHello.session?.close();
  if (afterAckHello.welcomeKey === P2) context.devicesChanged();
}

/** 3. Right after the hub sent CONFIRM. */
async function afterConfirm(context: HubKitContext, run: ScenarioRun, device: KitDevice): Promise<void> {
  const session = await establish(context, run, device, { check: false });
  if (session === undefined) return;
  const offer3 = await rotateAndOffer(context, run, session);
  if (offer3 === undefined) return session.destroy();
  session.store(offer3.message);
  session.ack();
  const P3 = offer3.message.newKeyId;
  const confirm = await session.receiveUntil([MessageType.CONFIRM], context.timeouts.frameMs);
  session.destroy();
  if (confirm.found === undefined) return run.fail('H-CONFIRM-3', `REKEY_ACK(${P3}): ${describeReceived(confirm.last)}, no CONFIRM`);
  context.devicesChanged();
  if (!(await restart(context, run, 'H-CONFIRM-2', `right after it sent CONFIRM(${P3})`))) return;
  const old = await helloUnder(context, run, { ...device, active: { id: P3 - 1, key: device.retired?.get(P3 - 1) ?? new Uint8Array(64) } }, true);
  run.check('H-CONFIRM-2', old.welcomeKey !== P3 - 1, `the hub sealed CONFIRM under ${P3} and, after a crash right after it, welcomed a HELLO under the old key ${P3 - 1} under ${old.welcomeKey}: its promotion was not durable before it sealed under the new key`);
  old.session?.destroy();
  const current = await helloUnder(context, run, device, false);
  checkWelcomed(run, 'H-CONFIRM-2', current, P3, `after a crash right after CONFIRM(${P3})`);
  current.session?.close();
}

export const crashScenario: Scenario = {
  name: 'crash',
  description: 'the hub crashed (--kill-cmd) and restarted (--start-cmd) right after it sent a REKEY / REKEY_DH, after the kit sent REKEY_ACK, after CONFIRM, after RECOVER_RESULT, in both modes',
  covers: ['H-REKEY-1', 'H-CONFIRM-1', 'H-CONFIRM-2', 'H-DH-1', 'H-DH-3', 'H-REC-6'],
  exclusive: true,
  unavailable: (context) => (!context.canCrash ? 'no --kill-cmd and --start-cmd: the kit cannot crash the hub' : !context.canRotate ? 'the kit cannot make the hub rotate: give --rotate-cmd' : undefined),
  async run(context, run) {
    // One fresh device per moment: each starts from a settled state, so a failure names the moment that broke.
    for (const mode of context.options.crash?.modes ?? (['classic', 'dh'] as const)) {
      for (const moment of [afterOffer, afterAck, (c: HubKitContext, r: ScenarioRun, d: KitDevice) => afterConfirm(c, r, d)]) {
        const device = context.claim({ mode });
        if (device === undefined) {
          context.log(`crash: no ${mode} device left (write more records)`);
          break;
        }
        try {
          await moment(context, run, device, mode);
        } finally {
          context.release(device);
        }
      }
    }
    if (context.options.crash?.recovery === false) return;
    const device = context.claim({ credential: true });
    if (device === undefined) return;
    try {
      await recoverDevice(context, run, device, { crash: true });
    } finally {
      context.release(device);
    }
  },
};
