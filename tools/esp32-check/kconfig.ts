/**
 * A stand-in for IDF's `sdkconfig.h`, which module C files include and which
 * `idf.py reconfigure` (kconfgen) would generate; neither runs here.
 *
 * How each value is derived, in order (the first that applies wins):
 *   1. the sdkconfig.defaults files mcconfig merges for this build
 *      (Moddable's build/devices/esp32/xsProj-<subclass>/sdkconfig.defaults,
 *      then .release for a release build, then the project's SDKCONFIGPATH
 *      file; tools/mcmanifest.js), old names mapped by IDF's sdkconfig.rename;
 *   2. a `choice`: the member those files set to y, else the choice's default;
 *   3. `select` from a symbol that is y;
 *   4. the symbol's first `default` whose `if` holds, in IDF's Kconfig files
 *      (every components/<c>/Kconfig*, the target's Kconfig.soc_caps.in and
 *      the top-level Kconfig; files of other targets are skipped);
 *   5. otherwise a bool is n (not written) and an int/hex/string is absent.
 * A symbol whose `depends on` (including enclosing `if`/`menu`) is false is n.
 * This is a small evaluator, not kconfgen: `range`, `imply`, `visible if` and
 * warnings are ignored. Every value the checked C files can see is reported
 * with its origin (`provenance`), so a reader can check each one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

type Kind = 'bool' | 'tristate' | 'int' | 'hex' | 'string';

interface Symbol {
  name: string;
  kind?: Kind;
  defaults: Array<{ value: string; cond?: string; at: string }>;
  depends: string[];
  selects: Array<{ target: string; cond?: string }>;
  choice?: Choice;
  at: string;
}

interface Choice {
  defaults: Array<{ value: string; cond?: string }>;
  members: string[];
  depends: string[];
}

export interface SdkconfigInputs {
  readonly idfPath: string;
  readonly target: string;
  /** sdkconfig.defaults files in merge order (later wins). */
  readonly defaultsFiles: readonly string[];
}

export interface Sdkconfig {
  readonly values: Map<string, string>;
  /** CONFIG_NAME → where its value came from. */
  readonly provenance: Map<string, string>;
  readonly header: string;
}

const TARGETS = ['esp32', 'esp32s2', 'esp32s3', 'esp32c2', 'esp32c3', 'esp32c5', 'esp32c6', 'esp32c61', 'esp32h2', 'esp32h21', 'esp32h4', 'esp32p4', 'linux'];

function kconfigFiles(idfPath: string, target: string): string[] {
  const files: string[] = [join(idfPath, 'Kconfig')];
  const caps = join(idfPath, 'components/soc', target, 'include/soc/Kconfig.soc_caps.in');
  if (existsSync(caps)) files.push(caps);
  const walk = (dir: string, depth: number): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (depth >= 4 || name === 'test_apps' || name === 'test' || name === 'mbedtls' && dir.endsWith('components/mbedtls')) continue;
        if (TARGETS.includes(name) && name !== target) continue;
        walk(path, depth + 1);
      } else if (name.startsWith("Kconfig") && name !== "Kconfig.soc_caps.in") files.push(path);
    }
  };
  walk(join(idfPath, 'components'), 0);
  return files;
}

/** Parses the subset of Kconfig that IDF's files use for values and dependencies. */
function parse(files: readonly string[], root: string): Map<string, Symbol> {
  const symbols = new Map<string, Symbol>();
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n');
    const blockDepends: string[][] = []; // if / menu stack: conditions
    const blockKinds: string[] = [];
    let current: Symbol | undefined;
    let choice: Choice | undefined;
    let inChoiceHeader = false;
    let help = -1;
    for (let n = 0; n < lines.length; n++) {
      let raw = lines[n]!;
      while (raw.endsWith('\\') && n + 1 < lines.length) raw = raw.slice(0, -1) + ' ' + lines[++n]!;
      const indent = raw.length - raw.trimStart().length;
      const line = raw.replace(/\t/g, '        ').trim();
      if (help >= 0) {
        if (line === '' || indent > help) continue;
        help = -1;
      }
      if (line === '' || line.startsWith('#')) continue;
      const at = `${relative(root, file)}:${n + 1}`;
      const [word, ...rest] = line.split(/\s+/);
      const tail = rest.join(' ');
      const enclosing = (): string[] => blockDepends.flat();
      switch (word) {
        case 'config':
        case 'menuconfig': {
          const name = rest[0]!;
          const existing = symbols.get(name);
          current = existing ?? { name, defaults: [], depends: [], selects: [], at };
          // A symbol defined twice takes the union of its definitions' conditions, like kconfig does for defaults.
          if (existing === undefined) symbols.set(name, current);
          current.depends.push(...enclosing());
          if (choice !== undefined) {
            current.choice = choice;
            choice.members.push(name);
          }
          inChoiceHeader = false;
          break;
        }
        case 'choice':
          choice = { defaults: [], members: [], depends: [...enclosing()] };
          inChoiceHeader = true;
          current = undefined;
          break;
        case 'endchoice':
          choice = undefined;
          current = undefined;
          break;
        case 'if':
          blockDepends.push([tail]);
          blockKinds.push('if');
          current = undefined;
          break;
        case 'menu':
          blockDepends.push([]);
          blockKinds.push('menu');
          current = undefined;
          break;
        case 'endif':
        case 'endmenu':
          blockDepends.pop();
          blockKinds.pop();
          current = undefined;
          break;
        case 'bool':
        case 'tristate':
        case 'int':
        case 'hex':
        case 'string':
        case 'def_bool':
        case 'def_int':
        case 'def_hex':
        case 'def_string': {
          const kind = word.replace('def_', '') as Kind;
          if (current !== undefined) current.kind = kind;
          if (word.startsWith('def_') && current !== undefined) {
            const [value, cond] = splitIf(tail);
            current.defaults.push({ value, ...(cond === undefined ? {} : { cond }), at });
          }
          break;
        }
        case 'default': {
          const [value, cond] = splitIf(tail);
          if (inChoiceHeader && choice !== undefined) choice.defaults.push({ value, ...(cond === undefined ? {} : { cond }) });
          else if (current !== undefined) current.defaults.push({ value, ...(cond === undefined ? {} : { cond }), at });
          break;
        }
        case 'depends': {
          const expr = tail.replace(/^on\s+/, '');
          if (current !== undefined) current.depends.push(expr);
          else if (inChoiceHeader && choice !== undefined) choice.depends.push(expr);
          else if (blockKinds.at(-1) === 'menu') blockDepends.at(-1)!.push(expr);
          break;
        }
        case 'select': {
          const [target, cond] = splitIf(tail);
          current?.selects.push({ target, ...(cond === undefined ? {} : { cond }) });
          break;
        }
        case 'help':
        case '---help---':
          help = indent;
          break;
        default:
          break;
      }
    }
  }
  return symbols;
}

function splitIf(text: string): [string, string | undefined] {
  // `default "a if b" if c` is rare; IDF's quoted defaults never contain " if ".
  const match = /^(.*?)\s+if\s+(.*)$/.exec(text);
  return match === null ? [text.trim(), undefined] : [match[1]!.trim(), match[2]!.trim()];
}

function readDefaults(file: string, renames: Map<string, string>): Map<string, { value: string; at: string }> {
  const values = new Map<string, { value: string; at: string }>();
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((line, i) => {
      const set = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
      const unset = /^#\s*CONFIG_([A-Za-z0-9_]+) is not set/.exec(line.trim());
      const name = set?.[1] ?? unset?.[1];
      if (name === undefined) return;
      const value = set !== null ? (set[2] === '' ? 'n' : set[2]!) : 'n';
      values.set(renames.get(name) ?? name, { value, at: `${file}:${i + 1}` });
    });
  return values;
}

function readRenames(idfPath: string): Map<string, string> {
  const renames = new Map<string, string>();
  const walk = (dir: string, depth: number): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (depth < 3 && name !== 'test_apps') walk(path, depth + 1);
      } else if (name === 'sdkconfig.rename') {
        for (const line of readFileSync(path, 'utf8').split('\n')) {
          const m = /^CONFIG_(\w+)\s+CONFIG_(\w+)\s*$/.exec(line.trim());
          if (m !== null) renames.set(m[1]!, m[2]!);
        }
      }
    }
  };
  walk(join(idfPath, 'components'), 0);
  return renames;
}

export function deriveSdkconfig(inputs: SdkconfigInputs): Sdkconfig {
  const root = inputs.idfPath;
  const symbols = parse(kconfigFiles(root, inputs.target), root);
  const renames = readRenames(root);
  const given = new Map<string, { value: string; at: string }>();
  for (const file of inputs.defaultsFiles) for (const [k, v] of readDefaults(file, renames)) given.set(k, v);
  const env: Record<string, string> = { IDF_TARGET: inputs.target, IDF_INIT_VERSION: '$IDF_INIT_VERSION', IDF_ENV_FPGA: '', IDF_ENV_BRINGUP: '', IDF_CI_BUILD: '' };

  const values = new Map<string, string>();
  const provenance = new Map<string, string>();
  const selected = new Map<string, string>(); // target → selecting symbol
  const state = new Map<string, 'busy' | 'done'>();

  const literal = (text: string): string => {
    const t = text.trim();
    if (t.startsWith('"')) return t.slice(1, -1).replace(/\$\(?([A-Z_]+)\)?/g, (_, name: string) => env[name] ?? '');
    return t;
  };
  const valueOf = (name: string): string => {
    if (name === 'y' || name === 'n' || /^-?(0x[0-9a-fA-F]+|\d+)$/.test(name)) return name;
    if (!symbols.has(name)) return 'n';
    evaluate(name);
    return values.get(name) ?? (symbols.get(name)!.kind === 'bool' ? 'n' : '');
  };
  const truth = (expr: string | undefined): boolean => expr === undefined || evalExpr(expr, valueOf, literal) === 'y';
  const evaluate = (name: string): void => {
    if (state.get(name) === 'done' || state.get(name) === 'busy') return;
    state.set(name, 'busy');
    const symbol = symbols.get(name)!;
    const kind = symbol.kind ?? 'bool';
    const enabled = symbol.depends.every((d) => truth(d)) && (symbol.choice === undefined || symbol.choice.depends.every((d) => truth(d)));
    let value: string | undefined;
    let from = '';
    if (!enabled) {
      value = kind === 'bool' ? 'n' : undefined;
      from = `depends on false (${symbol.at})`;
    } else if (given.has(name) && symbol.choice === undefined) {
      value = given.get(name)!.value;
      from = given.get(name)!.at;
    } else if (symbol.choice !== undefined) {
      const choice = symbol.choice;
      const chosenByFile = choice.members.find((m) => given.get(m)?.value === 'y');
      const chosen = chosenByFile ?? choice.defaults.find((d) => truth(d.cond))?.value ?? choice.members[0];
      value = chosen === name ? 'y' : 'n';
      from = chosenByFile !== undefined ? `choice: ${given.get(chosenByFile)!.at}` : `choice default (${symbol.at})`;
    } else {
      const hit = symbol.defaults.find((d) => truth(d.cond));
      if (hit !== undefined) {
        value = kind === 'bool' || kind === 'tristate' ? evalExpr(hit.value, valueOf, literal) : kind === 'string' ? literal(hit.value) : valueOf(hit.value);
        from = `default ${hit.at}`;
      } else {
        value = kind === 'bool' ? 'n' : undefined;
        from = `no default (${symbol.at})`;
      }
    }
    state.set(name, 'done');
    if (value !== undefined) values.set(name, value);
    provenance.set(name, from);
  };
  for (const name of symbols.keys()) evaluate(name);
  // `select` forces a bool to y; iterate to a fixpoint (selects chain).
  for (let changed = true; changed; ) {
    changed = false;
    for (const symbol of symbols.values()) {
      if (values.get(symbol.name) !== 'y') continue;
      for (const s of symbol.selects) {
        if (symbols.has(s.target) && values.get(s.target) !== 'y' && truth(s.cond)) {
          values.set(s.target, 'y');
          provenance.set(s.target, `selected by ${symbol.name} (${symbol.at})`);
          selected.set(s.target, symbol.name);
          changed = true;
        }
      }
    }
  }
  const lines = ['/* Generated by tools/esp32-check (a stand-in for IDF kconfgen; see kconfig.ts). */', '#pragma once'];
  for (const [name, value] of [...values].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const kind = symbols.get(name)!.kind ?? 'bool';
    if (kind === 'bool' || kind === 'tristate') {
      if (value === 'y') lines.push(`#define CONFIG_${name} 1`);
    } else if (kind === 'string') lines.push(`#define CONFIG_${name} ${JSON.stringify(value)}`);
    else if (value !== '') lines.push(`#define CONFIG_${name} ${kind === 'hex' && !value.startsWith('0x') ? '0x' + value : value}`);
  }
  for (const [old, now] of renames) if (values.get(now) !== undefined && values.get(now) !== 'n') lines.push(`#define CONFIG_${old} CONFIG_${now}`);
  const prov = new Map<string, string>();
  for (const [name, from] of provenance) prov.set(`CONFIG_${name}`, from);
  const vals = new Map<string, string>();
  for (const [name, value] of values) vals.set(`CONFIG_${name}`, value);
  return { values: vals, provenance: prov, header: lines.join('\n') + '\n' };
}

/** Kconfig expressions: symbols, "strings", =, !=, <, >, <=, >=, !, &&, ||, parentheses. Returns 'y' or 'n' for logic. */
export function evalExpr(expr: string, valueOf: (name: string) => string, literal: (text: string) => string): string {
  const tokens = expr.match(/"[^"]*"|&&|\|\||!=|<=|>=|[=<>!()]|[A-Za-z0-9_$-]+/g) ?? [];
  let i = 0;
  const atom = (): string => {
    const t = tokens[i++];
    if (t === undefined) return 'n';
    if (t === '(') {
      const v = or();
      i++; // ')'
      return v;
    }
    if (t === '!') return atom() === 'y' ? 'n' : 'y';
    if (/^-?(0x[0-9a-fA-F]+|\d+)$/.test(t)) return t; // a number is itself
    return t.startsWith('"') ? literal(t) : valueOf(t);
  };
  const compare = (): string => {
    const left = atom();
    const op = tokens[i];
    if (op === '=' || op === '!=' || op === '<' || op === '>' || op === '<=' || op === '>=') {
      i++;
      const right = atom();
      const num = (s: string): number => Number(s);
      const both = !Number.isNaN(num(left)) && !Number.isNaN(num(right)) && left !== '' && right !== '';
      const r = op === '=' ? left === right : op === '!=' ? left !== right : both ? (op === '<' ? num(left) < num(right) : op === '>' ? num(left) > num(right) : op === '<=' ? num(left) <= num(right) : num(left) >= num(right)) : false;
      return r ? 'y' : 'n';
    }
    return left === 'y' ? 'y' : left === 'n' || left === '' ? 'n' : left;
  };
  const and = (): string => {
    let v = compare();
    while (tokens[i] === '&&') {
      i++;
      const r = compare();
      v = v === 'y' && r === 'y' ? 'y' : 'n';
    }
    return v;
  };
  const or = (): string => {
    let v = and();
    while (tokens[i] === '||') {
      i++;
      const r = and();
      v = v === 'y' || r === 'y' ? 'y' : 'n';
    }
    return v;
  };
  return or();
}
