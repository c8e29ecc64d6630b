/**
 * A passive attacker, written from docs/PROTOCOL.md alone (§2–§6, §11): it
 * holds one side's whole durable state at a time t (tools/attack/hub-leak.ts,
 * tools/attack/device-leak.ts) and the byte transcript of the link from t on
 * (tools/attack/recording-proxy.ts), and tries to decrypt every frame.
 *
 * What it can do, by the spec:
 * - open any frame sealed under a key it holds (the header names the key id, §4);
 * - classic mode (§6.2): a REKEY it opens carries the next key in its body;
 * - dh mode (§11.3): a REKEY_DH it opens carries H; every device frame under
 *   a dh-derived key carries D in clear (§11.2). With an ephemeral private
 *   key from its copy (h, or d) and the previous key it computes
 *   K_n = HKDF-SHA-512(K_{n−1}, X25519(·,·), info) — and with neither private
 *   key it cannot: that is the property the compromise test checks.
 *
 * It runs to a fixpoint over the whole transcript (an offline attacker has
 * no reason to go in order), then reports every frame after t: decrypted or
 * not, under which key id, and what it learned from it.
 */
import { deriveDhKey } from './dh';
import type { LeakedEphemeral, LeakedState } from './knowledge';
import type { Transcript } from './recording-proxy';
import { decodeBody, openFrame, splitFrames, type Body, type WireFrame } from './wire';

/** How the attacker came to hold a key. */
export type KeySource =
  | { readonly kind: 'leak'; readonly detail: string }
  | { readonly kind: 'rekey'; readonly frame: string }
  | { readonly kind: 'dh'; readonly ephemeral: string; readonly frame: string };

export interface HeldKey {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: Uint8Array;
  readonly source: KeySource;
}

export interface FrameVerdict {
  readonly frame: WireFrame;
  readonly decrypted: boolean;
  /** The decoded body when decrypted. */
  readonly body: Body | undefined;
  /** What opening this frame taught the attacker (a key id), if anything. */
  readonly learned: string | undefined;
}

export interface AttackReport {
  /** Every frame completed at or after `from`, in transcript order. */
  readonly frames: FrameVerdict[];
  /** Every key the attacker ended up holding, per device and id. */
  readonly keys: HeldKey[];
  readonly notes: string[];
}

export interface AttackInput {
  readonly leak: LeakedState;
  readonly transcript: Transcript;
  /** The leak's time t: frames completed before it are not the attacker's. */
  readonly from: number;
  /** Only frames of this device (the leaked device's), when given. */
  readonly deviceId?: string;
}

const name = (frame: WireFrame) => `${frame.typeName} #${frame.connection}.${frame.direction}.${frame.index}`;

export function attack(input: AttackInput): AttackReport {
  const frames = input.transcript.connections
    .flatMap((connection) => [
      ...splitFrames(connection.chunks.filter((c) => c.direction === 'up'), connection.index, 'up'),
      ...splitFrames(connection.chunks.filter((c) => c.direction === 'down'), connection.index, 'down'),
    ])
    .filter((frame) => frame.at >= input.from && (input.deviceId === undefined || frame.type === 0x01 || frame.deviceId === input.deviceId))
    .sort((a, b) => a.at - b.at || a.connection - b.connection || a.index - b.index);

  const held = new Map<string, HeldKey>();
  const slot = (deviceId: string, keyId: number) => `${deviceId}/${keyId}`;
  const hold = (key: HeldKey): boolean => {
    if (held.has(slot(key.deviceId, key.keyId))) return false;
    held.set(slot(key.deviceId, key.keyId), key);
    return true;
  };
  for (const key of input.leak.keys) hold({ deviceId: key.deviceId, keyId: key.keyId, key: key.key, source: { kind: 'leak', detail: key.source } });
  const ephemerals = input.leak.ephemerals;
  // H of each dh rotation, from the leak (the hub's pending pair) or from a REKEY_DH opened on the wire.
  const hubShares = new Map<string, Uint8Array>();
  for (const e of ephemerals) if (e.side === 'hub' && e.publicKey !== undefined) hubShares.set(slot(e.deviceId, e.keyId), e.publicKey);

  const opened = new Map<WireFrame, { body: Body; learned: string | undefined }>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const frame of frames) {
      if (opened.has(frame) || !frame.sealed || frame.malformed !== undefined) continue;
      let key = held.get(slot(frame.deviceId, frame.keyId));
      if (key === undefined) {
        const derived = deriveWithEphemeral(frame, ephemerals, held, hubShares);
        if (derived !== undefined && hold(derived)) {
          key = derived;
          changed = true;
        }
      }
      if (key === undefined) continue;
      const plain = openFrame(frame, key.key);
      if (plain === undefined) continue;
      const body = decodeBody(frame.type, plain);
      let learned: string | undefined;
      if (body.kind === 'REKEY' && hold({ deviceId: frame.deviceId, keyId: body.keyId, key: body.key, source: { kind: 'rekey', frame: name(frame) } })) {
        learned = `key ${body.keyId}`;
      }
      if (body.kind === 'REKEY_DH' && !hubShares.has(slot(frame.deviceId, body.keyId))) {
        hubShares.set(slot(frame.deviceId, body.keyId), body.hubShare);
        learned = `H of key ${body.keyId}`;
      }
      if (key.source.kind === 'dh' && key.source.frame === name(frame)) learned = `key ${frame.keyId} (derived)`;
      opened.set(frame, { body, learned });
      changed = true;
    }
  }
  return {
    frames: frames.map((frame) => {
      const result = opened.get(frame);
      return { frame, decrypted: result !== undefined, body: result?.body, learned: result?.learned };
    }),
    keys: [...held.values()].sort((a, b) => a.deviceId.localeCompare(b.deviceId) || a.keyId - b.keyId),
    notes: [...input.leak.notes],
  };
}

/**
 * §11.3 with a leaked ephemeral: a device frame under the unknown key n with
 * its share D, the previous key K_{n−1}, H, and h (hub side: Z = X25519(h, D))
 * or d (device side: Z = X25519(d, H)). The candidate counts only if it opens
 * the frame.
 */
function deriveWithEphemeral(
  frame: WireFrame,
  ephemerals: readonly LeakedEphemeral[],
  held: ReadonlyMap<string, HeldKey>,
  hubShares: ReadonlyMap<string, Uint8Array>,
): HeldKey | undefined {
  if (frame.direction !== 'up' || frame.share === undefined) return undefined;
  const previous = held.get(`${frame.deviceId}/${frame.keyId - 1}`);
  const hubShare = hubShares.get(`${frame.deviceId}/${frame.keyId}`);
  if (previous === undefined || hubShare === undefined) return undefined;
  for (const e of ephemerals) {
    if (e.deviceId !== frame.deviceId || e.keyId !== frame.keyId) continue;
    const key = deriveDhKey({
      previousKey: previous.key,
      privateKey: e.privateKey,
      peerPublicKey: e.side === 'hub' ? frame.share : hubShare,
      deviceId: frame.deviceId,
      keyId: frame.keyId,
      hubShare,
      deviceShare: frame.share,
    });
    if (key !== undefined && openFrame(frame, key) !== undefined) {
      return { deviceId: frame.deviceId, keyId: frame.keyId, key, source: { kind: 'dh', ephemeral: e.source, frame: name(frame) } };
    }
  }
  return undefined;
}

/** Per key id: frames seen and frames decrypted (sealed frames only). */
export function tally(report: AttackReport): Map<number, { frames: number; decrypted: number }> {
  const out = new Map<number, { frames: number; decrypted: number }>();
  for (const verdict of report.frames) {
    if (!verdict.frame.sealed) continue;
    const entry = out.get(verdict.frame.keyId) ?? { frames: 0, decrypted: 0 };
    entry.frames++;
    if (verdict.decrypted) entry.decrypted++;
    out.set(verdict.frame.keyId, entry);
  }
  return new Map([...out].sort(([a], [b]) => a - b));
}
