/**
 * Stands in for hosts/node/crypto.ts in XS bundles (see the redirect in
 * tests/xs/main.ts's bundle options): the same exports over the native module,
 * so engine-neutral test support that defaults to Node's crypto
 * (tools/testing/pair.ts) runs unchanged on XS.
 */
export {
  nativeAead as nodeAead,
  nativePrimitives as nodePrimitives,
  nativeRandom as nodeRandom,
} from '../../../hosts/moddable/native/native-aead';
