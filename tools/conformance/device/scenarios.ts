/**
 * The scenarios of device mode (docs/CONFORMANCE.md, "Device mode"), in run
 * order. Each drives the device under test through real connections with
 * the kit as its hub and records checks; a scenario that does not apply to
 * this device (its mode, no credential, no power control) marks its checks
 * n/a with the reason. Every scenario leaves the device and the kit's
 * KeyBook in agreement (one key, established-able), so the next one starts
 * from a known state.
 */
import { randomBytes } from 'node:crypto';
import { nodeRandom } from '../../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import { bytesEqual, toHex } from '../../../modules/bytes';
import { checkMatches, hubRecoveryReply, hubVerifyRecoverInit, recoveryResultFrame, verifyRecoveryFinish, type RecoverySecrets } from '../../../modules/crypto/recovery';
import { asLockstepError } from '../../../modules/errors';
import { KEEPALIVE_INTERVAL_MAX_MS, MAX_REJECTED_FRAMES, MessageType, RecoveryStatus, WireError } from '../../../modules/protocol/constants';
import { encodeHeader } from '../../../modules/protocol/header';
import type { Message } from '../../../modules/protocol/messages';
import { DeviceModeContext, ScenarioAbort, type Hello } from './context';
import { negativeVectors, type NegativeSession, type NegativeVector } from '../../vectors/negative';
import { hostileFrames, LOW_ORDER_SHARE } from './hostile-frames';
import type { CheckName } from './observer';
import { describeFrame, typeName, type DeviceFrame, type KitSession } from './session';

/** Rejected frames in a row a compliant device tolerates; the next one closes the session (W-REJECT-1, docs/PROTOCOL.md §9). */
export const REJECTIONS_TOLERATED = MAX_REJECTED_FRAMES;

export interface Scenario {
  readonly name: string;
  readonly description: string;
  /** The checks it can show (marked n/a with `whyNot` when it does not apply). */
  readonly checks: readonly CheckName[];
  /** Undefined when it applies; else why not. */
  whyNot(ctx: DeviceModeContext): string | undefined;
  run(ctx: DeviceModeContext): Promise<void>;
}

type Sealed = DeviceFrame & { kind: 'sealed' };

const isType = (type: number) => (f: DeviceFrame & { kind: 'sealed' | 'unsealed' }) => (f.kind === 'sealed' ? f.message.type === type : f.header.type === type);

function isError(frame: Sealed | undefined, code: number): boolean {
  return frame !== undefined && frame.message.type === MessageType.ERROR && frame.message.code === code;
}

/** Sends a hub offer and returns the device's answer (a REKEY_ACK or an ERROR). */
async function offer(ctx: DeviceModeContext, session: KitSession, message: Message, keyId = ctx.book.hubActive): Promise<Sealed | undefined> {
  ctx.send(session, message, keyId);
  const result = await ctx.expect(session, (f) => f.kind === 'sealed' && (f.message.type === MessageType.REKEY_ACK || f.message.type === MessageType.ERROR));
  return result.frame?.kind === 'sealed' ? result.frame : undefined;
}

function said(frame: Sealed | undefined): string {
  if (frame === undefined) return 'no answer';
  if (frame.message.type === MessageType.ERROR) return `ERROR code ${frame.message.code} detail ${frame.message.detail} under key ${frame.keyId}`;
  return describeFrame(frame);
}

/**
 * Ends a scenario in a clean state: a PING round trip first (so the device has acted on everything
 * the kit sent: closing right after a frame is a cut at that byte, and the frame may be lost), then
 * the kit closes; the device reconnects.
 */
async function done(ctx: DeviceModeContext, session?: KitSession): Promise<void> {
  if (session !== undefined && !session.link.closed) await ctx.ping(session);
  ctx.closeCurrent();
}

// ---------------------------------------------------------------------------

const handshake: Scenario = {
  name: 'handshake',
  description: 'HELLO (seq 0, newest key, fresh Nd); a WELCOME with the wrong Nd is refused and changes nothing; the right one establishes; PING → PONG',
  checks: ['prov.image', 'challenge.malformed', 'hello.first', 'hello.newest', 'hello.body', 'hello.nonce', 'welcome.keyId', 'welcome.wrongNonce', 'welcome.accept', 'ping.answer', 'reject.unchanged'],
  whyNot: () => undefined,
  async run(ctx) {
    const name = this.name;
    const { session } = await ctx.handshake(name, {
      beforeChallenge: async (s) => {
        // Malformed CHALLENGEs (D-SESSION-1): a device answers none of them (3 rejections: below the limit with the 4 below).
        const base = { type: MessageType.CHALLENGE, fromHub: true, deviceId: new Uint8Array(8), keyId: 0, sequence: 0, sessionId: s.hubNonce } as const;
        for (const bad of [{ ...base, fromHub: false }, { ...base, keyId: 5 }, { ...base, sequence: 3 }]) s.link.send(encodeHeader(bad));
        const answer = await ctx.quiet(s);
        ctx.check('challenge.malformed', answer.frames.length === 0 && !answer.closed, name, `malformed CHALLENGEs (direction bit clear, key id 5, seq 3) were answered: ${answer.closed ? 'a close' : answer.frames.map(describeFrame).join(', ')}`, s.evidence());
      },
    });
    const active = ctx.book.hubActive;
    ctx.check('prov.image', session.link.received > 0 && ctx.book.expectedSealId === active, name, `the first HELLO is not under the record's key ${active}`, session.evidence());
    // A WELCOME whose hub key id is not its header's (W-MSG-4), then a PING at seq 2: a device that took it answers PONG.
    session.send({ type: MessageType.WELCOME, deviceNonce: session.deviceNonce as Uint8Array, hubKeyId: active + 5 }, active, { sequence: 1 });
    session.send({ type: MessageType.PING }, active, { sequence: 2 });
    const mismatch = await ctx.quiet(session);
    ctx.check('welcome.keyId', mismatch.frames.filter((f) => f.kind === 'sealed').length === 0 && !mismatch.closed, name, `after a WELCOME naming hub key id ${active + 5} under key ${active} the device ${mismatch.closed ? 'closed' : `sent ${mismatch.frames.map(describeFrame).join(', ')}`}`, session.evidence());
    if (mismatch.closed) throw new ScenarioAbort('closed');
    // A WELCOME with another Nd at seq 1, then a PING at seq 2: a device that took the WELCOME answers PONG.
    session.send({ type: MessageType.WELCOME, deviceNonce: new Uint8Array(randomBytes(16)), hubKeyId: active }, active, { sequence: 1 });
    session.send({ type: MessageType.PING }, active, { sequence: 2 });
    const wrong = await ctx.quiet(session);
    const answered = wrong.frames.filter((f) => f.kind === 'sealed');
    ctx.check('welcome.wrongNonce', answered.length === 0 && !wrong.closed, name, answered.length > 0 ? `after a WELCOME with the wrong Nd the device sent ${answered.map(describeFrame).join(', ')}` : 'the device closed on a WELCOME with the wrong Nd (DS9: it is rejected and changes nothing)', session.evidence());
    if (wrong.closed) throw new ScenarioAbort('closed');
    // The right WELCOME at the same seq 1: the rejected one changed nothing.
    session.send({ type: MessageType.WELCOME, deviceNonce: session.deviceNonce as Uint8Array, hubKeyId: active }, active, { sequence: 1 });
    session.hubSeq = 2;
    const pong = await ctx.ping(session);
    ctx.check('welcome.accept', pong !== undefined, name, 'no PONG after a WELCOME echoing Nd', session.evidence());
    ctx.check('reject.unchanged', pong !== undefined, name, 'the WELCOME at the seq of a rejected one was not accepted', session.evidence());
    ctx.check('ping.answer', pong !== undefined, name, 'no PONG to a hub PING', session.evidence());
    if (pong !== undefined) ctx.checkSealing(name, session, pong, 'PONG');
    await done(ctx, session);
  },
};

const established: Scenario = {
  name: 'session',
  description: 'in an established session: PING → PONG, DATA (up to 1024 bytes, a duplicate, the next) → cumulative DATA_ACKs, a DATA_ACK for an unknown stream and an ERROR change nothing',
  checks: ['ping.answer', 'pong.unanswered', 'data.ack', 'data.unknownStream', 'error.received', 'error.unknownCode'],
  whyNot: () => undefined,
  async run(ctx) {
    const name = this.name;
    const { session } = await ctx.establish(name);
    const pong = await ctx.ping(session);
    ctx.check('ping.answer', pong !== undefined, name, 'no PONG to a hub PING', session.evidence());
    const stream = new Uint8Array(randomBytes(8));
    const acks: number[] = [];
    for (const [messageId, size] of [[1, 1024], [1, 5], [2, 0]] as const) {
      ctx.send(session, { type: MessageType.DATA, streamId: stream, messageId, payload: new Uint8Array(randomBytes(size)) }, ctx.book.hubActive);
      const ack = await ctx.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.DATA_ACK && bytesEqual(f.message.streamId, stream));
      acks.push(ack.frame?.kind === 'sealed' && ack.frame.message.type === MessageType.DATA_ACK ? ack.frame.message.messageId : -1);
    }
    ctx.check('data.ack', acks.join(',') === '1,1,2', name, `DATA 1 (1024 bytes), 1 again, 2 were acknowledged ${acks.join(', ')} (expected 1, 1, 2; -1 = no DATA_ACK)`, session.evidence());
    ctx.send(session, { type: MessageType.PONG }, ctx.book.hubActive);
    const pongAnswer = await ctx.quiet(session);
    const pingAfterPong = pongAnswer.closed ? undefined : await ctx.ping(session);
    ctx.check('pong.unanswered', pongAnswer.frames.length === 0 && pingAfterPong !== undefined, name, `an unsolicited PONG was answered with ${pongAnswer.closed ? 'a close' : pongAnswer.frames.map(describeFrame).join(', ') || 'nothing'}, then ${pingAfterPong === undefined ? 'no PONG' : 'PONG'}`, session.evidence());
    for (const code of [99, WireError.STORAGE_FAILURE, WireError.KEY_IDS_EXHAUSTED]) ctx.send(session, { type: MessageType.ERROR, code, detail: 0 }, ctx.book.hubActive);
    const unknownAnswer = await ctx.quiet(session);
    const pingAfterUnknown = unknownAnswer.closed ? undefined : await ctx.ping(session);
    ctx.check('error.unknownCode', unknownAnswer.frames.length === 0 && pingAfterUnknown !== undefined, name, `ERRORs with codes 99, 4, 6 were answered with ${unknownAnswer.closed ? 'a close' : unknownAnswer.frames.map(describeFrame).join(', ') || 'nothing'}, then ${pingAfterUnknown === undefined ? 'no PONG' : 'PONG'}`, session.evidence());
    ctx.send(session, { type: MessageType.DATA_ACK, streamId: new Uint8Array(randomBytes(8)), messageId: 5 }, ctx.book.hubActive);
    ctx.send(session, { type: MessageType.ERROR, code: WireError.PROTOCOL, detail: 0 }, ctx.book.hubActive);
    const after = await ctx.quiet(session);
    const pong2 = after.closed ? undefined : await ctx.ping(session);
    const quietOk = after.frames.length === 0 && !after.closed;
    ctx.check('data.unknownStream', quietOk && pong2 !== undefined, name, `after a DATA_ACK for an unknown stream: ${after.closed ? 'closed' : after.frames.map(describeFrame).join(', ') || 'quiet'}, then ${pong2 === undefined ? 'no PONG' : 'PONG'}`, session.evidence());
    ctx.check('error.received', quietOk && pong2 !== undefined, name, `after an ERROR from the hub: ${after.closed ? 'closed' : after.frames.map(describeFrame).join(', ') || 'quiet'}, then ${pong2 === undefined ? 'no PONG' : 'PONG'}`, session.evidence());
    await done(ctx, session);
  },
};

const negative: Scenario = {
  name: 'negative',
  description: 'every malformed frame as live input: nothing in answer, nothing changed (the next good PING gets its PONG), and the session closes only after the stated number of rejections in a row',
  checks: ['reject.silent', 'reject.unchanged', 'reject.limit'],
  whyNot: () => undefined,
  async run(ctx) {
    const name = this.name;
    const { session } = await ctx.establish(name);
    const count = hostileFrames(session, ctx.book.hubActive).length;
    // Each malformed frame (built for the seq of the moment), then a good PING: whatever comes before its PONG answered the bad frame.
    for (let i = 0; i < count; i++) {
      const hostile = hostileFrames(session, ctx.book.hubActive)[i] as (ReturnType<typeof hostileFrames>)[number];
      session.link.send(hostile.wire, true);
      ctx.send(session, { type: MessageType.PING }, ctx.book.hubActive);
      const result = await ctx.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.PONG);
      const what = `${hostile.name} (${hostile.error})`;
      const silent = ctx.check('reject.silent', result.others.length === 0, name, `in answer to ${what} the device sent ${result.others.map(describeFrame).join(', ')}`, session.evidence());
      const unchanged = ctx.check('reject.unchanged', result.frame !== undefined, name, `after ${what} a good PING got ${result.end === 'closed' ? 'a close' : 'no PONG'}`, session.evidence());
      ctx.observer.checkRequirement(hostile.requirement, silent && unchanged, { scenario: name, note: `${what}: ${silent ? '' : 'answered; '}${unchanged ? '' : 'the next good frame was not accepted'}`, frames: session.evidence(6) });
      if (result.frame === undefined) {
        if (result.end === 'closed') ctx.check('reject.limit', false, name, `the device closed on one rejected frame (${what}); it tolerates ${REJECTIONS_TOLERATED} in a row`, session.evidence());
        throw new ScenarioAbort('no PONG');
      }
    }
    const late = await ctx.quiet(session);
    ctx.check('reject.silent', late.frames.length === 0, name, `after the malformed frames the device sent ${late.frames.map(describeFrame).join(', ')}`, session.evidence());
    // The limit: REJECTIONS_TOLERATED bad tags keep the session; one more closes it.
    const bad = () => (hostileFrames(session, ctx.book.hubActive)[0] as { wire: Uint8Array }).wire;
    for (let i = 0; i < REJECTIONS_TOLERATED; i++) session.link.send(bad(), true);
    const before = await ctx.quiet(session);
    ctx.check('reject.limit', !before.closed, name, `the device closed after ${REJECTIONS_TOLERATED} rejected frames in a row; it tolerates that many (§9)`, session.evidence());
    if (before.closed) return;
    session.link.send(bad(), true);
    const closed = await session.link.waitClosed(ctx.timers.quietMs + ctx.timers.slackMs);
    ctx.check('reject.limit', closed, name, `the device kept the session after ${REJECTIONS_TOLERATED + 1} rejected frames in a row`, session.evidence());
    await done(ctx, session);
  },
};

const timers: Scenario = {
  name: 'timers',
  description: "keep-alive PING within the device's interval; the session closes at its idle timeout; a connection without CHALLENGE, and one without WELCOME, close at its handshake timeout",
  checks: ['keepalive', 'timer.idle', 'timer.rejectedNoReset', 'timer.handshake'],
  whyNot: () => undefined,
  async run(ctx) {
    const name = this.name;
    const t = ctx.timers;
    const { session } = await ctx.establish(name);
    const start = Date.now();
    // Halfway through, two frames with a bad tag: rejected frames must not reset the idle timer (W-TIMER-1).
    const badAt = setTimeout(() => {
      for (let i = 0; i < 2; i++) session.link.send((hostileFrames(session, ctx.book.hubActive)[0] as { wire: Uint8Array }).wire, true);
    }, Math.floor(t.idleMs / 2));
    let lastSent = start;
    let firstPingAt: number | undefined;
    let closedAt: number | undefined;
    // Silent hub: PINGs are recorded, never answered.
    while (Date.now() - start < t.idleMs + t.slackMs + 1000) {
      const frame = await session.receive(t.idleMs + t.slackMs + 1000 - (Date.now() - start));
      if (frame.kind === 'closed') {
        closedAt = Date.now();
        break;
      }
      if (frame.kind === 'timeout') break;
      // Any frame keeps the session alive (an application's DATA too); a PING is what a quiet device sends.
      firstPingAt ??= Date.now();
      ctx.check('keepalive', Date.now() - lastSent <= Math.min(t.keepaliveMs, KEEPALIVE_INTERVAL_MAX_MS) + t.slackMs, name, `${describeFrame(frame)} ${Date.now() - lastSent} ms after the device's previous frame (keep-alive interval ${t.keepaliveMs} ms)`, session.evidence());
      lastSent = Date.now();
    }
    clearTimeout(badAt);
    ctx.check('keepalive', firstPingAt !== undefined && firstPingAt - start <= Math.min(t.keepaliveMs, KEEPALIVE_INTERVAL_MAX_MS) + t.slackMs, name, firstPingAt === undefined ? `no frame (PING) in ${t.idleMs} ms of silence` : `the first frame came ${firstPingAt - start} ms after the WELCOME (interval ${t.keepaliveMs} ms)`, session.evidence());
    const idle = closedAt === undefined ? undefined : closedAt - start;
    ctx.check('timer.idle', idle !== undefined && idle >= t.idleMs - t.slackMs && idle >= 3 * t.keepaliveMs - t.slackMs && idle <= t.idleMs + t.slackMs, name, idle === undefined ? `the session stayed open ${Date.now() - start} ms after the hub's last frame (idle timeout ${t.idleMs} ms)` : `closed ${idle} ms after the hub's last accepted frame (idle timeout ${t.idleMs} ms ± ${t.slackMs}, at least 3 × the keep-alive interval ${t.keepaliveMs} ms)`, session.evidence());
    ctx.check('timer.rejectedNoReset', idle !== undefined && idle <= t.idleMs + t.slackMs, name, idle === undefined ? 'the session never closed' : `closed ${idle} ms after the hub's last accepted frame, with rejected frames at ${Math.floor(t.idleMs / 2)} ms (idle timeout ${t.idleMs} ms): they reset the idle timer`, session.evidence());
    // No CHALLENGE at all.
    const silent = await ctx.nextLink(name);
    const silentClosed = await silent.waitClosed(t.handshakeMs + t.slackMs);
    ctx.check('timer.handshake', silentClosed, name, `a connection without CHALLENGE stayed open past ${t.handshakeMs + t.slackMs} ms`, silent.evidence());
    // CHALLENGE, HELLO, no WELCOME.
    const { session: halfway } = await ctx.handshake(name);
    const opened = Date.now();
    const halfwayClosed = await halfway.link.waitClosed(t.handshakeMs + t.slackMs);
    ctx.check('timer.handshake', halfwayClosed, name, `a connection without WELCOME stayed open ${Date.now() - opened} ms (handshake timeout ${t.handshakeMs} ms)`, halfway.evidence());
    await done(ctx);
  },
};

/** The hostile offers while the device holds (A, F): each refused with its code and changing nothing. */
async function hostileOffers(ctx: DeviceModeContext, name: string, session: KitSession, future: number, dh: boolean, again: () => Message): Promise<void> {
  const active = ctx.book.hubActive;
  const cases: { check: CheckName; code: number; message: Message; what: string }[] = [
    dh
      ? { check: 'dh.conflict', code: WireError.REKEY_CONFLICT, message: { type: MessageType.REKEY_DH, newKeyId: future, hubShare: nodeKeyAgreement.x25519PublicKey(new Uint8Array(randomBytes(32))) }, what: `REKEY_DH(${future}) with another H` }
      : { check: 'rekey.conflict', code: WireError.REKEY_CONFLICT, message: { type: MessageType.REKEY, newKeyId: future, newKey: DeviceModeContext.randomKey() }, what: `REKEY(${future}) with other bytes` },
    ...(dh ? [{ check: 'dh.conflict' as const, code: WireError.REKEY_CONFLICT, message: { type: MessageType.REKEY, newKeyId: future, newKey: DeviceModeContext.randomKey() } as Message, what: `a classic REKEY(${future}) for the dh future key` }] : []),
    { check: 'rekey.notNewer', code: WireError.REKEY_ID_NOT_NEWER, message: dh ? { type: MessageType.REKEY_DH, newKeyId: active, hubShare: nodeKeyAgreement.x25519PublicKey(new Uint8Array(randomBytes(32))) } : { type: MessageType.REKEY, newKeyId: active, newKey: DeviceModeContext.randomKey() }, what: `an offer of id ${active} (not above the active id)` },
    { check: 'rekey.notNext', code: WireError.REKEY_ID_NOT_NEXT, message: dh ? { type: MessageType.REKEY_DH, newKeyId: future + 1, hubShare: nodeKeyAgreement.x25519PublicKey(new Uint8Array(randomBytes(32))) } : { type: MessageType.REKEY, newKeyId: future + 1, newKey: DeviceModeContext.randomKey() }, what: `an offer of id ${future + 1} (a jump past active + 1)` },
  ];
  for (const c of cases) {
    const answer = await offer(ctx, session, c.message, active);
    ctx.check(c.check, isError(answer, c.code) && (answer?.message.type !== MessageType.ERROR || answer.message.detail === (c.message as { newKeyId: number }).newKeyId), name, `${c.what} was answered with ${said(answer)}; expected ERROR code ${c.code} detail ${(c.message as { newKeyId: number }).newKeyId}`, session.evidence());
    if (answer !== undefined) ctx.checkSealing(name, session, answer, 'the ERROR');
  }
  const ack = await offer(ctx, session, again(), active);
  ctx.check('rekey.refusalUnchanged', ack?.message.type === MessageType.REKEY_ACK && ack.keyId === future, name, `after the refused offers, the original offer of ${future} got ${said(ack)}`, session.evidence());
}

/** The rotation's first half: offer, ack (under the new key), the identical repeat, sealing under the new key. Returns the ack's share (dh). */
async function offerAndAck(ctx: DeviceModeContext, name: string, session: KitSession, dh: boolean): Promise<{ id: number; message: () => Message } | undefined> {
  const active = ctx.book.hubActive;
  const id = active + 1;
  let message: () => Message;
  if (dh) {
    const dhOffer = ctx.book.newDhOffer(id, active);
    message = () => ({ type: MessageType.REKEY_DH, newKeyId: id, hubShare: dhOffer.hub.publicKey });
  } else {
    const key = ctx.book.newClassicKey(id);
    message = () => ({ type: MessageType.REKEY, newKeyId: id, newKey: key });
  }
  ctx.book.hubPending = id;
  // The offer and a PING in one write: the PING arrives while the key is being persisted and must be answered after the ack, under the new key (D-QUEUE-1).
  ctx.send(session, message(), active);
  ctx.send(session, { type: MessageType.PING }, active);
  const first = await ctx.expect(session, (f) => f.kind === 'sealed' && (f.message.type === MessageType.REKEY_ACK || f.message.type === MessageType.ERROR || f.message.type === MessageType.PONG));
  let ack = first.frame?.kind === 'sealed' ? first.frame : undefined;
  let queued: Sealed | undefined;
  if (ack?.message.type === MessageType.PONG) {
    queued = ack;
    const next = await ctx.expect(session, (f) => f.kind === 'sealed' && (f.message.type === MessageType.REKEY_ACK || f.message.type === MessageType.ERROR));
    ack = next.frame?.kind === 'sealed' ? next.frame : undefined;
    ctx.check('queue.order', false, name, 'a PING sent right after the offer was answered before the REKEY_ACK: input was acted on before the key was persisted', session.evidence());
  } else {
    const pong = await ctx.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.PONG);
    queued = pong.frame?.kind === 'sealed' ? pong.frame : undefined;
    ctx.check('queue.order', queued !== undefined && queued.keyId === id, name, `the PING sent right after the offer got ${queued === undefined ? 'no PONG' : `a PONG under ${queued.keyId}`} after the REKEY_ACK (expected under ${id})`, session.evidence());
  }
  const ackCheck: CheckName = dh ? 'dh.ack' : 'rekey.ackUnderNew';
  const ok = ack?.message.type === MessageType.REKEY_ACK && ack.message.newKeyId === id && ack.keyId === id && (!dh || ack.header.share !== undefined);
  ctx.check(ackCheck, ok, name, `${dh ? 'REKEY_DH' : 'REKEY'}(${id}) was answered with ${said(ack)}; expected REKEY_ACK(${id}) sealed under ${id}${dh ? ' with the share D (the kit derives K from it)' : ''}`, session.evidence());
  if (!ok || ack === undefined) return undefined;
  ctx.book.expected = { active, future: id, futureDh: dh };
  ctx.checkShare(name, session, ack, 'REKEY_ACK');
  const firstShare = ack.header.share;
  const again = await offer(ctx, session, message(), active);
  const sameShare = !dh || (again?.header.share !== undefined && firstShare !== undefined && bytesEqual(again.header.share, firstShare));
  ctx.check(dh ? 'dh.repeat' : 'rekey.repeat', again?.message.type === MessageType.REKEY_ACK && again.message.newKeyId === id && again.keyId === id && sameShare, name, `the repeated offer of ${id} was answered with ${said(again)}${dh && !sameShare ? ' with another share (a fresh exchange: not D7)' : ''}`, session.evidence());
  // D3: a hub PING under the old key is answered under the new one.
  const pong = await ctx.ping(session, active);
  if (pong === undefined) ctx.check('seal.newest', false, name, 'no PONG to a PING under the active key while a future key is held', session.evidence());
  else ctx.checkSealing(name, session, pong, 'the PONG after storing the future key');
  return { id, message };
}

/** CONFIRM(id) under id: the old key is gone (a PING under it is not answered), the new one works. */
async function confirm(ctx: DeviceModeContext, name: string, session: KitSession, id: number): Promise<void> {
  const old = ctx.book.hubActive;
  ctx.book.hubActive = id;
  ctx.book.hubPending = undefined;
  ctx.send(session, { type: MessageType.CONFIRM, keyId: id }, id);
  // Not advancing the hub's seq: the device rejects it (the next good frame, an incidental DATA_ACK too, takes that seq).
  session.send({ type: MessageType.PING }, old, { keepSequence: true });
  const underOld = await ctx.quiet(session);
  const answered = underOld.frames.filter((f) => f.kind === 'sealed');
  ctx.check('confirm.promotes', answered.length === 0 && !underOld.closed, name, answered.length > 0 ? `after CONFIRM(${id}) a PING under the old key ${old} was answered (${answered.map(describeFrame).join(', ')}): the device still accepts the retired key` : `the device closed after a PING under the retired key ${old}`, session.evidence());
  const pong = await ctx.ping(session, id);
  ctx.check('confirm.promotes', pong !== undefined && pong.keyId === id && pong.header.share === undefined, name, `after CONFIRM(${id}) a PING under ${id} got ${pong === undefined ? 'no PONG' : describeFrame(pong)}; expected a PONG under ${id} without a share`, session.evidence());
}

function rotation(dh: boolean): Scenario {
  const label = dh ? 'dh' : 'classic';
  return {
    name: `rotation-${label}`,
    description: `a ${label} rotation: ${dh ? 'REKEY_DH' : 'REKEY'}, the ack under the new key, the identical repeat, sealing under the new key, the hostile offers refused, a hub crash (dropped connection) and the same offer re-sent on the next session, CONFIRM promotes, the old key is dead, the next HELLO is under the new key`,
    checks: dh ? ['queue.order', 'dh.badShare', 'dh.ack', 'dh.repeat', 'dh.conflict', 'dh.helloShare', 'frame.share', 'rekey.notNewer', 'rekey.notNext', 'rekey.refusalUnchanged', 'seal.newest', 'confirm.promotes'] : ['queue.order', 'rekey.ackUnderNew', 'rekey.repeat', 'rekey.conflict', 'rekey.notNewer', 'rekey.notNext', 'rekey.refusalUnchanged', 'seal.newest', 'confirm.promotes'],
    whyNot: (ctx) => (!dh && ctx.book.mode === 'dh' ? 'the device is in the dh mode: it refuses classic offers (DK12)' : undefined),
    async run(ctx) {
      const name = this.name;
      const { session } = await ctx.establish(name);
      if (dh) {
        const answer = await offer(ctx, session, { type: MessageType.REKEY_DH, newKeyId: ctx.book.hubActive + 1, hubShare: LOW_ORDER_SHARE });
        ctx.check('dh.badShare', isError(answer, WireError.BAD_KEY_SHARE), name, `REKEY_DH with a low-order H was answered with ${said(answer)}; expected ERROR BAD_KEY_SHARE (9)`, session.evidence());
        if (isError(answer, WireError.REKEY_MODE_MISMATCH)) {
          for (const check of this.checks) ctx.observer.notApplicable(check, 'the device refuses REKEY_DH with REKEY_MODE_MISMATCH (classic only: no X25519)');
          await done(ctx, session);
          return;
        }
      }
      const offered = await offerAndAck(ctx, name, session, dh);
      if (offered === undefined) throw new ScenarioAbort('no ack');
      await hostileOffers(ctx, name, session, offered.id, dh, offered.message);
      // A hub crash: the connection drops; the restarted hub holds (A, P) and re-offers P.
      ctx.closeCurrent();
      const hello = await ctx.handshake(name, { sealIds: [offered.id], bodies: [[ctx.book.hubActive, offered.id]] });
      ctx.welcome(hello.session, ctx.book.hubActive);
      const firstShare = ctx.book.offer(offered.id)?.deviceShare;
      const again = await offer(ctx, hello.session, offered.message());
      ctx.check(dh ? 'dh.repeat' : 'rekey.repeat', again?.message.type === MessageType.REKEY_ACK && again.keyId === offered.id && (!dh || (again.header.share !== undefined && firstShare !== undefined && bytesEqual(again.header.share, firstShare))), name, `the same offer of ${offered.id} on the next session got ${said(again)}`, hello.session.evidence());
      await confirm(ctx, name, hello.session, offered.id);
      if (dh) ctx.book.mode = 'dh';
      ctx.closeCurrent();
      const after = await ctx.handshake(name, { sealIds: [offered.id], bodies: [[offered.id, 0]] });
      ctx.checkShare(name, after.session, { kind: 'sealed', received: { frame: new Uint8Array(0), atMs: 0 }, header: { type: MessageType.HELLO, fromHub: false, deviceId: ctx.book.deviceId, keyId: after.keyId, sequence: 0, sessionId: after.session.hubNonce, ...(after.share === undefined ? {} : { share: after.share }) }, message: { type: MessageType.PING }, keyId: after.keyId }, 'the HELLO after the promotion');
      ctx.welcome(after.session);
      const pong = await ctx.ping(after.session);
      ctx.check('confirm.promotes', pong?.keyId === offered.id, name, `after the promotion and a reconnect the PONG is ${pong === undefined ? 'missing' : describeFrame(pong)}`, after.session.evidence());
      await done(ctx, after.session);
    },
  };
}

const modeMismatch: Scenario = {
  name: 'mode-mismatch',
  description: 'a classic REKEY(A+1) to a device in the dh mode is refused with REKEY_MODE_MISMATCH and changes nothing',
  checks: ['dh.modeMismatch', 'dh.modeForGood', 'rekey.refusalUnchanged'],
  whyNot: (ctx) => (ctx.book.mode !== 'dh' ? 'the device is not in the dh mode (it never promoted a dh key)' : undefined),
  async run(ctx) {
    const name = this.name;
    const { session } = await ctx.establish(name);
    const id = ctx.book.hubActive + 1;
    // The key is recorded: a device that wrongly takes it can still be followed (and confirmed) by the kit.
    const answer = await offer(ctx, session, { type: MessageType.REKEY, newKeyId: id, newKey: ctx.book.newClassicKey(id) });
    ctx.check('dh.modeMismatch', isError(answer, WireError.REKEY_MODE_MISMATCH), name, `a classic REKEY(${id}) to a dh device got ${said(answer)}; expected ERROR REKEY_MODE_MISMATCH (8)`, session.evidence());
    if (ctx.book.provisionedMode === 'classic') ctx.check('dh.modeForGood', isError(answer, WireError.REKEY_MODE_MISMATCH), name, `provisioned classic, the device promoted a dh key; a classic REKEY(${id}) then got ${said(answer)}`, session.evidence());
    else ctx.observer.notApplicable('dh.modeForGood', 'the device was provisioned in the dh mode');
    if (answer?.message.type === MessageType.REKEY_ACK && answer.keyId === id) {
      ctx.book.expected = { active: ctx.book.hubActive, future: id };
      ctx.book.hubActive = id;
      ctx.book.mode = 'classic';
      ctx.send(session, { type: MessageType.CONFIRM, keyId: id }, id);
    }
    const pong = await ctx.ping(session);
    ctx.check('rekey.refusalUnchanged', pong !== undefined && pong.keyId === ctx.book.hubActive, name, `after the refused classic offer a PING got ${pong === undefined ? 'no PONG' : describeFrame(pong)}`, session.evidence());
    await done(ctx, session);
  },
};

function powerCutAfterAck(dh: boolean): Scenario {
  const label = dh ? 'dh' : 'classic';
  const check: CheckName = dh ? 'dh.persistBeforeAck' : 'rekey.persistBeforeAck';
  return {
    name: `power-cut-after-ack-${label}`,
    description: `${label}: the power is cut right after the kit receives REKEY_ACK; the kit, as a compliant hub, promoted on it: after the restart the HELLO must be under the new key`,
    checks: [check],
    whyNot: (ctx) => (ctx.power === undefined ? 'no --device-kill-cmd/--device-start-cmd' : !dh && ctx.book.mode === 'dh' ? 'the device is in the dh mode' : undefined),
    async run(ctx) {
      const name = this.name;
      const { session } = await ctx.establish(name);
      const active = ctx.book.hubActive;
      const id = active + 1;
      const message: Message = dh ? { type: MessageType.REKEY_DH, newKeyId: id, hubShare: ctx.book.newDhOffer(id, active).hub.publicKey } : { type: MessageType.REKEY, newKeyId: id, newKey: ctx.book.newClassicKey(id) };
      const ack = await offer(ctx, session, message, active);
      if (ack?.message.type !== MessageType.REKEY_ACK || ack.keyId !== id) {
        ctx.check(dh ? 'dh.ack' : 'rekey.ackUnderNew', false, name, `the offer of ${id} got ${said(ack)}`, session.evidence());
        throw new ScenarioAbort('no ack');
      }
      await ctx.powerCycle(name);
      // HK5 on the ack: the hub's active key is the new one now.
      ctx.book.hubActive = id;
      ctx.book.expected = { active, future: id, futureDh: dh };
      const hello = await ctx.handshake(name, { sealIds: [id], bodies: [[active, id], [id, 0]] });
      // Persisted: the HELLO names the key (as future or active); the key it seals under is hello.newest's business (D3).
      const holds = hello.activeKeyId === id || hello.futureKeyId === id;
      ctx.check(check, holds, name, `after a power cut right after its REKEY_ACK(${id}) the device's HELLO (under key ${hello.keyId}) names (${hello.activeKeyId}, ${hello.futureKeyId}): it acknowledged a key it had not persisted`, hello.session.evidence());
      if (!holds) {
        // Carry on with what the device holds: the kit goes back to its old key (a real hub would have lost this device).
        ctx.book.hubActive = hello.keyId;
        ctx.book.expected = { active: hello.activeKeyId };
      }
      ctx.welcome(hello.session);
      if (dh && hello.keyId === id) ctx.book.mode = 'dh';
      await done(ctx, hello.session);
    },
  };
}

const powerCutAfterConfirm: Scenario = {
  name: 'power-cut-after-confirm',
  description: 'the power is cut right after the kit sends CONFIRM: after the restart the device seals under the new key (promoted or still future), never only the old one',
  checks: ['confirm.persist'],
  whyNot: (ctx) => (ctx.power === undefined ? 'no --device-kill-cmd/--device-start-cmd' : undefined),
  async run(ctx) {
    const name = this.name;
    const { session } = await ctx.establish(name);
    const active = ctx.book.hubActive;
    const id = active + 1;
    const dh = ctx.book.mode === 'dh';
    const message: Message = dh ? { type: MessageType.REKEY_DH, newKeyId: id, hubShare: ctx.book.newDhOffer(id, active).hub.publicKey } : { type: MessageType.REKEY, newKeyId: id, newKey: ctx.book.newClassicKey(id) };
    const ack = await offer(ctx, session, message, active);
    if (ack?.message.type !== MessageType.REKEY_ACK || ack.keyId !== id) throw new ScenarioAbort(`no ack (${said(ack)})`);
    ctx.book.hubActive = id;
    ctx.book.expected = { active, future: id, futureDh: dh };
    session.send({ type: MessageType.CONFIRM, keyId: id }, id);
    await ctx.powerCycle(name);
    const hello = await ctx.handshake(name, { sealIds: [id], bodies: [[id, 0], [active, id]] });
    ctx.check('confirm.persist', hello.activeKeyId === id || hello.futureKeyId === id, name, `after a power cut right after CONFIRM(${id}) the HELLO is under ${hello.keyId} with (${hello.activeKeyId}, ${hello.futureKeyId}): the device holds only the old key`, hello.session.evidence());
    if (hello.activeKeyId !== id && hello.futureKeyId !== id) ctx.book.hubActive = hello.activeKeyId;
    ctx.welcome(hello.session);
    await done(ctx, hello.session);
  },
};

/** ENROL, and the device's answer (an ENROL_ACK or an ERROR). */
async function enrol(ctx: DeviceModeContext, session: KitSession, hubStaticId: number, hubPublicKey: Uint8Array): Promise<Sealed | undefined> {
  ctx.send(session, { type: MessageType.ENROL, hubStaticId, hubPublicKey }, ctx.book.hubActive);
  const answer = await ctx.expect(session, (f) => f.kind === 'sealed' && (f.message.type === MessageType.ENROL_ACK || f.message.type === MessageType.ERROR));
  return answer.frame?.kind === 'sealed' ? answer.frame : undefined;
}

const enrolment: Scenario = {
  name: 'enrolment',
  description: 'a device without a credential: ENROL with a low-order S_h → BAD_KEY_SHARE, then ENROL → ENROL_ACK(S_d), the same S_d after a power cut; with one: ENROL for it → the same ENROL_ACK; ENROL for another key → STATIC_KEY_LOCKED, nothing changes',
  checks: ['enrol.badShare', 'enrol.store', 'enrol.repeat', 'enrol.locked'],
  whyNot: (ctx) => (ctx.book.devicePublicKey === undefined && !ctx.book.hubStaticKnown ? 'the records name no device static key (S_d) and the kit has no hub static key (--hub-static-key-file) to enrol' : undefined),
  async run(ctx) {
    const name = this.name;
    let { session } = await ctx.establish(name);
    const hubStatic = ctx.book.hubStatic;
    if (ctx.book.devicePublicKey === undefined) {
      // DK15 (and D-ENROL-4 first: a low-order S_h is refused before anything is stored).
      const low = await enrol(ctx, session, hubStatic.id, LOW_ORDER_SHARE);
      ctx.check('enrol.badShare', isError(low, WireError.BAD_KEY_SHARE), name, `ENROL with a low-order S_h got ${said(low)}; expected ERROR BAD_KEY_SHARE (9)`, session.evidence());
      const ack = await enrol(ctx, session, hubStatic.id, hubStatic.publicKey);
      const enrolled = ack?.message.type === MessageType.ENROL_ACK && ack.message.hubStaticId === hubStatic.id ? ack.message.devicePublicKey.slice() : undefined;
      ctx.check('enrol.store', enrolled !== undefined, name, `ENROL(${hubStatic.id}, S_h) to a device without a credential got ${said(ack)}; expected ENROL_ACK(${hubStatic.id}, S_d)`, session.evidence());
      if (enrolled === undefined) throw new ScenarioAbort('not enrolled');
      ctx.book.devicePublicKey = enrolled;
      if (ctx.power !== undefined) {
        // Persisted before the ack: after a power cut the device answers with the same S_d.
        await ctx.powerCycle(name);
        ({ session } = await ctx.establish(name));
        const again = await enrol(ctx, session, hubStatic.id, hubStatic.publicKey);
        ctx.check('enrol.store', again?.message.type === MessageType.ENROL_ACK && bytesEqual(again.message.devicePublicKey, enrolled), name, `after a power cut right after ENROL_ACK, ENROL got ${said(again)}; expected the same S_d ${toHex(enrolled)}`, session.evidence());
      }
    } else {
      ctx.observer.notApplicable('enrol.store', 'the device was provisioned with a credential (provision with --no-credential to check the enrolment of one)');
      ctx.observer.notApplicable('enrol.badShare', 'the device was provisioned with a credential');
    }
    const devicePublicKey = ctx.book.devicePublicKey as Uint8Array;
    const frame = await enrol(ctx, session, hubStatic.id, hubStatic.publicKey);
    const same = frame?.message.type === MessageType.ENROL_ACK && frame.message.hubStaticId === hubStatic.id && bytesEqual(frame.message.devicePublicKey, devicePublicKey);
    ctx.check('enrol.repeat', same, name, `ENROL(${hubStatic.id}, S_h) got ${said(frame)}; expected ENROL_ACK(${hubStatic.id}, S_d = ${toHex(devicePublicKey)})`, session.evidence());
    const other = nodeKeyAgreement.x25519PublicKey(new Uint8Array(randomBytes(32)));
    const lockedFrame = await enrol(ctx, session, hubStatic.id + 1, other);
    ctx.check('enrol.locked', isError(lockedFrame, WireError.STATIC_KEY_LOCKED), name, `ENROL for another hub static key got ${said(lockedFrame)}; expected ERROR STATIC_KEY_LOCKED (10)`, session.evidence());
    const stillFrame = await enrol(ctx, session, hubStatic.id, hubStatic.publicKey);
    ctx.check('enrol.locked', stillFrame?.message.type === MessageType.ENROL_ACK && bytesEqual(stillFrame.message.devicePublicKey, devicePublicKey), name, `after the refused ENROL, ENROL for the enrolled key got ${said(stillFrame)}: the credential changed`, session.evidence());
    await done(ctx, session);
  },
};

// ---- Recovery (§12) --------------------------------------------------------

interface RecoveryStart {
  readonly hello: Hello;
  readonly init: Uint8Array;
  readonly k1: Uint8Array;
  readonly deviceShare: Uint8Array;
}

function recoveryHeader(ctx: DeviceModeContext, session: KitSession, type: number): Uint8Array {
  return encodeHeader({ type: type as MessageType, fromHub: true, deviceId: ctx.book.deviceId, keyId: 0, sequence: session.nextHubSeq(), sessionId: session.hubNonce });
}

/** HELLO → NO_KEY → RECOVER_INIT (verified); undefined when the device sent no RECOVER_INIT (recorded by the caller). */
async function startRecovery(ctx: DeviceModeContext, name: string): Promise<{ start?: RecoveryStart; hello: Hello; answer: string; closed: boolean }> {
  const hello = await ctx.handshake(name);
  const session = hello.session;
  session.link.send(recoveryHeader(ctx, session, MessageType.NO_KEY));
  const result = await ctx.expect(session, isType(MessageType.RECOVER_INIT));
  if (result.frame?.kind !== 'unsealed') return { hello, answer: result.others.map(describeFrame).join(', ') || (result.end === 'closed' ? 'a close' : 'nothing'), closed: result.end === 'closed' };
  const init = result.frame.received.frame;
  try {
    const { claim, k1 } = hubVerifyRecoverInit(nodeKeyAgreement, { hubStatic: ctx.book.hubStatic, devicePublicKey: ctx.book.devicePublicKey as Uint8Array, deviceId: ctx.book.deviceId, hubNonce: session.hubNonce }, init);
    const newest = ctx.book.key(hello.keyId);
    const checkOk = newest !== undefined && checkMatches(nodeKeyAgreement, newest, session.hubNonce, claim);
    const idsOk = claim.activeKeyId === hello.activeKeyId && claim.futureKeyId === hello.futureKeyId && claim.hubStaticId === ctx.book.hubStatic.id;
    ctx.check('rec.init', result.frame.header.sequence === 1 && checkOk && idsOk, name, `RECOVER_INIT: seq ${result.frame.header.sequence}, ids (${claim.activeKeyId}, ${claim.futureKeyId}) vs HELLO (${hello.activeKeyId}, ${hello.futureKeyId}), hub static id ${claim.hubStaticId}, check ${checkOk ? 'matches' : 'does not match'} the key the HELLO was sealed under`, session.evidence());
    return { start: { hello, init, k1, deviceShare: claim.deviceShare }, hello, answer: 'RECOVER_INIT', closed: false };
  } catch (error) {
    ctx.check('rec.init', false, name, `RECOVER_INIT does not verify: ${asLockstepError(error).code}`, session.evidence());
    return { hello, answer: 'a RECOVER_INIT that does not verify', closed: false };
  }
}

function reply(ctx: DeviceModeContext, start: RecoveryStart, newKeyId: number, corruptTag2 = false): RecoverySecrets {
  const session = start.hello.session;
  const { frame, secrets } = hubRecoveryReply(nodeKeyAgreement, nodeRandom, { k1: start.k1, initFrame: start.init, header: recoveryHeader(ctx, session, MessageType.RECOVER_REPLY), newKeyId, devicePublicKey: ctx.book.devicePublicKey as Uint8Array, deviceShare: start.deviceShare });
  if (corruptTag2) frame[frame.length - 1] = (frame[frame.length - 1] as number) ^ 0x01;
  session.link.send(frame);
  return secrets;
}

/** The device must end the attempt: nothing sent, the connection closed. */
async function expectAbandoned(ctx: DeviceModeContext, name: string, session: KitSession, check: CheckName, what: string): Promise<void> {
  const result = await ctx.quiet(session, ctx.timers.quietMs + ctx.timers.slackMs);
  const closed = result.closed || (await session.link.waitClosed(ctx.timers.handshakeMs + ctx.timers.slackMs));
  ctx.check(check, result.frames.length === 0 && closed, name, `${what}: the device ${result.frames.length > 0 ? `sent ${result.frames.map(describeFrame).join(', ')}` : ''}${closed ? '' : ' kept the connection open'}`, session.evidence());
}

/** A session established under the device's key: the WELCOME ends the recovery episode (the device's spacing starts over). */
async function resync(ctx: DeviceModeContext, name: string, check: CheckName): Promise<void> {
  const before = ctx.book.expectedSealId;
  const hello = await ctx.establish(name);
  ctx.check(check, hello.keyId === before, name, `after the failed attempt the device's HELLO is under ${hello.keyId} (before: ${before}): the attempt changed its keys`, hello.session.evidence());
  ctx.closeCurrent();
}

const recovery: Scenario = {
  name: 'recovery',
  description: 'NO_KEY → RECOVER_INIT; RECOVER_RESULT RATE_LIMITED and the next NO_KEY at once (no second attempt); a bad tag2; an N not above the device ids; then a full recovery to N (ACCEPTED → HELLO under N → WELCOME promotes), with a power cut after it when the kit can cut power',
  checks: ['rec.init', 'rec.pacing', 'rec.inSync', 'rec.badTag2', 'rec.idNotAbove', 'rec.other', 'rec.finish', 'rec.accepted', 'rec.persist'],
  whyNot: (ctx) => (ctx.book.devicePublicKey === undefined ? 'no recovery credential: the records name no device static key (S_d), and none was enrolled' : !ctx.book.hubStaticKnown ? 'no --hub-static-key-file: the kit cannot answer as the hub' : undefined),
  async run(ctx) {
    const name = this.name;
    // 1. An attempt the kit rate-limits, then NO_KEY again at once: the device must not try again (its spacing, the hub's retry after).
    const first = await startRecovery(ctx, name);
    if (first.start === undefined) {
      ctx.check('rec.init', false, name, `after NO_KEY the device sent ${first.answer}, not RECOVER_INIT (it holds a credential)`, first.hello.session.evidence());
      throw new ScenarioAbort('no RECOVER_INIT');
    }
    let secrets = reply(ctx, first.start, ctx.book.highestId + 1);
    let finish = await ctx.expect(first.hello.session, isType(MessageType.RECOVER_FINISH));
    if (finish.frame?.kind === 'unsealed') {
      let ok = true;
      try {
        verifyRecoveryFinish(nodeKeyAgreement, secrets.macKey, finish.frame.received.frame);
      } catch {
        ok = false;
      }
      ctx.check('rec.finish', ok && finish.frame.header.sequence === 2, name, `RECOVER_FINISH: seq ${finish.frame.header.sequence}, tag3 ${ok ? 'valid' : 'invalid'}`, first.hello.session.evidence());
      first.hello.session.link.send(recoveryResultFrame(nodeKeyAgreement, secrets.macKey, recoveryHeader(ctx, first.hello.session, MessageType.RECOVER_RESULT), RecoveryStatus.RATE_LIMITED, 3600));
    } else {
      ctx.check('rec.finish', false, name, `after a valid RECOVER_REPLY the device sent ${finish.others.map(describeFrame).join(', ') || finish.end}`, first.hello.session.evidence());
    }
    await first.hello.session.link.waitClosed(ctx.timers.answerMs);
    const paced = await ctx.handshake(name);
    paced.session.link.send(recoveryHeader(ctx, paced.session, MessageType.NO_KEY));
    const second = await ctx.quiet(paced.session, ctx.timers.quietMs + ctx.timers.slackMs);
    const tried = second.frames.some((f) => f.kind === 'unsealed' && f.header.type === MessageType.RECOVER_INIT);
    ctx.check('rec.pacing', !tried, name, 'right after an attempt that ended RATE_LIMITED (retry after 3600 s) the device started another on the next NO_KEY', paced.session.evidence());
    ctx.closeCurrent();
    await resync(ctx, name, 'rec.finish');
    // 1b. IN_SYNC: the device reconnects at once (the attempt counts for its spacing; the WELCOME of that reconnect resets it).
    const inSync = await startRecovery(ctx, name);
    if (inSync.start !== undefined) {
      const syncSecrets = reply(ctx, inSync.start, ctx.book.highestId + 1);
      const syncFinish = await ctx.expect(inSync.hello.session, isType(MessageType.RECOVER_FINISH));
      if (syncFinish.frame?.kind === 'unsealed') {
        inSync.hello.session.link.send(recoveryResultFrame(nodeKeyAgreement, syncSecrets.macKey, recoveryHeader(ctx, inSync.hello.session, MessageType.RECOVER_RESULT), RecoveryStatus.IN_SYNC, 0));
        const closed = await inSync.hello.session.link.waitClosed(ctx.timers.answerMs);
        const closedAt = Date.now();
        const next = await ctx.listener.next(ctx.timers.slackMs + 1000);
        const gap = Date.now() - closedAt;
        ctx.check('rec.inSync', closed && next !== undefined, name, `after RECOVER_RESULT IN_SYNC the device ${closed ? '' : 'did not close; '}${next === undefined ? `did not reconnect within ${ctx.timers.slackMs + 1000} ms` : `reconnected after ${gap} ms`}`, inSync.hello.session.evidence());
        if (next !== undefined) {
          // Hand the connection back: the resync below takes it.
          ctx.listener.requeue(next);
        }
        await resync(ctx, name, 'rec.inSync');
      }
    }
    // 2. A bad tag2.
    const bad = await startRecovery(ctx, name);
    if (bad.start !== undefined) {
      reply(ctx, bad.start, ctx.book.highestId + 1, true);
      await expectAbandoned(ctx, name, bad.hello.session, 'rec.badTag2', 'a RECOVER_REPLY with a bad tag2');
      await resync(ctx, name, 'rec.badTag2');
    }
    // 3. N not above the device's ids (its newest id).
    const low = await startRecovery(ctx, name);
    if (low.start !== undefined) {
      reply(ctx, low.start, ctx.book.expectedSealId);
      await expectAbandoned(ctx, name, low.hello.session, 'rec.idNotAbove', `a RECOVER_REPLY with N = ${ctx.book.expectedSealId} (not above the device's ids)`);
      await resync(ctx, name, 'rec.idNotAbove');
    }
    // 3b. Anything but RECOVER_REPLY in recoverSent (a sealed PING): the attempt ends, nothing changes (DS16).
    const other = await startRecovery(ctx, name);
    if (other.start !== undefined) {
      other.hello.session.send({ type: MessageType.PING }, other.hello.keyId, { sequence: 2 });
      await expectAbandoned(ctx, name, other.hello.session, 'rec.other', 'a sealed PING instead of RECOVER_REPLY');
      await resync(ctx, name, 'rec.other');
    }
    // 4. The full recovery.
    const full = await startRecovery(ctx, name);
    if (full.start === undefined) throw new ScenarioAbort('no RECOVER_INIT');
    const n = ctx.book.highestId + 1;
    secrets = reply(ctx, full.start, n);
    finish = await ctx.expect(full.hello.session, isType(MessageType.RECOVER_FINISH));
    if (finish.frame?.kind !== 'unsealed') {
      ctx.check('rec.finish', false, name, `after a valid RECOVER_REPLY(N = ${n}) the device sent ${finish.others.map(describeFrame).join(', ') || finish.end}`, full.hello.session.evidence());
      throw new ScenarioAbort('no RECOVER_FINISH');
    }
    verifyRecoveryFinish(nodeKeyAgreement, secrets.macKey, finish.frame.received.frame);
    ctx.book.setKey(n, secrets.recoveredKey);
    ctx.book.hubPending = n;
    full.hello.session.link.send(recoveryResultFrame(nodeKeyAgreement, secrets.macKey, recoveryHeader(ctx, full.hello.session, MessageType.RECOVER_RESULT), RecoveryStatus.ACCEPTED, 0));
    const before = ctx.book.expected;
    ctx.book.expected = { active: before.active, future: n };
    // DK14: the device persists N, then closes.
    const closed = await full.hello.session.link.waitClosed(ctx.timers.answerMs);
    if (ctx.power !== undefined && closed) await ctx.powerCycle(name);
    const underN = await ctx.handshake(name, { sealIds: [n], bodies: [[before.active, n]] });
    const holdsN = underN.activeKeyId === n || underN.futureKeyId === n;
    if (ctx.power !== undefined && closed) ctx.check('rec.persist', holdsN, name, `after RECOVER_RESULT ACCEPTED for N = ${n} and a power cut once the device closed, its HELLO names (${underN.activeKeyId}, ${underN.futureKeyId}): N was not persisted`, underN.session.evidence());
    else ctx.observer.notApplicable('rec.persist', ctx.power === undefined ? 'no --device-kill-cmd/--device-start-cmd' : 'the device did not close after RECOVER_RESULT ACCEPTED');
    ctx.check('rec.accepted', underN.keyId === n, name, `after RECOVER_RESULT ACCEPTED for N = ${n} the HELLO is under ${underN.keyId} (body ${underN.activeKeyId}, ${underN.futureKeyId})`, underN.session.evidence());
    if (underN.keyId === n) {
      ctx.book.hubActive = n;
      ctx.book.hubPending = undefined;
    }
    ctx.welcome(underN.session);
    const pong = await ctx.ping(underN.session);
    ctx.check('rec.accepted', pong?.keyId === ctx.book.hubActive, name, `after the WELCOME under N the PONG is ${pong === undefined ? 'missing' : describeFrame(pong)}`, underN.session.evidence());
    ctx.closeCurrent();
    const again = await ctx.handshake(name, { sealIds: [ctx.book.hubActive], bodies: [[ctx.book.hubActive, 0]] });
    ctx.welcome(again.session);
    await done(ctx, again.session);
  },
};

// ---- The negative vectors of tools/vectors/negative.ts (docs/vectors/negative-vectors.json) ----

/** The kit's session as a NegativeSession (receiver: the device), for the seq of the moment. */
function vectorSession(ctx: DeviceModeContext, session: KitSession, state: 'awaitingChallenge' | 'awaitingWelcome' | 'established'): NegativeSession {
  const active = ctx.book.hubActive;
  const expected = ctx.book.expected;
  return {
    receiver: 'device',
    state,
    deviceId: ctx.book.deviceId,
    sessionId: session.hubNonce,
    sequence: state === 'awaitingChallenge' ? 0 : session.hubSeq,
    sealKey: { id: active, key: ctx.book.key(active) as Uint8Array },
    heldKeyIds: expected.future === undefined ? [expected.active] : [expected.active, expected.future],
    ...(session.deviceNonce === undefined ? {} : { deviceNonce: session.deviceNonce }),
    iv: () => new Uint8Array(randomBytes(16)),
  };
}

/** Records a vector's outcome against its own requirement and the two every vector shows. */
function vectorOutcome(ctx: DeviceModeContext, name: string, session: KitSession, vectors: readonly NegativeVector[], answered: readonly DeviceFrame[], accepted: boolean, next: string): void {
  const what = vectors.map((v) => `${v.name} (${v.expectedError})`).join('; ');
  const silent = ctx.check('reject.silent', answered.length === 0, name, `in answer to ${what} the device sent ${answered.map(describeFrame).join(', ')}`, session.evidence());
  const unchanged = ctx.check('reject.unchanged', accepted, name, `after ${what} ${next} was not accepted`, session.evidence());
  for (const vector of vectors) ctx.observer.checkRequirement(vector.requirement, silent && unchanged, { scenario: name, note: `${vector.name}: ${vector.description}${silent ? '' : '; answered'}${unchanged ? '' : `; ${next} not accepted after it`}`, frames: session.evidence(6) });
}

const VECTORS_PER_CONNECTION = 4;

const negativeVectorsScenario: Scenario = {
  name: 'negative-vectors',
  description: 'the negative vectors of tools/vectors/negative.ts, built for the live session, in each device state: before CHALLENGE (then the CHALLENGE must get its HELLO), before WELCOME (then the WELCOME must establish), in a session (then a PING must get its PONG)',
  checks: ['reject.silent', 'reject.unchanged'],
  whyNot: () => undefined,
  async run(ctx) {
    const name = this.name;
    // In a session: one vector, then a good PING.
    {
      const { session } = await ctx.establish(name);
      const count = negativeVectors(vectorSession(ctx, session, 'established')).length;
      for (let i = 0; i < count; i++) {
        const vector = negativeVectors(vectorSession(ctx, session, 'established'))[i] as NegativeVector;
        session.link.send(vector.wire, true);
        ctx.send(session, { type: MessageType.PING }, ctx.book.hubActive);
        const result = await ctx.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.PONG);
        vectorOutcome(ctx, name, session, [vector], result.others, result.frame !== undefined, 'the next PING');
        if (result.frame === undefined) throw new ScenarioAbort('no PONG');
      }
      await done(ctx, session);
    }
    // Before the WELCOME: a few vectors per connection, then the WELCOME (seq 1) and a PING.
    for (let batch = 0; ; batch += VECTORS_PER_CONNECTION) {
      const hello = await ctx.handshake(name);
      const session = hello.session;
      const all = negativeVectors(vectorSession(ctx, session, 'awaitingWelcome'));
      const group = all.slice(batch, batch + VECTORS_PER_CONNECTION);
      for (const vector of group) session.link.send(vector.wire, true);
      ctx.welcome(session);
      ctx.send(session, { type: MessageType.PING }, ctx.book.hubActive);
      const result = await ctx.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.PONG);
      vectorOutcome(ctx, name, session, group, result.others, result.frame !== undefined, 'the WELCOME');
      await done(ctx, session);
      if (batch + VECTORS_PER_CONNECTION >= all.length) break;
    }
    // Before the CHALLENGE: a few vectors per connection, then the CHALLENGE, which must get its HELLO.
    for (let batch = 0; ; batch += VECTORS_PER_CONNECTION) {
      let group: NegativeVector[] = [];
      let total = 0;
      let answered: DeviceFrame[] = [];
      const hello = await ctx.handshake(name, {
        beforeChallenge: async (s) => {
          const all = negativeVectors(vectorSession(ctx, s, 'awaitingChallenge'));
          total = all.length;
          group = all.slice(batch, batch + VECTORS_PER_CONNECTION);
          for (const vector of group) s.link.send(vector.wire, true);
          answered = (await ctx.quiet(s)).frames;
        },
      });
      vectorOutcome(ctx, name, hello.session, group, answered, true, 'the CHALLENGE');
      ctx.welcome(hello.session);
      await done(ctx, hello.session);
      if (batch + VECTORS_PER_CONNECTION >= total) break;
    }
  },
};

/** Run order: the cheap and the non-destructive first, then the rotations, power cuts, recovery. */
export const SCENARIOS: readonly Scenario[] = [
  handshake,
  established,
  negative,
  negativeVectorsScenario,
  rotation(false),
  powerCutAfterAck(false),
  rotation(true),
  powerCutAfterAck(true),
  powerCutAfterConfirm,
  modeMismatch,
  enrolment,
  recovery,
  timers,
];

export function scenarioNames(): string[] {
  return SCENARIOS.map((s) => s.name);
}

export { typeName };
