/**
 * One connection of a kit device to the hub under test, at the frame level:
 * the kit seals what a device sends (or, for hostile input, anything else)
 * with the wire helpers, and opens what the hub sends with the keys the
 * device holds, checking every field the spec fixes for a hub → device
 * frame (direction bit, device id, session id, exact seq: §3, §6.1). What a
 * well-behaved device does on REKEY / REKEY_DH / a frame under its future
 * key (DK1, DK9, DK5) is here too, so scenarios script only what they test.
 */
import { bytesEqual, toHex } from '../../../modules/bytes';
import { deriveRekeyKey, drawEphemeral } from '../../../modules/crypto/dh-rekey';
import { LockstepError } from '../../../modules/errors';
import { MessageType, STREAM_ID_BYTES } from '../../../modules/protocol/constants';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import { nodeRandom } from '../../../hosts/node/crypto';
import type { KeySlot } from '../../../modules/platform/keys';
import { ConnectionBudget, WirePeer, type WireTarget } from '../wire/peer';
import type { FrameRecording } from '../wire/recording';
import { freshBytes, freshNonce, inspectFrame, openWire, readChallenge, sealWire, typeName, type Header, type Message } from '../wire/sealer';
import { keyOf, promote, sealingKey, type KitDevice } from './kit-devices';

export interface KitLink {
  readonly target: WireTarget;
  readonly budget: ConnectionBudget;
  readonly connectTimeoutMs: number;
}

export type SealingKey = KeySlot & { readonly share?: Uint8Array };

/** What the hub sent, as the device sees it. */
export type Received =
  | { readonly kind: 'opened'; readonly frame: Uint8Array; readonly header: Header; readonly message: Message; readonly atMs: number }
  /** A frame the device cannot accept: `problem` says why (a check of §4 it fails). */
  | { readonly kind: 'refused'; readonly frame: Uint8Array; readonly problem: string; readonly atMs: number }
  | { readonly kind: 'closed'; readonly atMs: number }
  | { readonly kind: 'timeout' };

export interface SendOptions {
  /** Seal under this key instead of the device's sealing key (D3). */
  readonly key?: SealingKey;
  /** Use this seq instead of the next one (the session's counter does not advance). */
  readonly seq?: number;
  readonly sessionId?: Uint8Array;
  readonly fromHub?: boolean;
  readonly deviceId?: Uint8Array;
}

export class KitSession {
  readonly peer: WirePeer;
  readonly device: KitDevice;
  /** The hub nonce of this connection's CHALLENGE. */
  nh: Uint8Array = new Uint8Array(16);
  challenge: Uint8Array | undefined;
  /** The next seq this device sends (HELLO is 0). */
  deviceSeq = 0;
  /** The next seq expected from the hub (CHALLENGE was 0). */
  hubSeq = 0;
  /** Every REKEY / REKEY_DH body seen on this connection, in order. */
  readonly offers: { readonly id: number; readonly key?: Uint8Array; readonly hubShare?: Uint8Array; readonly atMs: number }[] = [];

  private constructor(peer: WirePeer, device: KitDevice) {
    this.peer = peer;
    this.device = device;
  }

  static async connect(link: KitLink, device: KitDevice, recording: FrameRecording): Promise<KitSession> {
    const peer = await WirePeer.connect(link.target, { recording, budget: link.budget, connectTimeoutMs: link.connectTimeoutMs });
    return new KitSession(peer, device);
  }

  /** Reads the CHALLENGE; the problem with it if it is not one (§6.1). */
  async readChallenge(timeoutMs: number): Promise<{ ok: true } | { ok: false; note: string }> {
    const event = await this.peer.next(timeoutMs);
    if (event.kind !== 'frame') return { ok: false, note: event.kind === 'timeout' ? `no CHALLENGE within ${timeoutMs} ms` : `no CHALLENGE: ${event.kind}` };
    this.challenge = event.frame;
    try {
      this.nh = readChallenge(event.frame);
    } catch (error) {
      return { ok: false, note: `malformed CHALLENGE: ${(error as Error).message}` };
    }
    this.hubSeq = 1;
    return { ok: true };
  }

  /** Seals a device → hub frame (the next seq unless given; the counter advances only then). */
  seal(message: Message, options: SendOptions = {}): Uint8Array {
    const key = options.key ?? sealingKey(this.device);
    const seq = options.seq ?? this.deviceSeq++;
    return sealWire({
      fromHub: options.fromHub ?? false,
      deviceId: options.deviceId ?? this.device.idBytes,
      keyId: key.id,
      seq,
      sessionId: options.sessionId ?? this.nh,
      key: key.key,
      message,
      ...(key.share === undefined ? {} : { share: key.share }),
    });
  }

  send(message: Message, options: SendOptions = {}): Uint8Array {
    const frame = this.seal(message, options);
    this.peer.sendFrame(frame);
    return frame;
  }

  /** HELLO (seq 0) under the sealing key, with the body (nonce, active id, future id or 0). Returns the nonce. */
  hello(options: { key?: SealingKey; activeId?: number; futureId?: number } = {}): { nonce: Uint8Array; frame: Uint8Array } {
    const nonce = freshNonce();
    const frame = this.send(
      { type: MessageType.HELLO, deviceNonce: nonce, activeKeyId: options.activeId ?? this.device.active.id, futureKeyId: options.futureId ?? this.device.future?.id ?? 0 },
      { ...(options.key === undefined ? {} : { key: options.key }), seq: 0 },
    );
    this.deviceSeq = 1;
    return { nonce, frame };
  }

  /**
   * The next frame from the hub, opened with the device's keys and checked
   * as a device checks it; an accepted frame advances the expected seq, and
   * one under the future key promotes it (DK5).
   */
  async receive(timeoutMs: number): Promise<Received> {
    const event = await this.peer.next(timeoutMs);
    if (event.kind === 'timeout') return event;
    if (event.kind === 'closed') return event;
    if (event.kind === 'invalid') return { kind: 'refused', frame: new Uint8Array(0), problem: `a length prefix out of range (${event.error.code})`, atMs: event.atMs };
    const frame = event.frame;
    const inspected = inspectFrame(frame);
    if ('error' in inspected) return { kind: 'refused', frame, problem: `header: ${inspected.error.code} ${inspected.error.message}`, atMs: event.atMs };
    const header = inspected.header;
    const problem = this.#headerProblem(header);
    if (problem !== undefined) return { kind: 'refused', frame, problem, atMs: event.atMs };
    if (header.type >= MessageType.NO_KEY && header.type <= MessageType.RECOVER_RESULT) {
      return { kind: 'refused', frame, problem: `${typeName(header.type)} (the hub refused the HELLO)`, atMs: event.atMs };
    }
    const key = keyOf(this.device, header.keyId);
    if (key === undefined) return { kind: 'refused', frame, problem: `sealed under key id ${header.keyId}, which the device does not hold (active ${this.device.active.id}, future ${this.device.future?.id ?? '-'})`, atMs: event.atMs };
    let message: Message;
    try {
      message = openWire(frame, key).message;
    } catch (error) {
      return { kind: 'refused', frame, problem: `does not open under key ${header.keyId}: ${error instanceof LockstepError ? error.code : String(error)}`, atMs: event.atMs };
    }
    this.hubSeq++;
    if (message.type === MessageType.REKEY) this.offers.push({ id: message.newKeyId, key: message.newKey.slice(), atMs: event.atMs });
    if (message.type === MessageType.REKEY_DH) this.offers.push({ id: message.newKeyId, hubShare: message.hubShare.slice(), atMs: event.atMs });
    if (this.device.future !== undefined && header.keyId === this.device.future.id) promote(this.device);
    return { kind: 'opened', frame, header, message, atMs: event.atMs };
  }

  /** Receives until a frame of one of `types` (answering PING with PONG meanwhile); the frames skipped are returned too. */
  async receiveUntil(types: readonly number[], timeoutMs: number): Promise<{ found?: Extract<Received, { kind: 'opened' }>; last: Received; skipped: Received[] }> {
    const deadline = performance.now() + timeoutMs;
    const skipped: Received[] = [];
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) return { last: { kind: 'timeout' }, skipped };
      const received = await this.receive(left);
      if (received.kind === 'opened' && types.includes(received.message.type)) return { found: received, last: received, skipped };
      if (received.kind !== 'opened') return { last: received, skipped };
      if (received.message.type === MessageType.PING) this.send({ type: MessageType.PONG });
      skipped.push(received);
    }
  }

  /** DK1 / DK9: stores the offered key as the future key (deriving it for REKEY_DH); returns the future slot. */
  store(offer: Message): SealingKey {
    if (offer.type === MessageType.REKEY) {
      this.device.future = { id: offer.newKeyId, key: offer.newKey.slice() };
      return this.device.future;
    }
    if (offer.type !== MessageType.REKEY_DH) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'only a REKEY or REKEY_DH is stored');
    const pair = drawEphemeral(nodeKeyAgreement, nodeRandom);
    const key = deriveRekeyKey(nodeKeyAgreement, {
      previousKey: this.device.active.key,
      privateKey: pair.privateKey,
      peerShare: offer.hubShare,
      deviceId: this.device.idBytes,
      newKeyId: offer.newKeyId,
      hubShare: offer.hubShare,
      deviceShare: pair.publicKey,
    });
    pair.privateKey.fill(0);
    this.device.future = { id: offer.newKeyId, key, shares: { hub: offer.hubShare.slice(), device: pair.publicKey.slice() } };
    return { ...this.device.future, share: pair.publicKey };
  }

  /** REKEY_ACK(F) under the future key (with its share for a dh key). */
  ack(): Uint8Array {
    const future = this.device.future;
    if (future === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no future key to acknowledge');
    return this.send({ type: MessageType.REKEY_ACK, newKeyId: future.id });
  }

  /** A REKEY_ACK frame under the future key, not sent (the cut scenarios write part of it). */
  ackFrame(): Uint8Array {
    const future = this.device.future;
    if (future === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no future key to acknowledge');
    return this.seal({ type: MessageType.REKEY_ACK, newKeyId: future.id });
  }

  close(): void {
    this.peer.close();
  }

  destroy(): void {
    this.peer.destroy();
  }

  #headerProblem(header: Header): string | undefined {
    if (!header.fromHub) return 'direction bit clear on a hub → device frame (W-HDR-3)';
    if (header.share !== undefined) return 'a KEY_SHARE on a hub → device frame';
    if (!bytesEqual(header.deviceId, this.device.idBytes)) return `device id ${toHex(header.deviceId)}, not this device's ${this.device.deviceId}`;
    if (!bytesEqual(header.sessionId, this.nh)) return `session id ${toHex(header.sessionId)}, not this connection's Nh ${toHex(this.nh)}`;
    if (header.sequence !== this.hubSeq) return `seq ${header.sequence}, expected exactly ${this.hubSeq}`;
    return undefined;
  }
}

/** A fresh stream id for the kit device's DATA. */
export function freshStreamId(): Uint8Array {
  return freshBytes(STREAM_ID_BYTES);
}

/** Describes what was received, for evidence notes. */
export function describeReceived(received: Received): string {
  switch (received.kind) {
    case 'opened':
      return `${typeName(received.message.type)} under key ${received.header.keyId} seq ${received.header.sequence}`;
    case 'refused':
      return `an unacceptable frame: ${received.problem}`;
    case 'closed':
      return 'the hub closed the connection';
    case 'timeout':
      return 'nothing in time';
  }
}
