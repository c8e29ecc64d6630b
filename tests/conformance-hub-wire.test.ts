/**
 * The kit's frame-level helpers (tools/conformance/wire/): the peer's
 * receive queue is bounded (a flooding peer is dropped, not buffered), a
 * length prefix out of range is reported and skipped without allocating, the
 * recording is bounded (oldest dropped), the connection budget never lets
 * more sockets open than allowed, and sealed frames open only under their key.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { MessageType } from '../modules/protocol/constants';
import { withLengthPrefix } from '../modules/protocol/framing';
import { ConnectionBudget, WirePeer } from '../tools/conformance/wire/peer';
import { FrameRecording } from '../tools/conformance/wire/recording';
import { challengeWire, freshBytes, openWire, readChallenge, sealWire } from '../tools/conformance/wire/sealer';

async function serve(onSocket: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.address() as AddressInfo).port };
}

test('a peer that floods frames is dropped at the queue bound; the recording keeps only the newest', async () => {
  const challenge = withLengthPrefix(challengeWire(freshBytes(16)));
  const flood = new Uint8Array(challenge.length * 100);
  for (let i = 0; i < 100; i++) flood.set(challenge, i * challenge.length);
  const { server, port } = await serve((socket) => {
    socket.on('error', () => {});
    socket.write(flood);
  });
  try {
    const recording = new FrameRecording(5);
    const peer = await WirePeer.connect({ host: '127.0.0.1', port }, { maxQueuedFrames: 10, recording });
    const closed = await peer.waitClosed(2_000).catch(() => ({ closed: peer.closed, frames: [] }));
    expect(peer.overflowed).toBe(true);
    expect(closed.closed).toBe(true);
    expect(recording.frames.length).toBe(5);
    expect(recording.dropped).toBeGreaterThan(0);
    expect(recording.evidence(3).every((e) => e.direction === 'received' && e.hex.length === challenge.length * 2)).toBe(true);
  } finally {
    server.close();
  }
});

test('an out-of-range length prefix is reported and its bytes skipped; the next frame still arrives', async () => {
  const nonce = freshBytes(16);
  const bad = new Uint8Array(2 + 2000);
  bad[0] = 2000 >> 8;
  bad[1] = 2000 & 0xff;
  const { server, port } = await serve((socket) => {
    socket.on('error', () => {});
    socket.write(bad);
    socket.write(withLengthPrefix(challengeWire(nonce)));
  });
  try {
    const peer = await WirePeer.connect({ host: '127.0.0.1', port });
    const first = await peer.next(2_000);
    expect(first.kind === 'invalid' && first.error.code).toBe('FRAME_TOO_LONG');
    const second = await peer.next(2_000);
    expect(second.kind).toBe('frame');
    if (second.kind === 'frame') expect(readChallenge(second.frame)).toEqual(nonce);
    peer.destroy();
  } finally {
    server.close();
  }
});

test('the connection budget never has more than its limit open, and times out a wait', async () => {
  const { server, port } = await serve((socket) => socket.on('error', () => {}));
  try {
    const budget = new ConnectionBudget(2);
    const a = await WirePeer.connect({ host: '127.0.0.1', port }, { budget });
    const b = await WirePeer.connect({ host: '127.0.0.1', port }, { budget });
    expect(budget.open).toBe(2);
    await expect(budget.acquire(100)).rejects.toThrow(/no free connection/);
    const third = WirePeer.connect({ host: '127.0.0.1', port }, { budget });
    a.destroy();
    const c = await third;
    expect(budget.open).toBe(2);
    expect(budget.opened).toBe(3);
    b.destroy();
    c.destroy();
  } finally {
    server.close();
  }
});

test('a sealed frame opens under its key, fails AUTH_FAILED under another, and keeps its header fields', () => {
  const key = freshBytes(64);
  const frame = sealWire({ fromHub: true, deviceId: freshBytes(8), keyId: 7, seq: 3, sessionId: freshBytes(16), key, message: { type: MessageType.PING } });
  const opened = openWire(frame, key);
  expect(opened.header).toMatchObject({ fromHub: true, keyId: 7, sequence: 3, type: MessageType.PING });
  expect(() => openWire(frame, freshBytes(64))).toThrow(expect.objectContaining({ code: 'AUTH_FAILED' }));
});
