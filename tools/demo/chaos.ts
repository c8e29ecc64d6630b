/**
 * Fault injection for the demo and the end-to-end tests, wrapped around a
 * device from the outside (the device loop and its hosts know nothing of
 * it): a transport that cuts the connection after a chosen number of bytes
 * (both directions counted, so the cut lands at any byte of any frame), and
 * a key storage whose flash loses power in the middle of a write.
 */
import type { DeviceConnection, DeviceTransport } from '../../modules/device/loop';
import { PowerCut, type CutPlan } from '../../modules/flash/nor-flash';
import type { KeyStorage, PersistLater } from '../../modules/keystore/key-storage';
import type { MountResult } from '../../modules/keystore/keystore';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import { LockstepError } from '../../modules/errors';
import type { DeviceKeys, KeyShares, KeySlot, RekeyMode } from '../../modules/platform/keys';
import type { CuttableFlash } from '../testing/cuttable-flash';

/**
 * Cuts each connection after `cutAfter()` bytes (undefined: never): the
 * bytes up to the cut pass, the connection is closed after them, and the
 * device hears that it closed.
 */
export function cuttingTransport(inner: DeviceTransport, cutAfter: () => number | undefined, onCut: () => void): DeviceTransport {
  return (events) => {
    let budget = cutAfter();
    let ended = false;
    let connection: DeviceConnection | undefined;
    const pass = (bytes: Uint8Array): { bytes: Uint8Array; cut: boolean } => {
      if (budget === undefined) return { bytes, cut: false };
      if (bytes.length < budget) {
        budget -= bytes.length;
        return { bytes, cut: false };
      }
      const allowed = bytes.subarray(0, budget);
      budget = 0;
      return { bytes: allowed, cut: true };
    };
    const cut = (): void => {
      if (ended) return;
      ended = true;
      onCut();
      connection?.close();
      events.onClosed('injected cut');
    };
    connection = inner({
      onConnected: () => {
        if (!ended) events.onConnected();
      },
      onData: (bytes) => {
        if (ended) return;
        const passed = pass(bytes);
        if (passed.bytes.length > 0) events.onData(passed.bytes);
        if (passed.cut) cut();
      },
      onClosed: (reason) => {
        if (ended) return;
        ended = true;
        events.onClosed(reason);
      },
    });
    return {
      write: (bytes) => {
        if (ended) return;
        const passed = pass(bytes);
        if (passed.bytes.length > 0) connection?.write(passed.bytes);
        if (passed.cut) cut();
      },
      close: () => {
        ended = true;
        connection?.close();
      },
    };
  };
}

export interface PowerCutChoice {
  /** Before each write: the cut to arm in the flash, or undefined for none. */
  nextCut(): CutPlan | undefined;
  /** The flash lost power in the middle of a write: the device is dead now (it reboots from its image). */
  onPowerLoss(): void;
}

/** The keystore on a CuttableFlash, with power cuts armed per write; every mount is a boot (power restored first). */
export class PowerCutStorage implements KeyStorage {
  readonly #flash: CuttableFlash;
  readonly #open: () => KeyStorage;
  readonly #choice: PowerCutChoice;
  #inner: KeyStorage | undefined;

  constructor(flash: CuttableFlash, open: () => KeyStorage, choice: PowerCutChoice) {
    this.#flash = flash;
    this.#open = open;
    this.#choice = choice;
  }

  mount(): MountResult {
    this.#flash.restorePower();
    this.#inner = this.#open();
    return this.#inner.mount();
  }

  get keys(): DeviceKeys {
    return this.#mounted().keys;
  }

  get deviceId(): Uint8Array {
    return this.#mounted().deviceId;
  }

  get credential(): RecoveryCredential | undefined {
    return this.#mounted().credential;
  }

  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode, credential?: RecoveryCredential): void {
    this.#mounted().format(deviceId, initial, mode, credential);
  }

  storeCredential(credential: RecoveryCredential): void | PersistLater {
    const inner = this.#mounted();
    if (inner.storeCredential === undefined) throw new LockstepError('LOCAL_NOT_READY', 'this storage keeps no recovery credential');
    return this.#write(() => inner.storeCredential?.(credential));
  }

  storeRecovered(id: number, key: Uint8Array): void | PersistLater {
    const inner = this.#mounted();
    if (inner.storeRecovered === undefined) throw new LockstepError('LOCAL_NOT_READY', 'this storage cannot store a recovered key');
    return this.#write(() => inner.storeRecovered?.(id, key));
  }

  storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void | PersistLater {
    return this.#write(() => this.#mounted().storeFuture(id, key, shares));
  }

  promote(expectedId?: number): KeySlot | PersistLater {
    return this.#write(() => this.#mounted().promote(expectedId));
  }

  scrub(): void {
    const inner = this.#mounted();
    if (inner.scrub !== undefined) this.#write(() => inner.scrub?.());
  }

  #write<T>(run: () => T): T {
    const plan = this.#choice.nextCut();
    if (plan !== undefined) this.#flash.armCut(plan);
    try {
      return run();
    } catch (error) {
      if (error instanceof PowerCut) this.#choice.onPowerLoss();
      throw error;
    } finally {
      this.#flash.disarmCut();
    }
  }

  #mounted(): KeyStorage {
    if (this.#inner === undefined) this.mount();
    return this.#inner as KeyStorage;
  }
}
