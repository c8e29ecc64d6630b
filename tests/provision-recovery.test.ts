// Provisioning with a recovery credential (docs/PROTOCOL.md §12.6,
// docs/KEYSTORE.md §12): s_d from the CSPRNG into the image (wrapped under
// the KWK with --key-wrap), S_d and the hub static id into the hub record,
// and a handshake's first message from the mounted image verifies at the hub.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_FILE, KEY_WRAP_FILE, provisionDevice } from '../tools/provision/provision';
import { memoryFlash } from '../hosts/node/flash-memory';
import { Keystore } from '../modules/keystore/keystore';
import { WrappedKeystore } from '../modules/keystore/wrapped-keystore';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { decodeKeyWrapImage } from '../modules/keystore/key-wrap-image';
import { nodeKeyAgreement as ka } from '../hosts/node/key-agreement';
import { nodePrimitives } from '../hosts/node/crypto';
import { deviceRecoveryInit, hubVerifyRecoverInit } from '../modules/crypto/recovery';
import { encodeHeader } from '../modules/protocol/header';
import { MessageType } from '../modules/protocol/constants';
import { seededRandom } from '../tools/testing/deterministic-random';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-provision-recovery-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const hubPrivate = new Uint8Array(32).fill(0x42);
const hubPublic = ka.x25519PublicKey(hubPrivate);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const contains = (haystack: Uint8Array, needle: Uint8Array) => Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0;

test.each([false, true])('the image holds the credential and the record S_d (key wrap: %s); the hub verifies the device\'s RECOVER_INIT', (keyWrap) => {
  const result = provisionDevice({ outDir: dir, keyWrap, hubStatic: { id: 3, publicKey: hubPublic } });
  expect(result.record.hubStaticId).toBe(3);
  expect(result.record.devicePublicKey).toMatch(/^[0-9a-f]{64}$/);
  const image = new Uint8Array(readFileSync(join(dir, IMAGE_FILE)));
  const flash = memoryFlash({ image });
  const storage = keyWrap
    ? (() => {
        const decoded = decodeKeyWrapImage(new Uint8Array(readFileSync(join(dir, KEY_WRAP_FILE))));
        if (!decoded.ok) throw new Error('no key-wrap image');
        return new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, decoded.kwk));
      })()
    : new Keystore(flash);
  const mounted = storage.mount();
  if (!mounted.provisioned || mounted.credential === undefined) throw new Error('no credential mounted');
  const credential = mounted.credential;
  expect(credential.hubStaticId).toBe(3);
  expect(hex(credential.hubPublicKey)).toBe(hex(hubPublic));
  expect(hex(credential.device.publicKey)).toBe(result.record.devicePublicKey);
  expect(hex(ka.x25519PublicKey(credential.device.privateKey))).toBe(result.record.devicePublicKey);
  expect(contains(image, credential.device.privateKey)).toBe(!keyWrap);
  // The first message of a handshake from this image verifies at a hub holding s_h and the record's S_d.
  const deviceId = new Uint8Array(Buffer.from(result.record.deviceId, 'hex'));
  const hubNonce = new Uint8Array(16).fill(5);
  const header = encodeHeader({ type: MessageType.RECOVER_INIT, fromHub: false, deviceId, keyId: 0, sequence: 1, sessionId: hubNonce });
  const start = deviceRecoveryInit(ka, seededRandom(1), { credential, deviceId, hubNonce, header, activeKeyId: 1, futureKeyId: 0, newestKey: mounted.keys.active.key });
  const verified = hubVerifyRecoverInit(ka, { hubStatic: { privateKey: hubPrivate, publicKey: hubPublic }, devicePublicKey: new Uint8Array(Buffer.from(result.record.devicePublicKey as string, 'hex')), deviceId, hubNonce }, start.frame);
  expect(verified.claim.hubStaticId).toBe(3);
});

test('without a hub static key: no credential, no S_d in the record', () => {
  const result = provisionDevice({ outDir: dir });
  expect(result.record.devicePublicKey).toBeUndefined();
  const mounted = new Keystore(memoryFlash({ image: new Uint8Array(readFileSync(join(dir, IMAGE_FILE))) })).mount();
  expect(mounted.provisioned && mounted.credential).toBeUndefined();
});

test('a low-order hub static key is refused (BAD_KEY_SHARE) and nothing is written', () => {
  expect(() => provisionDevice({ outDir: dir, hubStatic: { id: 1, publicKey: new Uint8Array(32) } })).toThrow(/BAD_KEY_SHARE/);
  expect(() => readFileSync(join(dir, IMAGE_FILE))).toThrow();
});

test('CLI: --hub-static-public/--hub-static-id write the credential; either alone or a bad key is refused', () => {
  const tsx = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
  const cli = join(__dirname, '..', 'tools', 'provision', 'index.ts');
  const run = (...args: string[]) => spawnSync(tsx, [cli, '--out', dir, ...args], { encoding: 'utf8' });
  expect(run('--hub-static-public', hex(hubPublic)).status).toBe(1);
  expect(run('--hub-static-id', '2').stderr).toMatch(/go together/);
  expect(run('--hub-static-public', 'zz', '--hub-static-id', '2').stderr).toMatch(/64 hex digits/);
  const ok = run('--hub-static-public', hex(hubPublic), '--hub-static-id', '2');
  expect(ok.status).toBe(0);
  const record = JSON.parse(ok.stdout);
  expect(record.hubStaticId).toBe(2);
  expect(record.devicePublicKey).toMatch(/^[0-9a-f]{64}$/);
  const plain = run('--force');
  expect(plain.stderr).toMatch(/no recovery credential/);
});
