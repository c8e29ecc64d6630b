/**
 * Hub configuration: every knob with its default, in one place. Durations
 * are numbers of milliseconds, and every option holding one ends in `Ms`
 * (`checkHubOptions` refuses anything but a non-negative integer there);
 * strings with units ("60s") are for the CLI and config files only
 * (tools/hub/duration.ts). Protocol timers (handshake, idle, re-offer backoff) are
 * the core's (modules/protocol/constants.ts) unless overridden.
 */
import type { RecoveryPolicy } from './recovery';
import type { HubStaticKeys } from './static-keys';
import { checkMilliseconds } from './duration';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import type { HubTiming } from '../../modules/hub/hub';
import type { Logger } from './log';
import type { RotationPolicy } from './scheduler';
import type { HubStore } from './store';
import type { HttpOptions } from './http/options';

export interface ConnectionLimits {
  /** Open transport connections, authenticated or not, counted from the kernel's accept (TLS: before the handshake); at the cap a pre-authentication one is evicted for the new one, which is refused only when all are authenticated. */
  readonly maxConnections: number;
  /** Connections whose HELLO has not authenticated yet (TLS handshakes included); beyond, the oldest of the source holding the most is evicted (docs/HUB.md §5). */
  readonly maxUnauthenticated: number;
  /** Received bytes the core keeps for one connection while its device's commit is outstanding (HubCore receiveBufferBytes; the socket is paused meanwhile); beyond: closed, BUFFER_FULL. */
  readonly maxQueuedInputBytes: number;
  /** Bytes written to one connection and not yet taken by the kernel; beyond: closed (a peer that does not read). */
  readonly maxWriteBufferBytes: number;
  /** TLS only: the TLS handshake must finish within this time. */
  readonly tlsHandshakeTimeoutMs: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  // 16,384 devices plus the pre-authentication cap (docs/HUB.md §5).
  maxConnections: 24_576,
  // A connection lives at least cap / flood rate: 8,192 at 3,000/s ≈ 2.7 s, enough for a 2 × 400 ms handshake.
  maxUnauthenticated: 8_192,
  maxQueuedInputBytes: 128 * 1024,
  maxWriteBufferBytes: 256 * 1024,
  tlsHandshakeTimeoutMs: 10_000,
};

export interface ListenOptions {
  readonly host?: string;
  /** 0 picks a free port (see `LockstepHub.addresses`). */
  readonly port?: number;
}

export interface TlsListenOptions extends ListenOptions {
  /** PEM certificate chain and private key (see `lockstep-hub cert`). */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_TCP_PORT = 7700;
export const DEFAULT_TLS_PORT = 7701;

export interface HubOptions {
  /** SQLite file (created and migrated if absent), or an open store. */
  readonly database: string | HubStore;
  /** Plain TCP listener; default 127.0.0.1:7700; `false` for none. */
  readonly tcp?: ListenOptions | false;
  /** TLS listener (in addition to or instead of TCP). */
  readonly tls?: TlsListenOptions;
  readonly rotation?: Partial<RotationPolicy>;
  readonly limits?: Partial<ConnectionLimits>;
  /** Core protocol timers. */
  readonly timing?: Partial<HubTiming>;
  /** How often the core's timers and the rotation schedule run; default 200 ms. */
  readonly tickMs?: number;
  /** How often the database is polled for CLI requests (rotate, new devices); default 1000 ms. */
  readonly controlPollMs?: number;
  /** How often last-seen times are written; default 5000 ms. */
  readonly lastSeenFlushMs?: number;
  /** How often a `stats` log line is written; default 60 s. */
  readonly statsLogMs?: number;
  /** Refuse to start while another live hub process serves the same database; default true. */
  readonly exclusive?: boolean;
  readonly logger?: Logger;
  /** The operator API, metrics and dashboard on a separate listener (tools/hub/http/, docs/HUB.md §12); off when absent. */
  readonly http?: HttpOptions;
  /** Record key events (rotation started, confirmed) in the audit trail; default true. Administrative actions are always recorded. */
  readonly audit?: boolean;
  /** Crypto bindings; default node:crypto (hosts/node/crypto.ts). */
  readonly aead?: Aead;
  readonly random?: RandomSource;
  /** X25519 and HKDF for dh-mode devices (docs/PROTOCOL.md §11); default node:crypto (hosts/node/key-agreement.ts). */
  readonly keyAgreement?: KeyAgreementPrimitives;
  /**
   * Issue 14: the recovery policy and limits (tools/hub/recovery.ts, docs/HUB.md §14); default auto, 3 per device per hour.
   * Recovery needs the hub's static keys: `staticKeys`, else the database's static key file (`<db>.static`,
   * `staticKeyFile`, LOCKSTEP_STATIC_KEY_FILE); a ':memory:' database without them serves no recovery.
   */
  readonly recovery?: Partial<RecoveryPolicy>;
  readonly staticKeys?: HubStaticKeys;
  readonly staticKeyFile?: string;
}

/**
 * Refuses options that cannot be what the caller meant: a millisecond option
 * (name ending in `Ms`) that is not a non-negative integer, e.g. a string
 * "60s" or NaN. Called by `LockstepHub.start`; the rotation policy is checked
 * by `RotationScheduler`.
 */
export function checkHubOptions(options: HubOptions): void {
  const groups: [string, object | undefined][] = [
    ['', options],
    ['limits.', options.limits],
    ['timing.', options.timing],
    ['rotation.', options.rotation],
  ];
  for (const [prefix, group] of groups) {
    if (group === undefined) continue;
    for (const [name, value] of Object.entries(group)) {
      if (name.endsWith('Ms') && value !== undefined) checkMilliseconds(`${prefix}${name}`, value);
    }
  }
}
