/** Codec round-trips (both directions) and framing bounds, with fast-check. */
import fc from 'fast-check';
import { LockstepError } from '../modules/errors';
import { HEADER_BYTES, MAX_APP_PAYLOAD_BYTES, MAX_FRAME_BYTES, MessageType } from '../modules/protocol/constants';
import { FrameReader, withLengthPrefix } from '../modules/protocol/framing';
import { decodeHeader, encodeHeader } from '../modules/protocol/header';
import { decodeMessage, encodeMessage, type Message } from '../modules/protocol/messages';

const u32 = fc.nat({ max: 0xffffffff });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant(MessageType.HELLO), deviceNonce: bytes(16), activeKeyId: u32, futureKeyId: u32 }),
  fc.record({ type: fc.constant(MessageType.WELCOME), deviceNonce: bytes(16), hubKeyId: u32 }),
  fc.record({ type: fc.constant(MessageType.DATA), streamId: bytes(8), messageId: u32, payload: fc.uint8Array({ maxLength: MAX_APP_PAYLOAD_BYTES }) }),
  fc.record({ type: fc.constant(MessageType.DATA_ACK), streamId: bytes(8), messageId: u32 }),
  fc.record({ type: fc.constant(MessageType.REKEY), newKeyId: u32, newKey: bytes(64) }),
  fc.record({ type: fc.constant(MessageType.REKEY_ACK), newKeyId: u32 }),
  fc.record({ type: fc.constant(MessageType.CONFIRM), keyId: u32 }),
  fc.record({ type: fc.constant(MessageType.PING) }),
  fc.record({ type: fc.constant(MessageType.PONG) }),
  fc.record({ type: fc.constant(MessageType.ERROR), code: fc.nat({ max: 0xffff }), detail: u32 }),
) as fc.Arbitrary<Message>;

/** CHALLENGE and the recovery frames (§12.2) are unsealed: they carry no AEAD body (modules/crypto/recovery.ts builds and checks them). */
const UNSEALED_TYPES: number[] = [MessageType.CHALLENGE, MessageType.NO_KEY, MessageType.RECOVER_INIT, MessageType.RECOVER_REPLY, MessageType.RECOVER_FINISH, MessageType.RECOVER_RESULT];
const SEALED_TYPES = Object.values(MessageType).filter((t) => !UNSEALED_TYPES.includes(t));

describe('messages', () => {
  test('decode(encode(m)) = m for every message type', () => {
    fc.assert(
      fc.property(message, (m) => {
        expect(decodeMessage(m.type, encodeMessage(m))).toEqual(m);
      }),
      { numRuns: 2000 },
    );
  });

  test('encode(decode(b)) = b for every body that decodes', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SEALED_TYPES), fc.uint8Array({ maxLength: 100 }), (type, body) => {
        let decoded: Message;
        try {
          decoded = decodeMessage(type, body);
        } catch (error) {
          expect(error).toBeInstanceOf(LockstepError);
          expect((error as LockstepError).code).toBe('BAD_PAYLOAD');
          return;
        }
        expect(Buffer.from(encodeMessage(decoded))).toEqual(Buffer.from(body));
      }),
      { numRuns: 5000 },
    );
  });

  test('the unsealed types (CHALLENGE, the recovery frames of §12.2) have no sealed body: UNKNOWN_TYPE', () => {
    for (const type of UNSEALED_TYPES) expect(() => decodeMessage(type, new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'UNKNOWN_TYPE' }));
  });

  test('a body of the wrong length is BAD_PAYLOAD', () => {
    expect(() => decodeMessage(MessageType.REKEY, new Uint8Array(67))).toThrow(expect.objectContaining({ code: 'BAD_PAYLOAD' }));
    expect(() => decodeMessage(MessageType.PING, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'BAD_PAYLOAD' }));
    expect(() => decodeMessage(MessageType.DATA, new Uint8Array(12 + MAX_APP_PAYLOAD_BYTES + 1))).toThrow(expect.objectContaining({ code: 'BAD_PAYLOAD' }));
  });
});

describe('header', () => {
  const header = fc.record({
    type: fc.constantFrom(...Object.values(MessageType)),
    fromHub: fc.boolean(),
    deviceId: bytes(8),
    keyId: u32,
    sequence: u32,
    sessionId: bytes(16),
  });

  test('decode(encode(h)) = h and encode(decode(b)) = b', () => {
    fc.assert(
      fc.property(header, (h) => {
        const encoded = encodeHeader(h);
        expect(encoded).toHaveLength(HEADER_BYTES);
        const decoded = decodeHeader(encoded);
        expect(decoded).toEqual(h);
        expect(Buffer.from(encodeHeader(decoded))).toEqual(Buffer.from(encoded));
      }),
      { numRuns: 2000 },
    );
  });

  test('version, type and flags are checked', () => {
    const good = encodeHeader({ type: MessageType.PING, fromHub: false, deviceId: new Uint8Array(8), keyId: 1, sequence: 0, sessionId: new Uint8Array(16) });
    const wrongVersion = good.slice();
    wrongVersion[0] = 2;
    expect(() => decodeHeader(wrongVersion)).toThrow(expect.objectContaining({ code: 'BAD_VERSION' }));
    const unknownType = good.slice();
    unknownType[1] = 0x77;
    expect(() => decodeHeader(unknownType)).toThrow(expect.objectContaining({ code: 'UNKNOWN_TYPE' }));
    const flags = good.slice();
    flags[3] = 4;
    expect(() => decodeHeader(flags)).toThrow(expect.objectContaining({ code: 'BAD_HEADER' }));
    // Bit 1 is the KEY_SHARE extension (§11.2): device → hub only, and its 32 bytes must be there.
    const shareFlag = good.slice();
    shareFlag[3] = 2;
    expect(() => decodeHeader(shareFlag)).toThrow(expect.objectContaining({ code: 'FRAME_TOO_SHORT' }));
    const withShare = new Uint8Array(good.length + 32);
    withShare.set(shareFlag);
    withShare.fill(0xab, good.length);
    expect(decodeHeader(withShare).share).toEqual(new Uint8Array(32).fill(0xab));
    const fromHubWithShare = withShare.slice();
    fromHubWithShare[3] = 3;
    expect(() => decodeHeader(fromHubWithShare)).toThrow(expect.objectContaining({ code: 'BAD_HEADER' }));
    expect(() => decodeHeader(good.subarray(0, 35))).toThrow(expect.objectContaining({ code: 'FRAME_TOO_SHORT' }));
  });
});

describe('framing', () => {
  test('any chunking of a stream of frames yields the same frames', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: HEADER_BYTES, maxLength: 200 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.map((f) => withLengthPrefix(f)));
          const reader = new FrameReader();
          const out: Uint8Array[] = [];
          let at = 0;
          let cut = 0;
          while (at < stream.length) {
            const size = cuts[cut++ % cuts.length]!;
            const chunk = Uint8Array.from(stream.subarray(at, at + size));
            at += chunk.length;
            let offset = 0;
            while (offset < chunk.length) {
              const result = reader.feed(chunk, offset);
              offset += result.consumed;
              expect(result.error).toBeUndefined();
              if (result.frame) out.push(result.frame);
            }
          }
          expect(out.map((f) => Buffer.from(f))).toEqual(frames.map((f) => Buffer.from(f)));
          expect(reader.idle).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('an oversized length prefix is refused before allocation and its bytes skipped', () => {
    const reader = new FrameReader();
    const huge = MAX_FRAME_BYTES + 1;
    const junk = new Uint8Array(2 + huge);
    junk[0] = huge >> 8;
    junk[1] = huge & 0xff;
    const next = withLengthPrefix(new Uint8Array(HEADER_BYTES).fill(7));
    const stream = Buffer.concat([junk, next]);
    const first = reader.feed(stream, 0);
    expect(first.error?.code).toBe('FRAME_TOO_LONG');
    expect(first.consumed).toBe(2);
    let offset = first.consumed;
    let frame: Uint8Array | undefined;
    while (offset < stream.length) {
      const result = reader.feed(stream, offset);
      offset += result.consumed;
      frame = result.frame ?? frame;
    }
    expect(Buffer.from(frame!)).toEqual(Buffer.alloc(HEADER_BYTES, 7));
  });

  test('a length below the header size is FRAME_TOO_SHORT', () => {
    const reader = new FrameReader();
    expect(reader.feed(Uint8Array.from([0, 10, ...new Array(10).fill(0)]), 0).error?.code).toBe('FRAME_TOO_SHORT');
  });

  test('the sender refuses to frame more than MAX_FRAME_BYTES', () => {
    expect(() => withLengthPrefix(new Uint8Array(MAX_FRAME_BYTES + 1))).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  });
});
