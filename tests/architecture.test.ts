/**
 * The layout is the architecture (README "Layout"): imports point one way —
 * tools and hosts depend on modules, modules on nothing outside them, hosts
 * on no tool or test — and nothing imports in a cycle (tools/verify's world
 * included: its parts see it through tools/verify/sim-types.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const ROOT = join(__dirname, '..');

type Graph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

function importGraph(): Graph {
  const graph: Graph = new Map();
  for (const top of ['modules', 'hosts', 'tools', 'tests']) {
    for (const file of sourceFiles(join(ROOT, top))) {
      const deps: string[] = [];
      for (const match of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const target = normalize(join(dirname(file), match[1] as string));
        const resolved = [`${target}.ts`, join(target, 'index.ts')].find((candidate) => existsSync(candidate));
        if (resolved !== undefined) deps.push(relative(ROOT, resolved));
      }
      graph.set(relative(ROOT, file), deps);
    }
  }
  return graph;
}

function findCycles(graph: Graph): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node);
  return cycles;
}

function wrongDirection(graph: Graph): string[] {
  const out: string[] = [];
  for (const [file, deps] of graph) {
    for (const dep of deps) {
      if (file.startsWith('modules/') && !dep.startsWith('modules/')) out.push(`${file} → ${dep}`);
      if (file.startsWith('hosts/') && (dep.startsWith('tools/') || dep.startsWith('tests/'))) out.push(`${file} → ${dep}`);
      if (file.startsWith('tools/') && dep.startsWith('tests/')) out.push(`${file} → ${dep}`);
    }
  }
  return out;
}

const graph = importGraph();

test('no import cycles anywhere', () => {
  expect(findCycles(graph).map((cycle) => cycle.join(' → '))).toEqual([]);
});

test('imports point one way: modules ← hosts ← tools ← tests', () => {
  expect(wrongDirection(graph)).toEqual([]);
});

test('the checks can fail: a cycle and a backwards import are found', () => {
  const broken: Graph = new Map(graph);
  broken.set('tools/verify/sim-types.ts', [...(graph.get('tools/verify/sim-types.ts') ?? []), 'tools/verify/world.ts']);
  broken.set('modules/device/loop.ts', [...(graph.get('modules/device/loop.ts') ?? []), 'hosts/node/clock.ts']);
  expect(findCycles(broken).length).toBeGreaterThan(0);
  expect(wrongDirection(broken)).toEqual(['modules/device/loop.ts → hosts/node/clock.ts']);
});
