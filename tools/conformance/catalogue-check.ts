/**
 * Checks the requirement catalogue (requirements.ts) against the text of
 * docs/PROTOCOL.md: every id well-formed and unique, every section a heading
 * of the spec, every summary one line, every id stated in bold in its own
 * section, and the bold ids of the spec exactly the catalogue's. A pure
 * function of its inputs, so tests can run it on broken variants of both.
 */
import type { Requirement } from './requirements';

export type CatalogueProblemKind =
  | 'malformedId'
  | 'duplicateId'
  | 'malformedSection'
  | 'unknownSection'
  | 'badSummary'
  | 'notInSpec'
  | 'notInItsSection'
  | 'notInCatalogue';

export interface CatalogueProblem {
  readonly kind: CatalogueProblemKind;
  readonly id: string;
  readonly detail: string;
}

/** `W-FRAME-1`: scope letter, an upper-case area, a number from 1. */
export const REQUIREMENT_ID_PATTERN = /^[WHD]-[A-Z]+-[1-9][0-9]*$/;
const SECTION_PATTERN = /^§[1-9][0-9]*(\.[1-9][0-9]*)*$/;
/** Anything in bold that looks like an id, well-formed or not, so a typo in the spec is caught too. */
const BOLD_ID = /\*\*([A-Z]-[A-Za-z0-9]+-[0-9A-Za-z]+)\*\*/g;
const HEADING = /^(#{2,6}) ([1-9][0-9]*(?:\.[1-9][0-9]*)*)\.? /;

interface Section {
  readonly start: number;
  readonly end: number;
}

/** Numbered headings (`## 4. …`, `### 8.2 …`) and the text each covers, up to the next heading of its level or above. */
function numberedSections(lines: readonly string[]): Map<string, Section> {
  const headings: { number: string; level: number; line: number }[] = [];
  lines.forEach((line, index) => {
    const match = HEADING.exec(line);
    if (match !== null) headings.push({ number: match[2] as string, level: (match[1] as string).length, line: index });
  });
  const allHeadings = lines.flatMap((line, index) => (/^#{1,6} /.test(line) ? [{ level: (/^#+/.exec(line) as RegExpExecArray)[0].length, line: index }] : []));
  const sections = new Map<string, Section>();
  for (const heading of headings) {
    const next = allHeadings.find((other) => other.line > heading.line && other.level <= heading.level);
    sections.set(heading.number, { start: heading.line, end: next === undefined ? lines.length : next.line });
  }
  return sections;
}

function boldIds(text: string): Set<string> {
  return new Set([...text.matchAll(BOLD_ID)].map((match) => match[1] as string));
}

export function checkCatalogue(requirements: readonly Requirement[], specText: string): CatalogueProblem[] {
  const problems: CatalogueProblem[] = [];
  const lines = specText.split('\n');
  const sections = numberedSections(lines);
  const inSpec = boldIds(specText);
  const seen = new Set<string>();
  for (const { id, section, summary } of requirements) {
    if (!REQUIREMENT_ID_PATTERN.test(id)) problems.push({ kind: 'malformedId', id, detail: `expected ${REQUIREMENT_ID_PATTERN.source}` });
    if (seen.has(id)) problems.push({ kind: 'duplicateId', id, detail: 'listed more than once' });
    seen.add(id);
    if (summary.trim() === '' || summary.includes('\n')) problems.push({ kind: 'badSummary', id, detail: 'the summary is one non-empty line' });
    if (!inSpec.has(id)) problems.push({ kind: 'notInSpec', id, detail: `**${id}** appears nowhere in the spec` });
    if (!SECTION_PATTERN.test(section)) {
      problems.push({ kind: 'malformedSection', id, detail: `section ${JSON.stringify(section)} is not §n or §n.m` });
      continue;
    }
    const found = sections.get(section.slice(1));
    if (found === undefined) {
      problems.push({ kind: 'unknownSection', id, detail: `the spec has no heading ${section}` });
      continue;
    }
    if (inSpec.has(id) && !boldIds(lines.slice(found.start, found.end).join('\n')).has(id)) {
      problems.push({ kind: 'notInItsSection', id, detail: `**${id}** is not stated in ${section}` });
    }
  }
  for (const id of inSpec) {
    if (!seen.has(id)) problems.push({ kind: 'notInCatalogue', id, detail: `the spec states **${id}**, which the catalogue does not list` });
  }
  return problems;
}
