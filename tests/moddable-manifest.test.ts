/**
 * Checks of the Moddable build description that CI can run without the SDK:
 * - manifest.json and the local manifests it includes are valid JSON, and
 *   every local file or folder they name exists;
 * - for each target (esp32, lin, mac, win), every module main.ts imports,
 *   transitively, is mapped under the name XS will look up: XS resolves a
 *   relative specifier against the importing module's *name*
 *   (xs/platforms/mc/xsHosts.c fxFindModule), so names must mirror the repo
 *   paths, and the mapped file must be the one tsc resolved (or, for a
 *   declaration-only module such as platform.d.ts, a file beside it);
 * - every SDK module imported is provided by an SDK manifest the target includes;
 * - the config section parses; the ESP32 partition table is well-formed and
 *   has the 16 KiB keystore partition the docs tell users to flash;
 * - the native module's esp32 section gives backend_esp32.c every IDF include
 *   folder and configuration define it needs under Moddable's esp32 flags
 *   (issue 11; `npm run esp32-check` is the proof against a real IDF tree).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { checkFirmwareConfig, LOCKSTEP_CONFIG_KEYS, parseFirmwareConfig } from '../hosts/moddable/config';
import { resolveManifests } from '../tools/esp32-check/manifest';

const ROOT = resolve(__dirname, '..');
const TARGETS = ['esp32', 'lin', 'mac', 'win'] as const;
type Target = (typeof TARGETS)[number];

type ManifestJson = {
  include?: string | string[];
  modules?: Record<string, string | string[]>;
  platforms?: Record<string, ManifestJson & { error?: string; build?: Record<string, string> }>;
  config?: Record<string, unknown>;
  build?: Record<string, string>;
};

/** SDK modules the firmware may import, and the SDK manifests that provide them (any one suffices). */
const SDK_MODULES: Record<string, { readonly manifests: readonly string[]; readonly targets: readonly Target[] }> = {
  'mc/config': { manifests: ['*'], targets: TARGETS },
  time: { manifests: ['*'], targets: TARGETS },
  timer: { manifests: ['*'], targets: TARGETS },
  instrumentation: { manifests: ['$(MODULES)/base/instrumentation/manifest.json'], targets: TARGETS },
  socket: { manifests: ['$(MODULES)/network/socket/manifest.json', '$(MODULES)/crypt/tls.json'], targets: TARGETS },
  securesocket: { manifests: ['$(MODULES)/crypt/tls.json'], targets: TARGETS },
  crypt: { manifests: ['$(MODULES)/crypt/digest/manifest.json', '$(MODULES)/crypt/tls.json'], targets: TARGETS },
  hmac: { manifests: ['$(MODULES)/crypt/tls.json'], targets: TARGETS },
  file: { manifests: ['$(MODULES)/files/file/manifest.json'], targets: ['esp32', 'lin', 'mac', 'win'] },
  'text/encoder': { manifests: ['$(MODULES)/data/text/encoder/manifest.json'], targets: ['lin', 'mac', 'win'] },
  flash: { manifests: ['$(MODULES)/files/flash/manifest.json'], targets: ['esp32'] },
  wifi: { manifests: ['$(MODULES)/network/wifi/manifest.json'], targets: ['esp32', 'lin', 'mac', 'win'] },
  'pins/analog': { manifests: ['$(MODULES)/pins/analog/manifest.json'], targets: ['esp32'] },
};

/** The includable library, and the applications built on it (the reference app and the examples). */
const LIBRARY_MANIFEST = 'hosts/moddable/lockstep/manifest.json';
const EXAMPLES = readdirSync(join(ROOT, 'examples')).filter((name) => existsSync(join(ROOT, 'examples', name, 'manifest.json')));
const APP_MANIFESTS = ['manifest.json', ...EXAMPLES.map((name) => `examples/${name}/manifest.json`)];

const SOURCE_EXTENSIONS = ['.ts', '.js', '.c'];

function readJson(path: string): ManifestJson {
  return JSON.parse(readFileSync(path, 'utf8')) as ManifestJson;
}

function asArray(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** mcmanifest.js matchPlatform: the longest matching key, `x/*` prefixes, then "...". */
function matchPlatform(platforms: ManifestJson['platforms'], target: string): (ManifestJson & { error?: string }) | undefined {
  if (platforms === undefined) return undefined;
  const parts = target.split('/');
  while (parts.length > 0) {
    const partial = parts.join('/');
    for (const key of Object.keys(platforms)) {
      if (key.endsWith('/*') ? partial.startsWith(key.slice(0, -1)) : partial === key) return platforms[key];
    }
    parts.pop();
  }
  return platforms['...'];
}

interface Build {
  /** Module name → source path without extension (absolute). */
  readonly modules: Map<string, string>;
  readonly sdkManifests: Set<string>;
  readonly manifests: string[];
  readonly errors: string[];
}

function collect(manifestPath: string, target: Target, build: Build): void {
  build.manifests.push(manifestPath);
  const manifest = readJson(manifestPath);
  const dir = dirname(manifestPath);
  const apply = (part: ManifestJson & { error?: string }): void => {
    if (part.error !== undefined) build.errors.push(part.error);
    for (const include of asArray(part.include)) {
      if (include.startsWith('$(')) build.sdkManifests.add(include);
      else collect(resolve(dir, include), target, build);
    }
    const excluded = new Set(asArray(part.modules?.['~']).map((source) => resolve(dir, source)));
    for (const [name, sources] of Object.entries(part.modules ?? {})) {
      if (name === '~') continue; // mcmanifest.js: files listed under "~" are left out of the build
      for (const source of asArray(sources)) {
        if (source.startsWith('$(')) continue;
        const path = resolve(dir, source);
        const star = name.indexOf('*');
        if (star >= 0) {
          const folder = path.endsWith('/*') ? path.slice(0, -2) : dirname(path);
          const single = existingFile(path, SOURCE_EXTENSIONS);
          const files = path.endsWith('/*') ? readdirSync(folder) : single === undefined ? [] : [posix.basename(single)];
          for (const file of files) {
            const extension = SOURCE_EXTENSIONS.find((ext) => file.endsWith(ext) && !file.endsWith('.d.ts'));
            if (extension === undefined || excluded.has(join(folder, file.slice(0, -extension.length)))) continue;
            build.modules.set(name.slice(0, star) + file.slice(0, -extension.length), join(folder, file.slice(0, -extension.length)));
          }
        } else {
          build.modules.set(name, path);
        }
      }
    }
  };
  apply(manifest);
  const platform = matchPlatform(manifest.platforms, target);
  if (platform !== undefined) apply(platform);
}

function buildFor(target: Target, manifest = 'manifest.json'): Build {
  const build: Build = { modules: new Map(), sdkManifests: new Set(), manifests: [], errors: [] };
  collect(join(ROOT, manifest), target, build);
  return build;
}

/** Specifiers a module loads at run time (`import type` / `export type` are erased; `import { type X }` is not, under verbatimModuleSyntax). */
function runtimeImports(source: string): string[] {
  const specifiers: string[] = [];
  const statement = /^\s*(import|export)\s+(type\s+)?[^;'"]*?\s+from\s+['"]([^'"]+)['"]/gm;
  for (let match = statement.exec(source); match !== null; match = statement.exec(source)) {
    if (match[2] === undefined) specifiers.push(match[3]!);
  }
  const bare = /^\s*import\s+['"]([^'"]+)['"]/gm;
  for (let match = bare.exec(source); match !== null; match = bare.exec(source)) specifiers.push(match[1]!);
  return specifiers;
}

function existingFile(base: string, extensions: readonly string[]): string | undefined {
  for (const extension of extensions) if (existsSync(base + extension)) return base + extension;
  return undefined;
}

/** npm packages the firmware may import (hosts/moddable/manifest_noble.json maps them, simulator only). */
const NPM_PACKAGES = ['@noble/curves/', '@noble/hashes/'];

/** XS drops a trailing ".js" from a specifier before looking the module up (xs/platforms/mc/xsHosts.c). */
function withoutJs(specifier: string): string {
  return specifier.endsWith('.js') ? specifier.slice(0, -3) : specifier;
}

/** Walks the import graph from `root` (main, or the library's `lockstep`) as XS would on `target`; returns the problems found. */
function checkImportGraph(target: Target, manifest = 'manifest.json', root = 'main'): { problems: string[]; visited: string[] } {
  const build = buildFor(target, manifest);
  const problems: string[] = [];
  const visited = new Set<string>();
  const queue: string[] = [root];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (visited.has(name)) continue;
    visited.add(name);
    const base = build.modules.get(name);
    if (base === undefined) {
      problems.push(`${name}: not mapped`);
      continue;
    }
    const file = existingFile(base, ['.ts', '.js']);
    if (file === undefined) {
      problems.push(`${name}: ${relative(ROOT, base)}.ts/.js missing`);
      continue;
    }
    for (const specifier of runtimeImports(readFileSync(file, 'utf8'))) {
      if (NPM_PACKAGES.some((prefix) => specifier.startsWith(prefix))) {
        // An npm package's module, mapped by its specifier less ".js" (what xsHosts.c looks up).
        const importedName = withoutJs(specifier);
        const mapped = build.modules.get(importedName);
        const packageFile = join(ROOT, 'node_modules', specifier);
        if (mapped === undefined) problems.push(`${name}: "${specifier}" → module "${importedName}" is not mapped on ${target}`);
        else if (mapped !== withoutJs(packageFile)) problems.push(`${name}: "${specifier}" is mapped to ${relative(ROOT, mapped)}, not ${relative(ROOT, packageFile)}`);
        queue.push(importedName);
        continue;
      }
      if (!specifier.startsWith('.') && build.modules.has(specifier)) {
        // A module of ours imported by name (the library's `lockstep`, and its re-export of the implementation by full name).
        const mappedBase = build.modules.get(specifier)!;
        if (existingFile(mappedBase, ['.ts', '.js']) === undefined) problems.push(`${name}: "${specifier}" is mapped to ${relative(ROOT, mappedBase)}, which does not exist`);
        if (existingFile(mappedBase, ['.ts', '.d.ts']) === undefined) problems.push(`${name}: "${specifier}" has no types for tsc (${relative(ROOT, mappedBase)}.ts or .d.ts)`);
        queue.push(specifier);
        continue;
      }
      if (!specifier.startsWith('.')) {
        const sdk = SDK_MODULES[specifier];
        if (sdk === undefined) problems.push(`${name}: imports unknown SDK module "${specifier}"`);
        else if (!sdk.targets.includes(target)) problems.push(`${name}: "${specifier}" is not available on ${target}`);
        else if (!sdk.manifests.includes('*') && !sdk.manifests.some((m) => build.sdkManifests.has(m))) {
          problems.push(`${name}: "${specifier}" needs one of ${sdk.manifests.join(', ')} on ${target}`);
        }
        continue;
      }
      const importedName = withoutJs(posix.normalize(posix.join(posix.dirname(name), specifier)));
      const tscFile = existingFile(resolve(dirname(file), withoutJs(specifier)), ['.ts', '.d.ts', '.js']);
      const mapped = build.modules.get(importedName);
      if (tscFile === undefined) problems.push(`${name}: "${specifier}" does not resolve to a file`);
      else if (mapped === undefined) problems.push(`${name}: "${specifier}" → module "${importedName}" is not mapped on ${target}`);
      else if (tscFile.endsWith('.d.ts') ? dirname(mapped) !== dirname(tscFile) : mapped !== tscFile.replace(/\.(ts|js)$/, '')) {
        problems.push(`${name}: "${specifier}" → "${importedName}" is mapped to ${relative(ROOT, mapped)}, but tsc resolves ${relative(ROOT, tscFile)}`);
      }
      queue.push(importedName);
    }
  }
  return { problems, visited: [...visited] };
}

describe('manifest.json', () => {
  test('it and every local manifest it includes are valid JSON, and every local path they name exists', () => {
    const missing: string[] = [];
    const seen = new Set<string>();
    const visit = (path: string): void => {
      if (seen.has(path)) return;
      seen.add(path);
      if (!existsSync(path)) {
        missing.push(relative(ROOT, path));
        return;
      }
      const manifest = readJson(path);
      const dir = dirname(path);
      const parts: Array<ManifestJson & { build?: Record<string, string> }> = [manifest, ...Object.values(manifest.platforms ?? {})];
      for (const part of parts) {
        for (const include of asArray(part.include)) if (!include.startsWith('$(')) visit(resolve(dir, include));
        for (const sources of Object.values(part.modules ?? {})) {
          for (const source of asArray(sources)) {
            if (source.startsWith('$(')) continue;
            const full = resolve(dir, source);
            const ok = full.endsWith('/*') ? existsSync(full.slice(0, -2)) && statSync(full.slice(0, -2)).isDirectory() : existingFile(full, SOURCE_EXTENSIONS) !== undefined;
            if (!ok) missing.push(`${relative(ROOT, path)}: ${source}`);
          }
        }
        for (const value of Object.values(part.build ?? {})) {
          if (value.startsWith('./') && !existsSync(resolve(dir, value))) missing.push(`${relative(ROOT, path)}: ${value}`);
        }
      }
    };
    for (const manifest of [...APP_MANIFESTS, LIBRARY_MANIFEST]) visit(join(ROOT, manifest));
    expect(missing).toEqual([]);
    expect(seen.size).toBeGreaterThanOrEqual(4 + EXAMPLES.length); // the apps, the library, manifest_sim.json, native/manifest.json
  });

  test.each(TARGETS)('on %s, every module main.ts loads (transitively) is mapped under its path name', (target) => {
    const build = buildFor(target);
    expect(build.errors).toEqual([]);
    const { problems, visited } = checkImportGraph(target);
    expect(problems).toEqual([]);
    expect(visited).toEqual(expect.arrayContaining(['main', 'modules/device/device', 'modules/device/loop', 'modules/keystore/keystore', 'hosts/moddable/socket-transport', 'hosts/moddable/platform']));
    expect([...build.modules.keys()].filter((name) => name.startsWith('tools/'))).toEqual([]); // test-only code is not in modules/
    const platformSource = relative(ROOT, build.modules.get('hosts/moddable/platform')!);
    expect(platformSource).toBe(target === 'esp32' ? 'hosts/moddable/platform-esp32' : 'hosts/moddable/platform-sim');
  });

  test('an unsupported target is an error', () => {
    for (const manifest of [...APP_MANIFESTS, LIBRARY_MANIFEST]) {
      const build: Build = { modules: new Map(), sdkManifests: new Set(), manifests: [], errors: [] };
      collect(join(ROOT, manifest), 'pico' as Target, build);
      expect(build.errors).toEqual([expect.stringContaining('esp32')]);
    }
  });

  test('the import scanner sees runtime imports and skips type-only ones', () => {
    expect(runtimeImports("import type { A } from './a';\nimport { type B, C } from './b';\nexport type { D } from './d';\nexport { E } from './e';\nimport './f';\nimport G from 'g';")).toEqual([
      './b',
      './e',
      'g',
      './f',
    ]);
  });

  test("the firmware's config keys stay clear of the SDK's (the TLS stack reads config.tls as an object)", () => {
    const config = readJson(join(ROOT, 'manifest.json')).config ?? {};
    const sdkKeys = ['tls', 'file', 'sntp', 'format', 'rotation', 'led', 'startupSound', 'touch', 'screen'];
    expect(Object.keys(config).filter((key) => sdkKeys.includes(key))).toEqual([]);
    const source = readFileSync(join(ROOT, 'hosts/moddable/config.ts'), 'utf8');
    for (const key of sdkKeys) expect(source).not.toContain(`raw, '${key}'`);
  });

  test("the library's config section parses, every key in it is one the library reads, and the reference app's is its own", () => {
    const config = readJson(join(ROOT, LIBRARY_MANIFEST)).config ?? {};
    expect(checkFirmwareConfig(config)).toMatchObject({ ok: true });
    for (const key of Object.keys(config)) expect(LOCKSTEP_CONFIG_KEYS).toContain(key);
    expect(Object.keys(readJson(join(ROOT, 'manifest.json')).config ?? {})).toEqual(['telemetryMs']);
  });
});

describe('the Lockstep library (hosts/moddable/lockstep/manifest.json) and the applications on it', () => {
  const LIBRARY_CORE = ['lockstep', 'hosts/moddable/lockstep/sdk', 'hosts/moddable/lockstep/channel', 'modules/device/loop', 'modules/device/device', 'modules/keystore/keystore', 'hosts/moddable/socket-transport', 'hosts/moddable/hub-socket', 'hosts/moddable/platform', 'hosts/moddable/config'];

  test.each(['esp32', 'lin'] as const)('on %s, the library alone resolves every module it names, from `lockstep` down, and brings nothing of the reference app', (target) => {
    const build = buildFor(target, LIBRARY_MANIFEST);
    expect(build.errors).toEqual([]);
    const { problems, visited } = checkImportGraph(target, LIBRARY_MANIFEST, 'lockstep');
    expect(problems).toEqual([]);
    expect(visited).toEqual(expect.arrayContaining(LIBRARY_CORE));
    if (target === 'esp32') expect(visited).toEqual(expect.arrayContaining(['hosts/moddable/native/native-aead', 'hosts/moddable/native/lockstep_aead', 'hosts/moddable/partition-flash']));
    else expect(visited).toEqual(expect.arrayContaining(['hosts/moddable/crypt-shim', 'hosts/moddable/file-flash', 'hosts/moddable/sim-random']));
    // Every module the library maps is one `lockstep` loads: the manifest names nothing else.
    const unused = [...build.modules.entries()].filter(([name, base]) => !visited.includes(name) && !name.startsWith('modules/') && existingFile(base, ['.ts', '.js']) !== undefined).map(([name]) => name);
    expect(unused).toEqual([]);
    expect([...build.modules.keys()].filter((name) => name === 'main' || name.includes('app-messages') || name.includes('heap'))).toEqual([]);
  });

  test('the walk fails on a library that forgets a module (a broken variant of the manifest)', () => {
    const library = readJson(join(ROOT, LIBRARY_MANIFEST));
    delete library.modules!['hosts/moddable/hub-socket'];
    // Beside the real one, so its relative paths still point into the repository.
    const path = join(ROOT, 'hosts/moddable/lockstep', `manifest-broken-${process.pid}.json`);
    writeFileSync(path, JSON.stringify(library));
    try {
      const { problems } = checkImportGraph('lin', relative(ROOT, path), 'lockstep');
      expect(problems).toEqual(expect.arrayContaining([expect.stringContaining('"../hub-socket" → module "hosts/moddable/hub-socket" is not mapped')]));
    } finally {
      rmSync(path, { force: true });
    }
  });

  test.each(APP_MANIFESTS.flatMap((manifest) => (['esp32', 'lin'] as const).map((target) => [manifest, target] as const)))('%s on %s: one include of the library, and every module main loads is mapped', (manifest, target) => {
    const app = readJson(join(ROOT, manifest));
    const library = relative(ROOT, resolve(ROOT, dirname(manifest), asArray(app.include).find((include) => include.endsWith('lockstep/manifest.json')) ?? 'none'));
    expect(library).toBe(LIBRARY_MANIFEST);
    const build = buildFor(target, manifest);
    expect(build.errors).toEqual([]);
    const { problems, visited } = checkImportGraph(target, manifest);
    expect(problems).toEqual([]);
    expect(visited).toEqual(expect.arrayContaining(['main', ...LIBRARY_CORE]));
    // Applications reach Lockstep through the API only.
    const main = readFileSync(join(ROOT, dirname(manifest), 'main.ts'), 'utf8');
    expect(runtimeImports(main).filter((specifier) => /modules\/|hosts\/moddable\/(lockstep|config|platform|socket)/.test(specifier))).toEqual([]);
    expect(runtimeImports(main)).toContain('lockstep');
  });

  test.each(APP_MANIFESTS)("%s: its config merged over the library's parses, with the app's own keys clear of the library's prefixes", (manifest) => {
    const merged = { ...(readJson(join(ROOT, LIBRARY_MANIFEST)).config ?? {}), ...(readJson(join(ROOT, manifest)).config ?? {}) };
    expect(checkFirmwareConfig(merged)).toMatchObject({ ok: true });
  });

  test('no manifest brings CA certificates: the pinned hubCa is the only trust anchor', () => {
    for (const manifest of [...APP_MANIFESTS, LIBRARY_MANIFEST, 'hosts/moddable/manifest_sim.json']) {
      expect(readFileSync(join(ROOT, manifest), 'utf8')).not.toMatch(/resources|\.der/);
    }
  });
});

describe('ESP32 partition table', () => {
  const csvPath = join(ROOT, 'hosts/moddable/partitions.csv');
  const rows = readFileSync(csvPath, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'))
    .map((line) => {
      const [name, type, subtype, offset, size, flags] = line.split(',').map((field) => field.trim());
      return { name: name!, type: type!, subtype: subtype!, offset: Number(offset), size: Number(size), flags: flags ?? '' };
    });

  test("is wired into the library's esp32 build (?=: a PARTITIONS_FILE in the shell environment replaces it)", () => {
    const esp32 = readJson(join(ROOT, LIBRARY_MANIFEST)).platforms?.['esp32'];
    const value = esp32?.build?.['PARTITIONS_FILE ?='];
    expect(value).toBe('./../partitions.csv');
    expect(resolve(ROOT, dirname(LIBRARY_MANIFEST), value!)).toBe(csvPath);
  });

  test('has a 16 KiB keystore data partition, sector aligned, unencrypted (docs/FIRMWARE.md)', () => {
    const keystore = rows.find((row) => row.name === 'keystore');
    expect(keystore).toMatchObject({ type: 'data', size: 0x4000, flags: '' });
    expect(keystore!.offset % 0x1000).toBe(0);
    const docs = readFileSync(join(ROOT, 'docs/FIRMWARE.md'), 'utf8');
    expect(docs).toContain(`write_flash 0x${keystore!.offset.toString(16).toUpperCase()}`);
  });

  test('has a 4 KiB key-wrap partition flagged encrypted, named by the config, flashed where the docs say', () => {
    const keyWrap = rows.find((row) => row.name === parseFirmwareConfig({}).keyWrapPartition);
    expect(keyWrap).toMatchObject({ type: 'data', size: 0x1000, flags: 'encrypted' });
    expect(keyWrap!.offset % 0x1000).toBe(0);
    const docs = readFileSync(join(ROOT, 'docs/FIRMWARE.md'), 'utf8');
    expect(docs).toContain(`0x${keyWrap!.offset.toString(16).toUpperCase()} provisioned/dev1/keywrap.bin`);
    // Only the key-wrap partition and ESP-IDF's NVS key partition are flagged:
    // the journal needs NOR semantics; NVS encryption (on by default with flash
    // encryption) needs an encrypted nvs_keys partition for nvs_flash_init().
    expect(rows.filter((row) => row.flags !== '').map((row) => row.name)).toEqual([keyWrap!.name, 'nvs_key']);
    expect(rows.find((row) => row.name === 'nvs_key')).toMatchObject({ type: 'data', subtype: 'nvs_keys', size: 0x1000 });
  });

  test('partitions are aligned, ordered, non-overlapping and fit a 4 MB flash', () => {
    let end = 0x9000; // after the bootloader and the partition table at 0x8000
    for (const row of rows) {
      expect(Number.isInteger(row.offset) && Number.isInteger(row.size)).toBe(true);
      expect(row.offset % (row.type === 'app' ? 0x10000 : 0x1000)).toBe(0);
      if (row.type === 'app') expect(row.size % 0x10000).toBe(0); // gen_esp32part.py --secure (Secure Boot)
      expect(row.offset).toBeGreaterThanOrEqual(end);
      end = row.offset + row.size;
    }
    expect(end).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(rows.map((row) => row.name)).toEqual(['nvs', 'phy_init', 'factory', 'keystore', 'lskeywrap', 'nvs_key']);
  });
});

describe('native module on the esp32 targets (issue 11)', () => {
  /**
   * The folders backend_esp32.c's IDF headers live in that Moddable 8.2.3's
   * make.esp32.mk does not give module C files (its INC_DIRS has only
   * components/mbedtls/mbedtls/include of the mbedtls component). Measured by
   * `npm run esp32-check` against ESP-IDF v6.0: dropping any one is a fatal error.
   */
  const REQUIRED_IDF_FOLDERS = [
    'components/mbedtls/port/include/', // aes/esp_aes.h, mbedtls/esp_config.h
    'components/esp_hal_security/include/', // hal/aes_types.h (ESP_AES_ENCRYPT/DECRYPT)
    'components/mbedtls/mbedtls/tf-psa-crypto/include/', // psa/crypto.h
    'components/mbedtls/mbedtls/tf-psa-crypto/drivers/builtin/include/', // mbedtls/private_access.h and the builtin driver contexts, read by psa/crypto.h
    'components/mbedtls/port/psa_driver/include/', // IDF's PSA driver contexts inside psa_mac_operation_t
  ];
  /** What IDF v6.0 compiles its mbedTLS/TF-PSA-Crypto targets with (components/mbedtls/CMakeLists.txt); esp32-check compares with the real file. */
  const IDF_CONFIG_DEFINES = { MBEDTLS_CONFIG_FILE: 'mbedtls/esp_config.h', TF_PSA_CRYPTO_USER_CONFIG_FILE: 'mbedtls/esp_config.h' };
  const PLATFORMS = ['esp32', 'esp32/esp32s3', 'esp32/esp32c3', 'esp32/esp32c6'];
  let idf: string;
  beforeAll(() => {
    // mcconfig requires each trailing-slash folder to exist; an empty stand-in IDF tree is enough here.
    idf = mkdtempSync(join(tmpdir(), 'manifest-idf-'));
    for (const folder of REQUIRED_IDF_FOLDERS) mkdirSync(join(idf, folder), { recursive: true });
  });
  afterAll(() => rmSync(idf, { recursive: true, force: true }));

  test.each(PLATFORMS)('on %s, mcconfig would compile backend_esp32.c and lockstep_aead.c with every required IDF folder', (platform) => {
    const build = resolveManifests({ manifest: join(ROOT, 'manifest.json'), platform, idfPath: idf });
    expect(build.errors).toEqual([]);
    expect(build.cFiles.map((file) => relative(ROOT, file)).sort()).toEqual(['hosts/moddable/native/backend_esp32.c', 'hosts/moddable/native/lockstep_aead.c']);
    expect(build.cFolders).toEqual(REQUIRED_IDF_FOLDERS.map((folder) => join(idf, folder)));
    expect(build.idfComponents).toEqual(['mbedtls', 'esp_hw_support']);
  });

  test.each(APP_MANIFESTS)('%s: the esp32 build compiles exactly the native module C files, with every required IDF folder', (manifest) => {
    const build = resolveManifests({ manifest: join(ROOT, manifest), platform: 'esp32', idfPath: idf });
    expect(build.errors).toEqual([]);
    expect(build.cFiles.map((file) => relative(ROOT, file)).sort()).toEqual(['hosts/moddable/native/backend_esp32.c', 'hosts/moddable/native/lockstep_aead.c']);
    expect(build.cFolders).toEqual(REQUIRED_IDF_FOLDERS.map((folder) => join(idf, folder)));
  });

  test('the resolution fails when a required folder is missing from the IDF tree, as mcconfig does', () => {
    const partial = mkdtempSync(join(tmpdir(), 'manifest-idf-partial-'));
    try {
      for (const folder of REQUIRED_IDF_FOLDERS.slice(1)) mkdirSync(join(partial, folder), { recursive: true });
      const build = resolveManifests({ manifest: join(ROOT, 'manifest.json'), platform: 'esp32', idfPath: partial });
      expect(build.errors).toEqual([expect.stringContaining(REQUIRED_IDF_FOLDERS[0]!)]);
    } finally {
      rmSync(partial, { recursive: true, force: true });
    }
  });

  test("backend_esp32.c sets IDF's configuration defines before any include and refuses a build that set them already", () => {
    const source = readFileSync(join(ROOT, 'hosts/moddable/native/backend_esp32.c'), 'utf8');
    const firstInclude = source.indexOf('#include');
    for (const [name, value] of Object.entries(IDF_CONFIG_DEFINES)) {
      const at = source.indexOf(`#define ${name} "${value}"`);
      expect(at).toBeGreaterThan(0);
      expect(at).toBeLessThan(firstInclude);
      const guard = /#if (defined\(\w+\)[\s|\\]*)+\n#error[^\n]*\n#endif/.exec(source.slice(0, at));
      expect(guard?.[0]).toContain(`defined(${name})`);
    }
    for (const guard of ['!SOC_AES_SUPPORTED', '!defined(ESP_CONFIG_H)', 'ESP_IDF_VERSION_MAJOR != 6', 'TF_PSA_CRYPTO_VERSION_MAJOR != 1', 'sizeof(psa_driver_mac_context_t) >= sizeof(esp_hmac_transparent_operation_t)']) {
      expect(source).toContain(guard);
    }
  });

  test.each(['backend_esp32.c', 'lockstep_aead.c'])('%s makes implicit function declarations errors (Moddable passes -Wno-implicit-function-declaration)', (file) => {
    const source = readFileSync(join(ROOT, 'hosts/moddable/native', file), 'utf8');
    const pragma = source.indexOf('#pragma GCC diagnostic error "-Wimplicit-function-declaration"');
    expect(pragma).toBeGreaterThan(0);
    expect(pragma).toBeLessThan(source.indexOf('#include'));
  });

  test('only the esp32 platform wires the native module; other targets are an error in its manifest', () => {
    const native = readJson(join(ROOT, 'hosts/moddable/native/manifest.json'));
    expect(Object.keys(native.platforms ?? {})).toEqual(['esp32', '...']);
    expect(native.platforms?.['...']?.error).toContain('esp32');
  });
});
