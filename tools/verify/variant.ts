/**
 * How a broken variant is applied to the real code: only through what a
 * host controls — wrappers around storage, the database's acknowledgement
 * policy, interposers on the transport, and the public `reloadDevice` API.
 * The cores themselves are never changed or flagged (variants.ts defines
 * the six variants; `CORRECT` applies nothing).
 */
import type { Variant } from './sim-types';

export type { HubPersistPolicy, Variant } from './sim-types';

export const CORRECT: Variant = { name: 'correct', description: 'the code as it is', expect: 'safety' };
