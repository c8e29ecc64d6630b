// The provisioning command (tools/provision): image + hub record, refusal to
// overwrite, and the CLI end to end.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_FILE, RECORD_FILE, provisionDevice } from '../tools/provision/provision';
import { memoryFlash } from '../hosts/node/flash-memory';
import { Keystore } from '../modules/keystore/keystore';
import { FileFlash } from '../hosts/node/flash-file';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-provision-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function mountImageFile(path: string, size = 16384) {
  const image = new Uint8Array(readFileSync(path));
  expect(image.length).toBe(size);
  return new Keystore(memoryFlash({ image })).mount();
}

test('writes a partition image that mounts to the record it prints', () => {
  const out = join(dir, 'dev');
  const { record, imagePath, recordPath } = provisionDevice({ outDir: out });
  expect(record.deviceId).toMatch(/^[0-9a-f]{16}$/);
  expect(record.key).toMatch(/^[0-9a-f]{128}$/);
  expect(record.keyId).toBe(1);
  expect(JSON.parse(readFileSync(recordPath, 'utf8'))).toEqual(record);
  for (const path of [imagePath, recordPath]) expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(mountImageFile(imagePath)).toEqual({
    provisioned: true,
    deviceId: Uint8Array.from(Buffer.from(record.deviceId, 'hex')),
    keys: { mode: 'dh', active: { id: 1, key: Uint8Array.from(Buffer.from(record.key, 'hex')) } },
  });
  // The same image works through the file-backed flash the simulator uses.
  const flash = new FileFlash(imagePath, { create: false });
  expect(new Keystore(flash).mount()).toMatchObject({ provisioned: true, keys: { active: { id: 1 } } });
  flash.close();
});

test('uses the secure random source for id and key; honours key id and geometry', () => {
  let calls = 0;
  const random = (length: number) => new Uint8Array(length).fill(++calls);
  const { record, imagePath } = provisionDevice({ outDir: dir, random, keyId: 77, size: 8192 });
  expect(record).toEqual({ deviceId: '01'.repeat(8), keyId: 77, key: '02'.repeat(64), mode: 'dh' });
  expect(mountImageFile(imagePath, 8192)).toMatchObject({ provisioned: true, keys: { active: { id: 77 } } });
});

test('refuses to overwrite an image or a record unless forced', () => {
  const first = provisionDevice({ outDir: dir });
  const image = readFileSync(first.imagePath);
  expect(() => provisionDevice({ outDir: dir })).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  expect(readFileSync(first.imagePath).equals(image)).toBe(true);
  rmSync(first.imagePath);
  expect(() => provisionDevice({ outDir: dir })).toThrow(/device\.json exists/);
  expect(existsSync(first.imagePath)).toBe(false);
  chmodSync(first.recordPath, 0o644);
  const second = provisionDevice({ outDir: dir, force: true });
  expect(second.record.key).not.toBe(first.record.key);
  for (const path of [second.imagePath, second.recordPath]) expect(statSync(path).mode & 0o777).toBe(0o600);
});

test('CLI: prints the record, refuses a second run, accepts --force', () => {
  const tsx = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
  const cli = join(__dirname, '..', 'tools', 'provision', 'index.ts');
  const run = (...args: string[]) => spawnSync(tsx, [cli, '--out', dir, ...args], { encoding: 'utf8' });
  const ok = run('--key-id', '5');
  expect(ok.status).toBe(0);
  const printed = JSON.parse(ok.stdout);
  expect(printed).toEqual(JSON.parse(readFileSync(join(dir, RECORD_FILE), 'utf8')));
  expect(printed.keyId).toBe(5);
  const refused = run();
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/refusing to overwrite/);
  expect(JSON.parse(readFileSync(join(dir, RECORD_FILE), 'utf8'))).toEqual(printed);
  expect(run('--force').status).toBe(0);
  expect(existsSync(join(dir, IMAGE_FILE))).toBe(true);
  expect(run('--key-id', '-3').status).not.toBe(0);
});

test('writes the rekey mode it is given into the keystore image (format v2) and the hub record; refuses another', () => {
  for (const mode of ['classic', 'dh'] as const) {
    const out = join(dir, mode);
    const { record, imagePath } = provisionDevice({ outDir: out, mode });
    expect(record.mode).toBe(mode);
    expect(JSON.parse(readFileSync(join(out, RECORD_FILE), 'utf8')).mode).toBe(mode);
    const keystore = new Keystore(memoryFlash({ image: new Uint8Array(readFileSync(imagePath)) }));
    expect(keystore.mount()).toMatchObject({ provisioned: true, keys: { mode, active: { id: 1 } } });
    expect(keystore.formatVersion).toBe(2);
  }
  expect(() => provisionDevice({ outDir: join(dir, 'weak'), mode: 'none' as never })).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  expect(existsSync(join(dir, 'weak'))).toBe(false);
});

test('CLI: --mode dh is written; an unknown mode is refused', () => {
  const tsx = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
  const cli = join(__dirname, '..', 'tools', 'provision', 'index.ts');
  const ok = spawnSync(tsx, [cli, '--out', dir, '--mode', 'dh'], { encoding: 'utf8' });
  expect(ok.status).toBe(0);
  expect(JSON.parse(ok.stdout).mode).toBe('dh');
  expect(mountImageFile(join(dir, IMAGE_FILE))).toMatchObject({ provisioned: true, keys: { mode: 'dh' } });
  const bad = spawnSync(tsx, [cli, '--out', join(dir, 'x'), '--mode', 'weak'], { encoding: 'utf8' });
  expect(bad.status).not.toBe(0);
  expect(bad.stderr).toMatch(/mode/);
});
