/**
 * The check itself, per target: resolve the manifests as mcconfig would,
 * get the module compile command from make.esp32.mk, derive sdkconfig.h,
 * compile every firmware C file, compare the configuration macros with
 * IDF's and measure structure sizes as the library and the module see them.
 * The CLI is index.ts; the fixture tests (tests/esp32-check.test.ts) call
 * checkTarget on small trees with the host compiler only.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { resolveManifests } from './manifest';
import { includeFolders, makefileList, moduleCompile, moduleCompileFromMakefile, type ModuleCompile } from './make-vars';
import { deriveSdkconfig } from './kconfig';
import { headersRead, measure, syntaxCheck, xtensaObject, type Sizes } from './compile';

/** Types backend_esp32.c allocates (on its stack) or whose layout it depends on. */
export const MEASURED_TYPES = [
  'esp_aes_context',
  'psa_mac_operation_t',
  'psa_key_attributes_t',
  'psa_key_id_t',
  'psa_algorithm_t',
  'psa_status_t',
  'psa_driver_mac_context_t',
  // The DH rekey mode's HKDF runs a psa_key_derivation_operation_t on the module's stack.
  'psa_key_derivation_operation_t',
];

export interface CheckOptions {
  /** The project: the C files under it are checked. */
  readonly root: string;
  /** The application manifest, relative to root: manifest.json (default) or an example's. */
  readonly manifest?: string;
  readonly target: string;
  readonly moddable: string;
  readonly idfPath: string;
  readonly idfVersion: string;
  readonly out: string;
  /** Also build objects with the Xtensa stand-in (and -Wall -Wextra). */
  readonly xtensa: boolean;
  /** The ESP32 backend: its config macros are compared with IDF's and its structure sizes measured. */
  readonly backend?: string;
  readonly verbose?: boolean;
  /**
   * The SDK's mcconfig binary: when given, `mcconfig -p <platform>` (no -m:
   * it only writes the makefile) generates the real makefile, the compile
   * command is read from it, and its DIRECTORIES / OBJECTS /
   * MANAGED_COMPONENT_DIRS are compared with manifest.ts's resolution.
   */
  readonly mcconfig?: string;
}

/** Runs `mcconfig -p <platform> -o <dir>` in the project (never -m or -d) and returns the makefile it wrote. */
export function mcconfigMakefile(mcconfig: string, root: string, platform: string, moddable: string, idfPath: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  execFileSync(mcconfig, ['-p', platform, '-o', dir], {
    cwd: root,
    env: { ...process.env, MODDABLE: moddable, IDF_PATH: idfPath, PATH: `${dirname(mcconfig)}:${process.env['PATH'] ?? ''}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const sub = platform.includes('/') ? platform.split('/')[1]! : '';
  const makefile = join(dir, 'tmp/esp32', sub, 'release', basename(root), 'makefile');
  if (!existsSync(makefile)) throw new Error(`esp32-check: mcconfig wrote no ${makefile}`);
  return makefile;
}

export interface IdfMbedtlsDefinitions {
  readonly mbedtlsConfigFile: string | undefined;
  readonly psaUserConfigFile: string | undefined;
  readonly includeDirs: string[];
}

/** What IDF's components/mbedtls/CMakeLists.txt gives the mbedTLS/TF-PSA-Crypto targets. */
export function idfMbedtlsDefinitions(idfPath: string): IdfMbedtlsDefinitions {
  const text = readFileSync(join(idfPath, 'components/mbedtls/CMakeLists.txt'), 'utf8');
  const mbedtlsConfigFile = /-DMBEDTLS_CONFIG_FILE="([^"]+)"/.exec(text)?.[1];
  const psaUserConfigFile = /TF_PSA_CRYPTO_USER_CONFIG_FILE\s+"([^"]+)"/.exec(text)?.[1];
  const block = /set\(mbedtls_include_dirs([^)]*)\)/.exec(text)?.[1] ?? '';
  const appended = [...text.matchAll(/list\(APPEND mbedtls_include_dirs\s+"([^"]+)"\)/g)].map((m) => m[1]!);
  const includeDirs = [...[...block.matchAll(/"([^"]+)"/g)].map((m) => m[1]!), ...appended]
    .filter((d) => !d.includes('mbedtls_rom') && !d.includes('esp_crt_bundle'))
    .map((d) => (d.startsWith('${COMPONENT_DIR}') ? join(idfPath, 'components/mbedtls', d.slice('${COMPONENT_DIR}'.length)) : join(idfPath, 'components/mbedtls', d)));
  return { mbedtlsConfigFile, psaUserConfigFile, includeDirs };
}

/** The `#define NAME "value"` lines of a C file. */
export function definedStrings(source: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of source.matchAll(/^#define\s+(\w+)\s+"([^"]*)"/gm)) out.set(m[1]!, m[2]!);
  return out;
}

interface Counts {
  errors: number;
  warnings: number;
}

export interface TargetReport {
  target: string;
  files: Array<{ file: string; host: Counts; xtensa: Counts; strict: Counts; output: string }>;
  /** CONFIG_ names the compiled files and the headers they read mention, with value and origin. */
  config: Array<{ name: string; value: string | undefined; from: string }>;
  /** psa_mac_operation_t etc. as a module sees them without IDF's config macros (the original bug). */
  unconfigured?: Sizes;
  sdkFiles: number;
  problems: string[];
  /** The makefile mcconfig generated, when it was used. */
  makefile?: string;
  /** Where the generated sdkconfig.h, objects, probes and config-used.txt are. */
  outDir?: string;
  module?: Sizes;
  library?: Sizes;
}

function writeGenerated(compile: ModuleCompile, sdkconfigHeader: string): void {
  mkdirSync(compile.sdkconfigDir, { recursive: true });
  writeFileSync(join(compile.sdkconfigDir, 'sdkconfig.h'), sdkconfigHeader);
  // mcconfig writes these three into TMP_DIR; the firmware's manifests have no `defines` or `format`.
  // (When mcconfig generated the makefile it also wrote the real ones: keep those.)
  const banner = '/* WARNING: This file is automatically generated. Do not edit. */\n\n';
  mkdirSync(compile.tmpDir, { recursive: true });
  for (const name of ['mc.defines.h', 'mc.format.h', 'mc.rotation.h']) {
    if (!existsSync(join(compile.tmpDir, name))) writeFileSync(join(compile.tmpDir, name), banner);
  }
}

export function checkTarget(options: CheckOptions): TargetReport {
  const { root: ROOT, target, moddable, idfPath, out, idfVersion } = options;
  const verbose = options.verbose === true;
  const BACKEND = options.backend;
  const platform = target === 'esp32' ? 'esp32' : `esp32/${target}`;
  const report: TargetReport = { target, files: [], sdkFiles: 0, problems: [], config: [] };
  const manifestPath = join(ROOT, options.manifest ?? 'manifest.json');
  const build = resolveManifests({ manifest: manifestPath, platform, moddable, idfPath });
  report.problems.push(...build.errors.map((e) => `manifest: ${e}`));
  const subclass = build.build['ESP32_SUBCLASS'] ?? 'esp32';
  if (subclass !== target) report.problems.push(`manifest: ${platform} builds ESP32_SUBCLASS ${subclass}`);
  let compile: ModuleCompile;
  if (options.mcconfig !== undefined) {
    const app = (options.manifest ?? 'manifest.json').replace(/\/?manifest\.json$/, '').replace(/\//g, '_') || 'main';
    const makefile = mcconfigMakefile(options.mcconfig, dirname(manifestPath), platform, moddable, idfPath, join(out, 'mcconfig', app));
    report.makefile = makefile;
    const text = readFileSync(makefile, 'utf8');
    const same = (a: string[], b: string[]): boolean => JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
    const folders = makefileList(text, 'DIRECTORIES').map((d) => d.replace(/^-I/, ''));
    const objects = makefileList(text, 'OBJECTS').map((o) => o.replace('$(TMP_DIR)/', ''));
    const managed = makefileList(text, 'MANAGED_COMPONENT_DIRS');
    const tmpDir = dirname(makefile);
    const ours = build.managedComponentDirs.map((d) => d.replace('$(TMP_DIR)', tmpDir).replace('$(ESP32_SUBCLASS)', subclass));
    if (!same(folders, build.cFolders)) report.problems.push(`mcconfig's DIRECTORIES differ from manifest.ts's: ${JSON.stringify(folders)} vs ${JSON.stringify(build.cFolders)}`);
    if (!same(objects, build.cFiles.map((f) => basename(f) + '.o'))) report.problems.push(`mcconfig's OBJECTS differ from manifest.ts's C files`);
    if (!same(managed, ours)) report.problems.push(`mcconfig's MANAGED_COMPONENT_DIRS differ: ${JSON.stringify(managed)} vs ${JSON.stringify(ours)}`);
    compile = moduleCompileFromMakefile(makefile, join(out, 'tmp', target), idfVersion);
  } else {
    compile = moduleCompile({ moddable, idfPath, idfVersion, subclass, out, directories: build.cFolders, managedComponentDirs: build.managedComponentDirs, build: build.build });
  }
  const sdkconfigPath = build.build['SDKCONFIGPATH'] ?? join(moddable, 'build/devices/esp32', `xsProj-${subclass}`);
  const defaultsFiles = [join(moddable, 'build/devices/esp32', `xsProj-${subclass}`, 'sdkconfig.defaults'), join(moddable, 'build/devices/esp32', `xsProj-${subclass}`, 'sdkconfig.defaults.release')];
  if (build.build['SDKCONFIGPATH'] !== undefined) defaultsFiles.push(join(sdkconfigPath, 'sdkconfig.defaults'), join(sdkconfigPath, 'sdkconfig.defaults.release'));
  const sdkconfig = deriveSdkconfig({ idfPath, target: subclass, defaultsFiles: defaultsFiles.filter((f) => existsSync(f)) });
  writeGenerated(compile, sdkconfig.header);
  report.outDir = compile.tmpDir;
  const args = [...compile.defines, ...compile.includes, ...compile.flags];

  const firmware = build.cFiles.filter((f) => f.startsWith(ROOT + '/'));
  report.sdkFiles = build.cFiles.length - firmware.length;
  const objects = join(compile.tmpDir, 'objects');
  mkdirSync(objects, { recursive: true });
  const mentioned = new Set<string>();
  for (const file of firmware) {
    const object = join(objects, relative(ROOT, file).replace(/\//g, '_') + '.o');
    const host = syntaxCheck(file, args);
    const skipped = { ok: true, errors: 0, warnings: 0, output: '', command: [] };
    const xtensa = options.xtensa ? xtensaObject(file, args, compile.espArch, object) : skipped;
    // Not Moddable's flags: the same command with -Wall -Wextra, as a stricter guard.
    const strict = options.xtensa ? xtensaObject(file, [...args, '-Wall', '-Wextra'], compile.espArch, object + '.strict.o') : skipped;
    report.files.push({ file: relative(ROOT, file), host, xtensa, strict, output: host.output + xtensa.output + strict.output });
    if (!options.xtensa) continue;
    for (const header of [file, ...headersRead(file, args, compile.espArch)]) {
      for (const m of readFileSync(header, 'utf8').matchAll(/\bCONFIG_[A-Za-z0-9_]+/g)) mentioned.add(m[0]);
    }
  }
  for (const name of [...mentioned].sort()) {
    report.config.push({ name, value: sdkconfig.values.get(name), from: sdkconfig.provenance.get(name) ?? 'not a Kconfig symbol of this IDF: never defined' });
  }

  if (BACKEND !== undefined && options.xtensa) {
    // The configuration macros: the module must set what IDF's library is built with.
    const idf = idfMbedtlsDefinitions(idfPath);
    const own = definedStrings(readFileSync(BACKEND, 'utf8'));
    if (idf.mbedtlsConfigFile === undefined || idf.psaUserConfigFile === undefined) report.problems.push('IDF: could not read MBEDTLS_CONFIG_FILE / TF_PSA_CRYPTO_USER_CONFIG_FILE from components/mbedtls/CMakeLists.txt');
    if (own.get('MBEDTLS_CONFIG_FILE') !== idf.mbedtlsConfigFile) report.problems.push(`MBEDTLS_CONFIG_FILE: backend ${own.get('MBEDTLS_CONFIG_FILE')}, IDF ${idf.mbedtlsConfigFile}`);
    if (own.get('TF_PSA_CRYPTO_USER_CONFIG_FILE') !== idf.psaUserConfigFile) report.problems.push(`TF_PSA_CRYPTO_USER_CONFIG_FILE: backend ${own.get('TF_PSA_CRYPTO_USER_CONFIG_FILE')}, IDF ${idf.psaUserConfigFile}`);

    // Sizes as the module sees them: the backend itself, followed by the measurements.
    const types = [...MEASURED_TYPES, ...(sdkconfig.values.get('CONFIG_MBEDTLS_HARDWARE_SHA') === 'y' ? ['esp_hmac_transparent_operation_t'] : [])];
    report.module = measure({ types, prologue: `#define LOCKSTEP_SIZE_PROBE 1\n#include "${BACKEND}"` }, args, compile.espArch, compile.tmpDir, 'probe-module');
    // Sizes as the library sees them: IDF's definitions and the mbedtls component's include folders,
    // the other component folders as Moddable lists them, without Moddable's own defines.
    const moddableOnly = new Set(['-DWITH_POSIX', '-DHAVE_CONFIG_H', '-D', 'BOOTLOADER_BUILD=1', '-Wno-implicit-function-declaration']);
    const libraryArgs = [
      `-DMBEDTLS_CONFIG_FILE="${idf.mbedtlsConfigFile}"`,
      `-DTF_PSA_CRYPTO_USER_CONFIG_FILE="${idf.psaUserConfigFile}"`,
      '-DMBEDTLS_MAJOR_VERSION=4',
      '-DESP_PSA_ITS_AVAILABLE',
      ...idf.includeDirs.map((d) => `-I${d}`),
      `-I${join(idfPath, 'components/mbedtls/mbedtls/tf-psa-crypto/include')}`,
      `-I${join(idfPath, 'components/mbedtls/mbedtls/tf-psa-crypto/drivers/builtin/include')}`,
      `-I${join(idfPath, 'components/esp_hal_security/include')}`,
      ...includeFolders(compile.includes).filter((d) => !build.cFolders.includes(d)).map((d) => `-I${d}`),
      ...compile.flags.filter((f) => !moddableOnly.has(f)),
    ];
    const libraryPrologue = ['#include "sdkconfig.h"', '#include "aes/esp_aes.h"', '#include "psa/crypto.h"', '#include "psa_crypto_driver_esp_hmac_transparent_contexts.h"'].join('\n');
    report.library = measure({ types, prologue: libraryPrologue }, libraryArgs, compile.espArch, compile.tmpDir, 'probe-library');

    // The original bug, for comparison: the module's flags without the config macros backend_esp32.c now sets.
    const unconfiguredPrologue = ['#include "sdkconfig.h"', '#include "aes/esp_aes.h"', '#include "psa/crypto.h"'].join('\n');
    report.unconfigured = measure({ types: ['psa_mac_operation_t', 'psa_key_attributes_t'], prologue: unconfiguredPrologue }, args, compile.espArch, compile.tmpDir, 'probe-unconfigured');

    for (const t of types) {
      const m = report.module.sizes.get(t);
      const l = report.library.sizes.get(t);
      if (m === undefined || l === undefined) report.problems.push(`size of ${t}: not measured (module ${m?.size ?? '-'}, library ${l?.size ?? '-'})`);
      else if (m.size !== l.size || m.align !== l.align) report.problems.push(`size of ${t}: module ${m.size}/${m.align}, library ${l.size}/${l.align}`);
    }
    if (!report.module.diagnostics.ok) report.problems.push('module-view probe did not compile:\n' + report.module.diagnostics.output.trim());
    if (!report.library.diagnostics.ok) report.problems.push('library-view probe did not compile:\n' + report.library.diagnostics.output.trim());

  }
  const configReport = report.config.map((c) => `${c.name}=${c.value ?? '(unset)'}\t${c.from}`).join('\n') + '\n';
  writeFileSync(join(compile.tmpDir, 'config-used.txt'), configReport);
  writeFileSync(join(compile.tmpDir, 'sdkconfig.provenance.txt'), [...sdkconfig.provenance].map(([n, p]) => `${n}=${sdkconfig.values.get(n) ?? ''}\t${p}`).join('\n') + '\n');
  if (verbose) {
    console.log(`\n## ${target}: module compile command (${compile.cc}; run here as ${'xtensa-lx106-elf-gcc'})\n${args.join(' ')}`);
    console.log(`\n## ${target}: CONFIG_ names the firmware's C files and the headers they read mention: value ← origin`);
    for (const c of report.config) console.log(`  ${c.name}=${c.value ?? '(unset)'}  ← ${c.from}`);
  }
  return report;
}

