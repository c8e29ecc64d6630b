/**
 * Cuts (docs/PROTOCOL.md §8.3 "connection loss at any byte"): the HELLO cut
 * at every byte, then a rotation cut at every byte of the REKEY_ACK and at
 * every frame boundary (after the REKEY, after the whole REKEY_ACK, after
 * the CONFIRM). After each cut the device reconnects, and the hub must still
 * accept it and complete the rotation: after a REKEY_ACK that never arrived
 * whole it offers the same (id, bytes) again — the kit decrypts every REKEY
 * with the key it holds and compares — and after the whole REKEY_ACK a HELLO
 * under the new key is welcomed under it.
 */
import { MessageType } from '../../../../modules/protocol/constants';
import type { RekeyMode } from '../../../../modules/platform/keys';
import { withLengthPrefix } from '../../../../modules/protocol/framing';
import type { HubKitContext, ScenarioRun } from '../context';
import type { KitDevice } from '../kit-devices';
import { describeReceived, type KitSession } from '../session';
import { ackAndConfirm, awaitOffer, describeOffer, rotateAndOffer, sameOffer, type Offer } from './rotation';
import type { Scenario } from './scenario';

/** Welcomed under `keyId`? */
async function welcomedUnder(context: HubKitContext, run: ScenarioRun, device: KitDevice, keyId: number, options: { asActive?: boolean } = {}): Promise<{ session?: KitSession; note: string }> {
  const opened = await context.open(device, run);
  if (opened.session === undefined) return { note: opened.note ?? 'no CHALLENGE' };
  const session = opened.session;
  session.hello(options.asActive === true ? { key: device.active, futureId: 0 } : {});
  const welcome = await session.receive(context.timeouts.frameMs);
  if (welcome.kind === 'opened' && welcome.message.type === MessageType.WELCOME && welcome.header.keyId === keyId) return { session, note: '' };
  session.destroy();
  return { note: describeReceived(welcome) };
}

async function cutRun(context: HubKitContext, run: ScenarioRun, device: KitDevice): Promise<void> {
  const stride = Math.max(1, context.options.cutStride ?? 1);
  // The HELLO at every byte: k bytes, then the cut. The hub's state must not change (the full HELLO is still welcomed).
  const probe = await context.open(device, run);
  if (probe.session === undefined) return;
  const helloFrame = withLengthPrefix(probe.session.seal({ type: MessageType.HELLO, deviceNonce: new Uint8Array(16), activeKeyId: device.active.id, futureKeyId: 0 }, { seq: 0 }));
  probe.session.destroy();
  for (let k = 0; k < helloFrame.length; k += stride) {
    const opened = await context.open(device, run);
    if (opened.session === undefined) return run.fail('W-CHECK-8', `after a HELLO cut at byte ${k - stride}: ${opened.note ?? 'no CHALLENGE'}`);
    const session = opened.session;
    const frame = withLengthPrefix(session.seal({ type: MessageType.HELLO, deviceNonce: new Uint8Array(16), activeKeyId: device.active.id, futureKeyId: 0 }, { seq: 0 }));
    session.peer.sendRaw(frame.subarray(0, k), `HELLO cut after ${k} of ${frame.length} bytes`);
    session.destroy();
  }
  const afterHelloCuts = await welcomedUnder(context, run, device, device.active.id);
  run.check('W-CHECK-8', afterHelloCuts.session !== undefined, `after HELLOs cut at every byte the full HELLO got ${afterHelloCuts.note}`);
  const session0 = afterHelloCuts.session;
  if (session0 === undefined) return;

  // A rotation: the REKEY_ACK cut at every byte (0 = the boundary after the REKEY).
  const first = await rotateAndOffer(context, run, session0);
  if (first === undefined) return session0.destroy();
  const A = device.active.id;
  session0.store(first.message);
  let ack = withLengthPrefix(session0.ackFrame());
  session0.peer.sendRaw(ack.subarray(0, 0), 'REKEY_ACK cut after 0 bytes');
  session0.destroy();
  const id = first.message.newKeyId;
  for (let k = stride; k < ack.length; k += stride) {
    // The device reconnects as one that did not keep the key would (a HELLO under A; the hub cannot tell): it must be welcomed under A and get the same offer.
    const back = await welcomedUnder(context, run, device, A, { asActive: true });
    if (back.session === undefined) return run.fail('H-REKEY-2', `after the REKEY_ACK was cut at byte ${k - stride}, a HELLO under ${A} got ${back.note}`);
    const { offer, note } = await awaitOffer(context, back.session, context.timeouts.frameMs);
    if (offer === undefined) return run.fail('H-REKEY-4', `after the REKEY_ACK was cut at byte ${k - stride}, the new session under ${A} got no offer of ${id}: ${note}`);
    if (!run.check(device.mode === 'dh' ? 'H-DH-2' : 'H-REKEY-2', sameOffer(first, offer), `after a cut at byte ${k - stride} of the REKEY_ACK the hub offers ${describeOffer(offer)}, before ${describeOffer(first)}`)) return back.session.destroy();
    run.pass('H-REKEY-4');
    // The identical REKEY_ACK for the identical offer (D7 for a dh key: the same share).
    ack = withLengthPrefix(back.session.ackFrame());
    back.session.peer.sendRaw(ack.subarray(0, k), `REKEY_ACK cut after ${k} of ${ack.length} bytes`);
    back.session.destroy();
  }
  // The whole REKEY_ACK, then the cut before the CONFIRM could arrive: the HELLO under the new key is welcomed under it.
  const whole = await welcomedUnder(context, run, device, A, { asActive: true });
  if (whole.session === undefined) return run.fail('H-REKEY-2', `before the last cut a HELLO under ${A} got ${whole.note}`);
  await awaitOffer(context, whole.session, context.timeouts.frameMs);
  whole.session.peer.sendRaw(withLengthPrefix(whole.session.ackFrame()), 'the whole REKEY_ACK, then the cut');
  whole.session.destroy();
  const promoted = await welcomedUnder(context, run, device, id);
  // No answer at all is the missing WELCOME under the new key (H-CONFIRM-3, below); a refusal is a HELLO under a held key refused.
  run.check('H-HELLO-2', promoted.session !== undefined || promoted.note === describeReceived({ kind: 'timeout' }), `after the whole REKEY_ACK and a cut, a HELLO under ${id} got ${promoted.note}`);
  run.check('H-CONFIRM-3', promoted.session !== undefined, `the HELLO under ${id} must be answered by the WELCOME under ${id}: ${promoted.note}`);
  if (promoted.session === undefined) return;
  context.devicesChanged();

  // A second rotation cut right after the CONFIRM: the next HELLO (under the new key) is welcomed under it.
  const second: Offer | undefined = await rotateAndOffer(context, run, promoted.session);
  if (second === undefined) return promoted.session.destroy();
  promoted.session.store(second.message);
  const confirmed = await ackAndConfirm(context, run, promoted.session);
  promoted.session.destroy();
  if (!confirmed) return;
  context.devicesChanged();
  const after = await welcomedUnder(context, run, device, second.message.newKeyId);
  run.check('H-HELLO-2', after.session !== undefined, `after a cut right after the CONFIRM, a HELLO under ${second.message.newKeyId} got ${after.note}`);
  after.session?.close();
}

function cutScenario(mode: RekeyMode): Scenario {
  return {
    name: `cuts-${mode}`,
    description: `the HELLO cut at every byte; a ${mode} rotation cut at every byte of the REKEY_ACK and at every frame boundary, reconnecting after each`,
    covers: ['W-CHECK-8', 'H-REKEY-2', 'H-REKEY-4', 'H-HELLO-2', 'H-CONFIRM-3', ...(mode === 'dh' ? ['H-DH-2'] : [])],
    unavailable: (context) => (context.canRotate ? undefined : 'the kit cannot make the hub rotate: give --rotate-cmd or --wait-rotation'),
    async run(context, run) {
      const device = context.claim({ mode });
      if (device === undefined) return;
      try {
        await cutRun(context, run, device);
      } finally {
        context.release(device);
      }
    },
  };
}

export const cutsClassicScenario = cutScenario('classic');
export const cutsDhScenario = cutScenario('dh');
