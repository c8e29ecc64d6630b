/**
 * Builds and runs the XS test host (xs_test_host.c) from Node.
 *
 * - The engine is compiled from the C sources inside node_modules/@agoric/xsnap
 *   (version pinned in package.json and checked here; its postinstall is never run),
 *   into build/xs-test/<variant>/ at the project root, never inside node_modules.
 * - `release` is -O2; `sanitize` adds AddressSanitizer + UndefinedBehaviorSanitizer
 *   (-fno-sanitize=alignment: XS reads its bytecode unaligned by design).
 * - libmbedtls-dev is required: installed with apt-get when running as root,
 *   otherwise the build stops naming the package. It is never skipped.
 * - Scripts for the host are bundled with esbuild into one ES2022 Script (IIFE);
 *   imports of the Moddable-only natives file are redirected to lockstep_aead_shim.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';

export type HostVariant = 'release' | 'sanitize';

export const XSNAP_VERSION = '0.15.0';
const MBEDTLS_HEADER = '/usr/include/mbedtls/aes.h';
const MBEDTLS_PACKAGE = 'libmbedtls-dev';

/** The project root: the nearest ancestor of the working directory holding this host. */
export function projectRoot(): string {
  let dir = process.cwd();
  for (;;) {
    if (existsSync(join(dir, 'hosts', 'xs-test', 'Makefile'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('xs-test: run from inside the Lockstep project');
    dir = parent;
  }
}

export function buildDir(): string {
  return join(projectRoot(), 'build', 'xs-test');
}

function run(command: string, args: string[], cwd?: string): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const result = spawnSync(command, args, { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.error) throw new Error(`xs-test: cannot run ${command}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`xs-test: ${command} ${args.join(' ')} exited with ${result.status}`);
}

/** Makes sure mbedTLS headers and library are present, installing them when allowed. */
export function ensureMbedtls(): void {
  if (existsSync(MBEDTLS_HEADER)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    throw new Error(
      `xs-test: the Debian package ${MBEDTLS_PACKAGE} is not installed (missing ${MBEDTLS_HEADER}). ` +
        `Install it with: sudo apt-get install -y ${MBEDTLS_PACKAGE}`,
    );
  }
  process.stderr.write(`xs-test: installing ${MBEDTLS_PACKAGE} with apt-get\n`);
  run('apt-get', ['update']);
  run('apt-get', ['install', '-y', MBEDTLS_PACKAGE]);
  if (!existsSync(MBEDTLS_HEADER)) throw new Error(`xs-test: ${MBEDTLS_PACKAGE} installed but ${MBEDTLS_HEADER} is still missing`);
}

function checkXsnapSources(root: string): string {
  const xsnap = join(root, 'node_modules', '@agoric', 'xsnap');
  const manifest = join(xsnap, 'package.json');
  if (!existsSync(manifest)) throw new Error('xs-test: node_modules/@agoric/xsnap is missing: run npm ci');
  const version = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  if (version !== XSNAP_VERSION) {
    throw new Error(`xs-test: expected @agoric/xsnap ${XSNAP_VERSION} (the XS sources this host is tested with), found ${version}`);
  }
  if (!existsSync(join(xsnap, 'moddable', 'xs', 'sources', 'xsAll.c'))) {
    throw new Error('xs-test: @agoric/xsnap has no XS sources under moddable/xs/sources');
  }
  return xsnap;
}

/** The two host programs of a build: the same XS and glue, two backends of the native module. */
export interface HostPrograms {
  /** backend_mbedtls.c (Debian's mbedTLS). */
  mbedtls: string;
  /** backend_esp32.c compiled against esp32-stand-in/ (a model of the ESP-IDF v6 calls it makes). */
  esp32StandIn: string;
}

export type Backend = keyof HostPrograms;

/** Builds both host programs (incrementally, with make -j2) and returns their paths. */
export function buildHost(variant: HostVariant = 'release'): HostPrograms {
  const root = projectRoot();
  ensureMbedtls();
  const xsnap = checkXsnapSources(root);
  const out = join(buildDir(), variant);
  run(
    'make',
    [
      '--no-print-directory',
      '-s',
      '-j2',
      '-f',
      'hosts/xs-test/Makefile',
      `XSNAP=${xsnap}`,
      `OUT=${out}`,
      `SANITIZE=${variant === 'sanitize' ? 1 : 0}`,
    ],
    root,
  );
  return { mbedtls: join(out, 'lockstep-xs-test'), esp32StandIn: join(out, 'lockstep-xs-test-esp32') };
}

/** Redirects the Moddable-only natives file to the shim the test host backs with globals. */
const nativesShim: Plugin = {
  name: 'lockstep-natives-shim',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /^\.\/lockstep_aead$/ }, (args) => {
      if (!args.importer.includes(join('hosts', 'moddable', 'native'))) return undefined;
      return { path: resolve(projectRoot(), 'hosts', 'xs-test', 'lockstep_aead_shim.ts') };
    });
  },
};

/** `import file from 'xs-test-vectors:wycheproof/x.json'` bundles tests/vectors/wycheproof/x.json. */
const vectorFiles: Plugin = {
  name: 'lockstep-vector-files',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /^xs-test-vectors:/ }, (args) => {
      const relative = args.path.slice('xs-test-vectors:'.length);
      if (relative.includes('..')) return { errors: [{ text: `vector path escapes tests/vectors: ${relative}` }] };
      return { path: resolve(projectRoot(), 'tests', 'vectors', relative) };
    });
  },
};

export interface BundleOptions {
  /**
   * Modules to swap in the bundle: project-relative path without extension →
   * project-relative replacement (e.g. a Node-only module → an XS stand-in).
   */
  redirects?: Record<string, string>;
}

function redirectPlugin(root: string, redirects: Record<string, string>): Plugin {
  const table = new Map(Object.entries(redirects).map(([from, to]) => [resolve(root, from), resolve(root, to)]));
  return {
    name: 'lockstep-redirects',
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: /^\.\.?\// }, (args) => {
        const target = table.get(resolve(args.resolveDir, args.path).replace(/\.(ts|js)$/, ''));
        return target === undefined ? undefined : { path: target };
      });
    },
  };
}

/** Bundles `entry` into build/xs-test/bundles/<name>.js (one ES2022 Script) and returns its path. */
export async function bundle(entry: string, name: string, options: BundleOptions = {}): Promise<string> {
  const root = projectRoot();
  const outfile = join(buildDir(), 'bundles', `${name}.js`);
  await build({
    absWorkingDir: root,
    entryPoints: [resolve(root, entry)],
    outfile,
    bundle: true,
    format: 'iife',
    platform: 'neutral',
    target: 'es2022',
    // The XS of @agoric/xsnap 0.15.0 throws "ReferenceError: get ?: not initialized yet" for a
    // static field that constructs its own class (@noble/curves: `static BASE = new Point(...)`):
    // esbuild moves static fields after the class body instead.
    supported: { 'class-static-field': false },
    mainFields: ['module', 'main'],
    conditions: ['import', 'default'],
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [nativesShim, vectorFiles, redirectPlugin(root, options.redirects ?? {})],
  });
  return outfile;
}

export interface HostRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a bundled script on the host; `wrapper` prefixes the command (e.g. valgrind). */
export function runOnHost(program: string, script: string, args: string[] = [], wrapper: string[] = []): HostRun {
  const [command, ...rest] = [...wrapper, program, script, ...args] as [string, ...string[]];
  const env = { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' };
  const result = spawnSync(command, rest, { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new Error(`xs-test: cannot run ${command}: ${result.error.message}`);
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}
