/**
 * The hub's suites on both backends (docs/HUB.md §13.7): a test file calls
 * `useBackends()` at its top and runs its suites in
 * `describe.each(BACKENDS)`. One throwaway PostgreSQL cluster per file
 * (started in beforeAll), a fresh database per test on PostgreSQL, a fresh
 * folder per test on SQLite. PostgreSQL missing fails the file (with the
 * install command), never skips it.
 *
 * The differences the suites have to name: a key-slot write on PostgreSQL
 * needs the lease's fence (`fencesFor`: SQLite's one hub holds every lease),
 * and raw SQL goes to the file or to the server (`rawSql`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyring } from '../../tools/hub/kek';
import type { ThrowawayCluster } from '../../tools/hub/postgres/cluster';
import type { Fence, PgHubStore } from '../../tools/hub/postgres/store';
import { openStorage, startHub, type AnyHub, type Backend, type HubStorage } from '../../tools/hub/storage';
import { freshDatabase, sql, startCluster } from './postgres';

export const BACKENDS: readonly Backend[] = ['sqlite', 'postgres'];

export interface Backends {
  /** A fresh database: a file path (SQLite) or a postgres:// URL. */
  database(backend: Backend): Promise<string>;
  /** The folder of this test (files other than the database). */
  readonly dir: string;
  /** Options giving a store its keyring: SQLite uses the default file next to the database; PostgreSQL the file's shared keyring. */
  keyringFor(url: string): { keyring?: Keyring };
  /** An extra store on the database, closed after the test. */
  storage(url: string): Promise<HubStorage>;
  /** A hub on the database (closed after the test); options as for `startHub` of tools/hub/storage.ts. */
  hub(url: string, options?: Record<string, unknown>): Promise<AnyHub>;
  /** The fences a key-slot write needs: PostgreSQL leases the devices (as a serving instance does); SQLite none. */
  fencesFor(storage: HubStorage, deviceIds: readonly string[]): Promise<Map<string, Fence>>;
  /** Runs SQL on the database itself (better-sqlite3 on the file, or the server). */
  rawSql(url: string, text: string): Promise<unknown[]>;
  /** Runs a step after the test (before the folder is removed). */
  later(step: () => Promise<void> | void): void;
}

export function useBackends(): Backends {
  let cluster: ThrowawayCluster | undefined;
  let dir = '';
  let files = 0;
  const keyring = Keyring.ephemeral();
  const cleanup: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);
  afterAll(() => cluster?.stop());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lockstep-both-'));
  });
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) {
      try {
        await step();
      } catch {
        // a step of a failed test: the next steps still run
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  // A PostgreSQL test makes databases and round trips: on a loaded 2-core machine 5 s (jest's default) is too short.
  jest.setTimeout(30_000);

  const keyringFor = (url: string): { keyring?: Keyring } => (url.startsWith('postgres') ? { keyring } : {});

  return {
    get dir() {
      return dir;
    },
    async database(backend) {
      if (backend === 'sqlite') return join(dir, `hub-${++files}.db`);
      if (cluster === undefined) throw new Error('no cluster (beforeAll failed)');
      return freshDatabase(cluster);
    },
    keyringFor,
    async storage(url) {
      const opened = await openStorage(url, { ...keyringFor(url), poolSize: 2 });
      cleanup.push(() => opened.close());
      return opened;
    },
    async hub(url, options = {}) {
      const hub = await startHub({ database: url, store: { ...keyringFor(url), poolSize: 4 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, ...options } as Parameters<typeof startHub>[0]);
      cleanup.push(() => hub.close());
      return hub;
    },
    async fencesFor(storage, deviceIds) {
      const fences = new Map<string, Fence>();
      if (storage.backend !== 'postgres') return fences;
      const store = (storage as unknown as { store: PgHubStore }).store;
      for (const id of deviceIds) {
        const lease = await store.lease(id);
        if (lease === undefined) throw new Error(`no device ${id} to lease`);
        lease.device.active.key.fill(0);
        fences.set(id, lease.fence);
      }
      return fences;
    },
    async rawSql(url, text) {
      if (url.startsWith('postgres')) return (await sql(url, text)).rows;
      const db = new Database(url);
      db.pragma('busy_timeout = 5000'); // (the test's store may be checkpointing)
      try {
        const statement = db.prepare(text);
        return statement.reader ? statement.all() : [statement.run()];
      } finally {
        db.close();
      }
    },
    later(step) {
      cleanup.push(step);
    },
  };
}
