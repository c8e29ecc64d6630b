// The independent hub (examples/independent-hub/, written from docs/PROTOCOL.md alone): its codec and
// AEAD against the machine-readable vectors, and the hub itself against a scripted device written
// from the same document. Everything here is fast (well under a few seconds).
import { createConnection, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  FLAG_FROM_HUB, FLAG_KEY_SHARE, Rejection, T, aeadOpen, aeadSeal, decodeHeader, deriveDhKey, encodeHeader, sealFrame, unsealedFrame, x25519, x25519Public,
} from '../examples/independent-hub/wire';
import { IndependentHub } from '../examples/independent-hub/core';
import { ProvisioningError, checkImport } from '../examples/independent-hub/provisioning';
import { Store, loadOrCreateKek } from '../examples/independent-hub/store';
import { LABEL, STATUS, checkOf, replyKeys, tag3Of, tag4Of, verifyInit } from '../examples/independent-hub/recovery';
import { hkdfSync } from 'node:crypto';

interface Vector { name: string; direction: string; keyId: number; sequence: number; iv: string; message: Record<string, unknown>; share?: string; wire: string }
// Version 1 of the file was a bare array; version 2 wraps it with its inputs (keys included).
const vectorFile = JSON.parse(readFileSync(join(__dirname, '../docs/vectors/protocol-vectors.json'), 'utf8')) as Vector[] | { inputs?: { keys?: Record<string, string> }; vectors: Vector[] };
const vectors = Array.isArray(vectorFile) ? vectorFile : vectorFile.vectors;
const fileKeys = Array.isArray(vectorFile) ? {} : vectorFile.inputs?.keys ?? {};

// Inputs stated in PROTOCOL.md Appendix A (the JSON file does not carry the keys).
const KEYS: Record<number, Buffer> = {
  1: Buffer.from(Array.from({ length: 64 }, (_, i) => i)),
  2: Buffer.from(Array.from({ length: 64 }, (_, i) => 0x40 + i)),
  3: Buffer.from('353c481d45ad1737388dd571ec40174df7caabaca6ded6e457c549f1dd790224749f8fced6d8381493669102252ef699491703e0498a9a94ddf32b6f6aafd2df', 'hex'),
};
const DEVICE_ID = Buffer.from('0011223344556677', 'hex');
test('the keys in the vector file, where it carries them, are those of Appendix A', () => {
  for (const [id, key] of Object.entries(fileKeys)) if (KEYS[Number(id)]) expect(key).toBe(KEYS[Number(id)]!.toString('hex'));
});
const HUB_EPH = Buffer.from('606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f', 'hex');
const DEV_EPH = Buffer.from('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f', 'hex');

function expectedBody(v: Vector): Buffer {
  const m = v.message;
  const u32 = (n: unknown) => { const b = Buffer.alloc(4); b.writeUInt32BE(n as number); return b; };
  const h = (s: unknown) => Buffer.from(s as string, 'hex');
  switch (m.type) {
    case T.HELLO: return Buffer.concat([h(m.deviceNonce), u32(m.activeKeyId), u32(m.futureKeyId)]);
    case T.WELCOME: return Buffer.concat([h(m.deviceNonce), u32(m.hubKeyId)]);
    case T.DATA: return Buffer.concat([h(m.streamId), u32(m.messageId), h(m.payload)]);
    case T.DATA_ACK: return Buffer.concat([h(m.streamId), u32(m.messageId)]);
    case T.REKEY: return Buffer.concat([u32(m.newKeyId), h(m.newKey)]);
    case T.REKEY_ACK: return u32(m.newKeyId);
    case T.CONFIRM: return u32(m.keyId);
    case T.REKEY_DH: return Buffer.concat([u32(m.newKeyId), h(m.hubShare)]);
    case T.ENROL: return Buffer.concat([u32(m.hubStaticId), h(m.hubPublicKey)]);
    case T.ENROL_ACK: return Buffer.concat([u32(m.hubStaticId), h(m.devicePublicKey)]);
    case T.ERROR: { const b = Buffer.alloc(6); b.writeUInt16BE(m.code as number); b.writeUInt32BE(m.detail as number, 2); return b; }
    default: return Buffer.alloc(0);
  }
}

describe('codec and AEAD against docs/vectors/protocol-vectors.json', () => {
  test.each(vectors.map((v) => [v.name, v] as const))('%s: opens, decodes, and re-seals to the same bytes', (_name, v) => {
    const wire = Buffer.from(v.wire, 'hex');
    expect(wire.readUInt16BE(0)).toBe(wire.length - 2);
    const frame = wire.subarray(2);
    const header = decodeHeader(frame);
    expect(header.type).toBe(v.message.type);
    expect(header.keyId).toBe(v.keyId);
    expect(header.seq).toBe(v.sequence);
    const fromHub = v.direction === 'hub→device';
    expect((header.flags & FLAG_FROM_HUB) !== 0).toBe(fromHub);
    if (v.message.type === T.CHALLENGE) {
      expect(unsealedFrame({ ...header, sessionId: Buffer.from(v.message.hubNonce as string, 'hex') }).equals(wire)).toBe(true);
      return;
    }
    const share = v.share ? Buffer.from(v.share, 'hex') : undefined;
    expect((header.flags & FLAG_KEY_SHARE) !== 0).toBe(share !== undefined);
    const aadLength = 36 + (share ? 32 : 0);
    const key = KEYS[v.keyId]!;
    const body = aeadOpen(key, frame.subarray(0, aadLength), frame.subarray(aadLength));
    expect(body.equals(expectedBody(v))).toBe(true);
    expect(sealFrame(header, key, body, share, Buffer.from(v.iv, 'hex')).equals(wire)).toBe(true);
  });

  test('the dh derivation of Appendix A (key id 3 from key id 2)', () => {
    const H = x25519Public(HUB_EPH);
    const D = x25519Public(DEV_EPH);
    expect(H.toString('hex')).toBe('675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f');
    expect(D.toString('hex')).toBe('493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d');
    const z = x25519(HUB_EPH, D)!;
    expect(z.equals(x25519(DEV_EPH, H)!)).toBe(true);
    expect(z.toString('hex')).toBe('fbfb11adeb1d6f71c0571bc1b5dd87519f9a6620b10a5ebc314cbd420c43ba43');
    expect(deriveDhKey(KEYS[2]!, z, DEVICE_ID, 3, H, D).equals(KEYS[3]!)).toBe(true);
    expect(deriveDhKey(KEYS[2]!, z, DEVICE_ID, 4, H, D).equals(KEYS[3]!)).toBe(false); // the id is bound
  });

  test('a low-order share gives no key (W-DH-2)', () => {
    expect(x25519(HUB_EPH, Buffer.alloc(32))).toBeNull();
    const one = Buffer.alloc(32); one[0] = 1;
    expect(x25519(HUB_EPH, one)).toBeNull();
  });

  test('negatives: tag, padding under a valid tag, ciphertext length are all AUTH_FAILED', () => {
    const v = vectors.find((x) => x.name === 'DATA')!;
    const frame = Buffer.from(v.wire, 'hex').subarray(2);
    const aad = frame.subarray(0, 36);
    const sealed = Buffer.from(frame.subarray(36));
    const code = (f: () => unknown) => { try { f(); return 'accepted'; } catch (e) { return (e as Rejection).code; } };
    expect(code(() => aeadOpen(KEYS[1]!, aad, sealed))).toBe('accepted');
    for (const offset of [0, 20, sealed.length - 1]) { // IV, ciphertext, tag
      const bad = Buffer.from(sealed); bad[offset]! ^= 1;
      expect(code(() => aeadOpen(KEYS[1]!, aad, bad))).toBe('AUTH_FAILED');
    }
    const badAad = Buffer.from(aad); badAad[17]! ^= 1; // the header is authenticated
    expect(code(() => aeadOpen(KEYS[1]!, badAad, sealed))).toBe('AUTH_FAILED');
    expect(code(() => aeadOpen(KEYS[2]!, aad, sealed))).toBe('AUTH_FAILED');
    expect(code(() => aeadOpen(KEYS[1]!, aad, Buffer.concat([sealed.subarray(0, 40), sealed.subarray(sealed.length - 32)])))).toBe('AUTH_FAILED');
    // Bad padding under a valid tag: encrypt a block whose last byte is 0 (no PKCS#7), MAC it properly.
    const raw = aeadSeal(KEYS[1]!, aad, Buffer.alloc(15)); // 16 bytes plaintext after padding 0x01
    const { createCipheriv, createHmac } = require('node:crypto') as typeof import('node:crypto');
    const iv = raw.subarray(0, 16);
    const c = createCipheriv('aes-256-cbc', KEYS[1]!.subarray(32), iv).setAutoPadding(false);
    const e = Buffer.concat([c.update(Buffer.alloc(16)), c.final()]);
    const al = Buffer.alloc(8); al.writeBigUInt64BE(288n);
    const t = createHmac('sha512', KEYS[1]!.subarray(0, 32)).update(aad).update(iv).update(e).update(al).digest().subarray(0, 32);
    expect(code(() => aeadOpen(KEYS[1]!, aad, Buffer.concat([iv, e, t])))).toBe('AUTH_FAILED');
  });
});

describe('provisioning records (§14)', () => {
  const good = { deviceId: 'BE96F4786EB95149', keyId: 1, key: 'ab'.repeat(64) };
  test('one object, an array, or one per line; unknown fields ignored; mode defaults to classic', () => {
    expect(checkImport(JSON.stringify(good), new Set())[0]).toMatchObject({ deviceId: 'be96f4786eb95149', mode: 'classic' });
    expect(checkImport(JSON.stringify([good, { ...good, deviceId: '00'.repeat(7) + '01', extra: 1 }]), new Set())).toHaveLength(2);
    expect(checkImport(`${JSON.stringify(good)}\n${JSON.stringify({ ...good, deviceId: '1'.repeat(16), mode: 'dh' })}\n`, new Set())[1]!.mode).toBe('dh');
  });
  test.each([
    ['key id 0', { ...good, keyId: 0 }], ['key id 2^32', { ...good, keyId: 2 ** 32 }], ['short key', { ...good, key: 'ab' }],
    ['bad mode', { ...good, mode: 'x' }], ['credential half', { ...good, hubStaticId: 1 }], ['non-hex id', { ...good, deviceId: 'zz'.repeat(8) }],
  ])('refuses the whole import with %s', (_n, bad) => {
    expect(() => checkImport(JSON.stringify([good, bad]), new Set())).toThrow(ProvisioningError);
  });
});

// ---------- a scripted device, from the spec ----------

class Peer {
  readonly frames: Buffer[] = [];
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  closed = false;
  sendSeq = 0;
  recvSeq = 0;
  nh = Buffer.alloc(16);
  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      while (this.#buffer.length >= 2 && this.#buffer.length >= 2 + this.#buffer.readUInt16BE(0)) {
        const n = this.#buffer.readUInt16BE(0);
        this.frames.push(Buffer.from(this.#buffer.subarray(2, 2 + n)));
        this.#buffer = this.#buffer.subarray(2 + n);
      }
      this.#wake();
    });
    socket.on('close', () => { this.closed = true; this.#wake(); });
    socket.on('error', () => undefined);
  }
  static connect(port: number): Promise<Peer> {
    return new Promise((resolve) => { const s = createConnection(port, '127.0.0.1', () => resolve(new Peer(s))); });
  }
  #wake() { for (const w of this.#waiters.splice(0)) w(); }
  async next(timeoutMs = 2000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.closed) throw new Error('closed');
      if (Date.now() > deadline) throw new Error('timeout');
      await new Promise<void>((r) => { this.#waiters.push(r); setTimeout(r, 50); });
    }
    return this.frames.shift()!;
  }
  async quiet(ms = 150): Promise<void> { await new Promise((r) => setTimeout(r, ms)); expect(this.frames).toHaveLength(0); }
  async untilClosed(ms = 2000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(this.closed).toBe(true);
  }
  send(type: number, keyId: number, key: Buffer, body: Buffer, share?: Buffer, overrides: Partial<{ flags: number; seq: number }> = {}) {
    const flags = overrides.flags ?? (share ? FLAG_KEY_SHARE : 0);
    const seq = overrides.seq ?? this.sendSeq++;
    this.socket.write(sealFrame({ version: 1, type, flags, deviceId: DEVICE_ID, keyId, seq, sessionId: this.nh }, key, body, share));
  }
  open(frame: Buffer, keys: Record<number, Buffer>): { type: number; keyId: number; body: Buffer } {
    const h = decodeHeader(frame);
    expect(h.flags).toBe(FLAG_FROM_HUB);
    expect(h.seq).toBe(this.recvSeq++);
    expect(h.sessionId.equals(this.nh)).toBe(true);
    return { type: h.type, keyId: h.keyId, body: aeadOpen(keys[h.keyId]!, frame.subarray(0, 36), frame.subarray(36)) };
  }
  async handshake(keyId: number, key: Buffer, activeId: number, futureId: number, share?: Buffer): Promise<Buffer> {
    const challenge = await this.next();
    expect(challenge.length).toBe(36);
    const h = decodeHeader(challenge);
    expect([h.type, h.flags, h.keyId, h.seq]).toEqual([T.CHALLENGE, FLAG_FROM_HUB, 0, 0]);
    this.nh = Buffer.from(h.sessionId);
    this.recvSeq = 1;
    const nd = randomBytes(16);
    const body = Buffer.alloc(24); nd.copy(body); body.writeUInt32BE(activeId, 16); body.writeUInt32BE(futureId, 20);
    this.send(T.HELLO, keyId, key, body, share);
    return nd;
  }
}

function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }

describe('the independent hub over TCP, against a scripted device', () => {
  let dir: string;
  const hubs: IndependentHub[] = [];
  const peers: Peer[] = [];
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'independent-hub-')); });
  afterEach(async () => {
    for (const p of peers.splice(0)) p.socket.destroy();
    for (const h of hubs.splice(0)) await h.close();
    rmSync(dir, { recursive: true, force: true });
  });
  async function startHub(mode: 'classic' | 'dh', fresh = true): Promise<{ hub: IndependentHub; port: number }> {
    const statePath = join(dir, 'state.json');
    const hub = new IndependentHub({ statePath, port: 0, log: () => undefined });
    if (fresh) {
      writeFileSync(join(dir, 'records.json'), JSON.stringify({ deviceId: DEVICE_ID.toString('hex'), keyId: 1, key: KEYS[1]!.toString('hex'), mode }));
      hub.importFile(join(dir, 'records.json'));
    }
    hubs.push(hub);
    return { hub, port: await hub.listen() };
  }
  const kek = () => loadOrCreateKek(join(dir, 'state.json.kek'));
  async function connect(port: number): Promise<Peer> { const p = await Peer.connect(port); peers.push(p); return p; }

  test('classic: handshake, DATA, PING, rotation with exactly one CONFIRM, rejections, restart', async () => {
    const { hub, port } = await startHub('classic');
    const dev = await connect(port);
    const nd = await dev.handshake(1, KEYS[1]!, 1, 0);
    const welcome = dev.open(await dev.next(), KEYS);
    expect(welcome.type).toBe(T.WELCOME);
    expect(welcome.body.equals(Buffer.concat([nd, u32(1)]))).toBe(true);

    const stream = randomBytes(8);
    dev.send(T.DATA, 1, KEYS[1]!, Buffer.concat([stream, u32(1), Buffer.from('hi')]));
    let f = dev.open(await dev.next(), KEYS);
    expect([f.type, f.body.equals(Buffer.concat([stream, u32(1)]))]).toEqual([T.DATA_ACK, true]);
    dev.send(T.DATA, 1, KEYS[1]!, Buffer.concat([stream, u32(1), Buffer.from('hi')])); // duplicate: acked again
    f = dev.open(await dev.next(), KEYS);
    expect(f.body.readUInt32BE(8)).toBe(1);

    // Rejected frames: a reflected frame, a bad tag, a replayed seq — none answered, none advance seq.
    dev.send(T.PING, 1, KEYS[1]!, Buffer.alloc(0), undefined, { flags: FLAG_FROM_HUB, seq: dev.sendSeq });
    dev.send(T.PING, 1, KEYS[2]!, Buffer.alloc(0), undefined, { seq: dev.sendSeq });
    dev.send(T.PING, 1, KEYS[1]!, Buffer.alloc(0), undefined, { seq: 0 });
    dev.send(T.REKEY, 1, KEYS[1]!, Buffer.alloc(68), undefined, { seq: dev.sendSeq }); // hub-only type
    await dev.quiet();
    dev.send(T.PING, 1, KEYS[1]!, Buffer.alloc(0));
    expect(dev.open(await dev.next(), KEYS).type).toBe(T.PONG);

    // Rotation: REKEY(2, k) under 1; REKEY_ACK(2) under 2 → one CONFIRM(2) under 2.
    expect(hub.rotate(DEVICE_ID.toString('hex'))).toBe('started');
    expect(new Store(join(dir, 'state.json'), kek()).device(DEVICE_ID.toString('hex'))!.pending!.id).toBe(2); // durable first
    f = dev.open(await dev.next(), KEYS);
    expect([f.type, f.keyId, f.body.readUInt32BE(0)]).toEqual([T.REKEY, 1, 2]);
    const k2 = Buffer.from(f.body.subarray(4));
    const keys = { ...KEYS, 2: k2 };
    expect(hub.rotate(DEVICE_ID.toString('hex'))).toBe('queued'); // HK2
    dev.send(T.REKEY_ACK, 2, k2, u32(2));
    f = dev.open(await dev.next(), keys);
    expect([f.type, f.keyId, f.body.readUInt32BE(0)]).toEqual([T.CONFIRM, 2, 2]);
    // The queued rotation starts once 2 is confirmed: REKEY(3) under 2.
    f = dev.open(await dev.next(), keys);
    expect([f.type, f.keyId, f.body.readUInt32BE(0)]).toEqual([T.REKEY, 2, 3]);
    await dev.quiet(); // exactly one CONFIRM, no second one
    dev.send(T.REKEY_ACK, 2, k2, u32(2)); // a repeat: HK6 answers CONFIRM(2) under 2
    f = dev.open(await dev.next(), keys);
    expect([f.type, f.keyId]).toEqual([T.CONFIRM, 2]);

    // 8 rejections tolerated, the 9th closes.
    for (let i = 0; i < 8; i++) dev.send(T.PING, 2, k2, Buffer.alloc(0), undefined, { seq: 0 });
    await dev.quiet();
    dev.send(T.PING, 2, k2, Buffer.alloc(0));
    expect(dev.open(await dev.next(), keys).type).toBe(T.PONG); // the count was reset
    for (let i = 0; i < 9; i++) dev.send(T.PING, 2, k2, Buffer.alloc(0), undefined, { seq: 0 });
    await dev.untilClosed();

    // A restarted hub (new process state from the file) takes a HELLO under 2 and re-offers 3.
    await hub.close();
    const again = new IndependentHub({ statePath: join(dir, 'state.json'), port: 0, log: () => undefined });
    hubs.push(again);
    const port2 = await again.listen();
    const dev2 = await connect(port2);
    await dev2.handshake(2, k2, 2, 0);
    expect(dev2.open(await dev2.next(), keys).type).toBe(T.WELCOME);
    f = dev2.open(await dev2.next(), keys);
    expect([f.type, f.body.readUInt32BE(0)]).toEqual([T.REKEY, 3]);
  });

  test('before the HELLO, the first rejected frame closes (HS3); an unknown device is closed', async () => {
    const { port } = await startHub('classic');
    const dev = await connect(port);
    await dev.handshake(1, KEYS[2]!, 1, 0); // wrong key: AUTH_FAILED
    await dev.untilClosed();
    const other = await connect(port);
    await other.next();
    other.socket.write(Buffer.from([0x05, 0x01])); // length 1281: out of range
    await other.untilClosed();
  });

  test('dh: REKEY_DH, REKEY_ACK with a share derives and promotes; a restart keeps h (HK8)', async () => {
    const { hub, port } = await startHub('dh');
    const id = DEVICE_ID.toString('hex');
    const dev = await connect(port);
    await dev.handshake(1, KEYS[1]!, 1, 0);
    expect(dev.open(await dev.next(), KEYS).type).toBe(T.WELCOME);
    hub.rotate(id);
    const f = dev.open(await dev.next(), KEYS);
    expect([f.type, f.body.readUInt32BE(0)]).toEqual([T.REKEY_DH, 2]);
    const H = Buffer.from(f.body.subarray(4));
    const d = randomBytes(32);
    const D = x25519Public(d);
    const k2 = deriveDhKey(KEYS[1]!, x25519(d, H)!, DEVICE_ID, 2, H, D);
    // A frame under the dh pending id without a share is rejected (BAD_HEADER): not answered.
    dev.send(T.REKEY_ACK, 2, k2, u32(2), undefined, { seq: dev.sendSeq });
    await dev.quiet();
    // Crash before the REKEY_ACK arrives: the restarted hub still derives the key from HELLO's share.
    dev.socket.destroy();
    await hub.close();
    const again = new IndependentHub({ statePath: join(dir, 'state.json'), port: 0, log: () => undefined });
    hubs.push(again);
    const dev2 = await connect(await again.listen());
    await dev2.handshake(2, k2, 1, 2, D);
    const w = dev2.open(await dev2.next(), { 2: k2 });
    expect([w.type, w.keyId, w.body.readUInt32BE(16)]).toEqual([T.WELCOME, 2, 2]);
    const state = new Store(join(dir, 'state.json'), kek()).device(id)!;
    expect(state.active.id).toBe(2);
    expect(state.pending).toBeUndefined(); // h erased in the promoting commit
    expect(state.mode).toBe('dh');
    // At rest the state file holds no key in clear (it is sealed under the KEK) …
    const file = readFileSync(join(dir, 'state.json'), 'utf8');
    expect(file).not.toContain(k2.toString('hex'));
    expect(file).not.toContain(KEYS[1]!.toString('hex'));
    // … and it does not open under another KEK.
    expect(() => new Store(join(dir, 'state.json'), randomBytes(32))).toThrow(/does not open under this KEK/);
  });

  test('HK11: a classic offer refused with REKEY_MODE_MISMATCH becomes a REKEY_DH of the same id', async () => {
    const { hub, port } = await startHub('classic');
    const dev = await connect(port);
    await dev.handshake(1, KEYS[1]!, 1, 0);
    dev.open(await dev.next(), KEYS);
    hub.rotate(DEVICE_ID.toString('hex'));
    expect(dev.open(await dev.next(), KEYS).type).toBe(T.REKEY);
    const error = Buffer.alloc(6); error.writeUInt16BE(8); error.writeUInt32BE(2, 2);
    dev.send(T.ERROR, 1, KEYS[1]!, error);
    const f = dev.open(await dev.next(), KEYS);
    expect([f.type, f.body.readUInt32BE(0)]).toEqual([T.REKEY_DH, 2]);
    const record = hub.store.device(DEVICE_ID.toString('hex'))!;
    expect([record.mode, record.pending!.kind, record.pending!.id]).toEqual(['dh', 'dh', 2]);
    // Any other ERROR changes nothing and is not answered.
    error.writeUInt16BE(3); dev.send(T.ERROR, 1, KEYS[1]!, error);
    await dev.quiet();
  });

  test('a failed durable write offers nothing and closes the session (HK7)', async () => {
    const { hub, port } = await startHub('classic');
    const dev = await connect(port);
    await dev.handshake(1, KEYS[1]!, 1, 0);
    dev.open(await dev.next(), KEYS);
    hub.store.failNextWrite = true;
    expect(hub.rotate(DEVICE_ID.toString('hex'))).toBe('failed');
    await dev.untilClosed();
    expect(dev.frames).toHaveLength(0); // no REKEY of a key that is not durable
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.pending).toBeUndefined();
  });
});

// ---------- recovery (§12) ----------

const rv = JSON.parse(readFileSync(join(__dirname, '../docs/vectors/recovery-vectors.json'), 'utf8')) as {
  inputs: Record<string, string | number>; intermediate: Record<string, string>; frames: { name: string; wire: string }[]; recoveredKey: string;
};
const rb = (k: string) => Buffer.from(rv.inputs[k] as string, 'hex');
const rframe = (name: string) => Buffer.from(rv.frames.find((f) => f.name === name)!.wire, 'hex').subarray(2);
const hk = (salt: Buffer, ikm: Buffer, info: Buffer, n: number) => Buffer.from(hkdfSync('sha512', ikm, salt, info, n));
const lab = (b: number) => Buffer.concat([LABEL, Buffer.from([b])]);

describe('recovery derivations against docs/vectors/recovery-vectors.json', () => {
  test('tag1, tag2, K_N, tag3 and tag4 of the whole handshake', () => {
    const init = verifyInit(rframe('RECOVER_INIT'), rb('hubStaticPrivate'), rb('hubStaticPublic'), rb('deviceStaticPublic'), rb('deviceId'), rb('hubNonce'))!;
    expect(init).not.toBeNull();
    expect(init.k1.toString('hex')).toBe(rv.intermediate.k1);
    expect(checkOf(rb('deviceNewestKey'), rb('hubNonce'), rb('deviceEphemeralPublic')).toString('hex')).toBe(rv.intermediate.check);
    const reply = rframe('RECOVER_REPLY');
    const keys = replyKeys(init, rb('hubEphemeralPrivate'), rb('deviceEphemeralPublic'), rb('deviceStaticPublic'), reply.subarray(0, 72))!;
    expect(keys.m.toString('hex')).toBe(rv.intermediate.macKey);
    expect(keys.kN.toString('hex')).toBe(rv.recoveredKey);
    expect(keys.tag2.equals(reply.subarray(72))).toBe(true);
    const finish = rframe('RECOVER_FINISH');
    expect(tag3Of(keys.m, finish.subarray(0, 36)).equals(finish.subarray(36))).toBe(true);
    const result = rframe('RECOVER_RESULT');
    expect(tag4Of(keys.m, result.subarray(0, 42)).equals(result.subarray(42))).toBe(true);
    // A broken tag1 (one bit) or another hub static key is refused.
    const bad = Buffer.from(rframe('RECOVER_INIT')); bad[127]! ^= 1;
    expect(verifyInit(bad, rb('hubStaticPrivate'), rb('hubStaticPublic'), rb('deviceStaticPublic'), rb('deviceId'), rb('hubNonce'))).toBeNull();
    expect(verifyInit(rframe('RECOVER_INIT'), randomBytes(32), rb('hubStaticPublic'), rb('deviceStaticPublic'), rb('deviceId'), rb('hubNonce'))).toBeNull();
  });
});

describe('recovery over TCP (HS9–HS12, HK9, then HK5)', () => {
  let dir: string;
  const hubs: IndependentHub[] = [];
  const peers: Peer[] = [];
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'independent-hub-rec-')); });
  afterEach(async () => {
    for (const p of peers.splice(0)) p.socket.destroy();
    for (const h of hubs.splice(0)) await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const sH = rb('hubStaticPrivate'); const SH = rb('hubStaticPublic');
  const sD = rb('deviceStaticPrivate'); const SD = rb('deviceStaticPublic');

  async function recover(dev: Peer, newestId: number, newestKey: Buffer, activeId: number, futureId: number, helloKey = newestKey) {
    await dev.handshake(newestId, helloKey, activeId, futureId);
    const noKey = await dev.next();
    const nk = decodeHeader(noKey);
    expect([noKey.length, nk.type, nk.seq, nk.keyId, nk.flags]).toEqual([36, T.NO_KEY, 1, 0, FLAG_FROM_HUB]);
    expect(nk.deviceId.equals(DEVICE_ID)).toBe(true);
    const ed = randomBytes(32); const ED = x25519Public(ed);
    const hdr1 = encodeHeader({ version: 1, type: T.RECOVER_INIT, flags: 0, deviceId: DEVICE_ID, keyId: 0, seq: 1, sessionId: dev.nh });
    const check = hk(newestKey, Buffer.concat([dev.nh, ED]), lab(0x10), 16);
    const m1 = Buffer.concat([hdr1, ED, u32(1), u32(activeId), u32(futureId), check]);
    const k1 = hk(dev.nh, Buffer.concat([x25519(ed, SH)!, x25519(sD, SH)!]), Buffer.concat([lab(0x01), DEVICE_ID, SD, SH]), 64);
    const tag1 = hk(k1, m1, lab(0x11), 32);
    dev.socket.write(unsealedFrame(decodeHeader(hdr1), Buffer.concat([m1.subarray(36), tag1])));
    const reply = await dev.next();
    expect(reply.length).toBe(104);
    const EH = reply.subarray(36, 68); const n = reply.readUInt32BE(68);
    const out = hk(k1, Buffer.concat([x25519(ed, EH)!, x25519(sD, EH)!]), Buffer.concat([lab(0x02), m1, tag1, reply.subarray(0, 72)]), 128);
    const m = out.subarray(0, 64); const kN = Buffer.from(out.subarray(64));
    expect(hk(m, reply.subarray(0, 72), lab(0x12), 32).equals(reply.subarray(72))).toBe(true);
    const hdr3 = encodeHeader({ version: 1, type: T.RECOVER_FINISH, flags: 0, deviceId: DEVICE_ID, keyId: 0, seq: 2, sessionId: dev.nh });
    dev.socket.write(unsealedFrame(decodeHeader(hdr3), hk(m, hdr3, lab(0x13), 32)));
    const result = await dev.next();
    expect(result.length).toBe(74);
    expect(hk(m, result.subarray(0, 42), lab(0x14), 32).equals(result.subarray(42))).toBe(true);
    await dev.untilClosed();
    return { n, kN, status: result.readUInt16BE(36), retryAfter: result.readUInt32BE(38) };
  }

  test('a device holding only a key the hub lost recovers, then promotes N; IN_SYNC for a key the hub holds', async () => {
    const statePath = join(dir, 'state.json');
    writeFileSync(join(dir, 'r.json'), JSON.stringify({ deviceId: DEVICE_ID.toString('hex'), keyId: 4, key: KEYS[1]!.toString('hex'), mode: 'classic', devicePublicKey: SD.toString('hex'), hubStaticId: 1 }));
    const hub = new IndependentHub({ statePath, port: 0, log: () => undefined, staticKeys: new Map([[1, sH]]) });
    hubs.push(hub);
    hub.importFile(join(dir, 'r.json'));
    const port = await hub.listen();
    // The device holds key 6 (the hub was restored to key 4): HELLO fails, recovery gives N = 7.
    const dev = await Peer.connect(port); peers.push(dev);
    const r = await recover(dev, 6, KEYS[2]!, 6, 0);
    expect([r.status, r.n, r.retryAfter]).toEqual([STATUS.ACCEPTED, 7, 0]);
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.pending!.id).toBe(7); // HK9, durable
    // A HELLO under A = 4 while the recovered N = 7 ≠ A + 1 is pending gets NO_KEY, not a session (unusablePending).
    const old = await Peer.connect(port); peers.push(old);
    await old.handshake(4, KEYS[1]!, 4, 0);
    expect(decodeHeader(await old.next()).type).toBe(T.NO_KEY);
    old.socket.destroy();
    // The device reconnects with a HELLO under N: HK5 promotes it and the WELCOME comes under N.
    const dev2 = await Peer.connect(port); peers.push(dev2);
    await dev2.handshake(7, r.kN, 6, 7);
    const w = dev2.open(await dev2.next(), { 7: r.kN });
    expect([w.type, w.keyId]).toEqual([T.WELCOME, 7]);
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.active.id).toBe(7);
    // A HELLO corrupted in transit (AUTH_FAILED) by a device sealing with the hub's active key:
    // the recovery's check matches A, so the answer is IN_SYNC and nothing changes (R4).
    const dev3 = await Peer.connect(port); peers.push(dev3);
    const again = await recover(dev3, 7, r.kN, 7, 0, KEYS[2]!);
    expect(again.status).toBe(STATUS.IN_SYNC);
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.active.id).toBe(7);
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.pending).toBeUndefined();
  });

  test('HK9 offers N in a live session under A; its REKEY_ID_NOT_NEXT closes that session (HK12)', async () => {
    const statePath = join(dir, 'state.json');
    writeFileSync(join(dir, 'r.json'), JSON.stringify({ deviceId: DEVICE_ID.toString('hex'), keyId: 4, key: KEYS[1]!.toString('hex'), devicePublicKey: SD.toString('hex'), hubStaticId: 1 }));
    const hub = new IndependentHub({ statePath, port: 0, log: () => undefined, staticKeys: new Map([[1, sH]]) });
    hubs.push(hub);
    hub.importFile(join(dir, 'r.json'));
    const port = await hub.listen();
    const live = await Peer.connect(port); peers.push(live);
    await live.handshake(4, KEYS[1]!, 4, 0);
    expect(live.open(await live.next(), { 4: KEYS[1]! }).type).toBe(T.WELCOME);
    // Another image of the device (rolled forward to key 6) recovers: N = 7 ≠ A + 1.
    const other = await Peer.connect(port); peers.push(other);
    expect((await recover(other, 6, KEYS[2]!, 6, 0)).status).toBe(STATUS.ACCEPTED);
    const offer = live.open(await live.next(), { 4: KEYS[1]! });
    expect([offer.type, offer.body.readUInt32BE(0)]).toEqual([T.REKEY, 7]);
    const error = Buffer.alloc(6); error.writeUInt16BE(7); error.writeUInt32BE(7, 2);
    live.send(T.ERROR, 4, KEYS[1]!, error);
    await live.untilClosed();
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.pending!.id).toBe(7); // kept until a recovery replaces it
  });

  test('without a static key the hub closes a failing HELLO (HS3); with policy off the answer is REFUSED', async () => {
    const statePath = join(dir, 'state.json');
    writeFileSync(join(dir, 'r.json'), JSON.stringify({ deviceId: DEVICE_ID.toString('hex'), keyId: 4, key: KEYS[1]!.toString('hex'), devicePublicKey: SD.toString('hex'), hubStaticId: 1 }));
    const plain = new IndependentHub({ statePath, port: 0, log: () => undefined });
    hubs.push(plain);
    plain.importFile(join(dir, 'r.json'));
    const dev = await Peer.connect(await plain.listen()); peers.push(dev);
    await dev.handshake(6, KEYS[2]!, 6, 0);
    await dev.untilClosed();
    expect(dev.frames).toHaveLength(0);
    await plain.close(); hubs.pop();
    const hub = new IndependentHub({ statePath, port: 0, log: () => undefined, staticKeys: new Map([[1, sH]]), recoveryPolicy: 'off' });
    hubs.push(hub);
    const dev2 = await Peer.connect(await hub.listen()); peers.push(dev2);
    const r = await recover(dev2, 6, KEYS[2]!, 6, 0);
    expect(r.status).toBe(STATUS.REFUSED);
    expect(hub.store.device(DEVICE_ID.toString('hex'))!.pending).toBeUndefined();
  });
});
