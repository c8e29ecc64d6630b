/**
 * Installs the Moddable SDK's TextEncoder (the module `text/encoder`) as the
 * global `TextEncoder` when XS has none: @noble/curves' ed25519.js calls
 * `new TextEncoder()` while it loads (its FROST and OPRF definitions), and
 * the SDK provides TextEncoder only as a module. Imported first by
 * platform-sim.ts, before anything that loads @noble.
 */
import TextEncoder from 'text/encoder';

const global = globalThis as unknown as { TextEncoder?: unknown };
if (typeof global.TextEncoder === 'undefined') global.TextEncoder = TextEncoder;
