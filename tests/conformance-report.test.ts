// The kit's report (tools/conformance/report.ts): a failure dominates, an unexercised id is n/a, and
// the ids of a feature the target declares absent (--without, PROTOCOL.md §15) are n/a whatever was seen.
import { parseFeatures, Report } from '../tools/conformance/report';
import { REQUIREMENTS } from '../tools/conformance/requirements';

const dhId = REQUIREMENTS.find((r) => r.feature === 'dh')!.id;
const coreId = REQUIREMENTS.find((r) => r.feature === undefined && r.id.startsWith('H-'))!.id;

test('a failure dominates a pass; an unexercised id is n/a; exit code 0 only without failures', () => {
  const report = new Report();
  report.cover([coreId, dhId]);
  report.pass(coreId, 'a');
  expect(report.exitCode()).toBe(0);
  report.fail(coreId, { scenario: 'b', note: 'broken' });
  expect(report.results().map((r) => r.verdict)).toEqual(['fail', 'n/a']);
  expect(report.exitCode()).toBe(1);
});

test('excludeFeatures makes a declared-absent feature n/a even where a scenario failed it, and only that feature', () => {
  const build = (): Report => {
    const report = new Report();
    report.cover([coreId, dhId]);
    report.fail(dhId, { scenario: 'rotation-dh', note: 'no REKEY_DH' });
    report.pass(coreId, 'handshake');
    return report;
  };
  const declared = build();
  declared.excludeFeatures(['dh']);
  expect(declared.results().map((r) => [r.id, r.verdict])).toEqual([[coreId, 'pass'], [dhId, 'n/a']]);
  expect(declared.results()[1]?.evidence[0]?.note).toMatch(/declares no dh feature/);
  expect(declared.exitCode()).toBe(0);
  // The same run without the declaration fails: the exclusion is what changed the verdict.
  expect(build().exitCode()).toBe(1);
  const other = build();
  other.excludeFeatures(['recovery']);
  expect(other.exitCode()).toBe(1);
});

test('parseFeatures takes the three features of §15 and refuses anything else', () => {
  expect(parseFeatures('dh, recovery,tls')).toEqual(['dh', 'recovery', 'tls']);
  expect(() => parseFeatures('dh,ota')).toThrow(/unknown feature "ota"/);
});
