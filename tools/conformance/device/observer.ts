/**
 * What device mode observes, named by *check* (what the kit looked at), and
 * how each check maps to the requirement ids of docs/PROTOCOL.md
 * (tools/conformance/requirements.ts) in the report. The mapping is the one
 * place ids are cited: `requirement(id)` (through Report) throws on an id the
 * catalogue does not name, so a typo fails the tests.
 */
import type { Evidence } from '../report';
import { Report } from '../report';
import { REQUIREMENTS } from '../requirements';

/** Every check device mode makes, with what it shows. */
export const CHECKS = {
  'frame.length': 'every device frame has a length in 36..1280; a sealed one 84 + 16k bytes (116 + 16k with a share)',
  'frame.header': 'every device frame has version 1, a known type and zero reserved flags',
  'frame.direction': 'every device frame has the direction bit clear and a type a device sends',
  'frame.session': "every device frame carries the device's id and the session's Nh",
  'frame.seq': "the device's seq is exactly one more than its previous frame's (HELLO 0)",
  'frame.key': 'every device frame names a key the hub holds for it',
  'frame.aead': 'every device frame authenticates under the key it names (A256CBC-HS512)',
  'frame.body': "every device frame's body is valid for its type",
  'frame.iv': 'the device draws a fresh IV for every frame',
  'frame.share': 'KEY_SHARE is set exactly on frames sealed under a dh-derived future key, with its D',
  'hello.first': "the device answers CHALLENGE with HELLO, seq 0, session id Nh",
  'hello.newest': 'HELLO is sealed under the newest key the device holds (future if any, else active)',
  'hello.body': "HELLO's body names the device's active and future ids",
  'hello.nonce': 'every HELLO carries a fresh device nonce Nd',
  'welcome.accept': 'the device accepts a WELCOME echoing Nd (the session is established)',
  'welcome.wrongNonce': 'the device refuses a WELCOME that does not echo Nd',
  'ping.answer': 'the device answers a hub PING with PONG',
  'keepalive': 'the device sends PING within its keep-alive interval of sending nothing',
  'timer.handshake': 'the device closes a connection whose handshake does not finish within its handshake timeout',
  'timer.idle': 'the device closes a session from which it received nothing for its idle timeout',
  'reject.silent': 'the device sends nothing in answer to a frame that fails a check',
  'reject.unchanged': 'a rejected frame changes nothing (seq, keys, session)',
  'reject.limit': 'the device closes after the stated number of rejected frames in a row, not before',
  'error.received': 'an ERROR from the hub changes nothing on the device',
  'data.ack': 'the device answers DATA with a cumulative DATA_ACK, delivering each message once (up to 1024 bytes)',
  'data.unknownStream': 'a DATA_ACK for a stream the device never used changes nothing',
  'rekey.ackUnderNew': 'REKEY(A+1) is answered with REKEY_ACK(A+1) sealed under the new key',
  'rekey.persistBeforeAck': 'a device that acknowledged a key still holds it after a power cut (persist before ack)',
  'rekey.repeat': 'a repeated REKEY (same id and bytes) is answered with the identical REKEY_ACK',
  'rekey.conflict': 'REKEY(F) with other bytes is refused with ERROR REKEY_CONFLICT',
  'rekey.notNewer': 'REKEY(n ≤ A) is refused with ERROR REKEY_ID_NOT_NEWER',
  'rekey.notNext': 'REKEY(n > A + 1) is refused with ERROR REKEY_ID_NOT_NEXT',
  'rekey.refusalUnchanged': 'a refused REKEY changes nothing: the device keeps its keys and still answers',
  'seal.newest': 'once it stored a future key the device seals everything under it',
  'confirm.promotes': 'a hub frame under the future key (CONFIRM) promotes it: the device seals only under it and drops the old key',
  'confirm.persist': 'after a power cut right after CONFIRM the device seals under the new key (promoted or still future), never only the old',
  'dh.ack': 'REKEY_DH(A+1, H) is answered with REKEY_ACK under the derived key K = HKDF(A, X25519(d, H), …) with the share D',
  'dh.persistBeforeAck': 'a device that acknowledged a dh-derived key still holds it (and D) after a power cut',
  'dh.repeat': 'a repeated REKEY_DH is answered with the identical REKEY_ACK and the same share D',
  'dh.conflict': "REKEY_DH(F) with another H, or a classic REKEY(F) for a dh F, is refused with REKEY_CONFLICT",
  'dh.modeMismatch': 'a classic REKEY to a device in the dh mode is refused with REKEY_MODE_MISMATCH',
  'dh.badShare': 'a REKEY_DH with a low-order H is refused with BAD_KEY_SHARE',
  'dh.helloShare': 'a HELLO under a dh-derived future key carries its share D',
  'rec.init': 'after NO_KEY a device with a credential sends RECOVER_INIT (seq 1) with a valid tag1, its ids and check',
  'rec.badTag2': 'a RECOVER_REPLY with a bad tag2 ends the attempt: the device sends nothing more, closes, changes nothing',
  'rec.idNotAbove': 'a RECOVER_REPLY whose N is not above every id the device holds is refused; nothing changes',
  'rec.finish': 'a valid RECOVER_REPLY is answered with RECOVER_FINISH (seq 2) with a valid tag3',
  'rec.accepted': "after RECOVER_RESULT ACCEPTED the device's next HELLO is sealed under N",
  'rec.persist': 'a device that closed after RECOVER_RESULT ACCEPTED seals under N after a power cut',
  'rec.pacing': 'no second recovery attempt sooner than the device’s spacing or the hub’s retry after',
  'enrol.repeat': 'an ENROL for the enrolled hub static key is answered with the same ENROL_ACK (S_d)',
  'enrol.locked': 'an ENROL for another hub static key is refused with STATIC_KEY_LOCKED; nothing changes',
} as const;

export type CheckName = keyof typeof CHECKS;

/**
 * The requirement each check shows (an id of tools/conformance/requirements.ts).
 * Checks without an id yet are reported under their check name only.
 */
export const REQUIREMENT_OF: Partial<Record<CheckName, string>> = {};

interface Tally {
  passes: Set<string>;
  failures: Evidence[];
  notApplicable?: string;
}

export class Observer {
  readonly #tallies = new Map<CheckName, Tally>();
  /** Log lines (bounded), for `--verbose`. */
  readonly log: string[] = [];
  readonly #onLog: ((line: string) => void) | undefined;

  constructor(onLog?: (line: string) => void) {
    this.#onLog = onLog;
  }

  note(line: string): void {
    if (this.log.length < 2000) this.log.push(line);
    this.#onLog?.(line);
  }

  check(check: CheckName, ok: boolean, evidence: Evidence): boolean {
    const tally = this.#tally(check);
    if (ok) tally.passes.add(evidence.scenario);
    else {
      if (tally.failures.length < 5) tally.failures.push(evidence);
      this.note(`FAIL ${check} [${evidence.scenario}] ${evidence.note}`);
    }
    return ok;
  }

  notApplicable(check: CheckName, reason: string): void {
    this.#tally(check).notApplicable ??= reason;
  }

  failed(check: CheckName): boolean {
    return (this.#tallies.get(check)?.failures.length ?? 0) > 0;
  }

  /** Per check: pass / fail / n/a, for the tests and `--checks`. */
  verdicts(): Record<CheckName, 'pass' | 'fail' | 'n/a'> {
    const out = {} as Record<CheckName, 'pass' | 'fail' | 'n/a'>;
    for (const check of Object.keys(CHECKS) as CheckName[]) {
      const tally = this.#tallies.get(check);
      out[check] = tally === undefined ? 'n/a' : tally.failures.length > 0 ? 'fail' : tally.passes.size > 0 ? 'pass' : 'n/a';
    }
    return out;
  }

  /** The report by requirement id: every device (D-…) and wire (W-…) requirement the mapping names, in catalogue order. */
  toReport(): Report {
    const report = new Report();
    const known = new Set(REQUIREMENTS.map((r) => r.id));
    const mapped = new Set(Object.values(REQUIREMENT_OF).filter((id): id is string => id !== undefined && known.has(id)));
    report.cover(REQUIREMENTS.filter((r) => mapped.has(r.id)).map((r) => r.id), 'not exercised by this run');
    for (const [check, tally] of this.#tallies) {
      const id = REQUIREMENT_OF[check];
      if (id === undefined || !known.has(id)) continue;
      for (const scenario of tally.passes) report.pass(id, scenario);
      for (const failure of tally.failures) report.fail(id, { ...failure, note: `${check}: ${failure.note}` });
      if (tally.passes.size === 0 && tally.failures.length === 0 && tally.notApplicable !== undefined) report.notApplicable(id, tally.notApplicable);
    }
    return report;
  }

  /** One line per check (the kit's own view, with or without ids). */
  checksText(): string {
    const verdicts = this.verdicts();
    const lines: string[] = [];
    for (const check of Object.keys(CHECKS) as CheckName[]) {
      const tally = this.#tallies.get(check);
      const verdict = verdicts[check];
      lines.push(`${verdict.padEnd(4)} ${(REQUIREMENT_OF[check] ?? '-').padEnd(12)} ${check.padEnd(22)} ${CHECKS[check]}`);
      if (verdict === 'fail') for (const failure of tally?.failures ?? []) lines.push(`       [${failure.scenario}] ${failure.note}`);
      if (verdict === 'n/a' && tally?.notApplicable !== undefined) lines.push(`       ${tally.notApplicable}`);
    }
    return lines.join('\n');
  }

  #tally(check: CheckName): Tally {
    let tally = this.#tallies.get(check);
    if (tally === undefined) {
      tally = { passes: new Set(), failures: [] };
      this.#tallies.set(check, tally);
    }
    return tally;
  }
}
