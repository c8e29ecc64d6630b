/**
 * npm run esp32-check: compiles every C file of the firmware for the esp32
 * targets with exactly the command line Moddable's `mcconfig -m -p esp32`
 * build gives module C files, against a real ESP-IDF tree, and compares the
 * sizes of the PSA/IDF structures the native module allocates as the IDF
 * library sees them and as the module sees them (docs/NATIVE.md §5).
 *
 *   IDF_PATH=... MODDABLE=... npm run esp32-check -- [--targets esp32,esp32s3] [--apps manifest.json,examples/x/manifest.json] [--out DIR] [--verbose] [--no-mcconfig]
 *
 * Every application is checked (the reference app's manifest.json and each
 * examples/<name>/manifest.json, all on the Lockstep library) unless --apps
 * names some.
 *
 * With the SDK's tools built ($MODDABLE/build/bin/lin/release/mcconfig), the
 * command comes from the makefile `mcconfig -p <platform>` writes (without
 * -m, so nothing is built or killed) and manifest.ts's resolution is checked
 * against it; otherwise from make.esp32.mk with manifest.ts's resolution.
 *
 * Exit status 0 only when every file compiles with zero errors and zero
 * warnings (host gcc, the Xtensa stand-in, and the stand-in with -Wall
 * -Wextra), the config macros match IDF's and every size agrees.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTarget, type TargetReport } from './check';

export const CHECKED_TARGETS = ['esp32', 'esp32s3', 'esp32c3', 'esp32c6'] as const;
/** sdkconfig values the measured layouts depend on, printed for every target. */
const LAYOUT_CONFIG = ['CONFIG_IDF_TARGET', 'CONFIG_SOC_AES_SUPPORTED', 'CONFIG_SOC_SHA_SUPPORT_SHA512', 'CONFIG_MBEDTLS_HARDWARE_AES', 'CONFIG_MBEDTLS_HARDWARE_SHA', 'CONFIG_MBEDTLS_CMAC_C', 'CONFIG_MBEDTLS_SHA512_C'];

const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

function idfVersionOf(idfPath: string): string {
  const header = readFileSync(join(idfPath, 'components/esp_common/include/esp_idf_version.h'), 'utf8');
  const part = (name: string): string => new RegExp(`#define\\s+ESP_IDF_VERSION_${name}\\s+(\\d+)`).exec(header)?.[1] ?? '?';
  const patch = part('PATCH');
  return `v${part('MAJOR')}.${part('MINOR')}${patch === '0' ? '' : '.' + patch}`;
}

/** The reference app and every example with a manifest. */
export function applicationManifests(root: string): string[] {
  const examples = join(root, 'examples');
  const names = existsSync(examples) ? readdirSync(examples).filter((name) => existsSync(join(examples, name, 'manifest.json'))).sort() : [];
  return ['manifest.json', ...names.map((name) => `examples/${name}/manifest.json`)];
}

function print(report: TargetReport, app: string): boolean {
  const files = report.files;
  const errors = files.reduce((n, f) => n + f.host.errors + f.xtensa.errors + f.strict.errors, 0);
  const warnings = files.reduce((n, f) => n + f.host.warnings + f.xtensa.warnings + f.strict.warnings, 0);
  console.log(`\n${app}, ${report.target}: ${report.makefile !== undefined ? `command from mcconfig's makefile ${report.makefile} (its folders and C files agree with manifest.ts unless a PROBLEM says otherwise)` : "command from make.esp32.mk with manifest.ts's resolution (mcconfig not built)"}`);
  console.log(`${report.target}: ${files.length} firmware C files (${report.sdkFiles} SDK C files in the build, not checked), ${errors} errors, ${warnings} warnings`);
  for (const f of files) {
    console.log(`  ${f.file}: gcc -fsyntax-only ${f.host.errors}E/${f.host.warnings}W, xtensa-lx106-elf-gcc -c ${f.xtensa.errors}E/${f.xtensa.warnings}W, same + -Wall -Wextra ${f.strict.errors}E/${f.strict.warnings}W`);
    if (f.host.errors + f.host.warnings + f.xtensa.errors + f.xtensa.warnings + f.strict.errors + f.strict.warnings > 0) console.log(f.output.replace(/^/gm, '    | ').trimEnd());
  }
  console.log('  sizes in bytes/alignment (xtensa-lx106-elf-gcc, ILP32):   library   module');
  for (const [type, l] of report.library?.sizes ?? new Map<string, { size: number; align: number }>()) {
    const m = report.module?.sizes.get(type);
    const same = m !== undefined && m.size === l.size && m.align === l.align;
    console.log(`    ${type.padEnd(36)} ${`${l.size}/${l.align}`.padStart(8)} ${(m ? `${m.size}/${m.align}` : '-').padStart(8)}${same ? '' : '  MISMATCH'}`);
  }
  const unconfigured = report.unconfigured?.sizes.get('psa_mac_operation_t');
  if (unconfigured !== undefined) console.log(`    (a module compiled without IDF's config macros, as before issue 11, sees psa_mac_operation_t as ${unconfigured.size}/${unconfigured.align})`);
  const set = report.config.filter((c) => c.value !== undefined && c.value !== 'n').length;
  console.log(`  sdkconfig.h (derived, see tools/esp32-check/kconfig.ts): ${report.config.length} CONFIG_ names mentioned by the files compiled and the headers they read, ${set} set; each with its origin in ${join(report.outDir ?? '', 'config-used.txt')}`);
  for (const name of LAYOUT_CONFIG) {
    const c = report.config.find((x) => x.name === name);
    if (c !== undefined) console.log(`    ${name}=${c.value ?? '(unset)'}  ← ${c.from}`);
  }
  for (const p of report.problems) console.log(`  PROBLEM: ${p.replace(/\n/g, '\n    ')}`);
  return errors + warnings === 0 && report.problems.length === 0;
}

function main(argv: string[]): number {
  const idfPath = process.env['IDF_PATH'];
  const moddable = process.env['MODDABLE'];
  if (!idfPath || !moddable) {
    console.error('esp32-check: set IDF_PATH (an ESP-IDF v6.0 tree with its mbedtls submodule) and MODDABLE (the Moddable SDK)');
    return 2;
  }
  const option = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const targets = (option('--targets') ?? CHECKED_TARGETS.join(',')).split(',');
  const out = resolve(option('--out') ?? join(tmpdir(), 'lockstep-esp32-check'));
  const idfVersion = idfVersionOf(idfPath);
  const built = join(moddable, 'build/bin/lin/release/mcconfig');
  const mcconfig = argv.includes('--no-mcconfig') || !existsSync(built) ? undefined : built;
  console.log(`esp32-check: ESP-IDF ${idfVersion} at ${idfPath}; Moddable SDK at ${moddable}; compilers: host gcc (-fsyntax-only), xtensa-lx106-elf-gcc (objects, sizes)`);
  const apps = option('--apps')?.split(',') ?? applicationManifests(ROOT);
  let ok = true;
  const summary: string[] = [];
  for (const app of apps) {
    for (const target of targets) {
      const report = checkTarget({ root: ROOT, manifest: app, target, moddable, idfPath, idfVersion, out, xtensa: true, backend: join(ROOT, 'hosts/moddable/native/backend_esp32.c'), verbose: argv.includes('--verbose'), ...(mcconfig === undefined ? {} : { mcconfig }) });
      const passed = print(report, app);
      summary.push(`  ${passed ? 'ok    ' : 'FAILED'} ${app} ${target}: ${report.files.map((f) => f.file).join(', ')}`);
      ok = passed && ok;
    }
  }
  console.log(`\nesp32-check summary (${apps.length} applications x ${targets.length} targets):\n${summary.join('\n')}`);
  console.log(ok ? '\nesp32-check: ok' : '\nesp32-check: FAILED');
  return ok ? 0 : 1;
}

process.exit(main(process.argv.slice(2)));
