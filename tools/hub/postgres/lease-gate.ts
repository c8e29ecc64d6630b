/**
 * The lease gate of a PostgreSQL hub instance: no byte of a connection
 * reaches the core before this instance holds the device's lease.
 *
 * A new connection gets the core's CHALLENGE (its hub nonce is noted here);
 * the device's input is then kept (bounded) until its first frame is
 * complete. That frame must be a HELLO of this session (session id = the
 * nonce) that authenticates under a key the database holds for the device
 * now; only then is the lease taken (tools/hub/postgres/store.ts `lease`:
 * epoch + 1 and the row reloaded, one statement), so a peer without the
 * device's key, or replaying an old HELLO, cannot move the lease. The core
 * adopts the reloaded row (`reloadDevice`, after any write of the device
 * that was in flight here has settled: it fails its fence) and gets the
 * kept bytes; from then on the link is the core's as on one hub. Anything
 * else (another frame type, a bad tag, an unknown device, a database error)
 * closes the connection: the device retries with its backoff.
 *
 * Bounds: input kept per connection ≤ maxHeldBytes; leases being taken at
 * once ≤ maxInFlight (beyond, the connection is closed at once, so a
 * database outage does not pile up work).
 */
import { bytesEqual, toHex } from '../../../modules/bytes';
import type { Aead, KeyAgreementPrimitives } from '../../../modules/crypto/primitives';
import { derivePendingKey } from '../../../modules/hub/pending-key';
import { describeError } from '../../../modules/errors';
import type { ConnectionId } from '../../../modules/hub/actions';
import { HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MessageType } from '../../../modules/protocol/constants';
import { openFrame } from '../../../modules/protocol/frame';
import { decodeHeader } from '../../../modules/protocol/header';
import type { Connections, InputGate } from '../connections';
import type { Link } from '../link';
import type { Logger } from '../log';
import type { StoredDevice } from '../store';
import type { Fence, PgHubStore } from './store';

interface Waiting {
  nonce: Uint8Array | undefined;
  held: Uint8Array[];
  heldBytes: number;
  leasing: boolean;
}

export interface LeaseGateHooks {
  /** Wait until no write of the device is in flight on this instance. */
  settled(deviceId: string): Promise<void>;
  /** The lease is ours: adopt the row (the core's reloadDevice / addDevice) and record the fence. False: the link was refused after all. */
  leased(device: StoredDevice, fence: Fence, link: Link): boolean;
  /**
   * Recovery (docs/HUB.md §14): a HELLO of an enrolled device that does not authenticate under the
   * keys the database holds now. True: the core takes the link without a lease (it answers NO_KEY and
   * runs the unauthenticated steps; the lease is taken once tag3 authenticates the request). False: refused.
   */
  recover(deviceId: string, link: Link): Promise<boolean>;
}

export interface LeaseGateStats {
  leasesTaken: number;
  refused: number;
  leaseFailures: number;
}

export class LeaseGate implements InputGate {
  readonly #waiting = new Map<ConnectionId, Waiting>();
  /** Links the core owns (their lease was taken). */
  readonly #passed = new WeakSet<Link>();
  #inFlight = 0;
  readonly stats: LeaseGateStats = { leasesTaken: 0, refused: 0, leaseFailures: 0 };

  constructor(
    private readonly store: PgHubStore,
    private readonly aead: Aead,
    private readonly keyAgreement: KeyAgreementPrimitives | undefined,
    private readonly connections: () => Connections,
    private readonly hooks: LeaseGateHooks,
    private readonly log: Logger,
    private readonly limits: { maxHeldBytes: number; maxInFlight: number },
  ) {}

  /** A `transmit` of the core: the first one of a connection is its CHALLENGE, which names the session. */
  transmitted(connection: ConnectionId, bytes: Uint8Array): void {
    if (this.#waiting.has(connection)) return;
    const link = this.connections().get(connection);
    if (link === undefined || this.#passed.has(link)) return;
    let nonce: Uint8Array | undefined;
    try {
      nonce = decodeHeader(bytes.subarray(LENGTH_PREFIX_BYTES)).sessionId.slice();
    } catch {
      nonce = undefined; // not a challenge: no HELLO will match, the link is refused
    }
    this.#waiting.set(connection, { nonce, held: [], heldBytes: 0, leasing: false });
  }

  /** Links waiting for their lease (statistics). */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Forgets links that closed while waiting (called from the control poll). */
  sweep(): void {
    for (const connection of [...this.#waiting.keys()]) {
      const link = this.connections().get(connection);
      if (link === undefined || link.closed) this.#waiting.delete(connection);
    }
  }

  take(link: Link, chunk: Uint8Array): boolean {
    if (this.#passed.has(link)) return false;
    const waiting = this.#waiting.get(link.id);
    if (waiting === undefined) return this.#refuse(link, 'input before the challenge');
    waiting.held.push(chunk.slice());
    waiting.heldBytes += chunk.length;
    if (waiting.heldBytes > this.limits.maxHeldBytes) return this.#refuse(link, 'input before the lease over its bound');
    if (waiting.leasing) return true;
    const input = concat(waiting.held, waiting.heldBytes);
    if (input.length < LENGTH_PREFIX_BYTES) return true;
    const length = (input[0] as number) * 256 + (input[1] as number);
    if (length < HEADER_BYTES || length > MAX_FRAME_BYTES) return this.#refuse(link, 'first frame length out of bounds');
    if (input.length < LENGTH_PREFIX_BYTES + length) return true;
    const frame = input.slice(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + length);
    let header: ReturnType<typeof decodeHeader>;
    try {
      header = decodeHeader(frame);
    } catch {
      return this.#refuse(link, 'bad header');
    }
    if (header.type !== MessageType.HELLO || header.fromHub) return this.#refuse(link, 'first frame is not a HELLO');
    if (waiting.nonce === undefined || !bytesEqual(header.sessionId, waiting.nonce)) return this.#refuse(link, 'HELLO of another session');
    if (this.#inFlight >= this.limits.maxInFlight) return this.#refuse(link, 'too many leases being taken');
    waiting.leasing = true;
    this.#inFlight++;
    void this.#lease(link, waiting, toHex(header.deviceId), header, frame).finally(() => this.#inFlight--);
    return true;
  }

  async #lease(link: Link, waiting: Waiting, deviceId: string, header: ReturnType<typeof decodeHeader>, frame: Uint8Array): Promise<void> {
    try {
      const now = await this.store.readDevice(deviceId);
      if (now === undefined) {
        this.#refuse(link, 'unknown device');
        return;
      }
      let derived: Uint8Array | undefined;
      let authenticates = true;
      const enrolled = now.device.devicePublicKey !== undefined;
      try {
        const { active, pending } = now.device;
        let key: Uint8Array;
        if (header.keyId === active.id) key = active.key;
        else if (pending === undefined || pending.id !== header.keyId) throw new Error('unknown key id');
        else if (pending.dh === undefined) key = pending.key;
        else {
          // A HELLO under a dh pending key (HK8) carries the device's share: the key is derived as the core does (§11.3).
          if (header.share === undefined || this.keyAgreement === undefined) throw new Error('no key share');
          derived = derivePendingKey(this.keyAgreement, active, { id: pending.id, dh: pending.dh }, header.deviceId, header.share);
          key = derived;
        }
        openFrame(this.aead, key, frame, header);
      } catch {
        authenticates = false;
      } finally {
        derived?.fill(0);
        wipeStored(now.device);
      }
      if (link.closed) return;
      if (!authenticates) {
        if (enrolled && (await this.hooks.recover(deviceId, link)) && !link.closed && this.#waiting.has(link.id)) this.#pass(link, waiting);
        else this.#refuse(link, 'HELLO does not authenticate');
        return;
      }
      await this.hooks.settled(deviceId);
      if (link.closed) return;
      const leased = await this.store.lease(deviceId);
      if (leased === undefined || link.closed) return;
      // A write for the device may have started here meanwhile (under the old fence: it fails); adopt the row after it.
      await this.hooks.settled(deviceId);
      if (link.closed || !this.#waiting.has(link.id)) return;
      if (!this.hooks.leased(leased.device, leased.fence, link)) {
        this.#refuse(link, 'lease not adopted');
        return;
      }
      this.stats.leasesTaken++;
      this.#pass(link, waiting);
    } catch (error) {
      this.stats.leaseFailures++;
      this.log.warn('leaseFailed', { deviceId, message: describeError(error) });
      this.#refuse(link, 'lease failed');
    }
  }

  /** From now on the link is the core's; the kept input goes to it. */
  #pass(link: Link, waiting: Waiting): void {
    this.#waiting.delete(link.id);
    this.#passed.add(link);
    this.connections().feed(link, concat(waiting.held, waiting.heldBytes));
  }

  #refuse(link: Link, reason: string): true {
    this.stats.refused++;
    this.#waiting.delete(link.id);
    this.log.debug('leaseRefused', { connection: link.id, reason, remote: link.remoteAddress });
    this.connections().drop(link, reason);
    return true;
  }
}

/** Zeroes the key material of a row read from the store. */
export function wipeStored(device: StoredDevice): void {
  device.active.key.fill(0);
  device.pending?.key?.fill(0);
  device.pending?.dh?.privateKey.fill(0);
}

function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
