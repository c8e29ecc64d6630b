/**
 * Typed errors (see docs/PROTOCOL.md §9).
 *
 * Rule 1: every authentication or decryption failure is the single code
 * `AUTH_FAILED`, whatever went wrong inside (tag, padding, length), so a
 * peer learns nothing from which check failed.
 * Rule 2: `LOCAL_*` codes are misuse by the caller on this side; every other
 * code is misbehaviour of the remote peer or of storage.
 * Rule 3: an input that raises one of these errors changes no state.
 */
export type ErrorCode =
  // remote peer / wire
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
  /** An X25519 key share whose result is all zero (low order, RFC 7748 §6.1), or that a backend refuses. */
  | 'BAD_KEY_SHARE'
  /** A recovery (docs/PROTOCOL.md §12) that ended without a key; the message says why. */
  | 'RECOVERY_REFUSED'
  /** An enrolment that would change a static key already enrolled (§12.6). */
  | 'STATIC_KEY_LOCKED'
  /** The device holds no recovery credential (§12.6). */
  | 'NO_CREDENTIAL'
  | 'PEER_ERROR'
  | 'TIMEOUT'
  | 'BUFFER_FULL'
  /** A second connection's HELLO while a write of the same device is outstanding: closed, the device retries. */
  | 'DEVICE_BUSY'
  // storage
  | 'STORAGE_CORRUPT'
  | 'STORAGE_FULL'
  | 'UNPROVISIONED'
  // local misuse
  | 'LOCAL_BAD_ARGUMENT'
  | 'LOCAL_NOT_READY'
  | 'LOCAL_BUSY'
  | 'LOCAL_OUTBOX_FULL'
  | 'LOCAL_PAYLOAD_TOO_LARGE'
  | 'LOCAL_KEY_IDS_EXHAUSTED'
  /** Another live hub process serves this database (its exclusive lock; tools/hub). */
  | 'LOCAL_DATABASE_LOCKED';

export class LockstepError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string) {
    super(message === undefined ? code : `${code}: ${message}`);
    this.code = code;
    // Defined, not assigned: XS on Moddable freezes Error.prototype, where
    // assigning `name` would throw (the property is inherited read-only).
    Object.defineProperty(this, 'name', { value: 'LockstepError', configurable: true, writable: true });
  }
}

export function isLockstepError(value: unknown, code?: ErrorCode): value is LockstepError {
  return value instanceof LockstepError && (code === undefined || value.code === code);
}

/** Anything thrown while handling remote input, as a typed error (unexpected exceptions become BAD_PAYLOAD). */
export function asLockstepError(error: unknown): LockstepError {
  if (error instanceof LockstepError) return error;
  return new LockstepError('BAD_PAYLOAD', error instanceof Error ? error.message : String(error));
}

/** A thrown value's message, for logs (never carries secrets: errors here never do). */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
