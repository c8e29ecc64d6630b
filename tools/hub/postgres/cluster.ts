/**
 * A throwaway PostgreSQL 15 cluster: initdb into a fresh temporary folder,
 * listening on loopback only (a free port, and a Unix socket inside the
 * folder), password authentication with a random password, removed by
 * `stop`. Used by the tests, the benchmark and `npm start -- --postgres`.
 *
 * initdb and postgres refuse to run as root: as root (CI) they run as the
 * `postgres` user (runuser) in a folder owned by that user. A missing
 * PostgreSQL is an error with the fix in its message, never a skip.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PostgreSQL's programs: LOCKSTEP_POSTGRES_BIN, else Debian's 15, else the newest Debian version installed. */
export const POSTGRES_BIN = process.env.LOCKSTEP_POSTGRES_BIN ?? debianPostgresBin();

function debianPostgresBin(): string {
  const preferred = '/usr/lib/postgresql/15/bin';
  if (existsSync(join(preferred, 'initdb'))) return preferred;
  try {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const version of versions) if (existsSync(`/usr/lib/postgresql/${version}/bin/initdb`)) return `/usr/lib/postgresql/${version}/bin`;
  } catch {
    // none installed: start() says how to install it
  }
  return preferred;
}

export interface ClusterOptions {
  /** Extra `postgresql.conf` lines (e.g. `max_connections = 200`). */
  readonly settings?: readonly string[];
}

export class ThrowawayCluster {
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly password: string,
    private readonly owner: { uid: number; gid: number } | undefined,
  ) {}

  /** postgres://… for the cluster's `postgres` database. */
  get url(): string {
    return `postgres://lockstep:${this.password}@127.0.0.1:${this.port}/lockstep`;
  }

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  static async start(options: ClusterOptions = {}): Promise<ThrowawayCluster> {
    for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
      if (!existsSync(join(POSTGRES_BIN, tool))) {
        throw new Error(
          `PostgreSQL 15 is required (${join(POSTGRES_BIN, tool)} is missing): apt-get update && apt-get install -y postgresql ` +
            '(or set LOCKSTEP_POSTGRES_BIN to the folder holding initdb and pg_ctl)',
        );
      }
    }
    const owner = process.getuid?.() === 0 ? postgresUser() : undefined;
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-pg-'));
    const password = randomBytes(18).toString('hex');
    const cluster = new ThrowawayCluster(dir, await freePort(), password, owner);
    try {
      if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
      const pwfile = join(dir, 'pwfile');
      writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
      if (owner !== undefined) chownSync(pwfile, owner.uid, owner.gid);
      cluster.#run('initdb', ['-D', cluster.dataDir, '-U', 'lockstep', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-sync']);
      rmSync(pwfile);
      const conf = [
        `port = ${cluster.port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'synchronous_commit = on',
        'fsync = on',
        'max_connections = 200',
        'shared_buffers = 32MB',
        ...(options.settings ?? []),
      ];
      writeFileSync(join(cluster.dataDir, 'postgresql.auto.conf'), `${conf.join('\n')}\n`, { flag: 'a' });
      cluster.startServer();
      cluster.psql('postgres', 'CREATE DATABASE lockstep');
    } catch (error) {
      cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** pg_ctl start (waits until it accepts connections). */
  startServer(): void {
    this.#run('pg_ctl', ['-D', this.dataDir, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  /** Stops the server: `immediate` is a crash (no checkpoint; recovery replays the WAL at the next start). */
  stopServer(mode: 'fast' | 'immediate' = 'fast'): void {
    this.#run('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', 'stop']);
  }

  /** A crash and restart of PostgreSQL: every connection breaks; committed transactions survive. */
  restart(): void {
    this.stopServer('immediate');
    this.startServer();
  }

  /**
   * A streaming-replication standby of this cluster (pg_basebackup -R) in a
   * folder of its own, on its own port, named `name` (its application_name,
   * for synchronous_standby_names). For the HA test (docs/HUB.md §13.5).
   */
  async startStandby(name = 'standby1'): Promise<ThrowawayCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-pg-standby-'));
    const standby = new ThrowawayCluster(dir, await freePort(), this.password, this.owner);
    try {
      if (this.owner !== undefined) chownSync(dir, this.owner.uid, this.owner.gid);
      const conninfo = `host=127.0.0.1 port=${this.port} user=lockstep password=${this.password} application_name=${name}`;
      standby.#run('pg_basebackup', ['-d', conninfo, '-D', standby.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
      const conf = [`port = ${standby.port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, 'hot_standby = on'];
      writeFileSync(join(standby.dataDir, 'postgresql.auto.conf'), `${conf.join('\n')}\n`, { flag: 'a' });
      standby.startServer();
    } catch (error) {
      standby.stop();
      throw error;
    }
    return standby;
  }

  /** Promotes a standby to primary (a failover). */
  promote(): void {
    this.#run('pg_ctl', ['-D', this.dataDir, '-w', 'promote']);
  }

  /** Runs one SQL command through psql over the socket (setup and fault injection). */
  psql(database: string, sql: string): string {
    return this.#run('psql', ['-h', this.dir, '-p', String(this.port), '-U', 'lockstep', '-d', database, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql]);
  }

  /** Stops the server (if running) and removes the folder. Idempotent. */
  stop(): void {
    if (!existsSync(this.dir)) return;
    if (existsSync(join(this.dataDir, 'postmaster.pid'))) {
      try {
        this.stopServer('immediate');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  #run(tool: string, args: string[]): string {
    const path = join(POSTGRES_BIN, tool);
    const env = { ...process.env, PGPASSWORD: this.password, LC_ALL: 'C' };
    const [command, argv] = this.owner === undefined ? [path, args] : ['runuser', ['-u', 'postgres', '--', path, ...args]];
    const result = spawnSync(command, argv, { env, encoding: 'utf8', cwd: this.dir, timeout: 120_000 });
    if (result.status !== 0) {
      throw new Error(`${tool} failed (${result.status ?? result.signal}): ${(result.stderr || result.stdout || String(result.error)).trim().slice(0, 2000)}`);
    }
    return result.stdout;
  }
}

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root needs the `postgres` user to run initdb and postgres (apt-get install -y postgresql creates it)');
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
