/**
 * Deliberately broken variants of the hub core, built from the real source
 * (modules/hub/hub.ts) by exact textual patches: each patch must match
 * exactly once, so a variant can never silently be the unchanged core. The
 * patched copy lives in a temporary folder with its imports pointing back
 * at the real modules, and is loaded through jest's own transform.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HubCore } from '../../modules/hub/hub';

const MODULES = join(__dirname, '..', '..', 'modules');

export type Patch = readonly [from: string, to: string];

export function hubVariant(name: string, patches: readonly Patch[]): typeof HubCore {
  let source = readFileSync(join(MODULES, 'hub', 'hub.ts'), 'utf8');
  for (const [from, to] of patches) {
    const count = source.split(from).length - 1;
    if (count !== 1) throw new Error(`variant ${name}: the patch target occurs ${count} times: ${from}`);
    source = source.replace(from, to);
  }
  source = source.replace(/from '\.\.\/([^']+)'/g, (_match, path: string) => `from '${join(MODULES, path)}'`).replace(/from '\.\/([^']+)'/g, (_match, path: string) => `from '${join(MODULES, 'hub', path)}'`);
  const folder = mkdtempSync(join(tmpdir(), 'lockstep-hub-variant-'));
  const file = join(folder, `hub-${name}.ts`);
  writeFileSync(file, source);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(file) as { HubCore: typeof HubCore }).HubCore;
  } finally {
    rmSync(folder, { recursive: true, force: true }); // loaded (and compiled) once; nothing is left in the temporary folder
  }
}
