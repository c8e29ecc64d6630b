/**
 * docs/vectors/negative-vectors.json: negativeVectors (negative.ts) for four
 * fixed receiver states built from the inputs of the protocol vectors, and
 * their summary for docs/PROTOCOL.md Appendix A.
 */
import { toHex } from '../../modules/bytes';
import { negativeVectors, type NegativeReceiver, type NegativeReceiverState, type NegativeVector } from './negative';
import { dhVectorInputs, VECTOR_INPUTS } from './protocol-vectors';

export const NEGATIVE_VECTORS_VERSION = 1;

/** A key the receiver holds, in which slot; a hub's dh pending key (§11) is its ephemeral pair, the key itself not yet derived. */
export type HeldKey =
  | { readonly id: number; readonly slot: 'active' | 'pending' | 'future'; readonly key: Uint8Array; readonly dh?: undefined }
  | { readonly id: number; readonly slot: 'pending'; readonly key?: undefined; readonly dh: { readonly privateKey: Uint8Array; readonly publicKey: Uint8Array } };

/** One receiver state of the file: what the receiver holds when it is fed each of its vectors (every vector starts from it). */
export interface NegativeState {
  /** The group's name in the file and in Appendix A. */
  readonly name: string;
  readonly receiver: NegativeReceiver;
  readonly state: NegativeReceiverState;
  readonly deviceId: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly sequence: number;
  readonly keys: readonly HeldKey[];
  readonly sealKeyId: number;
  readonly deviceNonce?: Uint8Array;
}

const deviceId = Uint8Array.from(Buffer.from(VECTOR_INPUTS.deviceId, 'hex'));
const key1: HeldKey = { id: 1, slot: 'active', key: VECTOR_INPUTS.key1 };
/** The hub's ephemeral pair of the dh pending key 2 (§11.3): the dh vectors' hub private key 0x60…0x7f. */
const dhPending: HeldKey = { id: 2, slot: 'pending', dh: { privateKey: dhVectorInputs().hubPrivate, publicKey: dhVectorInputs().hubShare } };

export const NEGATIVE_STATES: readonly NegativeState[] = [
  // A hub without recovery configured that sent CHALLENGE(Nh) and waits for the HELLO.
  { name: 'hub awaitingHello', receiver: 'hub', state: 'awaitingHello', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 0, keys: [key1], sealKeyId: 1 },
  // A hub in a session whose HELLO (under 1) it accepted, holding pending key 2 (offered).
  { name: 'hub established', receiver: 'hub', state: 'established', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 1, keys: [key1, { id: 2, slot: 'pending', key: VECTOR_INPUTS.key2 }], sealKeyId: 1 },
  // A device that has just connected and waits for the CHALLENGE (whose cases carry Nh).
  { name: 'device awaitingChallenge', receiver: 'device', state: 'awaitingChallenge', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 0, keys: [key1], sealKeyId: 1 },
  // A device that answered CHALLENGE(Nh) with HELLO(Nd) and waits for the WELCOME.
  { name: 'device awaitingWelcome', receiver: 'device', state: 'awaitingWelcome', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 1, keys: [key1], sealKeyId: 1, deviceNonce: VECTOR_INPUTS.deviceNonce },
  // A device in a session (CHALLENGE seq 0, WELCOME seq 1 under key 1) holding future key 2.
  { name: 'device established', receiver: 'device', state: 'established', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 2, keys: [key1, { id: 2, slot: 'future', key: VECTOR_INPUTS.key2 }], sealKeyId: 1, deviceNonce: VECTOR_INPUTS.deviceNonce },
  // A dh-mode hub whose REKEY_DH (2, H) went unanswered (the REKEY_ACK lost), waiting for the HELLO of the next connection (HK8).
  { name: 'hub awaitingHello, dh pending', receiver: 'hub', state: 'awaitingHello', deviceId, sessionId: VECTOR_INPUTS.hubNonce, sequence: 0, keys: [key1, dhPending], sealKeyId: 1 },
];

export function vectorsForState(state: NegativeState): NegativeVector[] {
  const seal = state.keys.find((k) => k.id === state.sealKeyId);
  if (seal?.key === undefined) throw new Error('negative-file: the seal key is not held');
  const dh = state.keys.find((k) => k.dh !== undefined);
  return negativeVectors({
    receiver: state.receiver,
    state: state.state,
    deviceId: state.deviceId,
    sessionId: state.sessionId,
    sequence: state.sequence,
    sealKey: { id: seal.id, key: seal.key },
    heldKeyIds: state.keys.map((k) => k.id),
    ...(state.deviceNonce === undefined ? {} : { deviceNonce: state.deviceNonce }),
    ...(dh === undefined ? {} : { dhPendingKeyId: dh.id }),
  });
}

export interface NegativeVectorsFile {
  readonly version: number;
  readonly description: string;
  readonly inputs: Record<string, unknown>;
  readonly groups: readonly {
    readonly name: string;
    readonly receiver: NegativeReceiver;
    readonly state: NegativeReceiverState;
    readonly session: { readonly deviceId: string; readonly sessionId: string; readonly expectedSequence: number; readonly keysHeld: readonly { id: number; slot: string; key?: string; hubEphemeralPrivate?: string; hubEphemeralPublic?: string }[]; readonly sealKeyId: number; readonly deviceNonce?: string; readonly recovery: false };
    readonly vectors: readonly { readonly name: string; readonly receiver: NegativeReceiver; readonly state: NegativeReceiverState; readonly requirement: string; readonly expectedError: string; readonly closes: boolean; readonly dhOnly: boolean; readonly description: string; readonly wire: string }[];
  }[];
}

export function negativeVectorsFile(): NegativeVectorsFile {
  return {
    version: NEGATIVE_VECTORS_VERSION,
    description:
      'Lockstep protocol 1.1 negative vectors (docs/PROTOCOL.md Appendix A), generated by `npm run vectors` (tools/vectors/negative.ts, negativeVectors): frames a receiver MUST reject. ' +
      'Grouped by receiver state: the receiver (hub or device), its state, and what it holds (session id, the next seq it expects, its keys, the key id the otherwise valid frames are sealed under, the device nonce of its HELLO). ' +
      'Each vector is fed alone to a receiver in exactly its group\'s state and has exactly one thing wrong: name, receiver and state (repeated from the group), requirement (tools/conformance/requirements.ts), expectedError (the local error code, modules/errors.ts, docs/PROTOCOL.md §9), ' +
      'closes (the receiver ends the connection on this rejection: a hub before the HELLO authenticates, HS3; otherwise its state — slots, seq, session — is unchanged and the next valid frame with the same seq is accepted), ' +
      'dhOnly (a KEY_SHARE or dh pending case: a hub without the dh mode answers BAD_HEADER or UNKNOWN_KEY_ID instead), description, wire (hex; an out-of-range length prefix is followed by that many filler bytes). The hubs have no recovery configured (with recovery, a HELLO failing at §4 step 3–5 is answered with NO_KEY, §12.4 HS9).',
    inputs: {
      deviceId: VECTOR_INPUTS.deviceId,
      sessionId: toHex(VECTOR_INPUTS.hubNonce),
      deviceNonce: toHex(VECTOR_INPUTS.deviceNonce),
      keys: { '1': toHex(VECTOR_INPUTS.key1), '2': toHex(VECTOR_INPUTS.key2) },
      dhPending: { id: 2, hubEphemeralPrivate: toHex(dhVectorInputs().hubPrivate), hubEphemeralPublic: toHex(dhVectorInputs().hubShare), note: 'the hub awaitingHello, dh pending group: key 2 is derived from a frame\'s share (§11.3, HK8, salt = key 1)' },
      ivRule: 'the IV of the n-th sealed case of a group (n from 0) is bytes (0xe0 + 3·n + i) mod 256, i = 0…15',
    },
    groups: NEGATIVE_STATES.map((state) => ({
      name: state.name,
      receiver: state.receiver,
      state: state.state,
      session: {
        deviceId: toHex(state.deviceId),
        sessionId: toHex(state.sessionId),
        expectedSequence: state.sequence,
        keysHeld: state.keys.map((k) => (k.dh === undefined ? { id: k.id, slot: k.slot, key: toHex(k.key) } : { id: k.id, slot: k.slot, hubEphemeralPrivate: toHex(k.dh.privateKey), hubEphemeralPublic: toHex(k.dh.publicKey) })),
        sealKeyId: state.sealKeyId,
        ...(state.deviceNonce === undefined ? {} : { deviceNonce: toHex(state.deviceNonce) }),
        recovery: false as const,
      },
      vectors: vectorsForState(state).map((v) => ({ name: v.name, receiver: v.receiver, state: v.state, requirement: v.requirement, expectedError: v.expectedError, closes: v.closes, dhOnly: v.dhOnly, description: v.description, wire: toHex(v.wire) })),
    })),
  };
}

/** Appendix A: one row per case, the error each receiver state must report (— where the case does not apply). */
export function negativeVectorsMarkdown(file: NegativeVectorsFile): string {
  const columns = file.groups.map((g) => g.name);
  const names: string[] = [];
  const cells = new Map<string, Map<string, string>>();
  const requirements = new Map<string, Set<string>>();
  for (const group of file.groups) {
    for (const v of group.vectors) {
      if (!cells.has(v.name)) {
        names.push(v.name);
        cells.set(v.name, new Map());
        requirements.set(v.name, new Set());
      }
      cells.get(v.name)?.set(group.name, v.expectedError);
      requirements.get(v.name)?.add(v.requirement);
    }
  }
  const count = file.groups.reduce((n, g) => n + g.vectors.length, 0);
  const lines = [
    '### Negative vectors',
    '',
    `[vectors/negative-vectors.json](vectors/negative-vectors.json): ${count} frames a receiver MUST reject, in ${file.groups.length} receiver states ` +
      '(each group states the session id, the next expected seq and the keys held; every vector is fed alone to a receiver in that state, has exactly one thing wrong, and must be rejected with the local error shown, changing nothing). ' +
      'Generated by `negativeVectors` (tools/vectors/negative.ts), which the conformance kit also calls with a live session\'s parameters. The receivers in the file: ' +
      file.groups.map((g) => `${g.name} (seq ${g.session.expectedSequence}, keys ${g.session.keysHeld.map((k) => `${k.id} ${k.slot}${k.key === undefined ? ' (dh: the hub\'s ephemeral pair)' : ''}`).join(', ')})`).join('; ') +
      '.',
    '',
    `| case | requirement | ${columns.join(' | ')} |`,
    `|---|---|${columns.map(() => '---').join('|')}|`,
  ];
  for (const name of names) {
    const row = columns.map((c) => {
      const code = cells.get(name)?.get(c);
      return code === undefined ? '—' : `\`${code}\``;
    });
    lines.push(`| ${name} | ${[...(requirements.get(name) ?? [])].join(', ')} | ${row.join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}
