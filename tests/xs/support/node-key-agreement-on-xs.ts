/**
 * Stands in for hosts/node/key-agreement.ts in XS bundles (see XS_REDIRECTS in
 * tests/xs/run.ts): the same exports over the native module's X25519 and
 * HKDF-SHA-512, so engine-neutral test support that defaults to Node's key
 * agreement (tools/testing/pair.ts) runs unchanged on XS. The native module
 * has no generator of its own, so every private key comes from the core's
 * random source, as nodeKeyAgreementDrawn does on Node.
 */
export {
  nativeKeyAgreement as nodeKeyAgreement,
  nativeKeyAgreement as nodeKeyAgreementDrawn,
  nativeKeyAgreement as nodeKeyAgreementDer,
} from '../../../hosts/moddable/native/native-aead';
