/**
 * Every message type a device sends in a session (docs/PROTOCOL.md §6, §7):
 * PING/PONG, DATA and DATA_ACK (duplicates, gaps, the maximum payload, an
 * acknowledgement for a stream the hub never used), ERROR (known and
 * unknown codes: reported, never answered, never rejected).
 */
import { MAX_APP_PAYLOAD_BYTES, MessageType, WireError } from '../../../../modules/protocol/constants';
import { nodeKeyAgreement } from '../../../../hosts/node/key-agreement';
import { bytesEqual } from '../../../../modules/bytes';
import { freshBytes } from '../../wire/sealer';
import type { HubKitContext } from '../context';
import { describeReceived, freshStreamId, type KitSession, type Received } from '../session';
import { establish } from './handshake';
import type { Scenario } from './scenario';

/** Sends PING and expects PONG as the next frame (other hub traffic — DATA, REKEY — is answered or ignored as a device would). */
export async function pingPong(context: HubKitContext, session: KitSession): Promise<Received> {
  session.send({ type: MessageType.PING });
  for (;;) {
    const received = await session.receive(context.timeouts.frameMs);
    if (received.kind !== 'opened') return received;
    if (received.message.type === MessageType.PONG) return received;
    if (received.message.type === MessageType.PING) session.send({ type: MessageType.PONG });
    else if (received.message.type === MessageType.DATA) session.send({ type: MessageType.DATA_ACK, streamId: received.message.streamId, messageId: received.message.messageId });
    else if (received.message.type !== MessageType.REKEY && received.message.type !== MessageType.REKEY_DH && received.message.type !== MessageType.DATA_ACK) return received;
  }
}

/**
 * Nothing (no frame, no close) arrives for `ms`: what a rejected or unanswerable frame must produce. The hub's own
 * traffic that answers nothing of the device's — its application data, its PING, an offer (its schedule may rotate at
 * any time) — is answered or ignored as a device would, and does not count.
 */
export async function silence(session: KitSession, ms: number): Promise<Received | undefined> {
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return undefined;
    const received = await session.receive(left);
    if (received.kind === 'timeout') return undefined;
    if (received.kind !== 'opened') return received;
    const type = received.message.type;
    if (type === MessageType.DATA) session.send({ type: MessageType.DATA_ACK, streamId: received.message.streamId, messageId: received.message.messageId });
    else if (type === MessageType.PING) session.send({ type: MessageType.PONG });
    else if (type !== MessageType.REKEY && type !== MessageType.REKEY_DH) return received;
  }
}

async function dataAck(context: HubKitContext, session: KitSession, streamId: Uint8Array, messageId: number, payload: Uint8Array): Promise<Received> {
  session.send({ type: MessageType.DATA, streamId, messageId, payload });
  for (;;) {
    const received = await session.receive(context.timeouts.frameMs);
    if (received.kind !== 'opened' || received.message.type === MessageType.DATA_ACK) return received;
    if (received.message.type === MessageType.PING) session.send({ type: MessageType.PONG });
    else if (received.message.type === MessageType.DATA) session.send({ type: MessageType.DATA_ACK, streamId: received.message.streamId, messageId: received.message.messageId });
  }
}

export const messagesScenario: Scenario = {
  name: 'messages',
  description: 'PING/PONG, DATA/DATA_ACK (duplicate, gap, maximum payload, unknown stream), ERROR with known and unknown codes, an unasked ENROL_ACK',
  covers: ['W-PING-1', 'W-PING-2', 'W-DATA-3', 'W-DATA-4', 'W-DATA-5', 'W-MSG-1', 'W-ERROR-1', 'W-ERROR-2', 'W-ERROR-3', 'H-ENROL-2'],
  async run(context, run) {
    const device = context.claim();
    if (device === undefined) return;
    try {
      const session = await establish(context, run, device, { check: false });
      if (session === undefined) return;
      const pong = await pingPong(context, session);
      run.check('W-PING-1', pong.kind === 'opened' && pong.message.type === MessageType.PONG, `PING answered with ${describeReceived(pong)}`);
      // A PONG is not answered and changes no seq: the next PING's PONG still has the next seq.
      session.send({ type: MessageType.PONG });
      const after = await silence(session, context.timeouts.silenceMs);
      const pong2 = await pingPong(context, session);
      run.check('W-PING-2', after === undefined && pong2.kind === 'opened' && pong2.message.type === MessageType.PONG, `an unsolicited PONG got ${after === undefined ? 'nothing' : describeReceived(after)}; the next PING got ${describeReceived(pong2)}`);

      // DATA: new stream, duplicate, gap, lower id, maximum payload (§7).
      const stream = freshStreamId();
      const expectAck = async (id: number, payload: Uint8Array, acked: number, why: string): Promise<void> => {
        const ack = await dataAck(context, session, stream, id, payload);
        const ok = ack.kind === 'opened' && ack.message.type === MessageType.DATA_ACK && bytesEqual(ack.message.streamId, stream) && ack.message.messageId === acked;
        run.check(id === 1 ? 'W-DATA-4' : 'W-DATA-3', ok, `DATA id ${id} (${why}) answered with ${describeReceived(ack)}${ack.kind === 'opened' && ack.message.type === MessageType.DATA_ACK ? ` acking ${ack.message.messageId}` : ''}, expected DATA_ACK ${acked}`);
        if (ok) run.pass('W-DATA-4');
      };
      await expectAck(1, freshBytes(5), 1, 'a new stream');
      await expectAck(1, freshBytes(5), 1, 'a duplicate: not delivered again, acknowledged');
      await expectAck(3, freshBytes(5), 3, 'a gap: delivered');
      await expectAck(2, freshBytes(5), 3, 'below the last delivered: not delivered, acknowledged cumulatively');
      const max = await dataAck(context, session, stream, 4, freshBytes(MAX_APP_PAYLOAD_BYTES));
      run.check('W-MSG-1', max.kind === 'opened' && max.message.type === MessageType.DATA_ACK && max.message.messageId === 4, `a DATA with the maximum payload (${MAX_APP_PAYLOAD_BYTES} bytes) got ${describeReceived(max)}`);

      // A DATA_ACK for a stream the hub never used acknowledges nothing and is no error.
      session.send({ type: MessageType.DATA_ACK, streamId: freshStreamId(), messageId: 7 });
      const ackAnswer = await silence(session, context.timeouts.silenceMs);
      const stillUp = await pingPong(context, session);
      run.check('W-DATA-5', ackAnswer === undefined && stillUp.kind === 'opened' && stillUp.message.type === MessageType.PONG, `a DATA_ACK for an unknown stream got ${ackAnswer === undefined ? 'nothing' : describeReceived(ackAnswer)}, then PING got ${describeReceived(stillUp)}`);

      // ERROR: reported, never answered with an ERROR, never rejected — 9 in a row would close a session that counted them as rejections.
      let answered: Received | undefined;
      for (let i = 0; i < 9; i++) {
        session.send({ type: MessageType.ERROR, code: i % 2 === 0 ? 0x7777 : 1, detail: i });
        answered ??= await silence(session, 50);
      }
      answered ??= await silence(session, context.timeouts.silenceMs);
      run.check('W-ERROR-2', answered === undefined || answered.kind !== 'opened' || answered.message.type !== MessageType.ERROR, `an ERROR was answered with ${answered === undefined ? '' : describeReceived(answered)}`);
      const afterErrors = await pingPong(context, session);
      const alive = afterErrors.kind === 'opened' && afterErrors.message.type === MessageType.PONG;
      run.check('W-ERROR-3', alive, `after 9 ERRORs (codes 0x7777 and 1) the session answered PING with ${describeReceived(afterErrors)}: the hub treated them as rejected frames`);
      run.check('W-ERROR-1', alive && (answered === undefined || answered.kind !== 'closed'), `after ERRORs: ${describeReceived(afterErrors)}`);

      // An ENROL_ACK the hub never asked for, with another static key: refused with STATIC_KEY_LOCKED, nothing changes (HE2);
      // an enrolled device's own key again changes nothing and is not an error.
      const hubStaticId = device.credential?.hubStaticId ?? 1;
      session.send({ type: MessageType.ENROL_ACK, hubStaticId, devicePublicKey: nodeKeyAgreement.x25519PublicKey(freshBytes(32)) });
      const locked = await session.receiveUntil([MessageType.ERROR], context.timeouts.frameMs);
      const lockedOk = locked.found?.message.type === MessageType.ERROR && locked.found.message.code === WireError.STATIC_KEY_LOCKED;
      run.check('H-ENROL-2', lockedOk, `an ENROL_ACK with another static key (unasked) got ${describeReceived(locked.last)}${locked.found?.message.type === MessageType.ERROR ? ` code ${locked.found.message.code}` : ''}, expected ERROR STATIC_KEY_LOCKED (${WireError.STATIC_KEY_LOCKED})`);
      if (device.credential !== undefined) {
        session.send({ type: MessageType.ENROL_ACK, hubStaticId, devicePublicKey: device.credential.device.publicKey });
        const same = await pingPong(context, session);
        run.check('H-ENROL-2', same.kind === 'opened' && same.message.type === MessageType.PONG, `the enrolled device's own ENROL_ACK again, then PING: ${describeReceived(same)} (expected nothing, then the PONG)`);
      }
      session.close();
    } finally {
      context.release(device);
    }
  },
};
