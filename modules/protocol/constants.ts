/**
 * Constants. Specification constants are fixed by docs/PROTOCOL.md and
 * must match on every compliant peer; implementation constants are this
 * implementation's choices (timers, buffer sizes) and may be tuned.
 */

// ---- Specification constants (docs/PROTOCOL.md §2–§5) ----

export const PROTOCOL_VERSION = 1;
/** u16 big-endian length prefix before every frame (§2). */
export const LENGTH_PREFIX_BYTES = 2;
/** Hard maximum of a frame (header + body), excluding the length prefix (§2). */
export const MAX_FRAME_BYTES = 1280;
/** Largest application payload one DATA message carries (§6.4). */
export const MAX_APP_PAYLOAD_BYTES = 1024;

/** Header layout (§3); the whole header is the AEAD's additional data. */
export const HEADER_BYTES = 36;
/** An X25519 public key: the KEY_SHARE extension after the header (§11.2), and REKEY_DH's share. */
export const KEY_SHARE_BYTES = 32;
/** X25519 private keys (RFC 7748 §5). */
export const X25519_PRIVATE_KEY_BYTES = 32;
export const SESSION_ID_BYTES = 16;
export const NONCE_BYTES = 16;
export const IV_BYTES = 16;
export const TAG_BYTES = 32;
export const AES_BLOCK_BYTES = 16;
/** Smallest sealed frame: header + IV + one ciphertext block + tag. */
export const MIN_SEALED_FRAME_BYTES = HEADER_BYTES + IV_BYTES + AES_BLOCK_BYTES + TAG_BYTES;

/** A Lockstep key: 32-byte MAC key ‖ 32-byte AES key (RFC 7518 §5.2.5). */
export const KEY_BYTES = 64;
/** A device id on the wire (§3). */
export const DEVICE_ID_BYTES = 8;
/** An application-data stream id (§7). */
export const STREAM_ID_BYTES = 8;

/** Key ids are u32; 0 is never a key (it marks "none" and the unsealed CHALLENGE). */
export const NO_KEY_ID = 0;
export const MAX_KEY_ID = 0xffffffff;
export const MAX_SEQUENCE = 0xffffffff;

/** Message types (§6). */
export const MessageType = {
  CHALLENGE: 0x01,
  HELLO: 0x02,
  WELCOME: 0x03,
  /** Recovery (§12.2): unsealed frames, key id 0, each carrying its own tag. */
  NO_KEY: 0x04,
  RECOVER_INIT: 0x05,
  RECOVER_REPLY: 0x06,
  RECOVER_FINISH: 0x07,
  RECOVER_RESULT: 0x08,
  DATA: 0x10,
  DATA_ACK: 0x11,
  REKEY: 0x20,
  REKEY_ACK: 0x21,
  CONFIRM: 0x22,
  /** The offer of a dh-derived key (§11.2). */
  REKEY_DH: 0x23,
  /** Enrolment of a recovery credential in an established session (§12.6). */
  ENROL: 0x24,
  ENROL_ACK: 0x25,
  PING: 0x30,
  PONG: 0x31,
  ERROR: 0x3f,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Wire error codes carried by ERROR messages (§6.9). */
export const WireError = {
  PROTOCOL: 1,
  REKEY_ID_NOT_NEWER: 2,
  REKEY_CONFLICT: 3,
  STORAGE_FAILURE: 4,
  UNEXPECTED_MESSAGE: 5,
  KEY_IDS_EXHAUSTED: 6,
  REKEY_ID_NOT_NEXT: 7,
  /** A classic REKEY to a device in the dh mode (DK12, §11.6). */
  REKEY_MODE_MISMATCH: 8,
  /** A REKEY_DH whose share gives an all-zero X25519 result (DK13, §11.3). */
  BAD_KEY_SHARE: 9,
  /** An ENROL or ENROL_ACK that would change an enrolled static key (DK17, HE2, §12.6). */
  STATIC_KEY_LOCKED: 10,
} as const;
export type WireError = (typeof WireError)[keyof typeof WireError];

/** RECOVER_RESULT status codes (§12.2). */
export const RecoveryStatus = {
  ACCEPTED: 0,
  IN_SYNC: 1,
  AWAITING_APPROVAL: 2,
  REFUSED: 3,
  RATE_LIMITED: 4,
  KEY_IDS_EXHAUSTED: 5,
} as const;
export type RecoveryStatus = (typeof RecoveryStatus)[keyof typeof RecoveryStatus];

/** Recovery frame sizes, header included (§12.2). */
export const RECOVERY_TAG_BYTES = 32;
export const RECOVERY_CHECK_BYTES = 16;
export const NO_KEY_FRAME_BYTES = HEADER_BYTES;
export const RECOVER_INIT_FRAME_BYTES = HEADER_BYTES + KEY_SHARE_BYTES + 4 + 4 + 4 + RECOVERY_CHECK_BYTES + RECOVERY_TAG_BYTES;
export const RECOVER_REPLY_FRAME_BYTES = HEADER_BYTES + KEY_SHARE_BYTES + 4 + RECOVERY_TAG_BYTES;
export const RECOVER_FINISH_FRAME_BYTES = HEADER_BYTES + RECOVERY_TAG_BYTES;
export const RECOVER_RESULT_FRAME_BYTES = HEADER_BYTES + 2 + 4 + RECOVERY_TAG_BYTES;

// ---- Specification bounds on the timers that cross the peers (docs/PROTOCOL.md §8.4, §10) ----

/** A device's keep-alive interval is at most this (D-TIMER-1). */
export const KEEPALIVE_INTERVAL_MAX_MS = 15_000;
/** A hub's idle timeout is at least this: three of the longest keep-alive intervals (H-TIMER-1). */
export const IDLE_TIMEOUT_MIN_MS = 3 * KEEPALIVE_INTERVAL_MAX_MS;
/** A hub's handshake timeout lies within these; a device's is at most the maximum (H-TIMER-2, D-TIMER-3). */
export const HANDSHAKE_TIMEOUT_MIN_MS = 10_000;
export const HANDSHAKE_TIMEOUT_MAX_MS = 60_000;
/** Re-offers of one pending key in one session are at least this far apart (H-RETRY-2); at most REKEY_RETRY_MAX_MS (H-RETRY-1). */
export const REKEY_RETRY_MIN_MS = 1_000;

// ---- Implementation constants ----

/** Device: wait this long for CHALLENGE + WELCOME before giving up on a connection. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Device: send PING when nothing was sent for this long. */
export const KEEPALIVE_INTERVAL_MS = 15_000;
/** Either side: close a session that received nothing for this long. */
export const IDLE_TIMEOUT_MS = 45_000;
/** Hub: first re-offer of an unconfirmed REKEY in a session; doubles up to the max. */
export const REKEY_RETRY_INITIAL_MS = 2_000;
/** Also the specification's bound: re-offers of one pending key in one session are at most this far apart (H-RETRY-1). */
export const REKEY_RETRY_MAX_MS = 30_000;
/** Unacknowledged application messages kept per direction (bounded outbox). */
export const OUTBOX_MESSAGES = 8;
/** Either side: consecutive rejected frames tolerated in an authenticated session; one more closes it (§9). */
export const MAX_REJECTED_FRAMES = 8;
/**
 * Either side: received bytes a core keeps unparsed while a persist is
 * outstanding (its own buffer; past it the connection is closed with
 * BUFFER_FULL). Sized for the most a compliant peer has in flight: a full
 * outbox of DATA frames plus a few control frames, each at most
 * MAX_FRAME_BYTES with its prefix.
 */
export const RECEIVE_BUFFER_BYTES = (OUTBOX_MESSAGES + 4) * (MAX_FRAME_BYTES + LENGTH_PREFIX_BYTES);
/** Device: first spacing of recovery attempts; doubles up to the max, reset by a WELCOME (§12.7). */
export const RECOVERY_RETRY_INITIAL_MS = 30_000;
export const RECOVERY_RETRY_MAX_MS = 3_600_000;
