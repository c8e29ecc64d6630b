/**
 * Type-check only (in hosts/moddable/tsconfig.json, never in the manifest):
 * proves both platform implementations match platform.d.ts.
 */
import type * as Declared from './platform';
import type * as Esp32 from './platform-esp32';
import type * as Sim from './platform-sim';

export type Esp32MatchesDeclaration = typeof Esp32 extends typeof Declared ? true : never;
export type SimMatchesDeclaration = typeof Sim extends typeof Declared ? true : never;
export const checks: [Esp32MatchesDeclaration, SimMatchesDeclaration] = [true, true];
