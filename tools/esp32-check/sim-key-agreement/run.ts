/**
 * Runs the key agreement conformance cases (tools/testing/key-agreement-cases.ts:
 * RFC 7748 §5.2/§6.1, all 518 Wycheproof x25519 and 83 hkdf_sha512 cases) on
 * the simulator's backend — @noble on the Moddable SDK's own XS, as
 * platform-sim.ts wires it — inside mcsim. Built and run by
 * tools/esp32-check/simulator-key-agreement.sh, which generates the module
 * `lockstep-key-agreement-vectors` from the vendored JSON files and reads the
 * trace lines this prints.
 */
import '../../../hosts/moddable/text-encoder-global';
import vectors from 'lockstep-key-agreement-vectors';
import { nobleKeyAgreement } from '../../../hosts/noble/key-agreement';
import { failures, keyAgreementCaseGroups, runCaseGroup, type KeyAgreementVectors } from '../../testing/key-agreement-cases';

const out = (globalThis as unknown as { trace(text: string): void }).trace;
let passed = 0;
let failed = 0;
for (const group of keyAgreementCaseGroups(nobleKeyAgreement, { lowOrder: 'throws', iterations: [1] }, vectors as KeyAgreementVectors)) {
  const outcomes = runCaseGroup(group);
  const bad = failures(outcomes);
  passed += outcomes.length - bad.length;
  failed += bad.length;
  for (const line of bad) out(`sim-key-agreement FAIL ${group.name}: ${line}\n`);
  out(`sim-key-agreement: ${group.name}: ${outcomes.length - bad.length}/${outcomes.length}\n`);
}
out(`sim-key-agreement: ${passed} passed, ${failed} failed\n`);
