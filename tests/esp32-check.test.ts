/**
 * tools/esp32-check on the fixture trees in tools/esp32-check/fixtures (no
 * SDK, IDF or Xtensa compiler needed: host gcc and make only). The real run,
 * against a fetched ESP-IDF v6.0 and the Moddable SDK, is `npm run
 * esp32-check` (docs/NATIVE.md §5); these tests show that the check reads
 * its include folders, defines and CONFIG_ values from the trees rather than
 * from a list of its own: each mutation of a copy of the fixture changes the
 * verdict.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkTarget, definedStrings, idfMbedtlsDefinitions, type TargetReport } from '../tools/esp32-check/check';
import { includeFolders, makefileList, moduleCompile, moduleCompileFromMakefile } from '../tools/esp32-check/make-vars';
import { matchPlatform, resolveManifests } from '../tools/esp32-check/manifest';
import { deriveSdkconfig, evalExpr } from '../tools/esp32-check/kconfig';
import { hostFlags, xtensaFlags } from '../tools/esp32-check/compile';

const FIXTURES = resolve(__dirname, '../tools/esp32-check/fixtures');

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'esp32-check-test-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A fresh copy of the fixture trees, optionally edited. */
function copyFixtures(name: string, edit?: (root: string) => void): string {
  const root = join(work, name);
  cpSync(FIXTURES, root, { recursive: true });
  edit?.(root);
  return root;
}

function editFile(path: string, change: (text: string) => string): void {
  const before = readFileSync(path, 'utf8');
  const after = change(before);
  expect(after).not.toBe(before); // the mutation really happened
  writeFileSync(path, after);
}

function check(root: string, target = 'esp32'): TargetReport {
  return checkTarget({
    root: join(root, 'project'),
    target,
    moddable: join(root, 'moddable'),
    idfPath: join(root, 'idf'),
    idfVersion: 'v6.0',
    out: join(root, 'out'),
    xtensa: false,
  });
}

function verdict(report: TargetReport): { errors: number; warnings: number; problems: string[] } {
  return {
    errors: report.files.reduce((n, f) => n + f.host.errors, 0),
    warnings: report.files.reduce((n, f) => n + f.host.warnings, 0),
    problems: report.problems,
  };
}

const MK = 'moddable/tools/mcconfig/make.esp32.mk';

describe('esp32-check on the fixture trees', () => {
  test('the fixture firmware compiles with zero errors and warnings under the fixture make.esp32.mk', () => {
    const report = check(copyFixtures('clean'));
    expect(report.files.map((f) => f.file)).toEqual(['native/fixture.c']);
    expect(verdict(report)).toEqual({ errors: 0, warnings: 0, problems: [] });
  });

  test('the command line is what make evaluates from make.esp32.mk, plus the manifest folders', () => {
    const root = copyFixtures('command');
    const build = resolveManifests({ manifest: join(root, 'project/manifest.json'), platform: 'esp32', moddable: join(root, 'moddable'), idfPath: join(root, 'idf') });
    expect(build.cFolders).toEqual([join(root, 'idf/components/port/include/')]);
    expect(build.idfComponents).toEqual(['demo']);
    const compile = moduleCompile({ moddable: join(root, 'moddable'), idfPath: join(root, 'idf'), idfVersion: 'v6.0', subclass: 'esp32', out: join(root, 'out'), directories: build.cFolders, managedComponentDirs: build.managedComponentDirs, build: build.build });
    expect(compile.cc).toBe('xtensa-esp32-elf-gcc');
    expect(compile.defines).toEqual(['-D__ets__', '-DESP32=1', '-DmxUseDefaultSharedChunks=1']);
    expect(compile.flags).toEqual(['-c', '-Os', '-g', '-Wno-unused-variable', '-MMD', '-D', 'BOOTLOADER_BUILD=1', '-DESP_PLATFORM', '-MP', '-mlongcalls', '-Wno-implicit-function-declaration', '-std=gnu17']);
    const folders = includeFolders(compile.includes);
    expect(folders[0]).toBe(join(root, 'idf/components/port/include/')); // DIRECTORIES come first
    expect(folders).toEqual(
      expect.arrayContaining([join(root, 'idf/components/demo/include'), join(root, 'moddable/xs/includes'), compile.sdkconfigDir]),
    );
    // mcmanifest.js writes one managed_components/<namespace>__<name>/include per dependency: for an IDF component, "undefined".
    expect(folders.some((f) => f.endsWith('managed_components/espressif__undefined/include'))).toBe(true);
  });

  test('a subplatform takes its ESP32_SUBCLASS (and so its defines) from the subplatform manifest', () => {
    const report = check(copyFixtures('s3'), 'esp32s3');
    expect(verdict(report)).toEqual({ errors: 0, warnings: 0, problems: [] });
    const root = join(work, 's3');
    const build = resolveManifests({ manifest: join(root, 'project/manifest.json'), platform: 'esp32/esp32s3', moddable: join(root, 'moddable'), idfPath: join(root, 'idf') });
    expect(build.build['ESP32_SUBCLASS']).toBe('esp32s3');
    const compile = moduleCompile({ moddable: join(root, 'moddable'), idfPath: join(root, 'idf'), idfVersion: 'v6.0', subclass: 'esp32s3', out: join(root, 'out'), directories: build.cFolders, managedComponentDirs: build.managedComponentDirs, build: build.build });
    expect(compile.defines).toContain('-DESP32=3');
    expect(compile.cc).toBe('xtensa-esp32s3-elf-gcc');
  });

  test('the verdict changes when make.esp32.mk loses an include folder', () => {
    const root = copyFixtures('lose-folder', (r) => editFile(join(r, MK), (t) => t.replace('\t$(IDF_PATH)/components/demo/include \\\n', '')));
    const report = check(root);
    expect(verdict(report).errors).toBeGreaterThan(0);
    expect(report.files[0]!.output).toContain('demo.h');
  });

  test('the verdict changes when make.esp32.mk gains an include folder (one that shadows a header)', () => {
    const root = copyFixtures('gain-folder', (r) => {
      mkdirSync(join(r, 'idf/components/shadow/include'), { recursive: true });
      writeFileSync(join(r, 'idf/components/shadow/include/demo.h'), '#error "fixture: shadowed demo.h"\n');
      editFile(join(r, MK), (t) => t.replace('INC_DIRS = \\\n', 'INC_DIRS = \\\n\t$(IDF_PATH)/components/shadow/include \\\n'));
    });
    const report = check(root);
    expect(verdict(report).errors).toBeGreaterThan(0);
    expect(report.files[0]!.output).toContain('shadowed demo.h');
  });

  test('the verdict changes when make.esp32.mk loses a define', () => {
    const root = copyFixtures('lose-define', (r) => editFile(join(r, MK), (t) => t.replace('\t-DESP32=$(ESP32_TARGET) \\\n', '')));
    expect(verdict(check(root)).errors).toBeGreaterThan(0);
  });

  test('the verdict changes when make.esp32.mk gains a define', () => {
    const root = copyFixtures('gain-define', (r) => editFile(join(r, MK), (t) => t.replace('\t-D__ets__ \\\n', '\t-D__ets__ \\\n\t-DFIXTURE_POISON=1 \\\n')));
    const report = check(root);
    expect(verdict(report).errors).toBeGreaterThan(0);
    expect(report.files[0]!.output).toContain('forbids');
  });

  test('the verdict changes when a flag turns a warning on (zero warnings is checked, not assumed)', () => {
    const root = copyFixtures('gain-warning', (r) => {
      editFile(join(r, MK), (t) => t.replace('\t-std=gnu17\n', '\t-std=gnu17 -Wunused-macros\n'));
      editFile(join(r, 'project/native/fixture.c'), (t) => t + '#define FIXTURE_UNUSED_MACRO 1\n');
    });
    expect(verdict(check(root))).toMatchObject({ errors: 0, warnings: 1 });
  });

  test("the verdict changes when the project manifest loses its trailing-slash include folder", () => {
    const root = copyFixtures('lose-manifest-folder', (r) =>
      editFile(join(r, 'project/native/manifest.json'), (t) => t.replace(',\n\t\t\t\t\t"$(IDF_PATH)/components/port/include/"', '')),
    );
    const report = check(root);
    expect(verdict(report).errors).toBeGreaterThan(0);
    expect(report.files[0]!.output).toContain('port/port.h');
  });

  test('the verdict changes when sdkconfig.defaults loses a setting the C file relies on', () => {
    const root = copyFixtures('lose-config', (r) => editFile(join(r, 'moddable/build/devices/esp32/xsProj-esp32/sdkconfig.defaults'), (t) => t.replace('CONFIG_DEMO_FEATURE=y\n', '')));
    expect(verdict(check(root)).errors).toBeGreaterThan(0);
  });

  test("a platform the manifest refuses is a problem, and the default goal of make.esp32.mk never runs", () => {
    const root = copyFixtures('refused');
    expect(() => resolveManifests({ manifest: join(root, 'project/manifest.json'), platform: 'lin' })).toThrow(/only esp32/);
    expect(matchPlatform({ esp32: { error: 'a' }, '...': { error: 'b' } }, 'esp32/esp32c3')).toEqual({ error: 'a' });
    expect(matchPlatform({ 'esp32/*': { error: 'a' }, esp32: { error: 'b' } }, 'esp32')).toEqual({ error: 'b' });
    expect(matchPlatform({ pico: {}, '...': { error: 'c' } }, 'esp32')).toEqual({ error: 'c' });
    // moduleCompile would throw (make exits 1) had it run `all`: the clean check above proves it did not.
  });
});

describe('sdkconfig.h derivation (kconfig.ts) on the fixture IDF', () => {
  const derive = (target: string, defaults: string): ReturnType<typeof deriveSdkconfig> =>
    deriveSdkconfig({ idfPath: join(FIXTURES, 'idf'), target, defaultsFiles: [join(FIXTURES, 'moddable/build/devices/esp32', `xsProj-${defaults}`, 'sdkconfig.defaults')] });

  test('values come from sdkconfig.defaults, then defaults with their conditions, with their origin', () => {
    const esp32 = derive('esp32', 'esp32');
    expect(esp32.values.get('CONFIG_IDF_TARGET')).toBe('esp32');
    expect(esp32.values.get('CONFIG_IDF_TARGET_ESP32')).toBe('y');
    expect(esp32.values.get('CONFIG_IDF_TARGET_ESP32S3')).toBe('n');
    expect(esp32.values.get('CONFIG_DEMO_FEATURE')).toBe('y');
    expect(esp32.provenance.get('CONFIG_DEMO_FEATURE')).toMatch(/xsProj-esp32\/sdkconfig\.defaults:1$/);
    expect(esp32.values.get('CONFIG_DEMO_LEVEL')).toBe('3');
    expect(esp32.values.get('CONFIG_DEMO_SPEED_SLOW')).toBe('y'); // the choice's default
    expect(esp32.values.get('CONFIG_DEMO_FALLBACK')).toBe('n'); // inside `if !DEMO_FEATURE`
    expect(esp32.values.has('CONFIG_NOT_A_SYMBOL')).toBe(false); // help text is skipped
    expect(esp32.header).toContain('#define CONFIG_DEMO_LEVEL 3\n');
    expect(esp32.header).toContain('#define CONFIG_IDF_TARGET "esp32"\n');
    expect(esp32.header).not.toContain('CONFIG_DEMO_HAS_DMA');
  });

  test('choice members set by sdkconfig.defaults, select, and default-if on another target', () => {
    const s3 = derive('esp32s3', 'esp32s3');
    expect(s3.values.get('CONFIG_DEMO_SPEED_FAST')).toBe('y');
    expect(s3.values.get('CONFIG_DEMO_SPEED_SLOW')).toBe('n');
    expect(s3.values.get('CONFIG_DEMO_HAS_DMA')).toBe('y');
    expect(s3.provenance.get('CONFIG_DEMO_HAS_DMA')).toMatch(/^selected by IDF_TARGET_ESP32S3/);
    expect(s3.values.get('CONFIG_DEMO_LEVEL')).toBe('5');
  });

  test('expressions', () => {
    const values: Record<string, string> = { A: 'y', B: 'n', T: 'esp32', N: '4' };
    const ev = (e: string): string => evalExpr(e, (n) => values[n] ?? 'n', (t) => t.slice(1, -1));
    expect(ev('A && !B')).toBe('y');
    expect(ev('B || (A && T="esp32")')).toBe('y');
    expect(ev('T != "esp32"')).toBe('n');
    expect(ev('N >= 4 && N < 5')).toBe('y');
    expect(ev('!(A || B)')).toBe('n');
  });
});

describe('pieces of the real check that need no IDF', () => {
  test("a makefile in mcconfig's generated form (variables, then make.esp32.mk inline) gives the same command as the wrapper", () => {
    const root = copyFixtures('generated');
    const tmp = join(root, 'out/generated-tmp');
    const mk = readFileSync(join(root, MK), 'utf8');
    const generated = join(root, 'out/makefile');
    mkdirSync(join(root, 'out'), { recursive: true });
    writeFileSync(
      generated,
      [`MODDABLE = ${join(root, 'moddable')}`, `IDF_PATH = ${join(root, 'idf')}`, `TMP_DIR = ${tmp}`, `LIB_DIR = ${tmp}/lib`, `XS_DIR = ${join(root, 'moddable/xs')}`, 'ESP32_SUBCLASS = esp32', 'DIRECTORIES =\\', `\t-I${join(root, 'idf/components/port/include/')}`, '', mk].join('\n'),
    );
    const fromGenerated = moduleCompileFromMakefile(generated, join(root, 'out/print'), 'v6.0');
    expect(fromGenerated.defines).toEqual(['-D__ets__', '-DESP32=1', '-DmxUseDefaultSharedChunks=1']);
    expect(includeFolders(fromGenerated.includes)).toEqual(expect.arrayContaining([join(root, 'idf/components/port/include/'), join(root, 'idf/components/demo/include')]));
    expect(makefileList(readFileSync(generated, 'utf8'), 'DIRECTORIES')).toEqual([`-I${join(root, 'idf/components/port/include/')}`]);
    expect(makefileList('OBJECTS =\\\n\t$(TMP_DIR)/a.c.o\\\n\t$(TMP_DIR)/b.c.o\nNEXT = 1\n', 'OBJECTS')).toEqual(['$(TMP_DIR)/a.c.o', '$(TMP_DIR)/b.c.o']);
  });

  test('host flags drop what only the target compiler takes; RISC-V loses -march for the Xtensa stand-in', () => {
    expect(hostFlags(['-c', '-Os', '-mlongcalls', '-march=rv32imc', '-Wl,-EL', '-MMD', '-MP', '-DX=1', '-o', 'a.o', '-std=gnu17'])).toEqual(['-Os', '-DX=1', '-std=gnu17']);
    expect(xtensaFlags(['-c', '-march=rv32imc', '-Os'], 'riscv')).toEqual(['-c', '-Os']);
    expect(xtensaFlags(['-c', '-mlongcalls'], 'xtensa')).toEqual(['-c', '-mlongcalls']);
  });

  test("IDF's mbedTLS definitions are read from components/mbedtls/CMakeLists.txt (shape of IDF v6.0's)", () => {
    const idf = join(work, 'cmake-idf');
    mkdirSync(join(idf, 'components/mbedtls'), { recursive: true });
    writeFileSync(
      join(idf, 'components/mbedtls/CMakeLists.txt'),
      'set(mbedtls_include_dirs\n    "port/include"\n    "mbedtls/include"\n    )\nlist(APPEND mbedtls_include_dirs "${COMPONENT_DIR}/port/psa_driver/include")\nset(\n    TF_PSA_CRYPTO_USER_CONFIG_FILE "mbedtls/esp_config.h"\n    CACHE STRING "x" FORCE)\n    target_compile_definitions(${target} PUBLIC -DMBEDTLS_CONFIG_FILE="mbedtls/esp_config.h")\n',
    );
    expect(idfMbedtlsDefinitions(idf)).toEqual({
      mbedtlsConfigFile: 'mbedtls/esp_config.h',
      psaUserConfigFile: 'mbedtls/esp_config.h',
      includeDirs: [join(idf, 'components/mbedtls/port/include'), join(idf, 'components/mbedtls/mbedtls/include'), join(idf, 'components/mbedtls/port/psa_driver/include')],
    });
    expect(definedStrings('#define MBEDTLS_CONFIG_FILE "a/b.h"\n#define OTHER 1\n')).toEqual(new Map([['MBEDTLS_CONFIG_FILE', 'a/b.h']]));
  });
});
