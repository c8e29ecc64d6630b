// Provisioning with --key-wrap (tools/provision, docs/KEYSTORE.md §10): the
// key-wrap partition image and the keystore image mount, through the
// wrapper, to exactly the key in device.json; the keystore image alone does
// not hold that key; the pair is never left mixed up.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_FILE, KEY_WRAP_FILE, RECORD_FILE, provisionDevice } from '../tools/provision/provision';
import { memoryFlash } from '../hosts/node/flash-memory';
import { nodePrimitives } from '../hosts/node/crypto';
import { Keystore } from '../modules/keystore/keystore';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { KEY_WRAP_PARTITION_BYTES, keyWrapKeyFromImage } from '../modules/keystore/key-wrap-image';
import { WrappedKeystore, openKeystore } from '../modules/keystore/wrapped-keystore';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-provision-kw-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const read = (path: string) => new Uint8Array(readFileSync(path));

test('--key-wrap: keywrap.bin + keystore.bin mount through the wrapper to the key in device.json', () => {
  const { record, imagePath, recordPath, keyWrapPath } = provisionDevice({ outDir: dir, keyWrap: true });
  expect(keyWrapPath).toBe(join(dir, KEY_WRAP_FILE));
  for (const path of [imagePath, recordPath, keyWrapPath!]) expect(statSync(path).mode & 0o777).toBe(0o600);
  const keyWrapImage = read(keyWrapPath!);
  expect(keyWrapImage).toHaveLength(KEY_WRAP_PARTITION_BYTES);
  const stored = JSON.parse(readFileSync(recordPath, 'utf8'));
  expect(stored).toEqual(record);
  const deviceId = Uint8Array.from(Buffer.from(record.deviceId, 'hex'));
  const key = Uint8Array.from(Buffer.from(record.key, 'hex'));

  const wrapper = new KeyWrapper(nodePrimitives, keyWrapKeyFromImage(keyWrapImage));
  expect(new WrappedKeystore(memoryFlash({ image: read(imagePath) }), wrapper).mount()).toEqual({
    provisioned: true,
    deviceId,
    keys: { mode: 'dh', active: { id: 1, key } },
  });
  // What the firmware does: openKeystore picks the wrapped storage from the image.
  const warnings: string[] = [];
  const storage = openKeystore({
    openFlash: () => memoryFlash({ image: read(imagePath) }),
    keyWrapImage,
    primitives: nodePrimitives,
    requireKeyWrap: true,
    warn: (line) => warnings.push(line),
  });
  expect(storage.mount()).toMatchObject({ provisioned: true, keys: { active: { id: 1, key } } });
  expect(warnings).toEqual([]);

  // The keystore image alone: a valid journal whose key is not the hub's key, which appears nowhere in it.
  const plain = new Keystore(memoryFlash({ image: read(imagePath) })).mount();
  expect(plain).toMatchObject({ provisioned: true, keys: { active: { id: 1 } } });
  if (plain.provisioned) expect(plain.keys.active.key).not.toEqual(key);
  expect(Buffer.from(read(imagePath)).indexOf(Buffer.from(key.subarray(0, 16)))).toBe(-1);
});

test('each run makes a new KWK; a forced run without --key-wrap removes the stale keywrap.bin', () => {
  const first = provisionDevice({ outDir: dir, keyWrap: true });
  const firstKwk = keyWrapKeyFromImage(read(first.keyWrapPath!));
  expect(() => provisionDevice({ outDir: dir, keyWrap: true })).toThrow(/exists; refusing to overwrite/);
  rmSync(first.imagePath);
  rmSync(first.recordPath);
  expect(() => provisionDevice({ outDir: dir })).toThrow(/keywrap\.bin exists/);
  const second = provisionDevice({ outDir: dir, keyWrap: true, force: true });
  expect(keyWrapKeyFromImage(read(second.keyWrapPath!))).not.toEqual(firstKwk);
  const plain = provisionDevice({ outDir: dir, force: true });
  expect(plain.keyWrapPath).toBeUndefined();
  expect(existsSync(join(dir, KEY_WRAP_FILE))).toBe(false);
  expect(new Keystore(memoryFlash({ image: read(plain.imagePath) })).mount()).toMatchObject({
    keys: { active: { key: Uint8Array.from(Buffer.from(plain.record.key, 'hex')) } },
  });
});

test('CLI: --key-wrap writes keywrap.bin next to keystore.bin and device.json', () => {
  const tsx = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
  const cli = join(__dirname, '..', 'tools', 'provision', 'index.ts');
  const run = spawnSync(tsx, [cli, '--out', dir, '--key-wrap', '--key-id', '4'], { encoding: 'utf8' });
  expect(run.status).toBe(0);
  expect(run.stderr).toMatch(/keywrap\.bin/);
  const printed = JSON.parse(run.stdout);
  expect(printed.keyId).toBe(4);
  const wrapper = new KeyWrapper(nodePrimitives, keyWrapKeyFromImage(read(join(dir, KEY_WRAP_FILE))));
  expect(new WrappedKeystore(memoryFlash({ image: read(join(dir, IMAGE_FILE)) }), wrapper).mount()).toMatchObject({
    keys: { mode: 'dh', active: { id: 4, key: Uint8Array.from(Buffer.from(printed.key, 'hex')) } },
  });
  expect(JSON.parse(readFileSync(join(dir, RECORD_FILE), 'utf8'))).toEqual(printed);
});

test('hub CLI: provision --out --key-wrap writes the same trio; --key-wrap without --out is refused', () => {
  const tsx = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
  const cli = join(__dirname, '..', 'tools', 'hub', 'cli.ts');
  const db = join(dir, 'hub.db');
  const out = join(dir, 'dev');
  const run = spawnSync(tsx, [cli, 'provision', '--db', db, '--out', out, '--key-wrap'], { encoding: 'utf8' });
  expect(run.status).toBe(0);
  const printed = JSON.parse(run.stdout.trim());
  const wrapper = new KeyWrapper(nodePrimitives, keyWrapKeyFromImage(read(join(out, KEY_WRAP_FILE))));
  expect(new WrappedKeystore(memoryFlash({ image: read(join(out, IMAGE_FILE)) }), wrapper).mount()).toMatchObject({
    keys: { mode: 'dh', active: { id: printed.keyId, key: Uint8Array.from(Buffer.from(printed.key, 'hex')) } },
  });
  const refused = spawnSync(tsx, [cli, 'provision', '--db', join(dir, 'other.db'), '--key-wrap'], { encoding: 'utf8' });
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/--key-wrap needs --out/);
});
