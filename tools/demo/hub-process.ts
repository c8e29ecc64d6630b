/**
 * The demo hub (tools/demo/hub-app.ts) as a real child process: bundled
 * once with esbuild (fast restarts), spawned with node, killed with SIGKILL
 * at any moment and restarted from its database on the same port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import type { HubAppConfig } from './hub-app';

/** The repository root: the nearest directory upwards from cwd with the lockstep package.json. */
export function repositoryRoot(from = process.cwd()): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'lockstep') return dir;
    if (dirname(dir) === dir) throw new Error(`not inside the lockstep repository: ${from}`);
  }
}

const bundles = new Map<string, string>();

/**
 * Bundles a program of this repository (path relative to the root) into a
 * .cjs with esbuild, for fast child-process starts. The file lands in
 * node_modules/.cache/lockstep under a name derived from its content
 * (written atomically), so concurrent test workers share it and nothing
 * piles up in /tmp; better-sqlite3 stays external.
 */
export function bundleProgram(entry: string): string {
  const cached = bundles.get(entry);
  if (cached !== undefined) return cached;
  const root = repositoryRoot();
  const result = buildSync({
    entryPoints: [join(root, entry)],
    write: false,
    outfile: 'bundle.cjs',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['better-sqlite3', 'pg-native'],
    logLevel: 'error',
  });
  const contents = result.outputFiles[0]?.contents;
  if (contents === undefined) throw new Error(`esbuild produced nothing for ${entry}`);
  const dir = join(root, 'node_modules', '.cache', 'lockstep');
  mkdirSync(dir, { recursive: true });
  const name = `${entry.replace(/[^a-z0-9]+/gi, '-')}-${createHash('sha256').update(contents).digest('hex').slice(0, 16)}.cjs`;
  const path = join(dir, name);
  if (!existsSync(path)) {
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, contents);
    renameSync(temporary, path);
  }
  bundles.set(entry, path);
  return path;
}

/** The environment for a bundled child: node_modules of this repository on NODE_PATH. */
export function childEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_PATH: join(repositoryRoot(), 'node_modules') };
}

export function hubAppBundle(): string {
  return bundleProgram('tools/demo/hub-app.ts');
}

export interface HubStats {
  readonly connections: number;
  readonly devicesOnline: number;
  readonly rotationsConfirmed: number;
  readonly rejectedFrames: number;
  readonly [key: string]: number;
}

export class HubProcess {
  readonly #config: Omit<HubAppConfig, 'epoch' | 'tcpPort'>;
  #child: ChildProcess | undefined;
  #port: number;
  epoch = 0;
  kills = 0;
  stats: HubStats | undefined;
  stderr = '';
  onExit: ((code: number | null, signal: NodeJS.Signals | null) => void) | undefined;

  constructor(config: Omit<HubAppConfig, 'epoch' | 'tcpPort'>, port = 0) {
    this.#config = config;
    this.#port = port;
  }

  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the hub; resolves with its port once it listens. */
  start(): Promise<number> {
    if (this.#child !== undefined) throw new Error('hub already running');
    const config: HubAppConfig = {
      ...this.#config,
      epoch: this.epoch,
      tcpPort: this.#config.tls === undefined ? this.#port : 0,
      ...(this.#config.tls ? { tls: { ...this.#config.tls, port: this.#port } } : {}),
    };
    const child = spawn(process.execPath, [hubAppBundle(), JSON.stringify(config)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: childEnv(),
    });
    this.#child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-20_000);
    });
    return new Promise<number>((resolveStart, rejectStart) => {
      let buffer = '';
      let ready = false;
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (text: string) => {
        buffer += text;
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          let message: { type?: string; tcpPort?: number; tlsPort?: number } & Record<string, unknown>;
          try {
            message = JSON.parse(line) as typeof message;
          } catch {
            continue;
          }
          if (message.type === 'ready' && !ready) {
            ready = true;
            this.#port = (this.#config.tls === undefined ? message.tcpPort : message.tlsPort) ?? this.#port;
            resolveStart(this.#port);
          } else if (message.type === 'stats') {
            this.stats = message as unknown as HubStats;
          }
        }
      });
      child.once('exit', (code, signal) => {
        if (this.#child === child) this.#child = undefined;
        if (!ready) rejectStart(new Error(`hub exited before it was ready (code ${code}, signal ${signal}): ${this.stderr.slice(-2000)}`));
        this.onExit?.(code, signal);
      });
    });
  }

  /** SIGKILL now: whatever the hub was doing, it stops mid-way. Resolves when the process is gone. */
  kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return Promise.resolve();
    this.kills++;
    this.epoch++;
    return new Promise((resolveKill) => {
      child.once('exit', () => resolveKill());
      child.kill('SIGKILL');
    });
  }

  /** Stops rotations and commands (the end of a run). */
  settle(): void {
    this.#child?.stdin?.write('settle\n');
  }

  /** Graceful stop. */
  stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return Promise.resolve();
    return new Promise((resolveStop) => {
      const force = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(force);
        resolveStop();
      });
      child.kill('SIGTERM');
    });
  }
}
