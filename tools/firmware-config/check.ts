/**
 * `npm run firmware-config -- [APP_DIR] [key=value ...]`: the Lockstep
 * settings an mcconfig build of APP_DIR (default: the reference app) would
 * get, checked before building — the SDK has no build-time hook, so this
 * runs the library's own boot-time check (hosts/moddable/config.ts) on the
 * same merge mcconfig does: the library manifest's `config`, then the
 * application's (later includes first, as mcconfig orders them), then the
 * command line's key=value (strings, as mcconfig passes them). One line per
 * bad key; exit status 1 if there is any.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { checkFirmwareConfig } from '../../hosts/moddable/config';

type Manifest = { include?: string | string[]; config?: Record<string, unknown>; platforms?: Record<string, Manifest> };

/** The config sections of `manifestPath` and the local manifests it includes, in mcconfig's merge order (includes first). */
export function mergedConfig(manifestPath: string, platform = 'lin', seen = new Set<string>()): Record<string, unknown> {
  if (seen.has(manifestPath)) return {};
  seen.add(manifestPath);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const platformPart = manifest.platforms?.[platform] ?? manifest.platforms?.['...'];
  const includes = [manifest.include, platformPart?.include].flatMap((value) => (value === undefined ? [] : Array.isArray(value) ? value : [value]));
  const merged: Record<string, unknown> = {};
  for (const include of includes) {
    if (include.startsWith('$(')) continue; // the SDK's manifests hold none of Lockstep's keys
    Object.assign(merged, mergedConfig(resolve(dirname(manifestPath), include), platform, seen));
  }
  return Object.assign(merged, manifest.config ?? {}, platformPart?.config ?? {});
}

export function checkApplicationConfig(appDir: string, assignments: readonly string[], platform = 'lin'): string[] {
  const manifest = join(appDir, 'manifest.json');
  if (!existsSync(manifest)) return [`${manifest}: no manifest`];
  const config = mergedConfig(manifest, platform);
  for (const assignment of assignments) {
    const at = assignment.indexOf('=');
    if (at <= 0) return [`${assignment}: expected key=value`];
    config[assignment.slice(0, at)] = assignment.slice(at + 1);
  }
  const check = checkFirmwareConfig(config, '/tmp/');
  return check.ok ? [] : [...check.problems];
}

function main(argv: readonly string[]): number {
  const platformArg = argv.find((arg) => arg.startsWith('-p='));
  const rest = argv.filter((arg) => arg !== platformArg);
  const appDir = rest[0] !== undefined && !rest[0].includes('=') ? resolve(rest[0]) : resolve('.');
  const assignments = rest.filter((arg) => arg.includes('='));
  const problems = checkApplicationConfig(appDir, assignments, platformArg?.slice(3) ?? 'lin');
  for (const problem of problems) process.stdout.write(`${problem}\n`);
  if (problems.length === 0) process.stdout.write(`firmware-config: ${appDir}: Lockstep settings ok\n`);
  return problems.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && /firmware-config[\\/]check\.ts$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
