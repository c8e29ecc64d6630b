/**
 * Stands in for hosts/moddable/native/lockstep_aead.js in XS test host
 * bundles: esbuild cannot parse Moddable's `@ "native"` syntax, so
 * xs_test_host.c defines the same C functions as globals under their native
 * names and this module re-exports them. Everything above the natives
 * (native-aead.ts) is bundled unchanged.
 */
import type * as Natives from '../moddable/native/lockstep_aead';

declare const xs_lockstep_aead_seal: typeof Natives.seal;
declare const xs_lockstep_aead_open: typeof Natives.open;
declare const xs_lockstep_aead_random: typeof Natives.random;
declare const xs_lockstep_aead_cbc: typeof Natives.cbc;
declare const xs_lockstep_aead_hmac: typeof Natives.hmac;
declare const xs_lockstep_aead_x25519_public: typeof Natives.x25519Public;
declare const xs_lockstep_aead_x25519: typeof Natives.x25519;
declare const xs_lockstep_aead_hkdf: typeof Natives.hkdf;

export const seal = xs_lockstep_aead_seal;
export const open = xs_lockstep_aead_open;
export const random = xs_lockstep_aead_random;
export const cbc = xs_lockstep_aead_cbc;
export const hmac = xs_lockstep_aead_hmac;
export const x25519Public = xs_lockstep_aead_x25519_public;
export const x25519 = xs_lockstep_aead_x25519;
export const hkdf = xs_lockstep_aead_hkdf;
