/*
 * Re-exports the Moddable SDK's crypt classes the crypto shim needs, so that
 * TypeScript sees them through sdk-crypt.d.ts: @moddable/typings 5.6.0 ships
 * no declaration for "crypt" (the SDK's own crypt.d.ts declares only Digest)
 * and none for "hmac".
 */
export { BlockCipher, Mode, Digest } from "crypt";
export { default as HMAC } from "hmac";
