/**
 * The program the XS test host runs (bundled by hosts/xs-test/build.ts).
 * Command-line arguments select groups (none = all):
 *   native   the native module: vectors, composition over its primitives, bad input
 *   noble    the pure-JS AEAD (@noble) on XS, and its agreement with the native module
 */
import { nativeAead, nativePrimitives } from '../../hosts/moddable/native/native-aead';
import { nobleAead } from '../../hosts/noble/primitives';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import { describeError, runRegistered } from './harness';
import { registerAeadAgreement, registerAeadVectors } from './suites/aead-vectors';
import './suites/native-bad-input';

registerAeadVectors('native', nativeAead);
registerAeadVectors('native', composeAead(nativePrimitives, 'composition over native primitives'));
registerAeadVectors('noble', nobleAead);
registerAeadAgreement('noble', nativeAead, nobleAead);

runRegistered(xsTest.args).catch((error: unknown) => {
  print(`FATAL ${describeError(error)}`);
  xsTest.setExitCode(1);
});
