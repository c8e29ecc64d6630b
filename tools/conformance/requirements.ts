/**
 * The catalogue of numbered requirements of docs/PROTOCOL.md (protocol 1.1).
 * Every MUST of the spec carries one of these ids, in bold, where it is
 * stated; tests/conformance-catalogue.test.ts checks that this table and the
 * spec name the same ids. The kit (`npm run conformance`), the tests and the
 * code comments cite them.
 *   W-…  the wire (framing, header, AEAD, messages, derivations): both peers
 *   H-…  what a hub MUST do
 *   D-…  what a device MUST do
 */
export type RequirementScope = 'wire' | 'hub' | 'device';

export interface Requirement {
  /** Stable id, e.g. `H-KEY-1`; never reused for another rule. */
  readonly id: string;
  /** The section of docs/PROTOCOL.md that states it. */
  readonly section: string;
  /** One line: what a compliant peer does. */
  readonly summary: string;
}

export const REQUIREMENTS: readonly Requirement[] = [];

const byId = new Map(REQUIREMENTS.map((requirement) => [requirement.id, requirement]));

/** The requirement with this id; throws for an id the catalogue does not name (a typo in the kit). */
export function requirement(id: string): Requirement {
  const found = byId.get(id);
  if (found === undefined) throw new Error(`unknown requirement id ${id} (tools/conformance/requirements.ts)`);
  return found;
}

export function scopeOf(id: string): RequirementScope {
  if (id.startsWith('W-')) return 'wire';
  if (id.startsWith('H-')) return 'hub';
  if (id.startsWith('D-')) return 'device';
  throw new Error(`requirement id ${id} has no W-/H-/D- prefix`);
}
