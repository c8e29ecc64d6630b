/**
 * The program the XS test host runs (bundled by hosts/xs-test/build.ts).
 * Command-line arguments select groups (none = all):
 *   native   the native module: AEAD vectors, composition over its primitives, bad input
 *   noble    the pure-JS AEAD (@noble) on XS, and its agreement with the native module
 *   dh       the native module's X25519 and HKDF-SHA-512: RFC 7748, Wycheproof x25519/hkdf_sha512, bad input
 *   dh-noble the same vectors on @noble on XS (the simulator's backend), and its agreement with the native module
 *   keystore the keystore journal on the NOR flash model under power cuts
 *   core     the device and hub cores over an in-memory link (tools/testing/pair.ts)
 *   api      the Lockstep application API over the SDK fakes (tools/testing/channel-rig.ts)
 * Bundle with the redirect hosts/node/crypto → tests/xs/support/node-crypto-on-xs
 * (see tests/xs/run.ts).
 */
import { nativeAead, nativePrimitives } from '../../hosts/moddable/native/native-aead';
import { nobleAead } from '../../hosts/noble/primitives';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import { describeError, runRegistered } from './harness';
import { registerAeadAgreement, registerAeadVectors } from './suites/aead-vectors';
import './suites/native-bad-input';
import './suites/key-agreement';
import './suites/keystore-power-cuts';
import './suites/device-hub';
import './suites/device-recovery';
import './suites/lockstep-api';

registerAeadVectors('native', nativeAead);
registerAeadVectors('native', composeAead(nativePrimitives, 'composition over native primitives'));
registerAeadVectors('noble', nobleAead);
registerAeadAgreement('noble', nativeAead, nobleAead);

runRegistered(xsTest.args).catch((error: unknown) => {
  print(`FATAL ${describeError(error)}`);
  xsTest.setExitCode(1);
});
