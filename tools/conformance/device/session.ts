/**
 * One session of the kit, as the hub, with the device under test: the
 * CHALLENGE, the hub's sequence numbers, sealing hub frames (with overrides
 * for hostile ones: another seq, key, session, direction bit, a corrupted
 * tag), and opening the device's frames with every check of
 * docs/PROTOCOL.md §4 — each device frame is audited (length, header,
 * direction, session, seq, key, tag, body, share) and every finding goes to
 * the observer as a pass or a fail of the frame-level checks.
 */
import { randomBytes } from 'node:crypto';
import { nodeAead } from '../../../hosts/node/crypto';
import { bytesEqual, toHex } from '../../../modules/bytes';
import { asLockstepError } from '../../../modules/errors';
import { HEADER_BYTES, IV_BYTES, KEY_SHARE_BYTES, MAX_FRAME_BYTES, MessageType, TAG_BYTES } from '../../../modules/protocol/constants';
import { encodeChallenge, openFrame, sealFrame } from '../../../modules/protocol/frame';
import type { Header } from '../../../modules/protocol/header';
import type { Message } from '../../../modules/protocol/messages';
import type { FrameEvidence } from '../report';
import type { Observer } from './observer';
import type { KeyBook } from './key-book';
import type { FrameLink, ReceivedFrame } from './link';

/** Unsealed device → hub types (§12.2): checked by the recovery scenario itself. */
const UNSEALED_FROM_DEVICE: ReadonlySet<number> = new Set([MessageType.RECOVER_INIT, MessageType.RECOVER_FINISH]);
const DEVICE_SENDS: ReadonlySet<number> = new Set([
  MessageType.HELLO,
  MessageType.DATA,
  MessageType.DATA_ACK,
  MessageType.REKEY_ACK,
  MessageType.PING,
  MessageType.PONG,
  MessageType.ERROR,
  MessageType.ENROL_ACK,
  MessageType.RECOVER_INIT,
  MessageType.RECOVER_FINISH,
]);

export type DeviceFrame =
  | { readonly kind: 'sealed'; readonly received: ReceivedFrame; readonly header: Header; readonly message: Message; readonly keyId: number }
  | { readonly kind: 'unsealed'; readonly received: ReceivedFrame; readonly header: Header }
  | { readonly kind: 'bad'; readonly received: ReceivedFrame; readonly reason: string }
  | { readonly kind: 'closed' }
  | { readonly kind: 'timeout' };

export interface SealOverrides {
  readonly sequence?: number;
  readonly sessionId?: Uint8Array;
  readonly deviceId?: Uint8Array;
  readonly fromHub?: boolean;
  /** Seal with this key but name `keyId` in the header (a wrong key). */
  readonly sealKey?: Uint8Array;
  /** Flip a bit of the tag. */
  readonly corruptTag?: boolean;
  /** Do not advance the hub's seq (a frame the device must reject). */
  readonly keepSequence?: boolean;
}

export class KitSession {
  readonly link: FrameLink;
  readonly book: KeyBook;
  readonly hubNonce: Uint8Array = new Uint8Array(randomBytes(16));
  readonly #observer: Observer;
  readonly scenario: string;
  /** The hub's next seq (CHALLENGE was 0). */
  hubSeq = 1;
  /** The device's next expected seq. */
  deviceSeq = 0;
  deviceNonce: Uint8Array | undefined;

  readonly #ivs: Set<string> | undefined;

  constructor(link: FrameLink, book: KeyBook, observer: Observer, scenario: string, ivs?: Set<string>) {
    this.#ivs = ivs;
    this.link = link;
    this.book = book;
    this.#observer = observer;
    this.scenario = scenario;
  }

  sendChallenge(): void {
    this.link.send(encodeChallenge(this.hubNonce));
  }

  /** Seals `message` under key `keyId` as a hub frame; returns the frame (without prefix) after sending it. */
  send(message: Message, keyId: number, overrides: SealOverrides = {}): Uint8Array {
    const frame = this.seal(message, keyId, overrides);
    this.link.send(frame);
    return frame;
  }

  seal(message: Message, keyId: number, overrides: SealOverrides = {}): Uint8Array {
    const key = overrides.sealKey ?? this.book.key(keyId);
    if (key === undefined) throw new Error(`the kit holds no key ${keyId}`);
    const sequence = overrides.sequence ?? this.hubSeq;
    if (overrides.sequence === undefined && overrides.keepSequence !== true) this.hubSeq++;
    const frame = sealFrame({
      aead: nodeAead,
      key,
      iv: new Uint8Array(randomBytes(IV_BYTES)),
      header: {
        fromHub: overrides.fromHub ?? true,
        deviceId: overrides.deviceId ?? this.book.deviceId,
        keyId,
        sequence,
        sessionId: overrides.sessionId ?? this.hubNonce,
      },
      message,
    });
    if (overrides.corruptTag === true) frame[frame.length - 1] = (frame[frame.length - 1] as number) ^ 0x01;
    return frame;
  }

  /** The raw bytes of an unsealed hub frame (recovery) continue the hub's seq. */
  nextHubSeq(): number {
    return this.hubSeq++;
  }

  /** The next device frame, opened and audited. */
  async receive(timeoutMs: number): Promise<DeviceFrame> {
    const received = await this.link.next(timeoutMs);
    if (received === undefined) return this.link.closed ? { kind: 'closed' } : { kind: 'timeout' };
    return this.#audit(received);
  }

  /** The next sealed device frame, skipping keep-alive PINGs (answered with PONG when `answerPings`). */
  async receiveSkippingPings(timeoutMs: number, answerPings = true): Promise<DeviceFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = await this.receive(Math.max(0, deadline - Date.now()));
      if (frame.kind === 'sealed' && frame.message.type === MessageType.PING) {
        if (answerPings) this.send({ type: MessageType.PONG }, this.book.hubActive);
        continue;
      }
      return frame;
    }
  }

  evidence(last = 8): FrameEvidence[] {
    return this.link.evidence(last);
  }

  #check(check: Parameters<Observer['check']>[0], ok: boolean, note: string): boolean {
    this.#observer.check(check, ok, { scenario: this.scenario, note, frames: ok ? [] : this.link.evidence(4) });
    return ok;
  }

  #audit(received: ReceivedFrame): DeviceFrame {
    if (received.lengthError !== undefined) {
      this.#check('frame.length', false, `a length prefix out of 36..${MAX_FRAME_BYTES}: ${received.lengthError.message}`);
      return { kind: 'bad', received, reason: received.lengthError.code };
    }
    const header = received.header;
    if (header === undefined) {
      this.#check('frame.header', false, `the header does not decode: ${received.headerError?.code} ${received.headerError?.message}`);
      return { kind: 'bad', received, reason: received.headerError?.code ?? 'BAD_HEADER' };
    }
    this.#check('frame.header', true, '');
    const typeOk = DEVICE_SENDS.has(header.type);
    if (!this.#check('frame.direction', !header.fromHub && typeOk, `type 0x${header.type.toString(16)} with the hub direction bit ${header.fromHub ? 'set' : 'clear'}`)) {
      return { kind: 'bad', received, reason: 'BAD_HEADER' };
    }
    this.#check('frame.session', bytesEqual(header.deviceId, this.book.deviceId) && bytesEqual(header.sessionId, this.hubNonce), `device id ${toHex(header.deviceId)}, session ${toHex(header.sessionId)} (Nh ${toHex(this.hubNonce)})`);
    const seqOk = header.sequence === this.deviceSeq;
    this.#check('frame.seq', seqOk, `seq ${header.sequence}, expected ${this.deviceSeq}`);
    this.deviceSeq = header.sequence + 1;
    if (UNSEALED_FROM_DEVICE.has(header.type)) {
      this.#check('frame.share', header.share === undefined, 'a recovery frame with the KEY_SHARE flag');
      return { kind: 'unsealed', received, header };
    }
    const aad = HEADER_BYTES + (header.share === undefined ? 0 : KEY_SHARE_BYTES);
    const body = received.frame.length - aad - IV_BYTES - TAG_BYTES;
    this.#check('frame.length', body >= 16 && body % 16 === 0, `a sealed frame of ${received.frame.length} bytes (${aad} + 16 + 16k + 32 expected)`);
    const key = this.book.key(header.keyId, header.share);
    if (key === undefined) {
      this.#check('frame.key', false, `sealed under key id ${header.keyId}, which the kit never shared with the device${header.share === undefined ? '' : ' (or a share it cannot derive from)'}`);
      return { kind: 'bad', received, reason: 'UNKNOWN_KEY_ID' };
    }
    this.#check('frame.key', true, '');
    let message: Message;
    try {
      message = openFrame(nodeAead, key, received.frame, header);
    } catch (error) {
      const typed = asLockstepError(error);
      this.#check(typed.code === 'BAD_PAYLOAD' ? 'frame.body' : 'frame.aead', false, `key id ${header.keyId}: ${typed.code} ${typed.message}`);
      return { kind: 'bad', received, reason: typed.code };
    }
    this.#check('frame.aead', true, '');
    if (this.#ivs !== undefined) {
      const iv = toHex(received.frame.subarray(aad, aad + IV_BYTES));
      this.#check('frame.iv', !this.#ivs.has(iv), `IV ${iv} was used before`);
      if (this.#ivs.size < 100_000) this.#ivs.add(iv);
    }
    this.#check('frame.body', true, '');
    if (header.share !== undefined) this.book.settleDh(header.keyId, header.share);
    return { kind: 'sealed', received, header, message, keyId: header.keyId };
  }
}

export function describeFrame(frame: DeviceFrame): string {
  switch (frame.kind) {
    case 'sealed':
      return `${typeName(frame.message.type)} under key ${frame.keyId}${frame.header.share === undefined ? '' : ' with a share'} (seq ${frame.header.sequence})`;
    case 'unsealed':
      return `${typeName(frame.header.type)} (unsealed, seq ${frame.header.sequence})`;
    case 'bad':
      return `a frame that fails the kit's checks (${frame.reason})`;
    case 'closed':
      return 'the connection closed';
    case 'timeout':
      return 'nothing';
  }
}

export function typeName(type: number): string {
  for (const [name, value] of Object.entries(MessageType)) if (value === type) return name;
  return `type 0x${type.toString(16)}`;
}
