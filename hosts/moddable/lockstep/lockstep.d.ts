/**
 * The Lockstep application API: the module `lockstep` that an application
 * gets by adding hosts/moddable/lockstep/manifest.json to its manifest's
 * `include` list (docs/FIRMWARE.md, "Lockstep in your own firmware").
 *
 * One `Lockstep` instance is one secure channel to the hub: it keeps the
 * device's key in sync with the hub's (rotations, reconnects, power cuts)
 * and carries the application's messages, sealed, both ways.
 *
 * Shape: ECMA-419's IO class pattern (§9.2: constructor options, callbacks
 * named on*, read/write/close, `this` in a callback is the instance).
 * Where it departs, and why:
 * - message-oriented, not a byte stream: `read()` answers one whole message
 *   and `write()` takes one; counts in onReadable/onWritable are messages.
 *   The protocol seals and acknowledges messages, not bytes.
 * - `write()` answers the id the core assigned to the message (the id that
 *   `onDelivered` reports once the hub acknowledged it), or a typed error
 *   with nothing queued; it never throws for back-pressure (ECMA-419 throws
 *   when the data does not fit). A full outbox is an ordinary condition on
 *   a link that drops, not an exception.
 * - no `format` property: payloads are always bytes (a Uint8Array from
 *   read(), an ArrayBuffer or any ArrayBufferView into write()).
 * - state callbacks beyond ECMA-419's: connecting, established, rekeying,
 *   key promoted, recovery, closed. onError is called once, for a fatal
 *   error only (the channel is closed after it); the protocol's own
 *   recoverable failures are logged and retried, never reported as errors.
 *
 * Bounded memory: the outbox (messages sent and not yet acknowledged) holds
 * at most `outboxMessages`, each at most `maxMessageBytes`; received
 * messages wait in an inbox of at most `inboxMessages` until read().
 */

export type ErrorCode =
  | 'FRAME_TOO_SHORT'
  | 'FRAME_TOO_LONG'
  | 'BAD_VERSION'
  | 'UNKNOWN_TYPE'
  | 'BAD_HEADER'
  | 'UNKNOWN_DEVICE'
  | 'UNKNOWN_KEY_ID'
  | 'AUTH_FAILED'
  | 'BAD_SESSION'
  | 'BAD_SEQUENCE'
  | 'BAD_PAYLOAD'
  | 'UNEXPECTED_MESSAGE'
  | 'REKEY_REJECTED'
  | 'BAD_KEY_SHARE'
  | 'RECOVERY_REFUSED'
  | 'STATIC_KEY_LOCKED'
  | 'NO_CREDENTIAL'
  | 'PEER_ERROR'
  | 'TIMEOUT'
  | 'BUFFER_FULL'
  | 'DEVICE_BUSY'
  | 'STORAGE_CORRUPT'
  | 'STORAGE_FULL'
  | 'UNPROVISIONED'
  | 'LOCAL_BAD_ARGUMENT'
  | 'LOCAL_NOT_READY'
  | 'LOCAL_BUSY'
  | 'LOCAL_OUTBOX_FULL'
  | 'LOCAL_PAYLOAD_TOO_LARGE'
  | 'LOCAL_KEY_IDS_EXHAUSTED'
  | 'LOCAL_DATABASE_LOCKED';

/** Every error Lockstep reports: a stable `code`, a message that never holds a secret. */
export class LockstepError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string);
}

/** What `write()` refuses with, nothing queued: LOCAL_OUTBOX_FULL (wait for onWritable), LOCAL_PAYLOAD_TOO_LARGE, LOCAL_NOT_READY (closed, or no keystore mounted). */
export type WriteError = LockstepError & { readonly code: 'LOCAL_OUTBOX_FULL' | 'LOCAL_PAYLOAD_TOO_LARGE' | 'LOCAL_NOT_READY' };

/**
 * - `starting`: bringing the network up and mounting the keystore;
 * - `connecting`: no session: an attempt is under way or the next one is scheduled (backoff);
 * - `established`: a session with the hub; messages flow now;
 * - `rekeying`: established, and a future key is stored, not yet promoted;
 * - `recovery`: reserved for the re-sync after a hub restored from a backup (a later issue; never entered yet);
 * - `closed`: after close() or a fatal error; final.
 */
export type LockstepState = 'starting' | 'connecting' | 'established' | 'rekeying' | 'recovery' | 'closed';

export interface LockstepTlsOptions {
  /** Verify the hub's chain and name (default: config `hubTlsVerify`, true). Pin `ca` instead of ever turning this off. */
  readonly verify?: boolean;
  /**
   * The pinned trust anchor: the DER certificate the hub's chain must end at
   * (the development CA `lockstep-hub cert` prints as `hubCa`, or your own
   * CA). Hex, or bytes (e.g. `new Resource("hub-ca.der").slice(0)`, a copy out of flash). The library
   * brings no other CA certificates, so this is the only one trusted.
   * Default: config `hubCa`.
   */
  readonly ca?: string | ArrayBuffer | Uint8Array;
}

export interface LockstepOptions {
  /** `host` or `host:port` (default: config `hub`). */
  readonly hub?: string;
  /** Default: config `port`, else the port in `hub`, else 7700 (TCP) / 7701 (TLS). */
  readonly port?: number;
  /** TLS to the hub: `true`, or trust settings; `false` for plain TCP (frames are sealed either way). Default: config `hubTls`. */
  readonly tls?: boolean | LockstepTlsOptions;
  /** Reconnect backoff: attempt n waits in [d/2, d], d = min(max, base * 2^n). Defaults: config. */
  readonly reconnectBaseMs?: number;
  readonly reconnectMaxMs?: number;
  /** An attempt that has not connected after this long is abandoned. Default: config `connectTimeoutMs`. */
  readonly connectTimeoutMs?: number;
  /** Messages written and not yet acknowledged by the hub, at most (1..8, default 8). */
  readonly outboxMessages?: number;
  /** Largest message written, in bytes (1..1024, default 1024); the hub's messages are bounded by the protocol (1024). */
  readonly maxMessageBytes?: number;
  /** Received messages waiting for read(), at most (1..16, default 4); one more is dropped and counted (`stats.inboxDropped`). */
  readonly inboxMessages?: number;

  /** `count` messages wait to be read: call read() until it answers undefined. */
  onReadable?(this: Lockstep, count: number): void;
  /** Room for `count` more messages in the outbox (after acknowledgements, and on each new session). */
  onWritable?(this: Lockstep, count: number): void;
  /** The hub acknowledged the message `id` (the id write() answered). */
  onDelivered?(this: Lockstep, id: number): void;
  /** Fatal: the channel is closed after this (an unusable keystore, a keystore for another device). */
  onError?(this: Lockstep, error: LockstepError): void;

  /** A connection attempt starts (`attempt` in a row without a session, from 0). */
  onConnecting?(this: Lockstep, attempt: number): void;
  /** A session is up under the active key `keyId`. */
  onEstablished?(this: Lockstep, keyId: number): void;
  /** The connection went away (`reason`); the channel reconnects by itself. */
  onDisconnected?(this: Lockstep, reason: string): void;
  /** The hub offered key `keyId`: it is stored as the future key, durably. */
  onRekeying?(this: Lockstep, keyId: number): void;
  /** Key `keyId` is now the active key, durably; the old one is erased. */
  onKeyPromoted?(this: Lockstep, keyId: number): void;
  /** Recovery after a rollback (docs/PROTOCOL.md §12): the hub lost our key, a recovered key was stored, a refusal, an enrolment. */
  onRecovery?(this: Lockstep, detail: string): void;
  /** The channel is closed for good (close(), or after onError). */
  onClosed?(this: Lockstep): void;
  /** Where the library's own lines go (default: trace with a timestamp). */
  log?(line: string): void;
}

export interface LockstepStats {
  readonly connects: number;
  readonly sessions: number;
  readonly closes: number;
  readonly boots: number;
  /** Messages received while the inbox was full: dropped after the core acknowledged them. */
  readonly inboxDropped: number;
}

export class Lockstep {
  /**
   * Checks every option and every Lockstep key of `mc/config`: each bad one
   * is logged as one line (`lockstep: option port: expected an integer in
   * [1, 65535]`), then the constructor throws one LockstepError
   * ('LOCAL_BAD_ARGUMENT') listing them all. Otherwise it brings the network
   * up, mounts the keystore and connects, all after it has returned.
   */
  constructor(options?: LockstepOptions);
  readonly state: LockstepState;
  /** The active key's id (0 before the keystore is mounted). */
  readonly keyId: number;
  /** Messages written and not yet acknowledged. */
  readonly outboxLength: number;
  readonly outboxMessages: number;
  readonly maxMessageBytes: number;
  readonly inboxMessages: number;
  readonly stats: LockstepStats;
  /** The next received message, or undefined when none waits. */
  read(): Uint8Array | undefined;
  /** Queues `payload` (copied); answers its id, or a typed error with nothing queued. Messages written before a session wait in the outbox. */
  write(payload: ArrayBuffer | ArrayBufferView): number | WriteError;
  /** Closes the connection and stops reconnecting; unread and unacknowledged messages are dropped. Idempotent. */
  close(): void;
}
