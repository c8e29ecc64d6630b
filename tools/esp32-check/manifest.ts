/**
 * What mcconfig takes from the manifests for one esp32 (sub)platform, for the
 * C side of the build only: the C files it compiles, the include folders it
 * adds (DIRECTORIES in the generated makefile), the IDF components it links
 * (ESP_COMPONENTS) and the `build` variables (ESP32_SUBCLASS, SDKCONFIGPATH).
 *
 * Rules followed (Moddable SDK 8.2.3, tools/mcmanifest.js):
 * - `matchPlatform`: the longest match of the full platform, trying `x/*`
 *   and `*\/x` keys, then dropping the last path part; "..." last.
 * - A platform section's `include` is appended to the manifest's.
 * - Under `modules`, a `.c` file adds itself, a `.h` file adds its folder,
 *   and a source ending in "/" that matches no file adds itself as a folder
 *   (ModulesRule.appendSource / Rule.iterate).
 * - `$(NAME)` is replaced from the environment (MODDABLE, MODULES, BUILD,
 *   IDF_PATH, SUBPLATFORMMANIFEST, ...).
 * - The SDK's platform manifest ($(BUILD)/devices/esp32/manifest.json) is
 *   part of every esp32 build; it includes the subplatform's manifest.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export interface ManifestPart {
  include?: string | string[];
  modules?: Record<string, string | string[]>;
  platforms?: Record<string, ManifestPart>;
  build?: Record<string, string>;
  dependency?: Array<{ idf?: string; name?: string; namespace?: string; includes?: string[] }>;
  error?: string;
}

export interface ResolvedBuild {
  /** Absolute paths of every C file mcconfig compiles, in manifest order. */
  readonly cFiles: string[];
  /** Include folders exactly as written into DIRECTORIES (trailing slash kept). */
  readonly cFolders: string[];
  /** `{ "idf": name }` dependencies: IDF components added to ESP_COMPONENTS. */
  readonly idfComponents: string[];
  /** MANAGED_COMPONENT_DIRS as mcmanifest.js writes it (one `.../include` per dependency). */
  readonly managedComponentDirs: string[];
  readonly build: Record<string, string>;
  readonly errors: string[];
  /** Manifests read, and `$(...)` includes that could not be found. */
  readonly manifests: string[];
  readonly missing: string[];
}

export interface ResolveOptions {
  /** The project's top-level manifest.json. */
  readonly manifest: string;
  /** "esp32" or "esp32/<subplatform>". */
  readonly platform: string;
  /** The Moddable SDK; when absent, SDK manifests are not read (fixture and CI mode). */
  readonly moddable?: string;
  readonly idfPath?: string;
}

const asArray = (value: string | string[] | undefined): string[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

export function matchPlatform(platforms: Record<string, ManifestPart> | undefined, name: string): ManifestPart | undefined {
  if (platforms === undefined) return undefined;
  const parts = name.split('/');
  while (parts.length > 0) {
    const partial = parts.join('/');
    for (const key of Object.keys(platforms)) {
      if (key.endsWith('/*') ? partial.startsWith(key.slice(0, -1)) : key.startsWith('*/') ? partial.endsWith(key.slice(1)) : partial === key) return platforms[key];
    }
    parts.pop();
  }
  return platforms['...'];
}

export function resolveManifests(options: ResolveOptions): ResolvedBuild {
  const env: Record<string, string> = {};
  const [platform, subplatform] = options.platform.split('/');
  if (platform !== 'esp32') throw new Error(`esp32-check: only esp32 platforms, not ${options.platform}`);
  if (options.moddable !== undefined) {
    env['MODDABLE'] = options.moddable;
    env['MODULES'] = join(options.moddable, 'modules');
    env['BUILD'] = join(options.moddable, 'build');
    if (subplatform !== undefined) {
      env['SUBPLATFORM'] = subplatform;
      env['SUBPLATFORMDIRECTORY'] = join(options.moddable, 'build/devices/esp32/targets', subplatform);
      env['SUBPLATFORMMANIFEST'] = join(env['SUBPLATFORMDIRECTORY'], 'manifest.json');
    }
  }
  if (options.idfPath !== undefined) env['IDF_PATH'] = options.idfPath;
  env['PLATFORM'] = platform;
  env['FULLPLATFORM'] = options.platform;

  const result: ResolvedBuild = { cFiles: [], cFolders: [], idfComponents: [], managedComponentDirs: [], build: {}, errors: [], manifests: [], missing: [] };
  const seen = new Set<string>();
  const substitute = (value: string): string | undefined => {
    let unknown = false;
    const out = value.replace(/\$\(([^)]+)\)/g, (_, name: string) => {
      const v = env[name] ?? process.env[name];
      if (v === undefined) unknown = true;
      return v ?? '';
    });
    return unknown ? undefined : out;
  };
  const addFolder = (folder: string): void => {
    if (!result.cFolders.includes(folder)) result.cFolders.push(folder);
  };
  const addSource = (source: string, dir: string): void => {
    const path = substitute(source);
    if (path === undefined) {
      result.missing.push(source);
      return;
    }
    const full = resolve(dir, path);
    const folder = path.endsWith('/') ? full : dirname(full);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) {
      result.errors.push(`directory not found: ${source}`);
      return;
    }
    const name = path.endsWith('/') ? '' : basename(full);
    const star = name.lastIndexOf('*');
    const prefix = star >= 0 ? name.slice(0, star) : name;
    let count = 0;
    for (const file of readdirSync(folder).sort()) {
      if (file.startsWith('.')) continue;
      const dot = file.endsWith('.d.ts') ? file.length - 5 : file.lastIndexOf('.');
      const stem = dot > 0 ? file.slice(0, dot) : file;
      const matches = star >= 0 ? stem.startsWith(prefix) : stem === prefix || file === prefix;
      if (!matches || name === '') continue;
      count++;
      if (file.endsWith('.c') && !result.cFiles.includes(join(folder, file))) result.cFiles.push(join(folder, file));
      else if (file.endsWith('.h')) addFolder(folder);
    }
    if (count === 0 && path.endsWith('/')) addFolder(path.startsWith('/') ? path : full + '/');
  };
  const apply = (part: ManifestPart, dir: string, includes: string[]): void => {
    if (part.error !== undefined) result.errors.push(part.error);
    for (const [key, value] of Object.entries(part.build ?? {})) {
      // parseBuild: a value is resolved when read, so later entries may use earlier ones;
      // "NAME ?=" takes the shell's NAME when set; a value starting "./" is relative to the manifest's folder.
      const optional = key.endsWith(' ?=');
      const name = optional ? key.slice(0, -3) : key;
      const shell = optional ? process.env[name] : undefined;
      let resolved = shell ?? substitute(value) ?? value;
      if (shell === undefined && resolved.startsWith('./')) resolved = join(dir, resolved);
      env[name] = resolved;
      result.build[name] = resolved;
    }
    includes.push(...asArray(part.include));
    for (const [name, sources] of Object.entries(part.modules ?? {})) {
      if (name === '~') continue;
      for (const source of asArray(sources)) addSource(source, dir);
    }
    for (const dep of part.dependency ?? []) {
      if (dep.idf !== undefined && !result.idfComponents.includes(dep.idf)) result.idfComponents.push(dep.idf);
    }
  };
  const visit = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    result.manifests.push(path);
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as ManifestPart;
    const dir = dirname(path);
    const includes: string[] = [];
    apply(manifest, dir, includes);
    const section = matchPlatform(manifest.platforms, options.platform);
    if (section !== undefined) {
      apply(section, dir, includes);
      // mcmanifest.js records a platform section's dependency list per manifest;
      // generateDependenciesDefinitions writes one MANAGED_COMPONENT_DIRS line each.
      for (const dep of section.dependency ?? []) {
        const base = `xsProj-${'$(ESP32_SUBCLASS)'}/managed_components/${dep.namespace ?? 'espressif'}__${dep.name ?? 'undefined'}/`;
        result.managedComponentDirs.push(`$(TMP_DIR)/${base}include`);
      }
    }
    for (const include of includes) {
      const resolved = substitute(include);
      if (resolved === undefined) {
        result.missing.push(include);
        continue;
      }
      const target = resolve(dir, resolved);
      if (!existsSync(target)) {
        result.missing.push(include);
        continue;
      }
      visit(target);
    }
  };
  visit(resolve(options.manifest));
  if (options.moddable !== undefined) {
    // mcconfig adds the platform's own manifest to every build.
    const platformManifest = join(options.moddable, 'build/devices/esp32/manifest.json');
    if (existsSync(platformManifest)) visit(platformManifest);
  }
  return result;
}
