/** Key material as the state machines and the stores see it. */

/** Length of a Lockstep key: 32-byte MAC key ‖ 32-byte AES key (RFC 7518 §5.2.5). */
export const KEY_BYTES = 64;
/** Length of a device id on the wire. */
export const DEVICE_ID_BYTES = 8;

export interface KeySlot {
  /** 32-bit unsigned, strictly increasing per device. */
  readonly id: number;
  /** KEY_BYTES bytes. */
  readonly key: Uint8Array;
}

/** What a device holds: one active key and at most one future key. */
export interface DeviceKeys {
  readonly active: KeySlot;
  readonly future?: KeySlot;
}
