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
  'challenge.malformed': 'the device answers no malformed CHALLENGE (direction bit, key id, seq, device id, length)',
  'hello.first': "the device answers CHALLENGE with HELLO, seq 0, session id Nh",
  'hello.newest': 'HELLO is sealed under the newest key the device holds (future if any, else active)',
  'hello.body': "HELLO's body names the device's active and future ids",
  'hello.nonce': 'every HELLO carries a fresh device nonce Nd',
  'welcome.keyId': "the device refuses a WELCOME whose hub key id is not its header's key id",
  'welcome.accept': 'the device accepts a WELCOME echoing Nd (the session is established)',
  'welcome.wrongNonce': 'the device refuses a WELCOME that does not echo Nd',
  'ping.answer': 'the device answers a hub PING with PONG',
  'keepalive': 'the device sends PING within its keep-alive interval of sending nothing',
  'timer.handshake': 'the device closes a connection whose handshake does not finish within its handshake timeout',
  'timer.idle': 'the device closes a session from which it received nothing for its idle timeout, at least 3 × its keep-alive interval',
  'timer.rejectedNoReset': 'rejected frames do not reset the idle timer',
  'retry.reconnect': 'the device reconnects after every close',
  'queue.order': 'input that arrives while a keystore write is outstanding is acted on, in order, once it is durable',
  'reject.silent': 'the device sends nothing in answer to a frame that fails a check',
  'reject.unchanged': 'a rejected frame changes nothing (seq, keys, session)',
  'reject.limit': 'the device closes after the stated number of rejected frames in a row, not before',
  'error.received': 'an ERROR from the hub changes nothing on the device',
  'error.unknownCode': 'an ERROR with a code the device does not know (or one no 1.1 peer sends) is taken like any other: no answer, no change',
  'pong.unanswered': 'a PONG from the hub is not answered and changes nothing',
  'rec.other': 'anything but RECOVER_REPLY in a recovery state ends the attempt: the device closes, sending nothing, changing nothing',
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
  'dh.modeForGood': 'a classic-provisioned device that promoted a dh key refuses classic offers from then on',
  'dh.helloShare': 'a HELLO under a dh-derived future key carries its share D',
  'rec.init': 'after NO_KEY a device with a credential sends RECOVER_INIT (seq 1) with a valid tag1, its ids and check',
  'rec.badTag2': 'a RECOVER_REPLY with a bad tag2 ends the attempt: the device sends nothing more, closes, changes nothing',
  'rec.idNotAbove': 'a RECOVER_REPLY whose N is not above every id the device holds is refused; nothing changes',
  'rec.finish': 'a valid RECOVER_REPLY is answered with RECOVER_FINISH (seq 2) with a valid tag3',
  'rec.accepted': "after RECOVER_RESULT ACCEPTED the device's next HELLO is sealed under N",
  'rec.persist': 'a device that closed after RECOVER_RESULT ACCEPTED seals under N after a power cut',
  'rec.inSync': 'after RECOVER_RESULT IN_SYNC the device reconnects at once, its keys unchanged',
  'rec.pacing': 'no second recovery attempt sooner than the device’s spacing or the hub’s retry after',
  'enrol.store': 'a device without a credential answers ENROL(id, S_h) with ENROL_ACK(id, S_d), persisted first (the same S_d after a power cut); a low-order S_h is refused with BAD_KEY_SHARE first',
  'enrol.badShare': 'an ENROL whose S_h is low-order is refused with BAD_KEY_SHARE before anything is stored',
  'prov.image': "the device's first HELLO carries the record's device id under the record's key id",
  'enrol.repeat': 'an ENROL for the enrolled hub static key is answered with the same ENROL_ACK (S_d)',
  'enrol.locked': 'an ENROL for another hub static key is refused with STATIC_KEY_LOCKED; nothing changes',
} as const;

export type CheckName = keyof typeof CHECKS;

/**
 * The requirements each check shows (ids of tools/conformance/requirements.ts):
 * a failed check fails every id it names; a passed one passes them.
 */
export const REQUIREMENT_OF: Record<CheckName, readonly string[]> = {
  'frame.length': ['W-FRAME-1'],
  'frame.header': ['W-HDR-5'],
  'frame.direction': ['W-HDR-3'],
  'frame.session': ['W-SESSION-1'],
  'frame.seq': ['W-SESSION-1'],
  'frame.key': ['D-KEY-3', 'W-HDR-7'],
  'frame.aead': ['W-AEAD-1'],
  'frame.body': ['W-MSG-1'],
  'frame.iv': ['W-AEAD-2'],
  'frame.share': ['D-DH-6', 'W-DH-3'],
  'challenge.malformed': ['D-SESSION-1'],
  'hello.first': ['D-HELLO-1'],
  'hello.newest': ['D-HELLO-1', 'D-KEY-3'],
  'hello.body': ['D-HELLO-1'],
  'hello.nonce': ['D-HELLO-1'],
  'welcome.wrongNonce': ['D-SESSION-2'],
  'welcome.keyId': ['W-MSG-4'],
  'welcome.accept': ['D-SESSION-2'],
  'ping.answer': ['W-PING-1'],
  keepalive: ['D-TIMER-1'],
  'timer.handshake': ['D-TIMER-3'],
  'timer.idle': ['D-TIMER-2'],
  'timer.rejectedNoReset': ['W-TIMER-1'],
  'retry.reconnect': ['D-RETRY-1'],
  'queue.order': ['D-QUEUE-1'],
  'reject.silent': ['W-CHECK-9'],
  'reject.unchanged': ['W-CHECK-8'],
  'reject.limit': ['W-REJECT-1'],
  'error.received': ['W-ERROR-1', 'W-ERROR-2'],
  'error.unknownCode': ['W-ERROR-3'],
  'pong.unanswered': ['W-PING-2'],
  'rec.other': ['D-REC-6'],
  'data.ack': ['W-DATA-3', 'W-DATA-4'],
  'data.unknownStream': ['W-DATA-5'],
  'rekey.ackUnderNew': ['D-REKEY-1', 'W-MSG-2'],
  'rekey.persistBeforeAck': ['D-KEY-1'],
  'rekey.repeat': ['D-REKEY-2'],
  'rekey.conflict': ['D-REKEY-3'],
  'rekey.notNewer': ['D-REKEY-4'],
  'rekey.notNext': ['D-REKEY-5'],
  'rekey.refusalUnchanged': ['D-REKEY-3', 'D-REKEY-4', 'D-REKEY-5'],
  'seal.newest': ['D-KEY-3'],
  'confirm.promotes': ['D-KEY-2', 'D-KEY-4'],
  'confirm.persist': ['D-KEY-2'],
  'dh.ack': ['D-DH-1', 'W-DH-1'],
  'dh.persistBeforeAck': ['D-DH-1'],
  'dh.repeat': ['D-DH-2'],
  'dh.conflict': ['D-DH-3'],
  'dh.modeMismatch': ['D-DH-4'],
  'dh.modeForGood': ['D-DH-7'],
  'dh.badShare': ['D-DH-5', 'W-DH-2'],
  'dh.helloShare': ['D-DH-6'],
  'rec.init': ['D-REC-1', 'W-REC-1', 'W-REC-2'],
  'rec.badTag2': ['D-REC-3'],
  'rec.idNotAbove': ['D-REC-3'],
  'rec.finish': ['D-REC-2', 'W-REC-1', 'W-REC-2'],
  'rec.accepted': ['D-REC-4'],
  'rec.persist': ['D-REC-4'],
  'rec.pacing': ['D-REC-5', 'D-REC-7'],
  'rec.inSync': ['D-REC-5', 'D-RETRY-1'],
  'enrol.store': ['D-ENROL-1'],
  'enrol.badShare': ['D-ENROL-4'],
  'prov.image': ['D-PROV-1'],
  'enrol.repeat': ['D-ENROL-2'],
  'enrol.locked': ['D-ENROL-3'],
};

/** Device and wire requirements device mode does not check, and why (printed as n/a). */
export const NOT_CHECKED: Readonly<Record<string, string>> = {
  'W-FRAME-2': 'allocation is not observable over the wire (modules/protocol/framing.ts; tests/codec.test.ts)',
  'W-FRAME-4': 'shown by every frame the kit decodes, not separately',
  'W-CHECK-1': 'the check order is not observable beyond the first failure of each frame',
  'W-SESSION-2': 'needs 2^32 frames in one session',
  'W-KEY-1': 'the device does not choose key ids',
  'W-KEY-2': 'the kit provisions id 1; other initial ids are not exercised',
  'W-DATA-1': 'the device under test sends DATA only when its application does',
  'W-DATA-2': 'the device under test sends DATA only when its application does',
  'W-TCP-1': 'every session of the run is on its own connection; not a separate check',
  'W-TLS-1': 'device mode listens on plain TCP',
  'W-PROV-1': 'the kit writes and reads the record; not a device behaviour',
  'D-KEY-5': 'erasure in flash is not observable over the wire (tests/keystore*.test.ts)',
  'D-KEY-6': 'needs a failing keystore write in the device',
  'D-QUEUE-2': 'needs more than the receive bound during a write',
  'D-TLS-1': 'device mode listens on plain TCP',
  'D-ENROL-5': 'the reference device keeps a credential',
};

interface Tally {
  passes: Set<string>;
  failures: Evidence[];
  notApplicable?: string;
}

export class Observer {
  readonly #tallies = new Map<CheckName, Tally>();
  /** Observations made directly against a requirement id (a negative vector names its own). */
  readonly #direct = new Map<string, Tally>();
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

  /** An observation against a requirement id itself (`requirement(id)` checks it exists when the report is made). */
  checkRequirement(id: string, ok: boolean, evidence: Evidence): boolean {
    let tally = this.#direct.get(id);
    if (tally === undefined) {
      tally = { passes: new Set(), failures: [] };
      this.#direct.set(id, tally);
    }
    if (ok) tally.passes.add(evidence.scenario);
    else {
      if (tally.failures.length < 5) tally.failures.push(evidence);
      this.note(`FAIL ${id} [${evidence.scenario}] ${evidence.note}`);
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

  /** The report by requirement id: every device (D-…) and wire (W-…) requirement of the catalogue, in its order. */
  toReport(): Report {
    const report = new Report();
    const ids = REQUIREMENTS.filter((r) => r.id.startsWith('D-') || r.id.startsWith('W-')).map((r) => r.id);
    report.cover(ids, 'no scenario of device mode exercises it');
    for (const [id, reason] of Object.entries(NOT_CHECKED)) report.notApplicable(id, reason);
    const reasons = new Map<string, string>();
    const add = (id: string, label: string, tally: Tally) => {
      for (const scenario of tally.passes) report.pass(id, scenario);
      for (const failure of tally.failures) report.fail(id, { ...failure, note: `${label}: ${failure.note}` });
      if (tally.passes.size === 0 && tally.failures.length === 0 && tally.notApplicable !== undefined && !reasons.has(id)) reasons.set(id, tally.notApplicable);
    };
    for (const [check, tally] of this.#tallies) for (const id of REQUIREMENT_OF[check]) add(id, check, tally);
    for (const [id, tally] of this.#direct) add(id, id, tally);
    for (const [id, reason] of reasons) if (!report.results().some((r) => r.id === id && r.verdict !== 'n/a')) report.notApplicable(id, reason);
    return report;
  }

  /** One line per check (the kit's own view, with or without ids). */
  checksText(): string {
    const verdicts = this.verdicts();
    const lines: string[] = [];
    for (const check of Object.keys(CHECKS) as CheckName[]) {
      const tally = this.#tallies.get(check);
      const verdict = verdicts[check];
      lines.push(`${verdict.padEnd(4)} ${check.padEnd(22)} ${REQUIREMENT_OF[check].join(',').padEnd(22)} ${CHECKS[check]}`);
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
