/**
 * What the kit, as the device's hub, knows about the device under test:
 * its id and rekey mode, every key it ever shared with it (by id: the kit
 * keeps retired keys too, so that it can still name the key of a frame a
 * broken device seals under an old one), the hub's view of the slots
 * (active, pending), the dh exchanges it offered (h, H, and D once seen),
 * and the recovery credential (S_d, and the kit's own static pair).
 *
 * `expected` is the kit's model of the device's slots (docs/PROTOCOL.md §5,
 * §8.1): what a compliant device holds after what the kit sent it. The
 * scenarios compare what the device shows (its HELLO, the key it seals
 * with) against it.
 */
import { randomBytes } from 'node:crypto';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import { deriveRekeyKey, type EphemeralKeyPair } from '../../../modules/crypto/dh-rekey';
import type { StaticKeyPair } from '../../../modules/crypto/recovery';
import type { RekeyMode } from '../../../modules/platform/keys';

export interface DhOffer {
  readonly id: number;
  readonly previousId: number;
  readonly hub: EphemeralKeyPair;
  /** The device's share, from its first REKEY_ACK (or HELLO) under the derived key. */
  deviceShare?: Uint8Array;
}

export interface ExpectedSlots {
  active: number;
  future?: number;
  /** The future key is dh-derived (its frames carry the share). */
  futureDh?: boolean;
}

export class KeyBook {
  readonly deviceId: Uint8Array;
  /** The device's rekey mode as the kit believes it (moves to dh on the promotion of a dh key). */
  mode: RekeyMode;
  /** The mode the device was provisioned in (a classic one moves to dh when it promotes a dh key). */
  readonly provisionedMode: RekeyMode;
  readonly #keys = new Map<number, Uint8Array>();
  readonly #offers = new Map<number, DhOffer>();
  /** The hub's slots (the kit plays a compliant hub unless a scenario says otherwise). */
  hubActive: number;
  hubPending: number | undefined;
  /** What a compliant device holds now. */
  expected: ExpectedSlots;
  /** The device's static public key S_d (recovery credential), when provisioned or enrolled. */
  devicePublicKey: Uint8Array | undefined;
  /** The kit's static pair and its id (the hub static key the device knows, or is to enrol). */
  readonly hubStatic: StaticKeyPair & { readonly id: number };
  /** The kit holds the private half of `hubStatic` (a --hub-static-key-file or its own provisioning). */
  readonly hubStaticKnown: boolean;

  constructor(input: { deviceId: Uint8Array; mode: RekeyMode; keyId: number; key: Uint8Array; devicePublicKey?: Uint8Array; hubStatic: StaticKeyPair & { readonly id: number }; hubStaticKnown?: boolean }) {
    this.deviceId = input.deviceId.slice();
    this.mode = input.mode;
    this.provisionedMode = input.mode;
    this.#keys.set(input.keyId, input.key.slice());
    this.hubActive = input.keyId;
    this.hubPending = undefined;
    this.expected = { active: input.keyId };
    this.devicePublicKey = input.devicePublicKey?.slice();
    this.hubStatic = input.hubStatic;
    this.hubStaticKnown = input.hubStaticKnown ?? true;
  }

  /** The key of `id`, deriving a dh key once the device's share is known (`share`: from the frame being opened). */
  key(id: number, share?: Uint8Array): Uint8Array | undefined {
    const known = this.#keys.get(id);
    if (known !== undefined) return known;
    const offer = this.#offers.get(id);
    if (offer === undefined) return undefined;
    const deviceShare = share ?? offer.deviceShare;
    if (deviceShare === undefined) return undefined;
    const previous = this.#keys.get(offer.previousId);
    if (previous === undefined) return undefined;
    try {
      return deriveRekeyKey(nodeKeyAgreement, {
        previousKey: previous,
        privateKey: offer.hub.privateKey,
        peerShare: deviceShare,
        deviceId: this.deviceId,
        newKeyId: id,
        hubShare: offer.hub.publicKey,
        deviceShare,
      });
    } catch {
      return undefined;
    }
  }

  /** Remember the dh key of `id` derived from `share` (the frame opened under it: the share is the device's). */
  settleDh(id: number, share: Uint8Array): void {
    const offer = this.#offers.get(id);
    if (offer === undefined || this.#keys.has(id)) return;
    const key = this.key(id, share);
    if (key === undefined) return;
    offer.deviceShare = share.slice();
    this.#keys.set(id, key);
  }

  has(id: number): boolean {
    return this.#keys.has(id) || this.#offers.has(id);
  }

  /** A fresh classic key under `id` (the kit's pending key). */
  newClassicKey(id: number): Uint8Array {
    // Only after a device lost keys it had acknowledged (a failed check) is an id reissued: the kit forgets the old key.
    this.#offers.delete(id);
    const key = new Uint8Array(randomBytes(64));
    this.#keys.set(id, key);
    return key;
  }

  /** A key the kit knows by other means (a recovered K_N). */
  setKey(id: number, key: Uint8Array): void {
    this.#keys.set(id, key.slice());
  }

  /** A fresh dh offer for `id` (h, H); the key is derived once the device answers. */
  newDhOffer(id: number, previousId: number): DhOffer {
    const privateKey = new Uint8Array(randomBytes(32));
    this.#keys.delete(id);
    const offer: DhOffer = { id, previousId, hub: { privateKey, publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) } };
    this.#offers.set(id, offer);
    return offer;
  }

  offer(id: number): DhOffer | undefined {
    return this.#offers.get(id);
  }

  /** The id the device seals with, by the model (rule D3: the newest it holds). */
  get expectedSealId(): number {
    return this.expected.future ?? this.expected.active;
  }

  /** The highest id either side ever held (recovery's N is above it). */
  get highestId(): number {
    let highest = 0;
    for (const id of this.#keys.keys()) highest = Math.max(highest, id);
    for (const id of this.#offers.keys()) highest = Math.max(highest, id);
    return highest;
  }
}
