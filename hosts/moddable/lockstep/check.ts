/**
 * Type-check only (in hosts/moddable/tsconfig.json, never in a manifest):
 * proves that the module `lockstep` (lockstep.js re-exporting sdk.ts)
 * matches its declaration lockstep.d.ts, which applications compile against.
 */
import type * as Declared from './lockstep';
import type * as Implementation from './sdk';
import type { ErrorCode } from '../../../modules/errors';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;

export type LockstepMatches = typeof Implementation.Lockstep extends typeof Declared.Lockstep ? true : never;
export type InstanceMatches = Same<keyof InstanceType<typeof Implementation.Lockstep>, keyof Declared.Lockstep>;
export type ErrorMatches = typeof Implementation.LockstepError extends typeof Declared.LockstepError ? true : never;
export type ErrorCodesMatch = Same<ErrorCode, Declared.ErrorCode>;
export const checks: [LockstepMatches, InstanceMatches, ErrorMatches, ErrorCodesMatch] = [true, true, true, true];
