/**
 * The requirement catalogue (tools/conformance/requirements.ts) and
 * docs/PROTOCOL.md name exactly the same ids (every MUST of the spec in bold,
 * in the section the catalogue gives), and the ids are unique and
 * well-formed. Each property is also shown failing on a broken variant of
 * the spec or of the catalogue.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkCatalogue, type CatalogueProblemKind } from '../tools/conformance/catalogue-check';
import { REQUIREMENTS, requirement, scopeOf, type Requirement, type RequirementFeature } from '../tools/conformance/requirements';
import {
  HANDSHAKE_TIMEOUT_MAX_MS,
  HANDSHAKE_TIMEOUT_MIN_MS,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MIN_MS,
  IDLE_TIMEOUT_MS,
  KEEPALIVE_INTERVAL_MAX_MS,
  KEEPALIVE_INTERVAL_MS,
  REKEY_RETRY_INITIAL_MS,
  REKEY_RETRY_MAX_MS,
  REKEY_RETRY_MIN_MS,
} from '../modules/protocol/constants';

const SPEC = readFileSync(join(__dirname, '..', 'docs', 'PROTOCOL.md'), 'utf8');

function kinds(requirements: readonly Requirement[], spec: string): [CatalogueProblemKind, string][] {
  return checkCatalogue(requirements, spec).map((problem) => [problem.kind, problem.id]);
}

describe('the catalogue against docs/PROTOCOL.md', () => {
  test('no problems: unique, well-formed ids, each stated in bold in its section, and the same set on both sides', () => {
    expect(checkCatalogue(REQUIREMENTS, SPEC)).toEqual([]);
    expect(REQUIREMENTS.length).toBeGreaterThanOrEqual(100);
  });

  test('every scope is represented and every id resolves', () => {
    const scopes = new Set(REQUIREMENTS.map((entry) => scopeOf(entry.id)));
    expect([...scopes].sort()).toEqual(['device', 'hub', 'wire']);
    for (const entry of REQUIREMENTS) expect(requirement(entry.id)).toBe(entry);
    expect(() => requirement('H-KEY-999')).toThrow(/unknown requirement id/);
  });

  test('a spec that no longer states an id fails with that id', () => {
    const broken = SPEC.split('**W-FRAME-2**').join('');
    expect(kinds(REQUIREMENTS, broken)).toEqual([['notInSpec', 'W-FRAME-2']]);
  });

  test('a spec that states an id the catalogue lacks fails with that id (a typo included)', () => {
    expect(kinds(REQUIREMENTS, `${SPEC}\nA new rule MUST hold **H-KEY-99**.\n`)).toEqual([['notInCatalogue', 'H-KEY-99']]);
    expect(kinds(REQUIREMENTS, SPEC.split('**H-REKEY-1**').join('**H-REKEY-l**'))).toEqual([
      ['notInSpec', 'H-REKEY-1'],
      ['notInCatalogue', 'H-REKEY-l'],
    ]);
  });

  test('an id stated only outside its section fails', () => {
    const moved = REQUIREMENTS.map((entry) => (entry.id === 'W-PING-1' ? { ...entry, section: '§7' } : entry));
    expect(kinds(moved, SPEC)).toEqual([['notInItsSection', 'W-PING-1']]);
  });

  test('a duplicate, a malformed id, an unknown or malformed section and a bad summary each fail', () => {
    const first = REQUIREMENTS[0] as Requirement;
    expect(kinds([...REQUIREMENTS, first], SPEC)).toEqual([['duplicateId', first.id]]);
    const variants: [Requirement, CatalogueProblemKind][] = [
      [{ id: 'H-key-1', section: '§5', summary: 'lower-case area' }, 'malformedId'],
      [{ id: 'H-KEY-0', section: '§5', summary: 'numbers start at 1' }, 'malformedId'],
      [{ id: 'W-FRAME-1', section: '§99', summary: 'no such section' }, 'unknownSection'],
      [{ id: 'W-FRAME-1', section: '2', summary: 'no § sign' }, 'malformedSection'],
      [{ id: 'W-FRAME-1', section: '§2', summary: 'two\nlines' }, 'badSummary'],
    ];
    for (const [entry, kind] of variants) {
      const catalogue = REQUIREMENTS.map((existing) => (existing.id === entry.id ? entry : existing));
      const withEntry = catalogue.includes(entry) ? catalogue : [...catalogue, entry];
      expect(kinds(withEntry, SPEC).map(([found]) => found)).toContain(kind);
    }
  });
});

/**
 * The features of §15's table, by id: each row names its feature in
 * backquotes and lists ids and ranges ("H-DH-1 … H-DH-7").
 */
function specFeatures(spec: string): Map<string, RequirementFeature> {
  const section = spec.slice(spec.indexOf('## 15. Conformance'), spec.indexOf('## 16.'));
  const features = new Map<string, RequirementFeature>();
  for (const row of section.matchAll(/^\| `(dh|recovery|tls)` [^|]*\|[^|]*\| ([^|]+) \|$/gm)) {
    const feature = row[1] as RequirementFeature;
    for (const item of (row[2] as string).split(/[;,]/).map((part) => part.trim())) {
      const range = /^([WHD]-[A-Z]+-)(\d+)(?: … \1(\d+))?$/.exec(item);
      if (range === null) throw new Error(`§15: cannot read "${item}"`);
      const first = Number(range[2]);
      const last = range[3] === undefined ? first : Number(range[3]);
      for (let n = first; n <= last; n++) features.set(`${range[1]}${n}`, feature);
    }
  }
  return features;
}

/** Ids whose catalogue feature is not the one §15 lists (core = absent from the table). */
function featureMismatches(requirements: readonly Requirement[], spec: string): string[] {
  const listed = specFeatures(spec);
  const known = new Set(requirements.map((entry) => entry.id));
  const wrong = requirements.filter((entry) => entry.feature !== listed.get(entry.id)).map((entry) => entry.id);
  const unknown = [...listed.keys()].filter((id) => !known.has(id));
  return [...wrong, ...unknown].sort();
}

describe("the profiles of §15 against the catalogue's features", () => {
  test('every id has the feature §15 lists for it, and §15 lists no unknown id', () => {
    expect(featureMismatches(REQUIREMENTS, SPEC)).toEqual([]);
    const counts = { dh: 0, recovery: 0, tls: 0, core: 0 };
    for (const entry of REQUIREMENTS) counts[entry.feature ?? 'core']++;
    expect(counts).toEqual({ dh: 17, recovery: 32, tls: 5, core: REQUIREMENTS.length - 54 });
  });

  test('a catalogue entry with the wrong feature, or a core id tagged, fails with its id', () => {
    const wrong = REQUIREMENTS.map((entry) => (entry.id === 'H-DH-4' ? { ...entry, feature: 'recovery' as const } : entry.id === 'W-HDR-2' ? { ...entry, feature: 'dh' as const } : entry));
    expect(featureMismatches(wrong, SPEC)).toEqual(['H-DH-4', 'W-HDR-2']);
    const untagged = REQUIREMENTS.map((entry) => (entry.id === 'D-TLS-1' ? { id: entry.id, section: entry.section, summary: entry.summary } : entry));
    expect(featureMismatches(untagged, SPEC)).toEqual(['D-TLS-1']);
  });

  test('a spec whose table drops an id, or shortens a range, fails with those ids', () => {
    expect(featureMismatches(REQUIREMENTS, SPEC.replace('H-REVOKE-1, H-REVOKE-2, ', ''))).toEqual(['H-REVOKE-1', 'H-REVOKE-2']);
    expect(featureMismatches(REQUIREMENTS, SPEC.replace('D-DH-1 … D-DH-7', 'D-DH-1 … D-DH-6'))).toEqual(['D-DH-7']);
    expect(featureMismatches(REQUIREMENTS, SPEC.replace('W-TLS-1;', 'W-TLS-1, W-TLS-2;'))).toEqual(['W-TLS-2']);
  });
});

describe('requirement ids cited in code comments', () => {
  const CITED = /\b[WHD]-[A-Z]+-[0-9]+\b/g;
  function sourceFiles(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
    );
  }
  const uncited = (text: string): string[] => [...new Set([...text.matchAll(CITED)].map((match) => match[0]))].filter((id) => !REQUIREMENTS.some((entry) => entry.id === id));

  test('every id modules/ cites is in the catalogue', () => {
    const root = join(__dirname, '..', 'modules');
    const cited = sourceFiles(root).flatMap((file) => uncited(readFileSync(file, 'utf8')).map((id) => `${file}: ${id}`));
    expect(cited).toEqual([]);
  });

  test('a stale citation is caught', () => {
    expect(uncited('// H-REKEY-1 and H-REKEY-77')).toEqual(['H-REKEY-77']);
  });
});

describe("the reference constants are within the spec's timer bounds (§8.4, §10)", () => {
  interface Timers {
    readonly keepaliveMs: number;
    readonly idleMs: number;
    readonly handshakeMs: number;
    readonly retryInitialMs: number;
    readonly retryMaxMs: number;
  }
  /** The bounds of §8.4 a peer's timer choice breaks, by requirement id. */
  function brokenBounds(timers: Timers): string[] {
    const broken: string[] = [];
    if (timers.keepaliveMs > KEEPALIVE_INTERVAL_MAX_MS) broken.push('D-TIMER-1');
    if (timers.idleMs < 3 * timers.keepaliveMs) broken.push('D-TIMER-2');
    if (timers.idleMs < IDLE_TIMEOUT_MIN_MS) broken.push('H-TIMER-1');
    if (timers.handshakeMs < HANDSHAKE_TIMEOUT_MIN_MS || timers.handshakeMs > HANDSHAKE_TIMEOUT_MAX_MS) broken.push('H-TIMER-2');
    // Equal jitter: a delay d is drawn in [d/2, d], so the first re-offer comes at least initial/2 after the offer.
    if (timers.retryInitialMs / 2 < REKEY_RETRY_MIN_MS) broken.push('H-RETRY-2');
    if (timers.retryMaxMs > REKEY_RETRY_MAX_MS) broken.push('H-RETRY-1');
    return broken;
  }
  const reference: Timers = {
    keepaliveMs: KEEPALIVE_INTERVAL_MS,
    idleMs: IDLE_TIMEOUT_MS,
    handshakeMs: HANDSHAKE_TIMEOUT_MS,
    retryInitialMs: REKEY_RETRY_INITIAL_MS,
    retryMaxMs: REKEY_RETRY_MAX_MS,
  };

  test('the reference peers keep every bound', () => {
    expect(brokenBounds(reference)).toEqual([]);
    for (const id of ['D-TIMER-1', 'D-TIMER-2', 'H-TIMER-1', 'H-TIMER-2', 'H-RETRY-1', 'H-RETRY-2']) expect(requirement(id).section).toBe('§8.4');
  });

  test('a hub with a 10 s idle timeout, or a device with a 20 s keep-alive, breaks the bound it should', () => {
    expect(brokenBounds({ ...reference, idleMs: 10_000 })).toEqual(['D-TIMER-2', 'H-TIMER-1']);
    expect(brokenBounds({ ...reference, keepaliveMs: 20_000 })).toEqual(['D-TIMER-1', 'D-TIMER-2']);
    expect(brokenBounds({ ...reference, retryInitialMs: 500, handshakeMs: 5_000 })).toEqual(['H-TIMER-2', 'H-RETRY-2']);
  });
});
