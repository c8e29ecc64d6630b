/**
 * Accounting of application data, to prove "nothing lost, nothing
 * duplicated" from outside the protocol. Every message carries a unique
 * tag; the ledger records each send with the sender's epoch (boots of the
 * device, runs of the hub) and each delivery with the receiver's epoch.
 *
 * Verdict rules (docs/HUB.md "Application data guarantees"):
 * - a message delivered twice in the same receiver epoch is a duplicate the
 *   protocol must never produce: a violation;
 * - deliveries in different receiver epochs are allowed: a receiver that
 *   restarts loses its dedup memory, so delivery is at-least-once across a
 *   receiver crash;
 * - a message never delivered is allowed only if its sender's epoch ended
 *   (the sender crashed with it unacknowledged: the outbox is in RAM);
 *   otherwise it is lost: a violation;
 * - a delivery of a message never sent is a violation.
 * With no crash at all this is exactly-once.
 */
export type Direction = 'up' | 'down';

interface Entry {
  /** undefined until the send is booked (a delivery can be booked first when the logs arrive out of order). */
  senderEpoch: number | undefined;
  cancelled: boolean;
  deliveries: number[];
}

export interface LedgerVerdict {
  readonly sent: number;
  readonly delivered: number;
  /** Delivered more than once, each in a different receiver epoch (allowed). */
  readonly redeliveredAfterCrash: number;
  /** Never delivered, sender crashed while it was unacknowledged (allowed). */
  readonly droppedBySenderCrash: number;
  readonly duplicates: number;
  readonly lost: number;
  readonly unknown: number;
  readonly violations: string[];
}

export class Ledger {
  readonly #entries = new Map<string, Entry>();
  /** Current epoch per sender ("hub" or a device id). */
  readonly #epochs = new Map<string, number>();

  /** The sender (device id, or "hub") is now in `epoch`; earlier epochs have ended. */
  setEpoch(sender: string, epoch: number): void {
    this.#epochs.set(sender, epoch);
  }

  sent(direction: Direction, deviceId: string, tag: string, senderEpoch: number): void {
    this.#entry(direction, deviceId, tag).senderEpoch = senderEpoch;
  }

  /** The send did not happen after all (outbox full). */
  cancelled(direction: Direction, deviceId: string, tag: string): void {
    this.#entry(direction, deviceId, tag).cancelled = true;
  }

  delivered(direction: Direction, deviceId: string, tag: string, receiverEpoch: number): void {
    this.#entry(direction, deviceId, tag).deliveries.push(receiverEpoch);
  }

  counts(direction?: Direction): { sent: number; delivered: number } {
    let sent = 0;
    let delivered = 0;
    for (const [k, entry] of this.#entries) {
      if (entry.cancelled || entry.senderEpoch === undefined) continue;
      if (direction !== undefined && !k.startsWith(`${direction}/`)) continue;
      sent++;
      if (entry.deliveries.length > 0) delivered++;
    }
    return { sent, delivered };
  }

  /** Messages sent and not yet delivered whose sender is still in the same epoch (in flight). */
  inFlight(): number {
    let count = 0;
    for (const [k, entry] of this.#entries) {
      if (entry.cancelled || entry.senderEpoch === undefined || entry.deliveries.length > 0) continue;
      if (this.#senderEpoch(k) === entry.senderEpoch) count++;
    }
    return count;
  }

  verdict(direction?: Direction): LedgerVerdict {
    let sent = 0;
    let delivered = 0;
    let redeliveredAfterCrash = 0;
    let droppedBySenderCrash = 0;
    let duplicates = 0;
    let lost = 0;
    let unknown = 0;
    const violations: string[] = [];
    const violation = (text: string) => {
      if (violations.length < 20) violations.push(text);
    };
    for (const [k, entry] of this.#entries) {
      if (direction !== undefined && !k.startsWith(`${direction}/`)) continue;
      if (entry.senderEpoch === undefined || entry.cancelled) {
        if (entry.deliveries.length > 0) {
          unknown++;
          violation(`delivered but never sent: ${k}`);
        }
        continue;
      }
      sent++;
      if (entry.deliveries.length === 0) {
        if (this.#senderEpoch(k) !== entry.senderEpoch) {
          droppedBySenderCrash++;
        } else {
          lost++;
          violation(`lost: ${k}`);
        }
        continue;
      }
      delivered++;
      if (new Set(entry.deliveries).size < entry.deliveries.length) {
        duplicates++;
        violation(`duplicate in one receiver epoch: ${k} (epochs ${entry.deliveries.join(',')})`);
      } else if (entry.deliveries.length > 1) {
        redeliveredAfterCrash++;
      }
    }
    return { sent, delivered, redeliveredAfterCrash, droppedBySenderCrash, duplicates, lost, unknown, violations };
  }

  #entry(direction: Direction, deviceId: string, tag: string): Entry {
    const k = key(direction, deviceId, tag);
    let entry = this.#entries.get(k);
    if (entry === undefined) {
      entry = { senderEpoch: undefined, cancelled: false, deliveries: [] };
      this.#entries.set(k, entry);
    }
    return entry;
  }

  #senderEpoch(k: string): number | undefined {
    const [direction, deviceId] = k.split('/');
    return this.#epochs.get(direction === 'up' ? (deviceId as string) : 'hub');
  }
}

function key(direction: Direction, deviceId: string, tag: string): string {
  return `${direction}/${deviceId}/${tag}`;
}
