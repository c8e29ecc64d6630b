/*
 * The module `lockstep`, as applications import it. XS resolves a relative
 * specifier against the importing module's name, and this module is named
 * `lockstep`, not by its path: so it re-exports the implementation by that
 * module's full name. Types: lockstep.d.ts.
 */
export { Lockstep, LockstepError } from "hosts/moddable/lockstep/sdk";
