/**
 * What the attacker holds: keys and ephemeral private keys, each with where
 * it came from (a leaked copy of durable state, or the wire).
 */

export interface LeakedKey {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: Uint8Array;
  readonly source: string;
}

/** An ephemeral X25519 private key of the dh mode (docs/PROTOCOL.md §11.3), as found in a copy. */
export interface LeakedEphemeral {
  readonly deviceId: string;
  /** The key id of the rotation it belongs to. */
  readonly keyId: number;
  readonly side: 'hub' | 'device';
  readonly privateKey: Uint8Array;
  /** Its public key (H for the hub's, D for the device's), when the copy holds it. */
  readonly publicKey: Uint8Array | undefined;
  readonly source: string;
}

/** Everything extracted from one side's durable state at the time of the leak. */
export interface LeakedState {
  readonly keys: LeakedKey[];
  readonly ephemerals: LeakedEphemeral[];
  /** What could not be read (shown in the report; never a secret). */
  readonly notes: string[];
}
