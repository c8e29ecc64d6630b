/**
 * What every device-mode scenario uses: the next connection of the device
 * under test, the handshake with its checks (HELLO under the newest key,
 * body, fresh Nd), waiting for a given frame while doing what a hub does
 * with incidental ones (PONG to a keep-alive PING, DATA_ACK to DATA), quiet
 * windows ("the device sends nothing"), and the power control.
 *
 * The kit adopts what the device shows when it can (a HELLO under a key it
 * knows resets its model to the HELLO's ids): a device that failed one check
 * is still driven through the rest of the run instead of failing everything
 * after it.
 */
import { randomBytes } from 'node:crypto';
import { toHex } from '../../../modules/bytes';
import { IV_BYTES, HEADER_BYTES, KEY_SHARE_BYTES, MessageType } from '../../../modules/protocol/constants';
import type { Message } from '../../../modules/protocol/messages';
import type { FrameEvidence } from '../report';
import type { KeyBook } from './key-book';
import type { FrameLink, KitListener } from './link';
import type { CheckName, Observer } from './observer';
import { describeFrame, KitSession, type DeviceFrame } from './session';

export interface DeviceTimers {
  /** The device's keep-alive interval (docs/PROTOCOL.md §10; reference 15 s). */
  readonly keepaliveMs: number;
  /** The device's idle timeout (reference 45 s). */
  readonly idleMs: number;
  /** The device's handshake timeout (reference 10 s). */
  readonly handshakeMs: number;
  /** Tolerance on every timer (scheduling, the network). */
  readonly slackMs: number;
  /** How long "the device sends nothing" is watched. */
  readonly quietMs: number;
  /** How long the kit waits for the device to (re)connect (its reconnect backoff, a restart). */
  readonly connectWaitMs: number;
  /** How long the kit waits for an answer. */
  readonly answerMs: number;
}

export interface PowerControl {
  /** Cut the device's power now (SIGKILL of its process, mcsim killed, …); resolves once it is off. */
  kill(): Promise<void>;
  /** Power it on again (it boots from its flash). */
  start(): Promise<void>;
}

/** Thrown to end a scenario early (the device vanished, the run's time is up); the checks made so far stand. */
export class ScenarioAbort extends Error {}

export interface Hello {
  readonly session: KitSession;
  readonly keyId: number;
  readonly activeKeyId: number;
  readonly futureKeyId: number;
  readonly share: Uint8Array | undefined;
}

export class DeviceModeContext {
  readonly listener: KitListener;
  readonly book: KeyBook;
  readonly observer: Observer;
  readonly timers: DeviceTimers;
  readonly power: PowerControl | undefined;
  readonly deadline: number;
  readonly #nonces = new Set<string>();
  readonly #ivs = new Set<string>();
  #current: FrameLink | undefined;

  constructor(input: { listener: KitListener; book: KeyBook; observer: Observer; timers: DeviceTimers; power?: PowerControl; deadline: number }) {
    this.listener = input.listener;
    this.book = input.book;
    this.observer = input.observer;
    this.timers = input.timers;
    this.power = input.power;
    this.deadline = input.deadline;
  }

  check(check: CheckName, ok: boolean, scenario: string, note: string, frames?: readonly FrameEvidence[]): boolean {
    return this.observer.check(check, ok, { scenario, note, ...(ok || frames === undefined ? {} : { frames }) });
  }

  remaining(): number {
    return this.deadline - Date.now();
  }

  /** The device's next connection (the previous one is closed first). */
  async nextLink(scenario: string): Promise<FrameLink> {
    this.#current?.close();
    this.#current = undefined;
    const wait = Math.min(this.timers.connectWaitMs, this.remaining());
    if (wait <= 0) throw new ScenarioAbort('the run is out of time');
    let link = await this.listener.next(wait);
    this.check('retry.reconnect', link !== undefined, scenario, `the device did not connect within ${wait} ms${this.power === undefined ? '' : ' (the kit restarts it with --device-start-cmd)'}`);
    if (link === undefined && this.power !== undefined && this.remaining() > 0) {
      // A device that died (a crash) or hangs: power it on again once, so the rest of the run still says something.
      this.observer.note(`[${scenario}] the device did not reconnect within ${wait} ms: the kit restarts it`);
      await this.power.kill();
      this.listener.drain();
      await this.power.start();
      link = await this.listener.next(Math.min(this.timers.connectWaitMs, this.remaining()));
    }
    if (link === undefined) throw new ScenarioAbort(`[${scenario}] the device did not connect within ${wait} ms`);
    this.#current = link;
    return link;
  }

  /** CHALLENGE, then the HELLO and its checks. `sealOptions`: the key ids a compliant device may seal it under here (default: the model's). */
  async handshake(scenario: string, expect?: { readonly sealIds?: readonly number[]; readonly bodies?: readonly (readonly [number, number])[]; readonly beforeChallenge?: (session: KitSession) => Promise<void> }): Promise<Hello> {
    const link = await this.nextLink(scenario);
    const session = new KitSession(link, this.book, this.observer, scenario, this.#ivs);
    await expect?.beforeChallenge?.(session);
    session.sendChallenge();
    const frame = await session.receive(this.timers.answerMs);
    if (frame.kind !== 'sealed' || frame.message.type !== MessageType.HELLO) {
      this.check('hello.first', false, scenario, `the answer to CHALLENGE was ${describeFrame(frame)}`, link.evidence());
      throw new ScenarioAbort(`[${scenario}] no HELLO`);
    }
    const message = frame.message;
    this.check('hello.first', frame.header.sequence === 0, scenario, `HELLO with seq ${frame.header.sequence}`, link.evidence());
    const sealIds = expect?.sealIds ?? [this.book.expectedSealId];
    this.check('hello.newest', sealIds.includes(frame.keyId), scenario, `HELLO sealed under key ${frame.keyId}; a compliant device seals it under ${sealIds.join(' or ')} (its newest key)`, link.evidence());
    const expected = this.book.expected;
    const bodies = expect?.bodies ?? [[expected.active, expected.future ?? 0] as const];
    const bodyOk = bodies.some(([a, f]) => a === message.activeKeyId && f === message.futureKeyId);
    this.check('hello.body', bodyOk, scenario, `HELLO body (active ${message.activeKeyId}, future ${message.futureKeyId}) under key ${frame.keyId}; expected ${bodies.map(([a, f]) => `(${a}, ${f})`).join(' or ')}`, link.evidence());
    const nonce = toHex(message.deviceNonce);
    this.check('hello.nonce', !this.#nonces.has(nonce), scenario, `HELLO nonce ${nonce} was used before`, link.evidence());
    if (this.#nonces.size < 10_000) this.#nonces.add(nonce);
    session.deviceNonce = message.deviceNonce;
    const futureOffer = message.futureKeyId === 0 ? undefined : this.book.offer(message.futureKeyId);
    if (futureOffer !== undefined && frame.keyId === message.futureKeyId) {
      this.check('dh.helloShare', frame.header.share !== undefined, scenario, `HELLO under the dh-derived future key ${frame.keyId} without its share D`, link.evidence());
    }
    // Adopt what the device shows (it may have failed a check before): the run goes on from its real state.
    if (this.book.has(message.activeKeyId) && (message.futureKeyId === 0 || this.book.has(message.futureKeyId))) {
      this.book.expected = message.futureKeyId === 0 ? { active: message.activeKeyId } : { active: message.activeKeyId, future: message.futureKeyId, futureDh: futureOffer !== undefined };
    }
    return { session, keyId: frame.keyId, activeKeyId: message.activeKeyId, futureKeyId: message.futureKeyId, share: frame.header.share };
  }

  /** WELCOME echoing Nd, sealed under `keyId` (default the hub's active key). */
  welcome(session: KitSession, keyId = this.book.hubActive): void {
    session.send({ type: MessageType.WELCOME, deviceNonce: session.deviceNonce as Uint8Array, hubKeyId: keyId }, keyId);
    this.#promotedBy(keyId);
  }

  /** Handshake then WELCOME as a compliant hub answers it: a HELLO under the hub's pending key promotes it first (HK5). */
  async establish(scenario: string): Promise<Hello> {
    const hello = await this.handshake(scenario);
    if (this.book.hubPending !== undefined && hello.keyId === this.book.hubPending) {
      this.book.hubActive = this.book.hubPending;
      this.book.hubPending = undefined;
    }
    // WELCOME under the hub's active key when the device holds it; else (a device that lost keys) under the key it sealed with, adopted.
    let welcomeId = this.book.hubActive;
    if (hello.activeKeyId !== welcomeId && hello.futureKeyId !== welcomeId && this.book.key(hello.keyId) !== undefined) {
      this.observer.note(`[${scenario}] the device holds (${hello.activeKeyId}, ${hello.futureKeyId}), not the hub's key ${welcomeId}: the kit goes on under ${hello.keyId}`);
      welcomeId = hello.keyId;
      this.book.hubActive = welcomeId;
      this.book.hubPending = undefined;
    }
    this.welcome(hello.session, welcomeId);
    return hello;
  }

  /** A hub frame under the device's future key promotes it (DK5): the model follows. */
  #promotedBy(keyId: number): void {
    const expected = this.book.expected;
    if (expected.future !== undefined && keyId === expected.future) {
      this.book.expected = { active: expected.future };
      if (this.book.offer(keyId) !== undefined) this.book.mode = 'dh';
    }
  }

  /** Seals and sends a hub message, keeping the model in step (DK5). */
  send(session: KitSession, message: Message, keyId: number): Uint8Array {
    const frame = session.send(message, keyId);
    this.#promotedBy(keyId);
    return frame;
  }

  /**
   * Waits for a frame `want` accepts, doing a hub's part for incidental ones
   * (keep-alive PING → PONG, DATA → DATA_ACK); returns it, or what came
   * instead (`others`) and how the wait ended.
   */
  async expect(session: KitSession, want: (frame: DeviceFrame & { kind: 'sealed' | 'unsealed' }) => boolean, timeoutMs = this.timers.answerMs): Promise<{ frame?: DeviceFrame & { kind: 'sealed' | 'unsealed' }; others: DeviceFrame[]; end: 'matched' | 'closed' | 'timeout' }> {
    const deadline = Date.now() + timeoutMs;
    const others: DeviceFrame[] = [];
    for (;;) {
      const frame = await session.receive(Math.max(0, deadline - Date.now()));
      if (frame.kind === 'closed' || frame.kind === 'timeout') return { others, end: frame.kind };
      if ((frame.kind === 'sealed' || frame.kind === 'unsealed') && want(frame)) return { frame, others, end: 'matched' };
      if (!this.#incidental(session, frame)) others.push(frame);
    }
  }

  /** The frames (other than keep-alive PINGs and DATA) the device sends within `ms`; whether it closed. */
  async quiet(session: KitSession, ms = this.timers.quietMs): Promise<{ frames: DeviceFrame[]; closed: boolean }> {
    const result = await this.expect(session, () => false, ms);
    return { frames: result.others, closed: result.end === 'closed' };
  }

  /** PING under `keyId` (default the hub's active key); the PONG, or undefined. */
  async ping(session: KitSession, keyId = this.book.hubActive): Promise<(DeviceFrame & { kind: 'sealed' }) | undefined> {
    this.send(session, { type: MessageType.PING }, keyId);
    const result = await this.expect(session, (f) => f.kind === 'sealed' && f.message.type === MessageType.PONG);
    return result.frame?.kind === 'sealed' ? result.frame : undefined;
  }

  /** The key id the device sealed `frame` under, and whether it is the model's newest (D3), with the share rule (§11.2). */
  checkSealing(scenario: string, session: KitSession, frame: DeviceFrame & { kind: 'sealed' }, what: string): boolean {
    const want = this.book.expectedSealId;
    const ok = this.check('seal.newest', frame.keyId === want, scenario, `${what} sealed under key ${frame.keyId}, the device's newest key is ${want}`, session.evidence());
    this.checkShare(scenario, session, frame, what);
    return ok;
  }

  /** KEY_SHARE exactly on frames under a dh-derived future key, carrying its D (§11.2). */
  checkShare(scenario: string, session: KitSession, frame: DeviceFrame & { kind: 'sealed' }, what: string): void {
    const expected = this.book.expected;
    const underDhFuture = expected.future !== undefined && expected.futureDh === true && frame.keyId === expected.future;
    const offer = underDhFuture ? this.book.offer(frame.keyId) : undefined;
    const share = frame.header.share;
    const ok = underDhFuture ? share !== undefined && (offer?.deviceShare === undefined || toHex(offer.deviceShare) === toHex(share)) : share === undefined;
    this.check('frame.share', ok, scenario, `${what} under key ${frame.keyId} ${share === undefined ? 'without' : 'with'} a share; ${underDhFuture ? 'it is the dh future key: every frame carries its D' : 'no share is allowed here'}`, session.evidence());
  }

  /** Power-cuts the device and starts it again; the connection of the moment is dropped. */
  async powerCycle(scenario: string): Promise<void> {
    if (this.power === undefined) throw new ScenarioAbort(`[${scenario}] no power control`);
    this.observer.note(`[${scenario}] power cut`);
    await this.power.kill();
    this.#current?.close();
    this.#current = undefined;
    this.listener.drain();
    await this.power.start();
  }

  closeCurrent(): void {
    this.#current?.close();
    this.#current = undefined;
  }

  /** A random 64-byte key (for hostile offers). */
  static randomKey(): Uint8Array {
    return new Uint8Array(randomBytes(64));
  }

  /** The IV of a sealed frame, for the freshness check. */
  static ivOf(frame: Uint8Array, withShare: boolean): string {
    const at = HEADER_BYTES + (withShare ? KEY_SHARE_BYTES : 0);
    return toHex(frame.subarray(at, at + IV_BYTES));
  }

  #incidental(session: KitSession, frame: DeviceFrame): boolean {
    if (frame.kind !== 'sealed') return false;
    if (frame.message.type === MessageType.PING) {
      this.send(session, { type: MessageType.PONG }, this.book.hubActive);
      return true;
    }
    if (frame.message.type === MessageType.DATA) {
      this.send(session, { type: MessageType.DATA_ACK, streamId: frame.message.streamId, messageId: frame.message.messageId }, this.book.hubActive);
      return true;
    }
    return false;
  }
}
