/**
 * What the CLI's recovery commands (`recover`, `enrol`, `static-key`, and
 * `provision`'s credential) need of a database, on both backends (docs/HUB.md
 * §14, §13.11): a SQLite file (the static key file `<db>.static` by default)
 * or a PostgreSQL tier (`<KEK file>.static` by default, beside the keyring
 * every instance reads). Asynchronous; SQLite answers at once.
 */
import type { AuditEntryInput } from './audit';
import type { KeyringChoice } from './kek';
import type { RecoveryRequestRow } from './recovery';
import { resolveStaticKeys, staticKeyPath, StaticKeyError } from './static-keys';
import { HubStore, type DeviceSummary } from './store';
import { isPostgresUrl, PgHubStore, pgStaticKeyPath } from './postgres/store';

export interface RecoveryAdmin {
  /** The database as printed (a PostgreSQL URL without its password). */
  readonly path: string;
  /** The static key file this database's hub (or tier) reads. */
  readonly staticKeyFile: string;
  /** The schema has the recovery columns (SQLite migration 6; a tier's store migrates at open). */
  readonly recoverySchema: boolean;
  recoveryRequests(): Promise<RecoveryRequestRow[]>;
  approveRecovery(deviceId: string, actor: string, now: number): Promise<'approved' | 'already' | 'none' | 'missing'>;
  armEnrolment(deviceId: string, now: number): Promise<'armed' | 'enrolled' | 'missing'>;
  getSummary(deviceId: string): Promise<DeviceSummary | undefined>;
  staticKeyReferences(): Promise<Map<number, number>>;
  appendAudit(entries: readonly AuditEntryInput[], now: number): Promise<void>;
  close(): Promise<void>;
}

export interface AdminChoice extends KeyringChoice {
  readonly staticKeyFile?: string;
  /** SQLite: open without writing (no KEK needed, no migration); PostgreSQL always needs the keyring. */
  readonly readonly?: boolean;
}

export async function openRecoveryAdmin(db: string, choice: AdminChoice): Promise<RecoveryAdmin> {
  if (isPostgresUrl(db)) {
    const file = pgStaticKeyPath(choice, choice.staticKeyFile);
    if (file === undefined) throw new StaticKeyError('STATIC_KEY_UNAVAILABLE', 'a PostgreSQL tier keeps its static keys beside its keyring file: give --static-key-file (or LOCKSTEP_STATIC_KEY_FILE), or --kek-file');
    const store = await PgHubStore.open(db, { ...choice, poolSize: 1 });
    return {
      path: store.path,
      staticKeyFile: file,
      recoverySchema: true,
      recoveryRequests: () => store.recoveryRequests(),
      approveRecovery: (id, actor, now) => store.approveRecovery(id, actor, now),
      armEnrolment: (id, now) => store.armEnrolment(id, now),
      getSummary: (id) => store.getSummary(id),
      staticKeyReferences: () => store.staticKeyReferences(),
      appendAudit: (entries, now) => store.appendAudit(entries, now),
      close: () => store.close(),
    };
  }
  const store = choice.readonly === true ? new HubStore(db, { readonly: true }) : new HubStore(db, choice);
  const recovery = store.schemaVersion >= 6;
  return {
    path: store.path,
    staticKeyFile: staticKeyPath(db, choice.staticKeyFile === undefined ? {} : { staticKeyFile: choice.staticKeyFile }),
    recoverySchema: recovery,
    recoveryRequests: async () => store.recoveryRequests(),
    approveRecovery: async (id, actor, now) => store.approveRecovery(id, actor, now),
    armEnrolment: async (id, now) => store.armEnrolment(id, now),
    getSummary: async (id) => store.getSummary(id),
    staticKeyReferences: async () => (recovery ? store.staticKeyReferences() : new Map<number, number>()),
    appendAudit: async (entries, now) => {
      if (choice.readonly === true) {
        // The read-only handle cannot write: a short writer (needs the KEK) records it.
        const writer = new HubStore(db, choice);
        try {
          writer.appendAudit(entries, now);
        } finally {
          writer.close();
        }
      } else store.appendAudit(entries, now);
    },
    close: async () => store.close(),
  };
}

/** The current hub static key (id, public key): what `provision --out` writes into a device's credential. Created with the first device. */
export async function currentHubStatic(admin: RecoveryAdmin): Promise<{ id: number; publicKey: Uint8Array } | undefined> {
  const keys = resolveStaticKeys(admin.path, { staticKeyFile: admin.staticKeyFile }, (await admin.staticKeyReferences()).size === 0);
  const current = keys?.keys.find((k) => k.id === keys.current);
  return current === undefined ? undefined : { id: current.id, publicKey: current.publicKey };
}
