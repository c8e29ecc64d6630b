/**
 * Rotations in the classic and the dh mode (docs/PROTOCOL.md §6.2, §8.2,
 * §11): the offer (id A + 1, sealed under A, the mode's message), its
 * re-offers (identical bytes, timing), the offer at the start of every new
 * session, CONFIRM under the new key (exactly one), a repeated REKEY_ACK, the
 * old key refused after the promotion, and a second rotation completed by a
 * HELLO under the future key with body (active, future) — the case a hub
 * requiring body active id = header key id would lock out for good.
 */
import { bytesEqual, toHex } from '../../../../modules/bytes';
import { MessageType, WireError } from '../../../../modules/protocol/constants';
import type { RekeyMode } from '../../../../modules/platform/keys';
import type { HubKitContext, ScenarioRun } from '../context';
import { describeReceived, type KitSession, type Received } from '../session';
import type { KitDevice } from '../kit-devices';
import { withLengthPrefix } from '../../../../modules/protocol/framing';
import { freshBytes } from '../../wire/sealer';
import { establish } from './handshake';
import { pingPong, silence } from './messages';
import type { Scenario } from './scenario';

export type Offer = Extract<Received, { kind: 'opened' }> & { readonly message: { readonly type: typeof MessageType.REKEY | typeof MessageType.REKEY_DH } };

export function offerBytes(offer: Offer): Uint8Array {
  return offer.message.type === MessageType.REKEY ? offer.message.newKey : offer.message.hubShare;
}

export function sameOffer(a: Offer, b: Offer): boolean {
  return a.message.type === b.message.type && a.message.newKeyId === b.message.newKeyId && bytesEqual(offerBytes(a), offerBytes(b));
}

export function describeOffer(offer: Offer): string {
  return `${offer.message.type === MessageType.REKEY ? 'REKEY' : 'REKEY_DH'}(${offer.message.newKeyId}, ${toHex(offerBytes(offer)).slice(0, 16)}…) under key ${offer.header.keyId}`;
}

/** Waits for an offer on the session (answering PING/DATA meanwhile); undefined and a note when none came. */
export async function awaitOffer(_context: HubKitContext, session: KitSession, timeoutMs: number): Promise<{ offer?: Offer; note: string }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { note: `no REKEY or REKEY_DH within ${timeoutMs} ms` };
    const received = await session.receive(left);
    if (received.kind !== 'opened') return { note: describeReceived(received) };
    const type = received.message.type;
    if (type === MessageType.REKEY || type === MessageType.REKEY_DH) return { offer: received as Offer, note: '' };
    if (type === MessageType.PING) session.send({ type: MessageType.PONG });
    else if (type === MessageType.DATA) session.send({ type: MessageType.DATA_ACK, streamId: received.message.streamId, messageId: received.message.messageId });
  }
}

/** Asks for a rotation and waits for its offer, checking id, sealing key and message type. */
export async function rotateAndOffer(context: HubKitContext, run: ScenarioRun, session: KitSession): Promise<Offer | undefined> {
  const device = session.device;
  await context.requestRotation(device.deviceId);
  const { offer, note } = await awaitOffer(context, session, context.rotationWaitMs);
  if (offer === undefined) {
    run.fail('H-REKEY-3', `rotation requested for ${device.deviceId}: ${note}`);
    return undefined;
  }
  run.check('H-REKEY-3', offer.message.newKeyId === device.active.id + 1, `${describeOffer(offer)} while the active key is ${device.active.id} (expected ${device.active.id + 1})`);
  run.check('W-KEY-1', offer.message.newKeyId === device.active.id + 1, `${describeOffer(offer)} while the active key is ${device.active.id}: a rotation uses active id + 1`);
  run.check('H-KEY-3', offer.header.keyId === device.active.id, `${describeOffer(offer)}: not sealed under the active key ${device.active.id}`);
  const expected = device.mode === 'dh' ? MessageType.REKEY_DH : MessageType.REKEY;
  if (device.mode === 'dh') run.check('H-DH-6', offer.message.type === MessageType.REKEY_DH, `${describeOffer(offer)} to a device provisioned in the dh mode`);
  else if (offer.message.type !== expected) context.log(`${device.deviceId}: a classic record got ${describeOffer(offer)} (the hub moved it to dh)`);
  return offer;
}

/** REKEY_ACK under the future key, then CONFIRM(P) under P, exactly one. Returns whether the rotation completed. */
export async function ackAndConfirm(context: HubKitContext, run: ScenarioRun, session: KitSession, options: { pipelinePing?: boolean } = {}): Promise<boolean> {
  const future = session.device.future;
  if (future === undefined) return false;
  if (options.pipelinePing === true) {
    // REKEY_ACK and a PING in one write: the PING arrives while the promotion is being persisted; the hub must hold it
    // and answer it only once the promotion is durable — after the CONFIRM, under the new key (§8.6).
    const ack = session.ackFrame();
    const ping = session.seal({ type: MessageType.PING });
    const both = new Uint8Array(ack.length + ping.length + 4);
    both.set(withLengthPrefix(ack), 0);
    both.set(withLengthPrefix(ping), ack.length + 2);
    session.peer.sendRaw(both, 'REKEY_ACK and PING in one write');
  } else {
    session.ack();
  }
  const { found, last, skipped } = await session.receiveUntil([MessageType.CONFIRM], context.timeouts.frameMs);
  const dh = future.shares !== undefined;
  if (found === undefined) {
    run.fail('H-CONFIRM-3', `REKEY_ACK(${future.id}) under the new key${dh ? ' (with its share)' : ''}: ${describeReceived(last)}, no CONFIRM within ${context.timeouts.frameMs} ms`);
    // Refused (rather than left unanswered): the hub could not open the REKEY_ACK under the key derived from its share.
    if (dh && last.kind !== 'timeout') run.fail('H-DH-4', `the REKEY_ACK under the key derived from the hub's share got ${describeReceived(last)}`);
    return false;
  }
  const ok = found.header.keyId === future.id && found.message.type === MessageType.CONFIRM && found.message.keyId === future.id;
  run.check('H-CONFIRM-3', ok, `REKEY_ACK(${future.id}) answered by ${describeReceived(found)}`);
  run.check('W-MSG-3', found.message.type === MessageType.CONFIRM && found.message.keyId === found.header.keyId, 'CONFIRM body id differs from its header key id');
  run.pass('H-CONFIRM-1');
  if (dh) {
    // The CONFIRM opened under the key the kit derived itself (§11.3), after a REKEY_ACK whose share was in the AAD (§11.2).
    run.pass('H-DH-4');
    run.pass('W-DH-1');
    run.pass('W-DH-3');
  }
  // Every CONFIRM after the first, whatever else comes between, is a second answer to one REKEY_ACK (HK5, HS8):
  // counted first, so that it is never mistaken for a wrong answer to the PING behind the REKEY_ACK.
  const extra: Received[] = [];
  const isConfirm = (r: Received): boolean => r.kind === 'opened' && r.message.type === MessageType.CONFIRM;
  if (options.pipelinePing === true) {
    const early = skipped.find((r) => r.kind === 'opened' && r.message.type === MessageType.PONG);
    if (early !== undefined) {
      run.fail('H-QUEUE-1', `a PING right behind REKEY_ACK(${future.id}) was answered by ${describeReceived(early)} before the CONFIRM (input held during the promotion's persist is answered only once it is durable)`);
    } else {
      let pong = await session.receive(context.timeouts.frameMs);
      while (isConfirm(pong) && extra.length < 4) {
        extra.push(pong);
        pong = await session.receive(context.timeouts.frameMs);
      }
      run.check('H-QUEUE-1', pong.kind === 'opened' && pong.message.type === MessageType.PONG && pong.header.keyId === future.id, `a PING right behind REKEY_ACK(${future.id}) got ${describeReceived(pong)} after the CONFIRM (expected its PONG under ${future.id})`);
    }
  }
  const after = await silence(session, context.timeouts.silenceMs);
  if (after !== undefined && isConfirm(after)) extra.push(after);
  run.check('H-CONFIRM-4', extra.length === 0, `${extra.length + 1} CONFIRMs for one promoting REKEY_ACK(${future.id}): ${[found, ...extra].map(describeReceived).join(', ')}`);
  return ok;
}

/** A rotation run on one device of `mode`. */
async function rotationRun(context: HubKitContext, run: ScenarioRun, device: KitDevice): Promise<void> {
  let session = await establish(context, run, device);
  if (session === undefined) return;
  const offer = await rotateAndOffer(context, run, session);
  if (offer === undefined) return session.destroy();
  const A = device.active.id;
  const P = offer.message.newKeyId;

  // Not acknowledged: the hub re-offers the identical message, within 30 s and not sooner than 1 s (HK3).
  if (context.timeouts.reofferMs > 0) {
    const { offer: again, note } = await awaitOffer(context, session, context.timeouts.reofferMs);
    if (again === undefined) {
      if (context.timeouts.reofferMs >= 30_000) run.fail('H-RETRY-1', `no re-offer of ${describeOffer(offer)} within ${context.timeouts.reofferMs} ms: ${note}`);
      else run.notApplicable('H-RETRY-1', `no re-offer within the shortened wait of ${context.timeouts.reofferMs} ms (the spec allows 30 s: run with --reoffer-wait 35s)`);
    } else {
      const gap = again.atMs - offer.atMs;
      run.check(device.mode === 'dh' ? 'H-DH-2' : 'H-REKEY-2', sameOffer(offer, again), `re-offer ${describeOffer(again)} differs from the first ${describeOffer(offer)}`);
      run.check('H-RETRY-1', gap <= 30_000 + 1_000, `re-offer after ${gap} ms`);
      run.check('H-RETRY-2', gap >= 950, `re-offer after only ${gap} ms`);
    }
  }

  // A new session mid-rotation, the key not stored: WELCOME under A, then the same offer (HK4).
  session.close();
  session = await establish(context, run, device, { check: false });
  if (session === undefined) return;
  const { offer: renewed, note } = await awaitOffer(context, session, context.timeouts.frameMs);
  run.check('H-REKEY-4', renewed !== undefined, `a new session while ${P} is pending: ${note}, no offer after the WELCOME`);
  if (renewed !== undefined) run.check(device.mode === 'dh' ? 'H-DH-2' : 'H-REKEY-2', sameOffer(offer, renewed), `the new session's ${describeOffer(renewed)} differs from ${describeOffer(offer)}`);

  // Store and acknowledge: CONFIRM under P (exactly one).
  session.store((renewed ?? offer).message);
  if (!(await ackAndConfirm(context, run, session, { pipelinePing: true }))) return session.destroy();
  context.devicesChanged();
  // A repeated REKEY_ACK(P) under P, now the active key: CONFIRM(P) again, nothing else changes (HK6).
  session.send({ type: MessageType.REKEY_ACK, newKeyId: P });
  const repeat = await session.receiveUntil([MessageType.CONFIRM], context.timeouts.frameMs);
  run.check('H-CONFIRM-5', repeat.found !== undefined && repeat.found.header.keyId === P && repeat.found.message.type === MessageType.CONFIRM && repeat.found.message.keyId === P, `a repeated REKEY_ACK(${P}) got ${describeReceived(repeat.last)}`);
  const pong = await pingPong(context, session);
  run.check('H-KEY-3', pong.kind === 'opened' && pong.header.keyId === P, `after the promotion the hub's PONG is ${describeReceived(pong)}, not under ${P}`);
  if (device.mode === 'dh') {
    // A share on a frame under a key the hub already holds (its active key now) is authenticated and ignored (§11.4).
    session.send({ type: MessageType.PING }, { key: { id: device.active.id, key: device.active.key, share: freshBytes(32) } });
    const shared = await session.receiveUntil([MessageType.PONG], context.timeouts.frameMs);
    run.check('H-DH-5', shared.found !== undefined, `a PING under the active key ${device.active.id} carrying a share got ${describeReceived(shared.last)}`);
  }
  session.close();

  // The retired key A is refused (H2: the hub never seals or accepts under it again).
  const old = await context.open(device, run);
  if (old.session !== undefined) {
    old.session.hello({ key: { id: A, key: device.retired?.get(A) ?? new Uint8Array(64) } });
    const answer = await old.session.receive(context.timeouts.frameMs);
    run.check('H-KEY-4', !(answer.kind === 'opened' && answer.message.type === MessageType.WELCOME), `a HELLO under the retired key ${A} got ${describeReceived(answer)}`);
    old.session.destroy();
  }

  // A second rotation, completed by a HELLO under the future key with body (active, future) (§6.1, HS2 under P).
  session = await establish(context, run, device, { check: false });
  if (session === undefined) return;
  const second = await rotateAndOffer(context, run, session);
  if (second === undefined) return session.destroy();
  session.store(second.message);
  session.destroy();
  const F = second.message.newKeyId;
  const resumed = await context.open(device, run);
  if (resumed.session === undefined) return;
  session = resumed.session;
  const { nonce } = session.hello();
  const welcome = await session.receive(context.timeouts.frameMs);
  const welcomed = welcome.kind === 'opened' && welcome.message.type === MessageType.WELCOME && welcome.header.keyId === F && bytesEqual(welcome.message.deviceNonce, nonce);
  run.check('H-HELLO-1', welcomed, `a HELLO under the future key ${F} with body (active ${F - 1}, future ${F}) got ${describeReceived(welcome)}`);
  run.check('H-HELLO-2', welcomed, `a HELLO under the pending key ${F}: ${describeReceived(welcome)}`);
  run.check('H-CONFIRM-3', welcomed, `the HELLO under ${F} should promote and be answered by the WELCOME under ${F}: ${describeReceived(welcome)}`);
  if (device.mode === 'dh') run.check('H-DH-4', welcomed, `a HELLO under the derived key with its share: ${describeReceived(welcome)}`);
  // The promoted key is not offered again (an offer of a later id is the hub's schedule, and fine).
  const { offer: stale } = await awaitOffer(context, session, context.timeouts.silenceMs);
  run.check('H-REKEY-2', stale === undefined || stale.message.newKeyId !== F, `after promoting ${F} the hub still offers it: ${stale === undefined ? '' : describeOffer(stale)}`);
  context.devicesChanged();
  session.close();
}

function rotationScenario(mode: RekeyMode): Scenario {
  return {
    name: `rotation-${mode}`,
    description: `a ${mode} rotation: offer, identical re-offers, the offer in a new session, CONFIRM, a repeated REKEY_ACK, the old key refused, a HELLO under the future key`,
    covers: ['H-REKEY-2', 'H-REKEY-3', 'H-REKEY-4', 'H-RETRY-1', 'H-RETRY-2', 'H-CONFIRM-1', 'H-CONFIRM-3', 'H-CONFIRM-4', 'H-CONFIRM-5', 'H-QUEUE-1', 'W-MSG-3', 'H-KEY-3', 'H-KEY-4', 'H-HELLO-1', 'H-HELLO-2', 'W-KEY-1', ...(mode === 'dh' ? ['H-DH-2', 'H-DH-4', 'H-DH-5', 'H-DH-6', 'W-DH-1', 'W-DH-3'] : [])],
    unavailable: (context) => (context.canRotate ? undefined : 'the kit cannot make the hub rotate: give --rotate-cmd or --wait-rotation'),
    async run(context, run) {
      const device = context.claim({ mode });
      if (device === undefined) {
        run.notApplicable('H-REKEY-3', `no ${mode} device among the records`);
        return;
      }
      try {
        await rotationRun(context, run, device);
      } finally {
        context.release(device);
      }
    },
  };
}

/**
 * HK11 (§12.4): a device the hub records as classic answers the classic REKEY with ERROR REKEY_MODE_MISMATCH
 * (a device in the dh mode, DK12): the hub moves the record to dh and offers REKEY_DH for the same id, which completes.
 */
export const modeMismatchScenario: Scenario = {
  name: 'mode-mismatch',
  description: 'a classic record whose device refuses the classic REKEY with REKEY_MODE_MISMATCH: the hub moves to dh and offers REKEY_DH',
  covers: ['H-DH-7', 'H-DH-6'],
  unavailable: (context) => (context.canRotate ? undefined : 'the kit cannot make the hub rotate: give --rotate-cmd or --wait-rotation'),
  async run(context, run) {
    const device = context.claim({ mode: 'classic' });
    if (device === undefined) return;
    try {
      const session = await establish(context, run, device, { check: false });
      if (session === undefined) return;
      const offer = await rotateAndOffer(context, run, session);
      if (offer === undefined) return session.destroy();
      if (offer.message.type !== MessageType.REKEY) {
        run.notApplicable('H-DH-7', `the hub offered ${describeOffer(offer)} to a classic record`);
        return session.destroy();
      }
      session.send({ type: MessageType.ERROR, code: WireError.REKEY_MODE_MISMATCH, detail: offer.message.newKeyId });
      const { offer: dh, note } = await awaitOffer(context, session, context.timeouts.frameMs);
      const ok = dh !== undefined && dh.message.type === MessageType.REKEY_DH && dh.message.newKeyId === offer.message.newKeyId;
      run.check('H-DH-7', ok, `after ERROR REKEY_MODE_MISMATCH for ${offer.message.newKeyId}: ${dh === undefined ? note : describeOffer(dh)}, expected REKEY_DH(${offer.message.newKeyId})`);
      if (!ok || dh === undefined) return session.destroy();
      session.store(dh.message);
      if (await ackAndConfirm(context, run, session)) {
        run.pass('H-DH-6');
        context.devicesChanged();
      }
      session.close();
    } finally {
      context.release(device);
    }
  },
};

export const rotationClassicScenario = rotationScenario('classic');
export const rotationDhScenario = rotationScenario('dh');
